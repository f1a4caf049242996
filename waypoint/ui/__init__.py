"""The web UI `waypoint serve` serves at `/ui`: hand-written ES modules and CSS.

The files under `static/` are the shipped assets as they are written: no framework, no
bundler, nothing to build or lock, so a clean clone and an installed wheel serve the same
bytes, offline. The UI talks to the server's own JSON API with the caller's API key.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"
