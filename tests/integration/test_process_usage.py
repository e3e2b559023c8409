"""RuntimePort.usage on real process trees (backends/local/processes.py): a replica's RSS and CPU are those of its
whole process group, children included. Behaviour checks with generous bounds, not benchmarks."""

from __future__ import annotations

import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_for

from branchyard import metrics as mx
from branchyard.backends.local import processes

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
ALLOCATE = 96  # MiB the child holds (touched, so resident)
CHILD = textwrap.dedent(f"""
    import pathlib, sys, time
    block = bytearray({ALLOCATE} * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    pathlib.Path(sys.argv[1]).write_text("ready")
    time.sleep(600)
""")
BUSY = "while True: pass"


def spawn(tmp_path: Path, command: str) -> processes.ProcessHandle:
    port = processes.free_port()
    return processes.spawn(command, cwd=tmp_path, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                           log_path=tmp_path / "app.log", port=port)


def test_rss_counts_the_child_that_allocates(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    # the replica's shell waits on a child that allocates: the memory is the child's, the replica is the parent
    h = spawn(tmp_path, f"{shlex.quote(sys.executable)} -c {shlex.quote(CHILD)} {shlex.quote(str(ready))} & wait")
    try:
        wait_for(ready.exists, timeout=60)
        usage = processes.usage(h)
        assert usage is not None and usage.processes >= 2, usage
        assert ALLOCATE * MiB <= usage.rss_bytes < (ALLOCATE + 200) * MiB, usage
    finally:
        processes.stop(h, grace=2)
    assert processes.usage(h) is None  # gone: no usage, not zeros


def test_cpu_of_a_busy_child_is_most_of_a_core(tmp_path: Path) -> None:
    h = spawn(tmp_path, f"{shlex.quote(sys.executable)} -c {shlex.quote(BUSY)} & wait")
    try:
        def busy_enough() -> float | None:
            before = processes.usage(h)
            start = time.monotonic()
            time.sleep(1.0)
            after = processes.usage(h)
            percent = mx.cpu_percent(before.cpu_seconds, start, after.cpu_seconds, time.monotonic())
            return percent if percent is not None and percent > 50 else None

        # on a machine shared with other tests one reading may see the loop starved: it must reach it, not every time
        assert wait_for(busy_enough, timeout=60) < 250  # one loop cannot use more than one core (and a bit of slack)
    finally:
        processes.stop(h, grace=2)


def test_a_lone_process_is_counted_once(tmp_path: Path) -> None:
    h = spawn(tmp_path, "exec sleep 600")
    try:
        usage = processes.usage(h)
        assert usage is not None and usage.processes == 1, usage
        assert 0 < usage.rss_bytes < 50 * MiB and usage.cpu_seconds >= 0
    finally:
        processes.stop(h, grace=2)
