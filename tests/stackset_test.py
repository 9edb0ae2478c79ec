"""The StackSets template (stackset/lifeboat.json): what template.yaml makes today, with no
transform left, every parameter of template.yaml with its default, and the function's code read
from the bucket of each Region it deploys to. (cfn-lint checks it in scripts/test.)"""

import json
import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import stackset_template  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402


class StackSetTemplate(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.made = stackset_template.stackset_template()
        cls.checked_in = json.loads(stackset_template.TARGET.read_text())
        cls.source = yaml_parse((ROOT / "template.yaml").read_text())

    def test_the_file_is_what_template_yaml_makes(self):
        self.assertEqual(
            stackset_template.render(self.made),
            stackset_template.TARGET.read_text(),
            "stale: run python scripts/stackset_template.py",
        )

    def test_no_transform_is_left(self):
        self.assertNotIn("Transform", self.checked_in)
        types = {r["Type"] for r in self.checked_in["Resources"].values()}
        self.assertFalse([t for t in types if t.startswith("AWS::Serverless::")], types)
        for needed in ["AWS::Lambda::Function", "AWS::IAM::Role", "AWS::Events::Rule", "AWS::Lambda::Permission"]:
            self.assertIn(needed, types)

    def test_every_parameter_of_the_template_with_its_default(self):
        parameters = self.checked_in["Parameters"]
        for name, parameter in self.source["Parameters"].items():
            self.assertIn(name, parameters)
            self.assertEqual(parameters[name].get("Default"), parameter.get("Default"), name)
        self.assertEqual(set(parameters) - set(self.source["Parameters"]), {"ArtifactBucketPrefix", "ArtifactKey"})

    def test_the_code_comes_from_the_bucket_of_each_region(self):
        function = self.checked_in["Resources"]["Function"]
        self.assertEqual(function["Type"], "AWS::Lambda::Function")
        code = function["Properties"]["Code"]
        self.assertEqual(code["S3Bucket"], {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"})
        self.assertEqual(code["S3Key"], {"Ref": "ArtifactKey"})
        self.assertNotIn("us-east-1", json.dumps(self.checked_in))

    def test_the_role_is_the_templates(self):
        role = self.checked_in["Resources"]["FunctionRole"]["Properties"]
        sids = {
            s.get("Sid")
            for policy in role["Policies"]
            for s in policy["PolicyDocument"]["Statement"]
            if isinstance(s, dict)
        }
        for sid in ["SnapshotInstancesOfServedGroups", "CreateOnlyLabelledSnapshots", "KeepVolumesOfServedGroups"]:
            self.assertIn(sid, sids)
        self.assertIn("Drills", json.dumps(role["AssumeRolePolicyDocument"]))


if __name__ == "__main__":
    unittest.main()
