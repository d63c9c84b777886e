"""The documents shipped with station: what `station docs` lists and shows.

Messages point at documents by name ("docs/it-deployment.md, Platform
profiles"); a laptop has no source checkout, so the same files travel inside
the package and `station docs it-deployment` finds them there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from outreach_station import paths
from outreach_station.errors import NotFoundError, UsageError
from outreach_station.i18n import _


@dataclass(frozen=True)
class Document:
    name: str
    title: str
    path: Path

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "title": self.title, "path": str(self.path)}


def _title(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as text:
            for line in text:
                if line.startswith("# "):
                    return line[2:].strip()
    except OSError:
        pass
    return path.stem


def documents() -> tuple[Document, ...]:
    """Every shipped document, by name."""
    directory = paths.docs_dir()
    if not directory.is_dir():
        return ()
    return tuple(
        Document(name=path.stem, title=_title(path), path=path)
        for path in sorted(directory.glob("*.md"))
    )


def find(name: str) -> Document:
    """The document `name` ("it-deployment", "it-deployment.md" or "docs/it-deployment.md")."""
    wanted = name.strip().removeprefix("docs/").removesuffix(".md").lower()
    if not wanted or "/" in wanted or wanted.startswith("."):
        raise UsageError(
            _("'{name}' is not a document name; station docs lists them").format(name=name)
        )
    shipped = documents()
    for document in shipped:
        if document.name == wanted:
            return document
    known = ", ".join(d.name for d in shipped) or _("none are installed")
    raise NotFoundError(
        _("no document '{name}' (documents: {known})").format(name=wanted, known=known)
    )
