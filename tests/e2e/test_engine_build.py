"""``corral build`` as a user types it: multi-stage from scratch, cache, errors, push to peers.

The static program is built without any compiler image: ``corral image from-host`` makes an
image of the host's binutils (``as`` and ``ld`` and their libraries), a stage of it assembles
and links a tiny x86-64 program, and ``FROM scratch`` gets only the program.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from helpers.engine import corral

HELLO_S = """\
        .globl _start
        .text
_start:
        mov     $1, %eax            # write(1, msg, len)
        mov     $1, %edi
        lea     msg(%rip), %rsi
        mov     $len, %edx
        syscall
        mov     $60, %eax           # exit(0)
        xor     %edi, %edi
        syscall
        .data
msg:    .ascii  "hello from a static program\\n"
        len = . - msg
"""

MULTI_STAGE = """\
# build a static program with the host's binutils, ship it alone
FROM asld AS build
COPY hello.s /src/
RUN ["/usr/bin/as", "-o", "/src/hello.o", "/src/hello.s"]
RUN ["/usr/bin/ld", "-static", "-o", "/hello", "/src/hello.o"]

FROM scratch
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]
"""

needs_x86_binutils = pytest.mark.skipif(
    os.uname().machine != "x86_64" or not (shutil.which("as") and shutil.which("ld")),
    reason="the test program is x86-64 assembly, built with the host's binutils",
)


def build(
    root: Path, context: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return corral(root, "build", *args, str(context), check=check)


def leftovers(root: Path) -> dict[str, object]:
    """What a build may not leave behind: active snapshots, container dirs, mounts."""
    import sqlite3

    db = sqlite3.connect(root / "corral.db")
    active = db.execute("SELECT key FROM snapshots WHERE kind = 'active'").fetchall()
    images = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    db.close()
    containers = sorted(os.listdir(root / "containers")) if (root / "containers").exists() else []
    with open("/proc/self/mountinfo") as f:
        mounts = [line for line in f if str(root) in line]
    return {"active": active, "containers": containers, "mounts": mounts, "images": images}


@needs_x86_binutils
def test_multi_stage_static_program_into_scratch(root: Path, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.s").write_text(HELLO_S)
    (context / "Containerfile").write_text(MULTI_STAGE)
    corral(root, "image", "from-host", "asld", "/usr/bin/as", "/usr/bin/ld")
    done = build(root, context, "-t", "hello:1")
    lines = done.stdout.splitlines()
    assert lines[0] == "[1/2] STEP 1/4: FROM asld AS build"
    assert '[1/2] STEP 3/4: RUN ["/usr/bin/as", "-o", "/src/hello.o", "/src/hello.s"]' in lines
    assert "[2/2] STEP 2/3: COPY --from=build /hello /hello" in lines
    assert lines[-1].startswith("sha256:")
    run = corral(root, "run", "--rm", "hello:1")
    assert run.stdout == "hello from a static program\n"
    inspect = json.loads(corral(root, "image", "inspect", "hello:1").stdout)[0]
    assert inspect["Config"]["Entrypoint"] == ["/hello"]
    assert len(inspect["RootFS"]["Layers"]) == 1  # scratch + one COPY: the program alone
    assert inspect["Size"] < 64 * 1024
    # history: one line per step of the final stage (FROM scratch adds none, as docker)
    history = corral(root, "history", "hello:1").stdout.splitlines()[1:]
    assert len(history) == 2
    assert 'ENTRYPOINT ["/hello"]' in history[0]
    assert "COPY --from=build /hello /hello" in history[1]
    # a stage built FROM an image: the base image's history lines, then one per step
    base_lines = len(corral(root, "history", "asld").stdout.splitlines()) - 1
    corral(root, "build", "--target", "build", "-t", "stage:1", str(context))
    assert len(corral(root, "history", "stage:1").stdout.splitlines()) - 1 == base_lines + 3
    assert leftovers(root)["active"] == []


def test_cache_hits_and_a_changed_copy_source_rebuilds_from_its_step(
    root: Path, tmp_path: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "a.txt").write_text("a\n")
    (context / "b.txt").write_text("b1\n")
    (context / "Containerfile").write_text(
        "FROM busybox\n"
        "COPY a.txt /a.txt\n"
        "RUN cat /a.txt > /first\n"
        "COPY b.txt /b.txt\n"
        "RUN cat /a.txt /b.txt > /second\n"
        'CMD ["cat", "/second"]\n'
    )
    first = build(root, context, "-t", "c:1")
    assert "Using cache" not in first.stdout
    second = build(root, context, "-t", "c:2")
    assert second.stdout.count("--> Using cache") == 4  # every COPY and RUN
    (context / "b.txt").write_text("b2\n")
    third = build(root, context, "-t", "c:3").stdout.splitlines()
    at = {line.split(":")[0]: i for i, line in enumerate(third) if line.startswith("STEP")}
    cached = [third[at[f"STEP {n}/6"] + 1].startswith("--> Using cache") for n in (2, 3, 4, 5)]
    assert cached == [True, True, False, False]
    assert corral(root, "run", "--rm", "c:3").stdout == "a\nb2\n"
    assert corral(root, "run", "--rm", "c:2").stdout == "a\nb1\n"
    # --no-cache runs everything again; the layers it makes are the same content
    fresh = build(root, context, "--no-cache", "-t", "c:4")
    assert "Using cache" not in fresh.stdout
    # the cache outlives the images that used it: rmi all, rebuild, the blobs come back
    for tag in ("c:1", "c:2", "c:3", "c:4"):
        corral(root, "rmi", tag)
    again = build(root, context, "-t", "c:5")
    assert again.stdout.count("--> Using cache") == 4
    assert corral(root, "run", "--rm", "c:5").stdout == "a\nb2\n"
    pruned = corral(root, "builder", "prune", "-f").stdout
    assert pruned.startswith("Deleted build cache objects:")
    assert "Using cache" not in build(root, context, "-t", "c:6").stdout


@pytest.mark.parametrize(
    ("containerfile", "message"),
    [
        ("FROM busybox\nRUN true\nRUNN true\n", "Containerfile:3: unknown instruction: RUNN"),
        ('FROM busybox\nCMD ["a", \n', "Containerfile:2: CMD: bad JSON array"),
        ("FROM busybox\n\nCOPY nope.txt /x\n", "Containerfile:3: COPY: nope.txt: no such file"),
        (
            "FROM busybox\nRUN true\nRUN echo out; exit 3\n",
            "Containerfile:3: RUN echo out; exit 3: exit code 3",
        ),
        ("FROM nothing:here\n", "Containerfile:1: FROM: base image 'nothing:here'"),
        ("FROM busybox\nENV\n", "Containerfile:2: ENV requires at least 1 argument"),
    ],
    ids=["unknown", "json", "copy-source", "run-exit", "no-base", "arity"],
)
def test_errors_name_the_line_and_leave_nothing(
    root: Path, tmp_path: Path, containerfile: str, message: str
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Containerfile").write_text(containerfile)
    corral(root, "image", "busybox")
    before = leftovers(root)
    done = build(root, context, "-t", "bad:1", check=False)
    assert done.returncode == 1, done
    errors = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert errors[-1].startswith("Error: ") and message in errors[-1], done.stderr
    assert leftovers(root) == before  # no image, snapshot, container dir or mount
    repositories = [line.split()[0] for line in corral(root, "images").stdout.splitlines()]
    assert "bad" not in repositories  # (an image id may well hold "bad")


def test_dockerignore_build_args_and_target(root: Path, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    (context / "sub").mkdir(parents=True)
    for name in ("keep.txt", "secret.env", "sub/x.log", "sub/y.txt"):
        (context / name).write_text(name + "\n")
    (context / ".dockerignore").write_text("secret.env\n**/*.log\n")
    (context / "Containerfile").write_text(
        "ARG FLAVOR=plain\n"
        "FROM busybox AS one\n"
        "ARG FLAVOR\n"
        "ENV FLAVOR=$FLAVOR\n"
        "COPY . /ctx/\n"
        "RUN find /ctx -type f | sort > /list && echo $FLAVOR > /flavor\n"
        "FROM one AS two\n"
        "RUN false\n"
    )
    build(root, context, "--target", "one", "--build-arg", "FLAVOR=spicy", "-t", "one:1")
    listing = corral(root, "run", "--rm", "one:1", "cat", "/list", "/flavor").stdout
    assert (
        listing == "/ctx/.dockerignore\n/ctx/Containerfile\n/ctx/keep.txt\n/ctx/sub/y.txt\nspicy\n"
    )
    config = json.loads(corral(root, "image", "inspect", "-f", "{{json .Config}}", "one:1").stdout)
    assert "FLAVOR=spicy" in config["Env"]


def test_push_to_registry_skopeo_inspect_podman_runs_it(
    root: Path, tmp_path: Path, registry: str
) -> None:
    """The built image in the local registry: skopeo reads its config, podman pulls and runs
    it with the same result as corral."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "msg").write_text("built by corral\n")
    (context / "Containerfile").write_text(
        "FROM busybox\n"
        "COPY msg /msg\n"
        "RUN cat /msg > /out && echo layer two >> /out && rm /etc/group\n"
        'LABEL org.example.built-by="corral build"\n'
        'CMD ["cat", "/out"]\n'
    )
    build(root, context, "-t", "pushed:1")
    expected = corral(root, "run", "--rm", "pushed:1").stdout
    assert expected == "built by corral\nlayer two\n"
    ref = f"{registry}/build/pushed:1"
    corral(root, "push", "--tls-verify=false", "pushed:1", ref)
    raw = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", "--config", f"docker://{ref}"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    config = json.loads(raw)
    assert config["config"]["Cmd"] == ["cat", "/out"]
    assert config["config"]["Labels"] == {"org.example.built-by": "corral build"}
    assert len(config["rootfs"]["diff_ids"]) == 3
    store = tmp_path / "podman-root"
    run = Path(tempfile.mkdtemp(prefix="podrun-", dir="/tmp"))
    podman = [
        "podman", "--root", str(store), "--runroot", str(run), "--storage-driver", "vfs",
        "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            [
                *podman, "run", "--rm", "--tls-verify=false", "--network", "none",
                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", ref,
            ],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (0, expected), done.stderr
        gone = subprocess.run(
            [*podman, "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
             "--ulimit", "nproc=4096:4096", ref, "cat", "/etc/group"],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert gone.returncode != 0  # the whiteout of the RUN layer hides it there too
    finally:
        subprocess.run([*podman, "system", "reset", "-f"], capture_output=True, timeout=120)
        for path in (run, store):
            subprocess.run(["umount", "-R", "-l", str(path)], capture_output=True)
            shutil.rmtree(path, ignore_errors=True)


def test_system_df_counts_the_build_cache(root: Path, tmp_path: Path) -> None:
    """``system df``'s Build Cache row: the cached steps and their layers' size; builder prune
    empties it."""
    context = tmp_path / "dfctx"
    context.mkdir()
    (context / "Containerfile").write_text("FROM busybox\nRUN echo cached > /f\n")
    corral(root, "build", "-q", "-t", "dfimg", str(context))

    def cache_row() -> list[str]:
        rows = corral(root, "system", "df").stdout.splitlines()
        return next(r.split() for r in rows if r.startswith("Build Cache"))

    row = cache_row()
    assert row[2] != "0" and row[4] != "0B", row  # TOTAL entries, SIZE
    corral(root, "builder", "prune")
    assert cache_row()[2:5] == ["0", "0", "0B"]
