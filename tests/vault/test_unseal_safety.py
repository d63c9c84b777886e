"""Unsealing refuses archives that reach outside the profile, on every Python.

The sealed files here are genuine: `seal_dir` itself writes them, fed a
crafted list of archive members (what a holder of the key could make), so
they pass authentication and only station's own member checks stand
between them and the file system. tarfile's `filter=` does not exist on
Debian 12's Python 3.11.2, so nothing here may lean on it.
"""

from __future__ import annotations

import os
import secrets
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from outreach_station.errors import ExitCode, IntegrityError, StationError
from outreach_station.vault import seal_dir, unseal_file, verify_file
from outreach_station.vault import sealed as sealed_mod

PERSONA = "aliceaaaaaaa"
MTIME = 1_700_000_000

Member = tuple[tarfile.TarInfo, bytes | None]


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


def member(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    data: bytes | None = None,
    mode: int = 0o600,
    link: str = "",
) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = MTIME
    info.linkname = link
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    if kind == tarfile.REGTYPE:
        data = b"x" if data is None else data
        info.size = len(data)
    return info, data


def seal_members(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, key: bytes, members: list[Member]
) -> Path:
    """A sealed file written by `seal_dir` whose archive holds exactly `members`."""
    scratch = tmp_path / "forge"
    scratch.mkdir()
    entries = []
    by_name: dict[str, tarfile.TarInfo] = {}
    for i, (info, data) in enumerate(members):
        source = scratch / f"{i}.bin"
        source.write_bytes(data or b"")
        entries.append(sealed_mod._Entry(f"{i}", str(source), source.stat()))
        by_name[f"{i}"] = info
    with monkeypatch.context() as patch:
        patch.setattr(sealed_mod, "_walk", lambda _root: (entries, 0))
        patch.setattr(sealed_mod, "_tarinfo", lambda entry: by_name[entry.relative])
        dest = tmp_path / "store" / "profile.sealed"
        seal_dir(scratch, dest, key, PERSONA, chunk_size=4096)
    verify_file(dest, key, PERSONA)  # authentic: only the member checks can refuse it
    return dest


def listing(root: Path, leave_out: Path) -> dict[str, tuple[int, int]]:
    """Every path under root (but not under leave_out), with its mode and size."""
    seen: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == leave_out or leave_out in Path(dirpath).parents:
            continue
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            if Path(full) != leave_out:
                st = os.lstat(full)
                seen[full] = (st.st_mode, st.st_size)
    return seen


def assert_refused(
    tmp_path: Path, key: bytes, sealed: Path, offending: str, says: str
) -> StationError:
    out = tmp_path / "out"
    before = listing(tmp_path, out)
    victim = tmp_path / "victim.txt"
    with pytest.raises(sealed_mod.UnsafeArchiveError) as raised:
        unseal_file(sealed, out, key, PERSONA)
    error = raised.value
    assert isinstance(error, IntegrityError)
    assert error.exit_code == ExitCode.INTEGRITY
    message = str(error)
    assert "\n" not in message
    assert str(sealed) in message
    assert repr(offending) in message
    assert says in message
    # Nothing appeared or changed anywhere outside the target.
    assert listing(tmp_path, out) == before
    assert victim.read_bytes() == b"precious"
    return error


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_bytes(b"precious")
    return path


BAD_ARCHIVES: dict[str, tuple[Callable[[Path], list[Member]], str, str]] = {
    "absolute path": (
        lambda t: [member("ok.txt"), member(str(t / "abs-escape.txt"))],
        "{t}/abs-escape.txt",
        "absolute path",
    ),
    "dot-dot": (lambda t: [member("ok.txt"), member("../escaped.txt")], "../escaped.txt", "'..'"),
    "dot-dot deeper": (
        lambda t: [member("a", tarfile.DIRTYPE, mode=0o700), member("a/../../up.txt")],
        "a/../../up.txt",
        "'..'",
    ),
    "absolute symlink": (
        lambda t: [member("Default/passwd", tarfile.SYMTYPE, link=str(t / "victim.txt"))],
        "Default/passwd",
        "outside the profile",
    ),
    "climbing symlink": (
        lambda t: [member("Default/up", tarfile.SYMTYPE, link="../../victim.txt")],
        "Default/up",
        "outside the profile",
    ),
    "symlink out through another symlink": (
        lambda t: [
            member("a", tarfile.SYMTYPE, link="s/../victim.txt"),
            member("s", tarfile.SYMTYPE, link="."),
        ],
        "a",
        "through another link",
    ),
    "hard link to an absolute path": (
        lambda t: [member("hard", tarfile.LNKTYPE, link=str(t / "victim.txt"))],
        "hard",
        "absolute path",
    ),
    "hard link climbing out": (
        lambda t: [member("hard", tarfile.LNKTYPE, link="../victim.txt")],
        "hard",
        "'..'",
    ),
    "hard link to something not extracted": (
        lambda t: [member("hard", tarfile.LNKTYPE, link="later.txt"), member("later.txt")],
        "hard",
        "not a file extracted before it",
    ),
    "character device": (
        lambda t: [member("null", tarfile.CHRTYPE, mode=0o666)],
        "null",
        "device, FIFO",
    ),
    "block device": (lambda t: [member("disk", tarfile.BLKTYPE)], "disk", "device, FIFO"),
    "fifo": (lambda t: [member("pipe", tarfile.FIFOTYPE)], "pipe", "device, FIFO"),
    "setuid file": (lambda t: [member("run", mode=0o4755)], "run", "setuid"),
    "setgid directory": (lambda t: [member("d", tarfile.DIRTYPE, mode=0o2755)], "d", "setuid"),
    "sticky directory": (lambda t: [member("d", tarfile.DIRTYPE, mode=0o1777)], "d", "sticky"),
    "file written through a symlink": (
        lambda t: [
            member("real", tarfile.DIRTYPE, mode=0o700),
            member("inner", tarfile.SYMTYPE, link="real"),
            member("inner/file.txt"),
        ],
        "inner/file.txt",
        "through the symlink 'inner'",
    ),
    "file replacing a symlink": (
        lambda t: [member("link", tarfile.SYMTYPE, link="x"), member("link")],
        "link",
        "appears twice",
    ),
    "file below a file": (
        lambda t: [member("plain"), member("plain/child")],
        "plain/child",
        "not a directory",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ARCHIVES))
def test_unsafe_member_is_refused_and_nothing_written_outside(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch, victim: Path, case: str
) -> None:
    build, offending, says = BAD_ARCHIVES[case]
    sealed = seal_members(monkeypatch, tmp_path, key, build(tmp_path))
    assert_refused(tmp_path, key, sealed, offending.format(t=tmp_path), says)


def test_refusal_does_not_need_tarfile_filters(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch, victim: Path
) -> None:
    # As on Python 3.11.2: no extraction filters at all.
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    monkeypatch.delattr(tarfile.TarFile, "extraction_filter", raising=False)
    sealed = seal_members(
        monkeypatch, tmp_path, key, [member("up", tarfile.SYMTYPE, link="../victim.txt")]
    )
    assert_refused(tmp_path, key, sealed, "up", "outside the profile")


def test_refusal_through_the_cli_is_one_line(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = seal_members(monkeypatch, tmp_path, key, [member("../x")])
    with pytest.raises(StationError) as raised:
        unseal_file(sealed, tmp_path / "out", key, PERSONA)
    assert str(raised.value).startswith(f"refused to unseal {sealed} (persona 'aliceaaaaaaa'): ")
    assert "archive member '../x' has a '..' component" in str(raised.value)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under root with its kind, mode, mtime and content or target."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath, name)
            st = full.lstat()
            rel = full.relative_to(root).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st.st_mode), int(st.st_mtime))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), int(st.st_mtime), full.read_bytes())
    return out


def test_a_normal_profile_unseals_identically(tmp_path: Path, key: bytes) -> None:
    profile = tmp_path / "profile"
    default = profile / "Default"
    (default / "Local Storage" / "leveldb").mkdir(parents=True)
    (default / "Local Storage" / "leveldb" / "000003.log").write_bytes(os.urandom(10_000))
    (default / "Preferences").write_text('{"a": 1}')
    (default / "empty").write_bytes(b"")
    (default / "helper.sh").write_text("#!/bin/sh\n")
    (default / "helper.sh").chmod(0o755)
    (default / "shared.txt").write_text("readable")
    (default / "shared.txt").chmod(0o644)
    (default / "read-only").mkdir()
    (default / "read-only" / "inside").write_text("kept")
    (default / "link-to-prefs").symlink_to("Preferences")
    (default / "link-up").symlink_to("../Local State")
    (default / "link-to-dir").symlink_to("Local Storage/leveldb")
    (profile / "Local State").write_text("{}")
    for path in [*profile.rglob("*"), profile]:
        if not path.is_symlink():
            os.utime(path, (MTIME, MTIME))
    (default / "read-only").chmod(0o500)
    (default / "Local Storage").chmod(0o750)
    sealed = tmp_path / "p.sealed"
    seal_dir(profile, sealed, key, PERSONA, chunk_size=4096)
    out = tmp_path / "out"
    stats = unseal_file(sealed, out, key, PERSONA)
    assert tree(out) == tree(profile)
    assert tree(out)["Default/helper.sh"][1] == 0o755
    assert tree(out)["Default/read-only"][1] == 0o500
    assert (out / "Default" / "link-to-dir" / "000003.log").is_file()
    assert stats.files == 7
    assert stats.directories == 4


def test_hard_links_inside_the_profile_still_unseal(
    tmp_path: Path, key: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    sealed = seal_members(
        monkeypatch,
        tmp_path,
        key,
        [
            member("d", tarfile.DIRTYPE, mode=0o700),
            member("d/first", data=b"same inode"),
            member("second", tarfile.LNKTYPE, link="d/first"),
            member("./d/dot-named", data=b"dot"),
        ],
    )
    out = tmp_path / "out"
    unseal_file(sealed, out, key, PERSONA)
    assert (out / "second").read_bytes() == b"same inode"
    assert (out / "second").stat().st_ino == (out / "d" / "first").stat().st_ino
    assert (out / "d" / "dot-named").read_bytes() == b"dot"
