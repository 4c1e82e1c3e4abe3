"""CPU time and memory of processes, read from /proc (Linux only).

CPU is ``utime + stime`` of ``/proc/PID/stat``, in seconds; a process
that has exited by the second reading is lost, except for children a
parent has reaped, whose time the parent's ``cutime + cstime`` holds
(how the postmaster keeps its finished backends' CPU).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may hold spaces.
    return text[text.rindex(")") + 2 :].split()


def cpu_seconds(pid: int, *, children: bool = False) -> float | None:
    """User plus system CPU of ``pid`` (plus its reaped children's)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    # After the name: state is field 3 of stat(5), i.e. index 0 here.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks * TICK_S


def memory_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid``: resident now, and its peak."""
    found = {"VmRSS:": 0, "VmHWM:": 0}
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0, 0
    for line in lines:
        parts = line.split()
        if parts and parts[0] in found:
            found[parts[0]] = int(parts[1]) * 1024
    return found["VmRSS:"], found["VmHWM:"]


def pids_named(name: str) -> list[int]:
    """Processes whose command name is ``name``."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if comm == name:
            found.append(int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU time spent by the whole machine outside idle and iowait."""
    first = (PROC / "stat").read_text().splitlines()[0].split()
    ticks = [int(v) for v in first[1:]]
    idle = ticks[3] + ticks[4]
    # guest time is already counted in user time
    return (sum(ticks[:8]) - idle) * TICK_S


def postmaster_pid(pids: Iterable[int]) -> int | None:
    """The postgres process whose parent is not a postgres process."""
    pids = set(pids)
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None and int(fields[1]) not in pids:
            return pid
    return None


@dataclass(frozen=True, slots=True)
class Reading:
    """CPU seconds per process at one instant, grouped, and the machine."""

    groups: Mapping[str, Mapping[int, float]]
    machine_s: float
    reaped: Mapping[str, float] = field(default_factory=dict)


def read(
    groups: Mapping[str, Iterable[int]],
    reaped_by: Mapping[str, int] | None = None,
) -> Reading:
    """Read every group's processes now.

    ``reaped_by`` names, per group, a parent whose reaped children's CPU
    belongs to that group.
    """
    values: dict[str, dict[int, float]] = {}
    for name, pids in groups.items():
        values[name] = {}
        for pid in pids:
            seconds = cpu_seconds(pid)
            if seconds is not None:
                values[name][pid] = seconds
    reaped: dict[str, float] = {}
    for name, parent in (reaped_by or {}).items():
        own = cpu_seconds(parent) or 0.0
        reaped[name] = (cpu_seconds(parent, children=True) or own) - own
    return Reading(values, machine_busy_seconds(), reaped)


def used(start: Reading, end: Reading) -> dict[str, float]:
    """CPU seconds each group used between two readings.

    A process first seen at the end counts from zero (it started in
    between); one gone by the end is lost unless reaped by a parent.
    """
    out: dict[str, float] = {}
    for name, now in end.groups.items():
        before = start.groups.get(name, {})
        total = sum(v - before.get(pid, 0.0) for pid, v in now.items())
        total += end.reaped.get(name, 0.0) - start.reaped.get(name, 0.0)
        out[name] = max(0.0, total)
    out["machine"] = end.machine_s - start.machine_s
    return out
