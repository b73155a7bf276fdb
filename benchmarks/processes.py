"""Whole processes timed for the benchmarks: wall seconds, and the CPU seconds the process used
(far less disturbed than wall time by other work on a shared machine)."""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_process(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `command` from the repo root, with this checkout's
    sources first on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})}
    cpu_before = _children_cpu()
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, _children_cpu() - cpu_before


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def side_by_side(
    wall: dict[str, list[float]], cpu: dict[str, list[float]], baseline: str, candidate: str
) -> dict[str, float]:
    """Medians of `candidate`'s and `baseline`'s processes, wall and CPU, and their ratios."""
    wall_b, wall_c = statistics.median(wall[baseline]), statistics.median(wall[candidate])
    cpu_b, cpu_c = statistics.median(cpu[baseline]), statistics.median(cpu[candidate])
    return {
        f"{baseline}_s": wall_b,
        f"{candidate}_s": wall_c,
        f"{candidate}_over_{baseline}": wall_c / wall_b,
        f"{baseline}_cpu_s": cpu_b,
        f"{candidate}_cpu_s": cpu_c,
        f"{candidate}_over_{baseline}_cpu": cpu_c / cpu_b,
    }
