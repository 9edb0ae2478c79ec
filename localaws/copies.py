"""Cross-Region snapshot copies as AWS documents them, where moto copies at once:

- CopySnapshot (sent to the destination Region's endpoint) starts a copy that stays `pending`
  for a while (`copy_pending_seconds`, 900 by default: "Copy an Amazon EBS snapshot", Amazon EBS
  User Guide — a copy is asynchronous and a first, full copy to another Region takes long), then
  ends `completed`, or `error` for a source the control API says fails;
- at most 20 copies pending per destination Region ("Amazon EBS endpoints and quotas", AWS
  General Reference: concurrent snapshot copies per destination Region) -> ResourceLimitExceeded;
- a copy's VolumeId is arbitrary (`vol-ffffffff`), as CopySnapshot documents;
- the source must be `completed` and in the standard tier (an archived snapshot must be restored
  first: "Archive Amazon EBS snapshots") -> IncorrectState.
"""

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import elastic_block_store as ebs

from . import state as st
from . import tiers

MAX_PENDING_PER_DESTINATION = 20

_original_copy_snapshot = ebs.EBSBackend.copy_snapshot


def _pending_into(region):
    tick()
    return sum(1 for c in st.state().copies.values() if c["destination"] == region and c["status"] == "pending")


def copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id):
    from moto.ec2.models import ec2_backends

    source_backend = ec2_backends[self.account_id][source_region]
    source = source_backend.get_snapshot(source_snapshot_id)
    tiers.settle(source)
    if source.status != "completed":
        raise EC2ClientError("IncorrectState", f"Snapshot '{source_snapshot_id}' is not completed.")
    if source.storage_tier == "archive":
        raise EC2ClientError("IncorrectState", f"Snapshot '{source_snapshot_id}' is in the archive tier.")
    if _pending_into(self.region_name) >= MAX_PENDING_PER_DESTINATION:
        raise EC2ClientError(
            "ResourceLimitExceeded",
            f"You have reached the limit of {MAX_PENDING_PER_DESTINATION} concurrent snapshot copies to {self.region_name}.",
        )
    snapshot = _original_copy_snapshot(self, source_snapshot_id, source_region, description, kms_key_id)
    # "Snapshots copies have an arbitrary source volume ID" (CopySnapshot, EC2 API Reference):
    # moto keeps the source's volume, which would let a copy pass for its source.
    snapshot.volume = _ArbitraryVolume(self, source.volume.size)
    snapshot.status = "pending"
    snapshot.localaws_progress = "0%"
    s = st.state()
    fate = "error" if source_snapshot_id in s.copy_failing else "completed"
    s.copies[snapshot.id] = {
        "source": source_snapshot_id,
        "destination": self.region_name,
        "ends": st.now() + s.copy_pending_seconds,
        "fate": fate,
        "status": "pending",
    }
    st.record("snapshot-copy-started", snapshot=snapshot.id, source=source_snapshot_id, destination=self.region_name)
    return snapshot


class _ArbitraryVolume:
    """The volume a copy names: `vol-ffffffff`; its size is the source's."""

    id = "vol-ffffffff"

    def __init__(self, backend, size):
        self.ec2_backend = backend
        self.size = size
        self.zone = None


def tick():
    """Ends the copies whose time has come."""
    s = st.state()
    t = st.now()
    for snapshot_id, copy in s.copies.items():
        if copy["status"] != "pending" or t < copy["ends"]:
            continue
        copy["status"] = copy["fate"]
        from moto.ec2.models import ec2_backends

        snapshot = ec2_backends[st.ACCOUNT][copy["destination"]].snapshots.get(snapshot_id)
        if snapshot is not None:
            snapshot.status = copy["fate"]
            snapshot.localaws_progress = "100%" if copy["fate"] == "completed" else "0%"
        st.record(f"snapshot-copy-{copy['fate']}", snapshot=snapshot_id, source=copy["source"])


def apply():
    ebs.EBSBackend.copy_snapshot = copy_snapshot
