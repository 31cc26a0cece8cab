"""Signal names and numbers for ``kill``, without ``import signal``.

``corral-runc kill ID TERM`` is on containerd's hot path, and ``import signal`` loads ``enum``
(a few ms). The numbers below are Linux's for x86_64 and aarch64 (the generic table; a few
architectures such as MIPS and SPARC number them differently, and corral does not run there).

Accepted forms, as runc and docker accept them: a name with or without ``SIG`` in any case
(``TERM``, ``SIGTERM``, ``term``), a number (``15``), and the real-time signals by offset
(``SIGRTMIN``, ``RTMIN+3``, ``SIGRTMAX-2``). Real-time signals are numbered from the *kernel's*
SIGRTMIN (32), but glibc keeps 32 and 33 for its threads, so the SIGRTMIN that programs see,
and that ``kill -l`` prints, is 34.
"""

from __future__ import annotations

from corral.errors import UsageError

SIGRTMIN = 34
SIGRTMAX = 64

_NAMES = (
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
)
# Name -> number for the classic signals 1..31, plus the old aliases the kernel still defines.
SIGNALS = {name: number for number, name in enumerate(_NAMES, start=1)}
SIGNALS.update({"SIGIOT": 6, "SIGCLD": 17, "SIGPOLL": 29})


def parse_signal(text: str) -> int:
    """The signal number ``text`` names; UsageError ``unknown signal "FOO"`` if none."""
    number = _parse(text)
    if number is None or not 1 <= number <= SIGRTMAX:
        raise UsageError(f'unknown signal "{text}"')
    return number


def _parse(text: str) -> int | None:
    if _is_number(text):
        return int(text)
    name = text.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in SIGNALS:
        return SIGNALS[name]
    return _parse_realtime(name)


def _parse_realtime(name: str) -> int | None:
    """``SIGRTMIN``, ``SIGRTMIN+N``, ``SIGRTMAX``, ``SIGRTMAX-N``, kept within 34..64."""
    for base, sign, start in (("SIGRTMIN", "+", SIGRTMIN), ("SIGRTMAX", "-", SIGRTMAX)):
        if name == base:
            return start
        if name.startswith(base + sign) and _is_number(offset := name[len(base) + 1 :]):
            number = start + int(offset) if sign == "+" else start - int(offset)
            return number if SIGRTMIN <= number <= SIGRTMAX else None
    return None


def _is_number(text: str) -> bool:
    """Plain ASCII digits only: ``int()`` would also take " 15", "1_5" and non-ASCII digits."""
    return text.isascii() and text.isdigit()


def signal_name(number: int) -> str:
    """``SIGTERM`` for 15; ``SIGRTMIN+3`` / ``SIGRTMAX-2`` for real-time ones, as ``kill -l``.

    Numbers without a name (glibc's 32 and 33, or out of range) read ``signal N``, as Go
    prints them.
    """
    if 1 <= number <= len(_NAMES):
        return _NAMES[number - 1]
    if number == SIGRTMIN:
        return "SIGRTMIN"
    if number == SIGRTMAX:
        return "SIGRTMAX"
    if SIGRTMIN < number <= (SIGRTMIN + SIGRTMAX) // 2:
        return f"SIGRTMIN+{number - SIGRTMIN}"
    if (SIGRTMIN + SIGRTMAX) // 2 < number < SIGRTMAX:
        return f"SIGRTMAX-{SIGRTMAX - number}"
    return f"signal {number}"
