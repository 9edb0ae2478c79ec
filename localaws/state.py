"""The harness's own state, beside moto's: the emulator clock, the lifecycle actions held in
Terminating:Wait, how snapshots end, AWS's hard edges and their settings, injected faults, the
EventBridge outbox and the ledger.

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
    """Fail matching calls: `count` times, or with probability `ratio`. `throttle` and `5xx`
    refuse the call; `lost` applies it, then loses the response (a 500)."""

    service: str  # "ec2", "autoscaling" or "*"
    operation: str  # "CreateSnapshots" or "*"
    kind: str  # "throttle", "5xx" or "lost"
    count: int | None = None
    ratio: float | None = None

    def matches(self, service: str, operation: str) -> bool:
        return self.service in ("*", service) and self.operation in ("*", operation)


# The calls that change something: a lost response to one of them leaves the change made.
MUTATING = {
    "ec2:CreateSnapshots",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ec2:ModifyInstanceAttribute",
    "autoscaling:CompleteLifecycleAction",
    "autoscaling:RecordLifecycleActionHeartbeat",
}


@dataclass
class Edges:
    """AWS's hard edges, each on by default at AWS's documented value (or, where AWS documents
    none, the harsher choice); a test may turn one off only to show the difference."""

    # "Create Amazon EBS snapshots" (Amazon EBS User Guide): at most five pending snapshots of a
    # volume, one of an st1 or sc1 volume -> ConcurrentSnapshotLimitExceeded.
    pending_per_volume: int = 5
    pending_per_hdd_volume: int = 1
    # "Error codes for the Amazon EC2 API": SnapshotCreationPerVolumeRateExceeded, "wait at least
    # 15 seconds between concurrent volume snapshots".
    seconds_between_snapshots_of_a_volume: float = 15.0
    # "Amazon EBS quotas": 100,000 snapshots per Region by default -> SnapshotLimitExceeded.
    snapshot_quota: int = 100_000
    # "Eventual consistency in the Amazon EC2 API": AWS publishes no figure; a few seconds.
    visibility_lag_seconds: float = 2.0
    # A request succeeds and its response is lost: AWS publishes no rate; one mutating call in
    # a hundred, seeded, so that a run is repeatable.
    lost_response_ratio: float = 0.01
    # The share of every throttling bucket's refill the account's other callers draw (`throttle`).
    other_tenants_share: float = 0.0
    off: set[str] = field(default_factory=set)

    def on(self, name: str) -> bool:
        return name not in self.off


EDGE_NAMES = {
    "pending-per-volume",
    "snapshot-rate",
    "snapshot-quota",
    "sets-complete-together",
    "visibility-lag",
    "lost-responses",
    "abandon-ends-every-hook",
    "delete-hook-continues",
    "strict-oracle",
    "request-limits",
    "throttling",
}


@dataclass
class State:
    offset: float = 0.0
    actions: dict[str, Action] = field(default_factory=dict)  # token -> action
    snapshot_plans: dict[str, SnapshotPlan] = field(default_factory=dict)  # snapshot id -> plan
    tiering: dict[str, dict] = field(default_factory=dict)  # snapshot id -> archival or restore (tiers)
    copies: dict[str, dict] = field(default_factory=dict)  # copy's snapshot id -> its copy (copies)
    copy_pending_seconds: float = 900.0
    copy_failing: set = field(default_factory=set)  # source snapshot ids whose copies fail
    recycle_bin_rules: list = field(default_factory=list)  # {"tags": {...}, "days": n} (recyclebin)
    recycle_bin: dict[str, dict] = field(default_factory=dict)  # snapshot id -> what the bin keeps
    multi_requests: dict[str, dict] = field(default_factory=dict)  # request id -> {instance, snapshots}
    pending_seconds: float = 0.0
    volume_fates: dict[str, list[str]] = field(default_factory=dict)  # volume id -> fates, in order
    volume_pending: dict[str, float] = field(default_factory=dict)  # volume id -> seconds
    retain_on_abandon: set[str] = field(default_factory=set)  # group names
    faults: list[FaultRule] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    outbox: list[dict] = field(default_factory=list)
    function: dict | None = None  # EventBridge delivering to the real function (function.py)
    ledger: list[dict] = field(default_factory=list)
    ledger_kinds: dict[str, int] = field(default_factory=dict)  # kind -> entries of that kind
    calls: dict[str, int] = field(default_factory=dict)  # "ec2:CreateSnapshots" -> n
    faults_injected: dict[str, int] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)  # "ec2:CreateTags" -> responses lost
    # How long the emulator took to answer AWS API requests, in real seconds: it answers one at
    # a time, so `answering` over a run's real time is how busy it was, and the wait for the
    # lock is the queue in front of it (a benchmark says whether it, not AWS, set the pace).
    answered: int = 0
    answering: float = 0.0
    queued: float = 0.0
    edges: Edges = field(default_factory=Edges)
    lost_rng: random.Random = field(default_factory=lambda: random.Random(13))
    # volume id -> when the termination of the instance it was attached to began (the strict
    # oracle: only a snapshot started since saves today's data)
    termination_began: dict[str, float] = field(default_factory=dict)
    snapshot_created: dict[str, float] = field(default_factory=dict)  # id -> emulated time
    last_snapshot_of_volume: dict[str, float] = field(default_factory=dict)
    warm: dict[str, list] = field(default_factory=dict)  # group -> warm pool InstanceStates
    seq: itertools.count = field(default_factory=itertools.count)
    # (when, seq, snapshot id, region): when a pending snapshot can end next (patches.wake)
    wakes: list = field(default_factory=list)
    snapshots_of_volume: dict[str, list[str]] = field(default_factory=dict)  # volume -> snapshot ids
    lifecycle_wake: float = float("inf")  # no lifecycle action can time out before then
    open_actions: dict = field(default_factory=dict)  # (group, hook, instance) -> open action's token
    actions_of_instance: dict[str, list[str]] = field(default_factory=dict)  # instance -> tokens
    buckets: dict = field(default_factory=dict)  # (region, bucket) -> throttle.Bucket
    usage: dict = field(default_factory=dict)  # caller -> bucket -> throttle.Usage
    throttled: dict[str, int] = field(default_factory=dict)  # "ec2:CreateSnapshots" -> refused
    # The emulator's clock: real time from `anchor`, `scale` times as fast (a benchmark's hours
    # in minutes), plus whatever `advance` added.
    scale: float = 1.0
    anchor: float = field(default_factory=time.time)


STATE = State()


def reset() -> None:
    global STATE
    STATE = State()


def state() -> State:
    return STATE


def now() -> float:
    """The emulator's clock: real time (`scale` times as fast since `anchor`), moved forward by
    `advance`."""
    real = time.time()
    return real + (STATE.scale - 1.0) * (real - STATE.anchor) + STATE.offset


def set_scale(scale: float) -> float:
    """From now on the emulator's time runs `scale` times as fast as real time — 0 stops it, so
    that only `advance` moves it (a test that counts tokens then does not depend on how fast the
    machine is); returns the emulator's time at the change (the same before and after it)."""
    if not (scale == 0.0 or 1.0 <= scale <= 1000.0):
        raise ValueError("scale is 0 (the clock stands still) or between 1 and 1000")
    t = now()
    STATE.anchor = time.time()
    STATE.offset = t - STATE.anchor
    STATE.scale = scale
    return t


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def record(kind: str, **fields) -> None:
    """Append one entry to the ledger: what happened in the world, and when."""
    STATE.ledger.append({"seq": next(STATE.seq), "time": now(), "kind": kind, **fields})
    STATE.ledger_kinds[kind] = STATE.ledger_kinds.get(kind, 0) + 1


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
