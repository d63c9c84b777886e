"""outreach-station: organisation-owned, isolated browser personas for outreach work."""

from __future__ import annotations

__version__ = "0.1.0"
