"""Training logs through dvclive (curves for `dvc plots`), or JSON lines where it is absent
(a lent GPU machine has no dvclive: its logs still come back and read the same)."""

from __future__ import annotations

import json
from pathlib import Path


class Tracker:
    def __init__(self, out_dir: Path, enabled: bool = True, resume: bool = False):
        self.enabled = enabled
        self.live = None
        self.fallback = None
        if not enabled:
            return
        try:
            from dvclive import Live
        except ImportError:
            self.fallback = open(Path(out_dir) / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        else:
            self.live = Live(
                str(Path(out_dir) / "dvclive"),
                resume=resume,
                save_dvc_exp=False,
                dvcyaml=None,
                report=None,
            )

    def log(self, values: dict[str, float], step: int) -> None:
        if self.live is not None:
            self.live.step = step
            for name, value in values.items():
                self.live.log_metric(name, value)
            self.live.make_summary()
        elif self.fallback is not None:
            self.fallback.write(json.dumps({"step": step, **values}) + "\n")
            self.fallback.flush()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
        if self.fallback is not None:
            self.fallback.close()
