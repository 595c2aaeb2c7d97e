"""How likely a model finds a given token sequence: teacher forcing through the step model.

The feedback loop uses it to tell a plausible correction from a suspicious one: the
production model reads the user's correction token by token (teacher forcing, `<eos>`
included) and reports the log-probability it gives each. Written once over the core
search's `StepModel`, so it runs on the ONNX step graph the functions serve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inktex.search import StepModel

if TYPE_CHECKING:  # the runtime is onnxruntime's; this module needs only its step model
    from inktex.runtime import OnnxRecognizer


@dataclass(frozen=True)
class SequenceLikelihood:
    token_logprobs: list[float]  # one per token, then the one of <eos>

    @property
    def logprob(self) -> float:
        return float(sum(self.token_logprobs))

    @property
    def mean_logprob(self) -> float:
        """Per-token log-probability: comparable across lengths (a geometric mean)."""
        return self.logprob / max(len(self.token_logprobs), 1)

    @property
    def perplexity(self) -> float:
        return math.exp(-self.mean_logprob)


def sequence_likelihoods(
    model: StepModel, sequences: Sequence[Sequence[int]], sos_id: int, eos_id: int
) -> list[SequenceLikelihood]:
    """Teacher-force each row's ids (N sequences for the model's N encoded inputs)."""
    rows = len(sequences)
    targets = [[*ids, eos_id] for ids in sequences]
    longest = max((len(t) for t in targets), default=0)
    state = model.start()
    tokens = np.full(rows, sos_id, dtype=np.int64)
    logps: list[list[float]] = [[] for _ in range(rows)]
    for t in range(longest):
        logp, state = model.step(tokens, state)  # (rows, V)
        nxt = np.array([tg[t] if t < len(tg) else eos_id for tg in targets], dtype=np.int64)
        for r, tg in enumerate(targets):
            if t < len(tg):
                logps[r].append(float(logp[r, tg[t]]))
        tokens = nxt
    return [SequenceLikelihood(lp) for lp in logps]


def correction_likelihood(
    recognizer: OnnxRecognizer, model_input: np.ndarray, tokens: Sequence[str]
) -> SequenceLikelihood:
    """The likelihood of `tokens` for one preprocessed input (H, W) under an OnnxRecognizer."""
    steps = recognizer.step_model(np.ascontiguousarray(model_input[None], dtype=np.float32))
    vocab = recognizer.vocab
    return sequence_likelihoods(steps, [vocab.encode(tokens)], vocab.sos_id, vocab.eos_id)[0]
