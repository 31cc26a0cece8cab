"""The status guards of the runtime's verbs: one table (runtime/state.py REFUSALS), runc's words."""

from __future__ import annotations

import pytest

from corral.errors import StateError
from corral.runtime.state import REFUSALS, Container

STATUSES = ("creating", "created", "running", "paused", "stopped")


class Fixed(Container):
    """A container whose live status is given, not read from the kernel."""

    def __init__(self, status: str) -> None:
        super().__init__("/nonexistent", {"id": "web"})
        self.fixed = status

    def status(self) -> str:
        return self.fixed


ALLOWED = {
    "start": {"created"},
    "kill": {"created", "running", "paused"},
    "kill --all": {"created", "running", "paused", "stopped"},
    "delete": {"created", "stopped"},
    "exec": {"created", "running"},
    "exec --ignore-paused": {"created", "running", "paused"},
    "pause": {"created", "running"},
    "resume": {"paused"},
    "ps": {"creating", "created", "running", "paused"},
    "events": {"creating", "created", "running", "paused"},
    "update": {"creating", "created", "running", "paused"},
}


@pytest.mark.parametrize("verb", sorted(REFUSALS))
def test_each_verb_allows_what_runc_allows(verb: str) -> None:
    allowed = {s for s in STATUSES if s not in REFUSALS[verb]}
    assert allowed == ALLOWED[verb]
    for status in allowed:
        assert Fixed(status).require(verb) == status


@pytest.mark.parametrize(
    ("verb", "status", "message"),
    [
        ("start", "stopped", "cannot start a container that has stopped"),
        ("start", "running", "cannot start an already running container"),
        ("kill", "stopped", "container not running"),
        ("delete", "running", "cannot delete container web that is not stopped: running"),
        ("exec", "paused", "cannot exec in a paused container"),
        ("resume", "running", "container not paused"),
    ],
)
def test_refusals_use_runcs_words(verb: str, status: str, message: str) -> None:
    with pytest.raises(StateError) as err:
        Fixed(status).require(verb)
    assert str(err.value) == message
