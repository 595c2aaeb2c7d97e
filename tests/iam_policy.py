"""IAM, as far as the least-privilege tests need it: the action(s) and resource each recorded
AWS call needs, and each function's policy in template.yaml that must allow it.

Calls are the records of `local_stack.call_recorder` ({"function", "service",
"operation", "params"}); policies are read with the local stack's template reader (`!Sub`,
`!Ref`, `!GetAtt` resolved). Both least-privilege tests use this module: the unit test
(handlers on sample events, in moto) and the integration test (the running local stack).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from local_stack.template import Stack

# S3 operations whose IAM action has another name (anything else: s3:<Operation>).
S3_ACTIONS = {
    "HeadObject": "GetObject",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "HeadBucket": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "AbortMultipartUpload": "AbortMultipartUpload",
}
# What S3 answers a read of a missing object when the caller may list the bucket; without
# s3:ListBucket the answer is 403 AccessDenied, and the functions' "not found" paths break.
MISSING = ("NoSuchKey", "404", "NotFound")
DATA_BUCKETS = ("inktex-data-", "inktex-models-", "inktex-dvc-")
# Actions that take no resource in IAM: Resource "*" is the only way to grant them.
RESOURCE_FREE = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


# The functions in template.yaml whose policies the tests measure.
FUNCTIONS = (
    "ApiFunction",
    "UploadInferenceFunction",
    "MetricsFunction",
    "FeedbackTriggerFunction",
    "TrainingEventsFunction",
)


@dataclass(frozen=True)
class Need:
    """One IAM action on one resource that a call needs; `keys` are its condition keys."""

    action: str
    resource: str
    keys: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.action} on {self.resource}" + (f" {dict(self.keys)}" if self.keys else "")


@dataclass(frozen=True)
class Grant:
    """One action x one resource pattern of a policy statement."""

    sid: str
    action: str
    resource: str

    def __str__(self) -> str:
        return f"{self.sid}: {self.action} on {self.resource}"


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def s3_needs(operation: str, params: dict, error: str | None = None) -> list[Need]:
    bucket, key = params.get("Bucket", ""), params.get("Key")
    if error in MISSING and operation in ("GetObject", "HeadObject", "CopyObject"):
        source = params.get("CopySource", params)
        if isinstance(source, str):
            source = dict(zip(("Bucket", "Key"), source.lstrip("/").split("/", 1), strict=True))
        # the listing S3 checks is of the key itself (a prefix-bound ListBucket answers 404
        # under its prefix: observed, not documented)
        listing = (("s3:prefix", source["Key"]),)
        seen = Need("s3:ListBucket", f"arn:aws:s3:::{source['Bucket']}", listing)
        return [*s3_needs(operation, params), seen]
    action = S3_ACTIONS.get(operation, operation)
    if operation in ("GetObject", "HeadObject", "DeleteObject") and params.get("VersionId"):
        action += "Version"
    if operation == "CopyObject":
        source = params["CopySource"]
        if isinstance(source, str):
            source = dict(zip(("Bucket", "Key"), source.lstrip("/").split("/", 1), strict=True))
        get = "GetObjectVersion" if source.get("VersionId") else "GetObject"
        return [
            Need(f"s3:{get}", f"arn:aws:s3:::{source['Bucket']}/{source['Key']}"),
            Need("s3:PutObject", f"arn:aws:s3:::{bucket}/{key}"),
        ]
    if operation == "DeleteObjects":  # one s3:DeleteObject(Version) per key
        return [
            Need(
                "s3:DeleteObjectVersion" if o.get("VersionId") else "s3:DeleteObject",
                f"arn:aws:s3:::{bucket}/{o['Key']}",
            )
            for o in params["Delete"]["Objects"]
        ]
    if key is None:  # a bucket-level call: a listing's prefix is a condition key
        keys = (("s3:prefix", params["Prefix"]),) if "Prefix" in params else ()
        return [Need(f"s3:{action}", f"arn:aws:s3:::{bucket}", keys)]
    return [Need(f"s3:{action}", f"arn:aws:s3:::{bucket}/{key}")]


def secret_arn(stack: Stack, secret: str, suffix: str = "AbCdEf") -> str:
    """A secret's ARN (ending in a random 6-character suffix) from its name or ARN: `!Ref`
    gives the ARN in AWS, the name in the local stack; a call may name it either way."""
    if secret.startswith("arn:"):
        return secret
    return f"arn:aws:secretsmanager:{stack.region}:{stack.account_id}:secret:{secret}-{suffix}"


def needs(stack: Stack, call: dict) -> list[Need]:
    """What IAM must allow for one recorded call (presigned or sent: the same)."""
    service, operation, params = call["service"], call["operation"], call["params"]
    if service == "s3":
        return s3_needs(operation, params, call.get("error"))
    if service == "ssm":
        names = as_list(params.get("Names") or params.get("Name") or params.get("Path"))
        arn = f"arn:aws:ssm:{stack.region}:{stack.account_id}:parameter/"
        return [Need(f"ssm:{operation}", arn + n.lstrip("/")) for n in names]
    if service == "secretsmanager":
        return [Need(f"secretsmanager:{operation}", secret_arn(stack, params["SecretId"]))]
    if service == "sagemaker" and operation == "CreateTrainingJob":
        job = params["TrainingJobName"].lower()
        arn = f"arn:aws:sagemaker:{stack.region}:{stack.account_id}:training-job/{job}"
        out = [Need("sagemaker:CreateTrainingJob", arn)]
        if params.get("Tags"):
            out.append(Need("sagemaker:AddTags", arn))
        passed = (("iam:PassedToService", "sagemaker.amazonaws.com"),)
        return [*out, Need("iam:PassRole", params["RoleArn"], passed)]
    return [Need(f"{service}:{operation}", "*")]  # unknown here: only Resource "*" allows it


def statements(stack: Stack, logical_id: str) -> list[dict]:
    """The Allow statements of a function's (or role's) inline policies, resolved."""
    props = stack.resources[logical_id]["Properties"]
    documents = [p.get("PolicyDocument", p) for p in props.get("Policies") or []]
    found = []
    for policy in stack.resolve(documents):
        if isinstance(policy, dict):
            found += [s for s in policy.get("Statement", []) if s.get("Effect") == "Allow"]
    return found


def _patterns(statement: dict, action: str, stack: Stack) -> list[str]:
    patterns = as_list(statement["Resource"])
    if action.startswith("secretsmanager:"):
        patterns = [secret_arn(stack, r, "??????") for r in patterns]
    return patterns


def condition_holds(statement: dict, keys: dict) -> bool:
    """StringEquals / StringLike, as IAM reads them: a key the request lacks fails."""
    for operator, tests in (statement.get("Condition") or {}).items():
        match = fnmatch.fnmatchcase if operator == "StringLike" else str.__eq__
        for key, wanted in tests.items():
            if key not in keys or not any(match(keys[key], w) for w in as_list(wanted)):
                return False
    return True


def grants_need(statement: dict, action: str, resource: str, need: Need) -> bool:
    return (
        fnmatch.fnmatchcase(need.action, action)
        and fnmatch.fnmatchcase(need.resource, resource)
        and condition_holds(statement, dict(need.keys))
    )


def allowed(stack: Stack, stmts: list[dict], need: Need) -> bool:
    return any(
        grants_need(s, action, resource, need)
        for s in stmts
        for action in as_list(s["Action"])
        for resource in _patterns(s, need.action, stack)
    )


def grants(stack: Stack, stmts: list[dict]) -> list[tuple[Grant, dict]]:
    """Each statement's action x resource pattern, with its statement."""
    return [
        (Grant(s.get("Sid", "?"), action, resource), s)
        for s in stmts
        for action in as_list(s["Action"])
        for resource in _patterns(s, action, stack)
    ]


def by_function(calls: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for call in calls:
        out.setdefault(call["function"], []).append(call)
    return out


def denied(stack: Stack, calls: list[dict]) -> dict[str, list[str]]:
    """{function: needs its own policy does not allow} over the recorded calls."""
    out = {}
    for function, its_calls in by_function(calls).items():
        stmts = statements(stack, function)
        missing = {
            str(n) for c in its_calls for n in needs(stack, c) if not allowed(stack, stmts, n)
        }
        if missing:
            out[function] = sorted(missing)
    return out


def unused(stack: Stack, calls: list[dict], functions, excused=lambda f, g: False):
    """{function: grants no recorded call of that function needed}, less the excused ones."""
    out = {}
    calls_of = by_function(calls)
    for function in functions:
        its_needs = [n for c in calls_of.get(function, []) for n in needs(stack, c)]
        idle = [
            str(grant)
            for grant, s in grants(stack, statements(stack, function))
            if not any(grants_need(s, grant.action, grant.resource, n) for n in its_needs)
            and not excused(function, grant)
        ]
        if idle:
            out[function] = idle
    return out


def broad_grants(stack: Stack, logical_id: str) -> list[str]:
    """Statements that grant everything, a whole service, any resource, or a whole data,
    model or DVC bucket's objects (`bucket/*`)."""
    found = []
    for s in statements(stack, logical_id):
        actions, resources = as_list(s["Action"]), as_list(s.get("Resource", []))
        if "*" in actions or any(a.endswith(":*") for a in actions):
            found.append(f"{logical_id} {s.get('Sid')}: every action of {actions}")
        for r in resources:
            if r == "*" and not all(a in RESOURCE_FREE for a in actions):
                found.append(f"{logical_id} {s.get('Sid')}: Resource *")
            if isinstance(r, str) and r.startswith("arn:aws:s3:::"):
                bucket, _, key = r.removeprefix("arn:aws:s3:::").partition("/")
                if "*" in bucket or (bucket.startswith(DATA_BUCKETS) and key == "*"):
                    found.append(f"{logical_id} {s.get('Sid')}: {r}")
    return found
