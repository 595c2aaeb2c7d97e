"""Export a checkpoint to a model package: two ONNX graphs plus everything needed to use them.

    python -m model_export.export CHECKPOINT OUT_DIR [--samples DIR_OR_NPZ] [--int8]

The package holds `encoder.onnx` (dynamic batch, height and width), `decoder_step.onnx` (one
decoder step, state in and state out), `vocab.json`, `preprocess.json`, `model.json`,
`metrics.json`, `MODEL_CARD.md` and `manifest.json`. Its version id is a content hash of the
weights, vocabulary and preprocessing; both graphs carry it in their metadata and loading
checks it (`inktex.package`). The export proves itself against PyTorch or fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from inktex.errors import ModelPackageError
from inktex.package import ENCODER_FILE, STEP_FILE, ModelPackage, write_manifest
from inktex.preprocess import PreprocessConfig, pad_batch
from model_export.transformer_graphs import export_transformer_graphs, reading_difference
from training.checkpoint import load_checkpoint
from training.decoding import recognize_batch
from training.model import STRIDE, Recognizer, count_parameters, mask_at

log = logging.getLogger(__name__)
OPSET = 18
LOGIT_TOLERANCE = 1e-4
HALF_MIN_ELEMENTS = 64  # below this a Cast node costs more bytes than fp16 saves


class EncoderGraph(nn.Module):
    """image and its mask (B, 1, H, W) -> features, attention keys, initial hidden state, and
    the features' mask (which positions are padding; the step graph's attention skips them).

    Each 1x1 convolution that an average pool follows (DenseNet's transitions) runs after the
    pool instead: both are linear, so they commute, and the convolution sees a quarter of the
    positions (6% of the dense encoder's arithmetic).
    """

    def __init__(self, model: Recognizer):
        super().__init__()
        self.model = model
        self.body = encoder_body(model)

    def forward(self, image: torch.Tensor, mask: torch.Tensor):
        features = self.model.encoder(image, mask, body=self.body)
        feature_mask = mask_at(mask, STRIDE)
        keys, state = self.model.decoder.start(features, feature_mask)
        return features, keys, state.hidden, feature_mask


def encoder_body(model: Recognizer) -> nn.Sequential | None:
    """The dense encoder's layers rearranged for export; the ResNet runs as it is (None)."""
    body = getattr(model.encoder, "body", None)
    return _pool_before_projection(body) if body is not None else None


def _pool_before_projection(body: nn.Sequential) -> nn.Sequential:
    layers = list(body)
    for i in range(len(layers) - 1):
        conv, pool = layers[i], layers[i + 1]
        if (
            isinstance(conv, nn.Conv2d)
            and isinstance(pool, nn.AvgPool2d)
            and conv.kernel_size == (1, 1)
            and conv.stride == (1, 1)
            and conv.bias is None
            and pool.padding == 0
        ):
            layers[i], layers[i + 1] = pool, conv
    return nn.Sequential(*layers)


class StepGraph(nn.Module):
    """One decoder step for N rows; row i reads row i of the encoder's outputs.

    `Decoder.step`'s arithmetic, regrouped for ONNX Runtime, where a step costs mostly the
    weights its matrix products read, plus a little per node:
    - the first GRU's input projection and `out_embed` depend on the token alone: one table
      (V, 3D + E), computed here and looked up by token;
    - products of the same vector are one product: the query's attention projection with the
      second GRU's hidden projection, and the context's GRU input projection with
      `out_context`;
    - the GRU gates split at constant offsets, so the graph does no shape arithmetic.
    Each change is exact in real arithmetic; `verify_against_torch` bounds the rounding.

    Beams of one image each read their own copy of its features, which the runtime makes once
    per search: gathering them by index in the graph copied them on every step.
    """

    def __init__(self, model: Recognizer):
        super().__init__()
        dec = model.decoder
        self.decoder = dec
        self.hidden = dec.gru_in.hidden_size
        self.attention = dec.attention.query.out_features
        with torch.no_grad():
            emb = dec.embedding.weight  # (V, E)
            gi = nn.functional.linear(emb, dec.gru_in.weight_ih, dec.gru_in.bias_ih)
            self.register_buffer("token_table", torch.cat([gi, dec.out_embed(emb)], dim=1))
            att, ctx = dec.attention, dec.gru_ctx
            self.register_buffer("query_weight", torch.cat([att.query.weight, ctx.weight_hh]))
            self.register_buffer("query_bias", torch.cat([att.query.bias, ctx.bias_hh]))
            self.register_buffer(
                "context_weight", torch.cat([ctx.weight_ih, dec.out_context.weight])
            )
            self.register_buffer("context_bias", torch.cat([ctx.bias_ih, dec.out_context.bias]))

    def _gru(self, gi: torch.Tensor, gh: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """`nn.GRUCell` from its input and hidden projections (r, z, n gate order)."""
        d = self.hidden
        gi_rz, gi_n = gi.split([2 * d, d], dim=1)
        gh_rz, gh_n = gh.split([2 * d, d], dim=1)
        r, z = torch.sigmoid(gi_rz + gh_rz).split([d, d], dim=1)
        n = torch.tanh(gi_n + r * gh_n)
        return n + z * (h - n)

    def forward(self, token, hidden, coverage, features, keys, feature_mask):
        dec, att, d = self.decoder, self.decoder.attention, self.hidden
        linear = nn.functional.linear
        gi, out_embed = self.token_table[token].split([3 * d, dec.out_embed.out_features], dim=1)
        query = self._gru(gi, linear(hidden, dec.gru_in.weight_hh, dec.gru_in.bias_hh), hidden)
        q, gh = linear(query, self.query_weight, self.query_bias).split([self.attention, 3 * d], 1)
        cov = att.coverage_proj(att.coverage_conv(coverage))  # (N, A, h, w)
        energy = att.energy(torch.tanh(q[:, :, None, None] + keys + cov))  # (N, 1, h, w)
        energy = energy.masked_fill(feature_mask == 0, float("-inf"))  # padding: no weight
        # softmax over the grid without flattening it: no shape arithmetic in the graph
        energy = torch.exp(energy - energy.amax(dim=(2, 3), keepdim=True))
        alpha = energy / energy.sum(dim=(2, 3), keepdim=True)
        context = (alpha * features).sum(dim=(2, 3))  # (N, C)
        gi, out_context = linear(context, self.context_weight, self.context_bias).split(
            [3 * d, dec.out_context.out_features], dim=1
        )
        hidden = self._gru(gi, gh, query)
        out = linear(hidden, dec.out_hidden.weight, dec.out_hidden.bias) + out_context + out_embed
        logits = dec.classifier(torch.tanh(out))
        return torch.log_softmax(logits, dim=-1), hidden, coverage + alpha


def version_id(model: Recognizer, vocab_json: str, preprocess_json: str) -> str:
    """Content hash of what determines the model's outputs."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    h.update(vocab_json.encode())
    h.update(preprocess_json.encode())
    return h.hexdigest()[:16]


def _export_graph(
    module: nn.Module,
    args: tuple,
    path: Path,
    inputs: list[str],
    outputs: list[str],
    dynamic_axes: dict,
    version: str,
) -> None:
    module.eval()
    buffer = io.BytesIO()
    torch.onnx.export(
        module,
        args,
        buffer,
        input_names=inputs,
        output_names=outputs,
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        dynamo=False,
        do_constant_folding=True,
    )
    graph = store_half(onnx.load_from_string(buffer.getvalue()))
    for key, value in {"inktex_version": version, "producer": "inktex"}.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, path)


def store_half(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with each float32 initializer that fp16 holds bit for bit stored as fp16 and
    cast back to float32 by a Cast node: the same arithmetic in half the bytes. The package's
    weights are fp16 already (`model_export.release`), so most are; those the export computed
    from them (a product, a scaled copy) stay float32. ONNX Runtime folds the Casts when it
    loads the graph, so a session holds the very float32 tensors it held before; what this
    buys is the file's size, which the browser downloads and the API's answers carry
    (functions/common/web_model.py)."""
    graph = model.graph
    inputs = {i.name for i in graph.input}
    casts = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT or init.name in inputs:
            continue
        full = numpy_helper.to_array(init)
        half = full.astype(np.float16)
        exact = np.array_equal(half.astype(np.float32).view(np.uint32), full.view(np.uint32))
        if full.size < HALF_MIN_ELEMENTS or not exact:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(half, f"{name}_fp16"))
        casts.append(helper.make_node("Cast", [init.name], [name], to=TensorProto.FLOAT))
    nodes = [*casts, *graph.node]  # the Casts first: they precede every node that reads them
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def store_full(model: onnx.ModelProto) -> onnx.ModelProto:
    """`store_half` undone: each fp16 initializer that a Cast to float32 reads becomes the
    float32 initializer again, for tools that look for weights as initializers (int8
    quantisation finds a MatMul's weight only so)."""
    graph = model.graph
    halves = {i.name: i for i in graph.initializer if i.data_type == TensorProto.FLOAT16}
    kept = []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to == TensorProto.FLOAT and node.input[0] in halves:
            init = halves.pop(node.input[0])
            full = numpy_helper.to_array(init).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(full, node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return model


def export_graphs(model: Recognizer, out_dir: Path, version: str) -> None:
    model = model.eval().float()
    if model.cfg.decoder == "transformer":
        body = encoder_body(model)
        export_transformer_graphs(
            model, body, out_dir, lambda *graph: _export_graph(*graph, version=version)
        )
        return
    image = torch.rand(2, 1, 64, 128)  # any size: the axes are dynamic
    mask = torch.ones_like(image)
    mask[1, :, :, 64:] = 0  # the second input is padded
    with torch.no_grad():
        features, keys, hidden, feature_mask = EncoderGraph(model)(image, mask)
    _export_graph(
        EncoderGraph(model),
        (image, mask),
        out_dir / ENCODER_FILE,
        ["image", "mask"],
        ["features", "keys", "hidden", "feature_mask"],
        {
            "image": {0: "batch", 2: "height", 3: "width"},
            "mask": {0: "batch", 2: "height", 3: "width"},
            "features": {0: "batch", 2: "h", 3: "w"},
            "keys": {0: "batch", 2: "h", 3: "w"},
            "hidden": {0: "batch"},
            "feature_mask": {0: "batch", 2: "h", 3: "w"},
        },
        version,
    )
    rows = 2
    step_args = (
        torch.ones(rows, dtype=torch.long),
        hidden,
        torch.rand(rows, 1, *features.shape[2:]) / 10,
        features,
        keys,
        feature_mask,
    )
    _export_graph(
        StepGraph(model),
        step_args,
        out_dir / STEP_FILE,
        ["token", "hidden", "coverage", "features", "keys", "feature_mask"],
        ["log_probs", "hidden_out", "coverage_out"],
        {
            "token": {0: "rows"},
            "hidden": {0: "rows"},
            "coverage": {0: "rows", 2: "h", 3: "w"},
            "features": {0: "rows", 2: "h", 3: "w"},
            "keys": {0: "rows", 2: "h", 3: "w"},
            "feature_mask": {0: "rows", 2: "h", 3: "w"},
            "log_probs": {0: "rows"},
            "hidden_out": {0: "rows"},
            "coverage_out": {0: "rows", 2: "h", 3: "w"},
        },
        version,
    )


def verify_against_torch(
    model: Recognizer,
    package: ModelPackage,
    samples: list[np.ndarray],
    tolerance: float = LOGIT_TOLERANCE,
) -> dict:
    """Largest log-probability difference along PyTorch's greedy path, and token equality,
    for model inputs of any sizes decoded together (padded, with their mask).

    Raises ModelPackageError when the graphs disagree: a package that fails never ships.
    """
    from inktex.runtime import OnnxRecognizer

    images, mask = pad_batch([np.asarray(s, dtype=np.float32) for s in samples])
    x, m = torch.from_numpy(images)[:, None], torch.from_numpy(mask)[:, None]
    vocab = package.vocab
    with torch.inference_mode():
        torch_results = recognize_batch(model.eval(), x, vocab, beam=1, mask=m)
    recognizer = OnnxRecognizer(package)
    onnx_results = recognizer.search(images, beam=1, mask=mask)
    max_diff = 0.0
    # Teacher-force both on PyTorch's tokens and compare every step's log-probabilities.
    with torch.inference_mode():
        features, feature_mask = model.encode(x, m)
        keys, state = model.decoder.start(features, feature_mask)
        onnx_steps = recognizer.step_model(images, mask)
        onnx_state = onnx_steps.start()
        length = max(len(r.best.ids) for r in torch_results) + 1
        tokens = np.full(len(images), vocab.sos_id, dtype=np.int64)
        for t in range(length):
            logits, state, _ = model.decoder.step(
                torch.from_numpy(tokens), state, features, keys, feature_mask
            )
            torch_logp = torch.log_softmax(logits, dim=-1).numpy()
            onnx_logp, onnx_state = onnx_steps.step(tokens, onnx_state)
            max_diff = max(max_diff, float(np.abs(torch_logp - onnx_logp).max()))
            tokens = np.array(
                [r.best.ids[t] if t < len(r.best.ids) else vocab.eos_id for r in torch_results],
                dtype=np.int64,
            )
        if getattr(onnx_steps, "read_all", None) is not None:  # a Transformer's rescoring graph
            paths = [r.best.ids for r in torch_results]
            diff = reading_difference(model, x, m, onnx_steps, paths, vocab.sos_id)
            max_diff = max(max_diff, diff)
    identical = sum(
        a.best.ids == b.best.ids for a, b in zip(torch_results, onnx_results, strict=True)
    )
    report = {"max_logprob_diff": max_diff, "greedy_identical": identical, "samples": len(images)}
    if max_diff > tolerance or identical != len(images):
        raise ModelPackageError(f"ONNX export disagrees with PyTorch: {report}")
    return report


DECODER_NAMES = {
    "gru": "a GRU decoder with coverage attention",
    "transformer": "a Transformer decoder with attention refinement (coverage)",
}


def model_card(
    payload: dict, model: Recognizer, version: str, metrics: dict, parity: dict, source: Path
) -> str:
    cfg = model.cfg
    history = payload.get("metrics", {})
    return f"""# InkTeX model {version}

- **Architecture**: `{cfg.arch}` encoder ({"DenseNet-B" if cfg.arch == "dense" else "ResNet-18"},
  16x downsampling) and {DECODER_NAMES[cfg.decoder]}; {count_parameters(model):,}
  parameters; vocabulary of {cfg.vocab_size} tokens.
- **Training data**: CROHME 2014 training set (8,835 expressions), offline renderings; selected
  on CROHME 2013; CROHME 2014 test is the reported test and was never used to select.
- **Training**: {json.dumps(payload.get("train_config", {}))}
- **Validation at export**: {json.dumps(history)}
- **Metrics** (`metrics.json`): {json.dumps(metrics) if metrics else "not evaluated yet"}
- **Export check**: {json.dumps(parity)}
- **Lineage**: trained from {f"`{payload['init']}`" if payload.get("init") else "scratch"};
  exported from `{source.name}` on {dt.date.today().isoformat()}.
- **Intended use**: printed-size handwritten expressions, one expression per image. Not for
  multi-line documents, matrices or text.
"""


def export_package(
    checkpoint: Path, out_dir: Path, samples: list[np.ndarray], metrics: dict | None = None
) -> ModelPackage:
    """Export, verify against PyTorch on `samples` (model inputs, (H, W) float arrays of any
    sizes), and write the package."""
    model, vocab, pre, payload = load_checkpoint(checkpoint)
    vocab_json = vocab.to_json()
    pre_json = json.dumps(pre.to_dict(), indent=2)
    version = version_id(model, vocab_json, pre_json)
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        export_graphs(model, staging, version)
        (staging / "vocab.json").write_text(vocab_json, encoding="utf-8")
        (staging / "preprocess.json").write_text(pre_json)
        (staging / "model.json").write_text(
            json.dumps(
                {
                    "version": version,
                    "model_config": model.cfg.to_dict(),
                    "decoder": model.cfg.decoder,
                    # read both ways in training: the search rescores its n-best right to left
                    "bidirectional": bool(payload.get("train_config", {}).get("bidirectional")),
                    "max_len": 200,
                    "beam_size": 5,
                    "length_penalty": 1.0,
                },
                indent=2,
            )
        )
        (staging / "metrics.json").write_text(json.dumps(metrics or {}, indent=2))
        write_manifest(staging, version)
        parity = verify_against_torch(model, ModelPackage.load(staging), samples)
        log.info("export verified: %s", parity)
        (staging / "MODEL_CARD.md").write_text(
            model_card(payload, model, version, metrics or {}, parity, checkpoint)
        )
        write_manifest(staging, version)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(staging, out_dir)
    return ModelPackage.load(out_dir)


def quantize_package(package_dir: Path, out_dir: Path) -> ModelPackage:
    """int8 dynamic quantisation of the MatMul/Gemm weights (convolutions stay float:
    int8 convolutions ran 6x slower here). Its check is ExpRate, not the logit bound."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(package_dir, out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (ENCODER_FILE, STEP_FILE):
            full = Path(tmp) / name  # weights as float32 initializers, where it finds them
            onnx.save(store_full(onnx.load(package_dir / name)), full)
            quantize_dynamic(
                full,
                out_dir / name,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul", "Gemm"],
            )
    manifest = json.loads((package_dir / "manifest.json").read_text())
    write_manifest(out_dir, manifest["version"] + "-int8")
    return ModelPackage.load(out_dir, check_graph_version=False)


def load_samples(data_dir: Path, count: int) -> list[np.ndarray]:
    """The first `count` CROHME 2013 model inputs of a prepared data folder, as served."""
    from training.data import ExpressionDataset, load_split, render_all

    pre = PreprocessConfig.from_dict(json.loads((data_dir / "preprocess.json").read_text()))
    dataset = ExpressionDataset(load_split(data_dir / "test2013.npz"), pre)
    return [x.astype(np.float32) / 255 for x in render_all(dataset, count)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument(
        "--samples", type=Path, default=Path("data/prepared"), help="prepared data folder"
    )
    parser.add_argument("--count", type=int, default=16, help="sample images for the check")
    parser.add_argument("--metrics", type=Path, default=None, help="metrics JSON to include")
    parser.add_argument("--int8", type=Path, default=None, help="also write an int8 package here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    metrics = json.loads(args.metrics.read_text()) if args.metrics else None
    package = export_package(
        args.checkpoint, args.out, load_samples(args.samples, args.count), metrics
    )
    print(f"exported {package.version} to {args.out}")
    if args.int8:
        quantized = quantize_package(args.out, args.int8)
        print(f"quantised {quantized.version} to {args.int8}")


if __name__ == "__main__":
    main()
