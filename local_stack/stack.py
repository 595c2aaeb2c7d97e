"""The local stack, whole: emulator, resources, the bundled model, functions, gateway.

`LocalStack(settings).start()` brings it up in this process (threads for moto, the gateway
and the pollers; a process per function) and `stop()` takes it down, snapshotting the
emulator's state first. `inktex up` / `inktex down` drive it (local_stack.cli).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from functions.common.limits import limits_of
from inktex.errors import InkTeXError
from local_stack import emulator
from local_stack.durable import write_file
from local_stack.gateway import Gateway
from local_stack.guard import PROFILE, Credentials
from local_stack.journal import Journal
from local_stack.seed import register_model
from local_stack.template import Stack
from local_stack.tokens import Issuer
from local_stack.workers import DEFAULT_CONCURRENCY, FunctionRuntime, QueuePoller

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
TEST_MODEL = REPO / "tests" / "fixtures" / "tiny_model"
STATE_FILE = "stack.json"  # written when the stack is up, removed when it is down


class LocalStackError(InkTeXError):
    """The local stack cannot start or stop as asked; the message says what to do."""


def default_state_dir() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return Path(os.environ.get("INKTEX_LOCAL_STATE") or base / "inktex" / "local")


def default_web_root() -> Path | None:
    """web/dist (a built UI), else web/ when it holds an index.html, else none."""
    for candidate in (REPO / "web" / "dist", REPO / "web"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


@dataclass
class LocalSettings:
    host: str = "127.0.0.1"
    aws_port: int = 4566
    api_port: int = 3000
    state_dir: Path = field(default_factory=default_state_dir)
    template: Path = REPO / "template.yaml"
    model: Path | None = None  # None: $INKTEX_MODEL, else models/release, else the test model
    web_root: Path | None = field(default_factory=default_web_root)
    parameter_overrides: dict[str, str] = field(default_factory=dict)
    function_env: dict[str, str] = field(default_factory=dict)  # e.g. the training backend
    # The model's fine-tunable checkpoint; None: checkpoint.pt in the package folder, if any.
    checkpoint: Path | None = None
    # Where CreateTrainingJob calls run: "local" (a LocalTrainingRunner, local_runner.py) or
    # "none" (they stay records in the emulator, as moto keeps them).
    training: str = "local"

    @classmethod
    def from_env(cls, **overrides) -> LocalSettings:
        env = os.environ
        settings = cls(
            host=env.get("INKTEX_LOCAL_HOST", "127.0.0.1"),
            aws_port=int(env.get("INKTEX_LOCAL_AWS_PORT", "4566")),
            api_port=int(env.get("INKTEX_LOCAL_API_PORT", "3000")),
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(settings, key, value)
        return settings

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{emulator.LOOPBACK}:{self.aws_port}"  # loopback only, whatever --host


def bundled_model(setting: Path | None) -> tuple[Path, bool]:
    """The model package to register, and whether it is the test model (a loud fallback)."""
    from inktex.runtime import default_model_path

    explicit = setting is not None or "INKTEX_MODEL" in os.environ
    path = Path(setting) if setting is not None else default_model_path()
    if (path / "manifest.json").is_file():
        return path, path.resolve() == TEST_MODEL.resolve()
    if explicit:
        raise LocalStackError(f"no model package at {path} (no manifest.json): pass --model DIR")
    banner = "!" * 78
    print(
        f"{banner}\n"
        f"WARNING: no release model at {path}. Registering the TEST model\n"
        f"  {TEST_MODEL}\n"
        "as production. It is tiny and barely trained: its LaTeX is NOT a real result.\n"
        "Train and export one (dvc repro), or set INKTEX_MODEL / --model to a package.\n"
        f"{banner}",
        file=sys.stderr,
        flush=True,
    )
    return TEST_MODEL, True


CHECKPOINT = "checkpoint.pt"  # a package folder's fine-tunable checkpoint (not in its manifest)


def model_checkpoint(path: Path, setting: Path | None = None) -> Path | None:
    """The checkpoint that fine-tuning starts from: `setting`, else checkpoint.pt in the
    package folder, else none (retraining jobs then fail and return their batch)."""
    if setting is not None:
        if not Path(setting).is_file():
            raise LocalStackError(f"no checkpoint at {setting}")
        return Path(setting)
    candidate = Path(path) / CHECKPOINT
    return candidate if candidate.is_file() else None


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# One person at a desk, not the public internet: anonymous POST /recognize is throttled
# far less than in the cloud (template.yaml's RecognizeRateLimit/RecognizeBurstLimit: 2 a
# second, bursts of 5). `--parameter-overrides` sets the cloud's values, as a load test does.
LOCAL_THROTTLES = {"RecognizeRateLimit": "10", "RecognizeBurstLimit": "20"}


class LocalStack:
    def __init__(self, settings: LocalSettings):
        self.settings = settings
        self.state_dir = Path(settings.state_dir)
        origins = [f"http://{h}:{settings.api_port}" for h in (settings.host, "localhost")]
        local = {
            "CorsAllowOrigins": ",".join(origins),
            "AuthCallbackUrls": ",".join(f"{o}/callback" for o in origins),
            "AuthLogoutUrls": ",".join(f"{o}/" for o in origins),
            **LOCAL_THROTTLES,
        }
        template = Stack.from_file(settings.template).template
        declared = template.get("Parameters") or {}
        overrides = {k: v for k, v in local.items() if k in declared}
        overrides.update(settings.parameter_overrides)
        self.stack = Stack(template, overrides)
        self.moto: emulator.Moto | None = None
        self.journal: Journal | None = None
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.pollers: list[QueuePoller] = []
        self.gateway: Gateway | None = None
        self.server = None
        self.model_version = ""
        self.test_model = False
        self.checkpoint: Path | None = None
        self.training = None  # the LocalTrainingRunner, when settings.training == "local"

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> dict:
        s = self.settings
        for host, port in ((emulator.LOOPBACK, s.aws_port), (s.host, s.api_port)):
            if not _port_free(host, port):
                raise LocalStackError(
                    f"port {port} on {s.host} is in use: is a stack already up (`inktex status`)? "
                    "Otherwise choose other ports (--aws-port, --api-port)"
                )
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.state_dir)
        self.moto = emulator.Moto(s.aws_port, self.credentials(), self.journal, self.stack.region)
        self.moto.start()
        endpoint = self.moto.endpoint
        restored = emulator.restore(self.stack, self.moto)
        if emulator.import_snapshot(self.stack, self.moto, self.state_dir):
            imported = self.journal.fold()
            imported.created = []  # imported uploads owe no events
            self.journal.compact(imported)
            restored.objects = imported.objects
        provisioned = emulator.provision(self.stack, self.moto, self.secret_values())
        self._register_model()
        self._start_functions(endpoint)
        self._start_pollers(provisioned)
        redelivered = emulator.redeliver(self.moto, restored)
        self._start_training(endpoint)
        self._start_gateway()
        info = self.info()
        info["restored"] = bool(restored.objects)
        info["redelivered"] = redelivered
        (self.state_dir / STATE_FILE).write_text(json.dumps(info, indent=2))
        return info

    def stop(self, snapshot: bool = True) -> None:
        """Take everything down; a second call does nothing more. Nothing is saved here:
        every acknowledged write is in the journal already (`snapshot` is ignored)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.training is not None:
            self.training.stop()  # a running job is killed; its end is delivered next time
        for poller in self.pollers:
            poller.stop()
        deadline = time.monotonic() + 3  # an event still being handled is owed, not lost
        for poller in self.pollers:
            poller.join(max(0.0, deadline - time.monotonic()))
        closing = [c for runtime in self.runtimes.values() for c in runtime.stop(wait=False)]
        for container in closing:  # all told at once, then each waited for
            container.wait()
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if self.journal is not None:
            self.journal.close()
        self.pollers, self.training = [], None
        (self.state_dir / STATE_FILE).unlink(missing_ok=True)

    # --- parts ------------------------------------------------------------------------------

    def credentials(self) -> Credentials:
        """The emulator's only accepted keys, generated once into the state folder."""
        return Credentials.load(self.state_dir)

    def secret_path(self, logical_id: str) -> Path:
        return self.state_dir / "secrets" / logical_id

    def secret_values(self) -> dict[str, str]:
        """Each template secret's value: generated once, kept in the state folder (mode 0600),
        so a restart keeps it and a local Prometheus can read it as its credentials file."""
        values = {}
        for logical_id, spec in self.stack.secrets().items():
            path = self.secret_path(logical_id)
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                value = secrets.token_urlsafe(spec["length"])[: spec["length"]]
                write_file(path, value.encode(), mode=0o600)
            os.chmod(path, 0o600)  # readable by its owner only, whatever made it
            values[logical_id] = path.read_text().strip()
        return values

    def _register_model(self) -> None:
        from functions.common.registry import ModelRegistry

        env = self._global_env()
        registry = ModelRegistry(
            self.moto.client("s3"),
            self.moto.client("ssm"),
            env["MODEL_BUCKET"],
            env["ALIAS_PARAMETER_PREFIX"],
        )
        path, self.test_model = bundled_model(self.settings.model)
        self.checkpoint = model_checkpoint(path, self.settings.checkpoint)
        if self.checkpoint is None:
            log.warning("no checkpoint for %s: retraining jobs will fail (--checkpoint)", path)
        self.model_version = register_model(registry, path, self.checkpoint)
        self.model_path = path

    def _global_env(self) -> dict[str, str]:
        g = self.stack.globals_function()
        variables = ((g.get("Environment") or {}).get("Variables")) or {}
        return {k: str(v) for k, v in self.stack.resolve(variables).items() if v is not None}

    def function_env(self, logical_id: str, endpoint: str) -> dict[str, str]:
        """The function's environment from template.yaml plus what differs locally."""
        function = self.stack.functions()[logical_id]
        return {
            **function.environment,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            **self.credentials().as_env(),
            "AWS_LAMBDA_FUNCTION_NAME": function.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
            "MODEL_CACHE_DIR": str(self.state_dir / "cache" / logical_id),
            "METRICS_TOKEN_HINT": "`inktex info` shows the file that holds the token",
            **self.settings.function_env,
        }

    def _start_functions(self, endpoint: str) -> None:
        for logical_id, function in self.stack.functions().items():
            arn = self.stack.get_att(logical_id, "Arn")
            env = self.function_env(logical_id, endpoint)
            self.runtimes[logical_id] = FunctionRuntime(
                function, env, self.state_dir / "logs", arn, self.concurrency(logical_id)
            )
        for runtime in self.runtimes.values():  # cold starts now, in the background
            threading.Thread(target=runtime.warm, daemon=True).start()

    def concurrency(self, logical_id: str) -> int:
        """The function's `ReservedConcurrentExecutions` (template.yaml), else the default."""
        properties = (self.stack.template["Resources"][logical_id].get("Properties")) or {}
        reserved = self.stack.resolve(properties.get("ReservedConcurrentExecutions"))
        return int(reserved) if reserved not in (None, "") else DEFAULT_CONCURRENCY

    def _start_pollers(self, provisioned: dict) -> None:
        sqs = self.moto.client("sqs")
        for delivery in provisioned["deliveries"]:
            if delivery["source"] == "s3":
                n = delivery["notification"]
                failure_url = None
                if n.on_failure and ":sqs:" in n.on_failure:
                    failure_url = sqs.get_queue_url(QueueName=n.on_failure.rsplit(":", 1)[1])[
                        "QueueUrl"
                    ]
                poller = QueuePoller(
                    sqs,
                    delivery["queue_url"],
                    self.runtimes[n.function],
                    n.max_retries,
                    failure_url,
                    on_done=self._delivered,
                )
            else:
                poller = QueuePoller(
                    sqs,
                    delivery["queue_url"],
                    self.runtimes[delivery["rule"].function],
                    on_done=lambda event: self.journal.event_done(event.get("id", "")),
                )
            poller.start()
            self.pollers.append(poller)

    def _delivered(self, event: dict) -> None:
        """An S3 event's function finished with it: it is not owed after a restart."""
        from urllib.parse import unquote_plus

        for record in event.get("Records", []):
            s3 = record.get("s3") or {}
            key = unquote_plus((s3.get("object") or {}).get("key", ""))
            version = (s3.get("object") or {}).get("versionId", "null")
            self.journal.delivered((s3.get("bucket") or {}).get("name", ""), key, version)

    def training_dir(self) -> Path:
        return self.state_dir / "training"

    def _start_training(self, endpoint: str) -> None:
        """Run the jobs that CreateTrainingJob calls leave in the emulator, as SageMaker would,
        and put each one's end on the emulator's EventBridge bus, whose rule (template.yaml)
        delivers it to the training-events function. The functions do not know about it."""
        if self.settings.training == "none":
            return
        if self.settings.training != "local":
            raise LocalStackError(
                f"unknown training backend {self.settings.training!r}: local or none"
            )
        from local_stack.local_runner import LocalTrainingRunner

        region = self.stack.region
        events = self.moto.client("events")
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            **self.credentials().as_env(),
        }
        self.training = LocalTrainingRunner(
            self.moto.client("sagemaker"),
            self.moto.client("s3"),
            self.training_dir(),
            deliver=lambda event: emulator.put_event(events, event),
            env=env,
        )
        self.training.start()

    def _start_gateway(self) -> None:
        s = self.settings
        api = self.stack.http_api()
        authorizer = next(iter(api.authorizers.values()), None)
        issuer = Issuer.load(
            self.state_dir,
            authorizer.issuer if authorizer else "",
            authorizer.audience[0] if authorizer and authorizer.audience else "",
        )
        self.gateway = Gateway(
            api=api,
            invoke=lambda function, event: self.runtimes[function].invoke(event),
            issuer=issuer,
            account_id=self.stack.account_id,
            region=self.stack.region,
            callback_urls=self._callback_urls(),
            web_root=s.web_root,
            config=self.web_config(issuer),
        )
        self.server = self.gateway.serve(s.host, s.api_port)
        threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True).start()

    def _callback_urls(self) -> list[str]:
        urls = []
        for resource in self.stack.of_type("AWS::Cognito::UserPoolClient").values():
            urls += self.stack.resolve((resource.get("Properties") or {}).get("CallbackURLs")) or []
        return urls

    def web_config(self, issuer: Issuer) -> dict:
        """The page's config.json (docs/web.md): the API, the local sign-in, the limits."""
        s = self.settings
        functions = self.stack.functions()
        return {
            "apiUrl": s.api_url,
            "authUrl": s.api_url,
            "region": self.stack.region,
            "userPoolId": self.stack.outputs().get("UserPoolId"),
            "userPoolClientId": issuer.audience,
            "redirectUri": f"{s.api_url}/callback",
            "local": True,
            # what the functions enforce, from the environments they run with here
            "limits": limits_of({k: self.function_env(k, s.aws_endpoint) for k in functions}),
        }

    def info(self) -> dict:
        s = self.settings
        outputs = self.stack.outputs()
        outputs["ApiUrl"] = s.api_url
        outputs["UserPoolDomain"] = s.api_url
        return {
            "pid": os.getpid(),
            "api_url": s.api_url,
            "aws_endpoint": s.aws_endpoint,
            "region": self.stack.region,
            "account_id": self.stack.account_id,
            "state_dir": str(self.state_dir),
            "web_root": str(s.web_root) if s.web_root else None,
            "model": {
                "version": self.model_version,
                "path": str(getattr(self, "model_path", "")),
                "test_model": self.test_model,
                "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            },
            "training": {"backend": s.training, "jobs": str(self.training_dir())},
            "parameter_overrides": dict(s.parameter_overrides),  # what `up` was given
            "resources": outputs,
            "functions": {k: f.name for k, f in self.stack.functions().items()},
            "logs": {k: str(r.log_path) for k, r in self.runtimes.items()},
            "secrets": {k: str(self.secret_path(k)) for k in self.stack.secrets()},
            # the emulator's keys: AWS_SHARED_CREDENTIALS_FILE=<file> AWS_PROFILE=<profile>
            "aws_credentials": {
                "file": str(Credentials.path(self.state_dir)),
                "profile": PROFILE,
            },
            "metrics": {
                "url": f"{s.api_url}/metrics",
                "token_file": str(self.secret_path("MetricsTokenSecret")),
            },
            "auth": {
                "issuer": self.gateway.issuer.issuer if self.gateway else None,
                "audience": self.gateway.issuer.audience if self.gateway else None,
                "authorize_url": f"{s.api_url}/oauth2/authorize",
                "token_url": f"{s.api_url}/oauth2/token",
                "jwks_url": f"{s.api_url}/.well-known/jwks.json",
            },
        }


def running_info(state_dir: Path) -> dict | None:
    """The info of the stack that is up with this state directory, if its process lives."""
    path = Path(state_dir) / STATE_FILE
    try:
        info = json.loads(path.read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError):
        return None
    return None if _exited(pid) else info


def _exited(pid: int) -> bool:
    """Whether the process has ended and waits to be reaped (a zombie: a stack killed with
    -9 whose parent, init in a container, does not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc here: kill(pid, 0) is all there is
    return stat.rsplit(") ", 1)[-1].startswith(("Z", "X"))
