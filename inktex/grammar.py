"""Which next tokens keep a prediction in the normaliser's canonical form.

The decoder writes canonical token sequences (`inktex.latex`): `\\frac { a } { b }`,
`x _ { i } ^ { 2 }`, `\\sqrt [ n ] { x }`. Nothing in a neural decoder guarantees that form:
an undertrained one can close a brace it never opened, stop inside an argument or write a
second superscript, and KaTeX then refuses to render the answer at all. The search therefore
asks this grammar, at every step, which tokens may come next:

- after `^`, `_` and `\\frac` (twice) comes `{`; after `\\sqrt`, `{` or `[` (its index);
- `}` only closes an open `{`, `]` closes a root's index, `<eos>` only with nothing open;
- scripts come subscript first, at most one of each (the normaliser's order).

Every one of CROHME's normalised labels satisfies it (`tests/unit/test_grammar.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from inktex.vocab import EOS, PAD, SOS

# What a `{` opens, so that its `}` knows what comes next.
_GROUP, _NUMERATOR, _DENOMINATOR, _RADICAND, _SUB, _SUP = (
    "group",
    "numerator",
    "denominator",
    "radicand",
    "sub",
    "sup",
)
_INDEX = "index"  # a root's `[ ... ]`


@dataclass(frozen=True)
class GrammarState:
    """Where a prediction stands: what is open, what must come next, which scripts are done."""

    open: tuple[str, ...] = ()  # innermost last
    expect: str | None = None  # a `{` of this kind must come next; "root": `{` or `[`
    scripts: str | None = None  # "sub" or "sup": the last atom's scripts written so far


class LatexGrammar:
    """The canonical form as token masks over one vocabulary (ids, as the search sees them)."""

    def __init__(self, tokens: Sequence[str]):
        index = {token: i for i, token in enumerate(tokens)}
        self.size = len(tokens)
        self.open_id, self.close_id = index["{"], index["}"]
        self.eos_id = index[EOS]
        self.ids = {
            name: index.get(token, -1)
            for name, token in (
                ("sup", "^"),
                ("sub", "_"),
                ("frac", r"\frac"),
                ("sqrt", r"\sqrt"),
                ("lbracket", "["),
                ("rbracket", "]"),
            )
        }
        never = [index[t] for t in (PAD, SOS) if t in index]
        self._base = np.ones(self.size, dtype=bool)
        self._base[never] = False
        self.mask = lru_cache(maxsize=None)(self._mask)

    def start(self) -> GrammarState:
        return GrammarState()

    def _only(self, *ids: int) -> np.ndarray:
        allowed = np.zeros(self.size, dtype=bool)
        allowed[[i for i in ids if i >= 0]] = True
        return allowed

    def _mask(self, state: GrammarState) -> np.ndarray:
        """Allowed next tokens (a read-only boolean row over the vocabulary)."""
        if state.expect == "root":
            allowed = self._only(self.open_id, self.ids["lbracket"])
        elif state.expect is not None:
            allowed = self._only(self.open_id)
        else:
            allowed = self._base.copy()
            inner = state.open[-1] if state.open else None
            if inner is None or inner == _INDEX:
                allowed[self.close_id] = False
            if inner is not None:
                allowed[self.eos_id] = False
            if state.scripts is not None:  # subscript first, one of each
                done = ("sub",) if state.scripts == _SUB else ("sub", "sup")
                allowed[[self.ids[name] for name in done if self.ids[name] >= 0]] = False
        allowed.flags.writeable = False
        return allowed

    def advance(self, state: GrammarState, token: int) -> GrammarState:
        """The state after `token` (assumed allowed by `mask(state)`)."""
        ids = self.ids
        if token == self.open_id:
            kind = state.expect if state.expect not in (None, "root") else _GROUP
            return GrammarState((*state.open, kind))
        if state.expect == "root" and token == ids["lbracket"]:
            return GrammarState((*state.open, _INDEX))
        if token == self.close_id and state.open:
            kind, rest = state.open[-1], state.open[:-1]
            if kind == _NUMERATOR:
                return GrammarState(rest, expect=_DENOMINATOR)
            return GrammarState(rest, scripts=kind if kind in (_SUB, _SUP) else None)
        if token == ids["rbracket"] and state.open and state.open[-1] == _INDEX:
            return GrammarState(state.open[:-1], expect=_RADICAND)
        if token == ids["sub"]:
            return GrammarState(state.open, expect=_SUB)
        if token == ids["sup"]:
            return GrammarState(state.open, expect=_SUP)
        if token == ids["frac"]:
            return GrammarState(state.open, expect=_NUMERATOR)
        if token == ids["sqrt"]:
            return GrammarState(state.open, expect="root")
        return GrammarState(state.open)

    def accepts(self, ids: Sequence[int]) -> bool:
        """Whether a whole sequence (without <sos>/<eos>) is in the canonical form."""
        state = self.start()
        for token in ids:
            if not self.mask(state)[token]:
                return False
            state = self.advance(state, token)
        return bool(self.mask(state)[self.eos_id])


@lru_cache(maxsize=8)
def grammar_for(tokens: tuple[str, ...]) -> LatexGrammar | None:
    """The grammar of a vocabulary (one per vocabulary, masks cached), or None for one without
    braces: then there is nothing to keep balanced."""
    return LatexGrammar(tokens) if {"{", "}", EOS} <= set(tokens) else None
