"""The exit status of ``run`` when the container could not be run, by docker's rule.

docker run exits with 125 when the engine failed (bad flag, no such image, name in use...),
126 when the container's command cannot be invoked (permission denied, a directory), 127 when it
is not found, and otherwise with the command's own status. The runtime reports a program it
cannot run as a SpecError on ``process.args[0]`` (corral.runtime.init.find_program), which
reaches the engine as that one-line message (through the init's error channel, or through a
detached container's monitor), so the message is what is classified.
"""

from __future__ import annotations

ENGINE_FAILED = 125
CANNOT_INVOKE = 126
NOT_FOUND = 127

_PROGRAM = "process.args[0]"
_NOT_FOUND = ("executable file not found", "no such file or directory")
_CANNOT_INVOKE = ("permission denied", "is a directory")


def start_failure_status(err: BaseException) -> int:
    """127, 126 or 125 for an error raised while creating or starting a container."""
    message = str(err)
    if _PROGRAM in message:
        lowered = message.lower()
        if any(text in lowered for text in _NOT_FOUND):
            return NOT_FOUND
        if any(text in lowered for text in _CANNOT_INVOKE):
            return CANNOT_INVOKE
    return ENGINE_FAILED
