"""The story, replayed against the local AWS with the real Lambda binary.

An Auto Scaling group runs one instance: the API on its boot volume, PostgreSQL and MongoDB on
two data volumes. The instance is stopped for a reboot; the group's health check finds it
unhealthy, launches a replacement and terminates the original. Lifeboat's hook holds it; the
events AWS would send through EventBridge are handed to the function with `cargo lambda invoke`
(the function runs under `cargo lambda watch`). The demo prints a timeline and the rescued
volumes, then the operator's side with the `lifeboat` binary (watch, list, restore onto a
recovery instance, audit), and exits non-zero if the rescue or any of that did not hold.

Run by scripts/demo, which starts the local AWS and `cargo lambda watch` first.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

GROUP = "api-db"
HOOK = "lifeboat"
DEVICES = [
    ("/dev/sda1", 8, "api", "the API (boot volume)"),
    ("/dev/sdf", 20, "postgresql", "PostgreSQL"),
    ("/dev/sdg", 20, "mongodb", "MongoDB"),
]
SNAPSHOT_SECONDS = 8


class Demo:
    def __init__(self, endpoint, invoke_port, function, lifeboat):
        self.lifeboat = lifeboat
        self.endpoint = endpoint
        self.invoke_port = invoke_port
        self.function = function
        self.started = time.time()
        self.last_output = ""
        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        self.ec2 = session.client("ec2", endpoint_url=endpoint)
        self.asg = session.client("autoscaling", endpoint_url=endpoint)
        self.workdir = tempfile.mkdtemp(prefix="lifeboat-demo-")

    def say(self, text):
        print(f"  {time.time() - self.started:6.1f}s  {text}", flush=True)

    def control(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.endpoint}/_localaws/{path}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request) as response:
            return json.loads(response.read())

    def set_scene(self):
        self.control("snapshots", {"pending_seconds": SNAPSHOT_SECONDS})
        mappings = [
            {"DeviceName": device, "Ebs": {"VolumeSize": size, "VolumeType": "gp3", "DeleteOnTermination": True}}
            for device, size, _, _ in DEVICES
        ]
        self.ec2.create_launch_template(
            LaunchTemplateName="api-db-template",
            LaunchTemplateData={"ImageId": "ami-0123456789abcdef0", "InstanceType": "m5.large", "BlockDeviceMappings": mappings},
        )
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=GROUP,
            LaunchTemplate={"LaunchTemplateName": "api-db-template"},
            MinSize=1,
            MaxSize=2,
            DesiredCapacity=1,
            AvailabilityZones=["us-east-1a"],
            # The template's default GroupScope: the role completes only tagged groups' actions.
            Tags=[{"Key": "lifeboat:protected", "Value": "true", "PropagateAtLaunch": False}],
        )
        self.asg.put_lifecycle_hook(
            AutoScalingGroupName=GROUP,
            LifecycleHookName=HOOK,
            LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
            HeartbeatTimeout=900,
            DefaultResult="ABANDON",
        )
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        self.instance = group["Instances"][0]["InstanceId"]
        self.volumes = {}
        for mapping in self.instance_facts()["BlockDeviceMappings"]:
            self.volumes[mapping["DeviceName"]] = mapping["Ebs"]["VolumeId"]
        for device, _, role, _ in DEVICES:
            self.ec2.create_tags(Resources=[self.volumes[device]], Tags=[{"Key": "Name", "Value": f"{GROUP}-{role}"}, {"Key": "role", "Value": role}])
        described = ", ".join(f"{what} on {device}" for device, _, _, what in DEVICES)
        self.say(f"group {GROUP} runs {self.instance}: {described}; lifeboat's hook holds terminations")

    def instance_facts(self):
        return self.ec2.describe_instances(InstanceIds=[self.instance])["Reservations"][0]["Instances"][0]

    def lifecycle_state(self):
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])["AutoScalingGroups"][0]
        states = {i["InstanceId"]: i["LifecycleState"] for i in group["Instances"]}
        return states.get(self.instance, "gone from the group"), [i for i, s in states.items() if i != self.instance and s == "InService"]

    def invoke(self, event, label):
        path = os.path.join(self.workdir, f"{label}.json")
        with open(path, "w") as f:
            json.dump(event, f)
        result = subprocess.run(
            ["cargo", "lambda", "invoke", self.function, "--data-file", path, "--invoke-port", str(self.invoke_port), "--output-format", "json"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            raise SystemExit(f"cargo lambda invoke failed:\n{result.stdout}\n{result.stderr}")
        report = json.loads(result.stdout)
        outcomes = ", ".join(f"{r['instance_id']} {r['outcome']}" for r in report.get("rescues", [])) or report.get("note", "")
        self.say(f"lifeboat handled {label}: {outcomes}")
        return report

    def events(self, detail_type):
        return [e for e in self.control("outbox/take", {})["events"] if e["detail-type"] == detail_type]

    def run(self):
        print("lifeboat demo: the story, replayed\n")
        self.set_scene()
        self.ec2.stop_instances(InstanceIds=[self.instance])
        self.say(f"{self.instance} is stopped for a reboot")
        self.control("health-check", {})
        state, replacements = self.lifecycle_state()
        self.say(f"the health check finds it unhealthy: replacement {', '.join(replacements)} launched, {self.instance} is {state}")
        termination = self.events("EC2 Instance-terminate Lifecycle Action")
        if len(termination) != 1:
            raise SystemExit(f"expected one termination event, got {len(termination)}")
        self.say("EventBridge delivers the termination lifecycle event to lifeboat")
        self.invoke(termination[0], "the termination event")
        state, replacements = self.lifecycle_state()
        self.replacement = replacements[0]
        self.say(f"{self.instance} is {state} while its snapshots run ({SNAPSHOT_SECONDS} s here, hours for a big first snapshot)")
        kept = [
            v["Attachments"][0]["Device"]
            for v in self.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [self.instance]}])["Volumes"]
            if v["Attachments"][0].get("DeleteOnTermination") is False
            and any(t["Key"] == "lifeboat:kept-by" for t in v.get("Tags", []))
        ]
        self.say(f"kept first: {', '.join(sorted(kept))} now have DeleteOnTermination=false until their snapshots complete")
        # EC2's API is eventually consistent: a snapshot just created is listed a moment later.
        while not self.ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:lifeboat:instance-id", "Values": [self.instance]}]
        )["Snapshots"]:
            time.sleep(0.5)
        self.say(f"the operator runs: lifeboat watch --instance {self.instance}")
        watching = self.operator_start(["watch", "--instance", self.instance, "--interval-seconds", "2"])
        deadline = time.time() + SNAPSHOT_SECONDS + 60
        released = False
        while time.time() < deadline and not released:
            time.sleep(1)
            for event in self.events("EBS Multi-Volume Snapshots Completion Status"):
                self.say(f"EBS reports the snapshot set {event['detail']['result']}; EventBridge delivers it to lifeboat")
                report = self.invoke(event, "the snapshot completion event")
                released = any(r["outcome"] == "released" for r in report.get("rescues", []))
        state = self.instance_facts()["State"]["Name"]
        self.say(f"{self.instance} is {state}")
        watched, _ = watching.communicate(timeout=60)
        ok = self.verdict()
        if ok:
            ok = self.operate(watched, watching.returncode)
        print("\nthe rescue held." if ok else "\nTHE RESCUE DID NOT HOLD.")
        return ok

    def operator_env(self):
        return {
            "PATH": os.environ.get("PATH", ""),
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
        }

    def operator_start(self, args):
        return subprocess.Popen([self.lifeboat, *args], env=self.operator_env(), stdout=subprocess.PIPE, text=True)

    def operator(self, args):
        """Runs the operator's command line, prints the command and its output; returns the exit status."""
        result = subprocess.run([self.lifeboat, *args], env=self.operator_env(), capture_output=True, text=True, timeout=600)
        print(f"\n$ lifeboat {' '.join(args)}")
        print(result.stdout.rstrip())
        self.last_output = result.stdout
        if result.stderr.strip():
            print(result.stderr.rstrip())
        return result.returncode

    def operate(self, watched, watch_status):
        """The operator's side: what watch showed, the rescued set, a restore onto a recovery
        instance, and an audit of the account (with a legacy group that has the story's risk)."""
        print("\nthe operator's side (lifeboat's command line, on the operator's credentials):")
        print(f"\n$ lifeboat watch --instance {self.instance} --interval-seconds 2   (while the snapshots ran)")
        print(watched.rstrip())
        ok = watch_status == 0
        ok = self.operator(["list", "--group", GROUP]) == 0 and ok
        recovery = self.ec2.run_instances(
            ImageId="ami-0123456789abcdef0", InstanceType="m5.large", MinCount=1, MaxCount=1,
            Placement={"AvailabilityZone": "us-east-1b"},
        )["Instances"][0]["InstanceId"]
        print(f"\n(a recovery instance {recovery} is launched in us-east-1b)")
        ok = self.operator(["restore", "--instance", self.instance, "--to", recovery, "--dry-run"]) == 0 and ok
        ok = self.operator(["restore", "--instance", self.instance, "--to", recovery]) == 0 and ok
        attached = self.ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [recovery]}])["Volumes"]
        restored = {v["Attachments"][0]["Device"]: v for v in attached}
        for device in ("/dev/sdf", "/dev/sdg"):
            tags = {t["Key"]: t["Value"] for t in restored.get(device, {}).get("Tags", [])}
            if tags.get("lifeboat:restored-from-volume") != self.volumes[device]:
                print(f"  restore did not put {device} back: {tags}")
                ok = False
        legacy = self.legacy_group()
        status = self.operator(["audit"])
        if status != 2:
            print(f"  audit should exit 2 (a high severity finding in legacy-db), exited {status}")
            ok = False
        if not any(legacy in line and "(boot)" in line for line in self.last_output.splitlines()):
            print(f"  audit should name {legacy}'s root volume, where its databases live")
            ok = False
        return ok

    def legacy_group(self):
        """A second group with no hook at all, of the story's own machine: the API, PostgreSQL
        and MongoDB in containers on one root volume, deleted on termination. Its instance."""
        self.ec2.create_launch_template(
            LaunchTemplateName="legacy-docker-template",
            LaunchTemplateData={
                "ImageId": "ami-0123456789abcdef0",
                "InstanceType": "m5.large",
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3", "DeleteOnTermination": True}}
                ],
            },
        )
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName="legacy-db",
            LaunchTemplate={"LaunchTemplateName": "legacy-docker-template"},
            MinSize=1,
            MaxSize=1,
            DesiredCapacity=1,
            AvailabilityZones=["us-east-1a"],
        )
        group = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=["legacy-db"])["AutoScalingGroups"][0]
        instance = group["Instances"][0]["InstanceId"]
        print(f"\n(a legacy group, legacy-db, with no termination hook: {instance} runs the API and both databases in containers on its one root volume)")
        return instance

    def verdict(self):
        print("\nrescued volumes:\n")
        print(f"  {'device':<11}{'volume':<24}{'snapshot':<25}{'state':<11}role")
        ok = True
        for device, _, role, _ in DEVICES:
            volume = self.volumes[device]
            snapshots = self.ec2.describe_snapshots(OwnerIds=["self"], Filters=[{"Name": "volume-id", "Values": [volume]}])["Snapshots"]
            completed = [s for s in snapshots if s["State"] == "completed"]
            best = completed[0] if completed else (snapshots[0] if snapshots else None)
            print(f"  {device:<11}{volume:<24}{best['SnapshotId'] if best else '-':<25}{best['State'] if best else 'none':<11}{role}")
            ok = ok and bool(completed)
        ledger = self.control("ledger")
        lost = [e["volume"] for e in ledger["entries"] if e["kind"] == "volume-deleted" and not e["had_completed_snapshot"]]
        completions = [e for e in ledger["entries"] if e["kind"] == "action-completed" and e["instance"] == self.instance]
        print()
        if lost:
            print(f"  DATA LOST: volumes deleted without a completed snapshot: {', '.join(lost)}")
            ok = False
        if len(completions) != 1 or completions[0]["result"] != "CONTINUE":
            print(f"  the lifecycle action was not released once with CONTINUE: {completions}")
            ok = False
        if ok:
            print("  every volume had a completed snapshot before the instance was terminated.")
        return ok


def main():
    parser = argparse.ArgumentParser(prog="python -m localaws.demo")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--invoke-port", type=int, required=True)
    parser.add_argument("--function", default="lifeboat-lambda")
    parser.add_argument("--lifeboat", required=True, help="the operator's binary, lifeboat")
    args = parser.parse_args()
    ok = Demo(args.endpoint, args.invoke_port, args.function, args.lifeboat).run()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
