"""`inktex models list | promote VERSION | rollback`: the model registry from the shell.

boto3 is imported when a command runs, so `inktex` starts without it. The endpoint is
boto3's own setting: AWS_ENDPOINT_URL points it at the local stack (moto server).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os


def add_models(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "models",
        help="the model registry: list packages and aliases, promote, roll back",
        description="Packages live under models/<version>/ in the model bucket; the aliases "
        "(production, candidate) are SSM parameters whose history records every move.",
    )
    p.add_argument(
        "--bucket",
        help="the model bucket (default: $MODEL_BUCKET, else the stack's name for --stage)",
    )
    p.add_argument("--stage", default=os.environ.get("STAGE", "dev"), help="stage (dev)")
    p.add_argument(
        "--alias-prefix",
        help="SSM path of the aliases "
        "(default: $ALIAS_PARAMETER_PREFIX, else /inktex/<stage>/aliases)",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="aliases and packages")
    listing.add_argument("--json", action="store_true", help="everything, with alias history")
    promote = actions.add_parser("promote", help="point an alias at a version")
    promote.add_argument("version")
    promote.add_argument("--alias", default="production", choices=["production", "candidate"])
    promote.add_argument("--reason", default="promoted by hand", help="recorded in the history")
    promote.add_argument(
        "--no-verify", action="store_true", help="skip downloading and checking the package"
    )
    rollback = actions.add_parser("rollback", help="undo an alias's latest move")
    rollback.add_argument("--alias", default="production", choices=["production", "candidate"])
    rollback.add_argument("--reason", default="", help="recorded in the history")
    p.set_defaults(handler=run_models)


def registry_from_args(args: argparse.Namespace):
    import boto3

    from functions.common.registry import ModelRegistry

    bucket = args.bucket or os.environ.get("MODEL_BUCKET")
    if not bucket:  # template.yaml's name: inktex-models-<stage>-<account>-<region>
        session = boto3.session.Session()
        account = session.client("sts").get_caller_identity()["Account"]
        bucket = f"inktex-models-{args.stage}-{account}-{session.region_name}"
    prefix = (
        args.alias_prefix
        or os.environ.get("ALIAS_PARAMETER_PREFIX")
        or f"/inktex/{args.stage}/aliases"
    )
    return ModelRegistry(boto3.client("s3"), boto3.client("ssm"), bucket, prefix)


def run_models(args: argparse.Namespace) -> int:
    registry = registry_from_args(args)
    who = os.environ.get("USER") or getpass.getuser()
    if args.action == "list":
        described = registry.describe()
        if args.json:
            print(json.dumps(described, indent=2))
            return 0
        for alias, state in described["aliases"].items():
            since = f" since {state['moved_at']}" if state["moved_at"] else ""
            print(f"{alias:<11} {state['version'] or '(none)'}{since}")
        aliased = {state["version"]: alias for alias, state in described["aliases"].items()}
        for v in described["versions"]:
            tag = f"  [{aliased[v['version']]}]" if v["version"] in aliased else ""
            metrics = " ".join(f"{k}={v['metrics'][k]}" for k in sorted(v["metrics"])[:4])
            print(f"  {v['version']}  {v['uploaded_at']}  {metrics}{tag}")
        return 0
    if args.action == "promote":
        if not args.no_verify:
            registry.verify(args.version)
        moved = registry.move(args.alias, args.version, args.reason, by=who)
    else:
        moved = registry.rollback(args.reason, by=who, alias=args.alias)
    print(f"{moved.alias}: {moved.previous or '(none)'} -> {moved.version} ({moved.reason})")
    return 0
