"""The torch-free serving runtime: a model package in, LaTeX with confidence out.

Used by the Lambda functions, `inktex predict`, `inktex evaluate --model` and promotion,
so what is measured is what is served. The encoder runs once per batch; the decoder step
graph runs once per token for all rows (images x beams) at once, reading the encoder's
outputs through an index instead of copies, and passing its state on as ONNX Runtime
values without a round trip through numpy.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inktex import inputs
from inktex.data import REPO_ROOT
from inktex.errors import InkTeXError, ModelPackageError
from inktex.latex import to_latex
from inktex.package import ENCODER_FILE, STEP_FILE, ModelPackage
from inktex.search import SearchResult, beam_search, greedy_search


@dataclass
class Recognition:
    latex: str
    tokens: list[str]
    confidence: float  # the model's probability of the whole sequence, <eos> included
    token_probs: list[float]
    alternatives: list[dict] = field(default_factory=list)  # [{"latex", "confidence"}]
    model_version: str = ""
    latency_ms: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ortvalue(array: np.ndarray) -> ort.OrtValue:
    return ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))


class OnnxStepModel:
    """The decoder step graph as the core search's `StepModel`."""

    def __init__(self, session: ort.InferenceSession, features, keys, hidden):
        self.session = session
        self.features, self.keys = _ortvalue(features), _ortvalue(keys)
        self.hidden0 = hidden
        self.coverage_shape = (1, *features.shape[2:])

    def start(self):
        n = len(self.hidden0)
        coverage = np.zeros((n, *self.coverage_shape), dtype=np.float32)
        return _ortvalue(self.hidden0), _ortvalue(coverage), np.arange(n, dtype=np.int64)

    def step(self, tokens: np.ndarray, state):
        hidden, coverage, index = state
        outputs = self.session.run_with_ort_values(
            ["log_probs", "hidden_out", "coverage_out"],
            {
                "token": _ortvalue(tokens.astype(np.int64)),
                "hidden": hidden,
                "coverage": coverage,
                "features": self.features,
                "keys": self.keys,
                "image_index": _ortvalue(index),
            },
        )
        return outputs[0].numpy(), (outputs[1], outputs[2], index)

    def select(self, state, rows: np.ndarray):
        hidden, coverage, index = state
        return (_ortvalue(hidden.numpy()[rows]), _ortvalue(coverage.numpy()[rows]), index[rows])


class OnnxRecognizer:
    """A loaded package with its two sessions; create once, call many times."""

    def __init__(self, package: ModelPackage, encoder_threads: int = 1, step_threads: int = 1):
        self.package = package
        self.vocab = package.vocab
        self.preprocess = package.preprocess
        self.max_len = int(package.settings.get("max_len", 200))
        self.beam_size = int(package.settings.get("beam_size", 5))
        self.length_penalty = float(package.settings.get("length_penalty", 1.0))
        self.encoder = _session(package.path / ENCODER_FILE, encoder_threads)
        self.step_session = _session(package.path / STEP_FILE, step_threads)
        if package.check_graph_version:
            for session in (self.encoder, self.step_session):
                found = session.get_modelmeta().custom_metadata_map.get("inktex_version")
                if found != package.version:
                    raise ModelPackageError(
                        f"graph version {found} does not match package version {package.version}"
                    )

    @classmethod
    def load(cls, path: Path | str, **kwargs) -> OnnxRecognizer:
        return cls(ModelPackage.load(Path(path)), **kwargs)

    @property
    def version(self) -> str:
        return self.package.version

    def step_model(self, images: np.ndarray) -> OnnxStepModel:
        """Encode model inputs (N, H, W) float32 and return their decoder."""
        features, keys, hidden = self.encoder.run(None, {"image": images[:, None]})
        return OnnxStepModel(self.step_session, features, keys, hidden)

    def search(self, images: np.ndarray, beam: int | None = None) -> list[SearchResult]:
        """Search results for model inputs (N, H, W) float32."""
        beam = self.beam_size if beam is None else beam
        steps = self.step_model(np.ascontiguousarray(images, dtype=np.float32))
        v = self.vocab
        if beam <= 1:
            return greedy_search(steps, len(images), v.sos_id, v.eos_id, self.max_len)
        return beam_search(
            steps, len(images), v.sos_id, v.eos_id, self.max_len, beam, self.length_penalty
        )

    def recognize_inputs(
        self, inputs: Sequence[np.ndarray], beam: int | None = None, batch_size: int = 16
    ) -> list[Recognition]:
        """Recognitions of preprocessed model inputs, decoded in batches."""
        out: list[Recognition] = []
        for i in range(0, len(inputs), batch_size):
            started = time.perf_counter()
            results = self.search(np.stack(inputs[i : i + batch_size]), beam)
            per_item = (time.perf_counter() - started) * 1000 / len(results)
            out += [self._recognition(r, per_item) for r in results]
        return out

    def _recognition(self, result: SearchResult, latency_ms: float) -> Recognition:
        def describe(hyp):
            tokens = self.vocab.decode(hyp.ids)
            return tokens, math.exp(hyp.logprob)

        tokens, confidence = describe(result.best)
        alternatives = []
        for hyp in result.hypotheses[1:]:
            alt_tokens, alt_conf = describe(hyp)
            alternatives.append({"latex": to_latex(alt_tokens), "confidence": alt_conf})
        return Recognition(
            latex=to_latex(tokens),
            tokens=tokens,
            confidence=confidence,
            token_probs=[math.exp(p) for p in result.best.token_logprobs[: len(tokens)]],
            alternatives=alternatives,
            model_version=self.version,
            latency_ms=round(latency_ms, 2),
        )

    def recognize_image(self, data: bytes, beam: int | None = None) -> Recognition:
        return self._timed(inputs.from_image, data, beam)

    def recognize_strokes(self, strokes: object, beam: int | None = None) -> Recognition:
        return self._timed(inputs.from_strokes, strokes, beam)

    def recognize_inkml(self, data: bytes | str, beam: int | None = None) -> Recognition:
        return self._timed(inputs.from_inkml, data, beam)

    def _timed(self, prepare, data, beam) -> Recognition:
        started = time.perf_counter()
        result = self.recognize_inputs([prepare(data, self.preprocess)], beam)[0]
        result.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return result

    def recognize_file(self, path: Path, beam: int | None = None) -> Recognition:
        return self._timed(inputs.from_path, Path(path), beam)

    def recognize_paths(self, paths: list[Path]) -> list[list[str]]:
        """Token lists for files (the evaluation protocol's `Recognizer`)."""
        batch = [inputs.from_path(p, self.preprocess) for p in paths]
        return [r.tokens for r in self.recognize_inputs(batch)]


def default_model_path() -> Path:
    """$INKTEX_MODEL, else the release model bundled with the repository."""
    return Path(os.environ.get("INKTEX_MODEL", REPO_ROOT / "models" / "release"))


def load_recognizer(path: Path | str, **kwargs):
    """A recogniser for a model package folder, or for a PyTorch checkpoint (training extra)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".pt":
        from training.decoding import TorchRecognizer  # torch only when asked for

        return TorchRecognizer(path)
    if not path.is_dir():
        raise InkTeXError(f"{path} is neither a model package folder nor a checkpoint (.pt)")
    return OnnxRecognizer.load(path, **kwargs)
