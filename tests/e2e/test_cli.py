"""``corral-runc``'s command line itself: version, help, spec, features, list, and flag syntax.

Where runc 1.1 (installed for comparison) prints something a script may parse (the default
config.json, the ``list`` table, the spec version), the outputs are compared with runc's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from helpers import Bundle, Runc


def real_runc(*args: str | os.PathLike[str], cwd: Path | None = None) -> str:
    return subprocess.run(
        ["runc", *(os.fspath(a) for a in args)],
        capture_output=True, text=True, check=True, cwd=cwd, timeout=30,
    ).stdout


# -- version and help -----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--version", "-version", "-v", "--v"])
def test_version(corral_runc: Runc, flag: str) -> None:
    done = corral_runc(flag, check=True)
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"corral-runc version \d+\.\d+\.\d+\S*", lines[0]), lines
    # The "spec:" line is what tools read to learn the runtime-spec version; runc's is the same.
    theirs = [line for line in real_runc("--version").splitlines() if line.startswith("spec:")]
    assert [line for line in lines if line.startswith("spec:")] == theirs
    assert done.stderr == ""


@pytest.mark.parametrize("flag", ["--help", "-help", "-h", "--h"])
def test_help(corral_runc: Runc, flag: str) -> None:
    done = corral_runc(flag, check=True)
    assert done.stderr == ""
    text = done.stdout
    assert "usage" in text.lower()
    for command in ("spec", "create", "start", "run", "state", "kill", "delete", "list", "ps",
                    "exec", "pause", "resume", "events", "update", "features"):
        assert re.search(rf"\b{command}\b", text), command
    for flag_name in ("--root", "--log", "--log-format", "--systemd-cgroup"):
        assert flag_name in text


def test_no_command_prints_usage(corral_runc: Runc) -> None:
    done = corral_runc()
    assert "usage" in done.stdout.lower()
    assert "Traceback" not in done.stderr


# -- spec -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rootless", [False, True], ids=["default", "rootless"])
def test_spec_matches_runc(corral_runc: Runc, tmp_path: Path, rootless: bool) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    extra = ["--rootless"] if rootless else []
    done = corral_runc("spec", *extra, cwd=ours, check=True)
    assert (done.stdout, done.stderr) == ("", "")
    real_runc("spec", *extra, cwd=theirs)
    config = json.loads((ours / "config.json").read_text())
    assert config == json.loads((theirs / "config.json").read_text())
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert config["process"]["args"] == ["sh"]
    namespaces = {ns["type"] for ns in config["linux"]["namespaces"]}
    assert ("user" in namespaces) == rootless
    assert list(ours.iterdir()) == [ours / "config.json"]


@pytest.mark.parametrize("form", [["--bundle", "{dir}"], ["-b", "{dir}"], ["--bundle={dir}"],
                                  ["-bundle={dir}"]])
def test_spec_bundle_flag(corral_runc: Runc, tmp_path: Path, form: list[str]) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    corral_runc("spec", *(a.replace("{dir}", str(target)) for a in form), cwd=tmp_path,
                check=True)
    assert json.loads((target / "config.json").read_text())["ociVersion"]
    assert not (tmp_path / "config.json").exists()


def test_spec_refuses_to_overwrite(corral_runc: Runc, tmp_path: Path) -> None:
    existing = tmp_path / "config.json"
    existing.write_text('{"mine": true}')
    done = corral_runc("spec", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == "File config.json exists. Remove it first."
    assert existing.read_text() == '{"mine": true}'


def test_spec_unwritable_directory(corral_runc: Runc, tmp_path: Path) -> None:
    done = corral_runc("spec", "--bundle", tmp_path / "missing")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_spec_output_runs(corral_runc: Runc, bundle: Bundle, tmp_path: Path, cid: str) -> None:
    """The default spec is usable as is: put it next to a rootfs and run it."""
    bundle.config_path.unlink()
    corral_runc("spec", "--bundle", bundle, check=True)
    with bundle.edit() as config:
        assert config["process"]["terminal"] is True
        config["process"]["terminal"] = False
        config["process"]["args"] = ["sh", "-c", "echo spec-ok; hostname"]
    done = corral_runc("run", "--bundle", bundle, cid)
    assert (done.returncode, done.stdout) == (0, "spec-ok\nrunc\n"), done.stderr


# -- features -------------------------------------------------------------------------------------


def test_features(corral_runc: Runc) -> None:
    done = corral_runc("features", check=True)
    features = json.loads(done.stdout)
    theirs = json.loads(real_runc("features"))
    assert features["ociVersionMin"] == theirs["ociVersionMin"]
    assert features["ociVersionMax"] == theirs["ociVersionMax"]
    namespaces = features["linux"]["namespaces"]
    assert set(namespaces) >= {"cgroup", "ipc", "mount", "network", "pid", "user", "uts"}
    assert len(namespaces) == len(set(namespaces))
    assert set(features["hooks"]) >= {"prestart", "createRuntime", "createContainer",
                                      "startContainer", "poststart", "poststop"}
    assert "bind" in features["mountOptions"]
    assert "CAP_SYS_ADMIN" in features["linux"]["capabilities"]


# -- list -----------------------------------------------------------------------------------------


HEADER = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]


def test_list_empty_matches_runc(corral_runc: Runc, runc_root: Path, tmp_path: Path) -> None:
    ours = corral_runc("list", check=True).stdout
    assert ours == real_runc("--root", tmp_path / "runc-root", "list")
    assert ours.split() == HEADER
    assert corral_runc("list", "-q", check=True).stdout == ""
    assert json.loads(corral_runc("list", "--format", "json", check=True).stdout) == []


def test_list_missing_root(tmp_path: Path) -> None:
    """A --root that does not exist yet lists nothing (runc prints the header too)."""
    runc = Runc(tmp_path / "never-made")
    assert runc("list", check=True).stdout.split() == HEADER
    assert not (tmp_path / "never-made").exists()


def test_list_containers(
    corral_runc: Runc, runc_root: Path, make_bundle: object, tmp_path: Path
) -> None:
    from helpers import new_cid

    ids = sorted([new_cid(), new_cid()])
    bundles = [make_bundle(["sleep", "100"]) for _ in ids]  # type: ignore[operator]
    for cid, bundle in zip(ids, bundles, strict=True):
        corral_runc("create", "--bundle", bundle, cid, check=True)
    corral_runc("start", ids[1], check=True)

    assert corral_runc("list", "-q", check=True).stdout.split() == ids
    assert corral_runc("list", "--quiet", check=True).stdout.split() == ids

    listed = json.loads(corral_runc("list", "--format", "json", check=True).stdout)
    assert [c["id"] for c in listed] == ids
    assert [c["status"] for c in listed] == ["created", "running"]
    for entry, bundle in zip(listed, bundles, strict=True):
        assert entry["bundle"] == str(bundle)
        assert entry["pid"] > 0
        state = json.loads(corral_runc("state", entry["id"], check=True).stdout)
        assert state["pid"] == entry["pid"] and state["created"] == entry["created"]
    assert json.loads(corral_runc("list", "-f", "json", check=True).stdout) == listed
    assert json.loads(corral_runc("list", "--format=json", check=True).stdout) == listed

    table = corral_runc("list", check=True).stdout.splitlines()
    assert table[0].split() == HEADER
    rows = [line.split() for line in table[1:]]
    assert [r[0] for r in rows] == ids
    for row, entry in zip(rows, listed, strict=True):
        assert row == [entry["id"], str(entry["pid"]), entry["status"], entry["bundle"],
                       entry["created"], "root"]
    # Columns line up as Go's tabwriter lays them out: each starts where the header's does.
    starts = [table[0].index(h) for h in HEADER]
    for line in table[1:]:
        for start in starts[1:]:
            assert line[start - 1] == " " and line[start] != " ", (line, start)


# -- flag syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "global_form",
    [["--root", "{root}"], ["-root", "{root}"], ["--root={root}"], ["-root={root}"]],
)
@pytest.mark.parametrize(
    "create_form",
    [["--bundle", "{bundle}"], ["-bundle", "{bundle}"], ["--bundle={bundle}"], ["-b", "{bundle}"]],
)
def test_flag_forms(
    runc_root: Path, bundle: Bundle, cid: str, global_form: list[str], create_form: list[str]
) -> None:
    """Go's flag syntax: -name and --name are one flag; values as separate words or after =."""
    runc = Runc(None)

    def fill(args: list[str]) -> list[str]:
        return [a.replace("{root}", str(runc_root)).replace("{bundle}", str(bundle))
                for a in args]

    bundle.set(args=["sleep", "100"])
    g = fill(global_form)
    runc(*g, "create", *fill(create_form), cid, check=True)
    assert (runc_root / cid).is_dir()
    assert json.loads(runc(*g, "state", cid, check=True).stdout)["status"] == "created"
    runc(*g, "delete", "-force", cid, check=True)
    assert not (runc_root / cid).exists()


@pytest.mark.parametrize("form", [["--force"], ["-f"], ["-force"], ["--force=true"]])
def test_bool_flag_forms(corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str,
                         form: list[str]) -> None:
    bundle.set(args=["sleep", "100"])
    corral_runc("run", "--detach", "--bundle", bundle, cid, check=True)
    corral_runc("delete", *form, cid, check=True)
    assert not (runc_root / cid).exists()


def test_bool_flag_false_keeps_container(
    corral_runc: Runc, runc_root: Path, bundle: Bundle, cid: str
) -> None:
    bundle.set(args=["sleep", "100"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    done = corral_runc("delete", "--force=false", cid)
    assert done.returncode == 1 and "not stopped" in done.stderr
    assert (runc_root / cid).is_dir()


def test_flags_stop_at_first_argument(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """``exec ID sh -c ...``: flags after the container id belong to the program."""
    bundle.set(args=["sleep", "100"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    done = corral_runc("exec", "-e", "X=1", cid, "sh", "-c", "echo $X-$1", "sh", "--root")
    assert (done.returncode, done.stdout) == (0, "1---root\n"), done.stderr


def test_double_dash_ends_flags(corral_runc: Runc, bundle: Bundle, cid: str) -> None:
    """``--`` ends the flags; after the id it is already an argument (runc: exec "--" fails)."""
    bundle.set(args=["sleep", "100"])
    corral_runc("run", "-d", "--bundle", bundle, cid, check=True)
    done = corral_runc("exec", "--", cid, "sh", "-c", "echo dashdash")
    assert (done.returncode, done.stdout) == (0, "dashdash\n"), done.stderr
    done = corral_runc("exec", cid, "--", "sh", "-c", "echo dashdash")
    assert done.returncode != 0 and "process.args[0]" in done.stderr


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["list", "--format"], "flag needs an argument"),
        (["--root"], "flag needs an argument"),
        (["delete", "--force=maybe", "x"], "invalid boolean value"),
        (["start"], "requires a minimum of 1 argument"),
    ],
)
def test_flag_errors(corral_runc: Runc, argv: list[str], fragment: str) -> None:
    done = corral_runc(*argv)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], done.stderr
