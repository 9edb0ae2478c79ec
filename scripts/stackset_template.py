"""The StackSets template, made from template.yaml: `python scripts/stackset_template.py` writes
stackset/lifeboat.json; `--check` says whether the file is what template.yaml makes today.

CloudFormation StackSets deploy a template as it is, without running transforms such as
AWS::Serverless (the StackSets user guide's considerations for stack sets; this project models
the harsher reading), and a Lambda function's code must be in an S3 bucket of the function's own
Region (AWS::Lambda::Function Code, S3Bucket). So the SAM template is expanded here, once, with
the SAM translator (the library `sam build` and CloudFormation's own transform use), into plain
CloudFormation; the function's code comes from the bucket `<ArtifactBucketPrefix>-<Region>`
under ArtifactKey, which the README's fleet section fills in every target Region. Every other
parameter is template.yaml's, with its default.
"""

import argparse
import copy
import json
import os
import pathlib
import sys

from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "template.yaml"
TARGET = ROOT / "stackset" / "lifeboat.json"

ARTIFACT_PARAMETERS = {
    "ArtifactBucketPrefix": {
        "Type": "String",
        "AllowedPattern": "^[a-z0-9][a-z0-9.-]{1,40}$",
        "Description": (
            "The function's code is read from the S3 bucket <ArtifactBucketPrefix>-<Region> in every Region the "
            "stack set deploys to (Lambda reads code only from its own Region); README, A fleet of accounts."
        ),
    },
    "ArtifactKey": {
        "Type": "String",
        "Default": "lifeboat/bootstrap.zip",
        "Description": "The object key of the function's code (the zip `sam build` makes) in that bucket.",
    },
}


class NoManagedPolicies(ManagedPolicyLoader):
    """template.yaml names managed policies by ARN only; looking one up by name would need IAM."""

    def __init__(self):
        pass

    def load(self):
        raise SystemExit("stackset_template: template.yaml names a managed policy by name; use its ARN")


def stackset_template() -> dict:
    # The translator wants a Region for its own pseudo-parameter values; the output keeps
    # ${AWS::Region} wherever the template says it (checked by tests/stackset_test.py).
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    source = yaml_parse(SOURCE.read_text())
    template = copy.deepcopy(source)
    function = template["Resources"]["Function"]
    function["Properties"]["CodeUri"] = {
        "Bucket": {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"},
        "Key": {"Ref": "ArtifactKey"},
    }
    # `sam build`'s instruction, meaningless without SAM.
    function.get("Metadata", {}).pop("BuildMethod", None)
    if not function.get("Metadata"):
        function.pop("Metadata", None)
    template["Parameters"] = {**ARTIFACT_PARAMETERS, **template["Parameters"]}
    groups = template.get("Metadata", {}).get("AWS::CloudFormation::Interface", {}).get("ParameterGroups", [])
    groups.insert(0, {"Label": {"default": "Code (StackSets)"}, "Parameters": list(ARTIFACT_PARAMETERS)})
    expanded = transform(template, {}, NoManagedPolicies())
    expanded["Description"] = (
        "lifeboat for CloudFormation StackSets: template.yaml expanded by scripts/stackset_template.py "
        "(no transform); do not edit by hand. " + source.get("Description", "")
    ).strip()
    return expanded


def render(template: dict) -> str:
    return json.dumps(template, indent=2, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is not what template.yaml makes")
    args = parser.parse_args()
    text = render(stackset_template())
    if args.check:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python scripts/stackset_template.py", file=sys.stderr)
            return 1
        return 0
    TARGET.parent.mkdir(exist_ok=True)
    TARGET.write_text(text)
    print(f"wrote {TARGET.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
