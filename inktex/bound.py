"""What the ONNX step models' bound buffers share: each row's copy of the encoder's outputs,
made once per search, and the OrtValues that keep bound numpy buffers alive.

I/O binding hands ONNX Runtime a buffer's address, not the array: the OrtValues wrapping the
arrays are kept here for as long as the bindings live.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort


def ortvalue(array: np.ndarray) -> ort.OrtValue:
    # On the CPU an OrtValue wraps the numpy buffer: no copy, as long as the array lives.
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


class BoundRows:
    """Row i of `encoded` holds a copy of encoded input `index[i]` (-1: not filled yet)."""

    def __init__(self, encoded: dict[str, np.ndarray], rows: int):
        self.index = np.full(rows, -1, dtype=np.int64)
        self.encoded = {
            k: np.zeros((rows, *v.shape[1:]), dtype=np.float32) for k, v in encoded.items()
        }
        self._values: list[ort.OrtValue] = []

    def keep(self, array: np.ndarray) -> ort.OrtValue:
        """`array` as an OrtValue to bind, kept alive with these buffers."""
        value = ortvalue(array)
        self._values.append(value)
        return value

    def read_from(self, encoded: dict[str, np.ndarray], index: np.ndarray) -> None:
        """Make row i a copy of encoded input index[i] (a search does this once)."""
        if not np.array_equal(index, self.index):
            for name, rows in self.encoded.items():
                np.take(encoded[name], index, axis=0, out=rows)
            self.index[...] = index
