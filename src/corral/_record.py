"""``@datarecord``: a dataclass declaration, without dataclasses' cost at import.

``dataclasses.dataclass`` writes each class's ``__init__``, ``__repr__``, ``__eq__`` (and, frozen,
``__setattr__``, ``__delattr__``, ``__hash__``) as source text and ``exec``\\ s it: ~0.3 ms a
class, and the module imports ``inspect`` (``ast``, ``dis``, ``tokenize``: ~5 ms). The engine's
commands load ~35 such classes before they do anything, a sixth of a ``corral run --rm``
(bench/README.md, engine.py). ``datarecord`` reads the same declaration once and shares one
``__init__``, ``__eq__``, ``__repr__`` between the classes (~20 us a class)::

    @datarecord(frozen=True)
    class Ulimit:
        name: str
        soft: int = 0
        extra: list[str] = field(default_factory=list)

What it does is what the engine uses of dataclasses, with the same behaviour: fields in
annotation order (a subclass's after its bases'), plain defaults and ``field(default_factory=)``,
positional or keyword arguments, ``frozen=True`` (assignment raises AttributeError; hashable by
its fields), ``==`` between instances of the same class, dataclass's repr; ``replace()`` and
``as_dict()`` as ``dataclasses.replace`` and ``asdict``. Not there: ``__post_init__``,
``ClassVar``/``InitVar``, ordering, ``kw_only``, slots. mypy reads it as a dataclass
(``dataclass_transform``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")
    C = TypeVar("C", bound=type)

_MISSING = object()


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], object]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made afresh for each instance (``default_factory()``)."""
    return _Factory(default_factory)  # type: ignore[return-value]  # as dataclasses.field


class FrozenError(AttributeError):
    """An assignment to a field of a frozen record (dataclasses' FrozenInstanceError)."""


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    cls = type(self)
    names: tuple[str, ...] = cls.__record_fields__
    defaults: dict[str, Any] = cls.__record_defaults__
    if len(args) > len(names):
        raise TypeError(f"{cls.__name__}() takes {len(names)} arguments, {len(args)} given")
    values = dict(zip(names, args, strict=False))
    for name in names[len(args) :]:
        if name in kwargs:
            values[name] = kwargs.pop(name)
            continue
        default = defaults.get(name, _MISSING)
        if default is _MISSING:
            raise TypeError(f"{cls.__name__}() missing argument: {name!r}")
        values[name] = default.make() if isinstance(default, _Factory) else default
    if kwargs:
        raise TypeError(f"{cls.__name__}() got unexpected or repeated arguments: {sorted(kwargs)}")
    for name, value in values.items():
        object.__setattr__(self, name, value)


def _values(obj: Any) -> tuple[Any, ...]:
    return tuple(getattr(obj, name) for name in obj.__record_fields__)


def _eq(self: Any, other: object) -> Any:  # bool, or NotImplemented for another class
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self) == _values(other)


def _hash(self: Any) -> int:
    return hash(_values(self))


def _repr(self: Any) -> str:
    fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_fields__)
    return f"{self.__class__.__qualname__}({fields})"


def _frozen_setattr(self: Any, name: str, value: object) -> None:
    raise FrozenError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenError(f"cannot delete field {name!r}")


def _make(cls: C, frozen: bool) -> C:
    names: list[str] = []
    defaults: dict[str, Any] = {}
    for base in reversed(cls.__mro__[1:]):
        names += [n for n in getattr(base, "__record_fields__", ()) if n not in names]
        defaults.update(getattr(base, "__record_defaults__", {}))
    for name in cls.__dict__.get("__annotations__", {}):  # noqa: RUF063 (no inspect here)
        if name not in names:
            names.append(name)
        if name in cls.__dict__:
            defaults[name] = cls.__dict__[name]
            if isinstance(defaults[name], _Factory):
                delattr(cls, name)  # as dataclasses: the class has no such attribute
    seen_default = False
    for name in names:
        if name in defaults:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with")
    cls.__record_fields__ = tuple(names)  # type: ignore[attr-defined]
    cls.__record_defaults__ = defaults  # type: ignore[attr-defined]
    own = cls.__dict__
    cls.__init__ = _init  # type: ignore[misc]
    if "__repr__" not in own:
        cls.__repr__ = _repr  # type: ignore[assignment, method-assign]
    if "__eq__" not in own:
        cls.__eq__ = _eq  # type: ignore[assignment, method-assign]
        if "__hash__" not in own:  # as dataclasses: eq without frozen is unhashable
            cls.__hash__ = _hash if frozen else None  # type: ignore[assignment, method-assign]
    if frozen:
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment, method-assign]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment, method-assign]
    return cls


if TYPE_CHECKING:

    @overload
    @dataclass_transform(field_specifiers=(field,))
    def datarecord(cls: C, /) -> C: ...
    @overload
    def datarecord(*, frozen: bool = False) -> Callable[[C], C]: ...


def datarecord(cls: Any = None, /, *, frozen: bool = False) -> Any:
    """Make ``cls`` a record (see the module's docstring): ``@datarecord`` or
    ``@datarecord(frozen=True)``."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def replace(obj: T, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` (``dataclasses.replace``)."""
    for name in obj.__record_fields__:  # type: ignore[attr-defined]
        changes.setdefault(name, getattr(obj, name))
    return type(obj)(**changes)


def as_dict(obj: Any) -> Any:
    """``dataclasses.asdict``: records as dicts, recursively, lists and dicts copied."""
    if hasattr(type(obj), "__record_fields__"):
        return {name: as_dict(getattr(obj, name)) for name in obj.__record_fields__}
    if isinstance(obj, (list, tuple)):
        return type(obj)(as_dict(v) for v in obj)
    if isinstance(obj, dict):
        return {as_dict(k): as_dict(v) for k, v in obj.items()}
    return obj
