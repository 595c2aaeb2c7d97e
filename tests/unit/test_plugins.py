"""The entry points through which the packages beside the core add to it (inktex/plugins.py)."""

from __future__ import annotations

import ast
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from inktex import plugins
from inktex.cli import build_parser
from inktex.errors import InkTeXError


def _subcommands() -> set[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return set(action.choices)


def test_the_registry_and_the_local_stack_add_their_commands():
    commands = _subcommands()
    assert {"predict", "evaluate", "data"} <= commands  # the core's own
    assert "models" in commands  # functions/common/registry_cli.py
    assert {"up", "down", "status", "info", "token", "seed", "jobs", "drop"} <= commands


@pytest.mark.parametrize("group", [plugins.COMMANDS, plugins.RECOGNIZERS, plugins.TOOLS])
def test_every_entry_point_names_something_that_exists(group):
    # Read from the source, so that the torch recogniser is checked without importing torch.
    found = list(entry_points(group=group))
    assert found, f"nothing is installed in {group}: pip install -e ."
    for ep in found:
        spec = importlib.util.find_spec(ep.module)
        assert spec is not None and spec.origin, ep
        tree = ast.parse(Path(spec.origin).read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        assert ep.attr in names, ep


def test_a_missing_provider_is_an_error_naming_the_extra():
    with pytest.raises(InkTeXError, match=r"pip install -e '\.\[train\]'"):
        plugins.load(plugins.TOOLS, "no-such-tool", extra="train")
