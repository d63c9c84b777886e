"""`station docs`: the guides that messages point at, found where the package is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from outreach_station import paths
from outreach_station.errors import ExitCode


def test_lists_every_guide_with_its_title(runner: Any) -> None:
    result = runner.invoke(["docs", "--json"])
    assert result.exit_code == 0, result.stderr
    shipped = {d["name"]: d for d in json.loads(result.stdout)}
    assert {"it-deployment", "policy", "security", "fingerprints"} <= set(shipped)
    assert shipped["it-deployment"]["title"] == "Deploying outreach-station on staff laptops"
    assert Path(shipped["policy"]["path"]).parent == paths.docs_dir()


def test_prints_a_guide_by_the_name_messages_use(runner: Any) -> None:
    for name in ("it-deployment", "docs/it-deployment.md", "IT-Deployment.md"):
        result = runner.invoke(["docs", name])
        assert result.exit_code == 0, (name, result.stderr)
        assert result.stdout.startswith("# Deploying outreach-station on staff laptops\n")
        # The section that the messages of `open` and `doctor` name is in it.
        assert "### Platform profiles" in result.stdout
    where = runner.invoke(["docs", "policy", "--path"])
    assert Path(where.stdout.strip()) == paths.docs_dir() / "policy.md"


def test_unknown_or_path_like_names_are_refused(runner: Any) -> None:
    missing = runner.invoke(["docs", "nosuch"])
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert missing.stderr.startswith("station: error: no document 'nosuch' (documents: ")
    assert missing.stdout == ""
    for bad in ("../README", "docs/../../etc/passwd", ".hidden"):
        refused = runner.invoke(["docs", bad])
        assert refused.exit_code == ExitCode.USAGE, bad
        assert "is not a document name; station docs lists them" in refused.stderr
        assert refused.stdout == ""


def test_the_wheel_ships_the_guides() -> None:
    # Messages point at docs/*.md; a laptop has only the installed package.
    pyproject = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"docs" = "outreach_station/docs"' in pyproject
