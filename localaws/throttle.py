"""Request throttling, as EC2 and Auto Scaling apply it to every caller of an account: a token
bucket per API, shared by everyone who calls it in that account and Region, on by default
(edge `throttling`), in the emulator's time.

EC2 — "Request throttling for the Amazon EC2 API" (Amazon EC2 Developer Guide), "Request token
bucket sizes and refill rates": each API action has its own bucket; a request takes one token
and is refused with RequestLimitExceeded when there is none; buckets refill every second up to
their capacity. The sizes by category, and the actions with sizes of their own:

  non-mutating (Describe*, List*, Search*, Get*)               100 tokens, 20 per second
  unfiltered and unpaginated non-mutating (DescribeInstances,   50 tokens, 10 per second
    DescribeInstanceStatus, DescribeNetworkInterfaces, DescribeSecurityGroups,
    DescribeSnapshots, DescribeSpotInstanceRequests, DescribeVolumes without a filter or
    pagination) — InstanceIds, VolumeIds and SnapshotIds are neither, the harsher reading
  mutating (ModifyInstanceAttribute and the rest)               50 tokens, 5 per second
  CreateSnapshot, CreateSnapshots, CreateVolume, DeleteSnapshot, DeleteVolume,
    TerminateInstances                                         100 tokens, 5 per second
  CreateTags, DeleteTags                                       100 tokens, 10 per second
  RunInstances, StartInstances                                   5 tokens, 2 per second

Auto Scaling — the Amazon EC2 Auto Scaling API Reference ("Welcome", API request rate) says
requests are throttled per account and Region, answered `Throttling` ("Rate exceeded"); AWS's
knowledge-center article "Why are my Auto Scaling API calls throttled?" adds that every Amazon
EC2 Auto Scaling call of an account draws on one limit, shared by all of them. AWS publishes no
figures. The assumption here, stated and conservative: that one bucket (heartbeats,
completions and describes all draw from it) holds 50 tokens refilled at 5 per second — the
sizes EC2 documents for its own mutating actions.

Other tenants: an account's buckets serve every tool, pipeline and console user in it. With
`other_tenants_share` set (0 by default), they draw that share of every bucket's refill,
continuously, before anyone else.

Who called: each request is counted against its caller (the access key id in its signature)
and its bucket, per emulated second, so a benchmark can say what lifeboat drew and what it was
refused.
"""

from dataclasses import dataclass, field

from . import state as st

NON_MUTATING = (100.0, 20.0)
UNFILTERED = (50.0, 10.0)
MUTATING = (50.0, 5.0)
UNFILTERED_ACTIONS = {
    "DescribeInstances",
    "DescribeInstanceStatus",
    "DescribeNetworkInterfaces",
    "DescribeSecurityGroups",
    "DescribeSnapshots",
    "DescribeSpotInstanceRequests",
    "DescribeVolumes",
}
EC2_OWN_SIZES = {
    "CreateSnapshot": (100.0, 5.0),
    "CreateSnapshots": (100.0, 5.0),
    "CreateVolume": (100.0, 5.0),
    "DeleteSnapshot": (100.0, 5.0),
    "DeleteVolume": (100.0, 5.0),
    "TerminateInstances": (100.0, 5.0),
    "CreateTags": (100.0, 10.0),
    "DeleteTags": (100.0, 10.0),
    "RunInstances": (5.0, 2.0),
    "StartInstances": (5.0, 2.0),
}
# The assumption for Auto Scaling (see above).
AUTOSCALING_SHARED = (50.0, 5.0)
AUTOSCALING_BUCKET = "autoscaling:*"


def _read_only(action):
    return action.startswith(("Describe", "List", "Search", "Get"))


def _filtered_or_paginated(form):
    return any(key.startswith(("Filter.", "MaxResults", "NextToken")) for key in form)


def bucket_of(service, action, form):
    """The bucket a request draws from, with its (capacity, refill per second)."""
    if service == "autoscaling":
        return AUTOSCALING_BUCKET, AUTOSCALING_SHARED
    if service != "ec2":
        return None, None
    if action in EC2_OWN_SIZES:
        return f"ec2:{action}", EC2_OWN_SIZES[action]
    if _read_only(action):
        if action in UNFILTERED_ACTIONS and not _filtered_or_paginated(form):
            return f"ec2:{action} (unfiltered)", UNFILTERED
        return f"ec2:{action}", NON_MUTATING
    return f"ec2:{action}", MUTATING


@dataclass
class Bucket:
    capacity: float
    refill: float
    tokens: float
    at: float

    def take(self, now, others_share):
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.refill * (1.0 - others_share))
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Usage:
    """One caller's requests to one bucket."""

    calls: int = 0
    throttled: int = 0
    by_second: dict = field(default_factory=dict)  # emulated second -> requests admitted


def admit(service, action, form, caller, region):
    """True when the request may go on; False when its bucket is empty (the caller gets EC2's
    RequestLimitExceeded or Auto Scaling's Throttling)."""
    s = st.state()
    name, size = bucket_of(service, action, form)
    if name is None:
        return True
    now = st.now()
    key = (region, name)
    bucket = s.buckets.get(key)
    if bucket is None:
        bucket = s.buckets[key] = Bucket(capacity=size[0], refill=size[1], tokens=size[0], at=now)
    admitted = not s.edges.on("throttling") or bucket.take(now, s.edges.other_tenants_share)
    usage = s.usage.setdefault(caller, {}).setdefault(name, Usage())
    if admitted:
        usage.calls += 1
        second = int(now)
        usage.by_second[second] = usage.by_second.get(second, 0) + 1
    else:
        usage.throttled += 1
    return admitted


def report():
    """The buckets' sizes and each caller's use of them, for the control API."""
    s = st.state()
    return {
        "buckets": {
            name: {"capacity": b.capacity, "refill": b.refill, "tokens": round(b.tokens, 3), "region": region}
            for (region, name), b in s.buckets.items()
        },
        "callers": {
            caller: {
                name: {"calls": u.calls, "throttled": u.throttled, "by_second": u.by_second}
                for name, u in buckets.items()
            }
            for caller, buckets in s.usage.items()
        },
        "other_tenants_share": s.edges.other_tenants_share,
    }
