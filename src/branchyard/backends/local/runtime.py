"""The local runtime: replicas as process groups on this machine, HTTP health checks, lifecycle hooks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from ...errors import BackendError
from ..ports import HealthResult, Isolation, Placement, ProcessHandle, ResourceUsage
from . import health, hooks, processes
from .netns import NetNs
from .tasks import TaskRecords


class LocalRuntime:
    """RuntimePort on one machine (see processes.py for how a replica outlives the control plane)."""

    def __init__(self, tasks: TaskRecords, *, netns: NetNs | None = None, network_why_not: str | None = None) -> None:
        self.tasks = tasks  # hooks are recorded while they run: the next start kills one a crash left behind
        self.netns = netns  # None: environments share the host network (network_why_not says why)
        self.network_why_not = network_why_not if netns is None else None

    def _netns(self, placement: Placement | None) -> tuple[list[str] | None, str]:
        """(the argv prefix that runs a process in its environment's namespace, the address it is reached at);
        (None, loopback) without isolation or placement."""
        if self.netns is None or placement is None:
            return None, "127.0.0.1"
        net = self.netns.ensure(placement.project, placement.environment)
        return self.netns.exec_prefix(net), net.address

    def forget(self, project: str, environment: str) -> None:
        """The environment is deleted: its namespace and veth go (its processes are stopped already)."""
        if self.netns is not None:
            self.netns.delete(project, environment)

    def free_port(self) -> int:
        return processes.free_port()

    def isolation(self) -> Isolation:
        # issue 17 fills these in (cgroups: backends/local/cgroups.py; namespaces: backends/local/netns.py)
        return Isolation(limits=False, network=self.netns is not None, limits_why_not="resource limits are not enforced yet",
                         network_why_not=self.network_why_not)

    def spawn(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path, port: int,
              placement: Placement | None = None) -> ProcessHandle:
        prefix, host = self._netns(placement)
        return processes.spawn(command, cwd=cwd, env=env, log_path=log_path, port=port, prefix=prefix, host=host)

    def adopt(self, pid: int, start_time: int, port: int, log_path: str, host: str = "127.0.0.1") -> ProcessHandle | None:
        return processes.adopt(pid, start_time, port, log_path, host)

    def is_alive(self, h: ProcessHandle) -> bool:
        return processes.is_alive(h)

    def exit_code(self, h: ProcessHandle) -> int | None:
        return processes.exit_code(h)

    def exit_reason(self, h: ProcessHandle) -> str | None:
        return None

    def stop(self, h: ProcessHandle, *, grace: float) -> None:
        processes.stop(h, grace=grace)

    def tail(self, log_path: Path, lines: int) -> list[str]:
        """The last lines of a log; for a replica's (stdout) log, its stderr's last lines after them (the
        two files do not say how their lines interleave; a crash's last words are on stderr)."""
        out = processes.tail(log_path, lines)
        err = processes.stderr_path(Path(log_path))
        return (out + processes.tail(err, lines))[-lines:] if lines > 0 and err.exists() else out

    def usage(self, h: ProcessHandle) -> ResourceUsage | None:
        return processes.usage(h)

    def probe(self, port: int, path: str | None, *, timeout: float, host: str = "127.0.0.1") -> HealthResult:
        return health.probe(port, path, timeout=timeout, host=host)

    def wait_healthy(self, h: ProcessHandle, path: str | None, *, timeout: float,
                     progress: Callable[[str], None] | None = None) -> HealthResult:
        return health.wait_healthy(h.port, path, timeout=timeout, alive=lambda: processes.is_alive(h),
                                   exit_code=lambda: processes.exit_code(h), progress=progress, host=h.host)

    def run_check(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                  placement: Placement | None = None) -> tuple[int | None, str]:
        prefix, _ = self._netns(placement)
        try:
            proc = subprocess.Popen([*(prefix or ()), *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            raise BackendError(err.strerror or type(err).__name__) from None
        # recorded while it runs: a check the control plane's death cut off is killed at the next start (the
        # post-deploy tests then run again, controller/verify.py)
        try:
            with self.tasks.running(proc.pid, f"check: {argv[-1]}"):
                try:
                    output, _ = proc.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    processes.kill_group(proc.pid)
                    output, _ = proc.communicate()
                    return None, output.decode(errors="replace")
                return proc.returncode, output.decode(errors="replace")
        finally:
            if proc.poll() is None:  # it could not be recorded: never left running unrecorded
                processes.kill_group(proc.pid)
                proc.communicate()

    def run_hook(self, command: str, *, cwd: Path, env: dict[str, str], out: Callable[[str], None], timeout: float,
                 placement: Placement | None = None) -> None:
        prefix, _ = self._netns(placement)
        hooks.run_hook(command, cwd=cwd, env=env, out=out, timeout=timeout, tasks=self.tasks, prefix=prefix)
