"""The one exception root of outreach-station and its exit codes.

Every failure the core can report is a `StationError` subclass carrying an
`ExitCode`; the CLI catches `StationError` once and turns it into one line on
stderr and that code. Messages must never contain secrets.
"""

from __future__ import annotations

import errno
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
    DAMAGED = 12


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


class DamagedError(StationError):
    """A file station keeps (the registry) is damaged and cannot be read."""

    exit_code = ExitCode.DAMAGED


def os_error_problem(exc: OSError) -> EnvironmentProblem:
    """One line for an OSError that no more specific message caught.

    Names the file and says what to do; never the exception's repr, which
    could carry more than the file name.
    """
    # Imported here: the CLI loads this module for `station --help`, which needs no catalogue.
    from outreach_station.i18n import _

    name = exc.filename if exc.filename is not None else _("a file")
    # The system's own words for the error (strerror) stay as the system gives them.
    reason = (exc.strerror or type(exc).__name__).lower()
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return EnvironmentProblem(
            _("the disk is full: cannot write {name}; free some space, then try again").format(
                name=name
            )
        )
    if exc.errno == errno.EROFS:
        return EnvironmentProblem(
            _(
                "cannot write {name}: read-only file system; station needs a writable "
                "STATION_HOME (remount it read-write or point STATION_HOME elsewhere)"
            ).format(name=name)
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return EnvironmentProblem(
            _(
                "cannot use {name}: {reason}; check that your account may read and write there"
            ).format(name=name, reason=reason)
        )
    return EnvironmentProblem(_("cannot use {name}: {reason}").format(name=name, reason=reason))
