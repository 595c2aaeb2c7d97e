"""Training presets and `--set`: overrides are checked and take the field's type."""

import importlib.util

import pytest
from testkit import require

from training.presets import PRESETS, resolve


def apply_settings(params: dict, settings: list[str]) -> dict:
    require(importlib.util.find_spec("torch") is not None, "needs the training extra (torch)")
    from training.train import apply_settings

    return apply_settings(params, settings)


def test_an_override_replaces_only_its_field():
    config = resolve("cpu", {"lr": 5e-4})
    assert config.lr == 5e-4
    assert config.batch_size == PRESETS["cpu"].batch_size


def test_numbers_written_as_yaml_strings_become_numbers():
    # YAML 1.1 (PyYAML) reads `8e-4` as the string "8e-4"; `--set train.lr=8e-4` gives the same.
    config = resolve("cpu", {"lr": "8e-4", "max_minutes": 120, "batch_size": "32"})
    assert config.lr == pytest.approx(8e-4)
    assert config.max_minutes == 120.0 and isinstance(config.max_minutes, float)
    assert config.batch_size == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"learning_rate": 1e-3}, "unknown training settings"),
        ({"lr": "fast"}, "train.lr must be a float"),
        ({"augment": "no"}, "train.augment must be true or false"),
    ],
)
def test_bad_overrides_are_refused_with_a_reason(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve("cpu", overrides)


def test_an_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        resolve("tpu")


def test_settings_go_to_the_overrides_and_can_drop_the_files_own():
    params = {"train": {"preset": "cpu", "init": "a.pt", "overrides": {"lr": 8e-4, "epochs": 9}}}
    applied = apply_settings(
        params, ["train.overrides={}", "train.preset=gpu", "train.max_minutes=7", "train.init="]
    )
    assert applied["train"] == {"preset": "gpu", "init": None, "overrides": {"max_minutes": 7}}
    applied = apply_settings({"train": {"overrides": None}}, ["train.lr=8e-4"])
    assert resolve("cpu", applied["train"]["overrides"]).lr == pytest.approx(8e-4)


def test_a_setting_without_a_section_is_refused():
    with pytest.raises(ValueError, match="expected section.key=value"):
        apply_settings({}, ["lr=0.1"])
