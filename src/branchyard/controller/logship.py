"""The log shipper: raw log files → an environment's structured records, bounded on disk; and the records' query.

Layout under `$BRANCHYARD_HOME/logs/<project>/<env>/`:

    <deployment>/web.<N>.log          a replica's stdout  (the app holds it open, O_APPEND; see RuntimePort.spawn)
    <deployment>/web.<N>.stderr.log   a replica's stderr
    <deployment>/deploy.log           the deployment's build/deploy log (the control plane writes it)
    <deployment>/cron.<run>.log       a cron run's stdout (and .stderr.log): service "cron", replica = the run's id
    access.log, access-<time>.log     the router's access log for the environment (Caddy writes and rolls it)
    _records/<base>.jsonl             record segments: JSON lines (logrecords.py), `<base>` the segment's first
                                      position (a byte count over all the environment's segments, ever)
    _records/offsets.json             how far each raw file was shipped (inode, offset)

A thread (`run_forever`) reads every ~0.5 s each raw file from its saved offset to its last complete line, turns
the lines into records (secrets masked by the environment's redactor), appends them to the newest segment (a new
one past `segment_bytes`), then saves the offsets. A crash between the append and the offset save ships that
last batch again on restart (at most one batch per file duplicated; nothing is lost). The router's access lines
also go to the `HttpSink` (metrics) as `monitoring.HttpEntry`s, after the offsets are saved: each entry reaches it
at most once (a crash right after the save loses that batch for the metrics, never doubles it).

Disk stays bounded: segments are rotated by size and pruned (oldest first) past the environment's cap and past
its tier's retention (`prune`, from housekeeping); a replica's raw files and the access log are kept sparse: once
shipped, their consumed bytes are freed with `fallocate(PUNCH_HOLE | KEEP_SIZE)` — the writer (the app's O_APPEND
stdout/stderr, Caddy) is undisturbed and no line is lost (never copytruncate). Deploy logs are not punched: they end
with their deployment, and `deploy`/`logs --build` read them from the start. While the control plane is down
nothing ships and raw files grow; the shipper catches up when it returns (Caddy rolls the access log itself,
keeping `roll_keep` old files: lines in a rolled file Caddy deleted before the shipper came back are lost).

The cursor of `query` is a position over the environment's segments, so `logs -f` follows across replica
restarts and deployments (all write into the same segments).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .. import logrecords as lr
from ..errors import NotFound
from ..monitoring import HttpEntry, HttpSink
from ..store import models as m
from ..store.db import Store
from .dataplane import DataPlane

log = logging.getLogger(__name__)

RECORDS_DIR = "_records"
OFFSETS_FILE = "offsets.json"
SEGMENT_BYTES = 8 * 1024 * 1024
CAP_BYTES = 256 * 1024 * 1024
INTERVAL = 0.5
MAX_LINE = 64 * 1024  # a longer line without a newline is cut into records of this size
READ_CHUNK = 4 * 1024 * 1024  # per file per pass: a backlog is caught up over a few passes
PUNCH_MIN = 1024 * 1024  # free a raw file's consumed bytes once this much more was shipped
COLD_AFTER = 30.0  # seconds without a new line: a raw file is cold…
COLD_EVERY = 4  # …and checked every 4th pass only (2 s): a quiet replica's next line may wait that long
REDACTOR_TTL = 2.0  # seconds an environment's redactor is reused (a secret set since may ship unmasked that long)
_BLOCK = 4096

Redact = Callable[[str], str]


# --- fallocate(PUNCH_HOLE) -------------------------------------------------------------------------------------

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02
_libc: Any = None


def punch_hole(path: Path, length: int) -> bool:
    """Free the blocks of the file's first `length` bytes (rounded down to a block); its size and every byte after
    stay as they were, and an O_APPEND writer keeps writing at the end. False where the filesystem cannot."""
    global _libc
    length -= length % _BLOCK
    if length <= 0:
        return False
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError:
        return False
    try:
        return _libc.fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, 0, length) == 0
    finally:
        os.close(fd)


def disk_usage(directory: Path) -> int:
    """Bytes really allocated under a directory (st_blocks, as `du` counts), not the files' apparent sizes."""
    total = 0
    for root, _, files in os.walk(directory):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
    return total


# --- record segments -------------------------------------------------------------------------------------------


class Segments:
    """One environment's record segments (append, rotate, prune, read by position)."""

    def __init__(self, directory: Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.dir = Path(directory)
        self.segment_bytes = segment_bytes

    def list(self) -> list[tuple[int, Path]]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            stem, dot, ext = name.partition(".")
            if ext == "jsonl" and dot and stem.isdigit():
                out.append((int(stem), self.dir / name))
        return sorted(out)

    def end(self) -> int:
        segs = self.list()
        if not segs:
            return 0
        base, path = segs[-1]
        try:
            return base + path.stat().st_size
        except FileNotFoundError:
            return base

    def append(self, lines: list[bytes]) -> None:
        """Append JSON lines (each ending in a newline) to the newest segment, opening a new one past the size."""
        if not lines:
            return
        self.dir.mkdir(exist_ok=True)
        segs = self.list()
        base, path = segs[-1] if segs else (0, self.dir / f"{0:020d}.jsonl")
        size = path.stat().st_size if path.exists() else 0
        i = 0
        while i < len(lines):
            if size >= self.segment_bytes:
                base, size = base + size, 0
                path = self.dir / f"{base:020d}.jsonl"
            chunk: list[bytes] = []
            while i < len(lines) and (size < self.segment_bytes or not chunk):
                chunk.append(lines[i])
                size += len(lines[i])
                i += 1
                if size >= self.segment_bytes:
                    break
            with open(path, "ab") as f:
                f.write(b"".join(chunk))

    def prune(self, *, cap_bytes: int, older_than: float | None) -> int:
        """Delete the oldest segments while the total is above `cap_bytes`, and every segment last written before
        `older_than` (unix seconds); returns the bytes freed. The position carries on where it was."""
        segs = self.list()
        sizes = {}
        for base, path in segs:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            sizes[base] = (path, st.st_size, st.st_mtime)
        total = sum(s for _, s, _ in sizes.values())
        end = self.end()
        freed = 0
        for base, (path, size, mtime) in sorted(sizes.items()):
            if total <= cap_bytes and (older_than is None or mtime >= older_than):
                break
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size
            freed += size
        if freed and not self.list():
            (self.dir / f"{end:020d}.jsonl").touch()  # keep the position: a cursor stays meaningful
        return freed

    def forward(self, cursor: int, *, limit: int, keep: Callable[[dict[str, Any]], bool],
                pre: Callable[[bytes], bool] | None = None) -> tuple[list[dict[str, Any]], int]:
        """Records from position `cursor` on (the oldest kept one if it was pruned), those `keep` accepts, at most
        `limit`; and the position after the last record looked at."""
        segs = self.list()
        if not segs:
            return [], cursor if cursor == 0 else 0
        end = self.end()
        if cursor > end:
            cursor = segs[0][0]  # the environment was destroyed and made again: from its beginning
        out: list[dict[str, Any]] = []
        pos = max(cursor, segs[0][0])
        for i, (base, path) in enumerate(segs):
            nxt = segs[i + 1][0] if i + 1 < len(segs) else None
            if nxt is not None and nxt <= pos:
                continue
            for rec_end, rec in _read_lines(path, base, max(0, pos - base), pre):
                pos = rec_end
                if rec is not None and keep(rec):
                    out.append(rec)
                    if len(out) >= limit:
                        return out, pos
            if nxt is not None:
                pos = max(pos, nxt)
        return out, pos

    def backward(self, *, limit: int, keep: Callable[[dict[str, Any]], bool],
                 stop: Callable[[dict[str, Any]], bool] | None = None,
                 pre: Callable[[bytes], bool] | None = None) -> tuple[list[dict[str, Any]], int]:
        """The last `limit` records `keep` accepts (oldest first), reading newest segments first; `stop` (a record
        too old for the query) ends the search early; `pre` skips lines that surely do not match before parsing
        them. With the position of the end (a cursor to follow from)."""
        segs = self.list()
        end = self.end()
        found: list[dict[str, Any]] = []
        for base, path in reversed(segs):
            hits = [rec for _, rec in _read_lines(path, base, 0, pre) if rec is not None and keep(rec)]
            found = hits[-(limit - len(found)):] + found if len(found) < limit else found
            if len(found) >= limit:
                break
            if stop is not None and (first := next((r for _, r in _read_lines(path, base, 0, None, first=True)), None)):
                if stop(first):
                    break
        return found[-limit:], end


def _read_lines(path: Path, base: int, offset: int, pre: Callable[[bytes], bool] | None = None, *,
                first: bool = False) -> Iterator[tuple[int, dict[str, Any] | None]]:
    """(position after the line, record — None if unreadable or `pre` refused it) for each complete line from
    `offset` (`first`: the first line only)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.readline() if first else f.read()
    except FileNotFoundError:
        return
    pos = 0
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return
        line = data[pos:nl]
        pos = nl + 1
        rec = None
        if pre is None or pre(line):
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
        yield base + offset + pos, rec if isinstance(rec, dict) else None


# --- what the shipper asks the store --------------------------------------------------------------------------


class EnvFacts:
    """An environment's secrets masker and records' retention, by project and environment name."""

    def __init__(self, store: Store, data: DataPlane) -> None:
        self.store = store
        self.data = data

    def _env(self, project: str, env: str) -> m.Environment:
        with self.store.session() as s:
            p = self.store.project(s, project)
            e = self.store.environment(s, p, env)
            s.expunge(e)
            return e

    def redactor(self, project: str, env: str) -> Redact:
        return self.data.redactor(self._env(project, env).id)

    def retention(self, project: str, env: str) -> float | None:
        e = self._env(project, env)
        return lr.retention(production=e.production, ephemeral=e.ephemeral)

    def finished(self, project: str, env: str) -> set[str]:
        """Deployments of the environment that will never write a log line again: ended (failed, crashed, removed,
        skipped), neither current nor target, and no replica of theirs left running or on standby."""
        e = self._env(project, env)
        ended = {m.FAILED, m.CRASHED, m.REMOVED, m.SKIPPED}
        live = {m.REPLICA_STARTING, m.REPLICA_RUNNING, m.REPLICA_DRAINING, m.REPLICA_STANDBY}
        with self.store.session() as s:
            deps = set(s.scalars(select(m.Deployment.id).where(m.Deployment.environment_id == e.id,
                                                               m.Deployment.status.in_(ended))))
            busy = set(s.scalars(select(m.Replica.deployment_id).where(m.Replica.environment_id == e.id,
                                                                      m.Replica.state.in_(live))))
        return deps - busy - {e.current_deployment_id, e.target_deployment_id}


# --- the shipper -------------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    """A raw file of an environment and what its records say."""

    key: str  # its path relative to the environment's directory: the offsets' key
    path: Path
    source: lr.Source | None  # None: the router's access log


class LogShipper:
    """Ships every environment's raw logs into its record segments; answers `logs` queries; prunes."""

    def __init__(self, logs_dir: Path, *, redactor: Callable[[str, str], Redact],
                 http_sink: HttpSink | None = None, segment_bytes: int = SEGMENT_BYTES, cap_bytes: int = CAP_BYTES,
                 punch_min: int = PUNCH_MIN, interval: float = INTERVAL, clock: Callable[[], float] = time.time) -> None:
        self.logs_dir = Path(logs_dir)
        self.redactor = redactor  # (project, environment) → that environment's secrets masker
        self.http_sink = http_sink
        self.segment_bytes = segment_bytes
        self.cap_bytes = cap_bytes
        self.punch_min = punch_min
        self.interval = interval
        self.clock = clock
        self._redactors: dict[tuple[str, str], tuple[float, Redact]] = {}
        self._punched: dict[tuple[str, str, str, int], int] = {}
        self._offsets: dict[tuple[str, str], dict[str, Any]] = {}  # what offsets.json holds, kept in memory
        self._listings: dict[str, tuple[int, list[_Raw]]] = {}  # a deployment directory's raw files, by its mtime
        self._quiet_since: dict[str, float] = {}  # raw file → when it was last seen unchanged after a change
        self._passes = 0
        self._env_locks: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    # --- where ---------------------------------------------------------------------------------------------
    def env_dir(self, project: str, env: str) -> Path:
        return self.logs_dir / project / env

    def segments(self, project: str, env: str) -> Segments:
        return Segments(self.env_dir(project, env) / RECORDS_DIR, segment_bytes=self.segment_bytes)

    def environments(self) -> list[tuple[str, str]]:
        out = []
        try:
            projects = [p for p in self.logs_dir.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return []
        for p in projects:
            with contextlib.suppress(OSError):
                out += [(p.name, e.name) for e in p.iterdir() if e.is_dir()]
        return sorted(out)

    def _raws(self, project: str, env: str) -> list[_Raw]:
        root = self.env_dir(project, env)
        out = [_Raw(lr.ACCESS_LOG, root / lr.ACCESS_LOG, None)]
        try:
            deps = [d for d in root.iterdir() if d.is_dir() and d.name != RECORDS_DIR]
        except FileNotFoundError:
            return []
        for d in sorted(deps):
            try:
                mtime = d.stat().st_mtime_ns  # changes when a file is added: the listing is cached until then
            except OSError:
                continue
            cached = self._listings.get(str(d))
            if cached is None or cached[0] != mtime:
                try:
                    names = sorted(os.listdir(d))
                except OSError:
                    continue
                raws = [_Raw(f"{d.name}/{n}", d / n, src) for n in names
                        if (src := lr.raw_source(n, environment=env, deployment=d.name)) is not None]
                cached = self._listings[str(d)] = (mtime, raws)
            out += cached[1]
        return out

    def _redact(self, project: str, env: str) -> Redact:
        now = time.monotonic()
        hit = self._redactors.get((project, env))
        if hit is None or now - hit[0] > REDACTOR_TTL:
            hit = (now, self.redactor(project, env))  # raises for an unknown environment: nothing ships for it
            self._redactors[(project, env)] = hit
        return hit[1]

    def _env_lock(self, project: str, env: str) -> threading.Lock:
        with self._lock:
            return self._env_locks.setdefault((project, env), threading.Lock())

    # --- shipping ------------------------------------------------------------------------------------------
    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.ship_once()
            except Exception:  # never let one bad pass end the thread
                log.exception("log shipper: pass failed")

    def ship_once(self) -> int:
        """One pass over every environment; the number of records appended."""
        n = 0
        envs = self.environments()
        for gone in set(self._offsets) - set(envs):  # destroyed since: a new one of that name starts afresh
            self._forget(*gone)
        self._passes += 1
        for project, env in envs:
            try:
                n += self.ship_env(project, env)
            except (FileNotFoundError, NotFound):  # being destroyed right now (teardown removes its directory)
                self._forget(project, env)
            except Exception:
                log.exception("log shipper: %s/%s failed", project, env)
        return n

    def _forget(self, project: str, env: str) -> None:
        self._redactors.pop((project, env), None)
        self._offsets.pop((project, env), None)
        prefix = str(self.env_dir(project, env)) + os.sep
        for cache in (self._listings, self._quiet_since):
            for key in [k for k in cache if k.startswith(prefix)]:
                del cache[key]
        for key in [k for k in self._punched if k[:2] == (project, env)]:
            del self._punched[key]

    def ship_env(self, project: str, env: str) -> int:
        with self._env_lock(project, env):
            root = self.env_dir(project, env)
            raws = self._raws(project, env)
            if not raws:
                return 0
            offsets_path = root / RECORDS_DIR / OFFSETS_FILE
            cached = self._offsets.get((project, env))
            # first pass since the start (or since the environment was made again): from the disk
            offsets = dict(cached if cached is not None else _load_offsets(offsets_path))
            lines_out: list[bytes] = []
            entries: list[HttpEntry] = []
            changed = False
            redact: Redact | None = None
            now = self.clock()
            mono = time.monotonic()
            for raw in raws:
                # a file quiet for a while (an old deployment's) is looked at every COLD_EVERY passes only
                quiet = self._quiet_since.get(str(raw.path))
                if quiet is not None and mono - quiet > COLD_AFTER and self._passes % COLD_EVERY:
                    continue
                got = self._read_new(raw, offsets, root)
                if got is None:
                    self._quiet_since.setdefault(str(raw.path), mono)
                    continue
                self._quiet_since.pop(str(raw.path), None)
                lines, new_state = got
                offsets[raw.key] = new_state
                changed = True
                if redact is None and lines:
                    redact = self._redact(project, env)
                for line in lines:
                    text = line.decode("utf-8", errors="replace")
                    if raw.source is None:
                        entry = lr.access_entry(text)
                        if entry is None:
                            continue
                        entries.append(entry)
                        rec = lr.access_record(entry, env, redact)
                    else:
                        rec = lr.app_record(text, raw.source, now=now)
                        rec = lr.redact_record(rec, redact) if redact is not None else rec
                    lines_out.append(json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode() + b"\n")
            if changed:
                (root / RECORDS_DIR).mkdir(exist_ok=True)  # not parents: a removed environment stays removed
            if lines_out:
                segs = self.segments(project, env)
                segs.append(lines_out)
                segs.prune(cap_bytes=self.cap_bytes, older_than=None)  # a chatty app never waits for housekeeping
            if changed:
                offsets = {k: v for k, v in offsets.items() if k in {r.key for r in raws}}
                _save_offsets(offsets_path, offsets)
                self._offsets[(project, env)] = offsets
            if self.http_sink is not None:
                for entry in entries:
                    try:
                        self.http_sink(project, env, entry)
                    except Exception:  # the sink must never raise; if it does, the logs still ship
                        log.exception("log shipper: http sink failed")
            for raw in raws:  # only after the offsets are saved: a punched byte is a shipped byte
                # not deploy logs: `deploy` follows them from the start, and they end with their deployment
                if raw.source is None or raw.source.stream in ("stdout", "stderr"):
                    self._punch(project, env, raw, offsets.get(raw.key))
            return len(lines_out)

    def _read_new(self, raw: _Raw, offsets: dict[str, Any], root: Path) -> tuple[list[bytes], dict[str, int]] | None:
        """New complete lines of a raw file (following a roll of the access log): (lines, its new saved state)."""
        try:
            st = raw.path.stat()
        except FileNotFoundError:
            return None
        saved = offsets.get(raw.key) or {}
        ino, off = saved.get("ino"), int(saved.get("off", 0))
        lines: list[bytes] = []
        if ino is not None and ino != st.st_ino:
            if raw.source is None:  # Caddy rolled access.log: finish the rolled file, then any rolled after it
                for path, start in _rolled_since(root, ino, off):
                    while True:
                        more, end = _complete_lines(path, start, final=True)
                        lines += more
                        if end == start:
                            break
                        start = end
            off = 0  # a new file at this path
        elif st.st_size < off:
            off = 0  # truncated by someone: start again
        if ino == st.st_ino and st.st_size == off and not lines:
            return None
        more, off = _complete_lines(raw.path, off)
        lines += more
        if not lines and ino == st.st_ino:
            return None
        return lines, {"ino": st.st_ino, "off": off}

    def _punch(self, project: str, env: str, raw: _Raw, state: dict[str, int] | None) -> None:
        if not state:
            return
        key = (project, env, raw.key, int(state["ino"]))
        off = int(state["off"])
        if off - self._punched.get(key, 0) < self.punch_min:
            return
        if punch_hole(raw.path, off):
            self._punched[key] = off - off % _BLOCK

    # --- bounded disk --------------------------------------------------------------------------------------
    def prune(self, retention: Callable[[str, str], float | None],
              finished: Callable[[str, str], set[str]] | None = None) -> int:
        """Each environment's segments under its cap and its tier's retention (seconds; None: keep until destroyed);
        with `finished` (the deployments that will never log again), their raw directories too once shipped and past
        the retention. Returns the bytes freed. Run from housekeeping."""
        freed = 0
        now = self.clock()
        for project, env in self.environments():
            try:
                keep = retention(project, env)
                done = finished(project, env) if finished is not None and keep is not None else set()
            except NotFound:
                # destroyed: teardown removed its directory, and a pass of ours that raced with it made a file again
                with self._env_lock(project, env):
                    shutil.rmtree(self.env_dir(project, env), ignore_errors=True)
                    self._forget(project, env)
                continue
            except Exception:
                log.exception("log shipper: retention of %s/%s unknown", project, env)
                continue
            with self._env_lock(project, env):
                freed += self.segments(project, env).prune(
                    cap_bytes=self.cap_bytes, older_than=None if keep is None else now - keep)
                if keep is not None:
                    freed += self._prune_raw(project, env, done, now - keep)
        return freed

    def _prune_raw(self, project: str, env: str, finished: set[str], older_than: float) -> int:
        """Remove the raw directories of finished deployments whose every file was shipped to its end and last
        written before `older_than` (their deploy log goes with them: `logs --build -d` then finds nothing)."""
        root = self.env_dir(project, env)
        offsets = self._offsets.get((project, env))
        if offsets is None:
            offsets = _load_offsets(root / RECORDS_DIR / OFFSETS_FILE)
        freed = 0
        for dep in sorted(finished):
            d = root / dep
            try:
                files = [(f, f.stat()) for f in d.iterdir()]
            except (FileNotFoundError, NotADirectoryError):
                continue
            shipped = all(
                st.st_mtime < older_than
                and (lr.raw_source(f.name, environment=env, deployment=dep) is None
                     or (offsets.get(f"{dep}/{f.name}") or {}).get("off") == st.st_size)
                for f, st in files)
            if shipped:
                freed += sum(st.st_blocks * 512 for _, st in files)
                shutil.rmtree(d, ignore_errors=True)
                self._listings.pop(str(d), None)
        return freed

    def enforce_cap(self, project: str, env: str) -> int:
        with self._env_lock(project, env):
            return self.segments(project, env).prune(cap_bytes=self.cap_bytes, older_than=None)

    # --- query ---------------------------------------------------------------------------------------------
    def query(self, project: str, env: str, q: lr.Query, *, limit: int = 100,
              cursor: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Records of an environment matching `q`: with a cursor, those after it (oldest first, at most `limit`);
        without, the last `limit`. With the cursor to ask again from (`logs -f`)."""
        segs = self.segments(project, env)
        keep = lambda r: lr.matches(r, q)  # noqa: E731
        pre = lr.prefilter(q)
        if cursor is not None:
            return segs.forward(cursor, limit=limit, keep=keep, pre=pre)
        since = q.since

        def too_old(r: dict[str, Any]) -> bool:
            ts = lr.parse_time(r.get("time"))
            return since is not None and ts is not None and ts < since - 60  # times are not strictly ordered
        return segs.backward(limit=limit, keep=keep, stop=too_old, pre=pre)


def _complete_lines(path: Path, off: int, *, final: bool = False) -> tuple[list[bytes], int]:
    """Lines from `off` up to the last newline (at most READ_CHUNK bytes; an overlong line is cut); with `final`
    (a file nobody writes any more), a last line without a newline too."""
    try:
        with open(path, "rb") as f:
            f.seek(off)
            data = f.read(READ_CHUNK)
    except FileNotFoundError:
        return [], off
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos, pos + MAX_LINE + 1)
        if nl < 0:
            if len(data) - pos > MAX_LINE:
                out.append(data[pos:pos + MAX_LINE])
                pos += MAX_LINE
                continue
            if final:
                out.append(data[pos:])
                pos = len(data)
            break
        out.append(data[pos:nl])
        pos = nl + 1
    # bytes a hole punch left (zeros) are never shipped: a line of NULs alone is dropped
    return [ln.replace(b"\x00", b"") for ln in out if ln.strip(b"\x00")], off + pos


def _rolled_since(root: Path, ino: int, off: int) -> list[tuple[Path, int]]:
    """Caddy's rolled access logs still to read, oldest first, with where to start: the one that was `access.log`
    (inode `ino`) from `off`, every later one from 0. If that one is gone (Caddy keeps `roll_keep`), all are later."""
    rolled = []
    for p in root.glob("access-*.log"):
        with contextlib.suppress(OSError):
            st = p.stat()
            rolled.append((st.st_mtime_ns, p.name, p, st.st_ino))
    rolled.sort()
    mine = next((i for i, r in enumerate(rolled) if r[3] == ino), None)
    if mine is None:
        return [(p, 0) for _, _, p, _ in rolled]
    return [(rolled[mine][2], off)] + [(p, 0) for _, _, p, _ in rolled[mine + 1:]]


def _load_offsets(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_offsets(path: Path, offsets: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(offsets, sort_keys=True))
    os.replace(tmp, path)
