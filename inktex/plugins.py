"""What the packages beside the core add to it, found through entry points.

The core never imports `functions/`, `training/`, `model_export/` or `local_stack/`
(tests/unit/test_torch_free.py reads its source to prove it). Those packages declare what
they add in pyproject.toml, and the core finds it by name in the installed metadata:

- `inktex.commands`: functions `add(subparsers)` that add `inktex` subcommands (the model
  registry's `models`; the local stack's `up`, `down`, `status`, ...);
- `inktex.recognizers`: recognisers by kind, each called with a path (`torch`: a PyTorch
  checkpoint, with the training extra);
- `inktex.tools`: functions that a core command calls by name (`augment-sheet`).

A package that is not installed, or whose extra is missing, is an InkTeXError naming the
extra to install, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from inktex.errors import InkTeXError

COMMANDS = "inktex.commands"
RECOGNIZERS = "inktex.recognizers"
TOOLS = "inktex.tools"


def _entry_points(group: str) -> list[EntryPoint]:
    # One distribution can be seen twice (an editable install beside a build folder).
    unique = {ep.name: ep for ep in entry_points(group=group)}
    return [unique[name] for name in sorted(unique)]


def load(group: str, name: str, extra: str) -> Callable[..., Any]:
    """The callable that entry point `name` of `group` names (every group's entries are called:
    an adder, a recogniser class, a tool); `extra` is the pip extra that brings its
    dependencies, for the message when they are missing."""
    found = [ep for ep in _entry_points(group) if ep.name == name]
    if not found:
        raise InkTeXError(
            f"nothing provides {name!r} ({group}): install InkTeX with its extras, "
            f"pip install -e '.[{extra}]'"
        )
    try:
        return found[0].load()
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise InkTeXError(
            f"{name!r} needs {missing}, which is not installed: pip install 'inktex[{extra}]'"
        ) from exc


def command_adders() -> list[Callable]:
    """Every installed `inktex.commands` entry point's `add(subparsers)`, by name. One that
    cannot be loaded is left out with a line on stderr, so the other commands still run."""
    adders = []
    for ep in _entry_points(COMMANDS):
        try:
            adders.append(ep.load())
        except ImportError as exc:
            print(f"inktex: the {ep.name} commands are unavailable: {exc}", file=sys.stderr)
    return adders
