"""A throwaway station home for a bench or drill script: nothing of the machine's is used."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def scratch_home(prefix: str) -> tuple[Path, Path]:
    """Point station at a fresh home, runtime dir (in RAM) and XDG dirs; returns (scratch, runtime).

    No policy file exists at STATION_POLICY, so only the built-in defaults apply.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    runtime = Path(tempfile.mkdtemp(prefix=prefix[0], dir="/dev/shm"))
    os.environ.update(
        STATION_HOME=str(scratch / "home"),
        STATION_POLICY=str(scratch / "no-policy.toml"),
        XDG_RUNTIME_DIR=str(runtime),
        XDG_CACHE_HOME=str(scratch / "cache"),
        XDG_CONFIG_HOME=str(scratch / "config"),
    )
    return scratch, runtime
