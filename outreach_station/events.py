"""What the audit trail records: the closed set of event names, used everywhere by name."""

from __future__ import annotations

from enum import StrEnum


class EventName(StrEnum):
    """The closed set of things the audit trail records."""

    PERSONA_CREATED = "persona.created"
    PERSONA_OPENED = "persona.opened"
    PERSONA_CLOSED = "persona.closed"
    PERSONA_BLOCKED = "persona.blocked"
    PERSONA_ROTATED = "persona.rotated"
    PERSONA_ROTATION_UNDONE = "persona.rotation_undone"
    PERSONA_RETIRED = "persona.retired"
    PERSONA_SHREDDED = "persona.shredded"
    PERSONA_RECOVERED = "persona.recovered"
    KIT_SECRET_REVEALED = "kit.secret_revealed"  # noqa: S105 - an event name, not a secret
    KIT_UPDATED = "kit.updated"
    POLICY_VIOLATION = "policy.violation"
    POLICY_LOOSENING_IGNORED = "policy.loosening_ignored"
    VAULT_INITIALISED = "vault.initialised"
    PERSONA_PROXY_SET = "persona.proxy_set"
    PERSONA_PROXY_CLEARED = "persona.proxy_cleared"
    PERSONA_FINGERPRINT_REFRESHED = "persona.fingerprint_refreshed"
    AUDIT_RESTARTED = "audit.restarted"
    TEAM_INITIALISED = "team.initialised"
    TEAM_JOINED = "team.joined"
    TEAM_MEMBER_APPROVED = "team.member_approved"
    TEAM_MEMBER_REMOVED = "team.member_removed"
    TEAM_LEASE_UNLOCKED = "team.lease_unlocked"
    TEAM_PERSONA_PUSHED = "team.persona_pushed"
