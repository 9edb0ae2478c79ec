"""The harness's own state, beside moto's: the emulator clock, the lifecycle actions held in
Terminating:Wait, how snapshots end, injected faults, the EventBridge outbox and the ledger.

Everything here is guarded by LOCK, which the WSGI middleware holds for the whole of every
request: moto and these patches then run one request at a time, as a single AWS region would
appear to a client that never sees two of its writes interleave.
"""

import itertools
import random
import threading
import time
import uuid
from dataclasses import dataclass, field

LOCK = threading.RLock()

ACCOUNT = "123456789012"


@dataclass
class Action:
    """One lifecycle action: an instance held by one termination hook."""

    token: str
    group: str
    hook: str
    instance_id: str
    started: float
    last_heartbeat: float
    heartbeat_timeout: int
    global_timeout: int
    default_result: str
    region: str
    result: str | None = None
    completed_by: str | None = None


@dataclass
class SnapshotPlan:
    """How one snapshot ends: its fate and when."""

    fate: str  # "completed" | "error" | "never"
    ends_at: float
    request_id: str | None  # the CreateSnapshots call it belongs to, None for CreateSnapshot
    started_at: float = 0.0


@dataclass
class FaultRule:
    """Fail matching calls: `count` times, or with probability `ratio`."""

    service: str  # "ec2", "autoscaling" or "*"
    operation: str  # "CreateSnapshots" or "*"
    kind: str  # "throttle" or "5xx"
    count: int | None = None
    ratio: float | None = None

    def matches(self, service: str, operation: str) -> bool:
        return self.service in ("*", service) and self.operation in ("*", operation)


@dataclass
class State:
    offset: float = 0.0
    actions: dict[str, Action] = field(default_factory=dict)  # token -> action
    snapshot_plans: dict[str, SnapshotPlan] = field(default_factory=dict)  # snapshot id -> plan
    multi_requests: dict[str, dict] = field(default_factory=dict)  # request id -> {instance, snapshots}
    pending_seconds: float = 0.0
    volume_fates: dict[str, list[str]] = field(default_factory=dict)  # volume id -> fates, in order
    volume_pending: dict[str, float] = field(default_factory=dict)  # volume id -> seconds
    retain_on_abandon: set[str] = field(default_factory=set)  # group names
    faults: list[FaultRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    outbox: list[dict] = field(default_factory=list)
    ledger: list[dict] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)  # "ec2:CreateSnapshots" -> n
    faults_injected: dict[str, int] = field(default_factory=dict)
    seq: itertools.count = field(default_factory=itertools.count)


STATE = State()


def reset() -> None:
    global STATE
    STATE = State()


def state() -> State:
    return STATE


def now() -> float:
    """The emulator's clock: real time, moved forward by `advance`."""
    return time.time() + STATE.offset


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def record(kind: str, **fields) -> None:
    """Append one entry to the ledger: what happened in the world, and when."""
    STATE.ledger.append({"seq": next(STATE.seq), "time": now(), "kind": kind, **fields})


def emit(detail_type: str, source: str, region: str, resources: list[str], detail: dict) -> None:
    """Queue one EventBridge event, in AWS's JSON shape, for the test or demo to deliver."""
    STATE.outbox.append(
        {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT,
            "time": iso(now()),
            "region": region,
            "resources": resources,
            "detail": detail,
        }
    )
