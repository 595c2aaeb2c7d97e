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

# `\\.` spans newlines too: a backslash before any white space is TeX's control space.
_TOKEN_RE = re.compile(r"\\[a-zA-Z]+|\\.|[^\s]", re.DOTALL)


def _words(text: str) -> frozenset[str]:
    """The white-space separated words of `text`: long command lists stay readable."""
    return frozenset(text.split())


# Dropped: spacing, sizing, delimiters' wrappers and math-mode markers (and `\ `, below).
_DROPPED = _words(
    r"\left \right \big \Big \bigg \Bigg \bigl \bigr \Bigl \Bigr \biggl \biggr \Biggl \Biggr"
    r" \limits \nolimits \displaystyle \textstyle \! \, \; \: \quad \qquad $ ~"
) | {"\\ "}
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
_TEXT_WRAPPERS = _words(r"\mbox \mathrm \hbox \text \textrm \mathit \operatorname")
# Wrappers that are themselves repairs of malformed input.
_FALLBACK_WRAPPERS = frozenset([r"\vtop"])
# Commands known to the normaliser (besides single characters).
KNOWN_COMMANDS = _words(
    r"""\frac \sqrt \sum \int \lim \log \sin \cos \tan \times \div \pm \cdot \cdots \ldots
    \leq \geq \neq \rightarrow \leftarrow \infty \prime \alpha \beta \gamma \delta \theta
    \lambda \mu \pi \sigma \phi \Delta \Pi \in \forall \exists \{ \} \exp \ln \sec \csc
    \cot \arcsin \arccos \arctan \sinh \cosh \tanh \max \min \omega \epsilon \varepsilon
    \rho \tau \psi \chi \eta \zeta \xi \kappa \nu \Sigma \Gamma \Omega \Phi \Theta \Lambda
    \subset \subseteq \supset \cup \cap \emptyset \partial \nabla \approx \equiv \sim
    \propto \perp \angle \neg \wedge \vee \Rightarrow \Leftrightarrow \leftrightarrow
    \mapsto \prod \oint \circ \bullet \star \ast \% \# \& \_"""
)
_SCRIPTS = ("_", "^")
# Aliases that annotators ran into the next letter (CROHME has `M\\ltN`, `u_n\\gtM`).
_RUN_TOGETHER_PREFIXES = (r"\lt", r"\gt")


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
        if tok == "\\":
            raise LatexSyntaxError("LaTeX ends with a lone backslash '\\'; remove it")
        if tok in _DROPPED or (len(tok) == 2 and tok[0] == "\\" and tok[1].isspace()):
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
    r"""`\ltN` -> `<`, `N`: an alias run into one letter; other unknown commands stay whole.

    Only `\lt`/`\gt` plus one letter is split: a general "known prefix, then letters" rule
    would turn real commands into other symbols (`\coth` -> `\cot h`, `\inf` -> `\in f`,
    `\textbf` -> `\text b f`, `\ltimes` -> `< i m e s`).
    """
    head, rest = command[:-1], command[-1]
    if head in _RUN_TOGETHER_PREFIXES:
        return [_ALIASES[head], rest]
    return None


def _has_bare_closing_bracket(tokens: list[str]) -> bool:
    """Whether a `]` outside braces would end a root index early when read back."""
    depth = 0
    for tok in tokens:
        depth += {"{": 1, "}": -1}.get(tok, 0)
        if tok == "]" and depth == 0:
            return True
    return False


class _Parser:
    """Recursive descent over lexed tokens, emitting canonical tokens."""

    def __init__(self, tokens: _Lexed):
        self.tokens = tokens
        self.pos = 0
        self.fallbacks: list[str] = []
        self.script_depth = 0  # how many script arguments enclose the current position
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
            self.script_depth += 1
            scripts.setdefault(tok, []).extend(self.parse_argument())
            self.script_depth -= 1
        scripts = {k: v for k, v in scripts.items() if v}
        # A group keeps its braces where dropping them would move its scripts: on a group of
        # several atoms or none (`{ab}^2`, `x^2{}^3`) they would fall on one atom or merge.
        if braced and scripts and len(base) != 1:
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
        if tok == "'" and self.script_depth:
            # `f^{'}` is how annotators write f' (TeX would raise the prime twice).
            primes = [r"\prime"]
            while self.peek() == "'":
                primes.append(self.take().replace("'", r"\prime"))
            return primes, False
        if tok in _SCRIPTS or tok == "'":
            # A script with no base (`^{2}` at the start) sits on an empty group, `{ } ^ { 2 }`,
            # as `{}^{2}` does: bare, it would join the scripts of an atom written before it.
            self.pos -= 1
            return [], True
        if tok == r"\frac":
            num = self.parse_argument()
            den = self.parse_argument()
            return [r"\frac", "{", *num, "}", "{", *den, "}"], False
        if tok == r"\sqrt":
            out = [r"\sqrt"]
            if self.peek() == "[":
                self.pos += 1
                index = self.parse_sequence("]")
                if _has_bare_closing_bracket(index):  # `\sqrt[{[a]}]`: braces hide the `]`
                    index = ["{", *index, "}"]
                out += ["[", *index, "]"]
            return [*out, "{", *self.parse_argument(), "}"], False
        if tok in _TEXT_WRAPPERS or tok in _FALLBACK_WRAPPERS:
            if tok in _FALLBACK_WRAPPERS:
                self.fallbacks.append(f"unwrapped {tok}")
            # Unwrapped, the argument is a group like `{...}`: `\mbox{x^2}^3` keeps its braces.
            return self.parse_argument(), True
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
