"""Busybox bundles for tests: one template per session, a cheap copy per test.

The template is made once with ``corral.bundle.make_busybox_bundle``. A copy re-creates the
directories and the ~270 applet symlinks, copies the small files (config.json, etc/*) so a test
may edit them, and hard-links the 2 MB busybox binary. If a test ever writes to its busybox (the
template's inode changes), the template's binary is restored before the next copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class Bundle:
    """An OCI bundle directory: ``rootfs/`` and ``config.json``. ``os.fspath(bundle)`` is its path.

    >>> bundle.set(args=["sh", "-c", "echo hi"], hostname="box")
    >>> with bundle.edit() as config:
    ...     config["process"]["env"].append("FOO=bar")
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r})"

    @property
    def rootfs(self) -> Path:
        return self.path / "rootfs"

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def read_config(self) -> dict[str, Any]:
        with open(self.config_path, encoding="utf-8") as f:
            config: dict[str, Any] = json.load(f)
        return config

    def write_config(self, config: dict[str, Any]) -> None:
        tmp = self.config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.config_path)

    @contextlib.contextmanager
    def edit(self) -> Iterator[dict[str, Any]]:
        """Read config.json, let the caller change the dict, write it back (unless it raised)."""
        config = self.read_config()
        yield config
        self.write_config(config)

    def set(
        self,
        *,
        args: list[str] | None = None,
        hostname: str | None = None,
        terminal: bool | None = None,
        cwd: str | None = None,
        env: list[str] | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
    ) -> Bundle:
        """Change the common fields of config.json in one write; returns the bundle."""
        with self.edit() as config:
            process = config["process"]
            if args is not None:
                process["args"] = list(args)
            if terminal is not None:
                process["terminal"] = terminal
            if cwd is not None:
                process["cwd"] = cwd
            if env is not None:
                process["env"] = list(env)
            if hostname is not None:
                config["hostname"] = hostname
            if edit is not None:
                edit(config)
        return self


class BundleTemplate:
    """A busybox bundle made once (per session) and copied cheaply for each test.

    The tree is read once into memory (directories and modes, symlinks, the small files'
    bytes), so a copy is ~270 symlink(2) calls, a few mkdir/write calls and one link(2): 10-25 ms
    on this VM's ext4, where shutil.copytree took 70 ms.
    """

    def __init__(self, path: Path, busybox: str = "/bin/busybox") -> None:
        self.path = path
        self.busybox = busybox
        self._binary = path / "rootfs" / "bin" / "busybox"
        self._fingerprint = self._stat()
        self._dirs: list[tuple[str, int]] = []
        self._links: list[tuple[str, str]] = []
        self._files: list[tuple[str, bytes, int]] = []
        self._hardlinks: list[str] = []
        for dirpath, dirnames, filenames in os.walk(path):
            rel = os.path.relpath(dirpath, path)
            for name in sorted(dirnames + filenames):
                full = os.path.join(dirpath, name)
                relname = os.path.normpath(os.path.join(rel, name))
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    self._links.append((relname, os.readlink(full)))
                elif stat.S_ISDIR(st.st_mode):
                    self._dirs.append((relname, stat.S_IMODE(st.st_mode)))
                elif full == str(self._binary):
                    self._hardlinks.append(relname)
                else:
                    data = Path(full).read_bytes()
                    self._files.append((relname, data, stat.S_IMODE(st.st_mode)))
        # os.walk lists symlinks to directories among dirnames; nothing here links to one.

    @classmethod
    def build(cls, path: Path, busybox: str = "/bin/busybox") -> BundleTemplate:
        from corral.bundle import make_busybox_bundle

        make_busybox_bundle(str(path), busybox=busybox)
        return cls(path, busybox)

    def _stat(self) -> tuple[int, int]:
        st = self._binary.stat()
        return st.st_size, st.st_mtime_ns

    def copy(self, dest: Path) -> Bundle:
        """Copy to ``dest`` (which must not exist): busybox is hard-linked, the rest copied."""
        if self._stat() != self._fingerprint:  # a test wrote through its hard link: restore
            tmp = self._binary.with_name(".busybox.restore")
            shutil.copyfile(self.busybox, tmp)
            tmp.chmod(0o755)
            tmp.replace(self._binary)
            self._fingerprint = self._stat()
        os.mkdir(dest, 0o755)
        base = str(dest) + "/"
        for rel, mode in self._dirs:  # os.walk is top-down: parents come first
            os.mkdir(base + rel)
            os.chmod(base + rel, mode)  # mkdir's mode is filtered by the umask
        for rel, target in self._links:
            os.symlink(target, base + rel)
        for rel, data, mode in self._files:
            fd = os.open(base + rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode)
            finally:
                os.close(fd)
        for rel in self._hardlinks:
            os.link(os.path.join(self.path, rel), base + rel)
        return Bundle(dest)


class BundleFactory:
    """Fresh copies of a template under ``dest``; call it to get a new :class:`Bundle`."""

    def __init__(self, template: BundleTemplate, dest: Path) -> None:
        self.template = template
        self.dest = dest
        self._count = 0

    def __call__(
        self,
        args: list[str] | None = None,
        *,
        hostname: str | None = None,
        terminal: bool | None = None,
        cwd: str | None = None,
        env: list[str] | None = None,
        edit: Callable[[dict[str, Any]], None] | None = None,
        name: str | None = None,
    ) -> Bundle:
        """A new bundle directory (``bundle``, ``bundle-2``, ... or ``name``) with those settings.

        ``edit`` is called with the config dict for anything else, e.g.
        ``edit=lambda c: c["linux"]["namespaces"].remove({"type": "network"})``.
        """
        self._count += 1
        if name is None:
            name = "bundle" if self._count == 1 else f"bundle-{self._count}"
        bundle = self.template.copy(self.dest / name)
        if any(x is not None for x in (args, hostname, terminal, cwd, env, edit)):
            bundle.set(
                args=args, hostname=hostname, terminal=terminal, cwd=cwd, env=env, edit=edit
            )
        return bundle
