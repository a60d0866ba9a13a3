"""Shared helpers of the benchmarks: timing, machine description, markdown tables."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time


def best_time(fn, repeats: int = 3):
    """(best wall time in seconds, result of the last call)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def machine() -> str:
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    blas = ", ".join(
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')}, {i.get('num_threads')} threads)"
        for i in threadpool_info()
    )
    return f"{cpu}; nproc {os.cpu_count()}; Python {sys.version.split()[0]}; BLAS: {blas}"


def git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except Exception:
        return "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that decide the kernels' speed here: ``avx512f`` and/or ``avx2`` (from lscpu)."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return sorted(set(re.findall(r"\b(avx512f|avx2)\b", out)))


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
