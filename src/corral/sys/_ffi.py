"""The few pieces of ctypes that corral.sys needs, built on ``_ctypes`` (ctypes' C half).

``import ctypes`` costs about 2 ms, a tenth of a whole ``corral-runc run``: most of it is
ctypes/__init__.py defining every C type, loader and helper Python knows. libc calls need only
a handful of integer types, fixed-size arrays, ``byref`` and errno, which ``_ctypes`` provides
directly; this module names them the way ctypes does, so the calls in corral.sys read the
same. Modules off the runtime's start-up path (seccomp, bpf) use ctypes itself.
"""

import _ctypes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:
    _Simple = _ctypes._SimpleCData[int]
else:
    _Simple = _ctypes._SimpleCData

byref = _ctypes.byref
get_errno = _ctypes.get_errno

_FUNCFLAG_CDECL = 0x1
_FUNCFLAG_PYTHONAPI = 0x4  # keep the GIL held across the call (ctypes' PyDLL)
_FUNCFLAG_USE_ERRNO = 0x8
_RTLD_NOW = 0x2


class c_int(_Simple):
    _type_ = "i"


class c_long(_Simple):
    _type_ = "l"


class c_ulong(_Simple):
    _type_ = "L"


class c_uint32(_Simple):
    _type_ = "I"


class c_uint64(_Simple):
    _type_ = "Q"


c_size_t = c_ulong


class Library:
    """A loaded shared object; ``lib.name`` is a callable C function returning int.

    As with ctypes' CDLL, Python ints pass as C int, bytes as ``char *`` and None as NULL;
    wrap wider values in c_long / c_ulong. errno is saved after each call (``get_errno``).
    """

    def __init__(self, name: str | None = None) -> None:
        self._handle = _ctypes.dlopen(name, _RTLD_NOW)  # type: ignore[arg-type]  # None: libc
        self._cache: dict[tuple[str, type, bool], Any] = {}

    def function(self, name: str, restype: type = c_int, *, hold_gil: bool = False) -> "Any":
        """``hold_gil``: call without releasing the GIL, as ctypes.pythonapi does; for the
        interpreter's own C API (PyOS_BeforeFork) and for a call that forks the process."""
        key = (name, restype, hold_gil)
        fn = self._cache.get(key)
        if fn is None:
            flags = _FUNCFLAG_CDECL | _FUNCFLAG_USE_ERRNO | (_FUNCFLAG_PYTHONAPI * hold_gil)

            class Function(_ctypes.CFuncPtr):
                _flags_ = flags
                _restype_ = restype

            fn = self._cache[key] = Function((name, self))  # type: ignore[arg-type]
        return fn

    def __getattr__(self, name: str) -> "Any":
        if name.startswith("_"):
            raise AttributeError(name)
        return self.function(name)
