"""Healthcheck bookkeeping, as docker keeps it (pure).

A container with a healthcheck starts ``starting``. Each probe ends in a result (exit code,
output, start and end times): 0 makes it ``healthy`` and resets the failing streak; anything
else (a timeout counts as failure) adds one to the streak and makes it ``unhealthy`` once the
streak reaches ``retries``. During the start period a failure is logged but not counted (a
success ends the start period early). The last five results are kept, each output cut to
4096 bytes (moby's container/health.go).
"""

from __future__ import annotations

from typing import TypedDict

from corral.engine.monitor.config import Healthcheck

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
MAX_LOG = 5
MAX_OUTPUT = 4096


class Probe(TypedDict):
    Start: str
    End: str
    ExitCode: int
    Output: str


class Health(TypedDict):
    Status: str
    FailingStreak: int
    Log: list[Probe]


def initial() -> Health:
    return {"Status": STARTING, "FailingStreak": 0, "Log": []}


def apply(health: Health, probe: Probe, check: Healthcheck, in_start_period: bool) -> Health:
    """The health after ``probe``."""
    cut: Probe = {**probe, "Output": probe["Output"][:MAX_OUTPUT]}
    log = [*health["Log"], cut][-MAX_LOG:]
    if probe["ExitCode"] == 0:
        return {"Status": HEALTHY, "FailingStreak": 0, "Log": log}
    if in_start_period and health["Status"] == STARTING:
        return {"Status": STARTING, "FailingStreak": health["FailingStreak"], "Log": log}
    streak = health["FailingStreak"] + 1
    status = UNHEALTHY if streak >= check.retries else health["Status"]
    return {"Status": status, "FailingStreak": streak, "Log": log}
