"""The pure parts of corral build: .dockerignore, the image state, cache keys."""

from __future__ import annotations

from corral.engine.build.cache import step_key
from corral.engine.build.config import ImageState
from corral.engine.build.ignore import Ignore, parse_patterns


def test_dockerignore_last_match_wins_and_parents_exclude() -> None:
    ignore = Ignore(parse_patterns(
        "# comment\n\n*.log\n/build/\n**/tmp\n!keep.log\ndocs\n!docs/README.md\n./a//b/\n"
    ))  # fmt: skip
    assert ignore.excluded("x.log")
    assert not ignore.excluded("sub/x.log")  # * never crosses a /
    assert not ignore.excluded("keep.log")
    assert ignore.excluded("build/out/a.o")  # below an excluded directory
    assert ignore.excluded("tmp") and ignore.excluded("a/b/tmp/c")
    assert ignore.excluded("docs/other.md")
    assert not ignore.excluded("docs/README.md")
    assert ignore.may_hold_included("docs")
    assert ignore.excluded("a/b/c")
    assert not ignore.excluded("src/main.py")
    assert not Ignore([]).excluded("anything")


def test_entrypoint_clears_an_inherited_cmd_but_keeps_its_own_stage_cmd() -> None:
    base = ImageState.from_image(
        {"config": {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=1"]}, "history": [{"x": 1}]}, [], "id"
    )
    state = base.copy()
    state.set_env("A", "2")
    state.set_env("B", "3")
    assert state.env == ["PATH=/bin", "A=2", "B=3"]  # replaced in place, appended
    assert base.env == ["PATH=/bin", "A=1"]  # copies are deep
    oci = state.oci_config("2024-01-01T00:00:00Z")
    assert oci["config"]["Cmd"] == ["sh"] and oci["rootfs"]["diff_ids"] == []
    assert oci["history"] == [{"x": 1}]


def test_step_keys_chain_every_input() -> None:
    a = step_key("", "FROM", "sha256:1")
    assert a == step_key("", "FROM", "sha256:1")
    b = step_key(a, "COPY a /a", [["/a", 1, 2, "digest1"]])
    assert b != step_key(a, "COPY a /a", [["/a", 1, 2, "digest2"]])
    assert step_key(b, "RUN x") != step_key(step_key(a, "COPY a /a", []), "RUN x")
