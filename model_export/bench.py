"""`make bench`: one model, onnxruntime beside PyTorch eager, side by side in one process.

    python -m model_export.bench [--package DIR] [--checkpoint PT] [--baseline DIR]
                                 [--images N] [--full] [--gates] [--json OUT] [--markdown OUT]
                                 [--references]

On CROHME 2014 test expressions (an even spread of N by default, all 986 with --full),
rendered from their InkML as the pipeline's evaluation does, after warm-up: latency p50/p95
per input (greedy through the core search, one image at a time, at
1 and 2 threads: `torch.set_num_threads(n)` against ONNX Runtime intra-op threads n), batch
throughput, cold start of fresh `inktex predict` processes, package size, ExpRate of ONNX beam
beside PyTorch greedy, ONNX-vs-PyTorch greedy agreement, and ExpRate on the corpus's fixed
256x256 PNG renderings of the same expressions and on degraded copies of those (photos and
scans as people send them), relative to the strokes' ExpRate; those sets leave out the
expressions whose PNG draws other strokes (a corpus defect, counted and named). A candidate
package is also timed against the bundled release (`--baseline`): beam 5 at 1 thread, both
packages side by side on the same expressions, each read at its own preprocessing
(`--references`: that alone, both made to write the reference expressions, for weights not
trained yet, which never end).
Latency runs alternate between the backends in short chunks, so that a busy neighbour on
this shared machine slows both alike; the ratios are what to compare across runs, not the
absolute times.

A checkpoint without its package is exported on the fly. Without a checkpoint (no
models/release/checkpoint.pt) it trains a tiny model for a few seconds and says so: the
timings then describe the runtime, not a model worth serving. The report ends with the
package's own metrics (the pipeline's evaluation on the full test sets) beside the field's
CROHME 2014 results, and issue 5's release gates. docs/benchmark.md explains every measure
and records the runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image, ImageFilter
from tqdm import tqdm

from inktex import inputs
from inktex.data import REPO_ROOT, Sample, crohme_root, load_split
from inktex.errors import InkTeXError
from inktex.evaluate import normalize_prediction
from inktex.ink import Strokes, read_inkml
from inktex.latex import to_latex
from inktex.metrics import score
from inktex.package import ModelPackage
from inktex.preprocess import pad_batch, size_batches
from inktex.runtime import OnnxRecognizer
from inktex.search import decode
from model_export.field import field_table, release_gates
from training import photo
from training.checkpoint import load_checkpoint
from training.decoding import recognize_batch
from training.model import count_parameters

DEFAULT_PACKAGE = REPO_ROOT / "models" / "release"
DEFAULT_CHECKPOINT = DEFAULT_PACKAGE / "checkpoint.pt"
DEFAULT_IMAGES = 100
BATCH_SIZE = 16
BATCH_PIXELS = 1_000_000  # a padded batch's pixels, as the runtime batches them
CHUNK = 10  # images per backend turn in the alternating latency runs
GATES = {  # name: (limit, how the value must compare)
    "ort_over_torch_p50_1_thread": (1 / 3, "<="),
    "cold_start_s": (1.0, "<="),
    "worst_degraded_relative_exprate": (0.9, ">="),
    "greedy_agreement": (0.99, ">="),
}
# Judged when a baseline package was measured beside the candidate (issue 17's speed gate).
BASELINE_GATES = {"beam_over_baseline_p50_1_thread": (2.0, "<=")}
BASELINE_BEAM = 5
Item = TypeVar("Item")  # what a latency runner reads: a model input, or an index into inputs


@dataclass(frozen=True)
class BenchModel:
    package: Path
    checkpoint: Path
    source: str  # where the model came from, printed with the results


# ---- the model ----------------------------------------------------------------------------


def resolve_model(package: Path, checkpoint: Path, workdir: Path) -> BenchModel:
    """The package and checkpoint asked for; a package exported from the checkpoint where only
    the checkpoint exists; else a tiny model trained on the fly."""
    if package.is_dir() and checkpoint.is_file():
        return BenchModel(package, checkpoint, f"{package} with {checkpoint}")
    if checkpoint.is_file():
        exported = _export(checkpoint, workdir / "package")
        return BenchModel(exported, checkpoint, f"{checkpoint}, exported on the fly")
    why = f"no model at {package} with a checkpoint {checkpoint}"
    print(f"bench: {why}: training a tiny model on the fly (timings only)", file=sys.stderr)
    trained = train_tiny_model(workdir)
    return BenchModel(_export(trained, workdir / "package"), trained, f"TINY model ({why})")


def train_tiny_model(workdir: Path) -> Path:
    """A `tiny`-width checkpoint trained for seconds on the committed fixture images."""
    from training.prepare import TINY_INPUT, prepare, tiny_corpus
    from training.train import train

    data = workdir / "prepared"
    prepare(tiny_corpus(workdir / "corpus"), data, TINY_INPUT, splits=("train", "test2013"))
    params = {
        "model": {"arch": "dense", "width": "tiny"},
        "train": {"preset": "tiny", "seed": 0, "overrides": {"epochs": 20, "lr": 0.01}},
    }
    train(params, data, workdir / "train", resume=False)
    return workdir / "train" / "best.pt"


def _export(checkpoint: Path, out: Path) -> Path:
    from model_export.export import export_package

    _, _, pre, _ = load_checkpoint(checkpoint)
    samples = [
        inputs.from_path(p, pre) for p in sorted((REPO_ROOT / "tests/fixtures/inkml").glob("*.png"))
    ]
    export_package(checkpoint, out, samples)
    return out


# ---- images and their degraded copies --------------------------------------------------------


def inkml_of(sample: Sample) -> Path:
    """The pen strokes that a CROHME 2014 test image was rendered from."""
    return crohme_root() / "inkml" / "test2014" / f"{sample.name}.inkml"


def load_samples(count: int, full: bool) -> list[Sample]:
    """CROHME 2014 test samples: all, or `count` spread evenly over the set."""
    samples, _ = load_split(crohme_root(), "test2014")
    if not samples:
        raise InkTeXError(f"no CROHME 2014 test images under {crohme_root()} (INKTEX_DATA)")
    if full or count >= len(samples):
        return samples
    return [samples[i] for i in np.linspace(0, len(samples) - 1, count).round().astype(int)]


def _png(gray: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(gray).save(out, "PNG")
    return out.getvalue()


# The same degradations that training draws at random (`training.photo`), at fixed settings.
DEGRADATIONS: dict[str, Callable[[np.ndarray], bytes]] = {
    "inverted": lambda g: _png(photo.inverted(g)),
    "rotated +5": lambda g: _png(photo.rotated(g, 5)),
    "rotated -5": lambda g: _png(photo.rotated(g, -5)),
    "JPEG q60": lambda g: photo.jpeg_bytes(g, 60),
    "scaled 3x": lambda g: _png(photo.scaled(g, 3)),
    "wide margins": lambda g: _png(photo.wide_margins(g)),
    "grey paper": lambda g: _png(photo.grey_paper(g, 150, 200)),
}


def draws_its_strokes(png: bytes, strokes: Strokes) -> bool:
    """Whether a corpus PNG is a drawing of its own strokes. 26 of CROHME 2014's, all from
    RIT_2014_154 to _225, draw other, broken strokes, which no reader could take for their
    label: they would measure the corpus, not the reader. Each drawing's ink must lie mostly
    within 3 px of the other's."""
    theirs = np.asarray(Image.open(io.BytesIO(png)).convert("L")) < 128
    ours = photo.corpus_png(strokes) < 128
    if theirs.shape != ours.shape:
        return False
    return min(_share_near(theirs, ours), _share_near(ours, theirs)) >= 0.5


def _share_near(ink: np.ndarray, other: np.ndarray) -> float:
    """The share of `ink`'s pixels within 3 px of `other`'s ink."""
    grown = Image.fromarray(other.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(7))
    return float((ink & (np.asarray(grown) > 0)).sum() / max(ink.sum(), 1))


def degrade(data: bytes, kind: str) -> bytes:
    """An encoded copy of a PNG, degraded as a person's photo or scan might be."""
    return DEGRADATIONS[kind](np.asarray(Image.open(io.BytesIO(data)).convert("L")))


# ---- measurements ------------------------------------------------------------------------


def _stats(ms: list[float]) -> dict:
    return {
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p95": round(float(np.percentile(ms, 95)), 3),
    }


def latency_pass(
    runners: dict[str, Callable[[Item], list[int]]], xs: Sequence[Item], desc: str
) -> tuple[dict[str, dict], dict[str, list[list[int]]]]:
    """Per-image ms stats and tokens of each runner, alternating runners chunk by chunk."""
    for x in xs[:3]:  # warm-up: first-run allocations and lazy initialisation
        for run in runners.values():
            run(x)
    times: dict[str, list[float]] = {name: [] for name in runners}
    tokens: dict[str, list[list[int]]] = {name: [] for name in runners}
    with tqdm(total=len(xs) * len(runners), desc=desc, unit="run") as bar:
        for start in range(0, len(xs), CHUNK):
            for name, run in runners.items():
                for x in xs[start : start + CHUNK]:
                    began = time.perf_counter()
                    ids = run(x)
                    times[name].append((time.perf_counter() - began) * 1000)
                    tokens[name].append(ids)
                    bar.update()
    return {name: _stats(t) for name, t in times.items()}, tokens


def ort_greedy(recognizer: OnnxRecognizer) -> Callable[[np.ndarray], list[int]]:
    return lambda x: recognizer.search(x[None], beam=1)[0].best.ids


def measure_against_baseline(
    package: ModelPackage, baseline_dir: Path, paths: list[Path], beam: int = BASELINE_BEAM
) -> dict | None:
    """The package's beam latency at 1 thread beside a baseline package's (the bundled
    release), taking turns on the same expressions, each package reading them at its own
    preprocessing (a larger input costs its encoder more: the mean pixels say how much).
    None without a baseline, or when the baseline is this package."""
    if not (baseline_dir / "manifest.json").is_file():
        return None
    baseline = ModelPackage.load(baseline_dir)
    if baseline.version == package.version:
        return None
    prepared: dict[str, list[np.ndarray]] = {"candidate": [], "baseline": []}
    for path in paths:
        try:
            pair = [inputs.from_path(path, p.preprocess) for p in (package, baseline)]
        except InkTeXError:  # either refuses it: both leave it out
            continue
        prepared["candidate"].append(pair[0])
        prepared["baseline"].append(pair[1])

    def beam_of(pkg: ModelPackage, xs: list[np.ndarray]) -> Callable[[int], list[int]]:
        recognizer = OnnxRecognizer(pkg, 1, 1)
        return lambda i: recognizer.search(xs[i][None], beam=beam)[0].best.ids

    runners = {
        "candidate": beam_of(package, prepared["candidate"]),
        "baseline": beam_of(baseline, prepared["baseline"]),
    }
    count = len(prepared["candidate"])
    stats, _ = latency_pass(runners, range(count), f"beam {beam}, against the baseline")
    return {
        "baseline": {"package": str(baseline_dir), "version": baseline.version},
        "beam": beam,
        "threads": 1,
        "images": count,
        "mean_input_pixels": {
            k: round(statistics.mean(x.size for x in v)) for k, v in prepared.items()
        },
        "latency_ms": stats,
        "candidate_over_baseline_p50": round(
            stats["candidate"]["p50"] / stats["baseline"]["p50"], 4
        ),
    }


class WritesReference:
    """A step model that writes a given expression: at step t every row's log-probabilities
    with the expression's token t (then <eos>) 30 nats likelier. Timed so, two packages write
    what a model that reads the expression right would write, in the grammar's order, as
    many tokens as it has; untrained weights would never end."""

    def __init__(self, model, ids: list[int], eos_id: int):
        self.model, self.ids, self.eos_id, self.steps = model, ids, eos_id, 0
        self.read_all = getattr(model, "read_all", None)  # the rescoring's, if it has one

    def start(self):
        return self.model.start()

    def select(self, state, rows):
        return self.model.select(state, rows)

    def step(self, tokens, state):
        logp, state = self.model.step(tokens, state)
        t, self.steps = self.steps, self.steps + 1
        logp[:, self.ids[t] if t < len(self.ids) else self.eos_id] += 30
        return logp, state


def beam_writing_references(
    package: ModelPackage, baseline_dir: Path, samples: list[Sample], beam: int
) -> dict:
    """Beam latency at 1 thread of the package beside the baseline's, both made to write each
    expression's reference (`WritesReference`), taking turns on the same expressions: the
    speed gate for weights not trained yet (random ones, at the widths to be trained)."""
    baseline = ModelPackage.load(baseline_dir)
    runners, expected = {}, {}
    for name, pkg in (("candidate", package), ("baseline", baseline)):
        recognizer = OnnxRecognizer(pkg, 1, 1)
        xs = [inputs.from_path(inkml_of(s), pkg.preprocess) for s in samples]
        refs = expected[name] = [pkg.vocab.encode(s.tokens) for s in samples]

        def run(i: int, r: OnnxRecognizer = recognizer, xs: list = xs, refs: list = refs):
            model = r.step_model(xs[i][None], buffers=r._buffers)
            steps = WritesReference(model, refs[i], r.vocab.eos_id)
            found = decode(steps, 1, r.vocab, r.max_len, beam, r.length_penalty, r.bidirectional)
            return found[0].best.ids

        runners[name] = run
    stats, written = latency_pass(runners, range(len(samples)), f"beam {beam}, references")
    return {
        "beam": beam,
        "images": len(samples),
        "median_tokens": statistics.median(len(s.tokens) for s in samples),
        "wrote_the_reference": {
            k: sum(ids == ref for ids, ref in zip(v, expected[k], strict=True))
            for k, v in written.items()
        },
        "latency_ms": stats,
        "candidate_over_baseline_p50": round(
            stats["candidate"]["p50"] / stats["baseline"]["p50"], 4
        ),
    }


def torch_greedy(model, vocab, max_len: int) -> Callable[[np.ndarray], list[int]]:
    def run(x: np.ndarray) -> list[int]:
        image = torch.from_numpy(x)[None, None]
        return recognize_batch(model, image, vocab, beam=1, max_len=max_len)[0].best.ids

    return run


def component_times(
    recognizer: OnnxRecognizer, model, xs: list[np.ndarray], steps: int = 20
) -> dict:
    """What one image's latency is made of, per backend: the encoder (ms, median) and one
    decoder step (us, median), `steps` steps fed a fixed token. The 20-token estimate says
    where a model that writes 20 tokens (CROHME's median) would land."""
    from training.decoding import TorchStepModel

    token = np.array([recognizer.vocab.sos_id], dtype=np.int64)

    def ort_encode(x):
        recognizer.step_model(x[None])

    def ort_steps(x):
        decoder = recognizer.step_model(x[None])
        state = decoder.start()
        began = time.perf_counter()
        for _ in range(steps):
            _, state = decoder.step(token, state)
        return time.perf_counter() - began

    @torch.inference_mode()
    def torch_encode(x):
        model.decoder.start(*model.encode(torch.from_numpy(x)[None, None]))

    @torch.inference_mode()
    def torch_steps(x):
        decoder = TorchStepModel(model, torch.from_numpy(x)[None, None], None)
        state = decoder.start()
        began = time.perf_counter()
        for _ in range(steps):
            _, state = decoder.step(token, state)
        return time.perf_counter() - began

    out = {}
    for name, encode, step in (
        ("onnxruntime", ort_encode, ort_steps),
        ("pytorch", torch_encode, torch_steps),
    ):
        for x in xs[:3]:
            encode(x)
            step(x)
        encode_s = []
        for x in xs:
            began = time.perf_counter()
            encode(x)
            encode_s.append(time.perf_counter() - began)
        step_s = [step(x) / steps for x in xs]
        out[name] = {
            "encoder_ms": round(statistics.median(encode_s) * 1000, 3),
            "step_us": round(statistics.median(step_s) * 1e6, 1),
        }
    at_20 = {k: v["encoder_ms"] + 20 * v["step_us"] / 1000 for k, v in out.items()}
    out["ort_over_torch_estimate_at_20_tokens"] = round(at_20["onnxruntime"] / at_20["pytorch"], 4)
    return out


def cold_start(package: Path, image: Path, runs: int) -> list[float]:
    """Wall seconds of fresh `inktex predict` processes: interpreter, imports, load, decode."""
    command = [sys.executable, "-m", "inktex.cli", "predict", str(image), "--model", str(package)]
    seconds = []
    for _ in tqdm(range(runs), desc="cold start", unit="process"):
        began = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO_ROOT)
        seconds.append(time.perf_counter() - began)
    return seconds


def quality(refs: list[list[str]], predictions: list[list[str] | None]) -> dict:
    """ExpRate and token accuracy (percent), predictions normalised as `inktex evaluate` does;
    None (the input was refused) scores as an empty prediction."""
    hyps = [normalize_prediction("", to_latex(p))[0] if p else [] for p in predictions]
    s = score(zip(refs, hyps, strict=True)).to_dict()
    return {"exprate": s["exprate"], "token_accuracy": s["token_accuracy"]}


def recognize_encoded(
    recognizer: OnnxRecognizer, encoded: list[bytes], desc: str
) -> tuple[list[list[str] | None], int]:
    """Beam tokens of encoded images through the whole serving path, batch by batch;
    an image the preprocessing refuses is None."""
    out: list[list[str] | None] = []
    for start in tqdm(range(0, len(encoded), BATCH_SIZE), desc=desc, unit="batch"):
        xs = []
        for data in encoded[start : start + BATCH_SIZE]:
            try:
                xs.append(inputs.from_image(data, recognizer.preprocess))
            except InkTeXError:
                xs.append(None)
        usable = [x for x in xs if x is not None]
        found = iter(recognizer.recognize_inputs(usable, batch_size=BATCH_SIZE) if usable else [])
        out += [next(found).tokens if x is not None else None for x in xs]
    return out, sum(t is None for t in out)


def _rate(fn: Callable[[], object], count: int) -> float:
    began = time.perf_counter()
    fn()
    return round(count / (time.perf_counter() - began), 2)


def measure_latency(package, torch_model, vocab, xs, threads) -> tuple[dict, dict]:
    """Latency stats per thread count, and the 1-thread greedy tokens of each backend."""
    max_len = int(package.settings.get("max_len", 200))
    latency: dict[str, dict] = {}
    tokens: dict[str, list[list[int]]] = {}
    for n in threads:
        torch.set_num_threads(n)
        runners = {
            "onnxruntime": ort_greedy(OnnxRecognizer(package, n, n)),
            "pytorch": torch_greedy(torch_model, vocab, max_len),
        }
        if n > 1:  # the runtime's own choice: a parallel encoder, a one-thread decoder step
            runners["onnxruntime_step_1_thread"] = ort_greedy(OnnxRecognizer(package, n, 1))
        stats, found = latency_pass(runners, xs, f"latency, {n} thread(s)")
        stats["ort_over_torch_p50"] = round(
            stats["onnxruntime"]["p50"] / stats["pytorch"]["p50"], 4
        )
        latency[f"{n}_thread" + ("s" if n > 1 else "")] = stats
        tokens = tokens or found
    return latency, tokens


def measure_throughput(serving: OnnxRecognizer, torch_model, vocab, xs, threads: int) -> dict:
    """Images per second, greedy, batches of BATCH_SIZE, at `threads` threads."""
    torch.set_num_threads(threads)
    max_len = serving.max_len

    def torch_all():
        for batch in size_batches([x.shape for x in xs], BATCH_PIXELS, BATCH_SIZE):
            images, mask = pad_batch([xs[i] for i in batch])
            m = torch.from_numpy(mask)[:, None]
            recognize_batch(torch_model, torch.from_numpy(images)[:, None], vocab, 1, max_len, m)

    return {
        "batch_size": BATCH_SIZE,
        "threads": threads,
        "onnxruntime_greedy": _rate(
            lambda: serving.recognize_inputs(xs, beam=1, batch_size=BATCH_SIZE), len(xs)
        ),
        "pytorch_greedy": _rate(torch_all, len(xs)),
    }


def measure_robustness(
    serving: OnnxRecognizer, xs: list[np.ndarray], encoded: list[bytes], refs
) -> dict:
    """ExpRate of the package's beam on the strokes (`xs`, the clean inputs), on the
    corpus's PNG renderings (`encoded`) and on each degraded copy of those."""
    began = time.perf_counter()
    found = [r.tokens for r in serving.recognize_inputs(xs, batch_size=BATCH_SIZE)]
    rate = round(len(xs) / (time.perf_counter() - began), 2)
    clean = quality(refs, found)
    out = {"clean": {**clean, "refused": 0, "count": len(xs), "images_per_s": rate}}
    found, refused = recognize_encoded(serving, encoded, "beam, PNG")
    q = quality(refs, found)
    out["PNG 256x256"] = {
        **q,
        "refused": refused,
        "relative_exprate": _ratio(q["exprate"], clean["exprate"]),
        "relative_token_accuracy": _ratio(q["token_accuracy"], clean["token_accuracy"]),
    }
    for kind in DEGRADATIONS:
        copies = [degrade(d, kind) for d in encoded]
        found, refused = recognize_encoded(serving, copies, f"beam, {kind}")
        q = quality(refs, found)
        out[kind] = {
            **q,
            "refused": refused,
            "relative_exprate": _ratio(q["exprate"], clean["exprate"]),
            "relative_token_accuracy": _ratio(q["token_accuracy"], clean["token_accuracy"]),
        }
    return out


def run_bench(
    model: BenchModel,
    samples: list[Sample],
    cold_runs: int = 5,
    threads: tuple[int, ...] = (1, 2),
    baseline: Path = DEFAULT_PACKAGE,
) -> dict:
    load_before = os.getloadavg()[0]
    torch_model, vocab, pre, _ = load_checkpoint(model.checkpoint)
    package = ModelPackage.load(model.package)
    began = time.perf_counter()
    xs, kept, strokes = [], [], []  # strokes: read once, for the inputs and the PNGs' check
    for sample in tqdm(samples, desc="preprocess", unit="image"):
        try:
            ink = read_inkml(inkml_of(sample).read_bytes()).strokes
            xs.append(inputs.from_strokes(ink, package.preprocess))
            kept.append(sample)
            strokes.append(ink)
        except InkTeXError:  # left out and counted: every measure uses the same images
            pass
    preprocess_ms = (time.perf_counter() - began) * 1000 / len(samples)
    refused_clean, samples = len(samples) - len(kept), kept
    refs = [list(s.tokens) for s in samples]

    latency, tokens = measure_latency(package, torch_model, vocab, xs, threads)
    against = measure_against_baseline(package, baseline, [inkml_of(s) for s in samples])
    torch.set_num_threads(1)
    components = component_times(OnnxRecognizer(package, 1, 1), torch_model, xs[:30])
    serving = OnnxRecognizer(package, encoder_threads=max(threads), step_threads=1)
    throughput = measure_throughput(serving, torch_model, vocab, xs, max(threads))
    pngs = [s.image_path.read_bytes() for s in samples]
    drawn = [i for i in range(len(samples)) if draws_its_strokes(pngs[i], strokes[i])]
    robustness = measure_robustness(
        serving, [xs[i] for i in drawn], [pngs[i] for i in drawn], [refs[i] for i in drawn]
    )
    throughput["onnxruntime_beam_with_preprocessing"] = robustness["clean"].pop("images_per_s")
    cold = cold_start(model.package, samples[0].image_path, cold_runs)
    agreement = sum(a == b for a, b in zip(tokens["onnxruntime"], tokens["pytorch"], strict=True))
    greedy = {k: quality(refs, [vocab.decode(t) for t in v])["exprate"] for k, v in tokens.items()}
    result = {
        "model": {
            "source": model.source,
            "package": str(model.package),
            "checkpoint": str(model.checkpoint),
            "version": package.version,
            "parameters": count_parameters(torch_model),
            "checkpoint_preprocess_matches": pre == package.preprocess,
            "beam_size": serving.beam_size,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "onnxruntime": ort.__version__,
            "torch": torch.__version__,
            # Other work on the machine slows what runs beside it: the ratios stay comparable.
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        },
        "images": {
            "split": "test2014",
            "count": len(samples),
            "refused_clean": refused_clean,
            "png_of_other_strokes": sorted(
                set(s.name for s in samples) - {samples[i].name for i in drawn}
            ),
        },
        "preprocess_ms_mean": round(preprocess_ms, 3),
        "mean_greedy_tokens": round(statistics.mean(len(t) for t in tokens["pytorch"]), 2),
        "latency_ms": latency,
        "components_1_thread": components,
        "throughput_images_per_s": throughput,
        "cold_start_s": {"median": round(statistics.median(cold), 3), "runs": cold},
        "package_mb": round(
            sum(p.stat().st_size for p in model.package.iterdir() if p.is_file()) / 1e6, 3
        ),
        "exprate": {
            "onnxruntime_beam": robustness["clean"]["exprate"],
            "onnxruntime_greedy": greedy["onnxruntime"],
            "pytorch_greedy": greedy["pytorch"],
        },
        "greedy_agreement": round(agreement / len(samples), 4),
        "robustness": robustness,
        "against_baseline": against,
    }
    result["gates"] = gates(result)
    # The package's own evaluation on the full test sets (the pipeline's evaluate stage)
    metrics = json.loads((model.package / "metrics.json").read_text())
    result["release"] = {"metrics": metrics, "gates": release_gates(metrics)}
    return result


def _ratio(value: float, reference: float) -> float | None:
    return round(value / reference, 4) if reference > 0 else None


def gates(result: dict) -> dict:
    """Each acceptance limit with the measured value; a value that cannot be judged fails."""
    relative = [v["relative_exprate"] for k, v in result["robustness"].items() if k != "clean"]
    values = {
        "ort_over_torch_p50_1_thread": result["latency_ms"]["1_thread"]["ort_over_torch_p50"],
        "cold_start_s": result["cold_start_s"]["median"],
        "worst_degraded_relative_exprate": None if None in relative else min(relative),
        "greedy_agreement": result["greedy_agreement"],
    }
    limits = dict(GATES)
    if result["against_baseline"]:
        limits.update(BASELINE_GATES)
        values["beam_over_baseline_p50_1_thread"] = result["against_baseline"][
            "candidate_over_baseline_p50"
        ]
    out = {}
    for name, (limit, op) in limits.items():
        v = values[name]
        ok = v is not None and (v <= limit if op == "<=" else v >= limit)
        out[name] = {"value": v, "limit": round(limit, 4), "passed": ok}
    return out


# ---- report ------------------------------------------------------------------------------


def to_markdown(r: dict) -> str:
    lat = r["latency_ms"]
    lines = [
        f"Model: {r['model']['source']} (version {r['model']['version']}, "
        f"{r['model']['parameters']:,} parameters); {r['images']['count']} CROHME 2014 test "
        f"images; {r['machine']['cpus']} CPUs; onnxruntime {r['machine']['onnxruntime']}, "
        f"torch {r['machine']['torch']}; load average {r['machine']['load_average_1min']}.",
        "",
        "| latency per image, greedy (ms) | threads | p50 | p95 |",
        "|---|---|---|---|",
    ]
    for key, stats in lat.items():
        threads = key.split("_")[0]
        for name, s in stats.items():
            if isinstance(s, dict):
                lines.append(f"| {name} | {threads} | {s['p50']} | {s['p95']} |")
        lines.append(
            f"| **onnxruntime / pytorch (p50)** | {threads} | {stats['ort_over_torch_p50']} | |"
        )
    c = r["components_1_thread"]
    for name in ("onnxruntime", "pytorch"):
        lines.append(
            f"| {name}: encoder {c[name]['encoder_ms']} ms, one decoder step "
            f"{c[name]['step_us']} us | 1 | | |"
        )
    lines.append(
        "| onnxruntime / pytorch, estimated for 20 tokens | 1 | "
        f"{c['ort_over_torch_estimate_at_20_tokens']} | |"
    )
    t, e = r["throughput_images_per_s"], r["exprate"]
    lines += [
        "",
        "| measure | value |",
        "|---|---|",
        f"| mean greedy tokens per image | {r['mean_greedy_tokens']} |",
        f"| preprocessing per image (ms, mean) | {r['preprocess_ms_mean']} |",
        f"| throughput, onnxruntime greedy, batch {t['batch_size']} (images/s) | "
        f"{t['onnxruntime_greedy']} |",
        f"| throughput, pytorch greedy, batch {t['batch_size']} (images/s) | "
        f"{t['pytorch_greedy']} |",
        f"| throughput, onnxruntime beam {r['model']['beam_size']} with preprocessing (images/s) | "
        f"{t['onnxruntime_beam_with_preprocessing']} |",
        f"| cold start, median of {len(r['cold_start_s']['runs'])} `inktex predict` (s) | "
        f"{r['cold_start_s']['median']} |",
        f"| package size (MB) | {r['package_mb']} |",
        f"| ExpRate onnxruntime beam {r['model']['beam_size']} (%) | {e['onnxruntime_beam']} |",
        f"| ExpRate onnxruntime greedy (%) | {e['onnxruntime_greedy']} |",
        f"| ExpRate pytorch greedy (%) | {e['pytorch_greedy']} |",
        f"| ONNX-vs-PyTorch greedy agreement | {r['greedy_agreement']} |",
        "",
        f"Input sets: the {r['robustness']['clean']['count']} expressions whose PNG draws its "
        f"own strokes; left out: {', '.join(r['images']['png_of_other_strokes']) or 'none'}.",
        "",
        "| input set | ExpRate (%) | relative | token accuracy (%) | relative | refused |",
        "|---|---|---|---|---|---|",
    ]
    for kind, q in r["robustness"].items():
        lines.append(
            f"| {kind} | {q['exprate']} | {q.get('relative_exprate', 1.0)} | "
            f"{q['token_accuracy']} | {q.get('relative_token_accuracy', 1.0)} | {q['refused']} |"
        )
    lines += _baseline_lines(r["against_baseline"])
    lines += ["", "| gate | value | limit | passed |", "|---|---|---|---|"]
    for name, g in {**r["gates"], **r["release"]["gates"]}.items():
        lines.append(f"| {name} | {g['value']} | {g['limit']} | {'yes' if g['passed'] else 'NO'} |")
    lines += ["", "The package's `metrics.json` (full test sets, beam):", ""]
    return "\n".join(lines) + "\n" + field_table(r["release"]["metrics"], r["model"]["version"])


def _baseline_lines(against: dict | None) -> list[str]:
    if not against:
        return []
    pixels, stats = against["mean_input_pixels"], against["latency_ms"]
    lines = [
        "",
        f"| beam {against['beam']}, 1 thread, against {against['baseline']['package']} "
        f"({against['baseline']['version']}) | p50 (ms) | p95 (ms) | mean input pixels |",
        "|---|---|---|---|",
    ]
    for name in ("candidate", "baseline"):
        lines.append(f"| {name} | {stats[name]['p50']} | {stats[name]['p95']} | {pixels[name]} |")
    ratio = against["candidate_over_baseline_p50"]
    lines.append(f"| **candidate / baseline (p50)** | {ratio} | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--package", type=Path, default=DEFAULT_PACKAGE)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument(
        "--baseline",
        type=Path,
        default=DEFAULT_PACKAGE,
        help="package to time the beam against (the bundled release); skipped if it is this one",
    )
    parser.add_argument("--images", type=int, default=DEFAULT_IMAGES, help="test images (100)")
    parser.add_argument("--full", action="store_true", help="all CROHME 2014 test images")
    parser.add_argument("--gates", action="store_true", help="exit 1 if a limit is missed")
    parser.add_argument("--cold-runs", type=int, default=5, help="fresh processes timed (5)")
    parser.add_argument("--json", type=Path, default=Path("runs/bench/bench.json"))
    parser.add_argument("--markdown", type=Path, default=Path("runs/bench/bench.md"))
    parser.add_argument(
        "--references",
        action="store_true",
        help="only the beam against the baseline, both made to write the references "
        "(for weights not trained yet, which never end)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="inktex-bench-") as tmp:
        model = resolve_model(args.package, args.checkpoint, Path(tmp))
        samples = load_samples(args.images, args.full)
        if args.references:
            package = ModelPackage.load(model.package)
            found = beam_writing_references(package, args.baseline, samples, BASELINE_BEAM)
            print(json.dumps(found))
            return 0
        result = run_bench(model, samples, cold_runs=args.cold_runs, baseline=args.baseline)
    for path, text in (
        (args.json, json.dumps(result, indent=2)),
        (args.markdown, to_markdown(result)),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + ("\n" if path == args.json else ""))
    print(to_markdown(result))
    every_gate = {**result["gates"], **result["release"]["gates"]}
    failed = [name for name, g in every_gate.items() if not g["passed"]]
    if args.gates and failed:
        print(f"bench: gates missed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
