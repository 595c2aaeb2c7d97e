"""A Transformer package's decoder step graph as the core search's `StepModel`.

The step graph (`model_export/transformer_graphs.py`) reads a key/value cache laid out time
first, (t, rows, 2 x layers, heads, k), and returns only the new token's entry. Time first,
the cache of t tokens is the first t entries of one preallocated buffer: the runtime binds
that prefix as the input and entry t as the output, so a step copies no cache. Everything
else a step reads and writes is bound once, as for the GRU (`inktex.runtime`): the tokens,
the log-probabilities, each row's copy of the encoder's outputs (made once per search), and
two coverage buffers, one read and one written. A beam's reordering (`select`) writes the
chosen rows into the second cache and coverage buffers, which the next step then reads.

So a state returned by `step` or `select` is valid as input to the next call only, as the
searches use it; passing an older one raises.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inktex.bound import BoundRows

FIRST_CAPACITY = 32  # tokens a cache buffer holds before it doubles
READ_FILE = "decoder_read.onnx"  # a Transformer package's teacher-forcing graph (rescoring)


@dataclass(frozen=True)
class CacheState:
    """Decoder rows; `serial` > 0 marks arrays that live in the step model's own buffers."""

    cache: np.ndarray  # (t, rows, 2 x layers, heads, k): self-attention keys and values so far
    coverage: np.ndarray  # (rows, layers x heads, h, w): attention summed over past steps
    index: np.ndarray  # (rows,) int64: the encoded image each row attends to
    serial: int = 0


class _CacheBuffers(BoundRows):
    """Bound buffers for one row count: the tokens, the log-probabilities, each row's copy of
    the encoder's outputs, and two of each state buffer (cache, coverage)."""

    def __init__(self, model: TransformerStepModel, rows: int):
        def zeros(*shape: int, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
            return np.zeros(shape, dtype=dtype)

        super().__init__(model.encoded, rows)
        self.rows = rows
        self.entry = (rows, *model.entry)  # one token's cache entry for every row
        self.token = zeros(rows, dtype=np.int64)
        self.log_probs = zeros(rows, model.vocab_size)
        self.coverage = [zeros(rows, *model.coverage) for _ in range(2)]
        self.cache = [zeros(FIRST_CAPACITY, *self.entry) for _ in range(2)]
        self.bindings = []
        for src in (0, 1):  # which coverage buffer the step reads
            binding = model.session.io_binding()
            for name, array in {
                "token": self.token,
                **self.encoded,
                "coverage": self.coverage[src],
            }.items():
                binding.bind_ortvalue_input(name, self.keep(array))
            for name, array in {
                "log_probs": self.log_probs,
                "coverage_out": self.coverage[1 - src],
            }.items():
                binding.bind_ortvalue_output(name, self.keep(array))
            self.bindings.append(binding)

    def hold(self, slot: int, tokens: int) -> np.ndarray:
        """Cache buffer `slot`, grown (keeping its first `tokens` entries) to hold one more."""
        cache = self.cache[slot]
        if tokens >= len(cache):
            size = len(cache)
            while size <= tokens:
                size *= 2
            grown = np.zeros((size, *self.entry), dtype=np.float32)
            kept = cache[:tokens]
            grown[: len(kept)] = kept
            self.cache[slot] = cache = grown
        return cache


_serials = itertools.count(1)


class TransformerStepModel:
    """The step graph with a time-first key/value cache, with no per-step allocations."""

    def __init__(
        self,
        session: ort.InferenceSession,
        encoded: dict[str, np.ndarray],
        buffers: dict | None = None,
        reader: ort.InferenceSession | None = None,
    ):
        """`encoded`: the encoder's outputs by name; `buffers`: bound buffers to reuse, from an
        earlier search on the same session; `reader`: the package's read graph, if it has one
        (then `read_all` reads whole sequences at once)."""
        self.session = session
        self.reader = reader
        self.read_all = self._read_all if reader is not None else None
        self.feature_mask = np.ascontiguousarray(encoded["feature_mask"])
        shapes = {i.name: i.shape for i in session.get_inputs()}
        # what the step graph reads of the encoder's outputs (not the features' mask)
        self.encoded = {k: np.ascontiguousarray(v) for k, v in encoded.items() if k in shapes}
        self.entry = tuple(int(d) for d in shapes["cache"][2:])  # (2 x layers, heads, k)
        grid = tuple(encoded["feature_mask"].shape[2:])
        self.coverage = (int(shapes["coverage"][1]), *grid)  # (layers x heads, h, w)
        self.vocab_size = int(session.get_outputs()[0].shape[1])
        self.rows = len(encoded["feature_mask"])
        self._buffers = {} if buffers is None else buffers
        if len(self._buffers) > 8:  # row counts seen: keep the memory bounded
            self._buffers.clear()
        for buf in self._buffers.values():
            buf.index[...] = -1  # their copies are of other images
        self._serial = 0  # of the latest state this model returned
        self._slots = (0, 0)  # its cache and coverage buffers

    def start(self) -> CacheState:
        n = self.rows
        return CacheState(
            np.zeros((0, n, *self.entry), dtype=np.float32),
            np.zeros((n, *self.coverage), dtype=np.float32),
            np.arange(n, dtype=np.int64),
        )

    def _buffers_for(self, rows: int) -> _CacheBuffers:
        key = (rows, self.coverage)
        if key not in self._buffers:
            self._buffers[key] = _CacheBuffers(self, rows)
        return self._buffers[key]

    def _owned(self, state: CacheState) -> bool:
        if state.serial == 0:
            return False
        if state.serial != self._serial:
            raise RuntimeError("a decoder state is valid as input to the next call only")
        return True

    def step(self, tokens: np.ndarray, state: CacheState) -> tuple[np.ndarray, CacheState]:
        buf, t = self._buffers_for(len(tokens)), len(state.cache)
        if self._owned(state):
            slot, src = self._slots
        else:  # the search's own arrays: copy them into the first buffers
            slot, src = 0, 0
            buf.hold(slot, t)[:t] = state.cache
            buf.coverage[src][...] = state.coverage
            buf.read_from(self.encoded, state.index)
        cache = buf.hold(slot, t)
        binding = buf.bindings[src]
        binding.bind_input("cache", "cpu", 0, np.float32, [t, *buf.entry], cache.ctypes.data)
        binding.bind_output(
            "cache_new", "cpu", 0, np.float32, [1, *buf.entry], cache[t].ctypes.data
        )
        buf.token[...] = tokens
        self.session.run_with_iobinding(binding)
        return buf.log_probs.copy(), self._latest(buf, slot, 1 - src, t + 1, buf.index)

    def _latest(
        self, buf: _CacheBuffers, slot: int, src: int, tokens: int, index: np.ndarray
    ) -> CacheState:
        self._serial, self._slots = next(_serials), (slot, src)
        return CacheState(buf.cache[slot][:tokens], buf.coverage[src], index, self._serial)

    def _read_all(self, tokens: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Log-probabilities (N, T, V) of the token after each of `tokens` (N, T), read from
        the start by teacher forcing, row i reading encoded input index[i]: one call."""
        assert self.reader is not None
        buf = self._buffers_for(len(tokens))
        buf.read_from(self.encoded, index)  # the beam's rows are usually these already
        feeds = {"tokens": np.ascontiguousarray(tokens, dtype=np.int64)}
        feeds |= {k: v for k, v in buf.encoded.items() if k.startswith(("keys", "values"))}
        feeds["feature_mask"] = self.feature_mask[index]
        return self.reader.run(None, feeds)[0]

    def select(self, state: CacheState, rows: np.ndarray) -> CacheState:
        rows = np.asarray(rows, dtype=np.int64)
        if not self._owned(state) or len(rows) != len(state.index):
            return CacheState(state.cache[:, rows], state.coverage[rows], state.index[rows])
        buf, t = self._buffers_for(len(rows)), len(state.cache)
        slot, src = 1 - self._slots[0], 1 - self._slots[1]
        np.take(state.cache, rows, axis=1, out=buf.hold(slot, t)[:t], mode="clip")
        np.take(state.coverage, rows, axis=0, out=buf.coverage[src], mode="clip")
        index = state.index[rows]
        buf.read_from(self.encoded, index)
        return self._latest(buf, slot, src, t, buf.index)
