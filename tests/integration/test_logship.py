"""The log shipper over real files: offsets, restart without loss or duplicates, access-log rolls, the HttpSink,
segments under the cap (real disk usage, st_blocks), hole punching under a live O_APPEND writer, the cursor."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from branchyard import logrecords as lr
from branchyard.controller import logship
from branchyard.controller.logship import LogShipper, Segments, disk_usage
from branchyard.errors import NotFound
from branchyard.monitoring import HttpEntry

pytestmark = pytest.mark.integration

P, E, DEP = "shop", "staging", "0f1e2d3c-0000-4000-8000-000000000001"
SECRET = "hunter2-very-secret"


def shipper(logs: Path, **kw) -> tuple[LogShipper, list[tuple[str, str, HttpEntry]]]:
    seen: list[tuple[str, str, HttpEntry]] = []
    kw.setdefault("clock", lambda: 1796295200.0)
    s = LogShipper(logs, redactor=lambda p, e: (lambda text: text.replace(SECRET, "********")),
                   http_sink=lambda p, e, entry: seen.append((p, e, entry)), **kw)
    return s, seen


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        f.write(text.encode())


def records(s: LogShipper, **q) -> list[dict]:
    return s.query(P, E, lr.Query(**{"http": "include", **q}), limit=100_000)[0]


def access_line(path: str, status: int, ts: float = 1796295200.5) -> str:
    return json.dumps({"level": "info", "ts": ts, "logger": "http.log.access.by_shop_staging", "msg": "handled request",
                       "request": {"method": "GET", "host": "shop-staging.localhost", "uri": path},
                       "bytes_read": 0, "duration": 0.002, "size": 11, "status": status}) + "\n"


def test_ships_each_stream_resumes_after_a_restart_without_loss_or_duplicates(tmp_path):
    logs = tmp_path / "logs"
    d = logs / P / E / DEP
    append(d / "web.0.log", '{"level": "warning", "message": "slow query", "ms": 812}\nplain out\npartial')
    append(d / "web.0.stderr.log", f"ERROR: cannot reach db with password {SECRET}\n")
    append(d / "deploy.log", "-----> building\n")
    s, _ = shipper(logs)
    assert s.ship_once() == 4
    got = [(r["service"], r["replica"], r["deployment"], r["stream"], r["level"], r["message"], r.get("fields"))
           for r in records(s)]
    assert got == [  # within a pass, file by file
        ("deploy", None, DEP, "deploy", None, "-----> building", None),
        ("web", 0, DEP, "stdout", "warning", "slow query", {"ms": 812}),
        ("web", 0, DEP, "stdout", None, "plain out", None),
        ("web", 0, DEP, "stderr", "error", "ERROR: cannot reach db with password ********", None),
    ]
    assert s.ship_once() == 0  # nothing new: nothing shipped (the partial line waits for its newline)
    append(d / "web.0.log", " line done\nmore\n")
    # a new control plane (a restart): offsets come from disk
    s2, _ = shipper(logs)
    assert s2.ship_once() == 2
    assert [r["message"] for r in records(s2) if r["stream"] == "stdout"] == ["slow query", "plain out",
                                                                            "partial line done", "more"]
    assert SECRET not in "".join(p.read_text() for p in (logs / P / E / "_records").glob("*.jsonl"))


def test_access_log_entries_reach_the_sink_exactly_and_a_caddy_roll_loses_nothing(tmp_path):
    logs = tmp_path / "logs"
    root = logs / P / E
    append(root / "access.log", access_line("/a", 200) + access_line("/b", 503))
    s, seen = shipper(logs)
    s.ship_once()
    entry = HttpEntry(ts=1796295200.5, method="GET", host="shop-staging.localhost", path="/a", status=200,
                      duration_s=0.002, bytes_in=0, bytes_out=11)
    assert seen == [(P, E, entry), (P, E, HttpEntry(**{**entry.__dict__, "path": "/b", "status": 503}))]
    # Caddy rolls: a last line lands in the old file, which is renamed; a new access.log starts
    append(root / "access.log", access_line("/c", 404))
    os.rename(root / "access.log", root / "access-2026-12-03T10-53-21.000.log")
    append(root / "access.log", access_line("/d", 200))
    s.ship_once()
    http = [r for r in records(s) if r["stream"] == "http"]
    assert [(r["path"], r["status"], r["level"]) for r in http] == [
        ("/a", 200, "info"), ("/b", 503, "error"), ("/c", 404, "warning"), ("/d", 200, "info")]
    assert [e.path for _, _, e in seen] == ["/a", "/b", "/c", "/d"]
    assert records(s, http="exclude") == []  # the default query leaves access records out
    # two rolls while the control plane was down (the older rolled file's mtime is older)
    append(root / "access.log", access_line("/e", 200))
    os.rename(root / "access.log", root / "access-2026-12-03T10-53-22.000.log")
    os.utime(root / "access-2026-12-03T10-53-21.000.log", (1796295201, 1796295201))
    os.utime(root / "access-2026-12-03T10-53-22.000.log", (1796295202, 1796295202))
    append(root / "access.log", access_line("/f", 200))
    os.rename(root / "access.log", root / "access-2026-12-03T10-53-23.000.log")
    append(root / "access.log", access_line("/g", 200))
    s2, seen2 = shipper(logs)
    s2.ship_once()
    assert [e.path for _, _, e in seen2] == ["/e", "/f", "/g"]


def test_query_cursor_follows_across_segments_deployments_and_pruning(tmp_path):
    logs = tmp_path / "logs"
    s, _ = shipper(logs, segment_bytes=2000)
    first, second = DEP, DEP.replace("0001", "0002")
    for i in range(30):
        append(logs / P / E / first / "web.0.log", f"one {i}\n")
    s.ship_once()
    page, cursor = s.query(P, E, lr.Query(), limit=5)
    assert [r["message"] for r in page] == [f"one {i}" for i in range(25, 30)]  # no cursor: the last N
    for i in range(30):
        append(logs / P / E / second / "web.1.log", f"two {i}\n")
    s.ship_once()
    assert len(s.segments(P, E).list()) > 2  # rotated by size
    got, cursor2 = s.query(P, E, lr.Query(), limit=1000, cursor=cursor)
    assert [r["message"] for r in got] == [f"two {i}" for i in range(30)]  # exactly what came after, in order
    assert s.query(P, E, lr.Query(), limit=1000, cursor=cursor2) == ([], cursor2)
    some, c = s.query(P, E, lr.Query(grep="TWO 1"), limit=3, cursor=cursor)
    assert [r["message"] for r in some] == ["two 1", "two 10", "two 11"]
    assert [r["message"] for r in s.query(P, E, lr.Query(grep="two 1"), limit=100, cursor=c)[0]] == [
        f"two {i}" for i in range(12, 20)]
    assert [r["deployment"] for r in s.query(P, E, lr.Query(deployment=second[:30]), limit=1)[0]] == [second]
    # a cursor into segments pruned since: from the oldest kept one, never an error
    segs = s.segments(P, E)
    segs.prune(cap_bytes=1, older_than=None)
    assert segs.list() and segs.end() == cursor2  # the position carries on
    append(logs / P / E / second / "web.1.log", "after prune\n")
    s.ship_once()
    assert [r["message"] for r in s.query(P, E, lr.Query(), limit=10, cursor=0)[0]] == ["after prune"]


def test_records_stay_under_the_cap_and_raw_files_are_freed_under_a_live_writer(tmp_path):
    logs = tmp_path / "logs"
    cap = 256 * 1024
    s, _ = shipper(logs, segment_bytes=32 * 1024, cap_bytes=cap, punch_min=64 * 1024)
    raw = logs / P / E / DEP / "web.0.log"
    raw.parent.mkdir(parents=True)
    writer = open(raw, "ab", buffering=0)  # noqa: SIM115 - the app's O_APPEND stdout, open all along
    try:
        line = b"x" * 200 + b"\n"
        written = 0
        for n in range(40):
            writer.write(b"".join(b"%06d " % (n * 1000 + i) + line for i in range(1000)))
            written += 1000 * (len(line) + 7)
            s.ship_once()
        assert written > 30 * cap  # far more than the cap
        records_dir = logs / P / E / "_records"
        assert disk_usage(records_dir) <= cap + 32 * 1024 + 8192  # the cap, plus the segment being filled
        # the raw file: its size is everything written, its blocks only what was not yet shipped
        st = raw.stat()
        assert st.st_size == written
        assert st.st_blocks * 512 < 2 * 64 * 1024 + 8192
        # the writer is undisturbed: its next line lands at the end and ships
        writer.write(b"999999 last line\n")
        s.ship_once()
        assert raw.stat().st_size == written + 17
        last = s.query(P, E, lr.Query(), limit=2)[0]
        assert [r["message"] for r in last] == [f"039999 {'x' * 200}", "999999 last line"]
        # every line shipped exactly once, in order (the newest, kept under the cap, are contiguous)
        kept = [int(r["message"][:6]) for r in s.query(P, E, lr.Query(), limit=10**6, cursor=0)[0]]
        assert kept == list(range(kept[0], 40000)) + [999999]
    finally:
        writer.close()


def test_punch_hole_frees_blocks_and_keeps_the_rest(tmp_path):
    f = tmp_path / "raw.log"
    f.write_bytes(b"a" * 1_000_000 + b"tail\n")
    before = f.stat().st_blocks
    assert logship.punch_hole(f, 900_000)
    after = f.stat()
    assert after.st_size == 1_000_005 and after.st_blocks < before / 5
    data = f.read_bytes()
    hole = 900_000 // 4096 * 4096  # whole blocks only
    assert data[:hole] == b"\0" * hole and data[hole:] == b"a" * (1_000_000 - hole) + b"tail\n"


def test_retention_prunes_old_segments(tmp_path):
    seg = Segments(tmp_path / "_records", segment_bytes=100)
    seg.append([b'{"message": "%d"}\n' % i for i in range(20)])
    paths = [p for _, p in seg.list()]
    assert len(paths) > 3
    for p in paths[:-1]:
        os.utime(p, (1000.0, 1000.0))
    assert seg.prune(cap_bytes=10**9, older_than=2000.0) > 0
    assert [p for _, p in seg.list()] == paths[-1:]


def test_the_access_log_is_freed_too_and_a_teardown_is_not_undone(tmp_path):
    logs = tmp_path / "logs"
    root = logs / P / E
    s, seen = shipper(logs, punch_min=64 * 1024)
    append(root / "access.log", "".join(access_line(f"/p{i}", 200) for i in range(2000)))
    s.ship_once()
    assert len(seen) == 2000
    st = (root / "access.log").stat()
    assert st.st_blocks * 512 < 8192 < st.st_size  # shipped: its blocks freed, its size (Caddy's offset) kept
    # the environment is destroyed (teardown removes its directory): the shipper does not make it again
    import shutil

    shutil.rmtree(root)
    assert s.ship_once() == 0 and not root.exists()
    # …and a directory left by a pass that raced with the teardown goes at the next housekeeping
    append(root / "_records" / "00000000000000000000.jsonl", '{"message": "late"}\n')
    other = logs / P / "production" / DEP / "web.0.log"
    append(other, "kept\n")

    def retention(project, env):
        if env == E:
            raise NotFound(f"no environment {env!r}")
        return None

    s.prune(retention)
    assert not root.exists() and other.exists()


def test_housekeeping_removes_only_ended_shipped_old_deployment_directories(tmp_path):
    logs = tmp_path / "logs"
    s, _ = shipper(logs)
    root = logs / P / E
    deps = {name: root / name for name in ("ended-old", "ended-unshipped", "running-old", "ended-recent")}
    for d in deps.values():
        append(d / "deploy.log", "-----> built\n")
        append(d / "web.0.log", "hello\n")
    s.ship_once()
    append(deps["ended-unshipped"] / "web.0.stderr.log", "late line\n")  # not shipped yet
    for name in ("ended-old", "ended-unshipped", "running-old"):
        for f in deps[name].iterdir():
            os.utime(f, (1000.0, 1000.0))
    freed = s.prune(lambda p, e: 7 * 86400.0, lambda p, e: {"ended-old", "ended-unshipped", "ended-recent"})
    assert freed > 0
    assert sorted(p.name for p in root.iterdir()) == ["_records", "ended-recent", "ended-unshipped", "running-old"]
    # a preview (kept until destroyed) keeps everything
    s.prune(lambda p, e: None, lambda p, e: {"ended-unshipped", "ended-recent", "running-old"})
    assert sorted(p.name for p in root.iterdir()) == ["_records", "ended-recent", "ended-unshipped", "running-old"]
    assert s.ship_once() == 1  # the late line still ships
