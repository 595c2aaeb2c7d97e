"""`inktex seed`: the evaluation and replay sets the feedback loop needs, in the data bucket;
and `register_model`, the model that `inktex up` puts in the model bucket.

- `datasets/eval/` (labels.tsv + images/<name>.png): what promotion scores candidate and
  production on. From a CROHME corpus (`<root>/test2013.tsv`, `<root>/test2013/`): all of
  CROHME 2013, which no model trains on.
- `datasets/replay/` (same layout): the sample of the original training data a fine-tune
  mixes in so the model does not forget. From a CROHME corpus: `replay` random images of
  `train` (a fixed seed, so a re-seed picks the same ones).

The source is `--data DIR` (a CROHME root, or any folder of `<name>.png` with a
`labels.tsv`), else the corpus at $INKTEX_DATA/crohme when present, else the committed
fixtures (tests/fixtures/inkml: five CROHME images, used for both sets; enough for tests,
not a measurement). Seeding replaces both sets; `datasets/seed.json` says where they came from.
"""

from __future__ import annotations

import csv
import io
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from inktex.errors import InkTeXError

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "inkml"
EVAL, REPLAY = "datasets/eval/", "datasets/replay/"


def register_model(registry, path: Path, checkpoint: Path | None = None) -> str:
    """Register the package at `path` and its checkpoint through the registry (which owns
    the bucket's layout: functions/common/model_bucket.py), and point production at it when
    production points at nothing yet; a model promoted since is left in place."""
    version = registry.register(path, checkpoint)
    if not registry.alias("production").version:
        registry.promote(version, reason="the bundled model, registered by inktex up", by="inktex")
    return version


class SeedError(InkTeXError):
    """The seed source is not a dataset this command reads; the message says what is."""


def default_source() -> Path:
    from inktex.data import crohme_root

    root = crohme_root()
    return root if (root / "test2013.tsv").is_file() else FIXTURES


def _rows(tsv: Path, folder: Path) -> list[tuple[str, str, Path]]:
    from inktex.data import read_labels

    rows = []
    for name, latex in read_labels(tsv):
        image = folder / f"{name}.png"
        if image.is_file():
            rows.append((name, latex, image))
    return rows


def plan(source: Path, replay: int = 512, seed: int = 0) -> dict[str, list]:
    """{prefix: [(name, latex, image path)]} for the eval and replay sets of `source`."""
    source = Path(source)
    if (source / "test2013.tsv").is_file():  # a CROHME root
        eval_rows = _rows(source / "test2013.tsv", source / "test2013")
        train = _rows(source / "train.tsv", source / "train")
        random.Random(seed).shuffle(train)
        replay_rows = sorted(train[:replay])
    elif (source / "labels.tsv").is_file():  # a flat folder: both sets
        eval_rows = replay_rows = _rows(source / "labels.tsv", source)
    else:
        raise SeedError(
            f"{source} is neither a CROHME root (test2013.tsv, train.tsv and their folders) "
            "nor a folder of <name>.png with a labels.tsv"
        )
    if not eval_rows:
        raise SeedError(f"{source} holds no labelled images to evaluate on")
    return {EVAL: eval_rows, REPLAY: replay_rows}


def _clear(s3, bucket: str, prefix: str) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def seed(s3, bucket: str, source: Path | None = None, replay: int = 512) -> dict:
    """Replace the data bucket's eval and replay sets with those of `source`."""
    source = Path(source) if source is not None else default_source()
    sets = plan(source, replay)
    summary = {"source": str(source), "sets": {}}
    with ThreadPoolExecutor(8) as pool:
        for prefix, rows in sets.items():
            _clear(s3, bucket, prefix)
            uploads = [
                pool.submit(
                    s3.upload_file,
                    str(image),
                    bucket,
                    f"{prefix}images/{name}.png",
                    ExtraArgs={"ContentType": "image/png"},
                )
                for name, _, image in rows
            ]
            for future in uploads:
                future.result()
            out = io.StringIO()
            writer = csv.writer(out, delimiter="\t", lineterminator="\n")
            writer.writerows((name, latex) for name, latex, _ in rows)
            s3.put_object(  # last: a set is complete once its labels are there
                Bucket=bucket,
                Key=f"{prefix}labels.tsv",
                Body=out.getvalue().encode("utf-8"),
                ContentType="text/tab-separated-values",
            )
            summary["sets"][prefix] = len(rows)
    s3.put_object(
        Bucket=bucket,
        Key="datasets/seed.json",
        Body=json.dumps(summary, indent=2).encode(),
        ContentType="application/json",
    )
    return summary
