"""The model bucket's layout, written once.

- `models/<version>/`: a model package's files (manifest.json last: a package is listed only
  once it is complete);
- `checkpoints/<version>/model.pt` and `VERSION`: the package's training checkpoint, which
  retraining fine-tunes from (the job's `base` channel), and the version it belongs to, so a
  fine-tune from it names its base;
- `training/<job>/result.json`: a fine-tuning job's result (the candidate's version and
  lineage), which the promotion function reads; `training/<job>/decision.json`: its decision.

`ModelRegistry.register` (registry.py) is how a package and its checkpoint get in. This
module imports nothing, so the functions that never load a model (the feedback trigger)
can name these keys too.
"""

from __future__ import annotations

MODELS_PREFIX = "models/"
CHECKPOINTS_PREFIX = "checkpoints/"
CHECKPOINT_FILE = "model.pt"
CHECKPOINT_VERSION_FILE = "VERSION"


def package_key(version: str, name: str) -> str:
    """A package file's key; `name` "" gives the package's prefix."""
    return f"{MODELS_PREFIX}{version}/{name}"


def checkpoint_key(version: str, name: str = CHECKPOINT_FILE) -> str:
    """A checkpoint file's key; `name` "" gives the prefix (the job's `base` channel)."""
    return f"{CHECKPOINTS_PREFIX}{version}/{name}"


def training_result_key(job: str) -> str:
    return f"training/{job}/result.json"


def training_decision_key(job: str) -> str:
    return f"training/{job}/decision.json"
