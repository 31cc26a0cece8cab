"""What the monitor is told about a container: restart policy, healthcheck, stop signal and
timeout, log options (pure: parsing of docker's flags and the rules that use them).

::

    --restart no | on-failure[:N] | always | unless-stopped
    --health-cmd CMD --health-interval D --health-timeout D --health-retries N
        --health-start-period D --no-healthcheck      (else the image's Healthcheck)
    --stop-signal SIG --stop-timeout S                (else the image's StopSignal; 10 s)
    --log-opt max-size=10m --log-opt max-file=3
    -t -i                                             (a pty; stdin open to attached clients)

Durations are Go's (``1m30s``, ``500ms``, ``2h``), as docker takes them.
"""

from __future__ import annotations

import re

from corral._record import as_dict, datarecord
from corral.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: docker's healthcheck defaults (moby's container/health.go): 30 s, 30 s, 3 retries, 0 s.
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
DEFAULT_STOP_TIMEOUT = 10
#: Restart back-off (docker: 100 ms, doubled at each restart, reset after 10 s of running).
RESTART_FIRST_DELAY = 0.1
RESTART_MAX_DELAY = 60.0
RESTART_RESET_AFTER = 10.0
#: Log rotation by default: 3 files of 10 MB (docker's json-file grows without bound unless
#: --log-opt max-size is given; a monitor that never rotates fills disks).
DEFAULT_LOG_MAX_SIZE = 10 * 1024 * 1024
DEFAULT_LOG_MAX_FILE = 3

_POLICIES = ("no", "on-failure", "always", "unless-stopped")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@datarecord
class Healthcheck:
    """docker's HEALTHCHECK: ``test`` is ``["CMD-SHELL", cmd]`` or ``["CMD", arg0, ...]``."""

    test: list[str]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    start_period: float = 0.0

    def argv(self) -> list[str]:
        """The command the check runs in the container."""
        kind, rest = self.test[0], self.test[1:]
        if kind == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(rest)]
        return list(rest)

    def to_docker(self) -> dict[str, Any]:
        """As ``inspect`` shows it in Config.Healthcheck (durations in nanoseconds)."""
        return {
            "Test": list(self.test),
            "Interval": int(self.interval * 1e9),
            "Timeout": int(self.timeout * 1e9),
            "StartPeriod": int(self.start_period * 1e9),
            "Retries": self.retries,
        }


@datarecord
class MonitorConfig:
    """Everything the monitor needs to know about one container beyond its OCI bundle."""

    restart: str = "no"  # no | on-failure | always | unless-stopped
    max_retries: int = 0  # on-failure:N (0: no limit)
    healthcheck: Healthcheck | None = None
    no_healthcheck: bool = False  # --no-healthcheck: not even the image's
    stop_signal: str = ""  # "": the image's StopSignal, else SIGTERM
    stop_timeout: int = DEFAULT_STOP_TIMEOUT
    log_max_size: int = DEFAULT_LOG_MAX_SIZE  # 0: never rotate
    log_max_file: int = DEFAULT_LOG_MAX_FILE
    tty: bool = False  # -t: the container's stdio is a pty whose master its waiter holds
    open_stdin: bool = False  # -i: attached clients may write to it

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = as_dict(self)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MonitorConfig:
        health = data.get("healthcheck")
        return cls(
            restart=str(data.get("restart") or "no"),
            max_retries=int(data.get("max_retries") or 0),
            healthcheck=Healthcheck(**health) if isinstance(health, dict) else None,
            no_healthcheck=bool(data.get("no_healthcheck")),
            stop_signal=str(data.get("stop_signal") or ""),
            stop_timeout=int(data.get("stop_timeout", DEFAULT_STOP_TIMEOUT)),
            log_max_size=int(data.get("log_max_size", DEFAULT_LOG_MAX_SIZE)),
            log_max_file=int(data.get("log_max_file", DEFAULT_LOG_MAX_FILE)),
            tty=bool(data.get("tty")),
            open_stdin=bool(data.get("open_stdin")),
        )

    def restart_policy(self) -> dict[str, Any]:
        """HostConfig.RestartPolicy as docker shows it."""
        return {"Name": self.restart, "MaximumRetryCount": self.max_retries}


def parse_duration(text: str, flag: str) -> float:
    """A Go duration (``30s``, ``1m30s``, ``500ms``; a bare ``0``) in seconds."""
    value = text.strip()
    if value == "0":
        return 0.0
    pos, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise UsageError(f"{flag} {text!r}: not a duration (use e.g. 30s, 1m30s, 500ms)")
    return total


def parse_restart(text: str) -> tuple[str, int]:
    """``--restart`` -> (policy, max retries)."""
    name, colon, count = text.partition(":")
    if name not in _POLICIES:
        raise UsageError(
            f"--restart {text!r}: invalid restart policy (no, on-failure[:N], always, "
            "unless-stopped)"
        )
    if not colon:
        return name, 0
    if name != "on-failure":
        raise UsageError(f"--restart {text!r}: maximum retry count cannot be used with {name}")
    if not count.isdigit():
        raise UsageError(f"--restart {text!r}: the retry count must be a number")
    return name, int(count)


def parse_size(text: str, flag: str) -> int:
    """``10m``, ``512k``, ``1g``, ``100`` -> bytes."""
    match = re.fullmatch(r"(\d+)\s*([bkmg]?)b?", text.strip().lower())
    if match is None:
        raise UsageError(f"{flag} {text!r}: not a size (use e.g. 10m, 512k)")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def healthcheck_from(
    image: dict[str, Any] | None,
    cmd: str | None = None,
    interval: str | None = None,
    timeout: str | None = None,
    retries: int | None = None,
    start_period: str | None = None,
    disabled: bool = False,
) -> Healthcheck | None:
    """The container's healthcheck: the image's (its config's Healthcheck), overridden field
    by field by the ``--health-*`` flags; None with ``--no-healthcheck`` or ``NONE``."""
    if disabled:
        if cmd is not None:
            raise UsageError("--no-healthcheck conflicts with --health-* options")
        return None
    base = image or {}
    test = [str(t) for t in base.get("Test") or []]
    if cmd is not None:
        test = ["CMD-SHELL", cmd]
    if not test or test[0] == "NONE":
        if any(v is not None for v in (interval, timeout, retries, start_period)):
            raise UsageError("--health-interval/-timeout/-retries/-start-period need a "
                             "--health-cmd (the image has no healthcheck)")  # fmt: skip
        return None
    if test[0] not in ("CMD", "CMD-SHELL") or len(test) < 2:
        raise UsageError(f"healthcheck {test!r}: the test must be CMD or CMD-SHELL and a command")

    def seconds(flag: str, given: str | None, key: str, default: float) -> float:
        if given is not None:
            value = parse_duration(given, flag)
            if 0 < value < 0.001:
                raise UsageError(f"{flag} {given!r}: must be at least 1ms")
            return value
        nanos = base.get(key)
        return float(nanos) / 1e9 if isinstance(nanos, int) and nanos > 0 else default

    if retries is not None and retries < 0:
        raise UsageError(f"--health-retries {retries}: must not be negative")
    image_retries = base.get("Retries")
    return Healthcheck(
        test=test,
        interval=seconds("--health-interval", interval, "Interval", DEFAULT_INTERVAL)
        or DEFAULT_INTERVAL,
        timeout=seconds("--health-timeout", timeout, "Timeout", DEFAULT_TIMEOUT) or DEFAULT_TIMEOUT,
        retries=retries
        if retries
        else image_retries
        if isinstance(image_retries, int) and image_retries > 0
        else DEFAULT_RETRIES,
        start_period=seconds("--health-start-period", start_period, "StartPeriod", 0.0),
    )


def should_restart(
    config: MonitorConfig, exit_code: int, restart_count: int, stopped_by_user: bool
) -> bool:
    """docker's rule: never after ``stop``/``kill`` by the user; ``always`` and
    ``unless-stopped`` restart whatever the code; ``on-failure`` on a non-zero code, at most
    N times when N is given."""
    if stopped_by_user or config.restart == "no":
        return False
    if config.restart in ("always", "unless-stopped"):
        return True
    if exit_code == 0:
        return False
    return config.max_retries == 0 or restart_count < config.max_retries


def restart_delay(restart_count: int, ran_for: float) -> float:
    """Seconds to wait before the next start: 100 ms doubled at each restart, at most a
    minute; back to 100 ms when the last run lasted 10 s or more."""
    if ran_for >= RESTART_RESET_AFTER:
        return RESTART_FIRST_DELAY
    return float(min(RESTART_FIRST_DELAY * (2**restart_count), RESTART_MAX_DELAY))
