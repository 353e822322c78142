"""User-facing errors.

Anything the user can fix (a bad spec, a missing file, an unreachable database) is raised as a
``UserError``; the CLI prints its message as one sentence and exits with code 2, no traceback.
"""

from __future__ import annotations

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """A problem the user can fix, described in one sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Interrupted(Exception):
    """Ctrl-C stopped a long job after saving what it finished; the message says how to resume."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
