"""ModelCache: load once, reload when the alias moves, never serve a failing package."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from functions.common.models import ModelCache, ModelUnavailable
from inktex.errors import ModelPackageError


@dataclass
class Fake:
    version: str


class World:
    def __init__(self):
        self.alias, self.broken, self.fetched, self.now = "v1", set(), [], 0.0

    def fetch(self, version: str) -> Path:
        self.fetched.append(version)
        return Path("cache") / version  # never read: load() fakes the package

    def load(self, path: Path) -> Fake:
        if path.name in self.broken:
            raise ModelPackageError(f"{path.name}: encoder.onnx does not match the manifest")
        return Fake(path.name)


@pytest.fixture
def world() -> World:
    return World()


def cache(world, failures=None) -> ModelCache:
    return ModelCache(
        resolve=lambda: world.alias,
        fetch=world.fetch,
        load=world.load,
        on_failure=(lambda v, r: failures.append(v)) if failures is not None else None,
        retry_after_s=60,
        clock=lambda: world.now,
    )


def test_loads_once_and_reloads_when_the_alias_moves(world):
    models = cache(world)
    assert models.get().version == "v1" and models.get().version == "v1"
    world.alias = "v2"
    assert models.get().version == "v2" and world.fetched == ["v1", "v2"]


def test_warm_keeps_its_model_cold_answers_unavailable(world):
    failures = []
    warm = cache(world, failures)
    warm.get()
    world.alias, world.broken = "v2", {"v2"}
    assert warm.get().version == "v1" and failures == ["v2"]
    assert warm.get().version == "v1" and world.fetched == ["v1", "v2"]  # not refetched
    with pytest.raises(ModelUnavailable, match="encoder.onnx"):
        cache(world).get()
    world.now, world.broken = 61.0, set()  # fixed in place: retried after retry_after_s
    assert warm.get().version == "v2"


def test_nothing_promoted(world):
    world.alias = ""
    with pytest.raises(ModelUnavailable, match="promote"):
        cache(world).get()


def test_a_package_of_another_version_is_refused(world):
    models = ModelCache(resolve=lambda: "v1", fetch=world.fetch, load=lambda p: Fake("v9"))
    with pytest.raises(ModelUnavailable, match="v9"):
        models.get()
