"""A persona's sealed state never goes back in time: generations in the header and the registry.

Real keyring (Secret Service), real SQLite registry, real files; no browser:
the workspace is opened and closed the way `station open` does around it.
"""

from __future__ import annotations

import secrets
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest

from outreach_station import paths, workspace
from outreach_station.errors import IntegrityError
from outreach_station.storage.sqlite import SqliteStore as Registry
from outreach_station.vault import Vault, peek_generation, seal_dir, unseal_file, verify_file
from outreach_station.vault import sealed as sealed_mod

PERSONA = "abcdefghijkl"


def _session(vault: Vault, value: str) -> None:
    """One open and close of the persona, leaving `value` in its profile."""
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=lambda _m: None) as ws:
        (ws.profile / "value.txt").write_text(value)


def _value(vault: Vault) -> str:
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=lambda _m: None) as ws:
        return (ws.profile / "value.txt").read_text()


def _sealed() -> Path:
    return workspace.sealed_file(paths.current(), PERSONA)


def _nothing_left() -> None:
    assert not workspace.workspace_dir(paths.current(), PERSONA).exists()
    assert not (paths.current().persona_dir(PERSONA) / workspace.OPEN_MARKER).exists()
    assert not workspace.needs_recovery(paths.current(), PERSONA)


@pytest.fixture
def vault(secret_service: None) -> Vault:
    return Vault.init(paths.current())


def _legacy_seal(src: Path, dest: Path, key: bytes, persona_id: str) -> None:
    """A version-1 file, as station wrote before generations (one chunk: small payloads)."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        # As station's version-1 writer did: the profile's entries, never "." itself.
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=child.name)
    payload = buffer.getvalue()
    chunk = 1 << 20
    assert len(payload) < chunk
    salt = secrets.token_bytes(32)
    header = struct.pack(">8sBBI32sH", sealed_mod.MAGIC, 1, 1, chunk, salt, 0)
    aead = sealed_mod._subkey_aead(key, salt, persona_id)
    body = aead.encrypt(sealed_mod._nonce(0, True), payload, header + persona_id.encode())
    dest.write_bytes(header + body)


# -- the format ----------------------------------------------------------------------


def test_the_generation_is_in_the_authenticated_header(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    dest = tmp_path / "p.sealed"
    assert seal_dir(src, dest, key, "aliceaaaaaaa", generation=7).generation == 7
    assert dest.read_bytes()[8] == 2  # format version 2
    assert peek_generation(dest, "aliceaaaaaaa") == 7
    assert verify_file(dest, key, "aliceaaaaaaa").generation == 7
    seen: list[int | None] = []
    assert (
        unseal_file(dest, tmp_path / "out", key, "aliceaaaaaaa", check=seen.append).generation == 7
    )
    assert seen == [7]
    # Claiming another generation in the header breaks every chunk's tag.
    data = bytearray(dest.read_bytes())
    data[sealed_mod.LEGACY_HEADER_BYTES : sealed_mod.HEADER_BYTES] = struct.pack(">Q", 8)
    dest.write_bytes(bytes(data))
    assert peek_generation(dest, "aliceaaaaaaa") == 8
    with pytest.raises(IntegrityError, match="failed authentication"):
        verify_file(dest, key, "aliceaaaaaaa")
    with pytest.raises(IntegrityError, match="failed authentication"):
        unseal_file(dest, tmp_path / "out2", key, "aliceaaaaaaa", check=seen.append)
    assert seen == [7]
    assert not any((tmp_path / "out2").iterdir())


def test_a_refusing_check_extracts_nothing(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    dest = tmp_path / "p.sealed"
    seal_dir(src, dest, key, "aliceaaaaaaa", generation=3)

    def refuse(generation: int | None) -> None:
        raise IntegrityError(f"no {generation}")

    with pytest.raises(IntegrityError, match="no 3"):
        unseal_file(dest, tmp_path / "out", key, "aliceaaaaaaa", check=refuse)
    assert not any((tmp_path / "out").iterdir())


def test_a_version_1_file_still_opens(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("legacy")
    dest = tmp_path / "p.sealed"
    _legacy_seal(src, dest, key, "aliceaaaaaaa")
    assert peek_generation(dest, "aliceaaaaaaa") is None
    stats = unseal_file(dest, tmp_path / "out", key, "aliceaaaaaaa")
    assert stats.generation is None
    assert (tmp_path / "out" / "f").read_text() == "legacy"


# -- rollback and deletion -------------------------------------------------------------


def test_an_older_generation_put_back_is_refused_and_kept(vault: Vault) -> None:
    _session(vault, "first")
    old = _sealed().read_bytes()
    _session(vault, "second")
    with Registry(paths.current().registry) as reg:
        assert reg.sealed_generation(PERSONA) == (2, None)
    _sealed().write_bytes(old)

    with pytest.raises(IntegrityError) as refused:
        _value(vault)
    message = refused.value.message
    assert "\n" not in message
    assert f"persona {PERSONA}" in message
    assert "is generation 1, generation 2 is on record" in message
    assert _sealed().read_bytes() == old  # never overwritten
    _nothing_left()
    with Registry(paths.current().registry) as reg:
        assert reg.sealed_generation(PERSONA) == (2, None)


def test_a_deleted_sealed_profile_is_refused_not_opened_blank(vault: Vault) -> None:
    _session(vault, "first")
    _session(vault, "second")
    _sealed().unlink()

    with pytest.raises(IntegrityError) as refused:
        _value(vault)
    assert f"persona {PERSONA}: its sealed profile {_sealed()} is missing" in (
        refused.value.message
    )
    assert "generation 2 is on record" in refused.value.message
    assert not _sealed().exists()  # not sealed over with a blank profile
    _nothing_left()


def test_a_never_sealed_persona_opens_blank(vault: Vault) -> None:
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=lambda _m: None) as ws:
        assert not any(ws.profile.iterdir())
    with Registry(paths.current().registry) as reg:
        assert reg.sealed_generation(PERSONA) == (1, None)


def test_a_crash_between_rename_and_record_accepts_only_the_two_newest(vault: Vault) -> None:
    _session(vault, "first")
    gen1 = _sealed().read_bytes()
    _session(vault, "second")
    gen2 = _sealed().read_bytes()
    with Registry(paths.current().registry) as reg:
        # As if the seal of generation 3 recorded it pending and died before its rename.
        reg.begin_sealed_generation(PERSONA, 3)
    assert _value(vault) == "second"  # generation 2 stands
    with Registry(paths.current().registry) as reg:
        # That open sealed the next one past the pending number: never reused.
        assert reg.sealed_generation(PERSONA) == (4, None)
    gen4 = _sealed().read_bytes()

    # Died after the rename: the file is the pending generation; accepted and recorded.
    with Registry(paths.current().registry) as reg:
        reg.commit_sealed_generation(PERSONA, 3)
        reg.begin_sealed_generation(PERSONA, 4)
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=lambda _m: None) as ws:
        assert (ws.profile / "value.txt").read_text() == "second"
        with Registry(paths.current().registry) as reg:
            assert reg.sealed_generation(PERSONA) == (4, None)

    # Never one older than the one on record, pending or not.
    with Registry(paths.current().registry) as reg:
        reg.commit_sealed_generation(PERSONA, 3)
        reg.begin_sealed_generation(PERSONA, 4)
    for number, older in ((1, gen1), (2, gen2)):
        _sealed().write_bytes(older)
        with pytest.raises(IntegrityError, match=rf"is generation {number}, generation 3 \(or 4\)"):
            _value(vault)
        _nothing_left()
        assert _sealed().read_bytes() == older
    _sealed().write_bytes(gen4)
    assert _value(vault) == "second"


def test_a_version_1_profile_is_accepted_once_then_gets_a_generation(
    vault: Vault, tmp_path: Path
) -> None:
    src = tmp_path / "legacy"
    (src / "profile").mkdir(parents=True)
    (src / "home").mkdir()
    (src / "profile" / "value.txt").write_text("legacy")
    _sealed().parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _legacy_seal(src, _sealed(), vault.ensure_data_key(PERSONA), PERSONA)
    legacy = _sealed().read_bytes()

    assert _value(vault) == "legacy"
    assert peek_generation(_sealed(), PERSONA) == 1
    _sealed().write_bytes(legacy)
    with pytest.raises(IntegrityError, match="a file without a generation"):
        _value(vault)
    _nothing_left()


def test_status_problem_names_what_is_wrong(vault: Vault) -> None:
    state = workspace.SealedState(paths.current(), PERSONA)
    assert state.problem() is None
    _session(vault, "first")
    old = _sealed().read_bytes()
    _session(vault, "second")
    assert state.problem() is None
    _sealed().write_bytes(old)
    assert "is generation 1, generation 2 is on record" in (state.problem() or "")
    _sealed().unlink()
    assert "is missing" in (state.problem() or "")
    shutil.rmtree(_sealed().parent)
    assert "is missing" in (state.problem() or "")


def test_status_warns_and_doctor_fails_for_a_rolled_back_persona(
    secret_service: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: Any
) -> None:
    from outreach_station import api, doctor

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "site-one.toml").write_text('name = "S"\nstart_url = "http://127.0.0.1/"\n')
    monkeypatch.setenv("STATION_PROFILES", str(profiles))
    persona = api.create_persona("site-one")
    vault = api.open_vault()
    for value in ("first", "second"):
        with workspace.open_workspace(paths.current(), persona.id, vault, notify=print) as ws:
            (ws.profile / "value.txt").write_text(value)
    sealed = workspace.sealed_file(paths.current(), persona.id)
    clean = runner.invoke(["status"])
    assert clean.exit_code == 0
    assert "generation" not in clean.output
    row = next(f for f in doctor.run_doctor().findings if f.name == "sealed profiles")
    assert row.verdict == "ok"

    sealed.unlink()
    result = runner.invoke(["status"])
    assert result.exit_code == 0
    assert f"persona {persona.id}: its sealed profile {sealed} is missing" in result.output
    row = next(f for f in doctor.run_doctor().findings if f.name == "sealed profiles")
    assert row.verdict == "fail"
    assert persona.id in row.detail
    assert "generation 2 is on record" in row.detail
    checked = runner.invoke(["doctor", "--quick"])
    assert checked.exit_code != 0
    assert persona.id in checked.output


def test_a_kill_while_unsealing_leaves_the_sealed_profile_standing(vault: Vault) -> None:
    _session(vault, "first")
    sealed_before = _sealed().read_bytes()
    # What a SIGKILL halfway through unsealing leaves: part of the profile, no open marker
    # (bench/drill_seal_kill.py does it for real).
    partial = workspace.workspace_dir(paths.current(), PERSONA) / "profile"
    partial.mkdir(parents=True)
    (partial / "half-written").write_bytes(b"x" * 100)
    seen: list[str] = []
    with workspace.open_workspace(paths.current(), PERSONA, vault, notify=seen.append) as ws:
        assert (ws.profile / "value.txt").read_text() == "first"
        assert not (ws.profile / "half-written").exists()
    assert not any("recovered" in m for m in seen), seen
    with Registry(paths.current().registry) as reg:
        assert reg.sealed_generation(PERSONA) == (2, None)  # one seal: this session's
    assert _sealed().read_bytes() != sealed_before


def test_station_open_refuses_a_rolled_back_profile_in_one_line(
    secret_service: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: Any
) -> None:
    from outreach_station import api
    from outreach_station.errors import ExitCode

    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "site-one.toml").write_text('name = "S"\nstart_url = "http://127.0.0.1:9/"\n')
    monkeypatch.setenv("STATION_PROFILES", str(profiles))
    persona = api.create_persona("site-one")
    vault = api.open_vault()
    for value in ("first", "second"):
        with workspace.open_workspace(paths.current(), persona.id, vault, notify=print) as ws:
            (ws.profile / "value.txt").write_text(value)
    sealed = workspace.sealed_file(paths.current(), persona.id)
    old = sealed.read_bytes()
    with workspace.open_workspace(paths.current(), persona.id, vault, notify=print) as ws:
        (ws.profile / "value.txt").write_text("third")
    newest = sealed.read_bytes()

    for damage, expected in (
        (old, "is generation 2, generation 3 is on record"),
        (None, "is missing, generation 3 is on record"),
    ):
        if damage is None:
            sealed.unlink()
        else:
            sealed.write_bytes(damage)
        result = runner.invoke(["open", "site-one", "--headless"])
        assert result.exit_code == ExitCode.INTEGRITY
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"station: error: persona {persona.id}: its sealed profile")
        assert expected in lines[0]
        assert (sealed.read_bytes() if damage is not None else None) == damage
        assert not workspace.needs_recovery(paths.current(), persona.id)
    sealed.write_bytes(newest)
    with workspace.open_workspace(paths.current(), persona.id, vault, notify=print) as ws:
        assert (ws.profile / "value.txt").read_text() == "third"


def test_a_registry_older_than_the_file_is_refused_too(vault: Vault) -> None:
    _session(vault, "first")
    _session(vault, "second")
    with Registry(paths.current().registry) as reg:
        reg.commit_sealed_generation(PERSONA, 1)  # as if the registry came from a backup
    newest = _sealed().read_bytes()
    with pytest.raises(IntegrityError, match=r"is generation 2, generation 1 is on record: the "):
        _value(vault)
    assert "the registry is older than the file" in (
        workspace.SealedState(paths.current(), PERSONA).problem() or ""
    )
    assert _sealed().read_bytes() == newest
    _nothing_left()


def test_a_refused_key_leaves_no_workspace_behind(vault: Vault, runner: Any) -> None:
    _session(vault, "first")
    wrapped = vault.wrapped_key_path(PERSONA)
    data = bytearray(wrapped.read_bytes())
    data[-1] ^= 0x01
    wrapped.write_bytes(bytes(data))
    sealed_before = _sealed().read_bytes()
    with pytest.raises(IntegrityError):
        _value(vault)
    # Nothing that `station status` would take for a crash.
    _nothing_left()
    assert _sealed().read_bytes() == sealed_before
    assert wrapped.read_bytes() == bytes(data)
