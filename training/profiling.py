"""A profile of a few training steps, logged once: what bounds a step on a lent accelerator.

A lease is too short to explore, so the trainer profiles itself when `train.profile_steps` is
set (training/gpu_run.sh sets it): after ten steps of warm-up it records that many, then logs
the operations that took the most time, and how much of a step's wall time the accelerator
spent running kernels. Far under 100%, the step is bound by launches, Python or the loader,
and larger batches or compiled graphs pay; near 100%, by the arithmetic itself.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)
WARMUP = 10  # steps skipped (allocator growth, lazy initialisation) before recording


def step_profiler(steps: int, device: torch.device) -> torch.profiler.profile | None:
    """A started profiler to `step()` after every training step, or None when `steps` is 0."""
    if steps <= 0:
        return None
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)

    def report(profile: torch.profiler.profile) -> None:
        log.info("profile of %d training steps:\n%s", steps, summarise(profile, device))

    profiler = torch.profiler.profile(
        activities=activities,
        schedule=torch.profiler.schedule(wait=WARMUP // 2, warmup=WARMUP // 2, active=steps),
        on_trace_ready=report,
    )
    profiler.start()
    return profiler


def summarise(profile: torch.profiler.profile, device: torch.device) -> str:
    """The busiest operations, then the step's wall time against its kernels' time."""
    averages = profile.key_averages()
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = averages.table(sort_by=sort, row_limit=15)
    steps = [e for e in averages if e.key.startswith("ProfilerStep")]
    count = sum(e.count for e in steps)
    if not count:
        return table
    wall_ms = sum(e.cpu_time_total for e in steps) / count / 1000
    line = f"a step: {wall_ms:.1f} ms of wall time"
    if device.type == "cuda":
        kernels_ms = sum(e.self_device_time_total for e in averages) / count / 1000
        line += f", {kernels_ms:.1f} ms of kernels ({kernels_ms / max(wall_ms, 1e-9):.0%} busy)"
    return f"{table}\n{line}"
