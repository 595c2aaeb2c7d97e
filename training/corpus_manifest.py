"""The corpus as a DVC dependency: a manifest of the SHA-256 of every label file, InkML file
(the strokes training reads) and image (the PNG test sets the benchmark degrades).

The corpus lives outside the repository (INKTEX_DATA), so DVC cannot hash it itself; this
stage always runs, and the prepare stage re-runs only when the manifest's content changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from inktex.data import SPLITS, crohme_root


def corpus_manifest(root: Path) -> dict[str, str]:
    files = [root / f"{split}.tsv" for split in SPLITS]
    files += sorted(p for split in SPLITS for p in (root / "inkml" / split).rglob("*.inkml"))
    files += sorted(p for split in SPLITS for p in (root / split).rglob("*.png"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("data/corpus.json"))
    args = parser.parse_args(argv)
    manifest = corpus_manifest(crohme_root())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(manifest, indent=0, sort_keys=True))
    print(f"{len(manifest)} corpus files hashed into {args.out}")


if __name__ == "__main__":
    main()
