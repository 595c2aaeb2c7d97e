"""Model packages on disk: what a package holds, and the integrity check on loading.

A package is a folder (or the same files under an S3 prefix) that describes itself: the
two ONNX graphs, the vocabulary, the preprocessing settings, the model's settings, its
metrics and card, and `manifest.json` with the version id and every file's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from inktex.errors import ModelPackageError
from inktex.preprocess import PreprocessConfig
from inktex.vocab import Vocabulary

ENCODER_FILE = "encoder.onnx"
STEP_FILE = "decoder_step.onnx"
REQUIRED = (ENCODER_FILE, STEP_FILE, "vocab.json", "preprocess.json", "model.json")
MANIFEST = "manifest.json"
TEMPERATURE = "confidence_temperature"  # model.json: reported probabilities are p ** (1 / T)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(folder: Path, version: str) -> None:
    files = {
        p.name: sha256_file(p)
        for p in sorted(Path(folder).iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    (Path(folder) / MANIFEST).write_text(json.dumps({"version": version, "files": files}, indent=2))


@dataclass(frozen=True)
class ModelPackage:
    path: Path
    version: str
    vocab: Vocabulary
    preprocess: PreprocessConfig
    settings: dict  # model.json: architecture, search defaults
    metrics: dict
    check_graph_version: bool = True  # a quantised copy keeps its float parent's graph metadata

    @classmethod
    def load(cls, path: Path, check_graph_version: bool = True) -> ModelPackage:
        """Read and verify a package; ModelPackageError says what is missing or altered."""
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise ModelPackageError(f"{path} is not a model package: no {MANIFEST}")
        try:
            manifest = json.loads(manifest_path.read_text())
            expected = manifest["files"]
            version = manifest["version"]
        except (ValueError, KeyError) as exc:
            raise ModelPackageError(f"{manifest_path} is unreadable: {exc}") from exc
        for name in REQUIRED:
            if name not in expected or not (path / name).is_file():
                raise ModelPackageError(f"model package {path} lacks {name}")
        for name, digest in expected.items():
            if sha256_file(path / name) != digest:
                raise ModelPackageError(f"{path / name} does not match the package's manifest")
        settings = json.loads((path / "model.json").read_text())
        if not str(version).startswith(settings.get("version", "")):
            raise ModelPackageError(f"{path}: manifest version {version} is not model.json's")
        metrics_path = path / "metrics.json"
        return cls(
            path=path,
            version=version,
            vocab=Vocabulary.load(path / "vocab.json"),
            preprocess=PreprocessConfig.from_dict(
                json.loads((path / "preprocess.json").read_text())
            ),
            settings=settings,
            metrics=json.loads(metrics_path.read_text()) if metrics_path.is_file() else {},
            check_graph_version=check_graph_version and not str(version).endswith("-int8"),
        )
