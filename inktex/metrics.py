"""The field's recognition metrics over normalised token sequences.

Every metric compares a reference and a hypothesis that both went through
`normalize_latex`, so they are lists of canonical tokens, and follows CoMER/CAN/ICAL:

- ExpRate: the share of expressions whose hypothesis equals the reference exactly.
- <=1, <=2: the share whose token-level Levenshtein distance to the reference is at most 1, 2.
- WER: total token edit distance / total reference tokens, over the corpus (WAP's "WER").
  Token accuracy is `1 - WER`, clipped at 0: long wrong hypotheses can push WER past 100%.
- Mean edit distance: the mean per-expression token edit distance.
- BLEU-4: corpus BLEU (Papineni et al. 2002) over tokens: clipped n-gram matches and
  hypothesis n-gram counts summed over the corpus for n = 1..4, their geometric mean, the
  standard brevity penalty, no smoothing. (nltk's `corpus_bleu` differs only in counting a
  hypothesis shorter than n as holding one n-gram of that order.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Tokens = Sequence[str]
# One step of an alignment: (ref, hyp) is a match or a substitution, (ref, None) a deletion,
# (None, hyp) an insertion.
AlignedPair = tuple[str | None, str | None]


def edit_distance(ref: Tokens, hyp: Tokens) -> int:
    """Levenshtein distance between token sequences (unit cost insert, delete, substitute)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i]
        for j, h in enumerate(hyp, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h)))
        prev = cur
    return prev[-1]


def align(ref: Tokens, hyp: Tokens) -> list[AlignedPair]:
    """A minimum-cost alignment of `ref` with `hyp`, in order.

    Ties prefer the diagonal (match or substitution), then deletion, so the same inputs always
    give the same alignment; its cost (pairs that are not matches) is `edit_distance`.
    """
    n, m = len(ref), len(hyp)
    d = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(
                d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            )
    out: list[AlignedPair] = []
    i, j = n, m
    while i or j:
        if i and j and d[i][j] == d[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            out.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i and d[i][j] == d[i - 1][j] + 1:
            out.append((ref[i - 1], None))
            i -= 1
        else:
            out.append((None, hyp[j - 1]))
            j -= 1
    return out[::-1]


def _ngrams(tokens: Tokens, n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(pairs: Iterable[tuple[Tokens, Tokens]], max_n: int = 4) -> float:
    """Corpus BLEU-`max_n` in [0, 1] of (reference, hypothesis) pairs, one reference each.

    Without smoothing, a corpus with no matching n-gram of some order scores 0.
    """
    matches = [0] * max_n
    totals = [0] * max_n
    ref_len = hyp_len = 0
    for ref, hyp in pairs:
        ref_len += len(ref)
        hyp_len += len(hyp)
        for n in range(1, max_n + 1):
            hyp_grams = _ngrams(hyp, n)
            ref_grams = _ngrams(ref, n)
            matches[n - 1] += sum(min(c, ref_grams[g]) for g, c in hyp_grams.items())
            totals[n - 1] += max(len(hyp) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    log_precision = sum(math.log(m / t) for m, t in zip(matches, totals, strict=True)) / max_n
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision)


@dataclass(frozen=True)
class Scores:
    """Corpus-level metrics as fractions in [0, 1] (mean_edit_distance in tokens)."""

    count: int
    exprate: float
    le1: float
    le2: float
    wer: float
    token_accuracy: float
    bleu: float
    mean_edit_distance: float

    def to_dict(self) -> dict[str, float | int]:
        """Flat JSON-ready metrics: rates in percent (0-100), edit distance in tokens."""
        pct = {
            k: round(100 * getattr(self, k), 4)
            for k in ("exprate", "le1", "le2", "token_accuracy", "wer", "bleu")
        }
        return {**pct, "mean_edit_distance": round(self.mean_edit_distance, 4), "count": self.count}


def score(pairs: Iterable[tuple[Tokens, Tokens]]) -> Scores:
    """Scores of (reference, hypothesis) token-sequence pairs; raises ValueError if none."""
    pairs = [(list(r), list(h)) for r, h in pairs]
    if not pairs:
        raise ValueError("no (reference, hypothesis) pairs to score")
    distances = [edit_distance(r, h) for r, h in pairs]
    count = len(pairs)
    ref_tokens = sum(len(r) for r, _ in pairs)
    # An all-empty reference corpus: any inserted token is a whole error.
    wer = sum(distances) / max(ref_tokens, 1)
    return Scores(
        count=count,
        exprate=sum(d == 0 for d in distances) / count,
        le1=sum(d <= 1 for d in distances) / count,
        le2=sum(d <= 2 for d in distances) / count,
        wer=wer,
        token_accuracy=max(0.0, 1.0 - wer),
        bleu=corpus_bleu(pairs),
        mean_edit_distance=sum(distances) / count,
    )
