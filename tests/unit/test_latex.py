"""The LaTeX normaliser: hand cases, properties over generated LaTeX, and the CROHME labels."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inktex.data import SPLITS, read_labels
from inktex.errors import InputError, LatexSyntaxError
from inktex.latex import normalize_latex, normalize_latex_report, to_latex, tokenize_latex
from inktex.vocab import Vocabulary

DOC = Path(__file__).resolve().parents[2] / "docs" / "normalizer.md"


def canon(latex: str) -> str:
    """Canonical LaTeX: tokens joined by spaces, easier to read in assertions than lists."""
    return to_latex(normalize_latex(latex))


# --- hand cases ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # scripts and arguments are always braced
        ("x^2", "x ^ { 2 }"),
        ("x^{2}", "x ^ { 2 }"),
        (r"x^\alpha", r"x ^ { \alpha }"),
        (r"\frac12", r"\frac { 1 } { 2 }"),
        (r"\frac{1}{2}", r"\frac { 1 } { 2 }"),
        (r"\frac a b", r"\frac { a } { b }"),
        (r"\sqrt2", r"\sqrt { 2 }"),
        (r"\sqrt[3]{x}", r"\sqrt [ 3 ] { x }"),
        (r"\sqrt[n]x", r"\sqrt [ n ] { x }"),
        # subscript before superscript, however written
        ("x^a_b", "x _ { b } ^ { a }"),
        ("x_b^a", "x _ { b } ^ { a }"),
        # primes are superscripts
        ("f'", r"f ^ { \prime }"),
        ("f''(x)", r"f ^ { \prime \prime } ( x )"),
        ("f'_1", r"f _ { 1 } ^ { \prime }"),
        (r"f^{\prime}", r"f ^ { \prime }"),
        # aliases
        (r"a \lt b", "a < b"),
        (r"a \gt b", "a > b"),
        (r"a \le b \ge c \ne d", r"a \leq b \geq c \neq d"),
        (r"x \to 0", r"x \rightarrow 0"),
        (r"\lbrack x \rbrack", "[ x ]"),
        (r"\lbrace x \rbrace", r"\{ x \}"),
        (r"\vert x \mid", "| x |"),
        (r"x \parallel y", "x | | y"),
        (r"a \dots b", r"a \ldots b"),
        # spacing, sizing, math-mode markers and \left/\right are dropped
        (r"a\,b\;c\:d\!e\quad f\qquad g\ h~i", "a b c d e f g h i"),
        ("$x+1$", "x + 1"),
        (r"\displaystyle x", "x"),
        (r"\left( x \right)", "( x )"),
        (r"\left. \frac{d}{dx} \right|_{0}", r"\frac { d } { d x } | _ { 0 }"),
        (r"\Bigg( x \Bigg)", "( x )"),
        (r"\big[ x \big]", "[ x ]"),
        # limits placement is not written
        (r"\lim\limits_{x \to 0} f", r"\lim _ { x \rightarrow 0 } f"),
        (r"\int\limits_0^1 x", r"\int _ { 0 } ^ { 1 } x"),
        (r"\sum\nolimits_{i} i", r"\sum _ { i } i"),
        # text wrappers keep their symbols: handwriting has no font
        (r"\mbox{erf} x", "e r f x"),
        (r"\mathrm{d}x", "d x"),
        (r"\hbox{3}", "3"),
        (r"\mbox{x}^2", "x ^ { 2 }"),
        # braces that change nothing go; those that carry a script over a group stay
        ("{x}", "x"),
        ("{x}^2", "x ^ { 2 }"),
        ("{ab}^2", "{ a b } ^ { 2 }"),
        ("{x^2}^3", "{ x ^ { 2 } } ^ { 3 }"),
        (r"\mbox{x^2}^3", "{ x ^ { 2 } } ^ { 3 }"),
        ("x^2{}^3", "x ^ { 2 } { } ^ { 3 }"),
        ("x^2{^3}", "x ^ { 2 } { } ^ { 3 }"),
        ("^2x", "{ } ^ { 2 } x"),
        ("f^{'}(x)", r"f ^ { \prime } ( x )"),
        ("f^{''}", r"f ^ { \prime \prime }"),
        ("f^'", r"f ^ { \prime }"),
        ("x^{\\frac{'}{2}}", r"x ^ { \frac { \prime } { 2 } }"),
        ("'x", r"{ } ^ { \prime } x"),
        ("x_{}", "x"),
        # a backslash before a line break is a control space
        ("a\\\nb", "a b"),
        # commands the normaliser does not know pass through whole
        (r"\coth x", r"\coth x"),
        (r"\inf_n", r"\inf _ { n }"),
        ("", ""),
        ("  ", ""),
    ],
)
def test_normalises_hand_cases(raw: str, expected: str) -> None:
    assert canon(raw) == expected
    assert normalize_latex_report(raw).fallbacks == []


@pytest.mark.parametrize(
    ("raw", "expected", "fallback"),
    [
        (r"M\ltN", "M < N", r"split run-together command \ltN"),
        (r"u_n\gtM", "u _ { n } > M", r"split run-together command \gtM"),
        (r"\lim \limits _ {y \rightarrow x}} f", r"\lim _ { y \rightarrow x } f", "unmatched '}'"),
        (r"{\sqrt} x", r"\sqrt { } x", "empty argument"),
        (r"\vtop {\hbox {3}}", "3", r"unwrapped \vtop"),
    ],
)
def test_repairs_are_reported_as_fallbacks(raw: str, expected: str, fallback: str) -> None:
    report = normalize_latex_report(raw)
    assert to_latex(report.tokens) == expected
    assert any(fallback in f for f in report.fallbacks), report.fallbacks


@pytest.mark.parametrize(
    "raw",
    [
        "{x",
        "x}{",
        r"\frac{1}{2",
        r"\frac{1}",
        r"\sqrt",
        "x^",
        "x^_2",
        r"\sqrt[3{x}",
        "x\\",
    ],
)
def test_malformed_latex_raises(raw: str) -> None:
    with pytest.raises(LatexSyntaxError):
        normalize_latex(raw)


def test_latex_syntax_error_is_the_users_to_fix() -> None:
    with pytest.raises(InputError, match="unbalanced braces"):
        normalize_latex("{x")
    with pytest.raises(LatexSyntaxError, match="must be a string"):
        normalize_latex(None)  # type: ignore[arg-type]


def test_tokenize_latex_splits_commands_escapes_and_characters() -> None:
    assert tokenize_latex(r"\frac{a}{\beta}\,x_1\{") == [
        r"\frac", "{", "a", "}", "{", r"\beta", "}", r"\,", "x", "_", "1", r"\{",
    ]  # fmt: skip


def test_to_latex_joins_tokens_with_spaces() -> None:
    assert to_latex([r"\frac", "{", "1", "}", "{", "x", "}"]) == r"\frac { 1 } { x }"
    assert to_latex([]) == ""


# --- properties over generated LaTeX ---------------------------------------------------------
#
# The grammar builds each expression twice: `plain`, fully braced in canonical spelling, and
# `fancy`, the same expression as annotators write it (aliases, unbraced single-token
# arguments, scripts in either order, \left/\right, sizing, spacing noise, \mbox, \limits).
# `atom` says the expression is one symbol, which LaTeX lets go unbraced as an argument.

SYMBOLS = [
    *"abcxyzABXn0123456789+-=(),./|!",
    r"\alpha", r"\beta", r"\pi", r"\theta", r"\infty", r"\times", r"\div", r"\pm", r"\cdot",
    r"\cdots", r"\ldots", r"\sin", r"\log", r"\exists", r"\in", r"\forall", r"\{", r"\}",
]  # fmt: skip
ALIASES = {
    "<": [r"\lt"],
    ">": [r"\gt"],
    r"\leq": [r"\le"],
    r"\geq": [r"\ge"],
    r"\neq": [r"\ne"],
    r"\rightarrow": [r"\to"],
    "[": [r"\lbrack"],
    "]": [r"\rbrack"],
    "|": [r"\vert", r"\mid"],
}
NOISE = [r"\,", r"\;", r"\:", r"\!", r"\quad", r"\qquad", "~", r"\ ", r"\displaystyle", "$"]
OPERATORS = [r"\sum", r"\int", r"\lim", r"\prod"]
SIZES = [r"\big", r"\Big", r"\bigg", r"\Bigg"]


class Expr:
    """One expression in its two spellings."""

    def __init__(self, plain: str, fancy: str, atom: bool = False):
        self.plain, self.fancy, self.atom = plain, fancy, atom

    def __repr__(self) -> str:
        return f"Expr({self.plain!r}, {self.fancy!r})"


def _sym(symbol: str) -> st.SearchStrategy[Expr]:
    return st.sampled_from([symbol, *ALIASES.get(symbol, [])]).map(
        lambda fancy: Expr(f" {symbol} ", f" {fancy} ", atom=True)
    )


leaves = st.sampled_from([*SYMBOLS, *ALIASES]).flatmap(_sym)


def _arg(draw: st.DrawFn, e: Expr) -> tuple[str, str]:
    """An argument: always braced in `plain`, possibly bare in `fancy` when it is one atom."""
    bare = e.atom and e.plain.strip() != "[" and draw(st.booleans())  # `\sqrt[` opens an index
    return "{" + e.plain + "}", (e.fancy if bare else "{" + e.fancy + "}")


@st.composite
def frac(draw: st.DrawFn, child: st.SearchStrategy[Expr]) -> Expr:
    (pn, fn), (pd, fd) = _arg(draw, draw(child)), _arg(draw, draw(child))
    return Expr(rf" \frac{pn}{pd} ", rf" \frac {fn} {fd} ")


@st.composite
def sqrt(draw: st.DrawFn, child: st.SearchStrategy[Expr]) -> Expr:
    pa, fa = _arg(draw, draw(child))
    index = draw(st.none() | child)
    if index is None:
        return Expr(rf" \sqrt{pa} ", rf" \sqrt {fa} ")
    # braces keep a `]` in the index from closing it, in TeX as here
    return Expr(rf" \sqrt[{{{index.plain}}}]{pa} ", rf" \sqrt[{{{index.fancy}}}] {fa} ")


@st.composite
def scripted(draw: st.DrawFn, child: st.SearchStrategy[Expr]) -> Expr:
    operator = draw(st.booleans())
    if operator:  # `\sum\limits_a^b`: limits placement is not written
        op = draw(st.sampled_from(OPERATORS))
        plain, fancy = f" {op} ", f" {op} " + draw(st.sampled_from(["", r"\limits", r"\nolimits"]))
    else:  # a symbol, or any expression in braces
        braced = child.map(lambda e: Expr("{" + e.plain + "}", "{" + e.fancy + "}"))
        base = draw(leaves | braced)
        plain, fancy = f" {base.plain} ", f" {base.fancy} "
    sub, sup = draw(st.none() | child), draw(st.none() | child)
    primes = 0 if operator else draw(st.integers(0, 2))
    if sub is None and sup is None and primes == 0:
        sup = draw(child)
    sub_plain, sub_fancy = _arg(draw, sub) if sub is not None else ("", "")
    sup_plain, sup_fancy = _arg(draw, sup) if sup is not None else ("{}", "")
    if sub is not None:
        plain += f"_{sub_plain}"
        sub_fancy = f"_{sub_fancy}"
    if sup is not None or primes:
        plain += "^{" + r" \prime " * primes + sup_plain[1:-1] + "}"
        sup_fancy = f"^{sup_fancy}" if sup is not None else ""
    # `f'^2_1` is TeX for f_1^{\prime 2}; without primes the scripts come in either order
    if primes or draw(st.booleans()):
        fancy += "'" * primes + sup_fancy + sub_fancy
    else:
        fancy += sub_fancy + sup_fancy
    return Expr(plain, fancy)


@st.composite
def delimited(draw: st.DrawFn, child: st.SearchStrategy[Expr]) -> Expr:
    e = draw(child)
    opening, closing = draw(st.sampled_from([("(", ")"), ("[", "]"), ("|", "|"), (r"\{", r"\}")]))
    style = draw(st.sampled_from(["plain", "left-right", "sized"]))
    if style == "left-right":
        return Expr(f" {opening}{e.plain}{closing} ", rf" \left{opening}{e.fancy}\right{closing} ")
    if style == "sized":
        size = draw(st.sampled_from(SIZES))
        fancy = rf" {size}{opening}{e.fancy}{size}{closing} "
        return Expr(f" {opening}{e.plain}{closing} ", fancy)
    return Expr(f" {opening}{e.plain}{closing} ", f" {opening}{e.fancy}{closing} ")


@st.composite
def text(draw: st.DrawFn) -> Expr:
    letters = draw(st.text(alphabet="abcdefxyzABC", min_size=1, max_size=4))
    wrapper = draw(st.sampled_from([r"\mbox", r"\mathrm", r"\text", r"\hbox"]))
    return Expr(f" {' '.join(letters)} ", f" {wrapper}{{{letters}}} ")


@st.composite
def sequence(draw: st.DrawFn, child: st.SearchStrategy[Expr]) -> Expr:
    parts = draw(st.lists(child, min_size=1, max_size=4))
    plain, fancy = "", ""
    for part in parts:
        noise = draw(st.lists(st.sampled_from(NOISE), max_size=2))
        plain += part.plain
        fancy += part.fancy + " " + " ".join(noise) + " "
    return Expr(plain, fancy)


@st.composite
def grouped(draw: st.DrawFn, child: st.SearchStrategy[Expr]) -> Expr:
    e = draw(child)
    return Expr(e.plain, "{" + e.fancy + "}")


expressions = st.recursive(
    leaves | text(),
    lambda child: st.one_of(
        sequence(child),
        frac(child),
        sqrt(child),
        scripted(child),
        delimited(child),
        grouped(child),
    ),
    max_leaves=12,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(expressions)
def test_equivalent_spellings_normalise_alike(expr: Expr) -> None:
    assert normalize_latex(expr.fancy) == normalize_latex(expr.plain)


@PROPERTY
@given(expressions)
def test_to_latex_round_trips_normalised_tokens(expr: Expr) -> None:
    """normalize(to_latex(tokens)) == tokens: normalising generated LaTeX is idempotent."""
    tokens = normalize_latex(expr.fancy)
    assert normalize_latex(to_latex(tokens)) == tokens
    assert normalize_latex_report(to_latex(tokens)).fallbacks == []


# Fuzz: arbitrary strings of LaTeX pieces, most of them malformed. Whatever parses at all
# must normalise idempotently.
PIECES = [
    "x", "2", "{", "}", "^", "_", "'", r"\frac", r"\sqrt", "[", "]", r"\left(", r"\right)",
    r"\left.", r"\mbox", r"\lt", r"\ltN", r"\coth", " ", r"\,", "\\\n", "$", r"\alpha", "(",
    r"\limits", r"\int", r"\parallel", r"\vtop",
]  # fmt: skip


@PROPERTY
@given(st.lists(st.sampled_from(PIECES), max_size=14).map(" ".join))
def test_normalising_any_parsable_latex_is_idempotent(latex: str) -> None:
    try:
        once = to_latex(normalize_latex(latex))
    except LatexSyntaxError:
        return
    assert to_latex(normalize_latex(once)) == once


# --- every CROHME label ----------------------------------------------------------------------


def _fallback_names_in_doc() -> set[str]:
    """`split/name` of each label listed under the doc's fallback heading."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Labels that need a fallback rule", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


@pytest.mark.crohme
def test_every_crohme_label_normalises(crohme: Path) -> None:
    fallbacks: set[str] = set()
    total = 0
    for split in SPLITS:
        for name, latex in read_labels(crohme / f"{split}.tsv"):
            total += 1
            report = normalize_latex_report(latex)
            assert report.tokens, f"{split}/{name}: {latex!r} normalises to nothing"
            assert normalize_latex(to_latex(report.tokens)) == report.tokens, f"{split}/{name}"
            if report.fallbacks:
                fallbacks.add(f"{split}/{name}")
    assert total == 8835 + 671 + 986
    assert len(fallbacks) <= 0.01 * total
    assert fallbacks == _fallback_names_in_doc(), "docs/normalizer.md lists the fallback labels"


@pytest.mark.crohme
def test_crohme_training_vocabulary_is_small(crohme: Path) -> None:
    labels = [normalize_latex(latex) for _, latex in read_labels(crohme / "train.tsv")]
    vocabulary = Vocabulary.build(labels)
    assert len(vocabulary) <= 120
    for split in ("test2013", "test2014"):
        for name, latex in read_labels(crohme / f"{split}.tsv"):
            unknown = vocabulary.unknown(normalize_latex(latex))
            assert not unknown, f"{split}/{name} uses {unknown}, unseen in training"
