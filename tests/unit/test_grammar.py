"""The canonical-form grammar: every CROHME label passes, malformed sequences do not, and a
search under it only writes sequences that pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inktex.data import read_labels
from inktex.errors import LatexSyntaxError
from inktex.grammar import LatexGrammar, grammar_for
from inktex.latex import normalize_latex
from inktex.search import beam_search, greedy_search
from inktex.vocab import SPECIALS, Vocabulary

TOKENS = [*SPECIALS, "{", "}", "x", "^", "_", "2", "i", r"\frac", r"\sqrt", "[", "]", ",", "0"]
VOCAB = Vocabulary(TOKENS)
GRAMMAR = LatexGrammar(TOKENS)


def accepts(text: str) -> bool:
    return GRAMMAR.accepts([VOCAB.tokens.index(t) for t in text.split()])


@pytest.mark.parametrize(
    "text",
    [
        "x _ { i } ^ { 2 }",
        r"\frac { x } { 2 }",
        r"\sqrt [ 2 ] { x }",
        r"\sqrt { x } ^ { 2 }",
        "[ 0 , 2 ]",  # brackets that are not a root's index
        "{ } ^ { 2 }",
        r"\frac { x ^ { 2 } } { \sqrt { x } }",
        "",
    ],
)
def test_canonical_sequences_pass(text):
    assert accepts(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("} x", "closes what was never opened"),
        ("{ x", "ends with a brace open"),
        ("x ^ 2", "a script without braces"),
        ("x ^ { 2 } ^ { 2 }", "a second superscript"),
        ("x ^ { 2 } _ { i }", "superscript before subscript"),
        ("x _ { i } _ { 2 }", "a second subscript"),
        (r"\frac { x } 2", "a denominator without braces"),
        (r"\sqrt x", "a radicand without braces"),
        (r"\sqrt [ 2 { x }", "an index never closed"),
        (r"\sqrt [ 2 } ", "a brace closing an index"),
    ],
)
def test_malformed_sequences_fail(text, why):
    assert not accepts(text), why


def test_every_normalised_crohme_label_passes(crohme):
    labels = []
    for split in ("train", "test2013", "test2014"):
        for _, latex in read_labels(crohme / f"{split}.tsv"):
            try:
                labels.append(normalize_latex(latex))
            except LatexSyntaxError:
                continue  # counted and reported by the normaliser's own tests
    vocab = Vocabulary.build(labels)
    grammar = LatexGrammar(vocab.tokens)
    index = {t: i for i, t in enumerate(vocab.tokens)}
    rejected = [" ".join(t) for t in labels if not grammar.accepts([index[x] for x in t])]
    assert len(labels) > 10_000
    assert rejected == []


def test_a_vocabulary_without_braces_has_no_grammar():
    assert grammar_for((*SPECIALS, "x", "+")) is None
    assert grammar_for(tuple(TOKENS)) is grammar_for(tuple(TOKENS))  # built once


class TableModel:
    """Next-token probabilities that depend on the last token only (ids of TOKENS).

    Unconstrained, greedy writes `x ^ 2` (no braces): after `^`, `2` has 0.7 and `{` 0.3.
    """

    def __init__(self, rows: int):
        ids = {t: i for i, t in enumerate(TOKENS)}
        self.rows = rows
        self.table = np.full((len(TOKENS), len(TOKENS)), 1e-6)

        def after(token: str, **probs: float) -> None:
            for name, p in probs.items():
                self.table[ids[token], ids[name.replace("open", "{").replace("close", "}")]] = p

        self.table[ids["<sos>"], ids["x"]] = 0.9
        after("x", **{"^": 0.6, "<eos>": 0.4})
        after("^", **{"2": 0.7, "open": 0.3})
        after("{", **{"2": 0.9})
        after("2", **{"<eos>": 0.6, "close": 0.4})
        after("}", **{"<eos>": 0.9})
        self.table /= self.table.sum(axis=1, keepdims=True)

    def start(self):
        return np.arange(self.rows)

    def step(self, tokens, state):
        return np.log(self.table[tokens]), state

    def select(self, state, rows):
        return state[rows]


def words(ids: list[int]) -> str:
    return " ".join(TOKENS[i] for i in ids)


def test_greedy_under_the_grammar_writes_braces_and_keeps_the_models_probabilities():
    sos, eos = VOCAB.sos_id, VOCAB.eos_id
    [free] = greedy_search(TableModel(1), 1, sos, eos, max_len=10)
    assert words(free.best.ids) == "x ^ 2"
    [kept] = greedy_search(TableModel(1), 1, sos, eos, max_len=10, grammar=GRAMMAR)
    assert words(kept.best.ids) == "x ^ { 2 }"
    # `{` after `^` had 0.3: the confidence is the model's, not renormalised by the grammar.
    assert math.isclose(math.exp(kept.best.token_logprobs[2]), 0.3, rel_tol=1e-3)


def test_every_beam_hypothesis_passes_the_grammar():
    sos, eos = VOCAB.sos_id, VOCAB.eos_id
    [free] = beam_search(TableModel(1), 1, sos, eos, max_len=10, beam_size=3)
    assert "x ^ 2" in [words(h.ids) for h in free.hypotheses]
    results = beam_search(TableModel(2), 2, sos, eos, max_len=10, beam_size=3, grammar=GRAMMAR)
    for result in results:
        assert words(result.best.ids) == "x"
        assert all(GRAMMAR.accepts(h.ids) for h in result.hypotheses)
