"""Greedy and beam search over a decoder step function, written once for every backend.

Training's validation plugs in the PyTorch decoder, serving and evaluation the ONNX one:
both implement `StepModel`. The search sees only numpy token ids and log-probabilities;
the decoder state is opaque to it and stays wherever the backend keeps it (a GPU, say).
A `Grammar` (`inktex.grammar` for LaTeX) may restrict which tokens can come next; the
probabilities kept for confidence stay the model's own. A model trained to read both ways
(BTTR) has the beam's n-best rescored by its right-to-left reading (`rescore_right_to_left`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from inktex.grammar import grammar_for

if TYPE_CHECKING:
    from inktex.vocab import Vocabulary

State = Any


class StepModel(Protocol):
    """A decoder over a batch of encoded inputs, advanced one token at a time."""

    def start(self) -> State:
        """The initial state, one row per encoded input."""

    def step(self, tokens: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """Log-probabilities (N, V) of the next token after `tokens` (N,), and the new state."""

    def select(self, state: State, rows: np.ndarray) -> State:
        """The state of rows `rows` (indices into the current rows, repeats allowed)."""


class Grammar(Protocol):
    """Which tokens may follow a prefix, as a state advanced one token at a time."""

    def start(self) -> Any: ...

    def mask(self, state: Any) -> np.ndarray:
        """A boolean row over the vocabulary: the tokens allowed next."""

    def advance(self, state: Any, token: int) -> Any: ...


def _restricted(logp: np.ndarray, grammar: Grammar | None, states: list) -> np.ndarray:
    """`logp` with the tokens the grammar forbids (per row) at minus infinity."""
    if grammar is None:
        return logp
    allowed = np.stack([grammar.mask(state) for state in states])
    return np.where(allowed, logp, -np.inf)


@dataclass
class Hypothesis:
    ids: list[int]  # token ids, without <sos> and <eos>
    token_logprobs: list[float]  # left to right, <eos> included when it was read
    score: float  # what ranks it: length-normalised log-probability (both ways': their mean)
    right_to_left: float | None = None  # the reversed reading's log-likelihood, if rescored

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))


@dataclass
class SearchResult:
    """The best hypothesis first, then the alternatives."""

    hypotheses: list[Hypothesis] = field(default_factory=list)

    @property
    def best(self) -> Hypothesis:
        return self.hypotheses[0]


def greedy_search(
    model: StepModel,
    batch: int,
    sos_id: int,
    eos_id: int,
    max_len: int,
    grammar: Grammar | None = None,
) -> list[SearchResult]:
    """The most likely (allowed) token at each step, for `batch` inputs at once."""
    state = model.start()
    grammar_states = [grammar.start()] * batch if grammar is not None else []
    tokens = np.full(batch, sos_id, dtype=np.int64)
    ids = np.zeros((batch, max_len), dtype=np.int64)
    logps = np.zeros((batch, max_len), dtype=np.float64)
    lengths = np.full(batch, max_len)
    alive = np.ones(batch, dtype=bool)
    rows = np.arange(batch)
    for t in range(max_len):
        logp, state = model.step(tokens, state)
        tokens = _restricted(logp, grammar, grammar_states).argmax(axis=1)
        if grammar is not None:
            pairs = zip(grammar_states, tokens, strict=True)
            grammar_states = [grammar.advance(g, int(token)) for g, token in pairs]
        ids[:, t] = tokens
        logps[:, t] = logp[rows, tokens]
        ended = alive & (tokens == eos_id)
        lengths[ended] = t
        alive &= ~ended
        if not alive.any():
            break
    results = []
    for b in range(batch):
        n = int(lengths[b])
        # The <eos> probability belongs to the confidence: stopping is a decision too.
        lp = logps[b, : n + 1] if n < max_len else logps[b, :n]
        hyp = Hypothesis(ids[b, :n].tolist(), lp.tolist(), float(lp.sum()))
        results.append(SearchResult([hyp]))
    return results


def beam_search(
    model: StepModel,
    batch: int,
    sos_id: int,
    eos_id: int,
    max_len: int,
    beam_size: int = 5,
    length_penalty: float = 1.0,
    grammar: Grammar | None = None,
) -> list[SearchResult]:
    """Beam search for `batch` inputs at once (batch * beam_size decoder rows per step).

    Hypotheses are ranked by log-probability / length ** length_penalty, so long
    expressions are not beaten by short ones just for having fewer factors below one.
    """
    k = beam_size
    state = model.select(model.start(), np.repeat(np.arange(batch), k))
    tokens = np.full(batch * k, sos_id, dtype=np.int64)
    # Only the first beam of each input is live at the start: the others are copies.
    scores = np.tile(np.r_[0.0, np.full(k - 1, -np.inf)], batch)  # (batch * k,)
    start = grammar.start() if grammar is not None else None
    # Per input, per beam: (token ids, their log-probabilities, grammar state).
    history: list[list[tuple[list[int], list[float], Any]]] = [
        [([], [], start)] * k for _ in range(batch)
    ]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    for _ in range(max_len):
        logp, state = model.step(tokens, state)
        vocab = logp.shape[1]
        allowed = _restricted(logp, grammar, [g for beams in history for _, _, g in beams])
        total = (scores[:, None] + allowed).reshape(batch, k * vocab)
        top = np.argsort(-total, axis=1)[:, : 2 * k]  # room for k live ones after <eos> picks
        rows, next_tokens, next_scores = [], [], []
        new_history = []
        for b in range(batch):
            kept: list[tuple[list[int], list[float], Any]] = []
            for flat in top[b]:
                beam, token = divmod(int(flat), vocab)
                score = float(total[b, flat])
                if not np.isfinite(score):
                    continue
                prev_ids, prev_lps, prev_state = history[b][beam]
                lps = [*prev_lps, float(logp[b * k + beam, token])]
                if token == eos_id:
                    if not done[b]:
                        norm = score / max(len(prev_ids) + 1, 1) ** length_penalty
                        finished[b].append(Hypothesis(list(prev_ids), lps, norm))
                    continue
                if len(kept) < k:
                    next_state = grammar.advance(prev_state, token) if grammar is not None else None
                    kept.append(([*prev_ids, token], lps, next_state))
                    rows.append(b * k + beam)
                    next_tokens.append(token)
                    next_scores.append(score)
                if len(kept) == k:
                    break
            while len(kept) < k:  # pad with dead rows so every input keeps k rows
                kept.append(([], [], start))
                rows.append(b * k)
                next_tokens.append(eos_id)
                next_scores.append(-np.inf)
            new_history.append(kept)
            if len(finished[b]) >= k:
                done[b] = True
        if done.all():
            break
        history = new_history
        scores = np.asarray(next_scores)
        scores[np.repeat(done, k)] = -np.inf
        tokens = np.asarray(next_tokens, dtype=np.int64)
        state = model.select(state, np.asarray(rows))
    results = []
    for b in range(batch):
        hyps = finished[b]
        if not hyps:  # nothing ended within max_len: take the live beams as they are
            for ids, lps, _ in history[b]:
                if lps:
                    hyps.append(Hypothesis(ids, lps, sum(lps) / len(lps) ** length_penalty))
        hyps.sort(key=lambda h: -h.score)
        results.append(SearchResult(hyps[:k]))
    return results


def rescore_right_to_left(
    model: StepModel,
    results: list[SearchResult],
    sos_id: int,
    eos_id: int,
    length_penalty: float = 1.0,
) -> list[SearchResult]:
    """Each input's hypotheses ranked by BTTR's rule: the mean of the two directions'
    length-normalised log-likelihoods. The left-to-right one is the beam's score; the
    right-to-left one is read here by teacher forcing, one decoder row per hypothesis (each
    reading its own input): inputs <eos> then the reversed ids, targets the reversed ids then
    <sos>, normalised by that length as the beam normalises. The token log-probabilities,
    hence the confidence, stay the left-to-right model's probability of the sequence: the
    reversed reading only ranks."""
    hyps = [h for r in results for h in r.hypotheses]
    if not hyps:
        return results
    owners = np.asarray([b for b, r in enumerate(results) for _ in r.hypotheses])
    lengths = np.asarray([len(h.ids) + 1 for h in hyps])  # the reversed ids, then <sos>
    targets = np.full((len(hyps), int(lengths.max())), sos_id, dtype=np.int64)
    for row, hyp in enumerate(hyps):
        targets[row, : len(hyp.ids)] = hyp.ids[::-1]
    inputs = np.concatenate([np.full((len(hyps), 1), eos_id), targets[:, :-1]], axis=1)
    rows = np.arange(len(hyps))
    total = np.zeros(len(hyps))
    # A backend that reads whole sequences at once (teacher forcing: the same log-probabilities
    # as step by step, up to rounding) reads them in one call instead of one step per token.
    read_all = getattr(model, "read_all", None)
    if read_all is not None:
        every = read_all(inputs, owners)  # (N, T, V)
        for t in range(targets.shape[1]):
            total += np.where(t < lengths, every[rows, t, targets[:, t]], 0.0)
    else:
        state = model.select(model.start(), owners)
        for t in range(targets.shape[1]):  # a row past its <sos> reads on, unscored
            logp, state = model.step(inputs[:, t], state)
            total += np.where(t < lengths, logp[rows, targets[:, t]], 0.0)
    rescored = iter(
        replace(h, score=(h.score + r2l / n**length_penalty) / 2, right_to_left=float(r2l))
        for h, r2l, n in zip(hyps, total, lengths, strict=True)
    )
    out = []
    for result in results:
        mine = [next(rescored) for _ in result.hypotheses]
        out.append(SearchResult(sorted(mine, key=lambda h: -h.score)))
    return out


def decode(
    model: StepModel,
    batch: int,
    vocab: Vocabulary,
    max_len: int,
    beam: int = 1,
    length_penalty: float = 1.0,
    bidirectional: bool = False,
) -> list[SearchResult]:
    """How every backend decodes: greedy (beam <= 1) or beam search, under the vocabulary's
    canonical-form grammar; a beam's n-best rescored right to left for a model trained both
    ways (`bidirectional`). Greedy reads one way only: it has no alternatives to rank."""
    grammar = grammar_for(tuple(vocab.tokens))
    if beam <= 1:
        return greedy_search(model, batch, vocab.sos_id, vocab.eos_id, max_len, grammar)
    results = beam_search(
        model, batch, vocab.sos_id, vocab.eos_id, max_len, beam, length_penalty, grammar
    )
    if bidirectional:
        results = rescore_right_to_left(model, results, vocab.sos_id, vocab.eos_id, length_penalty)
    return results
