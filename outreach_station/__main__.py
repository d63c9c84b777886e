from __future__ import annotations

from outreach_station.cli import main

main()
