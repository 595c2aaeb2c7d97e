"""The `inktex` console command.

Each subcommand is one `add_<name>(subparsers)` function that builds its parser and sets
`handler` to a function `(args) -> exit code`; `COMMANDS` lists the core's own. The packages
beside the core add theirs through the `inktex.commands` entry point (inktex/plugins.py):
the model registry's `models` (functions/common/registry_cli.py) and the local stack's `up`,
`down`, ... (local_stack/cli.py); the core imports neither. Errors the user can fix (every
InkTeXError, and unreadable or unwritable paths) end with exit code 2 and one line on
stderr, no traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from inktex import datashow, datastats, plugins
from inktex import evaluate as ev
from inktex.data import REPO_ROOT, crohme_root
from inktex.errors import InkTeXError
from inktex.preprocess import PreprocessConfig

USER_ERROR = 2


def positive_int(text: str) -> int:
    """An argparse type for counts and sizes: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {text!r}")
    return value


def add_evaluate(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score predictions or a model against a label TSV",
        description="Score against a label TSV (<name>\\t<latex>). Metrics go to stdout and, "
        "with --metrics, to a flat JSON; --report writes worst cases, token confusions and "
        "ExpRate by length as JSON, or as Markdown for a .md path.",
    )
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", type=Path, metavar="FILE.tsv", help="the label TSV")
    labels.add_argument(
        "--split",
        metavar="NAME",
        help="a CROHME test set by name from INKTEX_DATA: test2013 or test2014 (rendered from "
        "their InkML, the field's protocol), or test2013-png / test2014-png (the fixed "
        "256x256 renderings)",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--predictions", type=Path, metavar="FILE.tsv", help="a predictions TSV (<name>\\t<latex>)"
    )
    source.add_argument(
        "--model", type=Path, metavar="PATH", help="a model package to run over --images"
    )
    p.add_argument(
        "--images",
        type=Path,
        metavar="DIR",
        help="folder of .inkml files or images for --model, named as in the labels (default: "
        "with --split, the split's InkML or PNG folder; with --labels, beside the labels, "
        "named after them: test2014.tsv -> test2014/)",
    )
    p.add_argument("--metrics", type=Path, metavar="FILE.json", help="write the metrics JSON here")
    p.add_argument(
        "--report",
        type=Path,
        metavar="FILE.json|FILE.md",
        help="write the error report here (.json or .md)",
    )
    p.add_argument(
        "--save-predictions",
        type=Path,
        metavar="FILE.tsv",
        help="with --model, write its predictions TSV",
    )
    p.add_argument(
        "--worst", type=positive_int, metavar="N", default=20, help="worst cases in the report (20)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        default=16,
        help="images per model call (16)",
    )
    p.add_argument(
        "--limit", type=int, metavar="N", default=0, help="score the first N labels only (0: all)"
    )
    p.set_defaults(handler=run_evaluate)


def split_paths(split: str) -> tuple[Path, Path]:
    """Labels and inputs of a CROHME test set by name: its InkML, or `-png` its PNG images."""
    name, png = split.removesuffix("-png"), split.endswith("-png")
    if name not in ("test2013", "test2014"):
        raise InkTeXError(
            f"unknown split {split!r}: use test2013, test2014, test2013-png or test2014-png"
        )
    root = crohme_root()
    return root / f"{name}.tsv", root / name if png else root / "inkml" / name


def run_evaluate(args: argparse.Namespace) -> int:
    default_images = None
    if args.split:
        args.labels, default_images = split_paths(args.split)
    references, problems = ev.load_references(args.labels)
    references = references[: args.limit or None]
    if args.model is not None:
        images = args.images or default_images or args.labels.with_suffix("")
        if not images.is_dir():
            raise InkTeXError(f"no images folder at {images}: pass --images DIR")
        recognizer = _load_recognizer(args.model)
        names = [name for name, _ in references]
        predictions, found = ev.recognize_all(recognizer, names, images, args.batch_size)
        if args.save_predictions:
            ev.write_predictions(args.save_predictions, predictions)
    else:
        predictions, found = ev.load_predictions(args.predictions)
    evaluation = ev.evaluate(references, predictions, [*problems, *found])
    metrics = evaluation.scores.to_dict()
    width = max(map(len, metrics))
    for key, value in metrics.items():
        print(f"{key:<{width}}  {value}")
    if evaluation.problems:
        kinds = Counter(p.kind for p in evaluation.problems)
        listed = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
        print(f"problems: {listed}" + ("" if args.report else " (see --report)"))
    if args.metrics:
        ev.write_metrics(args.metrics, evaluation.scores)
    if args.report:
        ev.write_report(args.report, ev.error_report(evaluation, worst=args.worst))
    return 0


def _load_recognizer(path: Path) -> ev.Recognizer:
    # Imported here so that scoring a predictions file needs no model runtime.
    try:
        from inktex.runtime import load_recognizer
    except ModuleNotFoundError as exc:
        if exc.name == "inktex.runtime":
            raise InkTeXError("this build cannot run models yet: use --predictions") from exc
        raise InkTeXError(
            f"running a model needs {exc.name}, which is not installed: pip install 'inktex[serve]'"
        ) from exc
    return load_recognizer(path)


def add_data(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("data", help="inspect datasets")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    show = actions.add_parser(
        "show",
        help="contact sheet, label-length histogram and statistics of a split",
        description="Writes OUT (a contact sheet), OUT's stem + .lengths.png (a histogram) and "
        "+ .stats.json (statistics), and prints a summary.",
    )
    show.add_argument("--split", default="train", help="the split: <root>/<split>.tsv (train)")
    show.add_argument(
        "--root", type=Path, metavar="DIR", help="dataset folder (default: the CROHME corpus)"
    )
    show.add_argument("--n", type=positive_int, default=24, help="samples on the sheet (24)")
    show.add_argument(
        "--out",
        type=Path,
        metavar="FILE.png",
        default=Path("contact.png"),
        help="contact sheet PNG",
    )
    show.add_argument("--seed", type=int, default=0, help="which samples are drawn (0)")
    show.add_argument(
        "--augment",
        action="store_true",
        help="instead: each drawn expression's strokes as the model sees them, then augmented "
        "five ways (training's stroke augmentation, from <root>/inkml/<split>/)",
    )
    show.set_defaults(handler=run_data_show)

    stats = actions.add_parser(
        "stats",
        help="per split: InkML read, skipped and repaired (with reasons), input sizes at the "
        "writer's scale, how many shrink, and the symbol height per subset",
    )
    stats.add_argument(
        "--split",
        action="append",
        help="a split (repeatable; default: train, test2013, test2014)",
    )
    stats.add_argument(
        "--root", type=Path, metavar="DIR", help="dataset folder (default: the CROHME corpus)"
    )
    stats.add_argument(
        "--params",
        type=Path,
        default=REPO_ROOT / "params.yaml",
        help="the pipeline's params.yaml: its prepare section sets the scale",
    )
    stats.add_argument("--json", type=Path, metavar="FILE.json", help="also write the stats here")
    stats.set_defaults(handler=run_data_stats)


def run_data_show(args: argparse.Namespace) -> int:
    outputs = datashow.default_outputs(args.out)
    root = args.root or crohme_root()
    if args.augment:
        # numpy only, but training's augmentation: the training package provides it
        augment_sheet = plugins.load(plugins.TOOLS, "augment-sheet", extra="train")
        cfg = pipeline_scale(REPO_ROOT / "params.yaml")
        rate = augment_sheet(root, args.split, args.out, cfg, n=args.n, seed=args.seed)
        print(f"wrote {args.out}; rendered augmented inputs at {rate:.0f} per second on one core")
        return 0
    stats = datashow.show(root, args.split, outputs, n=args.n, seed=args.seed)
    print(datashow.summary_text(stats))
    print(f"wrote {outputs.contact_sheet}, {outputs.histogram}, {outputs.stats}")
    return 0


def pipeline_scale(params: Path) -> PreprocessConfig:
    """The writer's scale the pipeline prepares at: params.yaml's prepare section."""
    try:
        import yaml
    except ImportError as exc:  # the pipeline's tools come with the training extra
        raise InkTeXError("reading params.yaml needs pyyaml: pip install 'inktex[train]'") from exc

    cfg = PreprocessConfig.from_dict(yaml.safe_load(params.read_text())["prepare"])
    if not cfg.at_scale:
        raise InkTeXError(f"{params}: prepare.symbol_height is not set")
    return cfg


def run_data_stats(args: argparse.Namespace) -> int:
    cfg = pipeline_scale(args.params)
    splits = args.split or ["train", "test2013", "test2014"]
    stats = datastats.corpus_stats(args.root or crohme_root(), splits, cfg)
    print(datastats.summary_text(stats))
    if args.json:
        args.json.write_text(json.dumps(stats, indent=2) + "\n")
    return 0


def add_predict(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="recognise images or InkML files: one LaTeX line per file",
        description="Recognise each FILE (PNG, JPEG, WebP, BMP, or .inkml strokes) with a model "
        "package (default: the bundled release model, or $INKTEX_MODEL).",
    )
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.add_argument("--model", type=Path, metavar="DIR", help="a model package folder")
    p.add_argument("--json", action="store_true", help="one JSON object per file")
    p.add_argument(
        "--beam", type=positive_int, help="beam width (default: the package's; 1 = greedy)"
    )
    p.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime threads (1)")
    p.set_defaults(handler=run_predict)


def run_predict(args: argparse.Namespace) -> int:
    from inktex.runtime import OnnxRecognizer, default_model_path

    recognizer = OnnxRecognizer.load(
        args.model or default_model_path(), encoder_threads=args.threads
    )
    failed = 0
    for path in args.files:
        try:
            result = recognizer.recognize_file(path, beam=args.beam)
        except (InkTeXError, OSError) as exc:
            print(f"inktex: {path}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({"file": str(path), **result.to_dict()}))
        else:
            print(result.latex)
    return USER_ERROR if failed else 0


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_predict,
    add_evaluate,
    add_data,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inktex", description="Handwritten mathematics to LaTeX.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every skipped record")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in [*COMMANDS, *plugins.command_adders()]:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Skips are reported in outputs; per-record warnings only on request.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, format="%(message)s")
    try:
        return args.handler(args)
    except (InkTeXError, OSError) as exc:
        print(f"inktex: error: {exc}".replace("\n", " "), file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
