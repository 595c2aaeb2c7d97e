"""Training on real CROHME images (the committed fixtures): overfitting, resuming, two
processes under gloo, and an export that proves itself against PyTorch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

torch = (
    pytest.importorskip("torch", reason="needs the training extra")
    if not os.environ.get("CI")
    else __import__("torch")
)

from training.prepare import TINY_INPUT, prepare, tiny_corpus  # noqa: E402
from training.train import train  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """The five fixture expressions' strokes as both the training and the validation split."""
    corpus = tiny_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("prepared")
    report = prepare(corpus, out, TINY_INPUT, splits=("train", "test2013"))
    assert report["train"]["read"] == report["train"]["packed"] == 5
    assert report["train"]["skipped"] == {}
    return out


def params(arch: str, decoder: str = "gru", norm: str = "batch", **overrides) -> dict:
    return {
        "model": {"arch": arch, "width": "tiny", "decoder": decoder, "norm": norm},
        "train": {"preset": "tiny", "seed": 0, "overrides": overrides},
    }


@pytest.mark.overfit
@pytest.mark.timeout(3600)  # a ceiling for a hang: 300 epochs of five images, on a busy core
@pytest.mark.parametrize(
    ("arch", "decoder", "both_ways"),
    [("dense", "gru", False), ("seed", "gru", False), ("dense", "transformer", True)],
)
def test_each_architecture_overfits_a_handful_of_real_images(
    arch, decoder, both_ways, tiny_data, tmp_path
):
    report = train(
        params(
            arch,
            decoder,
            bidirectional=both_ways,
            epochs=300,
            lr=0.01,
            weight_decay=0.0,
            patience=1000,
            train_limit=0,
            val_limit=0,
            stop_at_exprate=100.0,
        ),
        tiny_data,
        tmp_path,
        resume=False,
    )
    assert report["best_val_exprate"] == 100.0, report["history"]
    assert (tmp_path / "best.pt").is_file()


def test_training_resumes_where_it_stopped(tiny_data, tmp_path):
    first = train(params("dense", epochs=2), tiny_data, tmp_path, resume=False)
    assert first["epochs"] == 2
    second = train(params("dense", epochs=4), tiny_data, tmp_path, resume=True)
    assert second["epochs"] == 4
    assert second["steps"] == 2 * first["steps"]


def test_the_mean_of_the_last_snapshots_is_validated_at_the_end(tiny_data, tmp_path):
    stale = tmp_path / "snapshots" / "step_9999999.pt"  # left by an earlier run in this folder
    stale.parent.mkdir()
    stale.write_bytes(b"not a checkpoint")
    report = train(params("dense", epochs=3, average_last=2), tiny_data, tmp_path, resume=False)
    assert report["averaged"]["snapshots"] == 2 and not stale.exists()
    assert len(list((tmp_path / "snapshots").glob("step_*.pt"))) == 2
    best = torch.load(tmp_path / "best.pt", weights_only=False)
    kept = best["metrics"].get("snapshots") == 2
    assert kept == report["averaged"]["kept"]


def test_two_processes_train_with_gloo(tiny_data, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params("dense", epochs=2)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "training.train",
            "--params",
            str(tmp_path / "params.yaml"),
            "--data",
            str(tiny_data),
            "--out",
            str(tmp_path / "run"),
            "--no-resume",
        ],
        check=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    report = json.loads((tmp_path / "run" / "train_report.json").read_text())
    assert report["world_size"] == 2
    assert report["epochs"] == 2


def test_export_matches_pytorch_and_serves_the_same_tokens(tiny_data, tmp_path):
    from inktex.runtime import OnnxRecognizer
    from model_export.export import export_package, load_samples
    from training.checkpoint import load_checkpoint
    from training.decoding import recognize_arrays

    checkpoint = ROOT / "tests" / "fixtures" / "knows_fixtures.pt"  # reads the fixtures
    samples = load_samples(tiny_data, 5)  # of different sizes: padded together, with masks
    assert len({x.shape for x in samples}) > 1
    package = export_package(checkpoint, tmp_path / "package", samples)
    model, vocab, _, payload = load_checkpoint(checkpoint)
    assert "norm" not in payload["model_config"] and model.cfg.norm == "batch"  # an older one
    torch_tokens = recognize_arrays(model, samples, vocab, torch.device("cpu"))
    onnx = OnnxRecognizer(package)
    assert [r.tokens for r in onnx.recognize_inputs(samples, beam=1)] == torch_tokens
    manifest = json.loads((tmp_path / "package" / "manifest.json").read_text())
    assert manifest["version"] == package.version == onnx.version
    assert "trained from scratch" in (tmp_path / "package" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize(
    ("arch", "norm"), [("dense", "group"), ("seed", "group"), ("seed", "batch")]
)
def test_a_model_from_scratch_exports_as_pytorch_reads(arch, norm, tiny_data, tmp_path):
    from inktex.runtime import OnnxRecognizer
    from model_export.export import export_package, load_samples
    from training.checkpoint import load_checkpoint
    from training.decoding import recognize_arrays

    report = train(
        params(arch, norm=norm, epochs=1000, max_steps=3), tiny_data, tmp_path, resume=False
    )
    assert report["steps"] == 3
    model, vocab, _, payload = load_checkpoint(tmp_path / "best.pt")
    assert payload["model_config"]["norm"] == norm
    statistics = any(name.endswith("running_mean") for name in payload["state_dict"])
    assert statistics == (norm == "batch")
    samples = load_samples(tiny_data, 5)  # of different sizes: padded together, with masks
    assert len({x.shape for x in samples}) > 1
    package = export_package(tmp_path / "best.pt", tmp_path / "package", samples)  # verifies
    onnx = OnnxRecognizer(package)
    torch_tokens = recognize_arrays(model, samples, vocab, torch.device("cpu"))
    assert [r.tokens for r in onnx.recognize_inputs(samples, beam=1)] == torch_tokens
    card = (tmp_path / "package" / "MODEL_CARD.md").read_text()
    assert '"greedy_identical": 5' in card


def test_bf16_autocast_trains_where_the_processor_has_it(tiny_data, tmp_path, caplog):
    from training.train import bf16_pays

    caplog.set_level("INFO", logger="inktex.train")
    report = train(params("dense", epochs=2, amp=True), tiny_data, tmp_path, resume=False)
    assert report["steps"] == 2 and 0 <= report["best_val_exprate"] <= 100
    assert ("bf16 autocast" in caplog.text) == bf16_pays(torch.device("cpu"))


def test_a_run_started_from_weights_records_them(tiny_data, tmp_path):
    train(params("dense", epochs=1), tiny_data, tmp_path / "first", resume=False)
    init = str(tmp_path / "first" / "best.pt")
    run = params("dense", epochs=1)
    run["train"]["init"] = init
    train(run, tiny_data, tmp_path / "second", resume=False)
    assert torch.load(tmp_path / "second" / "best.pt", weights_only=False)["init"] == init


def test_a_new_decoder_learns_both_ways_on_a_trained_encoder(tiny_data, tmp_path):
    train(params("dense", epochs=1), tiny_data, tmp_path / "gru", resume=False)
    encoder = torch.load(tmp_path / "gru" / "best.pt", weights_only=False)["state_dict"]
    run = params("dense", "transformer", epochs=2, freeze_encoder=True, bidirectional=True)
    run["train"]["init"] = str(tmp_path / "gru" / "best.pt")
    report = train(run, tiny_data, tmp_path / "transformer", resume=False)
    after = torch.load(tmp_path / "transformer" / "last.pt", weights_only=False)
    assert after["model_config"]["decoder"] == "transformer" and report["steps"] == 2
    weights = after["state_dict"]
    assert all(torch.equal(v, weights[k]) for k, v in encoder.items() if k.startswith("encoder."))
    assert any(k.startswith("decoder.layers.") for k in weights)


def test_the_encoder_trains_at_its_own_share_of_the_rate(tiny_data, tmp_path):
    train(params("dense", epochs=1), tiny_data, tmp_path / "start", resume=False)
    start = torch.load(tmp_path / "start" / "best.pt", weights_only=False)["state_dict"]
    moved = {}
    for scale in (0.0, 0.1, 1.0):
        run = params("dense", epochs=1, encoder_lr_scale=scale, freeze_batchnorm=True)
        run["train"]["init"] = str(tmp_path / "start" / "best.pt")
        train(run, tiny_data, tmp_path / str(scale), resume=False)
        after = torch.load(tmp_path / str(scale) / "last.pt", weights_only=False)["state_dict"]
        moved[scale] = {
            part: max(
                (after[k] - v).abs().max().item()
                for k, v in start.items()
                if k.startswith(part) and v.is_floating_point()
            )
            for part in ("encoder.", "decoder.")
        }
    assert moved[0.0]["encoder."] == 0.0 and moved[0.0]["decoder."] > 0.0
    assert 0.0 < moved[0.1]["encoder."] < moved[1.0]["encoder."]


def test_weights_of_another_encoder_are_refused(tiny_data, tmp_path):
    train(params("seed", epochs=1), tiny_data, tmp_path / "seed", resume=False)
    run = params("dense", "transformer", epochs=1)
    run["train"]["init"] = str(tmp_path / "seed" / "best.pt")
    with pytest.raises(ValueError, match="another architecture"):
        train(run, tiny_data, tmp_path / "dense", resume=False)


def test_weights_normalised_another_way_are_refused(tiny_data, tmp_path):
    from training.model import ModelConfig
    from training.train import same_encoder

    train(params("dense", epochs=1), tiny_data, tmp_path / "batch", resume=False)
    batch_cfg = torch.load(tmp_path / "batch" / "best.pt", weights_only=False)["model_config"]
    run = params("dense", "transformer", norm="group", epochs=1)
    run["train"]["init"] = str(tmp_path / "batch" / "best.pt")
    with pytest.raises(ValueError, match="normalises with 'batch' norm and this run with 'group'"):
        train(run, tiny_data, tmp_path / "group", resume=False)
    batch = ModelConfig.from_dict(batch_cfg)
    assert not same_encoder(batch, ModelConfig.from_dict({**batch_cfg, "norm": "group"}))
    assert same_encoder(batch, ModelConfig.from_dict({**batch_cfg, "decoder": "transformer"}))


def test_frozen_batchnorm_keeps_its_statistics_while_the_weights_train(tiny_data, tmp_path):
    train(params("dense", epochs=1), tiny_data, tmp_path / "first", resume=False)
    before = torch.load(tmp_path / "first" / "last.pt", weights_only=False)["state_dict"]
    run = params("dense", epochs=2, freeze_batchnorm=True)
    run["train"]["init"] = str(tmp_path / "first" / "last.pt")
    train(run, tiny_data, tmp_path / "second", resume=False)
    after = torch.load(tmp_path / "second" / "last.pt", weights_only=False)["state_dict"]
    statistics = [name for name in before if name.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(before[n], after[n]) for n in statistics)
    assert not torch.equal(before["encoder.body.0.weight"], after["encoder.body.0.weight"])


def test_evaluate_runs_a_pytorch_checkpoint(tiny_data, fixtures, tmp_path, capsys):
    from inktex.cli import main

    train(params("dense", epochs=2), tiny_data, tmp_path, resume=False)
    metrics = tmp_path / "metrics.json"
    code = main(
        [
            "evaluate",
            "--labels",
            str(fixtures / "inkml" / "labels.tsv"),
            "--images",
            str(fixtures / "inkml"),
            "--model",
            str(tmp_path / "best.pt"),
            "--metrics",
            str(metrics),
        ]
    )
    assert code == 0
    assert json.loads(metrics.read_text())["count"] == 5
