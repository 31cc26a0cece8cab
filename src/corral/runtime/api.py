"""``corral.Runtime``: the OCI runtime as a Python object.

The same code ``corral-runc`` runs, without a subprocess per call::

    import corral

    rt = corral.Runtime(root="/run/corral")
    code = rt.run("job-1", "/path/to/bundle")          # create, start, wait, delete
    rt.create("web", "/path/to/bundle"); rt.start("web")
    rt.state("web")["status"]                          # "running"
    rt.exec("web", ["cat", "/etc/hostname"])           # exit code of the process
    rt.kill("web", 15); rt.delete("web", force=True)

Errors are corral's exception tree (``corral.CorralError``); nothing is printed.
"""

from __future__ import annotations

from corral.runtime import lifecycle
from corral.runtime.state import DEFAULT_ROOT, StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from typing import Any


class Runtime:
    """One runtime root (a directory of container states) and the verbs that act on it."""

    def __init__(self, root: str = DEFAULT_ROOT, *, cgroups: bool = True) -> None:
        self.store = StateStore(root)
        self.cgroups = cgroups

    def _options(self, detach: bool, **kw: Any) -> lifecycle.CreateOptions:
        opts = lifecycle.CreateOptions()
        opts.detach = detach
        opts.cgroup_manager = "cgroupfs" if self.cgroups else "disabled"
        opts.pid_file = kw.get("pid_file")
        opts.console_socket = kw.get("console_socket")
        opts.no_pivot = bool(kw.get("no_pivot"))
        opts.preserve_fds = int(kw.get("preserve_fds") or 0)
        return opts

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
    ) -> int:
        """Set the container up; its program waits for :meth:`start`. Returns the init's pid."""
        created = lifecycle.create(
            self.store, container_id, bundle,
            self._options(True, pid_file=pid_file, console_socket=console_socket,
                          no_pivot=no_pivot, preserve_fds=preserve_fds),
        )
        return created.container.pid

    def start(self, container_id: str) -> None:
        lifecycle.start(self.store, container_id)

    def run(self, container_id: str, bundle: str, *, keep: bool = False) -> int:
        """Create, start and wait; return the exit code (128+N if killed by signal N)."""
        from corral.runtime.stdio import close, create_foreground

        created, ours = create_foreground(self.store, container_id, bundle, self._options(False))
        try:
            try:
                lifecycle.start(self.store, container_id)
            except BaseException:
                if ours is not None:
                    close(ours)
                raise
            return lifecycle.wait_and_forward(created.container.pid, created.pty_master, ours)
        finally:
            if not keep:
                lifecycle.delete(self.store, container_id, force=True)

    def state(self, container_id: str) -> dict[str, Any]:
        """The OCI state: ociVersion, id, status, pid, bundle, ..."""
        return self.store.load(container_id).oci_state()

    def list(self) -> builtins.list[dict[str, Any]]:
        return [self.store.load(cid).oci_state() for cid in self.store.ids()]

    def kill(self, container_id: str, signal: int = 15, *, all_processes: bool = False) -> None:
        lifecycle.kill(self.store, container_id, signal, all_processes)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        lifecycle.delete(self.store, container_id, force)

    def exec(
        self, container_id: str, args: builtins.list[str], *,
        env: builtins.list[str] | None = None,
        cwd: str | None = None, detach: bool = False,
    ) -> int:
        """Run ``args`` inside the container (its namespaces, cgroup and user); exit code."""
        from corral.runtime.exec import process_from_flags, run_exec

        container = self.store.load(container_id)
        flags: dict[str, Any] = {"env": env or [], "cwd": cwd}
        process = process_from_flags(container.config.get("process") or {}, args, flags)
        return run_exec(container, process, detach=detach)

    def pause(self, container_id: str) -> None:
        from corral.runtime.ops import pause

        pause(self.store, container_id)

    def resume(self, container_id: str) -> None:
        from corral.runtime.ops import resume

        resume(self.store, container_id)

    def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Change linux.resources of a live container (memory, cpu, pids, ...)."""
        from corral.runtime.ops import update

        update(self.store, container_id, resources)

    def pids(self, container_id: str) -> builtins.list[int]:
        from corral.runtime.ops import container_pids

        return container_pids(self.store, container_id)
