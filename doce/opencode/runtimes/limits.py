"""The bounds every OpenCode server runs within, whatever the runtime: memory and
processes of the whole tree the agent starts, a CPU cap, and the workspace's disk.

Each comes from a setting (``DOCE_SERVER_MEMORY_LIMIT_MB``, ``DOCE_SERVER_PIDS_LIMIT``,
``DOCE_SERVER_CPUS``, ``DOCE_SERVER_DISK_LIMIT_MB``) or, left empty, from the machine:
a quarter of its memory (at least 768 MiB, at most 2 GiB), 512 processes, every core
(fair shares between servers do the rest: equal weights), a tenth of the data folder's
disk (at least 1 GiB, at most 10 GiB). Runtimes enforce them their own way (the local
sandbox with cgroups and rlimits, Docker with ``--memory``/``--pids-limit``/``--cpus``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import psutil
from django.conf import settings

# One home for how a bound is written: the supervisor (standard library only) says it too.
from doce.opencode.runtimes.sandbox_bounds import human_bytes

__all__ = ["DEFAULT_PIDS", "MIB", "Limits", "human_bytes", "server_limits"]

MIB = 1024 * 1024
DEFAULT_PIDS = 512


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    pids: int
    cpus: float
    disk_bytes: int


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def server_limits() -> Limits:
    memory = settings.DOCE_SERVER_MEMORY_LIMIT_MB.strip()
    pids = settings.DOCE_SERVER_PIDS_LIMIT.strip()
    cpus = settings.DOCE_SERVER_CPUS.strip()
    disk = settings.DOCE_SERVER_DISK_LIMIT_MB.strip()
    if memory:
        memory_bytes = int(float(memory) * MIB)
    else:
        memory_bytes = _clamp(psutil.virtual_memory().total // 4, 768 * MIB, 2048 * MIB)
    if disk:
        disk_bytes = int(float(disk) * MIB)
    else:
        data_dir = Path(settings.DOCE_DATA_DIR)
        probe = data_dir if data_dir.exists() else Path("/")
        disk_bytes = _clamp(shutil.disk_usage(probe).total // 10, 1024 * MIB, 10 * 1024 * MIB)
    return Limits(
        memory_bytes=memory_bytes,
        pids=int(float(pids)) if pids else DEFAULT_PIDS,
        cpus=float(cpus) if cpus else float(os.cpu_count() or 1),
        disk_bytes=disk_bytes,
    )
