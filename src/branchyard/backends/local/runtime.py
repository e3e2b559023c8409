"""The local runtime: replicas as process groups on this machine, HTTP health checks, lifecycle hooks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from ...errors import BackendError, DeployFailed
from ..ports import HealthResult, Isolation, Placement, ProcessHandle, ResourceUsage
from . import health, hooks, processes
from .cgroups import Cgroups, Group, ReplicaLimits
from .netns import NetNs
from .tasks import TaskRecords


class LocalRuntime:
    """RuntimePort on one machine (see processes.py for how a replica outlives the control plane)."""

    def __init__(self, tasks: TaskRecords, *, cgroups: Cgroups | None = None, netns: NetNs | None = None,
                 network_why_not: str | None = None) -> None:
        self.tasks = tasks  # hooks are recorded while they run: the next start kills one a crash left behind
        self.limits = ReplicaLimits(cgroups)  # a cgroup per replica, hook and check (cgroups.py); none without
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

    def release_network_if_unused(self) -> None:
        """The control plane failed to start: leave no nft table behind that no environment of the home uses."""
        if self.netns is not None:
            self.netns.release_if_unused()

    def free_port(self) -> int:
        return processes.free_port()

    def isolation(self) -> Isolation:
        # cgroups: backends/local/cgroups.py; namespaces: backends/local/netns.py
        return Isolation(limits=self.limits.enforced, network=self.netns is not None,
                         limits_why_not=self.limits.why_not, network_why_not=self.network_why_not)

    def spawn(self, command: str, *, cwd: Path, env: dict[str, str], log_path: Path, port: int,
              placement: Placement | None = None) -> ProcessHandle:
        prefix, host = self._netns(placement)
        prelude, group = self._place(placement)
        h = None
        try:
            h = processes.spawn(command, cwd=cwd, env=env, log_path=log_path, port=port, prelude=prelude,
                                prefix=prefix, host=host)
        finally:
            self.limits.placed(None if h is None else (h.pid, h.start_time), group)
        return h

    def _place(self, placement: Placement | None) -> tuple[str, Group | None]:
        try:
            return self.limits.place(placement)
        except OSError as exc:
            raise BackendError(exc.strerror or str(exc)) from None

    def adopt(self, pid: int, start_time: int, port: int, log_path: str, host: str = "127.0.0.1") -> ProcessHandle | None:
        h = processes.adopt(pid, start_time, port, log_path, host)
        if h is not None:
            self.limits.adopted((h.pid, h.start_time))
        return h

    def is_alive(self, h: ProcessHandle) -> bool:
        alive = processes.is_alive(h)
        if alive:  # a replica of an earlier control plane: its group, so that an OOM kill is known when it ends
            self.limits.adopted((h.pid, h.start_time))
        else:
            self.limits.finished((h.pid, h.start_time))  # what its cgroup recorded (an OOM kill), then the group goes
        return alive

    def exit_code(self, h: ProcessHandle) -> int | None:
        return processes.exit_code(h)

    def exit_reason(self, h: ProcessHandle) -> str | None:
        if not processes.is_alive(h):
            self.limits.finished((h.pid, h.start_time))
        return self.limits.reason((h.pid, h.start_time))

    def stop(self, h: ProcessHandle, *, grace: float) -> None:
        processes.stop(h, grace=grace)
        self.limits.finished((h.pid, h.start_time))

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
        res = health.wait_healthy(h.port, path, timeout=timeout, alive=lambda: processes.is_alive(h),
                                  exit_code=lambda: processes.exit_code(h), progress=progress, host=h.host)
        reason = None if res.ok else self.exit_reason(h)
        if reason:  # killed by the OOM killer in its cgroup: the deploy fails saying so
            code = processes.exit_code(h)
            return HealthResult(False, f"{reason} (killed, exit {'unknown' if code is None else code})")
        return res

    def run_check(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                  placement: Placement | None = None) -> tuple[int | None, str]:
        try:
            with self.limits.task(placement) as task:
                # in its cgroup, but on the host's network: a check (smoke test, post-deploy test) reaches the
                # environment through the router, by its public URL, as its users do
                return self._run_check(argv, cwd=cwd, env=env, timeout=timeout, prelude=task.prelude, prefix=None)
        except OSError as exc:
            raise BackendError(exc.strerror or str(exc)) from None

    def _run_check(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
                   prelude: str, prefix: list[str] | None) -> tuple[int | None, str]:
        label = argv[-1]
        argv = [*(prefix or ()), *argv]  # in the environment's network namespace (`ip netns exec NS`)
        if prelude:  # a shell joins the cgroup first (outside the namespace's own /sys), then becomes the check
            argv = ["/bin/sh", "-c", f'{prelude}\nexec "$@"', "sh", *argv]
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as err:
            raise BackendError(err.strerror or type(err).__name__) from None
        # recorded while it runs: a check the control plane's death cut off is killed at the next start (the
        # post-deploy tests then run again, controller/verify.py)
        try:
            with self.tasks.running(proc.pid, f"check: {label}"):
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
        failed: DeployFailed | None = None
        try:
            with self.limits.task(placement) as task:
                try:
                    hooks.run_hook(command, cwd=cwd, env=env, out=out, timeout=timeout, tasks=self.tasks,
                                   prelude=task.prelude, prefix=self._netns(placement)[0])
                except DeployFailed as err:
                    failed = err
        except OSError as exc:
            raise BackendError(exc.strerror or str(exc)) from None
        if failed is not None and task.oom:  # the OOM killer's SIGKILL is not the timeout's
            raise DeployFailed(f"`{command}` {task.oom} (killed); the previous deployment keeps serving") from None
        if failed is not None:
            raise failed
