"""The SAM template as CloudFormation would deploy it, for a given set of parameter values.

`deployed(overrides)` runs SAM's own transform (aws-sam-translator, in-process), checks the
parameter values against their constraints and the template's Rules, then evaluates every
intrinsic function to concrete values — and refuses, naming the path, any function used where
CloudFormation does not allow it (the "Supported functions" of each function in the
CloudFormation intrinsic function reference; for example, `Fn::Join`'s delimiter and
`Fn::Sub`'s template string must be plain strings, and only the rule functions may appear in
Rules). The result holds only the resources whose conditions hold, with the role's policies as
IAM would read them.
"""

import copy
import json
import os
import pathlib
import re

from cfnlint.decode import decode_str

ROOT = pathlib.Path(__file__).resolve().parent.parent

PARTITION, REGION, ACCOUNT, STACK = "aws", "us-east-1", "123456789012", "lifeboat"
PSEUDO = {
    "AWS::Partition": PARTITION,
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT,
    "AWS::StackName": STACK,
    "AWS::URLSuffix": "amazonaws.com",
}


class Refused(Exception):
    """CloudFormation would refuse the template or these parameter values."""


NO_VALUE = object()

# Where each function's arguments may hold other functions (CloudFormation's "Supported
# functions" for that argument); an argument not listed must be a plain value.
VALUE_FUNCTIONS = {"Fn::Base64", "Fn::FindInMap", "Fn::GetAtt", "Fn::GetAZs", "Fn::If", "Fn::ImportValue", "Fn::Join", "Fn::Select", "Fn::Split", "Fn::Sub", "Ref"}
CONDITION_FUNCTIONS = {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition"}
RULE_FUNCTIONS = {"Fn::And", "Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn", "Fn::Equals", "Fn::Not", "Fn::Or", "Fn::RefAll", "Fn::ValueOf", "Fn::ValueOfAll", "Ref"}

ARN_OF = {
    "AWS::SQS::Queue": "arn:{p}:sqs:{r}:{a}:{name}",
    "AWS::Lambda::Function": "arn:{p}:lambda:{r}:{a}:function:{name}",
    "AWS::IAM::Role": "arn:{p}:iam::{a}:role/{name}",
    "AWS::Events::Rule": "arn:{p}:events:{r}:{a}:rule/{name}",
    "AWS::Logs::LogGroup": "arn:{p}:logs:{r}:{a}:log-group:{name}:*",
}


def function_of(value):
    if isinstance(value, dict) and len(value) == 1:
        (key,) = value
        if key == "Ref" or key == "Condition" or key.startswith("Fn::"):
            return key
    return None


def sam_transformed(text=None):
    """The template after SAM's transform, intrinsic functions still in it."""
    from samtranslator.translator.transform import transform

    text = text if text is not None else (ROOT / "template.yaml").read_text()
    template, matches = decode_str(text)
    if matches:
        raise Refused(f"template.yaml does not parse: {matches}")
    template = json.loads(json.dumps(template))
    # SAM wants an S3 location for the code; sam build and sam deploy supply one.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://artifacts/lifeboat.zip"

    class NoManagedPolicies:
        def load(self):
            return {}

    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return transform(template, {}, NoManagedPolicies())


class Stack:
    def __init__(self, template, overrides):
        self.template = template
        self.parameters = self._parameters(overrides)
        self.conditions = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def _parameters(self, overrides):
        declared = self.template.get("Parameters", {})
        unknown = set(overrides) - set(declared)
        if unknown:
            raise Refused(f"unknown parameters {sorted(unknown)}")
        values = {}
        for name, spec in declared.items():
            raw = str(overrides.get(name, spec.get("Default", "")))
            if "AllowedValues" in spec and raw not in [str(v) for v in spec["AllowedValues"]]:
                raise Refused(f"parameter {name}: {raw!r} is not one of {spec['AllowedValues']}")
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], raw):
                raise Refused(f"parameter {name}: {raw!r} does not match {spec['AllowedPattern']}")
            if spec["Type"] == "Number":
                number = float(raw)
                if number < spec.get("MinValue", number) or number > spec.get("MaxValue", number):
                    raise Refused(f"parameter {name}: {raw} is out of range")
            values[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
        return values

    def condition(self, name):
        if name not in self.conditions:
            if name not in self.template.get("Conditions", {}):
                raise Refused(f"unknown condition {name}")
            self.conditions[name] = self.evaluate(self.template["Conditions"][name], f"Conditions.{name}", "condition")
        return self.conditions[name]

    def ref(self, name, path):
        if name in PSEUDO:
            return PSEUDO[name]
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"].get(name)
        if resource is None:
            raise Refused(f"{path}: Ref to unknown {name}")
        if resource["Type"] == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{STACK}-{name}"
        return f"{STACK}-{name}"

    def get_att(self, resource, attribute, path):
        declared = self.template["Resources"].get(resource)
        if declared is None:
            raise Refused(f"{path}: GetAtt of unknown resource {resource}")
        name = f"{STACK}-{resource}"
        if attribute == "Arn" and declared["Type"] in ARN_OF:
            return ARN_OF[declared["Type"]].format(p=PARTITION, r=REGION, a=ACCOUNT, name=name)
        if attribute == "QueueName":
            return name
        raise Refused(f"{path}: attribute {resource}.{attribute} is not modelled")

    def literal(self, value, path, what):
        """`value`, which must hold no function."""
        items = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else []
        if function_of(value) is not None or any(function_of(item) is not None for item in items):
            raise Refused(f"{path}: {what} must be a plain value, not a function")
        return value

    def evaluate(self, value, path, where="value"):
        """`where`: "value" (resource properties, outputs), "condition" or "rule"."""
        function = function_of(value)
        if function is None:
            if isinstance(value, dict):
                out = {}
                for key, item in value.items():
                    resolved = self.evaluate(item, f"{path}.{key}", where)
                    if resolved is not NO_VALUE:
                        out[key] = resolved
                return out
            if isinstance(value, list):
                items = [self.evaluate(item, f"{path}[{i}]", where) for i, item in enumerate(value)]
                return [item for item in items if item is not NO_VALUE]
            return value
        argument = value[function]
        allowed = {"value": VALUE_FUNCTIONS, "condition": VALUE_FUNCTIONS | CONDITION_FUNCTIONS, "rule": RULE_FUNCTIONS}[where]
        if function not in allowed:
            raise Refused(f"{path}: {function} cannot be used here ({where})")

        def arg(item, suffix, kinds=None):
            inner = function_of(item)
            if kinds is not None and inner is not None and inner not in kinds:
                raise Refused(f"{path}.{function}{suffix}: {inner} is not allowed in this argument of {function}")
            return self.evaluate(item, f"{path}.{function}{suffix}", where)

        if function == "Ref":
            self.literal(argument, path, "Ref's name")
            return self.ref(argument, path)
        if function == "Condition":
            return self.condition(self.literal(argument, path, "a condition name"))
        if function == "Fn::If":
            name, then, otherwise = argument
            self.literal(name, path, "Fn::If's condition name")
            return arg(then, "[1]") if self.condition(name) else arg(otherwise, "[2]")
        if function == "Fn::Sub":
            if isinstance(argument, str):
                template, variables = argument, {}
            else:
                template, variables = argument
            self.literal(template, f"{path}.Fn::Sub[0]", "Fn::Sub's string")
            if not isinstance(template, str):
                raise Refused(f"{path}: Fn::Sub's string must be a string")
            values = {key: arg(item, f"[1].{key}", VALUE_FUNCTIONS - {"Fn::Split"}) for key, item in variables.items()}

            def substitute(match):
                name = match.group(1)
                if name.startswith("!"):
                    return "${" + name[1:] + "}"
                if name in values:
                    result = values[name]
                elif "." in name:
                    result = self.get_att(*name.split(".", 1), path)
                else:
                    result = self.ref(name, path)
                if not isinstance(result, str):
                    raise Refused(f"{path}: Fn::Sub variable {name} is not a string: {result!r}")
                return result

            return re.sub(r"\$\{([^}]+)\}", substitute, template)
        if function == "Fn::Join":
            delimiter, items = argument
            if not isinstance(delimiter, str):
                raise Refused(f"{path}.Fn::Join[0]: the delimiter must be a plain string (\"You must specify a string value\")")
            items = arg(items, "[1]", VALUE_FUNCTIONS - {"Fn::Base64"})
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise Refused(f"{path}: Fn::Join needs a list of strings, got {items!r}")
            return delimiter.join(items)
        if function == "Fn::Split":
            delimiter, source = argument
            if not isinstance(delimiter, str):
                raise Refused(f"{path}.Fn::Split[0]: the delimiter must be a plain string")
            source = arg(source, "[1]", VALUE_FUNCTIONS - {"Fn::Split"})
            if not isinstance(source, str):
                raise Refused(f"{path}: Fn::Split needs a string, got {source!r}")
            return source.split(delimiter)
        if function == "Fn::Select":
            index, items = argument
            index = int(arg(index, "[0]", {"Ref", "Fn::FindInMap"}))
            items = arg(items, "[1]", {"Fn::FindInMap", "Fn::GetAtt", "Fn::GetAZs", "Fn::If", "Fn::Split", "Ref"})
            if not 0 <= index < len(items):
                raise Refused(f"{path}: Fn::Select index {index} out of range")
            return items[index]
        if function == "Fn::FindInMap":
            keys = [arg(item, f"[{i}]", {"Fn::FindInMap", "Ref"}) for i, item in enumerate(argument)]
            try:
                return self.template["Mappings"][keys[0]][keys[1]][keys[2]]
            except KeyError as missing:
                raise Refused(f"{path}: no mapping for {keys}") from missing
        if function == "Fn::GetAtt":
            resource, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
            return self.get_att(resource, attribute, path)
        if function == "Fn::Equals":
            left, right = (arg(item, f"[{i}]") for i, item in enumerate(argument))
            return left == right
        if function == "Fn::Not":
            return not arg(argument[0], "[0]")
        if function == "Fn::And":
            return all(arg(item, f"[{i}]") for i, item in enumerate(argument))
        if function == "Fn::Or":
            return any(arg(item, f"[{i}]") for i, item in enumerate(argument))
        if function == "Fn::Contains":
            values, item = (arg(x, f"[{i}]") for i, x in enumerate(argument))
            return item in values
        if function == "Fn::EachMemberEquals":
            values, item = (arg(x, f"[{i}]") for i, x in enumerate(argument))
            return all(v == item for v in values)
        if function == "Fn::EachMemberIn":
            values, allowed_values = (arg(x, f"[{i}]") for i, x in enumerate(argument))
            return all(v in allowed_values for v in values)
        raise Refused(f"{path}: {function} is not modelled")

    def check_rules(self):
        for name, rule in self.template.get("Rules", {}).items():
            if "RuleCondition" in rule and not self.evaluate(rule["RuleCondition"], f"Rules.{name}.RuleCondition", "rule"):
                continue
            for i, assertion in enumerate(rule["Assertions"]):
                if not self.evaluate(assertion["Assert"], f"Rules.{name}.Assertions[{i}]", "rule"):
                    raise Refused(f"rule {name}: {assertion.get('AssertDescription', 'assertion failed')}")

    def resources(self):
        out = {}
        for name, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            resource = copy.deepcopy(resource)
            resource["Properties"] = self.evaluate(resource.get("Properties", {}), f"Resources.{name}.Properties")
            out[name] = resource
        return out

    def outputs(self):
        out = {}
        for name, output in self.template.get("Outputs", {}).items():
            if "Condition" in output and not self.condition(output["Condition"]):
                continue
            out[name] = self.evaluate(output["Value"], f"Outputs.{name}.Value")
        return out


def deployed(overrides=None, template=None):
    """(resources, outputs) as CloudFormation would create them with these parameter values;
    raises Refused where it would refuse."""
    stack = Stack(template if template is not None else sam_transformed(), overrides or {})
    stack.check_rules()
    return stack.resources(), stack.outputs()


def policies(resources):
    """Every IAM policy document the stack creates: (where, document, kind), kind being
    "identity" or "resource"."""
    found = []
    for name, resource in resources.items():
        properties = resource["Properties"]
        if resource["Type"] == "AWS::IAM::Role":
            found.append((f"{name}.AssumeRolePolicyDocument", properties["AssumeRolePolicyDocument"], "resource"))
            for policy in properties.get("Policies", []):
                found.append((f"{name}.{policy['PolicyName']}", policy["PolicyDocument"], "identity"))
        elif resource["Type"] in ("AWS::SQS::QueuePolicy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            found.append((name, properties["PolicyDocument"], "resource" if "QueuePolicy" in resource["Type"] else "identity"))
    return found
