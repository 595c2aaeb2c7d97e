"""`template.yaml`, read as CloudFormation reads it: the local stack's only source of resources.

`load_template` reads it with cfn-lint's template decoder, the short-form intrinsic tags
(`!Ref`, `!Sub`, `!GetAtt`, `!If`, ...) turned into their long forms; `Stack` resolves
intrinsics against parameter values, pseudo parameters and the physical names the local
stack gives resources, and answers what the local stack needs: buckets, SSM parameters,
queues, the HTTP API's routes, authorizer, CORS and throttling, each function's
environment, S3 notifications and EventBridge rules. Nothing here is a second list of
resources: add one to the template and the local stack has it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inktex.errors import InkTeXError

ACCOUNT_ID = "123456789012"  # moto's default account
REGION = "us-east-1"


class TemplateError(InkTeXError):
    """template.yaml uses something the local stack cannot resolve."""


def load_template(path: Path) -> dict:
    """A CloudFormation template as plain data, read by cfn-lint's decoder: YAML or JSON,
    with the short-form tags in their long forms (`!Ref X` -> {"Ref": "X"}, `!GetAtt A.B`
    -> {"Fn::GetAtt": ["A", "B"]}, `!Sub`, `!If`, ...). A template it cannot read (bad
    YAML, a duplicate key) is a TemplateError with its messages."""
    # imported here: cfn-lint loads the libraries of all its rules (seconds), so only the
    # commands that read the template pay for it
    from cfnlint.decode import decode

    template, problems = decode(str(path))
    if problems or template is None:
        raise TemplateError(f"{path}: " + "; ".join(p.message for p in problems or []))
    return _plain(template)


def _plain(value: Any) -> Any:
    """cfn-lint's nodes (dict, list and str subclasses that carry line numbers) as the
    builtin types, so nothing downstream depends on cfn-lint's classes."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


@dataclass(frozen=True)
class Route:
    method: str  # "GET", or "ANY"
    path: str  # "/predictions/{prediction_id}"
    function: str  # logical id
    authorizer: str | None  # None: open route

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Throttle:
    rate: float  # requests per second (steady state)
    burst: int


@dataclass(frozen=True)
class JwtAuthorizer:
    name: str
    issuer: str
    audience: list[str]
    identity_source: str  # "$request.header.Authorization"


@dataclass(frozen=True)
class Cors:
    allow_origins: list[str]
    allow_headers: list[str]
    allow_methods: list[str]
    max_age: int | None


@dataclass
class HttpApi:
    logical_id: str
    routes: list[Route] = field(default_factory=list)
    authorizers: dict[str, JwtAuthorizer] = field(default_factory=dict)
    default_throttle: Throttle | None = None
    route_throttles: dict[str, Throttle] = field(default_factory=dict)
    cors: Cors | None = None

    def throttle_for(self, route_key: str) -> Throttle | None:
        return self.route_throttles.get(route_key, self.default_throttle)


@dataclass(frozen=True)
class S3Notification:
    function: str
    name: str  # the event's name under the function's Events
    bucket: str
    events: list[str]
    filter_rules: list[dict]  # [{"Name": "prefix", "Value": "uploads/"}]
    max_retries: int
    on_failure: str | None  # an SQS queue ARN


@dataclass(frozen=True)
class EventRule:
    function: str
    name: str
    pattern: dict


@dataclass(frozen=True)
class Function:
    logical_id: str
    name: str
    handler: str  # "functions.api.app.lambda_handler"
    environment: dict[str, str]
    timeout_s: int
    memory_mb: int


class Stack:
    """The template, resolved for one account, region and set of parameter values."""

    def __init__(
        self,
        template: dict,
        overrides: dict[str, str] | None = None,
        stack_name: str = "inktex-local",
        account_id: str = ACCOUNT_ID,
        region: str = REGION,
    ):
        self.template = template
        self.resources: dict[str, dict] = template.get("Resources", {})
        self.stack_name, self.account_id, self.region = stack_name, account_id, region
        self.parameters = self._parameters(overrides or {})
        self.conditions = {
            name: bool(self.resolve(expr))
            for name, expr in (template.get("Conditions") or {}).items()
        }

    @classmethod
    def from_file(cls, path: Path, overrides: dict[str, str] | None = None, **kw) -> Stack:
        return cls(load_template(path), overrides, **kw)

    # --- intrinsics -------------------------------------------------------------------------

    def _parameters(self, overrides: dict[str, str]) -> dict[str, Any]:
        declared = self.template.get("Parameters") or {}
        unknown = set(overrides) - set(declared)
        if unknown:
            raise TemplateError(f"template.yaml declares no parameter {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            value = overrides.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default: pass it as an override")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [v.strip() for v in value.split(",") if v.strip()]
            values[name] = value
        values.update(
            {
                "AWS::AccountId": self.account_id,
                "AWS::Region": self.region,
                "AWS::Partition": "aws",
                "AWS::URLSuffix": "amazonaws.com",
                "AWS::StackName": self.stack_name,
                "AWS::NoValue": None,
            }
        )
        return values

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name not in self.resources:
            raise TemplateError(f"!Ref {name}: no such parameter or resource in template.yaml")
        return self.physical_id(name)

    def physical_id(self, logical_id: str) -> str:
        """What `!Ref` gives for a resource, as the local stack names it."""
        resource = self.resources[logical_id]
        kind, props = resource["Type"], resource.get("Properties") or {}
        if kind == "AWS::S3::Bucket":
            return (
                self.resolve(props.get("BucketName")) or f"{self.stack_name}-{logical_id}".lower()
            )
        if kind == "AWS::SSM::Parameter":
            return self.resolve(props["Name"])
        if kind == "AWS::SecretsManager::Secret":  # an ARN in AWS; the name works as an id too
            return self.resolve(props.get("Name")) or f"{self.stack_name}-{logical_id}"
        if kind == "AWS::SQS::Queue":
            return f"http://sqs.{self.region}.localhost/{self.account_id}/{self.queue_name(logical_id)}"
        if kind == "AWS::Cognito::UserPool":
            return f"{self.region}_inktexlocal"
        if kind == "AWS::Cognito::UserPoolClient":
            return "inktexlocalclient"
        if kind == "AWS::Serverless::Function":
            return f"{self.stack_name}-{logical_id}"
        return f"{self.stack_name}-{logical_id}"

    def queue_name(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties") or {}
        return self.resolve(props.get("QueueName")) or f"{self.stack_name}-{logical_id}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind = self.resources[logical_id]["Type"]
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{self.physical_id(logical_id)}"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.queue_name(logical_id)}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return self.queue_name(logical_id)
        if kind == "AWS::Serverless::Function" and attribute == "Arn":
            name = self.physical_id(logical_id)
            return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{name}"
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            props = self.resources[logical_id].get("Properties") or {}
            name = self.resolve(props.get("RoleName")) or f"{self.stack_name}-{logical_id}"
            return f"arn:aws:iam::{self.account_id}:role/{name}"
        if kind == "AWS::CloudFront::Distribution" and attribute == "DomainName":
            # No CloudFront here (the gateway serves web/ itself): a name that resolves nowhere.
            return f"{self.physical_id(logical_id).lower()}.cloudfront.invalid"
        raise TemplateError(f"!GetAtt {logical_id}.{attribute}: the local stack cannot resolve it")

    def resolve(self, value: Any) -> Any:
        """Evaluate every intrinsic function inside `value`."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self.ref(arg)
            if fn == "Fn::GetAtt":
                return self.get_att(*arg)
            if fn == "Fn::Sub":
                return self._sub(arg)
            if fn == "Fn::If":
                cond, yes, no = arg
                return self.resolve(yes if self.conditions[cond] else no)
            if fn == "Fn::Equals":
                a, b = self.resolve(arg)
                return str(a) == str(b)
            if fn == "Fn::Not":
                return not self.resolve(arg[0])
            if fn == "Fn::And":
                return all(self.resolve(arg))
            if fn == "Fn::Or":
                return any(self.resolve(arg))
            if fn == "Condition":
                return self.conditions[arg]
            if fn == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self.resolve(items))
            if fn == "Fn::Select":
                index, items = self.resolve(arg)
                return items[int(index)]
            if fn == "Fn::Split":
                sep, text = self.resolve(arg)
                return text.split(sep)
            if fn.startswith("Fn::"):
                raise TemplateError(f"{fn} is not supported by the local stack")
        return {k: self.resolve(v) for k, v in value.items()}

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def one(match: re.Match) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    # --- what the local stack creates -----------------------------------------------------

    def of_type(self, kind: str) -> dict[str, dict]:
        return {k: r for k, r in self.resources.items() if r["Type"] == kind}

    def buckets(self) -> dict[str, dict]:
        """logical id -> {"name", "versioned"}."""
        found = {}
        for logical_id, resource in self.of_type("AWS::S3::Bucket").items():
            props = self.resolve(resource.get("Properties") or {})
            status = (props.get("VersioningConfiguration") or {}).get("Status")
            found[logical_id] = {
                "name": self.physical_id(logical_id),
                "versioned": status == "Enabled",
            }
        return found

    def ssm_parameters(self) -> dict[str, dict]:
        """logical id -> {"name", "type", "value", "description"}."""
        found = {}
        for logical_id, resource in self.of_type("AWS::SSM::Parameter").items():
            props = self.resolve(resource["Properties"])
            found[logical_id] = {
                "name": props["Name"],
                "type": props.get("Type", "String"),
                "value": str(props["Value"]),
                "description": props.get("Description", ""),
            }
        return found

    def secrets(self) -> dict[str, dict]:
        """logical id -> {"name", "description", "length"} (the value is generated locally)."""
        found = {}
        for logical_id, resource in self.of_type("AWS::SecretsManager::Secret").items():
            props = self.resolve(resource.get("Properties") or {})
            generate = props.get("GenerateSecretString") or {}
            found[logical_id] = {
                "name": self.physical_id(logical_id),
                "description": props.get("Description", ""),
                "length": int(generate.get("PasswordLength", 32)),
            }
        return found

    def queues(self) -> dict[str, str]:
        """logical id -> queue name."""
        return {k: self.queue_name(k) for k in self.of_type("AWS::SQS::Queue")}

    def globals_function(self) -> dict:
        return (self.template.get("Globals") or {}).get("Function") or {}

    def functions(self) -> dict[str, Function]:
        g = self.globals_function()
        g_env = ((g.get("Environment") or {}).get("Variables")) or {}
        found = {}
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = resource.get("Properties") or {}
            env = {**g_env, **(((props.get("Environment") or {}).get("Variables")) or {})}
            resolved = {k: v for k, v in self.resolve(env).items() if v is not None}
            found[logical_id] = Function(
                logical_id=logical_id,
                name=self.physical_id(logical_id),
                handler=props.get("Handler", g.get("Handler")),
                environment={k: str(v) for k, v in resolved.items()},
                timeout_s=int(self.resolve(props.get("Timeout", g.get("Timeout", 3)))),
                memory_mb=int(self.resolve(props.get("MemorySize", g.get("MemorySize", 128)))),
            )
        return found

    def _events(self, kind: str):
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = resource.get("Properties") or {}
            for name, event in (props.get("Events") or {}).items():
                if event.get("Type") == kind:
                    yield logical_id, props, name, event.get("Properties") or {}

    def s3_notifications(self) -> list[S3Notification]:
        found = []
        for logical_id, props, name, ev in self._events("S3"):
            invoke = self.resolve(props.get("EventInvokeConfig") or {})
            events = ev["Events"] if isinstance(ev["Events"], list) else [ev["Events"]]
            rules = ((self.resolve(ev.get("Filter") or {}).get("S3Key")) or {}).get("Rules") or []
            found.append(
                S3Notification(
                    function=logical_id,
                    name=name,
                    bucket=self.resolve(ev["Bucket"]),
                    events=[str(e) for e in events],
                    filter_rules=[{"Name": r["Name"], "Value": r["Value"]} for r in rules],
                    max_retries=int(invoke.get("MaximumRetryAttempts", 2)),
                    on_failure=((invoke.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                        "Destination"
                    ),
                )
            )
        return found

    def event_rules(self) -> list[EventRule]:
        return [
            EventRule(logical_id, name, self.resolve(ev["Pattern"]))
            for logical_id, _, name, ev in self._events("EventBridgeRule")
        ]

    def http_api(self) -> HttpApi:
        apis = self.of_type("AWS::Serverless::HttpApi")
        if len(apis) != 1:
            raise TemplateError(
                f"the local stack serves one HttpApi; template.yaml has {len(apis)}"
            )
        ((api_id, resource),) = apis.items()
        props = resource.get("Properties") or {}
        api = HttpApi(logical_id=api_id)
        auth = props.get("Auth") or {}
        for name, spec in (auth.get("Authorizers") or {}).items():
            jwt = self.resolve(spec.get("JwtConfiguration") or {})
            api.authorizers[name] = JwtAuthorizer(
                name=name,
                issuer=jwt["issuer"],
                audience=list(jwt.get("audience") or []),
                identity_source=spec.get("IdentitySource", "$request.header.Authorization"),
            )
        default_auth = auth.get("DefaultAuthorizer")
        for logical_id, _, _, ev in self._events("HttpApi"):
            if "ApiId" in ev and ev["ApiId"] != {"Ref": api_id}:
                continue
            chosen = (ev.get("Auth") or {}).get("Authorizer", default_auth)
            api.routes.append(
                Route(
                    method=str(ev.get("Method", "ANY")).upper(),
                    path=ev.get("Path", "/{proxy+}"),
                    function=logical_id,
                    authorizer=None if chosen in (None, "NONE") else chosen,
                )
            )
        api.default_throttle = _throttle(self.resolve(props.get("DefaultRouteSettings")))
        for key, spec in (self.resolve(props.get("RouteSettings")) or {}).items():
            if (throttle := _throttle(spec)) is not None:
                api.route_throttles[key] = throttle
        cors = self.resolve(props.get("CorsConfiguration"))
        if cors:
            api.cors = Cors(
                allow_origins=list(cors.get("AllowOrigins") or []),
                allow_headers=[h.lower() for h in cors.get("AllowHeaders") or []],
                allow_methods=[m.upper() for m in cors.get("AllowMethods") or []],
                max_age=cors.get("MaxAge"),
            )
        return api

    def outputs(self) -> dict[str, Any]:
        found = {}
        for name, spec in (self.template.get("Outputs") or {}).items():
            try:
                found[name] = self.resolve(spec["Value"])
            except TemplateError:
                continue
        return found


def _throttle(settings: dict | None) -> Throttle | None:
    if not settings or "ThrottlingRateLimit" not in settings:
        return None
    rate = float(settings["ThrottlingRateLimit"])
    return Throttle(rate=rate, burst=int(settings.get("ThrottlingBurstLimit", rate)))
