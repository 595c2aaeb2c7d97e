"""The metrics on cases worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest

from inktex.metrics import align, corpus_bleu, edit_distance, score


def t(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize(
    ("ref", "hyp", "distance"),
    [
        ("", "", 0),
        ("a b c", "", 3),
        ("", "x y", 2),
        ("a b c", "a c", 1),
        ("k i t t e n", "s i t t i n g", 3),  # k->s, e->i, +g
        ("\\frac { 1 } { 2 }", "\\frac { 1 } { 2 }", 0),
        ("x ^ { 2 }", "x _ { 2 }", 1),
    ],
)
def test_edit_distance(ref: str, hyp: str, distance: int) -> None:
    assert edit_distance(t(ref), t(hyp)) == distance
    assert edit_distance(t(hyp), t(ref)) == distance


def test_align_pairs_matches_substitutions_deletions_insertions() -> None:
    assert align(t("a b c"), t("a x c")) == [("a", "a"), ("b", "x"), ("c", "c")]
    assert align(t("a b"), t("b")) == [("a", None), ("b", "b")]
    assert align([], t("x")) == [(None, "x")]
    assert align(t("a"), []) == [("a", None)]


def test_align_costs_the_edit_distance() -> None:
    ref, hyp = t("k i t t e n"), t("s i t t i n g")
    pairs = align(ref, hyp)
    assert sum(r != h for r, h in pairs) == edit_distance(ref, hyp) == 3
    assert [r for r, _ in pairs if r is not None] == ref
    assert [h for _, h in pairs if h is not None] == hyp


def test_bleu_identical_is_one() -> None:
    assert corpus_bleu([(t("a b c d e"), t("a b c d e"))]) == pytest.approx(1.0)


def test_bleu_one_substitution_at_the_end() -> None:
    # n-gram precisions 5/6, 4/5, 3/4, 2/3: their product is 1/3; equal lengths, no penalty.
    bleu = corpus_bleu([(t("a b c d e f"), t("a b c d e x"))])
    assert bleu == pytest.approx(3 ** (-1 / 4))


def test_bleu_brevity_penalty() -> None:
    # Every n-gram of the hypothesis matches; c = 4 < r = 8 gives exp(1 - 8/4).
    assert corpus_bleu([(t("a b c d e f g h"), t("a b c d"))]) == pytest.approx(math.exp(-1))


def test_bleu_clips_counts_and_sums_over_the_corpus() -> None:
    # unigrams 4/4 + 1/2 (x clipped to once) = 5/6; bigrams 3/3 + 0/1 = 3/4; trigrams 2/2 and
    # 4-grams 1/1 (the short hypothesis has none); c = 6 > r = 5: no penalty.
    pairs = [(t("a b c d"), t("a b c d")), (t("x"), t("x x"))]
    assert corpus_bleu(pairs) == pytest.approx((5 / 6 * 3 / 4) ** (1 / 4))


def test_bleu_without_any_matching_4gram_is_zero() -> None:
    assert corpus_bleu([(t("a b c d"), t("a b c x"))]) == 0.0
    assert corpus_bleu([(t("a"), [])]) == 0.0


def test_score_hand_checked() -> None:
    pairs = [
        (t("a b c d"), t("a b c d")),  # distance 0
        (t("a b c d"), t("a b c")),  # 1
        (t("a b c d"), t("a x c y")),  # 2
        (t("a b c d"), []),  # 4
    ]
    s = score(pairs)
    assert s.count == 4
    assert s.exprate == 0.25
    assert s.le1 == 0.5
    assert s.le2 == 0.75
    assert s.wer == 7 / 16
    assert s.token_accuracy == 1 - 7 / 16
    assert s.mean_edit_distance == 7 / 4
    # Matched/total n-grams over the corpus: 9/11, 5/8, 3/5, 1/2; c = 11, r = 16.
    expected_bleu = math.exp(1 - 16 / 11) * (9 / 11 * 5 / 8 * 3 / 5 * 1 / 2) ** (1 / 4)
    assert s.bleu == pytest.approx(expected_bleu)
    assert s.to_dict() == {
        "exprate": 25.0,
        "le1": 50.0,
        "le2": 75.0,
        "token_accuracy": 56.25,
        "wer": 43.75,
        "bleu": round(100 * expected_bleu, 4),
        "mean_edit_distance": 1.75,
        "count": 4,
    }


def test_token_accuracy_is_clipped_at_zero_but_wer_is_not() -> None:
    s = score([(t("a"), t("x y z"))])
    assert s.wer == 3.0
    assert s.token_accuracy == 0.0


def test_score_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no"):
        score([])
