"""The Recycle Bin for EBS snapshots ("Recycle Bin", Amazon EBS User Guide), which moto lacks:

- a tag-level retention rule (`POST /_localaws/recycle-bin-rule {"tags": {...}, "days": 7}`, what
  the stack's AWS::Rbin::Rule says) keeps every deleted snapshot carrying those tags for its days;
- a snapshot in the bin is gone from DescribeSnapshots, listed by ListSnapshotsInRecycleBin, and
  back with its tags after RestoreSnapshotFromRecycleBin; once its days are over it is gone for
  good (the ledger says `snapshot-purged`).
"""

from moto.core.responses import ActionResult
from moto.ec2.exceptions import EC2ClientError
from moto.ec2.models import elastic_block_store as ebs
from moto.ec2.responses.elastic_block_store import ElasticBlockStore

from . import edges
from . import state as st

DAY = 86400.0


def _purge(backend):
    s = st.state()
    t = st.now()
    for snapshot_id, kept in list(s.recycle_bin.items()):
        if kept["region"] == backend.region_name and t >= kept["until"]:
            del s.recycle_bin[snapshot_id]
            st.record("snapshot-purged", snapshot=snapshot_id)


def wrap_delete(delete_snapshot):
    def delete(self, snapshot_id):
        s = st.state()
        snapshot = self.snapshots.get(snapshot_id)
        if snapshot is not None:
            tags = {t["key"]: t["value"] for t in snapshot.get_tags()}
            rule = next(
                (r for r in s.recycle_bin_rules if all(tags.get(k) == v for k, v in r["tags"].items())),
                None,
            )
            if rule is not None:
                self.snapshots.pop(snapshot_id)
                t = st.now()
                s.recycle_bin[snapshot_id] = {
                    "snapshot": snapshot,
                    "region": self.region_name,
                    "entered": t,
                    "until": t + rule["days"] * DAY,
                }
                st.record("snapshot-deleted", snapshot=snapshot_id, lifeboat_state=tags.get("lifeboat:state"), recycle_bin=True)
                return snapshot
        return delete_snapshot(self, snapshot_id)

    return delete


def list_snapshots_in_recycle_bin(self):
    backend = self.ec2_backend
    _purge(backend)
    wanted = set(self._get_param("SnapshotIds", []))
    listed = [
        {
            "SnapshotId": snapshot_id,
            "RecycleBinEnterTime": edges.start_time(kept["entered"]),
            "RecycleBinExitTime": edges.start_time(kept["until"]),
            "Description": kept["snapshot"].description,
            "VolumeId": kept["snapshot"].volume.id,
        }
        for snapshot_id, kept in st.state().recycle_bin.items()
        if kept["region"] == backend.region_name and (not wanted or snapshot_id in wanted)
    ]
    return ActionResult({"Snapshots": listed})


def restore_snapshot_from_recycle_bin(self):
    backend = self.ec2_backend
    _purge(backend)
    snapshot_id = self._get_param("SnapshotId")
    kept = st.state().recycle_bin.get(snapshot_id)
    if kept is None or kept["region"] != backend.region_name:
        raise EC2ClientError("InvalidSnapshot.NotFound", f"The snapshot '{snapshot_id}' is not in the Recycle Bin.")
    del st.state().recycle_bin[snapshot_id]
    snapshot = kept["snapshot"]
    backend.snapshots[snapshot_id] = snapshot
    st.record("snapshot-restored-from-recycle-bin", snapshot=snapshot_id)
    return ActionResult({"SnapshotId": snapshot_id, "State": snapshot.status, "Description": snapshot.description})


def add_rule(tags, days):
    if not tags or not 1 <= int(days) <= 365:
        raise ValueError("a rule names resource tags and 1 to 365 days")
    st.state().recycle_bin_rules.append({"tags": {str(k): str(v) for k, v in tags.items()}, "days": int(days)})


def apply():
    ebs.EBSBackend.delete_snapshot = wrap_delete(ebs.EBSBackend.delete_snapshot)
    ElasticBlockStore.list_snapshots_in_recycle_bin = list_snapshots_in_recycle_bin
    ElasticBlockStore.restore_snapshot_from_recycle_bin = restore_snapshot_from_recycle_bin
