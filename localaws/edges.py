"""AWS's hard edges on EBS snapshots, added to moto in-process. Each follows the AWS documentation
page named beside it, is on by default, and can be turned off by name (`state.Edges.off`) only
for a test that shows the difference:

- pending-per-volume: at most five pending snapshots of a volume, one of an st1 or sc1 volume,
  whoever started them -> ConcurrentSnapshotLimitExceeded;
- snapshot-rate: snapshots of one volume closer together than 15 seconds ->
  SnapshotCreationPerVolumeRateExceeded;
- snapshot-quota: the Region's snapshot quota -> SnapshotLimitExceeded;
- visibility-lag: a snapshot just created is missing from DescribeSnapshots (and its filters)
  and refuses CreateTags with InvalidSnapshot.NotFound for a while; a deleted volume or
  snapshot refuses CreateTags for good (moto tagged any id);
- one clock: a snapshot's StartTime is the emulator's time;
- DescribeVolumes attachments carry DeleteOnTermination as the instance's mapping says;
- someone else's snapshot: a Data Lifecycle Manager schedule's, started by the control API;
- request-limits: CreateSnapshots refuses more than 40 ExcludeDataVolumeIds, and a request whose
  snapshots would carry more than 50 tags (its own and those copied from the volume), before it
  creates anything. (CreateTags past 50 tags on a resource is moto's own TagLimitExceeded.)
- throttling: a token bucket per API and account, as EC2 documents them, and one for all of Auto
  Scaling (`throttle`);
- pages: DescribeSnapshots answers at most MaxResults (up to 1,000) snapshots a call, with a
  NextToken for the rest ("DescribeSnapshots", Amazon EC2 API Reference); moto answers all;
- DescribeRegions lists the Regions of the caller's partition only.
"""

import datetime

from moto.ec2.exceptions import EC2ClientError, InvalidSnapshotIdError
from moto.ec2.models import elastic_block_store as ebs
from moto.ec2.responses.tags import TagResponse
from moto.ec2.utils import generic_filter

from . import speed
from . import state as st

HDD_TYPES = {"st1", "sc1"}


# "Tag your Amazon EC2 resources" (Amazon EC2 User Guide), Tag restrictions: at most 50 tags
# per resource; "aws:" tags do not count.
MAX_TAGS_PER_RESOURCE = 50
# "CreateSnapshots" (Amazon EC2 API Reference), InstanceSpecification.ExcludeDataVolumeIds: up
# to 40 volume IDs per request.
MAX_EXCLUDED_DATA_VOLUMES = 40


def admit_request(backend, volume_ids, excluded_ids, tags, copy_volume_tags):
    """Checks a CreateSnapshots request against EC2's request limits before anything is created.
    The harsher reading where AWS does not say when it checks: the whole request is refused."""
    if not st.state().edges.on("request-limits"):
        return
    if len(excluded_ids) > MAX_EXCLUDED_DATA_VOLUMES:
        raise EC2ClientError(
            "InvalidParameterValue",
            f"ExcludeDataVolumeIds: at most {MAX_EXCLUDED_DATA_VOLUMES} volume IDs per request, got {len(excluded_ids)}.",
        )
    own = {key for key in tags if not key.startswith("aws:")}
    for volume_id in volume_ids:
        copied = set()
        if copy_volume_tags:
            copied = {t["key"] for t in backend.get_volume(volume_id).get_tags() if not t["key"].startswith("aws:")}
        if len(own | copied) > MAX_TAGS_PER_RESOURCE:
            raise EC2ClientError(
                "TagLimitExceeded",
                f"The snapshot of {volume_id} would carry {len(own | copied)} tags; at most {MAX_TAGS_PER_RESOURCE} are allowed.",
            )


def _pending(backend, volume_id):
    from .patches import snapshots_of_volume

    return sum(1 for s in snapshots_of_volume(backend, volume_id) if s.status == "pending")


def admit(backend, volume_ids):
    """Checks the snapshot limits for new snapshots of `volume_ids`, all or none (CreateSnapshots
    takes the set or nothing), before any is created."""
    s = st.state()
    edges = s.edges
    now = st.now()
    if edges.on("snapshot-quota") and len(backend.snapshots) + len(volume_ids) > edges.snapshot_quota:
        # "Amazon EBS quotas" (Amazon EBS User Guide): snapshots per Region.
        raise EC2ClientError(
            "SnapshotLimitExceeded",
            f"The maximum number of snapshots has been reached ({edges.snapshot_quota}).",
        )
    for volume_id in volume_ids:
        volume = backend.get_volume(volume_id)
        if edges.on("pending-per-volume"):
            # "Create Amazon EBS snapshots" (Amazon EBS User Guide), Considerations: one pending
            # snapshot of an st1 or sc1 volume, five of the other types.
            hdd = getattr(volume, "volume_type", "") in HDD_TYPES
            limit = edges.pending_per_hdd_volume if hdd else edges.pending_per_volume
            if _pending(backend, volume_id) >= limit:
                raise EC2ClientError(
                    "ConcurrentSnapshotLimitExceeded",
                    f"Maximum allowed in-progress snapshots for a single volume exceeded ({volume_id}).",
                )
        if edges.on("snapshot-rate"):
            # "Error codes for the Amazon EC2 API": wait at least 15 seconds between concurrent
            # volume snapshots. The harsher reading: any snapshot of the volume started less than
            # 15 s ago, pending or not.
            last = s.last_snapshot_of_volume.get(volume_id)
            if last is not None and now - last < edges.seconds_between_snapshots_of_a_volume:
                raise EC2ClientError(
                    "SnapshotCreationPerVolumeRateExceeded",
                    "The maximum per volume CreateSnapshot request rate has been exceeded. "
                    "Use an increasing or variable sleep interval between requests.",
                )


def started(snapshot_id, volume_id):
    """Records a new snapshot's start on the emulator's clock."""
    s = st.state()
    t = st.now()
    s.snapshot_created[snapshot_id] = t
    s.last_snapshot_of_volume[volume_id] = t
    return t


def start_time(t):
    """A moto start time (naive UTC) for emulator time `t`: one clock for StartTime and events."""
    return datetime.datetime.fromtimestamp(t, tz=datetime.timezone.utc).replace(tzinfo=None)


def visible(snapshot_id):
    """"Eventual consistency in the Amazon EC2 API" (Amazon EC2 Developer Guide): a resource just
    created may not be visible to the API calls that follow."""
    s = st.state()
    if not s.edges.on("visibility-lag"):
        return True
    created = s.snapshot_created.get(snapshot_id)
    return created is None or st.now() - created >= s.edges.visibility_lag_seconds


def describe_snapshots(self, snapshot_ids=None, filters=None):
    """moto's DescribeSnapshots (its candidates narrowed first, `speed`), less the snapshots EC2
    does not show yet."""
    found = speed.narrow_snapshots(self, snapshot_ids, filters)
    if snapshot_ids and len(found) < len(set(snapshot_ids)):
        raise InvalidSnapshotIdError()
    if filters:
        found = generic_filter(filters, found)
    shown = [snapshot for snapshot in found if visible(snapshot.id)]
    if snapshot_ids and len(shown) < len(set(snapshot_ids)):
        raise InvalidSnapshotIdError()
    return shown


# "DescribeSnapshots" (Amazon EC2 API Reference): MaxResults is 5 to 1,000.
MAX_SNAPSHOTS_PER_PAGE = 1000


def describe_snapshots_response(self):
    """DescribeSnapshots one page at a time: MaxResults snapshots (1,000 at most; every one
    when the request names none, as AWS answers such a request), then a NextToken."""
    from moto.core.responses import ActionResult

    filters = self._filters_from_querystring()
    snapshot_ids = self._get_param("SnapshotIds", [])
    snapshots = self.ec2_backend.describe_snapshots(snapshot_ids=snapshot_ids, filters=filters)
    size = self._get_int_param("MaxResults")
    if size is None:
        return ActionResult({"Snapshots": snapshots})
    size = max(5, min(MAX_SNAPSHOTS_PER_PAGE, size))
    start = int(self._get_param("NextToken") or 0)
    page = snapshots[start : start + size]
    result = {"Snapshots": page}
    if start + size < len(snapshots):
        result["NextToken"] = str(start + size)
    return ActionResult(result)


_original_create_tags_response = TagResponse.create_tags


def create_tags_response(self):
    """CreateTags refuses a resource EC2 does not know: a snapshot not visible yet, and a volume
    or snapshot deleted ("Error codes for the Amazon EC2 API": InvalidVolume.NotFound,
    InvalidSnapshot.NotFound, "The specified ... does not exist"). moto tags any id at all, so a
    volume deleted with its instance took tags as if it still were there."""
    backend = self.ec2_backend
    for resource_id in self._get_param("Resources", []):
        if resource_id.startswith("snap-") and (
            not visible(resource_id) or resource_id not in backend.snapshots
        ):
            raise EC2ClientError(
                "InvalidSnapshot.NotFound", f"The snapshot '{resource_id}' does not exist."
            )
        if resource_id.startswith("vol-") and resource_id not in backend.volumes:
            raise EC2ClientError("InvalidVolume.NotFound", f"The volume '{resource_id}' does not exist.")
    return _original_create_tags_response(self)


def _attachment_delete_on_termination(self):
    """DescribeVolumes' attachment: DeleteOnTermination as the instance's block device mapping
    says it (moto leaves it out, which the SDK reads as false)."""
    mapping = self.instance.block_device_mapping.get(self.device)
    return bool(mapping.delete_on_termination) if mapping is not None else False


def foreign_snapshot(volume_id, seconds, policy="policy-0123456789abcdef0"):
    """A Data Lifecycle Manager schedule starts a snapshot of the volume, pending `seconds`
    (first snapshots of large HDD volumes take hours). It counts in the volume's limits."""
    from moto.ec2.models import ec2_backends

    for regions in ec2_backends.values():
        for backend in regions.values():
            if volume_id in backend.volumes:
                snapshot = backend.create_snapshot(volume_id, f"Created for policy: {policy}")
                snapshot.add_tags({"aws:dlm:lifecycle-policy-id": policy, "dlm:managed": "true"})
                plan = st.state().snapshot_plans[snapshot.id]
                plan.ends_at = plan.started_at + float(seconds)
                return snapshot.id
    raise ValueError(f"no such volume: {volume_id}")


def _partition(region):
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def describe_regions(self, region_names=None):
    """DescribeRegions (Amazon EC2 API reference) lists the Regions of the caller's partition:
    moto lists China's and GovCloud's beside the commercial ones."""
    own = _partition(self.region_name)
    return [r for r in _original_describe_regions(self, region_names) if _partition(r.name) == own]


_original_describe_regions = None


def apply():
    global _original_describe_regions
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend
    from moto.ec2.responses.elastic_block_store import ElasticBlockStore

    if _original_describe_regions is None:
        _original_describe_regions = RegionsAndZonesBackend.describe_regions
        RegionsAndZonesBackend.describe_regions = describe_regions

    ElasticBlockStore.describe_snapshots = describe_snapshots_response
    ebs.EBSBackend.describe_snapshots = describe_snapshots
    TagResponse.create_tags = create_tags_response
    ebs.VolumeAttachment.delete_on_termination = property(_attachment_delete_on_termination)
