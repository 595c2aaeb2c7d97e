"""Publishes the web UI after `sam deploy`: config.json from the stack's outputs and the
request limits in template.yaml, the page's files synced to the web bucket, the CloudFront
cache invalidated (`make deploy` runs it).

    python infra/deploy_web.py --config-env dev          # stack and region from samconfig.toml
    python infra/deploy_web.py --stack-name inktex-dev --region eu-west-1 --dry-run

Only what the page loads is published (`index.html`, `favicon.svg`, `app/`, `styles/`,
`vendor/`) plus the rendered `config.json`: never `node_modules/`, `scripts/`, `package*.json`
or a local `config.json`. Like `aws s3 sync --delete`, unchanged files are not uploaded
again (their MD5 is the object's ETag) and objects no longer in the site are removed. Every
object gets its content type (ES modules load only as JavaScript) and a Cache-Control:
`vendor/` (KaTeX, pinned) for a week, everything else `no-cache` (revalidated each load), so
a deploy shows at once after the invalidation. boto3 only: no AWS CLI needed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mimetypes
import re
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "web"
SITE_FILES = ("index.html", "favicon.svg")
SITE_DIRS = ("app", "styles", "vendor")
CONFIG_KEY = "config.json"
LONG_CACHE_PREFIXES = ("vendor/",)
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".woff": "font/woff",
    ".ttf": "font/ttf",
    ".txt": "text/plain; charset=utf-8",
}
# The outputs config.json is made of (template.yaml's Outputs).
REQUIRED_OUTPUTS = (
    "ApiUrl",
    "UserPoolDomain",
    "UserPoolId",
    "UserPoolClientId",
    "WebUrl",
    "WebBucketName",
    "WebDistributionId",
)


class DeployError(RuntimeError):
    pass


@dataclass(frozen=True)
class SiteObject:
    key: str
    body: bytes
    content_type: str
    cache_control: str

    @property
    def md5(self) -> str:
        return hashlib.md5(self.body, usedforsecurity=False).hexdigest()


def stack_outputs(cloudformation, stack_name: str) -> dict[str, str]:
    """The stack's outputs by key (DescribeStacks), refusing a stack that lacks any we need."""
    stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [k for k in REQUIRED_OUTPUTS if k not in outputs]
    if missing:
        raise DeployError(
            f"stack {stack_name} has no output {', '.join(missing)}: deploy template.yaml first"
        )
    return outputs


def template_limits(template: Path = REPO / "template.yaml") -> dict:
    """config.json's `limits`: the request sizes the functions enforce, read from their
    environments in template.yaml as they read them (functions/common/limits.py)."""
    from functions.common.limits import limits_of

    return limits_of(function_environments(template))


def function_environments(template: Path) -> dict[str, dict[str, str]]:
    """Each serverless function's variables (Globals', then its own), read with cfn-lint's
    decoder (CloudFormation's tags), `!Ref` and `!Sub` of a parameter at its default; what
    only CloudFormation can resolve (a resource's name, `!If`) is left empty. The limits
    config.json needs are literals in template.yaml."""
    from cfnlint.decode import decode  # imported here: seconds of rule libraries

    decoded, problems = decode(str(template))
    if problems or decoded is None:
        raise DeployError(f"{template}: " + "; ".join(p.message for p in problems or []))
    defaults = {k: str(p.get("Default", "")) for k, p in decoded.get("Parameters", {}).items()}

    def variables(properties: dict) -> dict[str, str]:
        found = ((properties.get("Environment") or {}).get("Variables")) or {}
        return {str(k): _at_defaults(v, defaults) for k, v in found.items()}

    common = variables((decoded.get("Globals") or {}).get("Function") or {})
    return {
        str(name): {**common, **variables(resource.get("Properties") or {})}
        for name, resource in decoded["Resources"].items()
        if resource.get("Type") == "AWS::Serverless::Function"
    }


def _at_defaults(value, defaults: dict[str, str]) -> str:
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return defaults.get(value["Ref"], "")
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([^}!]+)\}", lambda m: defaults.get(m[1], ""), value["Fn::Sub"])
    return "" if isinstance(value, dict | list) else str(value)


def render_config(outputs: dict[str, str], region: str, limits: dict | None = None) -> dict:
    """config.json for AWS (docs/web.md): the API, the hosted UI, the app client, the site,
    and the request limits (`limits`, by default `template_limits()`)."""
    site = outputs["WebUrl"].rstrip("/") + "/"
    config = {
        "apiUrl": outputs["ApiUrl"].rstrip("/"),
        "authUrl": outputs["UserPoolDomain"].rstrip("/"),
        "region": region,
        "userPoolId": outputs["UserPoolId"],
        "userPoolClientId": outputs["UserPoolClientId"],
        "redirectUri": site,  # the app finishes a sign-in on any path; the root is allowed
        "logoutUri": site,
        "scope": "openid email profile",
        "limits": template_limits() if limits is None else limits,
    }
    return config


def content_type(path: str) -> str:
    suffix = Path(path).suffix.lower()
    return TYPES.get(suffix) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def cache_control(key: str) -> str:
    if key.startswith(LONG_CACHE_PREFIXES):
        return "public, max-age=604800"
    return "no-cache"


def site_files(web: Path = WEB) -> list[tuple[Path, str]]:
    """(file, key) for every file the page loads, sorted; hidden files are left out."""
    missing = [name for name in (*SITE_FILES, *SITE_DIRS) if not (web / name).exists()]
    if missing:
        hint = " (run `make install`: npm ci copies KaTeX into web/vendor/)"
        raise DeployError(f"{web} lacks {', '.join(missing)}{hint if 'vendor' in missing else ''}")
    found = [(web / name, name) for name in SITE_FILES]
    for folder in SITE_DIRS:
        for path in sorted((web / folder).rglob("*")):
            rel = path.relative_to(web)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                found.append((path, rel.as_posix()))
    return sorted(found, key=lambda pair: pair[1])


def site_objects(web: Path, config: dict) -> list[SiteObject]:
    objects = [
        SiteObject(key, path.read_bytes(), content_type(key), cache_control(key))
        for path, key in site_files(web)
    ]
    body = (json.dumps(config, indent=2) + "\n").encode()
    objects.append(SiteObject(CONFIG_KEY, body, content_type(CONFIG_KEY), "no-store"))
    return objects


def _existing(s3, bucket: str) -> dict[str, str]:
    """key -> ETag (unquoted) of every object in the bucket."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = obj["ETag"].strip('"')
    return found


def sync(s3, bucket: str, objects: list[SiteObject], dry_run: bool = False) -> dict[str, list]:
    """Uploads new and changed objects, deletes the bucket's others: what it did, by action."""
    existing = _existing(s3, bucket)
    done: dict[str, list] = {"uploaded": [], "unchanged": [], "deleted": []}
    for obj in objects:
        if existing.get(obj.key) == obj.md5:
            done["unchanged"].append(obj.key)
            continue
        if not dry_run:
            s3.put_object(
                Bucket=bucket,
                Key=obj.key,
                Body=obj.body,
                ContentType=obj.content_type,
                CacheControl=obj.cache_control,
            )
        done["uploaded"].append(obj.key)
    stale = sorted(set(existing) - {obj.key for obj in objects})
    if stale and not dry_run:
        for start in range(0, len(stale), 1000):
            batch = [{"Key": key} for key in stale[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
    done["deleted"] = stale
    return done


def invalidate(cloudfront, distribution_id: str) -> str:
    """Invalidates every path (one wildcard path counts as one); the invalidation's id."""
    answer = cloudfront.create_invalidation(
        DistributionId=distribution_id,
        InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]},
            "CallerReference": f"inktex-deploy-{time.time_ns()}",
        },
    )
    return answer["Invalidation"]["Id"]


def samconfig_target(config_env: str, path: Path = REPO / "samconfig.toml") -> tuple[str, str]:
    """(stack name, region) of a samconfig.toml environment."""
    config = tomllib.loads(path.read_text())
    env = config.get(config_env)
    if env is None:
        raise DeployError(f"samconfig.toml has no environment {config_env!r}")
    stack = (env.get("global", {}).get("parameters", {}) or {}).get("stack_name")
    region = (env.get("deploy", {}).get("parameters", {}) or {}).get("region")
    if not stack or not region:
        raise DeployError(f"samconfig.toml's {config_env} lacks stack_name or region")
    return stack, region


def publish(session, stack_name: str, web: Path = WEB, dry_run: bool = False) -> dict:
    """The whole step: outputs -> config.json -> sync -> invalidation. A summary."""
    outputs = stack_outputs(session.client("cloudformation"), stack_name)
    config = render_config(outputs, session.region_name)
    objects = site_objects(web, config)
    done = sync(session.client("s3"), outputs["WebBucketName"], objects, dry_run)
    invalidation = None
    if not dry_run and (done["uploaded"] or done["deleted"]):
        invalidation = invalidate(session.client("cloudfront"), outputs["WebDistributionId"])
    return {
        "url": outputs["WebUrl"],
        "bucket": outputs["WebBucketName"],
        "config": config,
        "invalidation": invalidation,
        **{action: len(keys) for action, keys in done.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-env", default="dev", help="samconfig.toml environment")
    parser.add_argument("--stack-name", help="overrides samconfig.toml's")
    parser.add_argument("--region", help="overrides samconfig.toml's")
    parser.add_argument("--web", type=Path, default=WEB, help="the web/ folder")
    parser.add_argument("--dry-run", action="store_true", help="say what would change")
    args = parser.parse_args(argv)

    import boto3

    try:
        stack, region = args.stack_name, args.region
        if not (stack and region):
            default_stack, default_region = samconfig_target(args.config_env)
            stack, region = stack or default_stack, region or default_region
        summary = publish(boto3.Session(region_name=region), stack, args.web, args.dry_run)
    except DeployError as exc:
        print(f"deploy_web: {exc}", file=sys.stderr)
        return 1
    verb = "would upload" if args.dry_run else "uploaded"
    print(
        f"{summary['url']}: {verb} {summary['uploaded']}, unchanged {summary['unchanged']}, "
        f"deleted {summary['deleted']} (s3://{summary['bucket']})"
        + (f"; invalidation {summary['invalidation']}" if summary["invalidation"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
