"""What moto lacks and lifeboat depends on, added to moto in-process with AWS's documented
semantics:

Auto Scaling
- a group with a termination hook puts the instance it terminates (scale-in,
  TerminateInstanceInAutoScalingGroup, an unhealthy or stopped instance being replaced) into
  Terminating:Wait, one lifecycle action per hook, and emits the EventBridge event; a retained
  instance can be terminated again the same way;
- several termination hooks: CONTINUE lets the others complete, ABANDON (or a timeout whose
  default result is ABANDON) ends every other action of the instance ("Amazon EC2 Auto Scaling
  lifecycle hooks", Considerations); DeleteLifecycleHook completes its actions in flight with
  CONTINUE ("DeleteLifecycleHook", Amazon EC2 Auto Scaling API Reference);
- warm pools: PutWarmPool launches the pool's instances (Warmed:Stopped or Warmed:Running),
  DescribeWarmPool lists them, and one terminated through the group waits in
  Warmed:Terminating:Wait, its event saying Origin WarmPool ("Using lifecycle hooks with a warm
  pool", Amazon EC2 Auto Scaling User Guide);
- CompleteLifecycleAction and RecordLifecycleActionHeartbeat, by token or instance id;
  "No active Lifecycle Action found" for unknown or finished actions;
- CONTINUE and ABANDON both terminate (DeleteOnTermination volumes are deleted), except that
  ABANDON retains the instance (Terminating:Retained) when the group's instance lifecycle policy
  says TerminateHookAbandon=retain; the heartbeat timeout and the global timeout
  (min(48 h, 100 x heartbeat)) apply the hook's default result;
- PutLifecycleHook keeps NotificationMetadata and checks HeartbeatTimeout (30-7200 s);
- Create/UpdateAutoScalingGroup keep InstanceLifecyclePolicy (TerminateHookAbandon).

EC2 (the limits, the visibility lag and the one clock are in `edges`)
- snapshots stay pending for a configured time and end completed, in error, or never, and keep
  their volume's KMS key; the snapshots of one CreateSnapshots set stay pending (progress below
  100 %) until all are done, and all end in error when one fails ("Create Amazon EBS
  snapshots", Amazon EBS User Guide);
- CreateSnapshots honours ExcludeDataVolumeIds and CopyTagsFromSource=volume;
- EBS completion events (multi-volume and single) are emitted when snapshots end, in the bodies
  "Amazon EventBridge events for Amazon EBS" shows (a multi-volume event names its snapshots'
  ARNs in `resources`; AWS's cause texts);
- a block device mapping that names a device the AMI already maps replaces it (moto would
  leave the AMI's volume attached but unmapped);
- every volume deletion is written to the ledger with whether a completed snapshot of it,
  started after its instance's termination began, existed at that moment (the strict oracle: an
  old snapshot does not save today's data);
- a resource's tags are read from moto's own index instead of a scan of every tag, and the
  lookups of `speed` narrow moto's scans (speed only: the same answers, sooner).
"""

import heapq
import math
import time
import uuid

from moto.autoscaling import models as asg_models
from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult
from moto.ec2.models import core as ec2_core
from moto.ec2.models import elastic_block_store as ebs
from moto.ec2.models import instances as ec2_instances
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.ec2.responses.elastic_block_store import ElasticBlockStore
from moto.ec2.responses.instances import InstanceResponse

from . import bus
from . import copies
from . import edges
from . import recyclebin
from . import speed
from . import state as st
from . import tiers

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
GLOBAL_TIMEOUT_CEILING = 48 * 3600


# --- Auto Scaling: lifecycle hooks and Terminating:Wait -------------------------------------


def _termination_hooks(backend, group_name):
    return [
        hook
        for hook in backend.lifecycle_hooks.values()
        if hook.auto_scaling_group_name == group_name and hook.lifecycle_transition == TERMINATING
    ]


def _warm(group):
    return st.state().warm.setdefault(group.name, [])


def _find_state(group, instance_id):
    return next(
        (s for s in list(group.instance_states) + _warm(group) if s.instance.id == instance_id),
        None,
    )


def _in_warm_pool(group, instance_state):
    return any(w is instance_state for w in _warm(group))


def _enter_wait(backend, group, instance_state, cause):
    """Holds the instance for every termination hook of its group: one action and one
    EventBridge event per hook. A warm pool's instance waits in Warmed:Terminating:Wait."""
    warm = _in_warm_pool(group, instance_state)
    instance_state.lifecycle_state = "Warmed:Terminating:Wait" if warm else "Terminating:Wait"
    t = st.now()
    for _, mapping in instance_state.instance.get_block_device_mapping:
        st.state().termination_began[mapping.volume_id] = t
    for hook in _termination_hooks(backend, group.name):
        token = str(uuid.uuid4())
        _open(st.Action(
            token=token,
            group=group.name,
            hook=hook.name,
            instance_id=instance_state.instance.id,
            started=t,
            last_heartbeat=t,
            heartbeat_timeout=hook.heartbeat_timeout,
            global_timeout=hook.global_timeout,
            default_result=hook.default_result,
            region=backend.region_name,
        ))
        st.record("action-started", group=group.name, hook=hook.name, instance=instance_state.instance.id, token=token, cause=cause)
        detail = {
            "Origin": "WarmPool" if warm else "AutoScalingGroup",
            "Destination": "EC2",
            "LifecycleActionToken": token,
            "AutoScalingGroupName": group.name,
            "LifecycleHookName": hook.name,
            "EC2InstanceId": instance_state.instance.id,
            "LifecycleTransition": TERMINATING,
        }
        metadata = getattr(hook, "notification_metadata", None)
        if metadata:
            detail["NotificationMetadata"] = metadata
        st.emit(
            "EC2 Instance-terminate Lifecycle Action",
            "aws.autoscaling",
            backend.region_name,
            [group.arn],
            detail,
        )


def _held(backend, group, instance_state, cause):
    """Terminates through the hook when the group has one: True when the instance is now held."""
    if not _termination_hooks(backend, group.name):
        return False
    _enter_wait(backend, group, instance_state, cause)
    return True


_original_terminate_instance = asg_models.AutoScalingBackend.terminate_instance


def terminate_instance(self, instance_id, should_decrement):
    for group in self.autoscaling_groups.values():
        instance_state = _find_state(group, instance_id)
        if instance_state is None:
            continue
        retained = instance_state.lifecycle_state.endswith("Terminating:Retained")
        if "Terminating" in instance_state.lifecycle_state and not retained:
            raise ValidationError(f"The instance {instance_id} is already terminating.")
        if not _termination_hooks(self, group.name):
            if retained or _in_warm_pool(group, instance_state):
                _terminate(self, group, instance_state)
                return asg_models.TerminateInstanceActivity(instance_state.instance, group.desired_capacity)
            break
        original_size = group.desired_capacity
        # A retained instance is terminated again through the hooks, with new actions (Instance
        # lifecycle policies: "terminate retained instances with
        # TerminateInstanceInAutoScalingGroup"); a warm pool's instance is not part of the
        # group's capacity.
        if should_decrement and not retained and not _in_warm_pool(group, instance_state):
            group.desired_capacity -= 1
        _enter_wait(self, group, instance_state, "TerminateInstanceInAutoScalingGroup")
        if not retained:
            group.set_desired_capacity(group.desired_capacity)
        return asg_models.TerminateInstanceActivity(instance_state.instance, original_size)
    return _original_terminate_instance(self, instance_id, should_decrement)


_original_set_desired_capacity = asg_models.FakeAutoScalingGroup.set_desired_capacity


def set_desired_capacity(self, new_capacity):
    """Scale-in through the hook: the instances to remove go to Terminating:Wait, oldest first,
    only from those in service and not protected (moto would terminate at once)."""
    backend = self.autoscaling_backend
    target = self.min_size if new_capacity is None else new_capacity
    in_service = self.active_instances()
    if target < len(in_service) and _termination_hooks(backend, self.name):
        self.desired_capacity = target
        removable = [s for s in in_service if not s.protected_from_scale_in]
        removable.sort(key=lambda s: s.instance.launch_time)
        for instance_state in removable[: len(in_service) - target]:
            _enter_wait(backend, self, instance_state, "scale-in")
        return None
    return _original_set_desired_capacity(self, new_capacity)


_original_set_instance_health = asg_models.AutoScalingBackend.set_instance_health


def set_instance_health(self, instance_id, health_status):
    """An instance set Unhealthy is replaced: a new one is launched, the old one terminated
    through the hook."""
    _original_set_instance_health(self, instance_id, health_status)
    if health_status == "Unhealthy":
        _replace(self, instance_id, "unhealthy")


def _replace(backend, instance_id, cause):
    for group in backend.autoscaling_groups.values():
        instance_state = _find_state(group, instance_id)
        if instance_state is None or instance_state.lifecycle_state != "InService":
            continue
        instance_state.health_status = "Unhealthy"
        if _held(backend, group, instance_state, cause):
            group.set_desired_capacity(group.desired_capacity)
        else:
            _original_terminate_instance(backend, instance_id, False)
        st.record("instance-replaced", group=group.name, instance=instance_id, cause=cause)
        return True
    return False


def health_check() -> list[str]:
    """One pass of the EC2 health check: every in-service instance that is not running (the
    story's stopped instance) is marked Unhealthy and replaced."""
    replaced = []
    for backend in _backends(asg_models.autoscaling_backends):
        for group in list(backend.autoscaling_groups.values()):
            for instance_state in list(group.instance_states):
                if instance_state.lifecycle_state != "InService":
                    continue
                if instance_state.instance.state in ("stopped", "stopping", "terminated", "shutting-down"):
                    if _replace(backend, instance_state.instance.id, f"instance {instance_state.instance.state}"):
                        replaced.append(instance_state.instance.id)
    return replaced


def _backends(backend_dict):
    for regions in list(backend_dict.values()):
        for backend in list(regions.values()):
            yield backend


def _open(action):
    """A new lifecycle action, in the indexes that find it (speed only)."""
    s = st.state()
    s.actions[action.token] = action
    s.open_actions[(action.group, action.hook, action.instance_id)] = action.token
    s.actions_of_instance.setdefault(action.instance_id, []).append(action.token)
    s.lifecycle_wake = min(s.lifecycle_wake, _deadline(action))


def _deadline(action):
    return min(action.started + action.global_timeout, action.last_heartbeat + action.heartbeat_timeout)


def _find_action(group, hook, token, instance_id):
    s = st.state()
    if not token and instance_id:
        token = s.open_actions.get((group, hook, instance_id))
    action = s.actions.get(token) if token else None
    if action is not None and action.result is None and action.group == group and action.hook == hook:
        return action
    what = f"token {token}" if token else f"instance ID {instance_id}"
    raise ValidationError(f"No active Lifecycle Action found with {what}")


def _attached_volumes(ec2_backend, instance_id):
    """Each volume attached to the instance now: DeleteOnTermination, and whether a completed
    snapshot of it exists — what a test needs to judge a CONTINUE."""
    try:
        instance = ec2_backend.get_instance(instance_id)
    except Exception:  # noqa: BLE001 — an unknown instance has no volumes
        return []
    return [
        {
            "volume": mapping.volume_id,
            "device": device,
            "delete_on_termination": bool(mapping.delete_on_termination),
            "had_completed_snapshot": _volume_saved(ec2_backend, mapping.volume_id),
            "kept_reason": (ec2_backend.tags.get(mapping.volume_id) or {}).get("lifeboat:kept-reason", ""),
        }
        for device, mapping in instance.get_block_device_mapping
    ]


def _record_completion(action, backend):
    st.record(
        "action-completed",
        group=action.group,
        hook=action.hook,
        instance=action.instance_id,
        token=action.token,
        result=action.result,
        by=action.completed_by,
        volumes=_attached_volumes(backend.ec2_backend, action.instance_id),
    )


def _finish(action, result, by):
    """Completes one action. CONTINUE lets the instance's other hooks complete; ABANDON ends
    them all ("Amazon EC2 Auto Scaling lifecycle hooks", Considerations: "If the instance is
    terminating, both abandon and continue allow the instance to terminate. However, abandon stops
    any remaining actions, such as other lifecycle hooks, and continue allows any other lifecycle
    hooks to complete"). When the last action is done, the instance is terminated, unless an
    ABANDON meets a retain policy."""
    s = st.state()
    _close(action, result, by)
    backend = asg_models.autoscaling_backends[st.ACCOUNT][action.region]
    _record_completion(action, backend)
    siblings = [
        s.actions[token]
        for token in s.actions_of_instance.get(action.instance_id, [])
        if s.actions[token].started == action.started
    ]
    if result == "ABANDON" and s.edges.on("abandon-ends-every-hook"):
        for other in siblings:
            if other.result is None:
                _close(other, "ABANDON", f"ended by the ABANDON of hook {action.hook}")
                _record_completion(other, backend)
    if any(a.result is None for a in siblings):
        return
    abandoned = any(a.result == "ABANDON" for a in siblings)
    group = backend.autoscaling_groups.get(action.group)
    instance_state = _find_state(group, action.instance_id) if group else None
    if abandoned and action.group in s.retain_on_abandon:
        if instance_state is not None:
            warm = _in_warm_pool(group, instance_state)
            instance_state.lifecycle_state = "Warmed:Terminating:Retained" if warm else "Terminating:Retained"
        st.record("instance-retained", group=action.group, instance=action.instance_id)
        return
    if group is not None and instance_state is not None:
        _terminate(backend, group, instance_state)
    else:
        backend.ec2_backend.terminate_instances([action.instance_id])
    st.record("instance-terminated", group=action.group, instance=action.instance_id, result="ABANDON" if abandoned else "CONTINUE")


def _terminate(backend, group, instance_state):
    """The instance leaves its group (or warm pool) and EC2 terminates it."""
    group.instance_states = [s for s in group.instance_states if s is not instance_state]
    warm = _warm(group)
    warm[:] = [s for s in warm if s is not instance_state]
    backend.ec2_backend.terminate_instances([instance_state.instance.id])
    # DescribeInstances' StateTransitionReason says when, on the emulator's clock (moto writes
    # the wall clock's): "User initiated (YYYY-MM-DD hh:mm:ss GMT)", to the second, as EC2's
    # ("InstanceStateChangeReason"/StateTransitionReason, Amazon EC2 API reference, "Instance").
    instance_state.instance._reason = f"User initiated ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(st.now()))} GMT)"


def _close(action, result, by):
    action.result = result
    action.completed_by = by
    open_actions = st.state().open_actions
    key = (action.group, action.hook, action.instance_id)
    if open_actions.get(key) == action.token:
        del open_actions[key]


def tick_lifecycle() -> None:
    """The hooks' timers: a heartbeat timeout or the global timeout applies the default result.
    (Only when one can have run out: `lifecycle_wake` is the earliest deadline, a heartbeat only
    moves one later.)"""
    s = st.state()
    t = st.now()
    if t < s.lifecycle_wake:
        return
    for token in list(s.open_actions.values()):
        action = s.actions[token]
        if action.result is not None:
            continue
        if t >= action.started + action.global_timeout:
            _finish(action, action.default_result, "global-timeout")
        elif t >= action.last_heartbeat + action.heartbeat_timeout:
            _finish(action, action.default_result, "heartbeat-timeout")
    s.lifecycle_wake = min((_deadline(s.actions[token]) for token in s.open_actions.values()), default=math.inf)


def complete_lifecycle_action(self):
    result = self._get_param("LifecycleActionResult")
    if result not in ("CONTINUE", "ABANDON"):
        raise ValidationError("LifecycleActionResult must be CONTINUE or ABANDON")
    action = _find_action(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    _finish(action, result, "api")
    return EmptyResult()


def record_lifecycle_action_heartbeat(self):
    action = _find_action(
        self._get_param("AutoScalingGroupName"),
        self._get_param("LifecycleHookName"),
        self._get_param("LifecycleActionToken"),
        self._get_param("InstanceId"),
    )
    action.last_heartbeat = st.now()
    st.record("action-heartbeat", group=action.group, hook=action.hook, instance=action.instance_id)
    return EmptyResult()


_original_put_lifecycle_hook = AutoScalingResponse.put_lifecycle_hook


def put_lifecycle_hook(self):
    timeout = self._get_int_param("HeartbeatTimeout")
    if timeout is not None and not 30 <= timeout <= 7200:
        raise ValidationError("HeartbeatTimeout must be between 30 and 7200 seconds")
    result = _original_put_lifecycle_hook(self)
    group = self._get_param("AutoScalingGroupName")
    name = self._get_param("LifecycleHookName")
    hook = self.autoscaling_backend.lifecycle_hooks[f"{group}_{name}"]
    hook.notification_metadata = self._get_param("NotificationMetadata")
    hook.global_timeout = min(GLOBAL_TIMEOUT_CEILING, 100 * hook.heartbeat_timeout)
    hook.notification_target_arn = self._get_param("NotificationTargetARN")
    hook.role_arn = self._get_param("RoleARN")
    return result


_original_delete_lifecycle_hook = asg_models.AutoScalingBackend.delete_lifecycle_hook


def delete_lifecycle_hook(self, as_name, name):
    """"DeleteLifecycleHook" (Amazon EC2 Auto Scaling API Reference): outstanding lifecycle
    actions are completed first — CONTINUE for terminating instances."""
    if st.state().edges.on("delete-hook-continues"):
        for action in list(st.state().actions.values()):
            if action.result is None and action.group == as_name and action.hook == name:
                _finish(action, "CONTINUE", "hook-deleted")
    return _original_delete_lifecycle_hook(self, as_name, name)


_original_put_warm_pool = asg_models.AutoScalingBackend.put_warm_pool


def put_warm_pool(self, group_name, max_group_prepared_capacity, min_size, pool_state, instance_reuse_policy):
    """A warm pool of `min_size` instances, launched from the group's template and kept
    Warmed:Stopped (or Warmed:Running); they are not the group's instances."""
    _original_put_warm_pool(self, group_name, max_group_prepared_capacity, min_size, pool_state, instance_reuse_policy)
    group = self.autoscaling_groups[group_name]
    warm = _warm(group)
    missing = (min_size or 0) - len(warm)
    if missing > 0:
        before = list(group.instance_states)
        group.replace_autoscaling_group_instances(missing, {})
        launched = [s for s in group.instance_states if all(s is not b for b in before)]
        group.instance_states = before
        running = (pool_state or "Stopped") == "Running"
        for instance_state in launched:
            instance_state.lifecycle_state = "Warmed:Running" if running else "Warmed:Stopped"
            if not running:
                instance_state.instance.stop()
            warm.append(instance_state)


def describe_warm_pool(self):
    from moto.core.responses import ActionResult

    group_name = self._get_param("AutoScalingGroupName")
    config = self.autoscaling_backend.describe_warm_pool(group_name=group_name)
    group = self.autoscaling_backend.autoscaling_groups[group_name]
    return ActionResult({"WarmPoolConfiguration": config, "Instances": list(_warm(group))})


_original_create_group = AutoScalingResponse.create_auto_scaling_group
_original_update_group = AutoScalingResponse.update_auto_scaling_group


def _lifecycle_policy(self):
    """InstanceLifecyclePolicy.RetentionTriggers.TerminateHookAbandon, which moto ignores."""
    policy = self._get_param("InstanceLifecyclePolicy")
    if not policy:
        return
    name = self._get_param("AutoScalingGroupName")
    action = (policy.get("RetentionTriggers") or {}).get("TerminateHookAbandon")
    group = self.autoscaling_backend.autoscaling_groups.get(name)
    if group is not None:
        group.instance_lifecycle_policy = policy
    if action == "retain":
        st.state().retain_on_abandon.add(name)
    elif action == "terminate":
        st.state().retain_on_abandon.discard(name)


def create_auto_scaling_group(self):
    result = _original_create_group(self)
    _lifecycle_policy(self)
    return result


def update_auto_scaling_group(self):
    result = _original_update_group(self)
    _lifecycle_policy(self)
    return result


# --- EC2: snapshots that take time, the completion events, the ledger -----------------------


def _snapshot_plan(volume_id, request_id):
    s = st.state()
    fates = s.volume_fates.get(volume_id)
    fate = fates.pop(0) if fates else "completed"
    pending = s.volume_pending.get(volume_id, s.pending_seconds)
    return st.SnapshotPlan(fate=fate, ends_at=st.now() + pending, request_id=request_id, started_at=st.now())


_original_create_snapshot = ebs.EBSBackend.create_snapshot


def create_snapshot(self, volume_id, description, owner_id=None, from_ami=None, _request_id=None):
    if _request_id is None:
        edges.admit(self, [volume_id])
    snapshot = _original_create_snapshot(self, volume_id, description, owner_id=owner_id, from_ami=from_ami)
    snapshot.start_time = edges.start_time(edges.started(snapshot.id, volume_id))
    # A snapshot of an encrypted volume is encrypted with the volume's key (moto drops the key).
    snapshot.kms_key_id = self.get_volume(volume_id).kms_key_id
    snapshot.status = "pending"
    snapshot.localaws_progress = "0%"
    snapshot.localaws_region = self.region_name
    st.state().snapshot_plans[snapshot.id] = _snapshot_plan(volume_id, _request_id)
    st.state().snapshots_of_volume.setdefault(volume_id, []).append(snapshot.id)
    wake(snapshot.id, self.region_name)
    st.record("snapshot-started", snapshot=snapshot.id, volume=volume_id, request=_request_id)
    return snapshot


def create_snapshots(self, instance_spec, description, tags, copy_tags_from_source=None):
    """CreateSnapshots with ExcludeBootVolume, ExcludeDataVolumeIds and CopyTagsFromSource. An
    instance shutting down or terminated has no volumes to snapshot ("CreateSnapshots", EC2 API
    Reference: the volumes are those attached to the instance): refused, as EC2 refuses calls on
    an instance in the wrong state (IncorrectInstanceState, "Error codes for the Amazon EC2
    API")."""
    instance = self.get_instance(instance_spec["InstanceId"])
    if instance.state in ("shutting-down", "terminated"):
        from moto.ec2.exceptions import EC2ClientError

        raise EC2ClientError(
            "IncorrectInstanceState",
            f"The instance '{instance.id}' is not in a state from which it can be snapshotted.",
        )
    exclude_boot = str(instance_spec.get("ExcludeBootVolume", False)).lower() == "true"
    excluded_ids = instance_spec.get("ExcludeDataVolumeIds") or []
    exclude_data = set(excluded_ids)
    volumes = [
        m.volume_id
        for device, m in instance.get_block_device_mapping
        if not (exclude_boot and device == instance.root_device_name) and m.volume_id not in exclude_data
    ]
    edges.admit_request(self, volumes, excluded_ids, tags, copy_tags_from_source == "volume")
    edges.admit(self, volumes)
    request_id = str(uuid.uuid4())
    snapshots = []
    for volume_id in volumes:
        snapshot = create_snapshot(self, volume_id, description, _request_id=request_id)
        if copy_tags_from_source == "volume":
            volume_tags = {t["key"]: t["value"] for t in self.get_volume(volume_id).get_tags()}
            snapshot.add_tags({k: v for k, v in volume_tags.items() if not k.startswith("aws:")})
        snapshot.add_tags(tags)
        snapshots.append(snapshot)
    if not snapshots:
        return snapshots
    st.state().multi_requests[request_id] = {
        "instance": instance.id,
        "region": self.region_name,
        "snapshots": [s.id for s in snapshots],
        "start": st.now(),
    }
    return snapshots


def create_snapshots_response(self):
    instance_spec = self._get_param("InstanceSpecification", {})
    description = self._get_param("Description", "")
    tags = self._parse_tag_specification().get("snapshot", {})
    self.error_on_dryrun()
    snapshots = self.ec2_backend.create_snapshots(
        instance_spec, description, tags, copy_tags_from_source=self._get_param("CopyTagsFromSource")
    )
    from moto.core.responses import ActionResult

    return ActionResult({"Snapshots": snapshots})


def _volume_saved(backend, volume_id):
    """A completed snapshot of the volume exists that was started after its instance's
    termination began (when it began one): an older snapshot does not save today's data."""
    s = st.state()
    since = s.termination_began.get(volume_id) if s.edges.on("strict-oracle") else None
    return any(
        snap.status == "completed" and (since is None or s.snapshot_created.get(snap.id, 0.0) >= since)
        for snap in snapshots_of_volume(backend, volume_id)
    )


def snapshots_of_volume(backend, volume_id):
    """The snapshots of a volume that still exist, by the harness's index (speed only)."""
    return [
        backend.snapshots[sid] for sid in st.state().snapshots_of_volume.get(volume_id, []) if sid in backend.snapshots
    ]


_original_delete_volume = ebs.EBSBackend.delete_volume


def delete_volume(self, volume_id):
    saved = _volume_saved(self, volume_id)
    volume = _original_delete_volume(self, volume_id)
    st.record("volume-deleted", volume=volume_id, had_completed_snapshot=saved)
    return volume


_original_add_block_device = ec2_instances.Instance.add_block_device


def add_block_device(self, size, device_path, snapshot_id, encrypted, delete_on_termination, kms_key_id, volume_type):
    previous = self.block_device_mapping.get(device_path)
    if previous is not None:
        self.ec2_backend.detach_volume(previous.volume_id, self.id, device_path)
        _original_delete_volume(self.ec2_backend, previous.volume_id)
    return _original_add_block_device(
        self, size, device_path, snapshot_id, encrypted, delete_on_termination, kms_key_id, volume_type
    )


_original_block_device_mapping_handler = InstanceResponse._block_device_mapping_handler


def block_device_mapping_handler(self):
    """ModifyInstanceAttribute's BlockDeviceMapping (DeleteOnTermination of the volumes "that are
    currently attached", EC2 API Reference, ModifyInstanceAttribute). An instance shutting down
    or terminated has none left to modify: refused with IncorrectInstanceState ("Error codes for
    the Amazon EC2 API"), the harsher of the answers the documentation leaves open (moto answered
    500 with a KeyError once termination had dropped the mapping). A device the instance does not
    map is InvalidParameterValue, before anything changes."""
    from moto.ec2.exceptions import EC2ClientError

    instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
    if instance.state in ("shutting-down", "terminated"):
        raise EC2ClientError(
            "IncorrectInstanceState",
            f"The instance '{instance.id}' is not in a state from which its block device mapping can be modified.",
        )
    for mapping in self._get_param("BlockDeviceMappings", []):
        if mapping.get("DeviceName") not in instance.block_device_mapping:
            raise EC2ClientError(
                "InvalidParameterValue",
                f"No device named {mapping.get('DeviceName')} is attached to instance '{instance.id}'.",
            )
    modified = _original_block_device_mapping_handler(self)
    if modified:
        instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
        for mapping in self._get_param("BlockDeviceMappings", []):
            device = mapping.get("DeviceName")
            if device in instance.block_device_mapping:
                st.record(
                    "delete-on-termination",
                    instance=instance.id,
                    device=device,
                    volume=instance.block_device_mapping[device].volume_id,
                    value=bool(instance.block_device_mapping[device].delete_on_termination),
                )
    return modified


def _ends(snapshot, plan, t, s):
    """How a snapshot stands at `t`: its own fate, or its set's. The snapshots of one
    CreateSnapshots set end together, when the last is done, and all in error when one fails
    ("Create Amazon EBS snapshots", Amazon EBS User Guide: "if any one snapshot for the volume
    set fails, all of the other snapshots display an error status")."""
    if plan.request_id is None or not s.edges.on("sets-complete-together"):
        return None if plan.fate == "never" or t < plan.ends_at else plan.fate
    members = [s.snapshot_plans.get(sid) for sid in s.multi_requests.get(plan.request_id, {}).get("snapshots", [])]
    members = [m for m in members if m is not None] or [plan]
    if any(m.fate == "error" and t >= m.ends_at for m in members):
        return "error"
    if any(m.fate == "never" or t < m.ends_at for m in members):
        return None
    return "completed"


def _wake_at(plan, s):
    """The earliest emulator time at which a snapshot can end (inf: not on its own): its own
    end, or its set's — the first failure, else the last to finish."""
    if plan.request_id is None or not s.edges.on("sets-complete-together"):
        return math.inf if plan.fate == "never" else plan.ends_at
    members = [s.snapshot_plans.get(sid) for sid in s.multi_requests.get(plan.request_id, {}).get("snapshots", [])]
    members = [m for m in members if m is not None] or [plan]
    failures = [m.ends_at for m in members if m.fate == "error"]
    if failures:
        return min(failures)
    if any(m.fate == "never" for m in members):
        return math.inf
    return max(m.ends_at for m in members)


def wake(snapshot_id, region, at=None):
    """Schedules a look at a pending snapshot when it can end (a heap, so that a tick costs the
    snapshots that end, not all of them: speed only)."""
    s = st.state()
    plan = s.snapshot_plans.get(snapshot_id)
    if plan is None:
        return
    at = _wake_at(plan, s) if at is None else at
    if at < math.inf:
        heapq.heappush(s.wakes, (at, next(s.seq), snapshot_id, region))


def rewake_all():
    """Every pending snapshot scheduled afresh (after a change of the edges that decide when
    sets end)."""
    s = st.state()
    s.wakes = []
    for backend in _backends(ebs_backends()):
        for snapshot_id, snapshot in backend.snapshots.items():
            if snapshot.status == "pending":
                wake(snapshot_id, backend.region_name)


def tick_snapshots() -> None:
    """Ends the snapshots whose time has come, and emits their completion events in the bodies
    "Amazon EventBridge events for Amazon EBS" documents."""
    s = st.state()
    t = st.now()
    touched = set()
    while s.wakes and s.wakes[0][0] <= t:
        _, _, snapshot_id, region = heapq.heappop(s.wakes)
        backend = ebs_backends()[st.ACCOUNT][region]
        snapshot = backend.snapshots.get(snapshot_id)
        plan = s.snapshot_plans.get(snapshot_id)
        if snapshot is None or plan is None or snapshot.status != "pending":
            continue
        fate = _ends(snapshot, plan, t, s)
        if fate is None:
            wake(snapshot_id, region, max(_wake_at(plan, s), t + 0.001))
            continue
        snapshot.status = fate
        snapshot.localaws_progress = "100%" if fate == "completed" else "0%"
        snapshot.localaws_completed_at = t
        st.record(f"snapshot-{fate}", snapshot=snapshot.id, volume=snapshot.volume.id)
        if plan.request_id is not None:
            touched.add(plan.request_id)
        else:
            region = backend.region_name
            arn = f"arn:aws:ec2:{region}::snapshot/{snapshot.id}"
            st.emit(
                "EBS Snapshot Notification",
                "aws.ec2",
                region,
                [arn],
                {
                    "event": "createSnapshot",
                    "result": "succeeded" if fate == "completed" else "failed",
                    "cause": "" if fate == "completed" else f"Snapshot {snapshot.id} is in status error",
                    "request-id": "",
                    "snapshot_id": arn,
                    "source": f"arn:aws:ec2:{region}::volume/{snapshot.volume.id}",
                    "startTime": st.iso(plan.started_at),
                    "endTime": st.iso(t),
                },
            )
    for request_id in sorted(touched):
        request = s.multi_requests.get(request_id)
        if request is None:
            continue
        backend = ebs_backends()[st.ACCOUNT][request["region"]]
        members = [backend.snapshots.get(sid) for sid in request["snapshots"]]
        if any(m is not None and m.status == "pending" for m in members):
            continue
        del s.multi_requests[request_id]
        members = [m for m in members if m is not None]
        failed = [m for m in members if m.status != "completed"]
        region = request["region"]
        # The multi-volume event names the snapshots, in the ARN form the page shows
        # ("arn:aws:ec2::us-east-1:snapshot/..."), not the instance.
        arns = [f"arn:aws:ec2::{region}:snapshot/{m.id}" for m in members]
        st.emit(
            "EBS Multi-Volume Snapshots Completion Status",
            "aws.ec2",
            region,
            arns,
            {
                "event": "createSnapshots",
                "result": "failed" if failed else "succeeded",
                "cause": f"Snapshot {failed[0].id} is in status error" if failed else "",
                "request-id": "",
                "startTime": st.iso(request["start"]),
                "endTime": st.iso(t),
                "snapshots": [
                    {
                        "snapshot_id": arn,
                        "source": f"arn:aws:ec2::{region}:volume/{m.volume.id}",
                        "status": m.status,
                    }
                    for arn, m in zip(arns, members)
                ],
            },
        )


def _progress(snapshot):
    """A pending snapshot's progress grows with its time, as EC2's does (a "never" one stays at 0%)."""
    plan = st.state().snapshot_plans.get(snapshot.id)
    if snapshot.status == "pending" and plan is not None and plan.fate != "never" and plan.ends_at > plan.started_at:
        done = (st.now() - plan.started_at) / (plan.ends_at - plan.started_at)
        return f"{max(0, min(99, int(done * 100)))}%"
    return getattr(snapshot, "localaws_progress", "100%")


def _completion_time(snapshot):
    """DescribeSnapshots' CompletionTime ("Snapshot", Amazon EC2 API reference: when the
    snapshot was completed), on the emulator's clock; none while it is pending."""
    at = getattr(snapshot, "localaws_completed_at", None)
    return None if at is None or snapshot.status != "completed" else edges.start_time(at)


def ebs_backends():
    from moto.ec2.models import ec2_backends

    return ec2_backends


def get_tags(self):
    """A resource's tags by its id: moto scans every tag of the region for each resource, which
    makes a tag-filtered DescribeSnapshots quadratic and a storm of hundreds of rescues crawl.
    Same result, from the backend's own index."""
    if not self.id:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    tags = self.ec2_backend.tags.get(self.id) or {}
    return [{"resource_id": self.id, "key": k, "value": v, "resource_type": resource_type} for k, v in tags.items()]


def apply() -> None:
    """Installs every patch. Idempotent."""
    asg_models.AutoScalingBackend.terminate_instance = terminate_instance
    asg_models.AutoScalingBackend.set_instance_health = set_instance_health
    asg_models.FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity
    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat
    AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook
    asg_models.AutoScalingBackend.delete_lifecycle_hook = delete_lifecycle_hook
    asg_models.AutoScalingBackend.put_warm_pool = put_warm_pool
    AutoScalingResponse.describe_warm_pool = describe_warm_pool
    AutoScalingResponse.create_auto_scaling_group = create_auto_scaling_group
    AutoScalingResponse.update_auto_scaling_group = update_auto_scaling_group
    ebs.EBSBackend.create_snapshot = create_snapshot
    ebs.EBSBackend.create_snapshots = create_snapshots
    ebs.EBSBackend.delete_volume = delete_volume
    ebs.Snapshot.progress = property(_progress)
    ebs.Snapshot.completion_time = property(_completion_time)
    # CreateSnapshots answers SnapshotInfo, whose State moto would leave out.
    ebs.Snapshot.state = property(lambda self: self.status)
    ElasticBlockStore.create_snapshots = create_snapshots_response
    ec2_instances.Instance.add_block_device = add_block_device
    ec2_core.TaggedEC2Resource.get_tags = get_tags
    InstanceResponse._block_device_mapping_handler = block_device_mapping_handler
    edges.apply()
    tiers.apply()
    recyclebin.apply()
    bus.apply()
    copies.apply()
    speed.apply()


def tick() -> None:
    tick_snapshots()
    tick_lifecycle()
    copies.tick()
