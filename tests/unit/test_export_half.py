"""The export's fp16 storage of weights (`store_half`): float32 initializers that fp16 holds bit
for bit are stored as fp16 behind a Cast, the others stay float32, ONNX Runtime computes the
very same outputs, and `store_full` gives back the original graph byte for byte."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from model_export.export import HALF_MIN_ELEMENTS, store_full, store_half  # noqa: E402

pytestmark = [pytest.mark.torch]


def _graph(rng: np.random.Generator):
    """x (2, 64) @ weight (64, 128) + bias (128,) + offset (1, 8 -> broadcast), as an exporter
    writes it: the weight fp16-exact (rounded from the checkpoint's fp16), the bias computed in
    float32 (not exact), the offset exact but too small to be worth a Cast."""
    weight = rng.standard_normal((64, 128)).astype(np.float16).astype(np.float32)
    bias = (rng.standard_normal(128) / 3).astype(np.float32)
    offset = rng.standard_normal((1, 8)).astype(np.float16).astype(np.float32)
    assert offset.size < HALF_MIN_ELEMENTS <= weight.size
    assert not np.array_equal(bias.astype(np.float16).astype(np.float32), bias)
    nodes = [
        helper.make_node("MatMul", ["x", "weight"], ["product"]),
        helper.make_node("Add", ["product", "bias"], ["biased"]),
        helper.make_node("Tile", ["offset", "repeats"], ["tiled"]),
        helper.make_node("Add", ["biased", "tiled"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(weight, "weight"),
        numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(offset, "offset"),
        numpy_helper.from_array(np.array([1, 16], dtype=np.int64), "repeats"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 128])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _run(model, x: np.ndarray, level: ort.GraphOptimizationLevel) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def test_exact_weights_are_stored_as_fp16_and_compute_the_same_outputs():
    rng = np.random.default_rng(0)
    original = _graph(rng).SerializeToString()
    halved = store_half(_graph(np.random.default_rng(0)))
    types = {init.name: init.data_type for init in halved.graph.initializer}
    assert types == {
        "weight_fp16": TensorProto.FLOAT16,
        "bias": TensorProto.FLOAT,  # not exact in fp16: kept
        "offset": TensorProto.FLOAT,  # too small for a Cast to pay
        "repeats": TensorProto.INT64,
    }
    assert [(n.op_type, list(n.input)) for n in halved.graph.node][0] == ("Cast", ["weight_fp16"])
    assert len(halved.SerializeToString()) < len(original) - 64 * 128 * 2 + 200
    x = rng.standard_normal((2, 64)).astype(np.float32)
    want = _graph(np.random.default_rng(0))
    for level in (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ):
        assert np.array_equal(_run(halved, x, level), _run(want, x, level))  # bit for bit
    assert store_full(halved).SerializeToString() == original
