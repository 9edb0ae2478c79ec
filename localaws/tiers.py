"""The EBS snapshot archive tier and the deletion of snapshots, as AWS documents them, where moto
archives and restores at once and deletes anything:

- ModifySnapshotTier takes a completed snapshot to the archive tier over hours, not at once
  ("Archive Amazon EBS snapshots", Amazon EBS User Guide: archiving takes "up to 24 to 72
  hours"; the harsher 72 modelled). Meanwhile the snapshot stays `standard`, its
  DescribeSnapshotTierStatus says `archival-in-progress`, and a second ModifySnapshotTier is
  refused. A snapshot not `completed` cannot be archived (IncorrectState).
- RestoreSnapshotTier of an archived snapshot takes hours too (the same page: a standard
  restore takes "up to 72 hours"), `temporary-restore-in-progress` meanwhile; a temporary restore
  then lasts its TemporaryRestoreDays (RestoreExpiryTime), after which the snapshot is archived
  again. A snapshot that is not archived cannot be restored.
- CreateVolume refuses an archived snapshot that is not restored ("you can't create volumes from
  archived snapshots"; IncorrectState).
- DescribeSnapshotTierStatus filters on `snapshot-id`, `volume-id` and `last-tiering-operation`
  ("DescribeSnapshotTierStatus", Amazon EC2 API Reference), which moto does not know.
- DeleteSnapshot is recorded in the ledger (what retention deleted, and whether it carried
  lifeboat's `released` state).
"""

from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import elastic_block_store as ebs
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from . import edges
from . import state as st

ARCHIVAL_SECONDS = 72 * 3600
RESTORE_SECONDS = 72 * 3600
DAY = 86400.0


def _tiering(snapshot_id):
    return st.state().tiering.get(snapshot_id)


def settle(snapshot):
    """Moves a snapshot's tier on as the emulator's clock says: an archival or a restore ends,
    a temporary restore expires."""
    op = _tiering(snapshot.id)
    if op is None:
        return
    t = st.now()
    if op["status"] == "archival-in-progress" and t >= op["ends"]:
        snapshot.storage_tier = "archive"
        op.update(status="archival-completed", completed=t)
        st.record("snapshot-archived", snapshot=snapshot.id)
    elif op["status"] == "temporary-restore-in-progress" and t >= op["ends"]:
        op.update(status="temporary-restore-completed", expires=op["ends"] + op["days"] * DAY)
        st.record("snapshot-restored", snapshot=snapshot.id, days=op["days"])
    elif op["status"] == "permanent-restore-in-progress" and t >= op["ends"]:
        snapshot.storage_tier = "standard"
        op.update(status="permanent-restore-completed")
    elif op["status"] == "temporary-restore-completed" and t >= op["expires"]:
        op.update(status="archival-completed", expires=None)


def _restore_expiry(snapshot):
    settle(snapshot)
    op = _tiering(snapshot.id)
    if op and op["status"] == "temporary-restore-completed":
        return edges.start_time(op["expires"])
    return None


def _storage_tier(snapshot):
    settle(snapshot)
    return snapshot.__dict__.get("storage_tier", "standard")


def _set_storage_tier(snapshot, value):
    snapshot.__dict__["storage_tier"] = value


def modify_snapshot_tier(self, snapshot_id, storage_tier):
    snapshot = self.get_snapshot(snapshot_id)
    settle(snapshot)
    if storage_tier != "archive":
        raise EC2ClientError("InvalidParameterValue", f"StorageTier {storage_tier!r}: only archive")
    if snapshot.status != "completed":
        raise EC2ClientError("IncorrectState", f"The snapshot '{snapshot_id}' is not completed.")
    op = _tiering(snapshot_id)
    if snapshot.storage_tier == "archive" or (op and op["status"].endswith("in-progress")):
        raise EC2ClientError("IncorrectState", f"The snapshot '{snapshot_id}' is already archived or moving between tiers.")
    t = st.now()
    st.state().tiering[snapshot_id] = {"status": "archival-in-progress", "started": t, "ends": t + ARCHIVAL_SECONDS}
    snapshot.last_tiering_start_time = edges.start_time(t)
    st.record("snapshot-archival-started", snapshot=snapshot_id)
    return snapshot


def restore_snapshot_tier(self, snapshot_id, temporary_restore_days=None, permanent_restore=False):
    snapshot = self.get_snapshot(snapshot_id)
    settle(snapshot)
    op = _tiering(snapshot_id)
    if snapshot.storage_tier != "archive" or (op and op["status"].endswith("in-progress")):
        raise EC2ClientError("IncorrectState", f"The snapshot '{snapshot_id}' is not in the archive tier.")
    if op and op["status"] == "temporary-restore-completed":
        raise EC2ClientError("IncorrectState", f"The snapshot '{snapshot_id}' is already restored.")
    permanent = str(permanent_restore).lower() == "true"
    days = int(temporary_restore_days or 0)
    if not permanent and not 1 <= days <= 180:
        raise EC2ClientError("InvalidParameterValue", "TemporaryRestoreDays must be between 1 and 180.")
    t = st.now()
    status = "permanent-restore-in-progress" if permanent else "temporary-restore-in-progress"
    st.state().tiering[snapshot_id] = {"status": status, "started": t, "ends": t + RESTORE_SECONDS, "days": days}
    snapshot.restore_start_time = edges.start_time(t)
    st.record("snapshot-restore-started", snapshot=snapshot_id, permanent=permanent, days=days)
    return snapshot


def restore_snapshot_tier_response(self):
    snapshot_id = self._get_param("SnapshotId")
    snapshot = self.ec2_backend.restore_snapshot_tier(
        snapshot_id,
        temporary_restore_days=self._get_param("TemporaryRestoreDays"),
        permanent_restore=self._get_param("PermanentRestore", False),
    )
    from moto.core.responses import ActionResult

    op = _tiering(snapshot_id)
    return ActionResult(
        {
            "SnapshotId": snapshot.id,
            "RestoreStartTime": snapshot.restore_start_time,
            "RestoreDuration": op.get("days") or None,
            "IsPermanentRestore": op["status"].startswith("permanent"),
        }
    )


def describe_snapshot_tier_status(self, filters=None):
    wanted = {}
    for name, values in (filters or {}).items():
        if name not in ("snapshot-id", "volume-id", "last-tiering-operation"):
            raise EC2ClientError("InvalidParameterValue", f"The filter '{name}' is invalid")
        wanted[name] = set(values)
    matches = []
    for snapshot in self.snapshots.values():
        settle(snapshot)
        op = _tiering(snapshot.id)
        snapshot.last_tiering_operation_status = op["status"] if op else None
        facts = {
            "snapshot-id": snapshot.id,
            "volume-id": snapshot.volume.id if snapshot.volume else None,
            "last-tiering-operation": op["status"] if op else None,
        }
        if all(facts[name] in values for name, values in wanted.items()):
            matches.append(snapshot)
    return matches


_original_create_volume = ebs.EBSBackend.create_volume


def create_volume(self, size, zone_name, snapshot_id=None, *args, **kwargs):
    if snapshot_id:
        snapshot = self.get_snapshot(snapshot_id)
        settle(snapshot)
        op = _tiering(snapshot_id)
        restored = op is not None and op["status"] == "temporary-restore-completed"
        if snapshot.storage_tier == "archive" and not restored:
            raise EC2ClientError(
                "IncorrectState",
                f"The snapshot '{snapshot_id}' is in the archive tier: restore it first (RestoreSnapshotTier).",
            )
    return _original_create_volume(self, size, zone_name, snapshot_id, *args, **kwargs)


_original_delete_snapshot = ebs.EBSBackend.delete_snapshot


def delete_snapshot(self, snapshot_id):
    snapshot = self.snapshots.get(snapshot_id)
    state = None
    if snapshot is not None:
        state = {t["key"]: t["value"] for t in snapshot.get_tags()}.get("lifeboat:state")
    deleted = _original_delete_snapshot(self, snapshot_id)
    st.state().tiering.pop(snapshot_id, None)
    st.record("snapshot-deleted", snapshot=snapshot_id, lifeboat_state=state)
    return deleted


def apply():
    ebs.Snapshot.storage_tier = property(_storage_tier, _set_storage_tier)
    ebs.Snapshot.restore_expiry_time = property(_restore_expiry, lambda self, value: None)
    ebs.EBSBackend.modify_snapshot_tier = modify_snapshot_tier
    ebs.EBSBackend.restore_snapshot_tier = restore_snapshot_tier
    ebs.EBSBackend.describe_snapshot_tier_status = describe_snapshot_tier_status
    ebs.EBSBackend.create_volume = create_volume
    ebs.EBSBackend.delete_snapshot = delete_snapshot
    ElasticBlockStore.restore_snapshot_tier = restore_snapshot_tier_response
