"""Make a small OCI bundle whose root filesystem is a statically linked busybox.

The bundle is what ``runc spec`` would write, around a rootfs that needs nothing from the host::

    PATH/config.json        corral.spec.defaults.default_spec(), with args, terminal, hostname
    PATH/rootfs/bin/busybox a copy of Debian's busybox-static (one static binary, no libraries)
    PATH/rootfs/bin/<applet> -> busybox, one symlink per applet (sh, ls, ps, ip, ...)
    PATH/rootfs/etc/        passwd, group, hostname, hosts
    PATH/rootfs/{dev,proc,sys,tmp,root,home,run,var}

Standard library only (os, plus subprocess for ``busybox --list``): the tests import it.

It is the demo bundle (``scripts/install.sh`` builds one at /var/lib/corral/bundles/busybox) and
the tests' bundle. Making it again over an existing bundle is safe: files are replaced
atomically, so a container that is running from it is not disturbed.

From a shell::

    python -m corral.bundle [--hostname NAME] [--terminal] PATH [--] [ARGS...]
"""

from __future__ import annotations

import os

from corral._json import dumps

# Directories of the rootfs and their modes; /tmp is world-writable and sticky, as on a host.
_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "var": 0o755,
}

_PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""

_GROUP = """\
root:x:0:
nogroup:x:65534:
"""

_HOSTS = """\
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
"""

DEFAULT_BUSYBOX = "/bin/busybox"


def make_busybox_bundle(
    path: str,
    args: list[str] | None = None,
    *,
    hostname: str = "corral",
    terminal: bool = False,
    busybox: str = DEFAULT_BUSYBOX,
) -> str:
    """Create (or refresh) a busybox bundle at ``path`` and return ``path``.

    ``args`` is the container's command (``["sh"]`` when empty or None). ``busybox`` must be a
    statically linked busybox: it is copied into the rootfs, where there are no libraries.
    """
    from corral.spec.defaults import default_spec

    rootfs = os.path.join(path, "rootfs")
    os.makedirs(rootfs, mode=0o755, exist_ok=True)
    for name, mode in _DIRS.items():
        target = os.path.join(rootfs, name)
        os.makedirs(target, exist_ok=True)
        os.chmod(target, mode)

    bindir = os.path.join(rootfs, "bin")
    _copy_file(busybox, os.path.join(bindir, "busybox"), 0o755)
    for applet in _applets(busybox):
        if applet != "busybox" and "/" not in applet:
            _symlink("busybox", os.path.join(bindir, applet))

    etc = os.path.join(rootfs, "etc")
    _write(os.path.join(etc, "passwd"), _PASSWD)
    _write(os.path.join(etc, "group"), _GROUP)
    _write(os.path.join(etc, "hosts"), _HOSTS)
    _write(os.path.join(etc, "hostname"), hostname + "\n")

    spec = default_spec()
    process = spec["process"]
    assert isinstance(process, dict)
    process["args"] = list(args) if args else ["sh"]
    process["terminal"] = terminal
    spec["hostname"] = hostname
    _write(os.path.join(path, "config.json"), dumps(spec, indent=2) + "\n")
    return path


def _applets(busybox: str) -> list[str]:
    """The applet names that ``busybox --list`` prints, one a line."""
    import subprocess

    done = subprocess.run(
        [busybox, "--list"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, check=False
    )
    if done.returncode != 0:
        raise ValueError(f"{busybox} --list exited with status {done.returncode}")
    return [line for line in os.fsdecode(done.stdout).splitlines() if line]


def _write(target: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to ``target`` atomically (temporary file, then rename)."""
    tmp = f"{target}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise


def _copy_file(source: str, target: str, mode: int) -> None:
    """Copy ``source`` over ``target`` by rename, so a running ``target`` is not touched."""
    tmp = f"{target}.tmp-{os.getpid()}"
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            size = os.fstat(src).st_size
            copied = 0
            while copied < size:
                n = os.sendfile(dst, src, copied, size - copied)
                if n == 0:
                    break
                copied += n
            os.fchmod(dst, mode)
        finally:
            os.close(dst)
        os.replace(tmp, target)
    except BaseException:
        _unlink(tmp)
        raise
    finally:
        os.close(src)


def _symlink(link_target: str, name: str) -> None:
    try:
        if os.readlink(name) == link_target:
            return
    except OSError:
        pass
    tmp = f"{name}.tmp-{os.getpid()}"
    _unlink(tmp)
    os.symlink(link_target, tmp)
    os.replace(tmp, name)


def _unlink(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m corral.bundle``: make a busybox bundle and print its path."""
    import argparse
    import sys

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m corral.bundle",
        description="Make an OCI bundle whose rootfs is a static busybox.",
    )
    parser.add_argument("--hostname", default="corral", help="the container's hostname")
    parser.add_argument(
        "-t", "--terminal", action="store_true", help="set process.terminal (needs a console)"
    )
    parser.add_argument(
        "--busybox", default=DEFAULT_BUSYBOX, help="a statically linked busybox to copy"
    )
    parser.add_argument("path", help="the bundle directory (created if missing)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="the command (default: sh)")
    ns = parser.parse_args(argv)
    args = list(ns.args)
    if args[:1] == ["--"]:
        del args[0]
    try:
        make_busybox_bundle(
            ns.path, args, hostname=ns.hostname, terminal=ns.terminal, busybox=ns.busybox
        )
    except (OSError, ValueError) as err:
        print(f"corral.bundle: {err}", file=sys.stderr)
        return 1
    print(ns.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
