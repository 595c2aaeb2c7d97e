"""`inktex up | down | status | info | logs | token | drop | invoke ...`: the local stack from
the shell.

Module scope imports only the standard library, so `inktex` starts fast and the core's
no-AWS test holds; the stack's code loads when a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path


def _state_dir(args: argparse.Namespace) -> Path:
    from local_stack.stack import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _add_state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="where the stack keeps its state, keys and logs "
        "(default: $INKTEX_LOCAL_STATE, else ~/.local/state/inktex/local)",
    )


def add_up(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "up",
        help="start the local stack (AWS emulator, API, functions, web UI)",
        description="Starts the whole system on this machine from template.yaml: moto on "
        "--aws-port, the HTTP API (and web UI, and local sign-in) on --api-port, the bundled "
        "model registered as production. Runs in the foreground until Ctrl-C or `inktex down`; "
        "state is snapshotted on the way down and restored on the next `inktex up`.",
    )
    p.add_argument("--host", default=os.environ.get("INKTEX_LOCAL_HOST", "127.0.0.1"))
    p.add_argument(
        "--aws-port", type=int, default=int(os.environ.get("INKTEX_LOCAL_AWS_PORT", "4566"))
    )
    p.add_argument(
        "--api-port", type=int, default=int(os.environ.get("INKTEX_LOCAL_API_PORT", "3000"))
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="DIR",
        help="the model package to register (default: $INKTEX_MODEL, else models/release)",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="the model's training checkpoint, which retraining fine-tunes "
        "(default: checkpoint.pt in the package folder, if there is one)",
    )
    p.add_argument(
        "--training",
        choices=["local", "none"],
        default="local",
        help="run the retraining jobs the functions start as local processes (local), "
        "or leave them as records in the emulator (none)",
    )
    p.add_argument(
        "--parameter-overrides",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters, as `sam deploy --parameter-overrides` takes them",
    )
    p.add_argument("--fresh", action="store_true", help="discard the saved state first")
    p.add_argument(
        "--detach", action="store_true", help="start in the background and return when ready"
    )
    _add_state_dir(p)
    p.set_defaults(handler=run_up)


def _settings(args: argparse.Namespace):
    from local_stack.stack import LocalSettings

    overrides = dict(kv.split("=", 1) for kv in args.parameter_overrides)
    return LocalSettings(
        host=args.host,
        aws_port=args.aws_port,
        api_port=args.api_port,
        state_dir=_state_dir(args),
        model=args.model,
        parameter_overrides=overrides,
        checkpoint=getattr(args, "checkpoint", None),
        training=getattr(args, "training", "local"),
    )


def run_up(args: argparse.Namespace) -> int:
    from local_stack.stack import LocalStack, LocalStackError, running_info

    state_dir = _state_dir(args)
    if (info := running_info(state_dir)) is not None:
        raise LocalStackError(
            f"a stack is already up with {state_dir} (pid {info['pid']}, {info['api_url']}): "
            "`inktex down` first"
        )
    if args.fresh:
        import shutil

        shutil.rmtree(state_dir / "journal", ignore_errors=True)  # the emulator's state
        shutil.rmtree(state_dir / "snapshot", ignore_errors=True)  # an older stack's
    if args.detach:
        return _detach(args, state_dir)
    stack = LocalStack(_settings(args))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        info = stack.start()
    except BaseException:
        stack.stop(snapshot=False)
        raise
    _print_summary(info)
    print("Ctrl-C or `inktex down` stops it (and keeps its state).", flush=True)
    while not stopping.wait(0.5):
        pass
    print("stopping ...", flush=True)
    stack.stop(snapshot=True)
    print("stopped.", flush=True)
    # Everything is stopped and on disk; what is left is the interpreter's own teardown of
    # moto, boto3 and the servers' threads, measured at seconds: `inktex down` waits for it.
    sys.stderr.flush()
    os._exit(0)


def _detach(args: argparse.Namespace, state_dir: Path) -> int:
    from local_stack.stack import LocalStackError, running_info

    argv = [a for a in sys.argv[1:] if a not in ("--detach", "--fresh")]
    if not argv or argv[0] != "up":  # called as a function (tests): rebuild the arguments
        argv = [
            "up",
            "--host",
            args.host,
            "--aws-port",
            str(args.aws_port),
            "--api-port",
            str(args.api_port),
            "--state-dir",
            str(state_dir),
        ]
        if args.model:
            argv += ["--model", str(args.model)]
        if getattr(args, "checkpoint", None):
            argv += ["--checkpoint", str(args.checkpoint)]
        if getattr(args, "training", "local") != "local":
            argv += ["--training", args.training]
        if args.parameter_overrides:
            argv += ["--parameter-overrides", *args.parameter_overrides]
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "stack.log"
    # Started through a short-lived launcher, so the stack is nobody's child: it outlives
    # this command and no one has to wait for it.
    launched = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, str(log_path), sys.executable, "-m", "inktex.cli", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(launched.stdout.strip())
    deadline = time.time() + 180
    while time.time() < deadline:
        info = running_info(state_dir)
        if info is not None and info["pid"] == pid:
            _print_summary(info)
            print(f"running in the background (pid {pid}, log {log_path}); `inktex down` stops it.")
            return 0
        try:
            os.kill(pid, 0)
        except OSError:
            tail = log_path.read_text(errors="replace").splitlines()[-15:]
            raise LocalStackError("the stack did not start:\n" + "\n".join(tail)) from None
        time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    raise LocalStackError(f"the stack did not start within 180 s: see {log_path}")


_LAUNCHER = """
import subprocess, sys
with open(sys.argv[1], "ab") as log:
    child = subprocess.Popen(sys.argv[2:], stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
print(child.pid, flush=True)
child.returncode = 0  # not ours to wait for: it is the stack, and it runs on
"""


def _print_summary(info: dict) -> None:
    r = info["resources"]
    print(f"InkTeX local stack is up (pid {info['pid']})")
    print(f"  API and web UI   {info['api_url']}")
    print(f"  sign-in          {info['auth']['authorize_url']}")
    print(f"  AWS emulator     {info['aws_endpoint']}  (AWS_ENDPOINT_URL)")
    print(f"  data bucket      {r.get('DataBucketName')}")
    print(f"  model bucket     {r.get('ModelBucketName')}")
    print(f"  DVC bucket       {r.get('DvcBucketName')}")
    test = "  (THE TEST MODEL: not a real result)" if info["model"]["test_model"] else ""
    print(f"  model            {info['model']['version']}{test}")
    training = info.get("training", {}).get("backend", "none")
    if training != "none" and not info["model"].get("checkpoint"):
        training += " (no checkpoint to fine-tune: jobs will fail; --checkpoint)"
    print(f"  retraining       {training}; `inktex seed` first, `inktex jobs` to follow")
    metrics = info.get("metrics") or {}
    if metrics.get("token_file"):
        print(f"  metrics token    {metrics['token_file']}  (GET /metrics: Bearer <its text>)")
    print(f"  state            {info['state_dir']}")
    print(
        f"Try: curl -s -X POST --data-binary @tests/fixtures/inkml/27_em_120.png "
        f"-H 'content-type: image/png' {info['api_url']}/recognize",
        flush=True,
    )


def add_down(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "down", help="stop the local stack, keeping its state for the next `inktex up`"
    )
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait (60)")
    _add_state_dir(p)
    p.set_defaults(handler=run_down)


def run_down(args: argparse.Namespace) -> int:
    from local_stack.stack import LocalStackError, running_info

    state_dir = _state_dir(args)
    info = running_info(state_dir)
    if info is None:
        print(f"no local stack is up with {state_dir}")
        return 0
    pid = int(info["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + args.timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            print(f"stopped (state kept in {state_dir})")
            return 0
        time.sleep(0.1)
    raise LocalStackError(f"the stack (pid {pid}) did not stop within {args.timeout:.0f} s")


def add_status(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="is the local stack up, and where")
    _add_state_dir(p)
    p.set_defaults(handler=run_status)


def run_status(args: argparse.Namespace) -> int:
    from local_stack.stack import running_info

    info = running_info(_state_dir(args))
    if info is None:
        print("down")
        return 1
    try:
        with urllib.request.urlopen(f"{info['api_url']}/health", timeout=5) as response:
            health = json.loads(response.read())
    except OSError as exc:
        health = {"status": f"unreachable ({exc})"}
    print(
        f"up (pid {info['pid']}): API {info['api_url']} [{health.get('status')}], "
        f"AWS {info['aws_endpoint']}, model {info['model']['version']}"
    )
    return 0


def add_info(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="the local stack's endpoints and resource names")
    p.add_argument("--json", action="store_true", help="everything, as JSON")
    _add_state_dir(p)
    p.set_defaults(handler=run_info)


def run_info(args: argparse.Namespace) -> int:
    from local_stack.stack import LocalStackError, running_info

    info = running_info(_state_dir(args))
    if info is None:
        raise LocalStackError("the local stack is not up: `inktex up` starts it")
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_summary(info)
    return 0


def add_logs(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("logs", help="the functions' logs on the local stack")
    p.add_argument("function", nargs="?", help="a function's logical id (default: all)")
    p.add_argument("-n", "--lines", type=int, default=50, help="last lines of each (50)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    _add_state_dir(p)
    p.set_defaults(handler=run_logs)


def run_logs(args: argparse.Namespace) -> int:
    from local_stack.stack import LocalStackError

    logs = _state_dir(args) / "logs"
    paths = sorted(logs.glob("*.log"))
    if args.function:
        paths = [p for p in paths if p.stem == args.function]
        if not paths:
            known = ", ".join(p.stem for p in sorted(logs.glob("*.log"))) or "none yet"
            raise LocalStackError(f"no log for {args.function} (known: {known})")
    for path in paths:
        lines = path.read_text(errors="replace").splitlines()[-args.lines :]
        for line in lines:
            print(f"{path.stem}: {line}" if len(paths) > 1 else line)
    if args.follow:
        offsets = {p: p.stat().st_size for p in paths}
        while True:
            for path in paths:
                with open(path, errors="replace") as f:
                    f.seek(offsets[path])
                    for line in f:
                        print(f"{path.stem}: {line}" if len(paths) > 1 else line, end="")
                    offsets[path] = f.tell()
            time.sleep(0.5)
    return 0


def add_monitor(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "monitor",
        help="Prometheus (Debian's package) scraping the running local stack",
        description="Starts prometheus on 127.0.0.1:--port with infra/prometheus/prometheus.yml "
        "pointed at the local stack's GET /metrics and its token, and the alert rules of "
        "infra/prometheus/alerts.yml. Runs until Ctrl-C; its data stays in the state folder.",
    )
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--scrape-interval", default=None, help="e.g. 5s (default: the config's)")
    _add_state_dir(p)
    p.set_defaults(handler=run_monitor)


def run_monitor(args: argparse.Namespace) -> int:
    from local_stack import monitor
    from local_stack.stack import running_info

    state_dir = _state_dir(args)
    info = running_info(state_dir)
    if info is None:
        print(f"no local stack is up with {state_dir}: `inktex up` first", file=sys.stderr)
        return 1
    work = state_dir / "prometheus"
    config = monitor.render_config(info, work, args.scrape_interval)
    command = monitor.prometheus_command(config, work / "data", args.port)
    print(f"Prometheus on http://127.0.0.1:{args.port} scraping {info['metrics']['url']}")
    print(f"  alerts: http://127.0.0.1:{args.port}/alerts   graphs: /graph   consoles: /consoles")
    os.execv(command[0], command)
    return 0  # not reached


def add_token(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "token",
        help="print a bearer token for USER from the local development issuer",
        description="An ID token shaped like Cognito's, signed by the local stack's key, "
        "with the issuer and audience of template.yaml's JWT authorizer: "
        'curl -H "Authorization: Bearer $(inktex token alice)" ...',
    )
    p.add_argument("user", help="the user name (its `sub` is a stable UUID derived from it)")
    p.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (3600)")
    p.add_argument("--group", action="append", default=[], help="a cognito:groups entry")
    p.add_argument("--access", action="store_true", help="an access token, not an ID token")
    p.add_argument("--claims", action="store_true", help="print the claims too (JSON, stderr)")
    _add_state_dir(p)
    p.set_defaults(handler=run_token)


def local_issuer(state_dir: Path, parameter_overrides: dict | None = None):
    """The issuer the local stack's gateway trusts (template.yaml's authorizer, locally)."""
    from local_stack.stack import REPO
    from local_stack.template import Stack
    from local_stack.tokens import Issuer

    api = Stack.from_file(REPO / "template.yaml", parameter_overrides).http_api()
    authorizer = next(iter(api.authorizers.values()))
    return Issuer.load(state_dir, authorizer.issuer, authorizer.audience[0])


def run_token(args: argparse.Namespace) -> int:
    issuer = local_issuer(_state_dir(args))
    if args.access:
        token = issuer.access_token(args.user, ttl_s=args.ttl, groups=args.group)
    else:
        token = issuer.id_token(args.user, ttl_s=args.ttl, groups=args.group)
    if args.claims:
        import jwt

        claims = jwt.decode(token, options={"verify_signature": False})
        print(json.dumps(claims, indent=2), file=sys.stderr)
    print(token)
    return 0


def _running(state_dir: Path) -> dict:
    from local_stack.stack import LocalStackError, running_info

    info = running_info(state_dir)
    if info is None:
        raise LocalStackError(f"no local stack is up with {state_dir}: `inktex up` starts it")
    return info


def add_seed(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "seed",
        help="upload the evaluation and replay sets (retraining) to the local stack",
        description="Replaces datasets/eval/ (what promotion scores on: CROHME 2013) and "
        "datasets/replay/ (a sample of the training split that fine-tuning mixes in) in the "
        "running stack's data bucket. Source: --data, else $INKTEX_DATA/crohme when present, "
        "else the repository's five fixture images (tests only).",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="a CROHME root (test2013.tsv, train.tsv and their image folders) or a folder of "
        "<name>.png with a labels.tsv",
    )
    p.add_argument("--replay", type=int, default=512, help="replay images from train (512)")
    _add_state_dir(p)
    p.set_defaults(handler=run_seed)


def run_seed(args: argparse.Namespace) -> int:
    from local_stack.emulator import stack_client
    from local_stack.seed import seed

    info = _running(_state_dir(args))
    s3 = stack_client("s3", info)
    summary = seed(s3, info["resources"]["DataBucketName"], args.data, args.replay)
    sets = ", ".join(f"{prefix} {n} images" for prefix, n in summary["sets"].items())
    print(f"seeded from {summary['source']}: {sets}")
    return 0


def add_jobs(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "jobs",
        help="the local stack's retraining jobs, their status and logs",
        description="Each training job the local runner took from the emulator: its true "
        "status (the emulator says Completed at once), duration and log. With a job name, "
        "that job's log.",
    )
    p.add_argument("job", nargs="?", help="print this job's log")
    p.add_argument("-n", "--lines", type=int, default=50, help="last lines of the log (50)")
    p.add_argument("--json", action="store_true", help="the job records, as JSON")
    _add_state_dir(p)
    p.set_defaults(handler=run_jobs)


def run_jobs(args: argparse.Namespace) -> int:
    from local_stack.local_runner import read_jobs
    from local_stack.stack import LocalStackError

    work = _state_dir(args) / "training"
    records = read_jobs(work)
    if args.job:
        log = work / args.job / "log.txt"
        if not log.is_file():
            known = ", ".join(r["job"] for r in records) or "none yet"
            raise LocalStackError(f"no local job {args.job} (known: {known})")
        print("\n".join(log.read_text(errors="replace").splitlines()[-args.lines :]))
        return 0
    if args.json:
        print(json.dumps([{k: v for k, v in r.items() if k != "event"} for r in records], indent=2))
        return 0
    if not records:
        print(f"no training jobs yet ({work})")
        return 0
    for r in records:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.get("started_at", 0)))
        took = f"{r['ended_at'] - r['started_at']:.0f} s" if r.get("ended_at") else "running"
        reason = (r.get("failure_reason") or "").splitlines()
        print(f"{r['job']}  {r['status']:<10} {started}  {took:>8}  {r.get('log', '')}")
        if reason:
            print(f"    {reason[0][:160]}")
    return 0


def add_drop(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "drop",
        help="drop files into the local stack's data bucket (uploads/) and print the LaTeX",
        description="Uploads each FILE to uploads/<SUB>/<name> of the running stack's data "
        "bucket, as `aws s3 cp` would, waits for the prediction the drop function writes, and "
        "prints one line per file: the file, a tab, its LaTeX (or `error: <reason>`).",
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.add_argument(
        "--user",
        metavar="SUB",
        help="the owner's sub (`inktex token USER --claims` shows it); default: no owner "
        "(uploads/_anonymous/)",
    )
    p.add_argument(
        "--timeout", type=float, default=30, help="seconds to wait for the predictions (30)"
    )
    _add_state_dir(p)
    p.set_defaults(handler=run_drop)


def run_drop(args: argparse.Namespace) -> int:
    from local_stack import tools

    info = _running(_state_dir(args))
    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        from local_stack.stack import LocalStackError

        raise LocalStackError(f"no such file: {', '.join(missing)}")
    failed = 0
    for path, record in tools.drop(info, args.files, args.user, args.timeout):
        ok, text = tools.describe(record, args.timeout)
        failed += not ok
        print(f"{path}\t{text}", flush=True)
    return 1 if failed else 0


def add_invoke(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "invoke",
        help="run a function's handler here with a sample event (as `sam local invoke`)",
        description="Runs FUNCTION's handler (a logical id of template.yaml, or its name) in "
        "this process, with the environment the running local stack gives it (its AWS calls "
        "go to the stack's emulator), on the event in -e FILE (events/ has samples; - reads "
        "stdin). Prints the return value as JSON; the handler's logs go to stderr.",
    )
    p.add_argument("function", metavar="FUNCTION")
    p.add_argument("-e", "--event", required=True, metavar="FILE", help="the event (JSON)")
    _add_state_dir(p)
    p.set_defaults(handler=run_invoke)


def run_invoke(args: argparse.Namespace) -> int:
    from local_stack import tools

    info = _running(_state_dir(args))
    try:
        text = sys.stdin.read() if args.event == "-" else Path(args.event).read_text()
        event = json.loads(text)
    except (OSError, ValueError) as exc:
        from local_stack.stack import LocalStackError

        raise LocalStackError(f"cannot read the event {args.event}: {exc}") from exc
    ok, value = tools.invoke(info, args.function, event)
    print(json.dumps(value, indent=2))
    return 0 if ok else 1


COMMANDS = [
    add_up,
    add_down,
    add_status,
    add_info,
    add_logs,
    add_token,
    add_monitor,
    add_seed,
    add_jobs,
    add_drop,
    add_invoke,
]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """The `inktex.commands` entry point (pyproject.toml): the stack's subcommands."""
    for add in COMMANDS:
        add(subparsers)
