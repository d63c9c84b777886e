"""`station doctor`: is this machine fit to open personas, and if not, what to do.

Each check returns a `Finding` (ok / warn / fail, what was seen, how to fix
it) and never raises for the thing it checks: a broken keyring is a finding,
not a crash. Whatever a test needs to provoke for real but cannot (the clock,
free disk, where the managed browser policy lives) is a parameter.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from outreach_station import paths
from outreach_station.clock import utcnow
from outreach_station.errors import StationError
from outreach_station.fonts import FontInventory
from outreach_station.i18n import N_, _, ngettext

if TYPE_CHECKING:
    from outreach_station.policy import Policy

Verdict = Literal["ok", "warn", "fail"]

GIB: Final = 1024**3
MIB: Final = 1024**2
DISK_WARN_BYTES: Final = 2 * GIB
DISK_FAIL_BYTES: Final = 500 * MIB
# No clock can be earlier than the day this release was made: a machine that
# says so has lost its time (dead RTC battery, no NTP), and audit times and
# TLS certificates go wrong with it.
RELEASE_DATE: Final = datetime(2026, 11, 1, tzinfo=UTC)
_PROBE_ENTRY: Final = "doctor-probe"
# Check names: English in --json (an identifier for scripts), translated where shown.
PYTHON: Final = N_("python")
BROWSER: Final = N_("browser")
KEYRING: Final = N_("keyring")
WORKSPACE: Final = N_("workspace")
POLICY: Final = N_("policy")
AUDIT_LOG: Final = N_("audit log")
DISK: Final = N_("disk")
CLOCK: Final = N_("clock")
PERSONAS: Final = N_("personas")
SEALED_PROFILES: Final = N_("sealed profiles")
PERMISSIONS: Final = N_("permissions")
PERSONA_VARIETY: Final = N_("persona variety")
BROWSER_POLICY: Final = N_("browser policy")
PLATFORMS: Final = N_("platforms")
TEAM: Final = N_("team")
# The oldest Python station runs on: pyproject.toml's requires-python (a test
# keeps the two equal).
MIN_PYTHON: Final = (3, 11)


@dataclass(frozen=True)
class Finding:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "verdict": self.verdict, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class DoctorReport:
    findings: tuple[Finding, ...]

    @property
    def failed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.verdict == "fail")

    @property
    def ok(self) -> bool:
        return not self.failed


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _existing(path: Path) -> Path:
    """`path` or the nearest directory above it that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


# --- the checks ---------------------------------------------------------------


def check_python(version: tuple[int, ...] | None = None) -> Finding:
    """The running Python, failing below `MIN_PYTHON`."""
    running = tuple(sys.version_info[:3]) if version is None else version
    shown = ".".join(str(part) for part in running)
    where = f"Python {shown} ({platform.python_implementation()}, {sys.executable})"
    if running[:2] < MIN_PYTHON:
        needed = ".".join(str(part) for part in MIN_PYTHON)
        return Finding(
            PYTHON,
            "fail",
            _("{where}: station needs Python {needed} or newer").format(where=where, needed=needed),
            _(
                "install station with Python {needed}+ (Debian 12: sudo apt-get install python3)"
            ).format(needed=needed),
        )
    return Finding(PYTHON, "ok", where)


def check_browser() -> Finding:
    from outreach_station.context import Station

    station = Station.load()
    try:
        try:
            station.effective  # noqa: B018 - loaded here so that a bad policy falls back below
        except StationError:
            from outreach_station.browser import find_browser

            found = find_browser()
        else:
            found = station.browser  # honours the policy's choice
    except StationError as exc:
        return Finding(BROWSER, "fail", exc.message, _browser_fix())
    return Finding(BROWSER, "ok", found.describe())


def _browser_fix() -> str:
    """Install Chromium only when none is installed; else point the policy at the one there is."""
    from outreach_station.browser import find_browser

    try:
        installed = find_browser()
    except StationError:
        return "sudo apt-get install chromium chromium-l10n"  # a command: the same in any language
    return _("set browser.executable in the policy to {path} (a Chromium installed here)").format(
        path=installed.path
    )


def check_keyring(policy: Policy | None = None) -> Finding:
    from outreach_station import secret_store

    try:
        backend = secret_store.check_backend()
    except StationError as exc:
        # The hint is for a person at a command; here the fix column says what applies.
        detail = exc.message.replace(_(secret_store.INSTALL_HINT), "").strip()
        if shutil.which("gnome-keyring-daemon") is None:
            fix = "sudo apt-get install gnome-keyring libpam-gnome-keyring dbus-x11"
        else:
            fix = _("use station inside a desktop session, which unlocks the login keyring")
        if policy is not None and policy.vault.allow_passphrase:
            fix = _("{fix}; where no keyring can run: station init --passphrase").format(fix=fix)
        fix = _("{fix} (station docs it-deployment, section 5)").format(fix=fix)
        return Finding(KEYRING, "fail", detail, fix)
    # A read of an entry that never exists: harmless, but it must unlock.
    error = secret_store.probe(backend, _PROBE_ENTRY)
    if error is not None:
        return Finding(
            KEYRING,
            "fail",
            _("{keyring} could not be read ({error})").format(
                keyring=backend.description, error=error
            ),
            _("log in to the desktop session so the login keyring is unlocked"),
        )
    return Finding(KEYRING, "ok", _("{keyring}, unlocked").format(keyring=backend.description))


def check_workspace() -> Finding:
    base, ram = paths.runtime_base()
    if ram:
        return Finding(
            WORKSPACE, "ok", _("open profiles live in RAM under {path}").format(path=base.parent)
        )
    return Finding(
        WORKSPACE,
        "warn",
        _("no RAM-backed directory; open profiles would be written to disk in {path}").format(
            path=base
        ),
        _("run station in a login session (XDG_RUNTIME_DIR) or make /dev/shm writable"),
    )


def check_policy() -> tuple[Finding, object | None]:
    """The policy finding, and the effective policy when it loaded."""
    from outreach_station.policy import check_trusted, load_policy

    system = paths.system_policy_file()
    try:
        effective = load_policy()
        if system.exists():
            check_trusted(system)
    except StationError as exc:
        return (
            Finding(
                POLICY,
                "fail",
                exc.message,
                _("fix the file, then: station policy check --installed {path}").format(
                    path=system
                ),
            ),
            None,
        )
    if not effective.system_loaded:
        return (
            Finding(
                POLICY,
                "warn",
                _("no system policy at {path}: built-in defaults apply").format(path=system),
                _("install the organisation's policy.toml there (root-owned, 0644)"),
            ),
            effective,
        )
    return Finding(POLICY, "ok", _("valid and trusted: {path}").format(path=system)), effective


def check_audit(path: Path) -> Finding:
    from outreach_station.audit import AuditLog, ChainAnchor

    where = _existing(path)
    if where != path and not where.is_dir():
        return Finding(
            AUDIT_LOG,
            "fail",
            _("cannot create {path}: {where} is not a directory").format(path=path, where=where),
            _("remove or move {where}, or set audit.path in the policy").format(where=where),
        )
    if not os.access(where if where != path else path, os.W_OK):
        return Finding(
            AUDIT_LOG,
            "fail",
            _("{path} is not writable").format(path=path),
            _("give this user write access to {path}").format(path=path),
        )
    try:
        # Against its anchor: a deleted or cut log is not "0 records, intact".
        result = AuditLog(path, anchor=ChainAnchor(paths.current().audit_anchor, path)).verify()
    except (StationError, OSError) as exc:
        message = exc.message if isinstance(exc, StationError) else str(exc.strerror)
        return Finding(
            AUDIT_LOG,
            "fail",
            f"{path}: {message}",
            _("check the path and its permissions"),
        )
    if not result.ok:
        return Finding(
            AUDIT_LOG,
            "fail",
            _("{path}: chain broken at line {line}: {reason}").format(
                path=path, line=result.first_bad_line, reason=result.reason
            ),
            _("keep the file as evidence, report it to IT, and run 'station audit verify'"),
        )
    return Finding(
        AUDIT_LOG,
        "ok",
        ngettext(
            "{path}: writable, {n} record, chain intact",
            "{path}: writable, {n} records, chain intact",
            result.count,
        ).format(path=path, n=result.count),
    )


def check_disk(free: int, where: Path) -> Finding:
    shown = _("{size} GiB free under {path}").format(size=f"{free / GIB:.1f}", path=where)
    if free < DISK_FAIL_BYTES:
        return Finding(DISK, "fail", shown, _("free disk space: sealing a profile needs room"))
    if free < DISK_WARN_BYTES:
        return Finding(DISK, "warn", shown, _("free some disk space soon"))
    return Finding(DISK, "ok", shown)


# Fewer distinct devices than this (screens aside) and a team's personas of one
# platform start to collide; the acceptance bar is 20 on one laptop.
VARIETY_WARN = 20


def check_variety(fonts: FontInventory, cpus: int) -> Finding:
    """How many distinct devices this machine can present, screens aside.

    The product of the levers that work here: the default-font sets, the
    processor counts and the font renderings (docs/fingerprints.md). That is
    what a fingerprinter ignoring screen, window, languages, zone and user
    agent can tell apart, besides the probed optional families.
    """
    from outreach_station.fingerprint import RENDERINGS

    # The population has every count from 2 up; the browser gets at most the machine's.
    cpu_choices = max(1, cpus - 1)
    if not fonts.families:
        return Finding(
            PERSONA_VARIETY,
            "warn",
            _("fontconfig lists no fonts: every persona presents the machine's fonts"),
            _("install fontconfig (fc-list, fc-match) and the fonts staff need"),
        )
    font_choices = 2 ** len(set(fonts.notable) - set(fonts.essential))
    stand_ins = dict(fonts.stand_ins)
    if stand_ins:
        # What Arial and Times New Roman draw with: one of each one's installed
        # stand-ins (the first a persona keeps), or none (fingerprint.canvas_key).
        font_choices = 1
        for name in ("Arial", "Times New Roman"):
            font_choices *= len(stand_ins.get(name, ())) + 1
    devices = font_choices * cpu_choices * len(RENDERINGS)
    detail = _(
        "{devices} distinct devices: {font_sets} default-font sets x {cpu_counts} "
        "processor counts x {renderings} font renderings "
        "({families} font families, {cpus} CPUs)"
    ).format(
        devices=devices,
        font_sets=font_choices,
        cpu_counts=cpu_choices,
        renderings=len(RENDERINGS),
        families=len(fonts.families),
        cpus=cpus,
    )
    if devices < VARIETY_WARN:
        return Finding(
            PERSONA_VARIETY,
            "warn",
            _("{detail}: personas of one platform may look like one device").format(detail=detail),
            _(
                "install fonts that stand in for Arial and Times New Roman "
                "(Debian: fonts-liberation fonts-croscore); see docs/fingerprints.md"
            ),
        )
    return Finding(PERSONA_VARIETY, "ok", detail)


def check_clock(now: datetime, newest_record: datetime | None) -> Finding:
    if now < RELEASE_DATE:
        return Finding(
            CLOCK,
            "fail",
            _("the clock says {now} UTC, before this release ({release})").format(
                now=f"{now:%Y-%m-%d %H:%M}", release=f"{RELEASE_DATE:%Y-%m-%d}"
            ),
            _("set the time (timedatectl set-ntp true)"),
        )
    if newest_record is not None and now < newest_record:
        return Finding(
            CLOCK,
            "fail",
            _("the clock says {now} UTC, before the newest audit record ({newest} UTC)").format(
                now=f"{now:%Y-%m-%d %H:%M}", newest=f"{newest_record:%Y-%m-%d %H:%M}"
            ),
            _("set the time (timedatectl set-ntp true)"),
        )
    return Finding(CLOCK, "ok", f"{now:%Y-%m-%d %H:%M} UTC")


def check_personas() -> Finding:
    from outreach_station.storage import open_store
    from outreach_station.workspace import is_locked, needs_recovery

    station = paths.current()
    if not station.registry.exists():
        return Finding(PERSONAS, "ok", _("no personas yet"))
    with open_store(station) as reg:
        personas = reg.list()
    left = [p for p in personas if needs_recovery(station, p.id) and not is_locked(station, p.id)]
    if left:
        names = ", ".join(f"{p.id} ({p.platform})" for p in left)
        first = left[0]
        return Finding(
            PERSONAS,
            "fail",
            _("left unsealed after a crash: {names}").format(names=names),
            _(
                "open and close each to reseal it, e.g. station open {platform} --persona {id}"
            ).format(platform=first.platform, id=first.id),
        )
    return Finding(
        PERSONAS,
        "ok",
        ngettext(
            "{n} persona, none left unsealed", "{n} personas, none left unsealed", len(personas)
        ).format(n=len(personas)),
    )


def check_sealed_state() -> Finding:
    """Each persona's sealed profile is the generation the registry expects (none put back)."""
    from outreach_station.storage import open_store
    from outreach_station.workspace import SealedState, is_locked, needs_recovery

    station = paths.current()
    if not station.registry.exists():
        return Finding(SEALED_PROFILES, "ok", _("no personas yet"))
    with open_store(station) as reg:
        personas = [p for p in reg.list() if p.status != "retired"]
    problems = [
        problem
        for p in personas
        if not is_locked(station, p.id)
        and not needs_recovery(station, p.id)
        and (problem := SealedState(station, p.id).problem()) is not None
    ]
    if problems:
        more = _(" (and {n} more)").format(n=len(problems) - 1) if len(problems) > 1 else ""
        return Finding(
            SEALED_PROFILES,
            "fail",
            problems[0] + more,
            _(
                "restore the newest profile.sealed of each from a backup, or retire the persona "
                "(station persona retire ID); report it to IT if nobody here replaced it"
            ),
        )
    return Finding(
        SEALED_PROFILES,
        "ok",
        ngettext(
            "{n} persona, each at its generation",
            "{n} personas, each at its generation",
            len(personas),
        ).format(n=len(personas)),
    )


def _reachable_by_others(path: Path) -> str | None:
    """Why another local account could reach `path`, or None if it cannot."""
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        return None  # a link's own mode means nothing; what it points at is checked where it is
    if info.st_uid != os.geteuid():
        return _("{path} belongs to uid {uid}").format(path=path, uid=info.st_uid)
    if info.st_mode & 0o077:
        return _("{path} is {mode}").format(path=path, mode=f"{stat.S_IMODE(info.st_mode):04o}")
    return None


def check_permissions(home: Path, runtime_base: Path) -> Finding:
    """Nothing in the station home (nor the workspace root) is open to other local accounts.

    The registry holds kit details and the persona ids; the locks and the
    audit log say who works when. Other accounts on the laptop get none of it.
    """
    if not home.exists():
        return Finding(PERMISSIONS, "ok", _("{path} does not exist yet").format(path=home))
    exposed = []
    entries = [home]
    for root, dirs, files in os.walk(home):
        entries.extend(Path(root) / name for name in (*dirs, *files))
    for entry in entries:
        with contextlib.suppress(FileNotFoundError):  # a lock or temp file gone meanwhile
            if (why := _reachable_by_others(entry)) is not None:
                exposed.append(why)
    if exposed:
        more = _(" and {n} more").format(n=len(exposed) - 1) if len(exposed) > 1 else ""
        return Finding(
            PERMISSIONS,
            "fail",
            _("other accounts can reach the station home: {why}{more}").format(
                why=exposed[0], more=more
            ),
            f"chmod -R go= {home}",
        )
    if runtime_base.exists() and (why := _reachable_by_others(runtime_base)) is not None:
        return Finding(
            PERMISSIONS,
            "fail",
            _("the workspace root is not private: {why}").format(why=why),
            _("ask IT to remove {path} (another account may have made it)").format(
                path=runtime_base
            ),
        )
    return Finding(
        PERMISSIONS, "ok", _("{path}: private to this account (0700/0600)").format(path=home)
    )


def check_managed_policy(policy: object | None, directory: Path | None) -> Finding:
    from outreach_station.lockdown import managed_policy_status
    from outreach_station.policy import Policy

    chosen = policy if isinstance(policy, Policy) else Policy()
    status = managed_policy_status(chosen, directory)
    fix = _("sudo station policy apply-browser (writes {path})").format(path=status.path)
    if status.state == "matches":
        return Finding(
            BROWSER_POLICY, "ok", _("{path} matches the policy").format(path=status.path)
        )
    if status.state == "unsupported":
        return Finding(
            BROWSER_POLICY,
            "warn",
            _("not on Linux: deploy the Chromium policy with GPO or a configuration profile"),
            _("see docs/it-deployment.md"),
        )
    if status.state == "missing":
        detail = _(
            "{path} missing: every station window may show Chromium's "
            "'unsupported command-line flag' bar"
        )
    else:
        detail = _(
            "{path} differs from the policy: every station window may show Chromium's "
            "'unsupported command-line flag' bar"
        )
    return Finding(BROWSER_POLICY, "warn", detail.format(path=status.path), fix)


def check_platforms(policy: Policy | None) -> Finding:
    """Every platform IT allows has a profile here that loads."""
    from outreach_station.platforms import load_catalogue, profile_dirs

    settings = policy.platforms if policy is not None else None
    catalogue = load_catalogue(
        profile_dirs(settings.profiles_dir if settings is not None else None),
        allowed=settings.allowed if settings is not None else None,
    )
    fix = _("write or fix the profile: docs/it-deployment.md, Platform profiles")
    if catalogue.problems:
        first = catalogue.problems[0]
        count = len(catalogue.problems)
        more = _(" (and {n} more)").format(n=count - 1) if count > 1 else ""
        return Finding(PLATFORMS, "fail", f"{first.message}{more}", fix)
    missing = catalogue.missing()
    if missing:
        return Finding(
            PLATFORMS,
            "fail",
            _("allowed by the policy but no profile: {platforms}").format(
                platforms=", ".join(missing)
            ),
            fix,
        )
    names = ", ".join(sorted(catalogue.platforms))
    return Finding(
        PLATFORMS,
        "ok",
        _("{n} with a valid profile: {names}").format(n=len(catalogue.platforms), names=names),
    )


def check_team() -> Finding:  # noqa: PLR0911 - one return per state, in the order to fix them
    """In a team: the server answers, this laptop's member is approved, nothing waits to be sent.

    Outside a team there is nothing to check (ok). The server is asked as
    `station team status` asks it, with the password from the OS keyring.
    """
    from outreach_station.team.members import status_word
    from outreach_station.team.membership import team_status

    try:
        status = team_status()
    except StationError as exc:
        return Finding(TEAM, "fail", exc.message, _("station docs team"))
    if status.url is None:
        return Finding(TEAM, "ok", _("not in a team: personas are kept on this laptop only"))
    team = status.team_id or "?"
    member = status.member_id or "?"
    if status.reachable is None:  # no password here: not tried
        return Finding(TEAM, "fail", status.problem or "", _("run: station team join URL"))
    if not status.reachable:
        return Finding(
            TEAM,
            "fail",
            _("the team server does not answer: {problem}").format(problem=status.problem),
            _("check the network and that the team server runs; station docs team"),
        )
    if status.problem:
        return Finding(TEAM, "fail", status.problem, _("station docs team"))
    if status.member_status == "pending":
        return Finding(
            TEAM,
            "warn",
            _("member {member} of team {team} is waiting for approval").format(
                member=member, team=team
            ),
            _("ask an approved member to run: station team approve {member}").format(member=member),
        )
    if status.member_status != "approved":
        return Finding(
            TEAM,
            "fail",
            _("member {member} is {status} in team {team}").format(
                member=member,
                status=status_word(status.member_status) if status.member_status else _("unknown"),
                team=team,
            ),
            _("ask the team's members; station docs team"),
        )
    if status.pending:
        return Finding(
            TEAM,
            "warn",
            ngettext(
                "{n} sealed session waits to be sent to the team server",
                "{n} sealed sessions wait to be sent to the team server",
                len(status.pending),
            ).format(n=len(status.pending)),
            _("it is sent at the persona's next open; see station team status"),
        )
    return Finding(
        TEAM,
        "ok",
        _("team {team}, member {member} (approved); the server answers").format(
            team=team, member=member
        ),
    )


SAMPLE_CHECK: Final = N_("sample persona")


def check_sample_persona(browser_finding: Finding) -> Finding:
    """Draw a fresh persona (never stored) and run every `station check` on it, headless.

    What a new persona on this laptop would present, fonts included, in a
    throwaway profile: a laptop whose fonts or browser make new personas fail
    their checks is caught before staff meet it.
    """
    if browser_finding.verdict == "fail":
        return Finding(SAMPLE_CHECK, "fail", _("not run: no browser"), _("fix the browser first"))
    import asyncio
    import tempfile

    from outreach_station.browser import build_launch, run_session
    from outreach_station.context import Station
    from outreach_station.fingerprint import generate
    from outreach_station.inspector import InspectorServer
    from outreach_station.inspector.hooks import report_hook
    from outreach_station.platforms import demo_profile

    station = Station.load()
    got: dict[str, object] = {}
    try:
        browser = station.browser
        fingerprint = generate(demo_profile())
        with (
            tempfile.TemporaryDirectory(prefix="station-doctor-") as scratch,
            InspectorServer(fingerprint=fingerprint, engine_major=browser.major) as server,
        ):
            spec = build_launch(
                browser=browser,
                fingerprint=fingerprint,
                user_data_dir=Path(scratch) / "profile",
                home=Path(scratch) / "home",
                headless=True,
            )

            def on_report(_report: object, checks: object) -> None:
                got["checks"] = checks

            asyncio.run(
                run_session(
                    spec,
                    server.page_url(),
                    hook=report_hook(server, on_report),
                    close_after_hook=True,
                )
            )
    except StationError as exc:
        return Finding(SAMPLE_CHECK, "fail", exc.message, _("run: station check PERSONA --debug"))
    finally:
        station.close()
    checks = got.get("checks")
    if not isinstance(checks, list) or not checks:
        return Finding(SAMPLE_CHECK, "fail", _("the inspector sent no report"), "")
    failed = [c for c in checks if not c.ok]
    if failed:
        names = "; ".join(f"{c.title}: {c.seen}" for c in failed[:3])
        return Finding(
            SAMPLE_CHECK,
            "fail",
            _("{failed} of {total} checks fail for a new persona: {names}").format(
                failed=len(failed), total=len(checks), names=names
            ),
            _("station docs fingerprints; fonts: station docs it-deployment, section 1"),
        )
    return Finding(
        SAMPLE_CHECK,
        "ok",
        _("a new persona passes {passed} of {total} checks").format(
            passed=len(checks), total=len(checks)
        ),
    )


def run_doctor(
    *,
    clock: Callable[[], datetime] = utcnow,
    free_bytes: Callable[[Path], int] = _free_bytes,
    managed_dir: Path | None = None,
    sample: bool = False,
) -> DoctorReport:
    """Every check, in the order a person fixes them."""
    from outreach_station.audit import AuditLog, default_path
    from outreach_station.fingerprint import machine_cpus
    from outreach_station.fonts import inventory
    from outreach_station.policy import Policy

    policy_finding, effective = check_policy()
    loaded = getattr(effective, "policy", None)
    policy = loaded if isinstance(loaded, Policy) else None
    findings = [check_python(), check_browser(), check_keyring(policy), check_workspace()]
    findings.append(policy_finding)
    audit_path = (policy.audit.path if policy is not None else None) or default_path()
    findings.append(check_audit(audit_path))
    home = _existing(paths.station_home())
    findings.append(check_disk(free_bytes(home), home))
    newest: datetime | None = None
    try:
        records = AuditLog(audit_path).records()
    except (StationError, OSError):
        records = []
    if records:
        newest = max(r.time for r in records)
    findings.append(check_clock(clock(), newest))
    findings.append(check_personas())
    findings.append(check_sealed_state())
    findings.append(check_permissions(paths.station_home(), paths.runtime_base()[0]))
    findings.append(check_variety(inventory(), machine_cpus()))
    findings.append(check_platforms(policy))
    findings.append(check_managed_policy(policy, managed_dir))
    findings.append(check_team())
    if sample:
        browser = next(f for f in findings if f.name == BROWSER)
        findings.append(check_sample_persona(browser))
    return DoctorReport(tuple(findings))
