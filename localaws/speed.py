"""Speed only: moto's answers, found faster. moto looks an instance up by scanning every
reservation and filters volumes and snapshots by testing every one of them, which makes a
group of thousands of instances crawl (each request costs the whole region). These patches
narrow the candidates through an index first and then apply moto's own filters to them, so
every answer is the one moto would give — only sooner. Nothing here changes what AWS does.
"""

from moto.ec2.models import elastic_block_store as ebs
from moto.ec2.models import instances as ec2_instances

_original_get_instance = ec2_instances.InstanceBackend.get_instance
_original_describe_instances = ec2_instances.InstanceBackend.describe_instances
_original_describe_volumes = ebs.EBSBackend.describe_volumes


def _instance_index(backend, wanted=()):
    """Instance id -> instance (moto never removes an instance from its reservation: a
    terminated one stays listed)."""
    return _indexes(backend, wanted)[0]


def _indexes(backend, wanted=()):
    """(instance id -> instance, instance id -> its reservation's id), rebuilt when a
    reservation was added or when one of the `wanted` ids is missing: moto registers a new
    reservation before it appends its instances, so an index built by a request served in
    between lacks them although the count of reservations stays the same."""
    reservations = backend.reservations
    cached = getattr(backend, "_localaws_instances", None)
    stale = cached is None or cached[0] != len(reservations) or any(i not in cached[1] for i in wanted)
    if stale:
        instances = {i.id: i for r in reservations.values() for i in r.instances}
        reservation_of = {i.id: rid for rid, r in reservations.items() for i in r.instances}
        cached = (len(reservations), instances, reservation_of)
        backend._localaws_instances = cached
    return cached[1], cached[2]


def get_instance(self, instance_id):
    found = _instance_index(self, [instance_id]).get(instance_id)
    if found is not None and found.id == instance_id:
        return found
    return _original_get_instance(self, instance_id)


def describe_instances(self, filters=None):
    """A filter on the instance id narrows the reservations to those holding them first."""
    import copy

    from moto.ec2.utils import filter_reservations

    wanted = _values(filters, "instance-id")
    if wanted is None:
        return _original_describe_instances(self, filters)
    reservation_of = _indexes(self, wanted)[1]
    holding = {reservation_of[i] for i in wanted if i in reservation_of}
    reservations = [copy.copy(r) for rid, r in self.reservations.items() if rid in holding]
    return filter_reservations(reservations, filters)


def _values(filters, name):
    value = (filters or {}).get(name)
    if value is None:
        return None
    values = set(value if isinstance(value, list) else [value])
    return None if any("*" in v or "?" in v for v in values) else values


def describe_volumes(self, volume_ids=None, filters=None):
    """A filter on the attached instance narrows the volumes to those attached to it first."""
    instances = _values(filters, "attachment.instance-id")
    if instances is None or volume_ids:
        return _original_describe_volumes(self, volume_ids=volume_ids, filters=filters)
    index = _instance_index(self, instances)
    candidates = set()
    for instance_id in instances:
        instance = index.get(instance_id)
        if instance is not None:
            candidates.update(m.volume_id for m in instance.block_device_mapping.values())
    narrowed = [v for v in self.volumes.values() if v.id in candidates]
    from moto.ec2.utils import generic_filter

    return generic_filter(filters, narrowed)


def narrow_snapshots(backend, snapshot_ids, filters):
    """The snapshots that can match: those named (by SnapshotIds or a `snapshot-id` filter),
    or those carrying a tag a `tag:` filter asks for (read from moto's tag index), or every
    one."""
    snapshots = backend.snapshots
    if snapshot_ids:
        return [snapshots[sid] for sid in dict.fromkeys(snapshot_ids) if sid in snapshots]
    named = _values(filters, "snapshot-id")
    if named is not None:
        return [snapshots[sid] for sid in named if sid in snapshots]
    for name, value in (filters or {}).items():
        wanted = set(value if isinstance(value, list) else [value])
        if name.startswith("tag:") and not any("*" in v or "?" in v for v in wanted):
            key = name[len("tag:") :]
            tags = backend.tags
            return [s for sid, s in backend.snapshots.items() if (tags.get(sid) or {}).get(key) in wanted]
    return list(backend.snapshots.values())


def apply():
    ec2_instances.InstanceBackend.get_instance = get_instance
    ec2_instances.InstanceBackend.describe_instances = describe_instances
    ebs.EBSBackend.describe_volumes = describe_volumes
