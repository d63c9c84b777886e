"""Finding the persona a person means: by id, by the first letters of it, or by label."""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach_station.context import Station, using
from outreach_station.errors import NotFoundError, UsageError
from outreach_station.i18n import _
from outreach_station.ids import PERSONA_ID_RE, persona_reference

if TYPE_CHECKING:
    from outreach_station.personas import Persona


class AmbiguousPersona(UsageError):
    """Several personas match what was typed: nothing is done to any of them."""


def find_persona(
    text: str, *, platform: str | None = None, station: Station | None = None
) -> Persona:
    """The one persona `text` names (of `platform`, when given).

    A full id, a unique start of one, or a label (case-insensitive). Several
    matches are refused with the candidates named, so nothing happens to the
    wrong persona.
    """
    from outreach_station.values import printable

    persona_reference(text)
    with using(station) as st:
        personas = st.store.list(platform=platform)
    folded = text.casefold()
    exact = [p for p in personas if p.id == folded]
    prefix = [p for p in personas if p.id.startswith(folded)]
    labelled = [p for p in personas if p.label and p.label.casefold() == folded]
    found = exact or list({p.id: p for p in [*prefix, *labelled]}.values())
    if len(found) == 1:
        return found[0]
    typed = repr(printable(text))
    if not found:
        whole_id = PERSONA_ID_RE.fullmatch(folded) is not None
        if platform and whole_id:
            message = _(
                "no persona of {platform} matches {text}; give its id or its label "
                "as printed by 'station persona list'"
            )
        elif platform:
            message = _(
                "no persona of {platform} matches {text}; give its id, the first letters "
                "of it, or its label as printed by 'station persona list'"
            )
        elif whole_id:
            message = _(
                "no persona matches {text}; give its id or its label "
                "as printed by 'station persona list'"
            )
        else:
            message = _(
                "no persona matches {text}; give its id, the first letters of it, or its "
                "label as printed by 'station persona list'"
            )
        raise NotFoundError(message.format(platform=platform, text=typed))
    candidates = ", ".join(
        f"{p.id} ({p.label + ', ' if p.label else ''}{p.platform}, {p.status})" for p in found
    )
    if platform:
        ambiguous = _(
            "{text} matches {count} personas of {platform}: {candidates}; give more of the id"
        )
    else:
        ambiguous = _("{text} matches {count} personas: {candidates}; give more of the id")
    raise AmbiguousPersona(
        ambiguous.format(text=typed, count=len(found), platform=platform, candidates=candidates)
    )
