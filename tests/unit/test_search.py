"""The core's greedy and beam search, and the beam's rescoring right to left, over hand-built
step models with known answers."""

from __future__ import annotations

import math

import numpy as np

from inktex.search import beam_search, decode, greedy_search, rescore_right_to_left
from inktex.vocab import SPECIALS, Vocabulary

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


class TwoWayModel:
    """A decoder trained both ways, over two one-token expressions, A and B, per input.

    Left to right (from <sos>): input 0 gives A 0.55 and B 0.45; right to left (from <eos>):
    A 0.1 and B 0.9. After A or B: <eos> 0.6 (left to right's end), <sos> 0.4 (right to
    left's). Input 1 is input 0 with A and B swapped. The beam alone picks A for input 0;
    read both ways, B is far likelier (0.45 x 0.9 against 0.55 x 0.1), and A for input 1.
    """

    def __init__(self, rows: int):
        self.rows = rows
        self.steps = 0
        self.table = np.full((2, 7, 7), 1e-9)
        for image, (a, b) in enumerate([(A, B), (B, A)]):
            self.table[image, SOS, [a, b]] = [0.55, 0.45]
            self.table[image, EOS, [a, b]] = [0.1, 0.9]
            self.table[image, [[A], [B]], [EOS, SOS]] = [0.6, 0.4]
        self.table /= self.table.sum(axis=2, keepdims=True)

    def start(self):
        return np.arange(self.rows)  # which input each row reads

    def step(self, tokens, state):
        self.steps += 1
        return np.log(self.table[state, tokens]), state

    def select(self, state, rows):
        return state[rows]


def test_rescoring_ranks_by_the_mean_of_both_directions():
    results = beam_search(TwoWayModel(2), 2, SOS, EOS, max_len=5, beam_size=2)
    assert [r.best.ids for r in results] == [[A], [B]]  # left to right alone
    rescored = rescore_right_to_left(TwoWayModel(2), results, SOS, EOS)
    assert [r.best.ids for r in rescored] == [[B], [A]]  # each input read with its own rows
    best = rescored[0].best
    # confidence stays the left-to-right probability; the reversed reading only ranks
    assert math.isclose(math.exp(best.logprob), 0.45 * 0.6, rel_tol=1e-6)
    assert math.isclose(math.exp(best.right_to_left), 0.9 * 0.4, rel_tol=1e-6)
    both = (math.log(0.45 * 0.6) / 2 + math.log(0.9 * 0.4) / 2) / 2  # each normalised by 2
    assert math.isclose(best.score, both, rel_tol=1e-6)
    assert [h.ids for h in rescored[0].hypotheses] == [[B], [A]]  # the alternatives kept


class ReadingTwoWayModel(TwoWayModel):
    """TwoWayModel that also reads whole sequences at once (as a teacher-forcing graph does);
    the log-probability after a token depends on that token alone, so a row's T readings are
    its T steps'."""

    def __init__(self, rows: int):
        super().__init__(rows)
        self.reads = 0

    def read_all(self, tokens, index):
        self.reads += 1
        return np.log(self.table[index[:, None], tokens])  # (N, T, V)


def test_rescoring_reads_all_tokens_at_once_where_the_model_can_and_ranks_alike():
    results = beam_search(TwoWayModel(2), 2, SOS, EOS, max_len=5, beam_size=2)
    stepped = rescore_right_to_left(TwoWayModel(2), results, SOS, EOS)
    model = ReadingTwoWayModel(2)
    read = rescore_right_to_left(model, results, SOS, EOS)
    assert model.reads == 1 and model.steps == 0  # one call, no steps
    assert read == stepped  # same hypotheses, order, scores and right-to-left readings
    assert [r.best.ids for r in read] == [[B], [A]]


def test_decode_rescores_a_beam_of_a_model_trained_both_ways_and_not_greedy():
    vocab = Vocabulary([*SPECIALS, "x", "y", "z"])  # ids 4, 5, 6 as A, B, C
    one_way = decode(TwoWayModel(2), 2, vocab, max_len=5, beam=2)
    both_ways = decode(TwoWayModel(2), 2, vocab, max_len=5, beam=2, bidirectional=True)
    assert [r.best.ids for r in one_way] == [[A], [B]]
    assert [r.best.ids for r in both_ways] == [[B], [A]]
    model = TwoWayModel(2)
    greedy = decode(model, 2, vocab, max_len=5, beam=1, bidirectional=True)
    assert [r.best.ids for r in greedy] == [[A], [B]] and model.steps == 2  # one way only
