"""The torch-free serving runtime: a model package in, LaTeX with confidence out.

Used by the Lambda functions, `inktex predict`, `inktex evaluate --model` and promotion,
so what is measured is what is served. The encoder runs once per batch; the decoder step
graph runs once per token for all rows (images x beams) at once, each row reading its own
copy of its image's encoder outputs, made once per search. Its inputs and outputs are bound
once to preallocated buffers (I/O binding), kept from one search to the next, so a step
allocates, copies and binds nothing (docs/benchmark.md). A Transformer package's step graph
reads a key/value cache instead of a hidden state (`inktex.transformer_runtime`); which one a
package has, its step graph's inputs say.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from inktex import inputs, plugins
from inktex.bound import BoundRows
from inktex.data import REPO_ROOT
from inktex.errors import InkTeXError, ModelPackageError
from inktex.latex import to_latex
from inktex.package import ENCODER_FILE, STEP_FILE, TEMPERATURE, ModelPackage
from inktex.preprocess import PreprocessConfig, pad_batch, size_batches
from inktex.search import Hypothesis, SearchResult, decode
from inktex.transformer_runtime import READ_FILE, TransformerStepModel

if TYPE_CHECKING:
    from inktex.evaluate import Recognizer

Input = TypeVar("Input")  # what one of inputs.from_* reads: bytes, strokes, a path


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


def _session(path: Path, threads: int, level: ort.GraphOptimizationLevel) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = level
    if threads > 1:
        # Idle pool threads would spin on a core that the other session (or a neighbour) needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# The encoder gains from ORT_ENABLE_ALL's blocked (NCHWc) convolutions; on the step graph's
# small attention grid the layout reorders cost more than they save (8% of a step measured).
ENCODER_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
STEP_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
# The Transformer's step graph: ORT_ENABLE_ALL runs its attention refinement's grouped
# convolution in about half the time, and the step ~10% faster (docs/benchmark.md).
TRANSFORMER_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_ALL


@dataclass(frozen=True)
class StepState:
    """Decoder rows; `serial` > 0 marks arrays that live in the step model's own buffers."""

    hidden: np.ndarray  # (rows, D)
    coverage: np.ndarray  # (rows, 1, h, w): attention summed over past steps
    index: np.ndarray  # (rows,) int64: the encoded image each row attends to
    serial: int = 0


class _Buffers(BoundRows):
    """Bound buffers for one row count: each row's copy of the encoder's outputs, the tokens,
    the log-probabilities, and two state buffers that each step reads one of and writes the
    other."""

    def __init__(self, model: OnnxStepModel, rows: int):
        def zeros(*shape: int, dtype: npt.DTypeLike = np.float32) -> np.ndarray:
            return np.zeros(shape, dtype=dtype)

        super().__init__(model.encoded, rows)
        self.token = zeros(rows, dtype=np.int64)
        self.log_probs = zeros(rows, model.vocab_size)
        self.hidden = [zeros(rows, model.hidden0.shape[1]) for _ in range(2)]
        self.coverage = [zeros(rows, 1, *model.grid) for _ in range(2)]
        inputs = {"token": self.token, **self.encoded}
        if model.reads_index:  # older packages' step graphs gather each row's image by index
            inputs["image_index"] = np.arange(rows, dtype=np.int64)  # each row is its own
        self.bindings = []
        for src in (0, 1):
            dst = 1 - src
            binding = model.session.io_binding()
            state = {"hidden": self.hidden[src], "coverage": self.coverage[src]}
            for name, array in {**inputs, **state}.items():
                binding.bind_ortvalue_input(name, self.keep(array))
            for name, array in {
                "log_probs": self.log_probs,
                "hidden_out": self.hidden[dst],
                "coverage_out": self.coverage[dst],
            }.items():
                binding.bind_ortvalue_output(name, self.keep(array))
            self.bindings.append(binding)


_serials = itertools.count(1)  # unique across step models, which may share buffers


class OnnxStepModel:
    """The decoder step graph as the core search's `StepModel`, with no per-step allocations.

    Everything a step reads and writes lives in preallocated numpy buffers bound to the graph
    once (I/O binding): each row's copy of the encoder's outputs, the tokens, and two state
    buffers per row count, one read and one written, swapping each step. ONNX Runtime writes
    the next state straight into the buffer the following step reads: no output allocation,
    no copies, no re-binding. A state that the search made itself (the start, a beam
    selection) is copied in once. At one image this more than halves the cost of a step.

    So a state returned by `step` is overwritten two steps later: it is valid as input to the
    next step only, as the searches use it; passing an older one raises.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        encoded: dict[str, np.ndarray],
        hidden: np.ndarray,
        buffers: dict | None = None,
    ):
        """`encoded`: the encoder's outputs by name; `buffers`: bound buffers to reuse, from an
        earlier search on the same session (binding them anew costs more than a step)."""
        self.session = session
        names = {i.name for i in session.get_inputs()}
        self.encoded = {k: np.ascontiguousarray(v) for k, v in encoded.items() if k in names}
        self.reads_index = "image_index" in names
        self.hidden0 = np.ascontiguousarray(hidden, dtype=np.float32)
        self.grid = tuple(encoded["features"].shape[2:])
        self.vocab_size = int(session.get_outputs()[0].shape[1])
        self._buffers = {} if buffers is None else buffers
        if len(self._buffers) > 8:  # row counts seen: keep the memory bounded
            self._buffers.clear()
        for buf in self._buffers.values():
            buf.index[...] = -1  # their copies are of other images
        self._serial = 0  # of the latest state that `step` returned

    def start(self) -> StepState:
        n = len(self.hidden0)
        coverage = np.zeros((n, 1, *self.grid), dtype=np.float32)
        return StepState(self.hidden0.copy(), coverage, np.arange(n, dtype=np.int64))

    def step(self, tokens: np.ndarray, state: StepState) -> tuple[np.ndarray, StepState]:
        key = (len(tokens), self.grid)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = _Buffers(self, len(tokens))
        if state.serial == 0:  # the search's own arrays: copy them into a read buffer
            src = 0
            buf.hidden[src][...] = state.hidden
            buf.coverage[src][...] = state.coverage
            buf.read_from(self.encoded, state.index)
        elif state.serial == self._serial and state.hidden is buf.hidden[0]:
            src = 0
        elif state.serial == self._serial and state.hidden is buf.hidden[1]:
            src = 1
        else:
            raise RuntimeError("a decoder state is valid as input to the next step only")
        buf.token[...] = tokens
        self.session.run_with_iobinding(buf.bindings[src])
        self._serial = next(_serials)
        dst = 1 - src
        out = StepState(buf.hidden[dst], buf.coverage[dst], buf.index, self._serial)
        return buf.log_probs.copy(), out

    def select(self, state: StepState, rows: np.ndarray) -> StepState:
        return StepState(state.hidden[rows], state.coverage[rows], state.index[rows])


class OnnxRecognizer:
    """A loaded package with its two sessions; create once, call many times."""

    def __init__(self, package: ModelPackage, encoder_threads: int = 1, step_threads: int = 1):
        self.package = package
        self.vocab = package.vocab
        self.preprocess = package.preprocess
        self.max_len = int(package.settings.get("max_len", 200))
        self.beam_size = int(package.settings.get("beam_size", 5))
        self.length_penalty = float(package.settings.get("length_penalty", 1.0))
        # Trained to read both ways: the beam's n-best are rescored right to left (BTTR).
        self.bidirectional = bool(package.settings.get("bidirectional", False))
        # Reported probabilities are p ** (1 / T), T fitted on CROHME 2013 when the package was
        # made (model_export.calibrate), so that a confidence of 0.7 is right about 70% of
        # the time. The search itself reads the model's own log-probabilities.
        self.temperature = float(package.settings.get(TEMPERATURE, 1.0))
        self.encoder = _session(package.path / ENCODER_FILE, encoder_threads, ENCODER_OPTIMIZATION)
        transformer = package.settings.get("decoder") == "transformer"
        step_level = TRANSFORMER_OPTIMIZATION if transformer else STEP_OPTIMIZATION
        self.step_session = _session(package.path / STEP_FILE, step_threads, step_level)
        # A Transformer package's teacher-forcing graph, which its rescoring reads through.
        read = package.path / READ_FILE
        self.read_session = (
            _session(read, step_threads, TRANSFORMER_OPTIMIZATION) if read.is_file() else None
        )
        # Packages at the writer's scale take a mask; older ones see one fixed size, unpadded.
        self.takes_mask = "mask" in {i.name for i in self.encoder.get_inputs()}
        self.reads_cache = "cache" in {i.name for i in self.step_session.get_inputs()}
        # Bound step buffers, kept from one search to the next; a concurrent search makes its own.
        self._buffers: dict = {}
        self._buffers_lock = threading.Lock()
        if package.check_graph_version:
            for session in (self.encoder, self.step_session, self.read_session):
                if session is None:
                    continue
                found = session.get_modelmeta().custom_metadata_map.get("inktex_version")
                if found != package.version:
                    raise ModelPackageError(
                        f"graph version {found} does not match package version {package.version}"
                    )

    @classmethod
    def load(cls, path: Path | str, **threads: int) -> OnnxRecognizer:
        return cls(ModelPackage.load(Path(path)), **threads)

    @property
    def version(self) -> str:
        return self.package.version

    def step_model(
        self, images: np.ndarray, mask: np.ndarray | None = None, buffers: dict | None = None
    ) -> OnnxStepModel | TransformerStepModel:
        """Encode model inputs (N, H, W) float32, with their padding mask (none: nothing is
        padded), and return their decoder."""
        feeds = {"image": images[:, None]}
        if self.takes_mask:
            mask = np.ones_like(images) if mask is None else mask
            feeds["mask"] = np.ascontiguousarray(mask, dtype=np.float32)[:, None]
        outputs = self.encoder.run(None, feeds)
        encoded = {o.name: v for o, v in zip(self.encoder.get_outputs(), outputs, strict=True)}
        if self.reads_cache:
            return TransformerStepModel(self.step_session, encoded, buffers, self.read_session)
        return OnnxStepModel(self.step_session, encoded, encoded.pop("hidden"), buffers)

    def search(
        self, images: np.ndarray, beam: int | None = None, mask: np.ndarray | None = None
    ) -> list[SearchResult]:
        """Search results for model inputs (N, H, W) float32 and their padding mask."""
        beam = self.beam_size if beam is None else beam
        images = np.ascontiguousarray(images, dtype=np.float32)
        reuse = self._buffers_lock.acquire(blocking=False)
        try:
            steps = self.step_model(images, mask, self._buffers if reuse else None)
            return decode(
                steps,
                len(images),
                self.vocab,
                self.max_len,
                beam,
                self.length_penalty,
                self.bidirectional,
            )
        finally:
            if reuse:
                self._buffers_lock.release()

    def recognize_inputs(
        self,
        inputs: Sequence[np.ndarray],
        beam: int | None = None,
        batch_size: int = 16,
        batch_pixels: int = 1_000_000,
    ) -> list[Recognition]:
        """Recognitions of preprocessed model inputs, decoded in padded batches of similar
        size, in the inputs' order."""
        out: dict[int, Recognition] = {}
        shapes = [x.shape for x in inputs]
        for batch in size_batches(shapes, batch_pixels, batch_size):
            started = time.perf_counter()
            images, mask = pad_batch([inputs[i] for i in batch])
            results = self.search(images, beam, mask if self.takes_mask else None)
            per_item = (time.perf_counter() - started) * 1000 / len(results)
            for i, r in zip(batch, results, strict=True):
                out[i] = self._recognition(r, per_item)
        return [out[i] for i in range(len(inputs))]

    def _recognition(self, result: SearchResult, latency_ms: float) -> Recognition:
        def describe(hyp: Hypothesis) -> tuple[list[str], float]:
            tokens = self.vocab.decode(hyp.ids)
            return tokens, math.exp(hyp.logprob / self.temperature)

        tokens, confidence = describe(result.best)
        alternatives = []
        for hyp in result.hypotheses[1:]:
            alt_tokens, alt_conf = describe(hyp)
            alternatives.append({"latex": to_latex(alt_tokens), "confidence": alt_conf})
        return Recognition(
            latex=to_latex(tokens),
            tokens=tokens,
            confidence=confidence,
            token_probs=[
                math.exp(p / self.temperature) for p in result.best.token_logprobs[: len(tokens)]
            ],
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

    def _timed(
        self,
        prepare: Callable[[Input, PreprocessConfig], np.ndarray],
        data: Input,
        beam: int | None,
    ) -> Recognition:
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


def load_recognizer(path: Path | str, **threads: int) -> Recognizer:
    """A recogniser for a model package folder, or for a PyTorch checkpoint (training extra)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".pt":  # the training package's, torch only then
        return plugins.load(plugins.RECOGNIZERS, "torch", extra="train")(path)
    if not path.is_dir():
        raise InkTeXError(f"{path} is neither a model package folder nor a checkpoint (.pt)")
    return OnnxRecognizer.load(path, **threads)
