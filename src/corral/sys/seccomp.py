"""linux.seccomp through libseccomp (libseccomp.so.2), the library every OCI runtime uses.

Two steps, split across the fork:

``compile_profile(seccomp)``
    in the runtime, before fork: checks every field (a mistake is a ``SpecError`` naming its
    JSON path), resolves syscall and architecture names, and returns a ``Profile``: plain data,
    the rules already in the shape libseccomp takes. It also loads libseccomp, which the init
    could no longer find once it has pivoted into the container's root.

``Profile.load()``
    in the container's init, just before exec: builds the filter (seccomp_init,
    seccomp_arch_add, seccomp_rule_add_array, seccomp_attr_set), loads it into the kernel and
    returns the notify listener fd when a rule uses SCMP_ACT_NOTIFY.

``Profile.build_program()``
    optional, in the runtime before fork: has libseccomp build the filter once and export it
    as the kernel's BPF (seccomp_export_bpf); ``load`` then only hands those bytes to the
    kernel (prctl PR_SET_SECCOMP), which is what seccomp_load does after building them. For
    podman's default profile the building is ~17 ms of CPU (the rules, then the BPF
    generation): a process that runs many containers with one profile (the sandbox API, the
    engine's monitor) builds it once. Not for a profile with a notify listener or filter
    flags, which need seccomp_load.

runc 1.1 is the reference for what is not written in the runtime-spec: syscall names this
libseccomp does not know are skipped; a rule whose action equals the default one is skipped;
SCMP_ACT_KILL is KILL_THREAD; ERRNO and TRACE return EPERM unless ``errnoRet`` says otherwise;
the no_new_privs attribute is off (the runtime sets no_new_privs itself, as configured); a rule
whose ``args`` use one argument index twice is split into one rule per condition (any of them
matches), otherwise the conditions are AND'ed in one rule (``split_conditions``).

ctypes and the library are loaded on first use: importing this module costs nothing.
"""

from __future__ import annotations

import os

from corral.errors import KernelError, SpecError
from corral.spec.features import SECCOMP_ARCHS as ARCHITECTURES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Actions (seccomp.h). ERRNO and TRACE carry a 16-bit value in their low bits.
ACT_KILL_THREAD = 0x00000000
ACT_KILL_PROCESS = 0x80000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
ACT_NOTIFY = 0x7FC00000

ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ERRNO": ACT_ERRNO,
    "SCMP_ACT_TRACE": ACT_TRACE,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
# The actions that return a value to the caller (errnoRet / defaultErrnoRet apply).
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")
EPERM = 1

# enum scmp_compare.
OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
CMP_MASKED_EQ = 7

# enum scmp_filter_attr.
FLTATR_CTL_NNP = 3
FLTATR_CTL_TSYNC = 4
FLTATR_CTL_LOG = 6
FLTATR_CTL_SSB = 7
FLTATR_CTL_OPTIMIZE = 8

# ARCHITECTURES: the OCI architecture names (one table, shared with `corral-runc features`);
# libseccomp knows each by the lower-case rest ("x86_64").

# Flags: the filter attribute each one sets (None: nothing to do; runc 1.1 treats TSYNC so,
# the init being single-threaded). Known to the spec but not applied: refused, as runc does.
FLAGS: dict[str, int | None] = {
    "SECCOMP_FILTER_FLAG_TSYNC": None,
    "SECCOMP_FILTER_FLAG_LOG": FLTATR_CTL_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": FLTATR_CTL_SSB,
}
_UNSUPPORTED_FLAGS = ("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",)

# Syscalls SCMP_ACT_NOTIFY may not trap: the init uses them after loading the filter to hand
# the listener fd to the runtime (sendmsg) and to report through the exec fifo (write), so a
# notification there would wait for a listener that does not have the fd yet. runc refuses write.
NOTIFY_FORBIDDEN = ("write", "sendmsg")

MAX_ARGS = 6  # a syscall has arguments 0..5
_SCMP_ERROR = -1  # __NR_SCMP_ERROR: seccomp_syscall_resolve_name found no such syscall
_OPTIMIZE_ABOVE = 32  # runc: binary-tree optimisation for profiles with more rules than this

# One comparison as struct scmp_arg_cmp takes it: (arg, op, datum_a, datum_b).
Condition = tuple[int, int, int, int]


class Rule:
    """One seccomp_rule_add_array call: ``action`` when syscall ``nr`` meets all ``conditions``."""

    __slots__ = ("action", "conditions", "name", "nr")

    def __init__(self, name: str, nr: int, action: int, conditions: tuple[Condition, ...]) -> None:
        self.name = name
        self.nr = nr
        self.action = action
        self.conditions = conditions

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, {self.nr}, {self.action:#x}, {self.conditions!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rule) and (
            (self.name, self.nr, self.action, self.conditions)
            == (other.name, other.nr, other.action, other.conditions)
        )

    __hash__ = None  # type: ignore[assignment]


class Profile:
    """A checked, resolved linux.seccomp: what ``load`` hands to libseccomp, nothing more."""

    __slots__ = (
        "architectures",
        "attributes",
        "default_action",
        "listener_metadata",
        "listener_path",
        "notify",
        "program",
        "rules",
    )

    def __init__(self, default_action: int) -> None:
        self.default_action = default_action
        self.architectures: list[int] = []  # libseccomp arch tokens (AUDIT_ARCH_*)
        self.attributes: list[tuple[int, int]] = []  # (SCMP_FLTATR_*, value), in order
        self.rules: list[Rule] = []
        self.notify = False  # a rule traps to a listener: load() returns the listener fd
        self.listener_path = ""
        self.listener_metadata = ""
        self.program: bytes | None = None  # the filter as BPF, once build_program() made it

    def load(self) -> int | None:
        """Build the filter and load it into the kernel for this process (and its children).

        Returns the notify listener fd (close-on-exec) when the profile has SCMP_ACT_NOTIFY
        rules, else None. Without no_new_privs the kernel wants CAP_SYS_ADMIN for this.
        """
        if self.program is not None:
            _load_program(self.program)
            return None
        lib = _lib()
        ctx = self._build(lib)
        try:
            _ok("seccomp_load", lib.seccomp_load(ctx))
            if not self.notify:
                return None
            fd = int(lib.seccomp_notify_fd(ctx))
            _ok("seccomp_notify_fd", fd)
            return fd
        finally:
            lib.seccomp_release(ctx)

    def build_program(self) -> bool:
        """Build the filter now, as BPF for ``load``; False (nothing done) for a profile that
        needs seccomp_load itself: a notify listener, or attributes other than no_new_privs
        off (the filter flags: log, spec_allow, tsync)."""
        if self.notify or any(attr != (FLTATR_CTL_NNP, 0) for attr in self.attributes):
            return False
        lib = _lib()
        ctx = self._build(lib)
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _ok("seccomp_export_bpf", lib.seccomp_export_bpf(ctx, fd))
            size = os.lseek(fd, 0, os.SEEK_END)
            self.program = os.pread(fd, size, 0)
        finally:
            os.close(fd)
            lib.seccomp_release(ctx)
        return True

    def _build(self, lib: Any) -> Any:
        """A libseccomp filter context with the profile's attributes, arches and rules."""
        ctx = lib.seccomp_init(self.default_action)
        if not ctx:
            raise KernelError("seccomp_init", 22, "libseccomp refused the default action")
        try:
            for attr, value in self.attributes:
                _ok("seccomp_attr_set", lib.seccomp_attr_set(ctx, attr, value))
            if len(self.rules) > _OPTIMIZE_ABOVE:
                lib.seccomp_attr_set(ctx, FLTATR_CTL_OPTIMIZE, 2)  # older libseccomp: no matter
            for arch in self.architectures:
                ret = lib.seccomp_arch_add(ctx, arch)
                if ret != -17:  # EEXIST: the native architecture is always in the filter
                    _ok("seccomp_arch_add", ret)
            cmp_t = _arg_cmp_type()
            for rule in self.rules:
                n = len(rule.conditions)
                array = (cmp_t * n)(*(cmp_t(*c) for c in rule.conditions)) if n else None
                ret = lib.seccomp_rule_add_array(ctx, rule.action, rule.nr, n, array)
                _ok(f"seccomp rule for {rule.name}", ret)
        except BaseException:
            lib.seccomp_release(ctx)
            raise
        return ctx


_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_SOCK_FILTER_SIZE = 8  # struct sock_filter {u16 code; u8 jt, jf; u32 k}


def _load_program(program: bytes) -> None:
    """Load a BPF filter (``Profile.program``) for this thread and its children: prctl
    PR_SET_SECCOMP with a struct sock_fprog, as seccomp_load does with no filter flags."""
    import ctypes

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

    fprog = SockFprog(len(program) // _SOCK_FILTER_SIZE, program)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]  # fmt: skip
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise KernelError("prctl(PR_SET_SECCOMP)", err, os.strerror(err))


def compile_profile(seccomp: dict[str, Any], path: str = "linux.seccomp") -> Profile:
    """Check linux.seccomp and resolve its names into a ``Profile`` (see the module's notes).

    Raises ``SpecError`` naming the field for anything wrong, and ``KernelError`` when
    libseccomp itself cannot be loaded.
    """
    if not isinstance(seccomp, dict):
        raise SpecError(path, "expected an object")
    default_name = seccomp.get("defaultAction")
    if default_name is None:
        raise SpecError(f"{path}.defaultAction", "is required")
    default = _action(
        default_name,
        seccomp.get("defaultErrnoRet"),
        f"{path}.defaultAction",
        f"{path}.defaultErrnoRet",
    )
    if default_name == "SCMP_ACT_NOTIFY":
        raise SpecError(f"{path}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    profile = Profile(default)
    profile.attributes.append((FLTATR_CTL_NNP, 0))

    for i, arch in enumerate(seccomp.get("architectures") or []):
        profile.architectures.append(resolve_arch(arch, f"{path}.architectures[{i}]"))
    for i, flag in enumerate(seccomp.get("flags") or []):
        where = f"{path}.flags[{i}]"
        if flag in _UNSUPPORTED_FLAGS:
            raise SpecError(where, f'seccomp flag "{flag}" is not supported')
        if flag not in FLAGS:
            raise SpecError(where, f'unknown flag "{flag}" (one of {", ".join(FLAGS)})')
        attr = FLAGS[flag]
        if attr is not None:
            profile.attributes.append((attr, 1))

    uses_notify = False
    for i, entry in enumerate(seccomp.get("syscalls") or []):
        where = f"{path}.syscalls[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(where, "expected an object")
        if entry.get("action") is None:
            raise SpecError(f"{where}.action", "is required")
        action = _action(
            entry["action"], entry.get("errnoRet"), f"{where}.action", f"{where}.errnoRet"
        )
        groups = split_conditions(entry.get("args") or [], f"{where}.args")
        names = entry.get("names") or []
        if not names:
            raise SpecError(f"{where}.names", "needs at least one syscall name")
        notify = action == ACT_NOTIFY
        for j, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise SpecError(f"{where}.names[{j}]", "expected a syscall name")
            if notify and name in NOTIFY_FORBIDDEN:
                raise SpecError(
                    f"{where}.names[{j}]", f"SCMP_ACT_NOTIFY cannot be used for the {name} syscall"
                )
            if action == default:
                continue  # redundant (libseccomp would refuse it), as runc skips it
            nr = resolve_syscall(name)
            if nr == _SCMP_ERROR:
                continue  # not a syscall of this kernel/libseccomp: runc skips it too
            profile.rules.extend(Rule(name, nr, action, group) for group in groups)
            profile.notify = profile.notify or notify
        uses_notify = uses_notify or notify

    listener = seccomp.get("listenerPath") or ""
    if uses_notify and not listener:
        raise SpecError(f"{path}.listenerPath", "is required when a rule uses SCMP_ACT_NOTIFY")
    if profile.notify and api_level() < 5:
        raise SpecError(path, "SCMP_ACT_NOTIFY needs libseccomp >= 2.5 and Linux >= 5.0")
    profile.listener_path = listener
    profile.listener_metadata = seccomp.get("listenerMetadata") or ""
    return profile


def _action(name: object, errno_ret: object, path: str, errno_path: str) -> int:
    """The action's value for libseccomp, with its errno folded in (EPERM unless given)."""
    if name not in ACTIONS:
        raise SpecError(path, f'unknown action "{name}"')
    assert isinstance(name, str)
    if errno_ret is not None and name not in _WITH_ERRNO:
        raise SpecError(
            errno_path, f"only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return an errno, not {name}"
        )
    if name not in _WITH_ERRNO:
        return ACTIONS[name]
    value = EPERM if errno_ret is None else errno_ret
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF:
        raise SpecError(errno_path, f"expected an errno number from 0 to 65535, got {value!r}")
    return ACTIONS[name] | value


def split_conditions(args: list[Any], path: str) -> list[tuple[Condition, ...]]:
    """Turn a rule's ``args`` into the condition lists of the libseccomp rules it becomes.

    No args: one unconditional rule. Distinct argument indexes: one rule AND'ing them all. An
    index used twice (``arg0 == 1`` and ``arg0 == 2`` cannot both hold): runc's rule, one rule
    per condition, so any of them matches.
    """
    conditions: list[Condition] = []
    seen: set[int] = set()
    repeated = False
    for k, arg in enumerate(args):
        where = f"{path}[{k}]"
        if not isinstance(arg, dict):
            raise SpecError(where, "expected an object")
        index, op, value = arg.get("index"), arg.get("op"), arg.get("value", 0)
        value_two = arg.get("valueTwo", 0)
        if index is None:
            raise SpecError(f"{where}.index", "is required")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_ARGS:
            raise SpecError(f"{where}.index", f"{index!r} is not a syscall argument (0 to 5)")
        if op is None:
            raise SpecError(f"{where}.op", "is required")
        if op not in OPERATORS:
            raise SpecError(f"{where}.op", f'unknown operator "{op}"')
        for field, number in (("value", value), ("valueTwo", value_two)):
            if (
                not isinstance(number, int)
                or isinstance(number, bool)
                or not (0 <= number < 1 << 64)
            ):
                raise SpecError(
                    f"{where}.{field}", f"expected a 64-bit unsigned integer, got {number!r}"
                )
        code = OPERATORS[op]
        # MASKED_EQ: value is the mask, valueTwo what the masked argument must equal.
        conditions.append((index, code, value, value_two if code == CMP_MASKED_EQ else 0))
        repeated = repeated or index in seen
        seen.add(index)
    if not conditions:
        return [()]
    if repeated:
        return [(c,) for c in conditions]
    return [tuple(conditions)]


def resolve_arch(name: object, path: str) -> int:
    """The libseccomp token of an OCI architecture name (``SCMP_ARCH_X86_64``)."""
    if name not in ARCHITECTURES:
        raise SpecError(path, f'unknown architecture "{name}"')
    assert isinstance(name, str)
    token = int(_lib().seccomp_arch_resolve_name(name[len("SCMP_ARCH_") :].lower().encode()))
    if token == 0:
        raise SpecError(path, f'architecture "{name}" is not supported by this libseccomp')
    return token


def resolve_syscall(name: str) -> int:
    """The syscall's number for the native architecture (libseccomp maps it for the others),
    or -1 when libseccomp does not know it. Some are negative pseudo-numbers (socketcall's
    sub-calls on x86): still valid."""
    return int(_lib().seccomp_syscall_resolve_name(name.encode()))


def library_version() -> str:
    """libseccomp's version (seccomp_version), "2.5.4"."""
    import ctypes

    version = ctypes.cast(_lib().seccomp_version(), ctypes.POINTER(ctypes.c_uint * 3)).contents
    return ".".join(str(part) for part in version)


def api_level() -> int:
    """libseccomp's API level (seccomp_api_get): 5 and up can notify, 6 adds TSYNC with it."""
    return int(_lib().seccomp_api_get())


_libseccomp: Any = None
_arg_cmp: Any = None


def _lib() -> Any:
    """Load libseccomp.so.2 once, with the prototypes of the calls used here."""
    global _libseccomp
    if _libseccomp is None:
        import ctypes

        try:
            lib = ctypes.CDLL("libseccomp.so.2")
        except OSError as err:
            raise KernelError(
                "load libseccomp.so.2", 2, f"{err} (install libseccomp2 to use linux.seccomp)"
            ) from None
        c_ctx, c_u32, c_int = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
        protos: dict[str, tuple[Any, list[Any]]] = {
            "seccomp_init": (c_ctx, [c_u32]),
            "seccomp_release": (None, [c_ctx]),
            "seccomp_load": (c_int, [c_ctx]),
            "seccomp_attr_set": (c_int, [c_ctx, c_int, c_u32]),
            "seccomp_arch_add": (c_int, [c_ctx, c_u32]),
            "seccomp_arch_resolve_name": (c_u32, [ctypes.c_char_p]),
            "seccomp_syscall_resolve_name": (c_int, [ctypes.c_char_p]),
            "seccomp_rule_add_array": (c_int, [c_ctx, c_u32, c_int, ctypes.c_uint, c_ctx]),
            "seccomp_notify_fd": (c_int, [c_ctx]),
            "seccomp_export_bpf": (c_int, [c_ctx, c_int]),
            "seccomp_api_get": (ctypes.c_uint, []),
            "seccomp_version": (ctypes.c_void_p, []),
        }
        for name, (restype, argtypes) in protos.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        _libseccomp = lib
    return _libseccomp


def _arg_cmp_type() -> Any:
    """struct scmp_arg_cmp {unsigned int arg; enum scmp_compare op; scmp_datum_t datum_a, b;}"""
    global _arg_cmp
    if _arg_cmp is None:
        import ctypes

        class ScmpArgCmp(ctypes.Structure):
            _fields_ = [
                ("arg", ctypes.c_uint),
                ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64),
            ]

        _arg_cmp = ScmpArgCmp
    return _arg_cmp


def _ok(op: str, ret: int) -> None:
    """libseccomp returns -errno on failure."""
    if ret < 0:
        raise KernelError(op, -ret, os.strerror(-ret))
