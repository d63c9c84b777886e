"""Chromium's own cookie database inside an unsealed profile.

Not station's data and not its schema: the one place that reads and writes
a browser file with SQL (see `outreach_station.cookie_key` for why). Only
while the browser is not running.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Mapping
from pathlib import Path

from outreach_station.errors import EnvironmentProblem
from outreach_station.i18n import _


def rewrite_values(
    store: Path, prefix: bytes, rewrite: Callable[[list[tuple[int, bytes]]], Mapping[int, bytes]]
) -> int:
    """Give `rewrite` every cookie value starting with `prefix`; write back what it returns.

    Returns how many values started with `prefix` (0 for a file that is not a
    cookie store this code knows: the browser decides about it). The new
    values land in one transaction.
    """
    try:
        with contextlib.closing(sqlite3.connect(store, isolation_level=None)) as conn:
            try:
                rows = conn.execute(
                    "SELECT rowid, encrypted_value FROM cookies "
                    "WHERE substr(encrypted_value, 1, ?) = ?",
                    (len(prefix), prefix),
                ).fetchall()
            except sqlite3.DatabaseError:
                return 0
            if not rows:
                return 0
            found = [(int(rowid), bytes(value)) for rowid, value in rows]
            new = rewrite(found)
            conn.execute("BEGIN IMMEDIATE")
            for rowid, value in new.items():
                conn.execute(
                    "UPDATE cookies SET encrypted_value = ? WHERE rowid = ?", (value, rowid)
                )
            conn.execute("COMMIT")
            return len(found)
    except sqlite3.Error as exc:
        raise EnvironmentProblem(
            _("cannot update the cookies in {store}: {exc}").format(store=store, exc=exc)
        ) from None
