"""Who may call what: the permissions of a session made by AssumeRole, as IAM evaluates its
role's policies, and the trust policy AssumeRole itself checks. Moto authorises everything; these
checks are what `lifeboat drill` proves a deployment by, so the local AWS has them for every
caller whose credentials came from AssumeRole (the tests' own credentials stay all-powerful, as
an administrator's would).

Modelled, each from its AWS page:
- Policy evaluation (IAM User Guide, "Policy evaluation logic"): a request is allowed only when
  an identity policy statement allows its action and no statement denies it; an explicit deny
  wins; with no allowing statement the answer is an implicit deny. Actions match with the `*`
  and `?` wildcards, case-insensitively ("IAM JSON policy elements: Action"). Resources and
  conditions are not evaluated: the drill sends every call with the resources and tags the
  rescue sends, so they would agree; a statement's resource or condition scoping that the real
  account would refuse is the one thing the drill on a real account sees and this does not.
- AssumeRole (STS API reference, "AssumeRole"; IAM User Guide, "Role trust policies"): refused
  with AccessDenied unless the role exists and its trust policy allows sts:AssumeRole to an AWS
  principal of the caller's account. Moto assumes any ARN, existing or not.
- A refused EC2 call is `UnauthorizedOperation` (403); a refused Auto Scaling or STS call is
  `AccessDenied` (403) (EC2 API reference, "Error codes"; Auto Scaling API reference, "Common
  errors").
- DryRun (EC2 API reference, "Error codes" and every action's DryRun parameter): checks the
  permission without making the request: `DryRunOperation` (412) when it would have been
  allowed, `UnauthorizedOperation` when not. It never reaches moto or the harness's patches, so
  a dry run changes nothing, not even the ledger.
"""

import fnmatch
import json
import urllib.parse

from . import state as st


def _statements(document):
    if isinstance(document, str):
        document = json.loads(urllib.parse.unquote(document)) if document.strip() else {}
    statements = document.get("Statement", [])
    return statements if isinstance(statements, list) else [statements]


def _listed(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _matches(patterns, action):
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in patterns)


def _covers(statement, action):
    if "NotAction" in statement:
        return not _matches(_listed(statement["NotAction"]), action)
    return _matches(_listed(statement.get("Action")), action)


def _iam():
    from moto.iam.models import iam_backends

    return iam_backends[st.ACCOUNT]["aws"]


def _role(arn):
    try:
        return _iam().get_role_by_arn(arn)
    except Exception:  # moto's NotFoundException: no such role
        return None


def session_role(access_key_id):
    """The role ARN whose AssumeRole made these credentials, or None for any other caller."""
    from moto.sts.models import sts_backends

    for assumed in sts_backends[st.ACCOUNT]["aws"].assumed_roles:
        if assumed.access_key_id == access_key_id:
            return assumed.role_arn
    return None


def allowed(role_arn, action):
    """Whether the role's identity policies allow `action` (`ec2:CreateSnapshots`)."""
    role = _role(role_arn)
    if role is None:
        return False
    documents = list(role.policies.values())
    documents += [p.document for p in role.managed_policies.values()]
    allow = False
    for document in documents:
        for statement in _statements(document):
            if not _covers(statement, action):
                continue
            if statement.get("Effect") == "Deny":
                return False
            if statement.get("Effect") == "Allow":
                allow = True
    return allow


def trusts(role_arn):
    """Whether the role's trust policy lets a principal of this account assume it."""
    role = _role(role_arn)
    if role is None:
        return False
    for statement in _statements(role.assume_role_policy_document):
        if statement.get("Effect") != "Allow" or not _matches(_listed(statement.get("Action")), "sts:AssumeRole"):
            continue
        principal = statement.get("Principal")
        aws = _listed(principal.get("AWS")) if isinstance(principal, dict) else _listed(principal)
        if any(p == "*" or f":{st.ACCOUNT}:" in str(p) or str(p) == st.ACCOUNT for p in aws):
            return True
    return False


def refusal(service, operation, form, access_key_id):
    """None when the call may go on; else (status, code, message) for the refusal."""
    if service == "sts" and operation == "AssumeRole":
        role_arn = (form.get("RoleArn") or [""])[0]
        if trusts(role_arn):
            return None
        return (
            "403 Forbidden",
            "AccessDenied",
            f"User: arn:aws:iam::{st.ACCOUNT}:user/operator is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
        )
    role_arn = session_role(access_key_id)
    if role_arn is None:
        return None
    action = f"{service}:{operation}"
    if allowed(role_arn, action):
        return None
    code = "UnauthorizedOperation" if service == "ec2" else "AccessDenied"
    session = role_arn.replace(":iam::", ":sts::").replace(":role/", ":assumed-role/")
    return ("403 Forbidden", code, f"You are not authorized to perform this operation. User: {session}/drill is not authorized to perform: {action}")


def dry_run(service, form):
    """Whether this is an EC2 call with DryRun=true."""
    return service == "ec2" and (form.get("DryRun") or ["false"])[0].lower() == "true"
