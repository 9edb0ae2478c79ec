"""The SAM template against the code (run by scripts/test with the project's virtualenv):

- the AWS API actions the function's role allows are exactly the ones the code calls: adding a
  call without its permission, or a permission without its call, fails;
- no wildcard actions, nothing that deletes or shares a snapshot or volume;
- every configuration variable of src/config.rs is in the function's environment, fed by a
  parameter with the same default;
- the function, its triggers, its failure destination and its alarms are as the README says;
- the template deploys for every branch of its parameters (Groups, ExistingGroupName,
  EncryptionKeyArns, GroupScope set and empty): every intrinsic function where CloudFormation
  allows it, the Rules refusing exactly what cannot work (tests/cfn.py resolves it);
- parliament, an IAM policy linter, finds nothing in any policy the stack creates but the
  findings the template explains (Metadata.PolicyLintExceptions).
"""

import copy
import itertools
import json
import pathlib
import re
import unittest

from cfnlint.decode import decode_str
from parliament import analyze_policy_string, enhance_finding
from parliament.cli import is_finding_filtered

import cfn

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Adapters and the AWS service their client talks to.
ADAPTERS = {"src/aws/ec2.rs": "ec2", "src/aws/autoscaling.rs": "autoscaling", "src/aws/events.rs": "events"}

# Permissions no code of ours calls: AWS services use them on the role's behalf, with a reason.
SERVICE_MEDIATED = {
    # EBS uses the volume's customer managed key when it snapshots an encrypted volume; the
    # statement exists only when EncryptionKeyArns is given and only through EC2 (kms:ViaService).
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    # EBS encrypts a copy in CopyRegion under CopyKmsKeyArn: a new data key, the source's data
    # re-encrypted; only when CopyKmsKeyArn is given and only through EC2 there.
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
}

FORBIDDEN = re.compile(r"(Delete(?!Snapshot$)|ModifySnapshotAttribute|ResetSnapshotAttribute|EnableSnapshotBlockPublicAccess|DisableSnapshotBlockPublicAccess)")


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
            "fn extra(c: &Ec2Adapter) { c.client\n            .delete_volume(); }\nimpl Inventory for Ec2Adapter {",
        )
        problems = permission_problems(load_template(), actions_called(sources))
        self.assertIn("the code calls ec2:DeleteVolume but the role does not allow it", problems)

    def test_a_permission_without_its_call_is_caught(self):
        template = load_template()
        extra = copy.deepcopy(template)
        statement = next(iter(statements(extra)))
        statement["Action"] = list(statement["Action"]) + ["ec2:DescribeImages", "ec2:DeleteVolume", "ec2:*"]
        problems = permission_problems(extra, actions_called())
        self.assertIn("the role allows ec2:DescribeImages but the code never calls it", problems)
        self.assertIn("forbidden action ec2:DeleteVolume", problems)
        self.assertIn("wildcard action ec2:*", problems)

    def test_only_snapshots_lifeboat_released_may_be_archived_or_deleted(self):
        retiring = [
            s
            for s in statements(load_template())
            if {"ec2:DeleteSnapshot", "ec2:ModifySnapshotTier"} & set([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        ]
        self.assertEqual(len(retiring), 1)
        statement = retiring[0]
        self.assertIn("::snapshot/*", statement["Resource"]["Fn::Sub"])
        self.assertEqual(statement["Condition"], {"StringEquals": {"aws:ResourceTag/lifeboat:state": "released"}})

    def test_only_released_snapshots_are_copied_and_only_into_labelled_copies(self):
        copying = {
            s["Sid"]: s
            for s in statements(load_template())
            if "ec2:CopySnapshot" in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
        }
        self.assertEqual(set(copying), {"CopyOnlyReleasedSnapshots", "CreateOnlyLabelledCopies"})
        self.assertEqual(
            copying["CopyOnlyReleasedSnapshots"]["Condition"],
            {"StringEquals": {"aws:ResourceTag/lifeboat:state": "released"}},
        )
        self.assertEqual(
            copying["CreateOnlyLabelledCopies"]["Condition"],
            {"StringEquals": {"aws:RequestTag/lifeboat:state": "released"}},
        )

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
        self.assertEqual(len(variables), 24)
        self.assertEqual(set(env), {name for name, _ in variables}, "environment and src/config.rs differ")
        for name, default in variables:
            reference = env[name]
            self.assertIsInstance(reference, dict, name)
            if "Fn::Join" in reference:  # a list parameter, joined back with commas
                self.assertEqual(reference["Fn::Join"][0], ",", name)
                reference = reference["Fn::Join"][1]
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

    def test_five_triggers_and_no_event_lost_silently(self):
        events = self.function["Properties"]["Events"]
        self.assertEqual(
            set(events), {"Termination", "MultiVolumeSnapshotsCompleted", "SnapshotCompleted", "Sweep", "Aftercare"}
        )
        # The aftercare schedule's input is the sample event lifeboat parses as aftercare.
        aftercare = json.loads(events["Aftercare"]["Properties"]["Input"])
        sample = json.loads((ROOT / "events/aftercare.json").read_text())
        self.assertEqual((aftercare["source"], aftercare["detail-type"]), (sample["source"], sample["detail-type"]))
        invoke = self.function["Properties"]["EventInvokeConfig"]
        self.assertEqual(invoke["DestinationConfig"]["OnFailure"]["Type"], "SQS")
        queue = self.resources["FailedEvents"]["Properties"]
        self.assertEqual(queue["MessageRetentionPeriod"], 1209600)
        for name in ("Termination", "MultiVolumeSnapshotsCompleted", "SnapshotCompleted"):
            self.assertIn("DeadLetterConfig", events[name]["Properties"], name)

    def test_the_recycle_bin_rule_keeps_exactly_lifeboats_released_snapshots(self):
        rule = self.resources["RecycleBinRule"]
        self.assertEqual(rule["Condition"], "CreateRecycleBinRule")
        self.assertEqual(rule["Properties"]["ResourceType"], "EBS_SNAPSHOT")
        self.assertEqual(
            rule["Properties"]["ResourceTags"], [{"ResourceTagKey": "lifeboat:state", "ResourceTagValue": "released"}]
        )

    def test_alarms_on_errors_failed_events_and_fail_safe(self):
        metrics = {
            (r["Properties"]["Namespace"] if isinstance(r["Properties"]["Namespace"], str) else "custom", r["Properties"]["MetricName"])
            for r in self.resources.values()
            if r["Type"] == "AWS::CloudWatch::Alarm"
        }
        self.assertIn(("AWS/Lambda", "Errors"), metrics)
        self.assertIn(("AWS/SQS", "ApproximateNumberOfMessagesVisible"), metrics)
        self.assertIn(("custom", "RescuesFailedSafe"), metrics)
        # The worst outcome, and the loss of the safety net, are alarmed too.
        self.assertIn(("custom", "RescuesEnded"), metrics)
        self.assertIn(("custom", "KeepFirstFailed"), metrics)

    def test_the_scale_benchmark_runs_the_templates_defaults(self):
        # examples/scale measures lifeboat "as deployed": the same reserved concurrency and hook.
        bench = (ROOT / "examples/scale/main.rs").read_text()
        parameters = self.template["Parameters"]
        for constant, parameter in (
            ("TEMPLATE_RESERVED_CONCURRENCY", "ReservedConcurrency"),
            ("TEMPLATE_HEARTBEAT_TIMEOUT", "HookHeartbeatTimeout"),
        ):
            value = re.search(rf"const {constant}: \w+ = (\d+);", bench)
            self.assertIsNotNone(value, constant)
            self.assertEqual(int(value.group(1)), int(parameters[parameter]["Default"]), parameter)
        properties = self.function["Properties"]
        self.assertEqual(properties["ReservedConcurrentExecutions"], {"Ref": "ReservedConcurrency"})
        self.assertEqual(properties["EventInvokeConfig"]["MaximumEventAgeInSeconds"], 21600)

    def test_the_optional_hook_abandons_by_default(self):
        hook = self.resources["TerminationHook"]
        self.assertEqual(hook["Condition"], "CreateHook")
        self.assertEqual(hook["Properties"]["DefaultResult"], "ABANDON")
        self.assertEqual(hook["Properties"]["LifecycleTransition"], "autoscaling:EC2_INSTANCE_TERMINATING")


KEYS = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa,arn:aws:kms:us-east-1:123456789012:key/2222bbbb"
GROUP_ARN = "arn:*:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/"
# A copy in another Region with its own key, retention that deletes (the Recycle Bin rule),
# fail-safes by email and an operator's role that may drill: every resource and statement the
# after-the-rescue and drill parameters add.
AFTER_THE_RESCUE = {
    "CopyRegion": "us-west-2",
    "CopyKmsKeyArn": "arn:aws:kms:us-west-2:123456789012:key/3333cccc",
    "RetentionDeleteAfterDays": "30",
    "FailSafeEmail": "ops@example.com",
    "DrillPrincipalArn": "arn:aws:iam::123456789012:role/operator",
}


def branches_of_the_parameters():
    """Every combination of the parameters whose branches change the policies and resources."""
    for groups, existing, keys, scope, after in itertools.product(
        ["", "web,db"], ["", "web"], ["", KEYS], ["tagged", "all"], [{}, AFTER_THE_RESCUE]
    ):
        yield {"Groups": groups, "ExistingGroupName": existing, "EncryptionKeyArns": keys, "GroupScope": scope, **after}


def function_statements(resources):
    role = resources["FunctionRole"]["Properties"]
    policy = next(p for p in role["Policies"] if p["PolicyName"] == "FunctionRolePolicy0")
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def lint(document):
    """parliament's findings at its default severity (LOW and up): (statement Sid or "*", issue)."""
    found = set()

    def findings(policy):
        analysed = analyze_policy_string(json.dumps(policy), include_community_auditors=False)
        return {f.issue for f in map(enhance_finding, analysed.findings) if not is_finding_filtered(f)}

    statements = document.get("Statement", [])
    for statement in statements:
        single = dict(document, Statement=[statement])
        found |= {(statement.get("Sid", "*"), issue) for issue in findings(single)}
    whole = findings(document)
    found |= {("*", issue) for issue in whole if not any(issue == i for _, i in found)}
    return found


class TheTemplateDeploysOnEveryBranch(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.transformed = cfn.sam_transformed()
        cls.deployments = {json.dumps(o, sort_keys=True): cfn.deployed(o, cls.transformed) for o in branches_of_the_parameters()}

    def test_every_branch_resolves_with_each_function_where_cloudformation_allows_it(self):
        self.assertEqual(len(self.deployments), 32)
        for key, (resources, _) in self.deployments.items():
            overrides = json.loads(key)
            environment = resources["Function"]["Properties"]["Environment"]["Variables"]
            self.assertEqual(environment["LIFEBOAT_GROUPS"], overrides["Groups"], key)
            self.assertEqual("TerminationHook" in resources, bool(overrides["ExistingGroupName"]), key)

    def test_a_function_where_cloudformation_allows_none_is_refused(self):
        # The defect this check exists for: Fn::Join's delimiter built with Fn::Sub ("You must
        # specify a string value"), which the pinned cfn-lint lets through.
        template = copy.deepcopy(self.transformed)
        template["Outputs"]["Joined"] = {"Value": {"Fn::Join": [{"Fn::Sub": ",arn:${AWS::Partition}:"}, ["a", "b"]]}}
        with self.assertRaisesRegex(cfn.Refused, r"Outputs.Joined.Value.Fn::Join\[0\]: the delimiter must be a plain string"):
            cfn.deployed({}, template)
        template["Outputs"]["Joined"] = {"Value": {"Fn::Sub": [{"Fn::Join": ["", ["${X}"]]}, {"X": "x"}]}}
        with self.assertRaisesRegex(cfn.Refused, "Fn::Sub's string must be a plain value"):
            cfn.deployed({}, template)
        template["Outputs"]["Joined"] = {"Value": {"Fn::Equals": ["a", "b"]}}
        with self.assertRaisesRegex(cfn.Refused, "Fn::Equals cannot be used here"):
            cfn.deployed({}, template)

    def test_the_lifecycle_calls_reach_exactly_the_served_groups(self):
        for key, (resources, outputs) in self.deployments.items():
            overrides = json.loads(key)
            statements = function_statements(resources)
            named = statements.get("HoldAndCompleteLifecycleActionsOfNamedGroups")
            wide = statements.get("HoldAndCompleteLifecycleActionsOfProtectedGroups")
            names = overrides["Groups"].split(",") if overrides["Groups"] else ([overrides["ExistingGroupName"]] if overrides["ExistingGroupName"] else [])
            if names:
                self.assertEqual(named["Resource"], [GROUP_ARN + name for name in names], key)
                self.assertEqual(named["Condition"], {"StringEquals": {"aws:RequestedRegion": cfn.REGION}}, key)
            else:
                self.assertIsNone(named, key)
            if overrides["Groups"]:
                self.assertIsNone(wide, key)
            elif overrides["GroupScope"] == "tagged":
                self.assertEqual(wide["Condition"], {"StringEquals": {"aws:ResourceTag/lifeboat:protected": "true"}}, key)
                self.assertNotIn("ScopeWarning", outputs, key)
            else:
                self.assertNotIn("Condition", wide, key)
                self.assertIn("every Auto Scaling group", outputs["ScopeWarning"], key)

    def test_the_grant_condition_is_only_on_the_grant_actions(self):
        # kms:GrantIsForAWSResource exists only for CreateGrant, ListGrants and RevokeGrant: on
        # any other action the key is absent and the statement never allows anything.
        resources, _ = self.deployments[json.dumps({"EncryptionKeyArns": KEYS, "ExistingGroupName": "", "GroupScope": "tagged", "Groups": ""}, sort_keys=True)]
        self.assertEqual(kms_problems(function_statements(resources).values()), [])
        granted = {a for s in function_statements(resources).values() if s["Sid"].startswith(("UseVolumeKeys", "LetEc2Grant")) for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
        self.assertEqual(granted, {"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"})
        # The statement as it was (the grant condition on all six actions) is caught.
        merged = {
            "Sid": "Old",
            "Action": ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey"],
            "Condition": {"StringEquals": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}, "Bool": {"kms:GrantIsForAWSResource": "true"}},
        }
        self.assertEqual(kms_problems([merged]), ["Old: kms:GrantIsForAWSResource on kms:Decrypt, kms:DescribeKey, which it can never match"])
        self.assertEqual(kms_problems([dict(merged, Action="kms:Decrypt", Condition={})]), ["Old: kms:Decrypt not limited to EC2 (kms:ViaService)"])

    def test_parliament_finds_nothing_the_template_does_not_explain(self):
        exceptions = load_template()["Resources"]["Function"]["Metadata"]["PolicyLintExceptions"]
        explained = {(e["Policy"], sid, e["Issue"]) for e in exceptions for sid in e["Statements"]}
        used, unexplained = set(), []
        for key, (resources, _) in self.deployments.items():
            for where, document, _ in cfn.policies(resources):
                policy = where.rsplit(".", 1)[-1]
                for sid, issue in lint(document):
                    if (policy, sid, issue) in explained:
                        used.add((policy, sid, issue))
                    else:
                        unexplained.append(f"{key}: {where} {sid} {issue}")
        self.assertEqual(unexplained, [])
        self.assertEqual(explained - used, set(), "an exception no finding needs any more: remove it")

    def test_a_new_finding_fails(self):
        resources, _ = next(iter(self.deployments.values()))
        document = copy.deepcopy(next(d for w, d, _ in cfn.policies(resources) if w.endswith("FunctionRolePolicy0")))
        document["Statement"].append({"Sid": "Sloppy", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::bucket"})
        self.assertIn(("Sloppy", "RESOURCE_MISMATCH"), lint(document))


def kms_problems(statements):
    problems = []
    for statement in statements:
        actions = statement["Action"]
        actions = [actions] if isinstance(actions, str) else actions
        kms = [a for a in actions if a.startswith("kms:")]
        if not kms:
            continue
        condition = statement.get("Condition", {})
        if "kms:ViaService" not in condition.get("StringEquals", {}):
            problems.append(f"{statement['Sid']}: {', '.join(kms)} not limited to EC2 (kms:ViaService)")
        if "kms:GrantIsForAWSResource" in condition.get("Bool", {}):
            beyond = [a for a in kms if a not in ("kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant")]
            if beyond:
                problems.append(f"{statement['Sid']}: kms:GrantIsForAWSResource on {', '.join(beyond)}, which it can never match")
    return problems


class TheRulesRefuseWhatCannotWork(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.transformed = cfn.sam_transformed()

    def test_a_hook_that_lapses_between_sweeps_is_refused(self):
        parameters = self.transformed["Parameters"]
        checked = 0
        for sweep in parameters["SweepIntervalSeconds"]["AllowedValues"]:
            for hook in parameters["HookHeartbeatTimeout"]["AllowedValues"]:
                overrides = {"SweepIntervalSeconds": sweep, "HookHeartbeatTimeout": hook, "ExistingGroupName": "web"}
                if int(hook) > int(sweep) + 60:
                    cfn.deployed(overrides, self.transformed)
                else:
                    with self.assertRaisesRegex(cfn.Refused, "HookHeartbeatTimeout must exceed", msg=overrides):
                        cfn.deployed(overrides, self.transformed)
                checked += 1
        self.assertEqual(checked, 60)
        # Without a hook of its own the stack has nothing to refuse.
        cfn.deployed({"SweepIntervalSeconds": "3600", "HookHeartbeatTimeout": "300"}, self.transformed)

    def test_a_hooked_group_lifeboat_does_not_serve_is_refused(self):
        with self.assertRaisesRegex(cfn.Refused, "must name ExistingGroupName"):
            cfn.deployed({"Groups": "db", "ExistingGroupName": "web"}, self.transformed)
        cfn.deployed({"Groups": "db,web", "ExistingGroupName": "web"}, self.transformed)

    def test_a_value_outside_the_parameters_constraints_is_refused(self):
        with self.assertRaisesRegex(cfn.Refused, "HookHeartbeatTimeout"):
            cfn.deployed({"HookHeartbeatTimeout": "30"}, self.transformed)


if __name__ == "__main__":
    unittest.main()
