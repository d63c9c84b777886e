"""`station audit`: list the audit trail and verify its hash chain."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from outreach_station.cli._help import N_, HelpGroup, StationCommand
from outreach_station.cli._help import tr as _
from outreach_station.cli._help import tr_n as ngettext
from outreach_station.cli._lazy import lazy_module
from outreach_station.errors import IntegrityError, UsageError

if TYPE_CHECKING:
    from outreach_station import audit as core
    from outreach_station.audit import AuditEvent, AuditLog
else:
    core = lazy_module("outreach_station.audit")

app = typer.Typer(
    rich_markup_mode=None,
    name="audit",
    cls=HelpGroup,
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

_COLUMNS = (
    N_("SEQ"),
    N_("TIME"),
    N_("USER"),
    N_("HOST"),
    N_("EVENT"),
    N_("PERSONA"),
    N_("PLATFORM"),
    N_("DETAIL"),
)


def _log(ctx: typer.Context) -> AuditLog:
    from outreach_station.cli._output import station_of

    return station_of(ctx).audit


def _records(count: int) -> str:
    return ngettext("{n} record", "{n} records", count).format(n=count)


def _row(record: AuditEvent) -> tuple[str, ...]:
    from outreach_station.cli._output import local_time

    detail = " ".join(f"{key}={value}" for key, value in record.detail.items())
    return (
        str(record.seq),
        local_time(record.time, seconds=True),
        record.user,
        record.host,
        record.event.value,
        record.persona or "-",
        record.platform or "-",
        detail or "-",
    )


def render_table(records: list[AuditEvent]) -> str:
    """Records as a plain, aligned text table (no colour, safe to pipe)."""
    from outreach_station.values import printable

    # The log is a file: a hand-edited line must not reach the terminal as escape codes.
    rows = [
        tuple(_(c) for c in _COLUMNS),
        *(tuple(printable(cell) for cell in _row(record)) for record in records),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


@app.callback()
def audit(
    ctx: typer.Context,
    *,
    persona: Annotated[
        str | None,
        typer.Option(
            "--persona",
            metavar="PERSONA",
            help="Only records of this persona (id, first letters of it, or label).",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only records at or after this date or ISO-8601 date-time "
            "(local time unless it ends in Z or an offset).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
) -> None:
    """List the audit trail, oldest first; check its chain (verify); start anew
    after damage (restart).

    Times are local, with their zone (UTC in --json).

    Example: station audit --persona k7q2 --since 2026-11-01
    """
    if ctx.invoked_subcommand is not None:
        if persona is not None or since is not None or as_json:
            raise UsageError(
                _(
                    "--persona, --since and --json before a subcommand belong to the listing; "
                    "put options after `{command}`"
                ).format(command=ctx.invoked_subcommand)
            )
        return
    if persona is not None:
        from outreach_station.values import text_problem

        # Only a filter, and older records may use other ids: just keep it one plain line.
        problem = text_problem(persona)
        if problem is not None:
            raise UsageError(
                _(
                    "--persona {problem}; give a persona id as printed by 'station persona list'"
                ).format(problem=problem)
            )
        persona = _persona_filter(ctx, persona)
    log = _log(ctx)
    records = log.records(persona=persona, since=core.parse_since(since) if since else None)
    if as_json:
        import json

        from outreach_station.values import json_safe

        typer.echo(
            json_safe(json.dumps([r.to_record() for r in records], indent=2, ensure_ascii=False))
        )
    elif records:
        typer.echo(render_table(records))
    else:
        typer.echo(_("No audit records."))
    verdict = log.verify()
    if not verdict.ok:
        # Listing skips damaged lines; say so rather than look complete.
        where = _team_where(log)
        message = (
            _("warning: audit log damaged at line {line}: {reason}; run `station audit verify`")
            if where is None
            else _(
                "warning: the team's audit trail on {where} is damaged at record {line}: "
                "{reason}; run `station audit verify`"
            )
        )
        typer.echo(
            message.format(line=verdict.first_bad_line, reason=verdict.reason, where=where),
            err=True,
        )


def _team_where(log: AuditLog) -> str | None:
    """The team server whose trail `log` reads, or None for this laptop's own log."""
    from outreach_station.team.audit import TeamAuditLog

    return log.where if isinstance(log, TeamAuditLog) else None


def _persona_filter(ctx: typer.Context, text: str) -> str:
    """The id `text` names; as typed when no persona matches (older records name retired ids)."""
    from outreach_station.cli._params import find_persona
    from outreach_station.errors import NotFoundError
    from outreach_station.ids import is_persona_id
    from outreach_station.lookup import AmbiguousPersona

    if is_persona_id(text):
        return text  # a whole id needs no lookup
    try:
        return find_persona(ctx, text)
    except AmbiguousPersona:
        raise  # several personas: the person must say which
    except (NotFoundError, UsageError):
        return text


@app.command("verify", cls=StationCommand)
def verify(
    ctx: typer.Context,
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Check the audit log's hash chain; exit non-zero naming the first bad line.

    Detects edited, removed, inserted and reordered records and a last line cut
    mid-way, and, against the chain's anchor (its last record, kept in the
    registry under a key in the OS keyring), records cut off the end, an
    emptied or deleted log, and a chain rewritten to the end. Someone who can
    read the key out of the keyring can still forge both: compare with the
    copy your log collector holds.

    Example: station audit verify --json
    """
    log = _log(ctx)
    result = log.verify()
    where = _team_where(log)
    if as_json:
        import json

        payload = {
            "ok": result.ok,
            "count": result.count,
            "first_bad_line": result.first_bad_line,
            "reason": result.reason,
            "last_hash": result.last_hash,
            "path": str(log.path),
        }
        if where is not None:
            payload["team_server"] = where
        typer.echo(json.dumps(payload, indent=2))
    if not result.ok and where is not None:
        raise IntegrityError(
            _(
                "the team's audit trail on {where} is damaged at record {seq}: {reason} "
                "({records} before it intact); report it to IT"
            ).format(
                where=where,
                seq=result.first_bad_line,
                reason=result.reason,
                records=_records(result.count),
            )
        )
    if not result.ok:
        raise IntegrityError(
            _(
                "audit log {path} is damaged at line {line}: {reason} ({records} before it intact)"
            ).format(
                path=log.path,
                line=result.first_bad_line,
                reason=result.reason,
                records=_records(result.count),
            )
        )
    if not as_json and where is not None:
        typer.echo(
            _("The team's audit trail is intact: {records} on {where}").format(
                records=_records(result.count), where=where
            )
        )
    elif not as_json:
        typer.echo(
            _("Audit log intact: {records} in {path}").format(
                records=_records(result.count), path=log.path
            )
        )


@app.command("restart", cls=StationCommand)
def restart(ctx: typer.Context) -> None:
    """Set a damaged audit log aside as evidence and start a new one that records it.

    Only for a log that `station audit verify` calls damaged: the damaged file
    is renamed beside the log, never changed, and the new log's first record
    names it. Report the damage to IT before you run this.

    Example: station audit restart
    """
    log = _log(ctx)
    kept, record = log.restart()
    if kept is not None:
        message = _(
            "Damaged audit log kept as {kept}; a new log starts with record {seq} "
            "({event}) in {path}"
        )
    else:
        message = _(
            "Damaged audit log was missing; a new log starts with record {seq} ({event}) in {path}"
        )
    typer.echo(message.format(kept=kept, seq=record.seq, event=record.event.value, path=log.path))
