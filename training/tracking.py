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


def replay(run_dir: Path) -> int:
    """A run's JSON lines (logged where dvclive was absent) logged again through dvclive
    into run_dir/dvclive, so that its release has the curves of a run trained here. A run
    resumed from its last validation repeats a few steps: their second reading is kept.
    Returns the number of rows logged."""
    rows: list[dict] = []
    for line in (Path(run_dir) / "log.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if any(r["step"] >= row["step"] and r.keys() == row.keys() for r in rows):
            rows = [r for r in rows if r["step"] < row["step"]]  # resumed from a checkpoint
        rows.append(row)
    tracker = Tracker(Path(run_dir))
    if tracker.live is None:
        raise RuntimeError("replaying a run's log needs dvclive (the train extra)")
    for row in rows:
        tracker.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])
    tracker.close()
    return len(rows)


if __name__ == "__main__":
    import sys

    print(f"{replay(Path(sys.argv[1]))} rows logged to {sys.argv[1]}/dvclive")
