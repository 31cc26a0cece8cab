"""``corral.Runtime``: the OCI runtime as a Python object, and the one way to drive it.

``corral-runc`` (cli/runc.py) and the engine call these methods; so can any Python program, with
the same code and no subprocess per call::

    import corral

    rt = corral.Runtime(root="/run/corral")
    code = rt.run("job-1", "/path/to/bundle")          # create, start, wait, delete
    rt.create("web", "/path/to/bundle"); rt.start("web")
    rt.state("web")["status"]                          # "running"
    rt.exec("web", ["cat", "/etc/hostname"])           # exit code of the process
    rt.kill("web", 15); rt.delete("web", force=True)

Errors are corral's exception tree (``corral.CorralError``); nothing is printed.

``create`` and ``run`` load the machinery that builds a container (corral.runtime.lifecycle)
when called; ``state``, ``start``, ``kill`` and ``delete`` need only corral.runtime.state and
corral.runtime.control, which is what ``corral-runc``'s start-up pays for those verbs; and
``create`` loads no part of corral.runtime.control (it is 16 KB of bytecode; a failed create
imports it to clean up).
"""

from corral.runtime.state import DEFAULT_ROOT, StateStore

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable
    from typing import Any

    from corral.runtime.lifecycle import CreateOptions


class Runtime:
    """One runtime root (a directory of container states) and the verbs that act on it."""

    def __init__(self, root: str = DEFAULT_ROOT, *, cgroups: bool = True) -> None:
        self.store = StateStore(root)
        self.cgroups = cgroups

    def _options(self, options: "CreateOptions | None") -> "CreateOptions":
        if options is None:
            from corral.runtime.lifecycle import CreateOptions

            options = CreateOptions()
        if not self.cgroups:
            options.cgroup_manager = "disabled"
        return options

    def create(self, container_id: str, bundle: str, options: "CreateOptions | None" = None) -> int:
        """Set the container up; its program waits for :meth:`start`. Returns the init's pid.

        The container keeps the caller's stdio (as ``runc create``), or gets a terminal sent to
        ``options.console_socket``.
        """
        from corral.runtime import lifecycle

        opts = self._options(options)
        opts.detach = True
        return lifecycle.create(self.store, container_id, bundle, opts).container.pid

    def start(self, container_id: str) -> None:
        from corral.runtime import control

        control.start(self.store, container_id)

    def run(
        self,
        container_id: str,
        bundle: str,
        options: "CreateOptions | None" = None,
        *,
        detach: bool = False,
        keep: bool = False,
        started: "Callable[[int], None] | None" = None,
    ) -> int:
        """Create and start; unless ``detach``, wait and return the exit code (128+N if killed
        by signal N), then delete unless ``keep``.

        In the foreground the container's stdio are pipes copied to and from ours (a terminal
        is proxied), and the signals we get are passed on to it from before ``start``; detached,
        it keeps our stdio. ``started(pid)`` is called once the program runs. Returns 0 when
        detached.
        """
        from corral.runtime import control, lifecycle

        opts = self._options(options)
        opts.detach = detach
        ours = None
        handlers: dict[int, Any] = {}
        if detach:
            created = lifecycle.create(self.store, container_id, bundle, opts)
        else:  # pipes we copy (corral.runtime.stdio), or the terminal we proxy
            from corral.runtime.stdio import create_foreground

            created, ours = create_foreground(self.store, container_id, bundle, opts)
            handlers = lifecycle.forward_signals(created.container.pid)
        pid = created.container.pid
        try:
            try:
                control.start(self.store, container_id)
                if started is not None:
                    started(pid)
            except BaseException:
                if ours is not None:
                    from corral.runtime.stdio import close

                    close(ours)
                control.delete(self.store, container_id, force=True)
                raise
            if detach:
                return 0
            try:
                return lifecycle.wait_and_forward(pid, created.pty_master, ours)
            finally:
                if not keep:
                    control.delete(self.store, container_id, force=True)
        finally:
            lifecycle.restore_signals(handlers)

    def state(self, container_id: str) -> "dict[str, Any]":
        """The OCI state: ociVersion, id, status, pid, bundle, ..."""
        return self.store.load(container_id).oci_state()

    def list(self) -> "builtins.list[dict[str, Any]]":
        return [self.store.load(cid).oci_state() for cid in self.store.ids()]

    def kill(self, container_id: str, signal: int = 15, *, all_processes: bool = False) -> None:
        from corral.runtime import control

        control.kill(self.store, container_id, signal, all_processes)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        from corral.runtime import control

        control.delete(self.store, container_id, force)

    def exec(
        self,
        container_id: str,
        args: "builtins.list[str] | None" = None,
        *,
        process: "dict[str, Any] | None" = None,
        env: "builtins.list[str] | None" = None,
        cwd: str | None = None,
        user: tuple[int, int] | None = None,
        terminal: bool = False,
        detach: bool = False,
        console_socket: str | None = None,
        pid_file: str | None = None,
        preserve_fds: int = 0,
        ignore_paused: bool = False,
    ) -> int:
        """Run a process inside the container (its namespaces, cgroups, user, capabilities and
        seccomp filter); its exit code, or 0 when ``detach``.

        Give ``args`` (with ``env`` added to the container's environment, and ``cwd``, ``user``
        as (uid, gid), ``terminal``), or a whole runtime-spec ``process`` object.
        """
        from corral.errors import UsageError
        from corral.runtime.exec import process_like, run_exec

        container = self.store.load(container_id)
        if process is None:
            if not args:
                raise UsageError("exec: args must not be empty (give a command or a process)")
            process = process_like(
                container.config.get("process") or {},
                args,
                env=env,
                cwd=cwd,
                user=user,
                terminal=terminal,
            )
        return run_exec(
            container,
            process,
            detach=detach,
            console_socket=console_socket,
            pid_file=pid_file,
            preserve_fds=preserve_fds,
            ignore_paused=ignore_paused,
        )

    def pause(self, container_id: str) -> None:
        from corral.runtime.ops import pause

        pause(self.store, container_id)

    def resume(self, container_id: str) -> None:
        from corral.runtime.ops import resume

        resume(self.store, container_id)

    def update(self, container_id: str, resources: "dict[str, Any]") -> None:
        """Change linux.resources of a live container (memory, cpu, pids, ...)."""
        from corral.runtime.ops import update

        update(self.store, container_id, resources)

    def stats(self, container_id: str) -> "dict[str, Any]":
        """The cgroup's counters, shaped like runc's ``events --stats`` data."""
        from corral.runtime.ops import stats

        return stats(self.store, container_id)

    def pids(self, container_id: str) -> "builtins.list[int]":
        from corral.runtime.ops import container_pids

        return container_pids(self.store, container_id)
