"""The one LaTeX normaliser: annotators' raw LaTeX <-> canonical token sequences.

Training labels, evaluation, predictions and user feedback all pass through
`normalize_latex`, so "exact match" means the same thing everywhere. The canonical
form follows the CROHME convention: one token per symbol, scripts and arguments
always braced (`x ^ { 2 }`), subscript before superscript, aliases folded
(`\\lt` -> `<`, `\\to` -> `\\rightarrow`), and spacing, sizing and `\\left`/`\\right`
dropped because they change nothing a reader of handwriting can see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from inktex.errors import LatexSyntaxError

_TOKEN_RE = re.compile(r"\\[a-zA-Z]+|\\.|[^\s]")

# Dropped: spacing, sizing, delimiters' wrappers and math-mode markers.
_DROPPED = frozenset(
    r"\left \right \big \Big \bigg \Bigg \bigl \bigr \Bigl \Bigr \biggl \biggr \Biggl \Biggr"
    r" \limits \nolimits \displaystyle \textstyle \! \, \; \: \  \quad \qquad $ ~".split()
    + ["\\ "]
)
_ALIASES = {
    r"\lt": "<",
    r"\gt": ">",
    r"\le": r"\leq",
    r"\ge": r"\geq",
    r"\ne": r"\neq",
    r"\to": r"\rightarrow",
    r"\dots": r"\ldots",
    r"\lbrack": "[",
    r"\rbrack": "]",
    r"\lbrace": r"\{",
    r"\rbrace": r"\}",
    r"\vert": "|",
    r"\mid": "|",
    r"\gets": r"\leftarrow",
}
_MULTI_ALIASES = {r"\parallel": ("|", "|")}
# Text wrappers whose content is kept as symbols: handwriting has no font.
_TEXT_WRAPPERS = frozenset(r"\mbox \mathrm \hbox \text \textrm \mathit \operatorname".split())
# Wrappers that are themselves repairs of malformed input.
_FALLBACK_WRAPPERS = frozenset([r"\vtop"])
# Commands known to the normaliser (besides single characters).
KNOWN_COMMANDS = frozenset(
    r"""\frac \sqrt \sum \int \lim \log \sin \cos \tan \times \div \pm \cdot \cdots \ldots
    \leq \geq \neq \rightarrow \leftarrow \infty \prime \alpha \beta \gamma \delta \theta
    \lambda \mu \pi \sigma \phi \Delta \Pi \in \forall \exists \{ \} \exp \ln \sec \csc
    \cot \arcsin \arccos \arctan \sinh \cosh \tanh \max \min \omega \epsilon \varepsilon
    \rho \tau \psi \chi \eta \zeta \xi \kappa \nu \Sigma \Gamma \Omega \Phi \Theta \Lambda
    \subset \subseteq \supset \cup \cap \emptyset \partial \nabla \approx \equiv \sim
    \propto \perp \angle \neg \wedge \vee \Rightarrow \Leftrightarrow \leftrightarrow
    \mapsto \prod \oint \circ \bullet \star \ast \% \# \& \_""".split()
)
_SCRIPTS = ("_", "^")


@dataclass
class Normalized:
    """Tokens plus the repairs that were needed to get them (for the fallback report)."""

    tokens: list[str]
    fallbacks: list[str] = field(default_factory=list)


def tokenize_latex(latex: str) -> list[str]:
    """Split raw LaTeX into lexical tokens (commands, escaped characters, single characters)."""
    return _TOKEN_RE.findall(latex)


def normalize_latex(latex: str) -> list[str]:
    """Canonical token sequence of `latex`; raises LatexSyntaxError if it cannot be parsed."""
    return normalize_latex_report(latex).tokens


def normalize_latex_report(latex: str) -> Normalized:
    """Like `normalize_latex`, also naming each fallback rule that the input needed."""
    if not isinstance(latex, str):
        raise LatexSyntaxError(f"LaTeX must be a string, not {type(latex).__name__}")
    parser = _Parser(_lex(latex))
    tokens = parser.parse_sequence(closing=None)
    return Normalized(tokens, parser.fallbacks + parser.lex_fallbacks)


def to_latex(tokens: list[str]) -> str:
    """LaTeX source for canonical tokens; KaTeX renders it and it normalises back to `tokens`."""
    return " ".join(tokens)


class _Lexed(list):
    lex_fallbacks: list[str]


def _lex(latex: str) -> _Lexed:
    """Tokens with aliases folded, dropped tokens removed and run-together commands split."""
    out = _Lexed()
    out.lex_fallbacks = []
    raw = tokenize_latex(latex)
    i = 0
    while i < len(raw):
        tok = raw[i]
        i += 1
        if tok in (r"\left", r"\right") and i < len(raw) and raw[i] == ".":
            i += 1  # `\left.` is an invisible delimiter
            continue
        if tok in _DROPPED:
            continue
        if tok.startswith("\\") and tok[1:].isalpha() and not _is_known(tok):
            split = _split_run_together(tok)
            if split is not None:
                out.lex_fallbacks.append(f"split run-together command {tok}")
                out.extend(split)
                continue
        if tok in _MULTI_ALIASES:
            out.extend(_MULTI_ALIASES[tok])
            continue
        out.append(_ALIASES.get(tok, tok))
    return out


def _is_known(command: str) -> bool:
    return (
        command in KNOWN_COMMANDS
        or command in _ALIASES
        or command in _MULTI_ALIASES
        or command in _DROPPED
        or command in _TEXT_WRAPPERS
        or command in _FALLBACK_WRAPPERS
    )


def _split_run_together(command: str) -> list[str] | None:
    r"""`\ltN` -> `<`, `N`: the longest known command prefix, then single letters."""
    for end in range(len(command) - 1, 1, -1):
        head = command[:end]
        if _is_known(head) and head not in _DROPPED:
            return [_ALIASES.get(head, head), *command[end:]]
    return None


class _Parser:
    """Recursive descent over lexed tokens, emitting canonical tokens."""

    def __init__(self, tokens: _Lexed):
        self.tokens = tokens
        self.pos = 0
        self.fallbacks: list[str] = []
        self.lex_fallbacks = tokens.lex_fallbacks

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise LatexSyntaxError("LaTeX ends where an argument was expected")
        self.pos += 1
        return tok

    def parse_sequence(self, closing: str | None) -> list[str]:
        out: list[str] = []
        while True:
            tok = self.peek()
            if tok is None:
                if closing is not None:
                    raise LatexSyntaxError(f"unbalanced braces: missing '{closing}'")
                return out
            if tok == closing:
                self.pos += 1
                return out
            if tok == "}":
                self.pos += 1  # a stray closing brace at the top level: annotators' typo
                self.fallbacks.append("dropped an unmatched '}'")
                continue
            out.extend(self.parse_atom_with_scripts())

    def parse_atom_with_scripts(self) -> list[str]:
        base, braced = self.parse_atom()
        scripts: dict[str, list[str]] = {}
        while self.peek() in (*_SCRIPTS, "'"):
            tok = self.take()
            if tok == "'":
                scripts.setdefault("^", []).append(r"\prime")
                continue
            arg = self.parse_argument()
            arg = [r"\prime" if t == "'" else t for t in arg]
            scripts.setdefault(tok, []).extend(arg)
        scripts = {k: v for k, v in scripts.items() if v}
        if braced and (len(base) > 1 and scripts):
            base = ["{", *base, "}"]
        out = list(base)
        for key in _SCRIPTS:
            if key in scripts:
                out += [key, "{", *scripts[key], "}"]
        return out

    def parse_atom(self) -> tuple[list[str], bool]:
        """One atom without its scripts; the flag says it was a bare brace group."""
        tok = self.take()
        if tok == "{":
            return self.parse_sequence("}"), True
        if tok in _SCRIPTS or tok == "'":
            # A script with no base (`^{2}` at the start): keep it on an empty base.
            self.pos -= 1
            return [], False
        if tok == r"\frac":
            num = self.parse_argument()
            den = self.parse_argument()
            return [r"\frac", "{", *num, "}", "{", *den, "}"], False
        if tok == r"\sqrt":
            out = [r"\sqrt"]
            if self.peek() == "[":
                self.pos += 1
                out += ["[", *self.parse_sequence("]"), "]"]
            return [*out, "{", *self.parse_argument(), "}"], False
        if tok in _TEXT_WRAPPERS or tok in _FALLBACK_WRAPPERS:
            if tok in _FALLBACK_WRAPPERS:
                self.fallbacks.append(f"unwrapped {tok}")
            return self.parse_argument(), False
        return [tok], False

    def parse_argument(self) -> list[str]:
        """A braced group, or a single atom (`\\frac12`, `x^2`, `x^\\alpha`)."""
        if self.peek() == "{":
            self.pos += 1
            return self.parse_sequence("}")
        if self.peek() == "}":
            self.fallbacks.append("empty argument for a command missing one")
            return []
        if self.peek() in (*_SCRIPTS, None):
            raise LatexSyntaxError(f"missing argument before {self.peek() or 'the end'}")
        return self.parse_atom()[0]
