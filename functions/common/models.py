"""The model a container serves: the `production` alias resolved, fetched once, kept in memory.

`ModelCache.get()` asks `resolve()` for the alias's version (Powertools Parameters caches it
for a short max_age), and loads a new package only when that version changes. A package that
fails its checks is never served: a warm container goes on with the model it has, a cold one
raises `ModelUnavailable` (the API's 503), and `on_failure` lets the caller count it. A failed
version is not fetched again for `retry_after_s`, so a bad promotion does not make every
request download it.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from botocore.exceptions import BotoCoreError, ClientError

from functions.common import telemetry
from inktex.errors import InkTeXError, ModelPackageError
from inktex.runtime import OnnxRecognizer

log = logging.getLogger(__name__)


class Recognizer(Protocol):
    @property
    def version(self) -> str: ...


class ModelUnavailable(InkTeXError):
    """No model can be served: none promoted, or the promoted package fails its checks."""

    status = 503


class ModelCache:
    def __init__(
        self,
        resolve: Callable[[], str],
        fetch: Callable[[str], Path],
        load: Callable[[Path], Recognizer] = OnnxRecognizer.load,
        on_failure: Callable[[str, str], None] | None = None,
        retry_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._resolve, self._fetch, self._load = resolve, fetch, load
        self._on_failure = on_failure or (lambda version, reason: None)
        self.retry_after_s = retry_after_s
        self._clock = clock
        self.current: Recognizer | None = None
        self._current_path: Path | None = None
        self._failed: dict[str, tuple[float, str]] = {}  # version -> (when, reason)

    @property
    def loaded_version(self) -> str | None:
        return self.current.version if self.current else None

    def get(self) -> Recognizer:
        version = self._resolve()
        if not version:
            return self._fallback(
                "no model is promoted to production yet: run `inktex models promote VERSION`"
            )
        if self.current is not None and self.current.version == version:
            return self.current
        failed = self._failed.get(version)
        if failed and self._clock() - failed[0] < self.retry_after_s:
            return self._fallback(failed[1])
        started = self._clock()
        try:
            path = self._fetch(version)
            recognizer = self._load(path)
            if recognizer.version != version:
                raise ModelPackageError(
                    f"models/{version}/ holds a package of version {recognizer.version}"
                )
        except (InkTeXError, ClientError, BotoCoreError, OSError) as exc:
            reason = f"model {version} cannot be served: {exc}"
            self._failed[version] = (self._clock(), reason)
            self._on_failure(version, reason)
            telemetry.error("ModelPackageInvalid")
            log.error(reason)
            return self._fallback(reason)
        self._failed.pop(version, None)
        telemetry.model_loaded(self._clock() - started)
        self._swap(recognizer, path)
        return recognizer

    def _fallback(self, reason: str) -> Recognizer:
        if self.current is not None:
            return self.current  # warm: keep serving what we have
        telemetry.error("ModelUnavailable")
        raise ModelUnavailable(reason)

    def _swap(self, recognizer: Recognizer, path: Path) -> None:
        old = self._current_path
        self.current, self._current_path = recognizer, path
        if old is not None and old != path:
            shutil.rmtree(old, ignore_errors=True)  # /tmp is small; keep one package
