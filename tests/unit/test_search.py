"""The core's greedy and beam search over a hand-built step model with known answers."""

from __future__ import annotations

import math

import numpy as np

from inktex.search import beam_search, greedy_search

SOS, EOS = 1, 2
A, B, C = 4, 5, 6  # token ids; V = 7


class ChainModel:
    """A Markov chain over tokens: the next-token distribution depends on the last token only.

    From <sos>: A 0.6, B 0.4; after A: C 0.55, <eos> 0.45; after B: <eos> 0.9; after C: <eos>.
    Greedy takes A then C (p = 0.6 * 0.55 = 0.33), while B then <eos> has p = 0.4 * 0.9 = 0.36,
    which beam search finds.
    """

    def __init__(self, rows: int):
        self.rows = rows
        self.table = np.full((7, 7), 1e-9)
        self.table[SOS, [A, B]] = [0.6, 0.4]
        self.table[A, [C, EOS]] = [0.55, 0.45]
        self.table[B, [EOS, C]] = [0.9, 0.1]
        self.table[C, EOS] = 1.0
        self.table /= self.table.sum(axis=1, keepdims=True)
        self.steps = 0

    def start(self):
        return np.arange(self.rows)  # the state: which input each row belongs to

    def step(self, tokens, state):
        self.steps += 1
        return np.log(self.table[tokens]), state

    def select(self, state, rows):
        return state[rows]


def test_greedy_takes_the_locally_best_token():
    [result] = greedy_search(ChainModel(1), 1, SOS, EOS, max_len=10)
    assert result.best.ids == [A, C]
    assert math.isclose(math.exp(result.best.logprob), 0.6 * 0.55, rel_tol=1e-6)


def test_beam_finds_the_globally_best_sequence():
    [result] = beam_search(ChainModel(1), 1, SOS, EOS, max_len=10, beam_size=3, length_penalty=0)
    assert result.best.ids == [B]
    assert math.isclose(math.exp(result.best.logprob), 0.36, rel_tol=1e-6)
    probs = sorted((round(math.exp(h.logprob), 6) for h in result.hypotheses), reverse=True)
    assert probs[:3] == [0.36, 0.33, 0.27]  # B; A C; A


def test_beam_search_is_batched_and_each_input_gets_its_own_hypotheses():
    results = beam_search(ChainModel(3), 3, SOS, EOS, max_len=10, beam_size=2, length_penalty=0)
    assert [r.best.ids for r in results] == [[B]] * 3


def test_greedy_stops_at_max_len_when_nothing_ends():
    model = ChainModel(2)
    model.table[:, :] = 1e-9
    model.table[:, A] = 1.0  # never ends
    results = greedy_search(model, 2, SOS, EOS, max_len=5)
    assert [r.best.ids for r in results] == [[A] * 5] * 2
    assert model.steps == 5


def test_greedy_stops_early_once_every_row_has_ended():
    model = ChainModel(4)
    greedy_search(model, 4, SOS, EOS, max_len=50)
    assert model.steps == 3  # A, C, EOS
