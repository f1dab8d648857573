"""CPU and memory of every process of a running stack (broker, Postgres, emulators, each service).

Each component is found by its pid file (the stack's ``run`` directory; PostgreSQL's ``postmaster.pid``)
and counted with its whole process tree (Postgres backends, a wrapper's child). CPU is user + system
seconds; memory is PSS where the kernel gives it (shared pages split between the processes sharing them,
so the sum is the stack's real footprint), else RSS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


@dataclass(frozen=True)
class Usage:
    cpu_s: float
    memory_bytes: int
    threads: int


def _pid_from(path: Path) -> int | None:
    try:
        first = path.read_text().split()
    except OSError:
        return None
    return int(first[0]) if first and first[0].isdigit() else None


def stack_pids(cfg: Any) -> dict[str, int]:
    """name → pid of each running component and service of the stack ``cfg`` (a ``StackConfig``)."""
    pids: dict[str, int] = {}
    for pid_file in sorted(Path(cfg.run_dir).glob("*.pid")):
        pid = _pid_from(pid_file)
        if pid is not None and psutil.pid_exists(pid):
            pids[pid_file.stem.removeprefix("svc-")] = pid
    postmaster = _pid_from(Path(cfg.root) / "postgres" / "postmaster.pid")
    if postmaster is not None and psutil.pid_exists(postmaster):
        pids["postgres"] = postmaster
    return pids


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _memory(proc: psutil.Process) -> int:
    try:
        full = proc.memory_full_info()
        return int(getattr(full, "pss", 0) or full.rss)
    except psutil.Error:
        try:
            return int(proc.memory_info().rss)
        except psutil.Error:
            return 0


def sample(pids: dict[str, int]) -> dict[str, Usage]:
    """CPU seconds so far, memory and threads of each named process tree."""
    out: dict[str, Usage] = {}
    for name, pid in pids.items():
        cpu, memory, threads = 0.0, 0, 0
        for proc in _tree(pid):
            try:
                times = proc.cpu_times()
                cpu += times.user + times.system
                threads += proc.num_threads()
            except psutil.Error:
                continue
            memory += _memory(proc)
        out[name] = Usage(cpu, memory, threads)
    return out


def cpu_delta(before: dict[str, Usage], after: dict[str, Usage]) -> dict[str, float]:
    return {name: max(0.0, after[name].cpu_s - before[name].cpu_s) for name in after if name in before}


def busiest_threads(pid: int, seconds: float = 5.0, top: int = 5) -> list[tuple[str, float]]:
    """The threads of one process that used the most CPU over ``seconds`` (name, cores): who wakes."""
    try:
        proc = psutil.Process(pid)
        first = {t.id: t.user_time + t.system_time for t in proc.threads()}
        time.sleep(seconds)
        second = {t.id: t.user_time + t.system_time for t in proc.threads()}
    except psutil.Error:
        return []
    names: dict[int, str] = {}
    for tid in second:
        try:
            names[tid] = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
        except OSError:
            names[tid] = str(tid)
    used = sorted(
        ((names[tid], (second[tid] - first.get(tid, 0.0)) / seconds) for tid in second),
        key=lambda kv: -kv[1],
    )
    return used[:top]
