from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from outreach_station.cli import app


def all_commands() -> list[list[str]]:
    import typer.main

    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return found


@pytest.mark.parametrize("path", all_commands(), ids=lambda p: " ".join(p) or "station")
def test_every_command_has_help_with_an_example(runner: Any, path: list[str]) -> None:
    result = runner.invoke([*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout
    import typer.main

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    if not hasattr(command, "commands"):
        assert "Example" in (command.help or ""), f"'station {' '.join(path)}' has no example"


def test_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "outreach_station", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0
    assert "station open <platform>" in result.stdout
