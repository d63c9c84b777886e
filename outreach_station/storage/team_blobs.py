"""One persona's sealed blobs on the team server, seen through the `BlobStore` protocol.

Read-mostly: the vault's readers (`read_manifest`, `unseal_tree`) can work on
it as on the local store. Blobs may be put (each whole or not at all), but a
manifest becomes the server's only through `PostgresStore.commit_generation`
with the lease's fencing token (see `outreach_station.team.sync`), never by
`put_manifest`; nothing is ever deleted through this view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from outreach_station.errors import StateError
from outreach_station.i18n import _

if TYPE_CHECKING:
    from outreach_station.storage.postgres import PostgresStore


class TeamBlobStore:
    """A `storage.base.BlobStore` over one persona's blobs and current generation on the server."""

    def __init__(self, store: PostgresStore, persona_id: str) -> None:
        self._store = store
        self._persona = persona_id
        self.location = _("the team server {where}").format(where=store.connection.where)

    def _refuse(self, what: str) -> StateError:
        return StateError(
            _(
                "{what} persona {persona} on {location} is not done through a blob "
                "store; a generation becomes current only with the lease's token"
            ).format(what=what, persona=self._persona, location=self.location)
        )

    def has(self, name: str) -> bool:
        return not self._store.missing_blobs(self._persona, [name])

    def put(self, name: str, data: bytes | bytearray) -> bool:
        return self._store.put_blob(self._persona, name, data)

    def get(self, name: str) -> bytes:
        return self._store.get_blob(self._persona, name)

    def delete(self, name: str) -> None:
        raise self._refuse(_("deleting a blob of"))

    def names(self) -> set[str]:
        return self._store.blob_names(self._persona)

    def put_manifest(self, generation: int, data: bytes) -> None:
        raise self._refuse(_("committing a generation of"))

    def get_manifest(self, generation: int) -> bytes:
        current = self._store.current_generation(self._persona)
        if current is None or current.generation != generation:
            raise FileNotFoundError(f"no current manifest of generation {generation}")
        return current.manifest

    def manifests(self) -> list[int]:
        current = self._store.current_generation(self._persona)
        return [] if current is None else [current.generation]

    def delete_manifest(self, generation: int) -> None:
        raise self._refuse(_("deleting a generation of"))

    def exists(self) -> bool:
        return self._store.current_generation(self._persona) is not None

    def sweep(self) -> None:
        """Nothing to sweep: a blob on the server is whole or absent."""

    def sync(self) -> None:
        """Nothing to make durable: every write committed its own transaction."""

    def remove_all(self) -> bool:
        raise self._refuse(_("removing every blob of"))
