from __future__ import annotations

from pathlib import Path

import pytest

from outreach_station.errors import ConfigError, NotFoundError, UsageError
from outreach_station.platforms import load_catalogue, load_profile_file

GOOD = 'name = "Good"\nstart_url = "https://example.se/"\n'


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    path.write_text(text)
    return path


def test_defaults_are_swedish_desktop(tmp_path: Path) -> None:
    profile = load_profile_file(write(tmp_path, "good", GOOD))
    assert (profile.id, profile.device, profile.locale, profile.timezone) == (
        "good",
        "desktop",
        "sv-SE",
        "Europe/Stockholm",
    )
    assert profile.accept_languages == ("sv-SE", "sv", "en-US", "en")


def test_shipped_profiles_and_demo_load() -> None:
    catalogue = load_catalogue()
    assert catalogue.problems == ()
    assert {"demo", "example-classifieds", "example-mobile"} <= set(catalogue.platforms)
    assert catalogue.get("example-mobile").device == "mobile"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = \n", "malformed TOML"),
        ('start_url = "https://x.se/"\n', "missing required field 'name'"),
        (GOOD + "colour = 1\n", "unknown field 'colour'"),
        (GOOD + 'device = "tablet"\n', "field 'device': expected 'desktop' or 'mobile'"),
        (GOOD + 'timezone = "Mars/Olympus"\n', "field 'timezone'"),
        (GOOD + "min_standby = -1\n", "field 'min_standby'"),
        (GOOD + 'locale = "swedish"\n', "field 'locale'"),
        ('name = "x"\nstart_url = "ftp://x.se/"\n', "field 'start_url'"),
        (GOOD + 'id = "other"\n', "must match the file name"),
    ],
)
def test_bad_profile_names_file_and_field_and_spares_the_rest(
    tmp_path: Path, text: str, message: str
) -> None:
    bad = write(tmp_path, "broken", text)
    write(tmp_path, "fine", GOOD)
    catalogue = load_catalogue([tmp_path])
    assert "fine" in catalogue.platforms
    assert "broken" not in catalogue.platforms
    (problem,) = catalogue.problems
    assert str(bad) in problem.message
    assert message in problem.message
    with pytest.raises(ConfigError, match=message):
        catalogue.get("broken")


def test_a_broken_override_does_not_fall_back(tmp_path: Path) -> None:
    write(tmp_path / "a", "site", GOOD)
    write(tmp_path / "b", "site", "name = 1\n")
    catalogue = load_catalogue([tmp_path / "a", tmp_path / "b"])
    with pytest.raises(ConfigError):
        catalogue.get("site")


def test_demo_cannot_be_redefined(tmp_path: Path) -> None:
    write(tmp_path, "demo", GOOD)
    catalogue = load_catalogue([tmp_path])
    assert catalogue.platforms["demo"].builtin
    assert "built in" in catalogue.problems[0].message


def test_unknown_and_malformed_platform_ids(tmp_path: Path) -> None:
    catalogue = load_catalogue([tmp_path])
    with pytest.raises(NotFoundError, match="unknown platform 'nope'"):
        catalogue.get("nope")
    with pytest.raises(UsageError, match="malformed platform id"):
        catalogue.get("../etc")


BASE = 'start_url = "https://example.se/"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD + "min_standby = -5\n",
            "field 'min_standby': expected a whole number from 0 to 50, got int -5",
        ),
        (
            GOOD + "min_standby = 51\n",
            "field 'min_standby': expected a whole number from 0 to 50, got int 51",
        ),
        (
            GOOD + "min_standby = 1e20\n",
            "field 'min_standby': expected a whole number from 0 to 50, got float 1e+20",
        ),
        (
            GOOD + "min_standby = 9223372036854775807\n",
            "field 'min_standby': expected a whole number from 0 to 50, "
            "got int 9223372036854775807",
        ),
        (
            GOOD + 'min_standby = "3"\n',
            "field 'min_standby': expected a whole number from 0 to 50, got str '3'",
        ),
        (
            BASE + f'name = "{"N" * 1_000_000}"\n',
            "field 'name': expected at most 100 printable characters, "
            "got str of 1000000 characters",
        ),
        (
            BASE + 'name = "Evil\\u001b[2J"\n',
            "field 'name': expected at most 100 printable characters, got str 'Evil\\x1b[2J'",
        ),
        (
            BASE + 'name = "abc\\u202edcba"\n',
            "field 'name': expected at most 100 printable characters, got str 'abc\\u202edcba'",
        ),
        (
            GOOD + f'timezone = "{"Z" * 500_000}"\n',
            "field 'timezone': expected an IANA zone like 'Europe/Stockholm', "
            "got str of 500000 characters",
        ),
        (
            'name = "x"\n' + f'start_url = "https://example.se/{"p" * 5000}"\n',
            "field 'start_url': expected an http(s) URL with a host of at most 2048 "
            "characters, got str of 5019 characters",
        ),
    ],
)
def test_profile_values_are_bounded(tmp_path: Path, text: str, message: str) -> None:
    bad = write(tmp_path, "broken", text)
    with pytest.raises(ConfigError) as caught:
        load_profile_file(bad)
    assert caught.value.message == f"{bad}: {message}"


def test_name_with_letters_and_spaces_is_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "fine", BASE + 'name = "Annonssajt, Malmö (mobil)"\n')
    assert load_profile_file(path).name == "Annonssajt, Malmö (mobil)"


def test_profile_that_is_not_a_regular_file_or_too_big(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as caught:
        load_profile_file(fifo)
    assert caught.value.message == f"{fifo}: not a regular file; give the path of a TOML file"
    huge = write(tmp_path, "huge", GOOD + "#" * (1 << 20))
    with pytest.raises(ConfigError) as caught:
        load_profile_file(huge)
    assert caught.value.message == (
        f"{huge}: larger than 1 MiB, too large for a station settings file"
    )
