"""The normaliser against KaTeX: canonical LaTeX renders, and it looks like what was written.

Every CROHME label is rendered twice by KaTeX (tools/katex_check.mjs, one node process): as the
annotators wrote it and as `to_latex(normalize_latex(...))`. The two MathML trees are compared
after `look()` forgets what a reader of handwriting cannot see (spacing, delimiter sizing,
`\\left`/`\\right`, grouping). Every difference that remains must fall in a category that
docs/normalizer.md justifies, with the count the doc states; a new kind of difference fails.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import pytest
from testkit import require

from inktex.data import SPLITS, read_labels
from inktex.latex import normalize_latex, to_latex

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "katex_check.mjs"
DOC = REPO / "docs" / "normalizer.md"
# KaTeX lacks LaTeX's \mbox; \text is its equivalent. Only raw labels need it.
RAW_MACROS = {r"\mbox": r"\text"}

pytestmark = pytest.mark.node


def katex(items: list[str | dict]) -> list[dict]:
    """KaTeX's verdict on each item (see tools/katex_check.mjs), all in one node process."""
    node = shutil.which("node")
    require(
        node is not None and (REPO / "web" / "node_modules" / "katex").is_dir(),
        "needs node and KaTeX: run `npm ci` in web/",
    )
    done = subprocess.run(
        [node, str(SCRIPT)], input=json.dumps(items), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert len(results) == len(items)
    return results


# --- what an expression looks like -----------------------------------------------------------

MATHML = "{http://www.w3.org/1998/Math/MathML}"
TOKENS = {"mi", "mn", "mo", "mtext", "ms"}
ROWS = {"math", "semantics", "mrow", "mstyle", "mpadded"}  # grouping only: spliced away
SCRIPTED = {"msub", "msup", "msubsup", "munder", "mover", "munderover"}
# Attributes of spacing, stretching and sizing; `mathvariant` (the font) stays.
LAYOUT = {
    "stretchy", "fence", "minsize", "maxsize", "symmetric", "lspace", "rspace", "separator",
    "displaystyle", "scriptlevel", "width", "height", "depth", "voffset", "accent",
    "accentunder", "linethickness",
}  # fmt: skip
# White space and invisible operators (function application, invisible times, ...).
INVISIBLE = re.compile(r"[\s\u00a0\u2000-\u200b\u205f\u2061-\u2064\u3000\ufeff]*")
OPENING, CLOSING = (
    set("([{|\u2223\u2225\u27e8\u230a\u2308"),
    set(")]}|\u2223\u2225\u27e9\u230b\u2309"),
)

# What each category of documented difference forgets on top of spacing and sizing.
BLINDNESS = {
    "font": "text font: \\mbox/\\mathrm (upright, text) versus math italic",
    "limits": "integral bounds above/below (\\int\\limits) versus beside",
    "parallel": "\\parallel versus two bars",
    "prime": "a prime typed inside a superscript, f^{'}",
}

Node = tuple


def look(mathml: str, blind: frozenset[str] = frozenset()) -> tuple[Node, ...]:
    """A hashable tree of what KaTeX draws, forgetting layout (and whatever `blind` names)."""
    root = ET.fromstring(mathml.replace("&nbsp;", "\u00a0"))
    return _Look(blind).row(root.find(f"{MATHML}math"))


@dataclass
class _Look:
    blind: frozenset[str]

    def row(self, e: ET.Element) -> tuple[Node, ...]:
        if _invisible(e):
            return ()
        if _tag(e) in ROWS:
            return self.children(e)
        return self.node(e)

    def children(self, e: ET.Element) -> tuple[Node, ...]:
        out: list[Node] = []
        for child in e:
            out.extend(self.row(child))
        return _merge_numbers(out)

    def node(self, e: ET.Element) -> tuple[Node, ...]:
        tag = _tag(e)
        attrs = {k: v for k, v in e.attrib.items() if k not in LAYOUT}
        if tag in TOKENS:  # spaces inside text (`\\mbox{ F }`) are spacing too
            return self.token(tag, attrs, re.sub(INVISIBLE, "", "".join(e.itertext())))
        if tag == "msqrt":  # its children form one inferred row
            return ((tag, _attrs(attrs), (self.children(e),)),)
        parts = [child for child in e if not _invisible(child)]
        if tag in SCRIPTED:
            base = self.row(parts[0])
            if _is_delimited(base):
                # A script on a group in delimiters, `\left(x\right)^2` or `{(x)}^2`, sits
                # beside the closing delimiter, as it does on a bare `)`: `(x)^2`.
                return base[:-1] + self.scripted(tag, attrs, base[-1:], parts[1:])
            return self.scripted(tag, attrs, base, parts[1:])
        return ((tag, _attrs(attrs), tuple(self.row(p) for p in parts)),)

    def scripted(
        self, tag: str, attrs: dict, base: tuple[Node, ...], scripts: list[ET.Element]
    ) -> tuple[Node, ...]:
        if "limits" in self.blind:  # bounds over and under look like sub- and superscripts
            tag = {"munder": "msub", "mover": "msup", "munderover": "msubsup"}.get(tag, tag)
        rows = [self.row(s) for s in scripts]
        if tag == "msubsup" and not all(rows):  # an empty script draws nothing
            tag = "msup" if rows[1] else "msub"
            rows = [r for r in rows if r]
        if "prime" in self.blind and tag == "msup" and not base:
            return rows[0]  # `{}^{\prime}` inside a superscript: the prime itself
        if not any(rows):
            return base
        if len(base) == 1 and base[0][0] == "mn" and len(base[0][2]) > 1:
            # KaTeX puts `12_3` on the number; the script sits after the last digit either way.
            number = base[0]
            head = (("mn", number[1], number[2][:-1]),)
            return head + ((tag, _attrs(attrs), (("mn", number[1], number[2][-1]),), *rows),)
        return ((tag, _attrs(attrs), base, *rows),)

    def token(self, tag: str, attrs: dict, text: str) -> tuple[Node, ...]:
        if "parallel" in self.blind and text == "\u2225":
            return (_symbol("\u2223", attrs), _symbol("\u2223", attrs))
        if "font" in self.blind and tag in {"mi", "mtext", "mo", "mn"}:
            # Letter by letter in math italic: handwriting has no font.
            return _merge_numbers([_symbol(c, {}) for c in text])
        if len(text) == 1:
            return (_symbol(text, attrs) if tag in {"mi", "mo"} else (tag, _attrs(attrs), text),)
        return ((tag, _attrs(attrs), text),)


def _symbol(char: str, attrs: dict) -> Node:
    """One character: a digit, a letter (font kept), or an operator (mi or mo alike)."""
    if char.isdigit():
        return ("mn", (), char)
    if char.isalpha():
        return ("mi", _attrs(attrs), char)
    attrs = {k: v for k, v in attrs.items() if (k, v) != ("mathvariant", "normal")}
    return ("mo", _attrs(attrs), char)


def _tag(e: ET.Element) -> str:
    return e.tag.removeprefix(MATHML)


def _attrs(attrs: dict) -> tuple:
    return tuple(sorted(attrs.items()))


def _invisible(e: ET.Element) -> bool:
    tag = _tag(e)
    if tag in {"annotation", "annotation-xml", "mspace"}:
        return True
    return tag in TOKENS and bool(INVISIBLE.fullmatch("".join(e.itertext())))


def _is_delimited(row: tuple[Node, ...]) -> bool:
    """A row that opens and closes with delimiters, like `( x )`."""
    return (
        len(row) >= 2
        and row[0][0] == row[-1][0] == "mo"
        and row[0][2] in OPENING
        and row[-1][2] in CLOSING
    )


def _merge_numbers(nodes: list[Node]) -> tuple[Node, ...]:
    """Adjacent digits form one number, however they were grouped."""
    out: list[Node] = []
    for node in nodes:
        if out and node[0] == out[-1][0] == "mn" and node[1] == out[-1][1]:
            out[-1] = ("mn", node[1], out[-1][2] + node[2])
        else:
            out.append(node)
    return tuple(out)


def difference(raw_mathml: str, normalised_mathml: str) -> str | None:
    """None if both look alike; else the smallest set of blindnesses that makes them alike."""
    if look(raw_mathml) == look(normalised_mathml):
        return None
    for size in range(1, len(BLINDNESS) + 1):
        for blind in combinations(sorted(BLINDNESS), size):
            if look(raw_mathml, frozenset(blind)) == look(normalised_mathml, frozenset(blind)):
                return " + ".join(blind)
    return "unexplained"


# --- the comparison itself, on hand cases ----------------------------------------------------

SAME_LOOK = [
    (r"\left( x \right)", "( x )"),
    (r"\left( x \right)^2", "( x ) ^ { 2 }"),
    (r"{\left( x \right)}^2", "{ ( x ) } ^ { 2 }"),
    (r"\Bigg[ x \Bigg]", "[ x ]"),
    (r"\left| x \right|", "| x |"),
    (r"a\,b\;c\!d\quad e\ f", "a b c d e f"),
    (r"{\sin}^{2} x", r"\sin ^ { 2 } x"),
    ("1, 000 _ {}, 000", "1 , 0 0 0 , 0 0 0"),
    ("1011\\ 0101_2", "1 0 1 1 0 1 0 1 _ { 2 }"),
    (r"\lim\limits_{x}", r"\lim _ { x }"),
    (r"\frac12", r"\frac { 1 } { 2 }"),
]
DIFFERENT_LOOK = [
    ("x^2", "x _ { 2 }", "unexplained"),
    (r"\frac{a}{b}", "a / b", "unexplained"),
    (r"\sqrt[3]{x}", r"\sqrt { x }", "unexplained"),
    ("x^{2}y", "x ^ { 2 y }", "unexplained"),
    ("(x)^2", "( x ^ { 2 } )", "unexplained"),
    ("12_3", "1 _ { 2 } 3", "unexplained"),
    (r"\mbox{erf} x", "e r f x", "font"),
    (r"\mathrm{d}x", "d x", "font"),
    (r"\int\limits_0^1 x", r"\int _ { 0 } ^ { 1 } x", "limits"),
    (r"a \parallel b", "a | | b", "parallel"),
    ("f^{'}", r"f ^ { \prime }", "prime"),
    (r"\mbox{d} \int\limits_0^1", r"d \int _ { 0 } ^ { 1 }", "font + limits"),
]


@pytest.fixture(scope="module")
def hand_renders() -> dict[str, dict]:
    sources = {s for pair in SAME_LOOK for s in pair}
    sources |= {s for raw, canonical, _ in DIFFERENT_LOOK for s in (raw, canonical)}
    items = sorted(sources)
    return dict(zip(items, katex([{"latex": s, "macros": RAW_MACROS} for s in items]), strict=True))


@pytest.mark.parametrize(("raw", "canonical"), SAME_LOOK)
def test_look_forgets_spacing_sizing_and_grouping(
    hand_renders: dict[str, dict], raw: str, canonical: str
) -> None:
    assert difference(hand_renders[raw]["mathml"], hand_renders[canonical]["mathml"]) is None


@pytest.mark.parametrize(("raw", "other", "category"), DIFFERENT_LOOK)
def test_look_tells_different_expressions_apart(
    hand_renders: dict[str, dict], raw: str, other: str, category: str
) -> None:
    assert difference(hand_renders[raw]["mathml"], hand_renders[other]["mathml"]) == category


def test_katex_check_reports_errors_and_strict_warnings() -> None:
    bad, accent, mbox = katex([r"\frac{1}", "é", r"\mbox{x}"])
    assert bad["error"] and bad["mathml"] is None
    assert accent["warnings"] == ["unicodeTextInMathMode"]
    assert "Undefined control sequence" in mbox["error"]  # KaTeX has no \mbox: RAW_MACROS


# --- every CROHME label ----------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    label: str  # split/name
    raw: str
    canonical: str
    raw_result: dict
    canonical_result: dict


@pytest.fixture(scope="module")
def crohme_renders(crohme: Path) -> list[Rendered]:
    labels = [
        (f"{split}/{name}", latex)
        for split in SPLITS
        for name, latex in read_labels(crohme / f"{split}.tsv")
    ]
    canonical = [to_latex(normalize_latex(latex)) for _, latex in labels]
    raw_items = [{"latex": latex, "macros": RAW_MACROS} for _, latex in labels]
    results = katex([*raw_items, *canonical])
    n = len(labels)
    return [
        Rendered(label, latex, canon, results[i], results[n + i])
        for i, ((label, latex), canon) in enumerate(zip(labels, canonical, strict=True))
    ]


def _doc_section(heading: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    assert f"\n## {heading}\n" in text, f"docs/normalizer.md has no section '## {heading}'"
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.crohme
def test_katex_renders_every_normalised_crohme_label(crohme_renders: list[Rendered]) -> None:
    failures = [
        (r.label, r.canonical, r.canonical_result["error"] or r.canonical_result["warnings"])
        for r in crohme_renders
        if r.canonical_result["error"] or r.canonical_result["warnings"]
    ]
    assert failures == []


@pytest.mark.crohme
def test_raw_labels_katex_cannot_render_are_listed_in_the_doc(
    crohme_renders: list[Rendered],
) -> None:
    unrenderable = {r.label for r in crohme_renders if r.raw_result["error"]}
    listed = set(
        re.findall(r"^\| `([^`]+)` \|", _doc_section("Raw labels KaTeX cannot render"), re.M)
    )
    assert unrenderable == listed, f"KaTeX cannot render {sorted(unrenderable)}"


@pytest.mark.crohme
def test_normalising_changes_how_labels_look_only_as_documented(
    crohme_renders: list[Rendered],
) -> None:
    categories: Counter[str] = Counter()
    unexplained = []
    for r in crohme_renders:
        if r.raw_result["error"]:
            continue
        category = difference(r.raw_result["mathml"], r.canonical_result["mathml"])
        if category == "unexplained":
            unexplained.append((r.label, r.raw, r.canonical))
        elif category is not None:
            categories[category] += 1
    assert unexplained == [], "the normaliser merges expressions that look different"
    rows = re.findall(
        r"^\| `([a-z +]+)` \| (\d+) \|", _doc_section("Differences KaTeX can see"), re.M
    )
    found = "".join(f"\n| `{name}` | {count} |" for name, count in sorted(categories.items()))
    assert dict(categories) == {name: int(count) for name, count in rows}, found
