"""corral._record.datarecord behaves as the dataclasses it replaces on the engine's hot path."""

from __future__ import annotations

import dataclasses

import pytest

from corral._record import as_dict, datarecord, field, replace


@datarecord(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: tuple[str, ...] = ()


@datarecord
class Box:
    name: str
    items: list[int] = field(default_factory=list)
    inner: Point | None = None


@dataclasses.dataclass
class DataBox:
    name: str
    items: list[int] = dataclasses.field(default_factory=list)
    inner: Point | None = None


def test_init_positional_keyword_defaults() -> None:
    assert (Point(1).x, Point(1).y) == (1, 0)
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2)
    a, b = Box("a"), Box("b")
    a.items.append(1)
    assert b.items == []  # a fresh list each
    assert not hasattr(Box, "items")  # as dataclasses: no factory on the class


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1, 2, (), 4), {}), ((1,), {"x": 1}), ((1,), {"z": 3})],
)
def test_bad_arguments(args: tuple[object, ...], kwargs: dict[str, object]) -> None:
    with pytest.raises(TypeError):
        Point(*args, **kwargs)  # type: ignore[arg-type, misc]


def test_eq_hash_frozen() -> None:
    assert Point(1, 2) != Point(2, 1)
    assert Point(1) != (1, 0, ())
    assert len({Point(1), Point(1), Point(2)}) == 2
    with pytest.raises(AttributeError):
        Point(1).x = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(Box("a"))  # mutable with eq: unhashable, as dataclasses
    box = Box("a")
    box.name = "b"
    assert box == Box("b")


def test_repr_as_dataclasses() -> None:
    assert repr(Box("a", [1], Point(1))) == repr(DataBox("a", [1], Point(1))).replace(
        "DataBox", "Box"
    )
    assert repr(Point(1)) == "Point(x=1, y=0, tags=())"


def test_replace_and_as_dict() -> None:
    p = Point(1, 2)
    assert replace(p, y=5) == Point(1, 5)
    assert p == Point(1, 2)
    box = Box("a", [1, 2], Point(3))
    data = as_dict(box)
    assert data == {"name": "a", "items": [1, 2], "inner": {"x": 3, "y": 0, "tags": ()}}
    data["items"].append(3)
    assert box.items == [1, 2]  # copied


def test_engine_classes_do_not_import_dataclasses() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import corral.engine.containers.manager, corral.engine.containers.spec\n"
        "import corral.engine.images.store, corral.engine.snapshots.overlay\n"
        "import corral.engine.containers.processes, corral.engine.engine\n"
        "print('dataclasses' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
