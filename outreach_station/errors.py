"""The one exception root of outreach-station and its exit codes.

Every failure the core can report is a `StationError` subclass carrying an
`ExitCode`; the CLI catches `StationError` once and turns it into one line on
stderr and that code. Messages must never contain secrets.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_FOUND = 3
    CONFIG = 4
    BROWSER = 5
    BUSY = 6
    STATE = 7
    ENVIRONMENT = 8
    SECURITY = 9
    INTEGRITY = 10
    CHECK_FAILED = 11


class StationError(Exception):
    """Root of every error station reports to a person."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(StationError):
    """Bad input that the command line parser could not catch."""

    exit_code = ExitCode.USAGE


class NotFoundError(StationError):
    """An unknown platform, persona or other named thing."""

    exit_code = ExitCode.NOT_FOUND


class ConfigError(StationError):
    """A platform profile, policy or config file is malformed."""

    exit_code = ExitCode.CONFIG


class BrowserError(StationError):
    """No usable browser, or the browser failed to start."""

    exit_code = ExitCode.BROWSER


class BusyError(StationError):
    """Something is in use elsewhere, such as a persona already open."""

    exit_code = ExitCode.BUSY


class StateError(StationError):
    """A lifecycle transition or action that makes no sense in this state."""

    exit_code = ExitCode.STATE


class EnvironmentProblem(StationError):
    """The machine lacks something: a display, a writable home, a keyring."""

    exit_code = ExitCode.ENVIRONMENT


class SecurityError(StationError):
    """Refused because going on would weaken security."""

    exit_code = ExitCode.SECURITY


class IntegrityError(StationError):
    """Stored data failed authentication or a chain check."""

    exit_code = ExitCode.INTEGRITY


class CheckFailed(StationError):
    """A self-check (doctor, check, audit verify) found problems."""

    exit_code = ExitCode.CHECK_FAILED
