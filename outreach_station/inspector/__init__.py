"""The built-in inspector: a local test site showing what a website sees of a persona."""

from __future__ import annotations

from outreach_station.inspector.server import (
    REPORT_VERSION,
    SCOPE_NAMES,
    InspectorServer,
    device_hash,
    fingerprint_hash,
    hash_material,
)

__all__ = [
    "REPORT_VERSION",
    "SCOPE_NAMES",
    "InspectorServer",
    "device_hash",
    "fingerprint_hash",
    "hash_material",
]
