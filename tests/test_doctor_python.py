"""`station doctor`'s Python row."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest

from outreach_station import doctor

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_minimum_matches_requires_python() -> None:
    with PYPROJECT.open("rb") as f:
        requires = tomllib.load(f)["project"]["requires-python"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)", requires)
    assert match, f"requires-python {requires!r} is not a plain '>=X.Y'"
    assert (int(match[1]), int(match[2])) == doctor.MIN_PYTHON


@pytest.mark.parametrize("version", [(3, 10, 12), (3, 9, 2), (2, 7, 18)])
def test_older_python_fails(version: tuple[int, int, int]) -> None:
    finding = doctor.check_python(version)
    assert finding.verdict == "fail"
    assert finding.name == "python"
    assert f"Python {'.'.join(map(str, version))} " in finding.detail
    assert "needs Python 3.11 or newer" in finding.detail
    assert "3.11+" in finding.fix


@pytest.mark.parametrize("version", [(3, 11, 0), (3, 11, 2), (3, 13, 1)])
def test_supported_python_passes(version: tuple[int, int, int]) -> None:
    finding = doctor.check_python(version)
    assert finding.verdict == "ok"
    assert finding.detail.startswith(f"Python {'.'.join(map(str, version))} (")
    assert sys.executable in finding.detail
