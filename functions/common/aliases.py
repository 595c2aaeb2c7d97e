"""The registry's aliases as values, and the one reader of the production alias.

Each alias (`production`, `candidate`) is one SSM String parameter whose value is the JSON of
its latest move (`AliasMove`). Every function that needs to know which model is in
production (the API and the drop function to serve it, the feedback trigger to fine-tune
from it, the metrics function to label its numbers) asks `AliasReader`: Powertools
Parameters with a short max_age, so a promotion reaches every warm container within
`ALIAS_MAX_AGE_S`. This module imports neither numpy nor onnxruntime, so functions that
never run a model can read the alias without shipping either; Powertools loads only with an
`AliasReader`, so the registry (which imports this module) works where only boto3 is
installed, as in the fine-tuning job's container.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

ALIASES = ("production", "candidate")


@dataclass(frozen=True)
class AliasMove:
    alias: str
    version: str  # "" before any model was promoted
    previous: str = ""
    moved_at: str = ""
    reason: str = ""
    by: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_value(cls, alias: str, value: str | bytes | dict) -> AliasMove:
        """Parse a parameter value; a bare version string (hand-set) is accepted too."""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                return cls(alias=alias, version=value.strip())
            value = parsed
        if not isinstance(value, dict):
            return cls(alias=alias, version="")
        fields = {k: str(value.get(k) or "") for k in ("version", "previous", "moved_at", "reason")}
        return cls(alias=alias, by=str(value.get("by") or ""), **fields)


def version_of(value: str | bytes | dict | None) -> str:
    """The version an alias parameter's value names ("" when none)."""
    return "" if value is None else AliasMove.from_value("", value).version


def alias_parameter(prefix: str, alias: str) -> str:
    """The SSM parameter that holds `alias` under the stack's alias prefix."""
    return f"{prefix.rstrip('/')}/{alias}"


class AliasReader:
    """`reader()` -> the version an alias names now ("" when unset or unreadable), cached for
    `max_age_s` seconds by Powertools Parameters."""

    def __init__(self, ssm, prefix: str, max_age_s: int, alias: str = "production"):
        self.name = alias_parameter(prefix, alias)
        self.max_age_s = max_age_s
        from aws_lambda_powertools.utilities.parameters import SSMProvider

        self._provider = SSMProvider(boto3_client=ssm)

    def __call__(self) -> str:
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        try:
            return version_of(self._provider.get(self.name, max_age=self.max_age_s))
        except GetParameterError as exc:
            log.error("cannot read the alias %s: %s", self.name, exc)
            return ""
