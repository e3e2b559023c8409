"""fetch_commit against real git and real (loopback) HTTP servers that fail: the error names what failed, never the
credentials of the upstream URL (https://user:token@host/...)."""

from __future__ import annotations

import http.server
import logging
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from branchyard.errors import BackendError
from branchyard.server import LOG_FORMAT, ScrubbingFormatter
from branchyard.triggers import gitremote

PASSWORD = "s3cret-upstream-token-9"
SHA = "0123456789abcdef0123456789abcdef01234567"


class _Garbage(http.server.BaseHTTPRequestHandler):
    """A server git takes for a "dumb" HTTP remote whose objects are corrupt: git's errors quote the URL as given."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.startswith("/denied/"):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"not a git object")

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass


@pytest.fixture
def garbage_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def silent_server():
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def bare(tmp_path) -> Path:
    repo = tmp_path / "project.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    return repo


def test_git_itself_quotes_the_password_here(bare, garbage_server):
    """The premise: without scrubbing, git's output for this upstream holds the password."""
    url = f"http://user:{PASSWORD}@127.0.0.1:{garbage_server}/repo.git"
    done = subprocess.run(["git", f"--git-dir={bare}", "fetch", "--quiet", "--", url, SHA], capture_output=True,
                          text=True, timeout=60, env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/bin:/bin"})
    assert done.returncode != 0 and PASSWORD in done.stderr


@pytest.mark.parametrize("path", ["repo.git", "denied/repo.git"])
def test_a_failed_fetch_never_names_the_upstream_credentials(bare, garbage_server, path):
    url = f"http://user:{PASSWORD}@127.0.0.1:{garbage_server}/{path}"
    with pytest.raises(BackendError) as err:
        gitremote.fetch_commit(bare, url, SHA, refs=("refs/pull/7/head",))
    message = str(err.value)
    assert PASSWORD not in message and "user:" not in message
    assert message.startswith(f"commit {SHA[:12]} could not be fetched from the project's upstream "
                              f"http://***@127.0.0.1:{garbage_server}/{path}: ")


def test_a_fetch_that_hangs_times_out_without_the_command_line(bare, silent_server, monkeypatch):
    monkeypatch.setattr(gitremote, "FETCH_TIMEOUT", 1.5)
    url = f"https://user:{PASSWORD}@127.0.0.1:{silent_server}/repo.git"
    with pytest.raises(BackendError) as err:  # not subprocess.TimeoutExpired, whose text is the argv with the URL
        gitremote.fetch_commit(bare, url, SHA)
    assert str(err.value) == (f"commit {SHA[:12]} could not be fetched from the project's upstream "
                              f"https://***@127.0.0.1:{silent_server}/repo.git: git fetch timed out after 1.5s")


def test_server_log_lines_and_tracebacks_are_scrubbed():
    record = None
    try:
        raise subprocess.TimeoutExpired(["git", "fetch", f"https://user:{PASSWORD}@host/r.git"], 300)
    except subprocess.TimeoutExpired:
        record = logging.LogRecord("branchyard.x", logging.ERROR, __file__, 1, "fetch %s failed",
                                   (f"https://user:{PASSWORD}@host/r.git",), exc_info=__import__("sys").exc_info())
    line = ScrubbingFormatter(LOG_FORMAT).format(record)
    assert PASSWORD not in line and "fetch https://***@host/r.git failed" in line and "Traceback" in line
