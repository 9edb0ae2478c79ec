"""The SAM template against the code (run by scripts/test with the project's virtualenv):

- the AWS API actions the function's role allows are exactly the ones the code calls: adding a
  call without its permission, or a permission without its call, fails;
- no wildcard actions, nothing that deletes or shares a snapshot or volume;
- every configuration variable of src/config.rs is in the function's environment, fed by a
  parameter with the same default;
- the function, its triggers, its failure destination and its alarms are as the README says.
"""

import copy
import pathlib
import re
import unittest

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Adapters and the AWS service their client talks to.
ADAPTERS = {"src/aws/ec2.rs": "ec2", "src/aws/autoscaling.rs": "autoscaling"}

# Permissions no code of ours calls: AWS services use them on the role's behalf, with a reason.
SERVICE_MEDIATED = {
    # EBS uses the volume's customer managed key when it snapshots an encrypted volume; the
    # statement exists only when EncryptionKeyArns is given and only through EC2 (kms:ViaService).
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
}

FORBIDDEN = re.compile(r"(Delete|ModifySnapshotAttribute|ResetSnapshotAttribute|CopySnapshot|EnableSnapshotBlockPublicAccess|DisableSnapshotBlockPublicAccess)")


def load_template(text=None):
    text = text if text is not None else (ROOT / "template.yaml").read_text()
    template, matches = decode_str(text)
    if matches:
        raise AssertionError(f"template.yaml does not parse: {matches}")
    return template


def pascal(snake):
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))


def actions_called(sources=None):
    """The API actions the adapters call: every `client.<operation>()` outside their tests."""
    called = set()
    for path, service in ADAPTERS.items():
        text = sources[path] if sources else (ROOT / path).read_text()
        code = text.split("#[cfg(test)]")[0]
        for operation in re.findall(r"\bclient\s*\.\s*([a-z0-9_]+)\s*\(\s*\)", code):
            called.add(f"{service}:{pascal(operation)}")
    return called


def branches(value):
    """A policy element with its Fn::If alternatives spread out (AWS::NoValue dropped)."""
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            yield from branches(branch)
    elif isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
        return
    else:
        yield value


def statements(template):
    function = template["Resources"]["Function"]["Properties"]
    for policy in function.get("Policies", []):
        if not isinstance(policy, dict) or "Statement" not in policy:
            raise AssertionError(f"only inline policy documents are allowed, found {policy!r}")
        for statement in policy["Statement"]:
            yield from branches(statement)


def actions_allowed(template):
    allowed = set()
    for statement in statements(template):
        if statement.get("Effect") != "Allow":
            continue
        actions = statement["Action"]
        allowed.update([actions] if isinstance(actions, str) else actions)
    return allowed


def permission_problems(template, called):
    allowed = actions_allowed(template)
    problems = []
    for action in sorted(called - allowed):
        problems.append(f"the code calls {action} but the role does not allow it")
    for action in sorted(allowed - called - SERVICE_MEDIATED):
        problems.append(f"the role allows {action} but the code never calls it")
    for action in sorted(allowed):
        if "*" in action:
            problems.append(f"wildcard action {action}")
        if FORBIDDEN.search(action):
            problems.append(f"forbidden action {action}")
    return problems


def config_variables():
    text = (ROOT / "src/config.rs").read_text()
    block = text[text.index("pub const ENV_VARS") :]
    block = block[: block.index("];")]
    return re.findall(r'name: "([A-Z_]+)",\s*default: "([^"]*)"', block)


class PermissionsMatchTheCode(unittest.TestCase):
    def test_the_role_allows_exactly_what_the_code_calls(self):
        called = actions_called()
        self.assertGreaterEqual(len(called), 10, f"found too few calls to be right: {called}")
        self.assertEqual(permission_problems(load_template(), called), [])

    def test_a_call_without_its_permission_is_caught(self):
        sources = {path: (ROOT / path).read_text() for path in ADAPTERS}
        sources["src/aws/ec2.rs"] = sources["src/aws/ec2.rs"].replace(
            "impl Inventory for Ec2Adapter {",
            "fn extra(c: &Ec2Adapter) { c.client\n            .delete_snapshot(); }\nimpl Inventory for Ec2Adapter {",
        )
        problems = permission_problems(load_template(), actions_called(sources))
        self.assertIn("the code calls ec2:DeleteSnapshot but the role does not allow it", problems)

    def test_a_permission_without_its_call_is_caught(self):
        template = load_template()
        extra = copy.deepcopy(template)
        statement = next(iter(statements(extra)))
        statement["Action"] = list(statement["Action"]) + ["ec2:DescribeImages", "ec2:DeleteVolume", "ec2:*"]
        problems = permission_problems(extra, actions_called())
        self.assertIn("the role allows ec2:DescribeImages but the code never calls it", problems)
        self.assertIn("forbidden action ec2:DeleteVolume", problems)
        self.assertIn("wildcard action ec2:*", problems)

    def test_tagging_is_scoped_to_lifeboats_snapshots_and_kept_volumes(self):
        for statement in statements(load_template()):
            actions = statement["Action"]
            actions = [actions] if isinstance(actions, str) else actions
            if "ec2:CreateTags" in actions:
                self.assertIn("Condition", statement, f"unconditioned CreateTags in {statement['Sid']}")
            if any(a.startswith("autoscaling:") and not a.startswith("autoscaling:Describe") for a in actions):
                self.assertNotEqual(statement["Resource"], "*", statement["Sid"])

    def test_the_instance_may_carry_exactly_the_keys_of_the_rescues_record(self):
        # The record the rescue writes on an instance before a snapshot set exists
        # (InstanceRecord::tags in src/tags.rs) against the keys the role may write there.
        source = (ROOT / "src/tags.rs").read_text()
        constants = dict(re.findall(r'pub const ([A-Z_]+): &str = "([^"]+)";', source))
        record = source.split("impl InstanceRecord")[1].split("pub fn tags(&self)")[1].split("\n    }\n")[0]
        written = {constants[name] for name in re.findall(r"tags\.insert\(([A-Z_]+)\.into\(\)", record)}
        statement = next(s for s in statements(load_template()) if s["Sid"] == "RecordRescueOnInstancesOfServedGroups")
        allowed = set(statement["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"])
        self.assertEqual(written, allowed)
        self.assertIn(":instance/*", statement["Resource"]["Fn::Sub"])


class TemplateMatchesTheConfiguration(unittest.TestCase):
    def test_every_variable_is_set_from_a_parameter_with_the_same_default(self):
        template = load_template()
        env = template["Resources"]["Function"]["Properties"]["Environment"]["Variables"]
        parameters = template["Parameters"]
        variables = config_variables()
        self.assertEqual(len(variables), 14)
        self.assertEqual(set(env), {name for name, _ in variables}, "environment and src/config.rs differ")
        for name, default in variables:
            reference = env[name]
            self.assertIsInstance(reference, dict, name)
            parameter = parameters[reference["Ref"]]
            self.assertEqual(str(parameter.get("Default", "")), default, f"{name} defaults differ")
            self.assertIn(name, parameter.get("Description", ""), f"parameter of {name} does not name it")


class TemplateShape(unittest.TestCase):
    def setUp(self):
        self.template = load_template()
        self.resources = self.template["Resources"]
        self.function = self.resources["Function"]

    def test_the_function_is_built_by_cargo_lambda_for_al2023_arm64_by_default(self):
        self.assertEqual(self.function["Metadata"]["BuildMethod"], "rust-cargolambda")
        self.assertEqual(self.function["Metadata"]["BuildProperties"]["Binary"], "lifeboat-lambda")
        properties = self.function["Properties"]
        self.assertEqual(properties["Runtime"], "provided.al2023")
        self.assertEqual(self.template["Parameters"]["Architecture"]["Default"], "arm64")
        self.assertEqual(properties["LoggingConfig"]["LogFormat"], "JSON")
        self.assertEqual(properties["Timeout"], 900)

    def test_four_triggers_and_no_event_lost_silently(self):
        events = self.function["Properties"]["Events"]
        self.assertEqual(set(events), {"Termination", "MultiVolumeSnapshotsCompleted", "SnapshotCompleted", "Sweep"})
        invoke = self.function["Properties"]["EventInvokeConfig"]
        self.assertEqual(invoke["DestinationConfig"]["OnFailure"]["Type"], "SQS")
        queue = self.resources["FailedEvents"]["Properties"]
        self.assertEqual(queue["MessageRetentionPeriod"], 1209600)
        for name in ("Termination", "MultiVolumeSnapshotsCompleted", "SnapshotCompleted"):
            self.assertIn("DeadLetterConfig", events[name]["Properties"], name)

    def test_alarms_on_errors_failed_events_and_fail_safe(self):
        metrics = {
            (r["Properties"]["Namespace"] if isinstance(r["Properties"]["Namespace"], str) else "custom", r["Properties"]["MetricName"])
            for r in self.resources.values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
        }
        self.assertIn(("AWS/Lambda", "Errors"), metrics)
        self.assertIn(("AWS/SQS", "ApproximateNumberOfMessagesVisible"), metrics)
        self.assertIn(("custom", "RescuesFailedSafe"), metrics)

    def test_the_optional_hook_abandons_by_default(self):
        hook = self.resources["TerminationHook"]
        self.assertEqual(hook["Condition"], "CreateHook")
        self.assertEqual(hook["Properties"]["DefaultResult"], "ABANDON")
        self.assertEqual(hook["Properties"]["LifecycleTransition"], "autoscaling:EC2_INSTANCE_TERMINATING")


if __name__ == "__main__":
    unittest.main()
