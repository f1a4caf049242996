"""`/ui`: the web UI's page and assets (waypoint/ui/static), served without auth.

The assets hold no data: every figure the page shows comes from the JSON API, called with
the key the person enters, so serving the files openly leaks nothing. Any path under
`/ui/` that is not an asset answers the page itself, so client-side routes (`/ui/threads/
<id>`) survive a reload or a shared link.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from ...ui import STATIC

router = APIRouter(include_in_schema=False)

# The page loads only its own files: nothing from a CDN, no inline script.
_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
           "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
_ROOT = STATIC.resolve()


def _page() -> Response:
    return FileResponse(_ROOT / "index.html", media_type="text/html", headers={
        "Content-Security-Policy": _POLICY, "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})


_ASSET_DIRS = ("js", "css", "assets")


def _asset(path: str) -> Path | None:
    """The file under static/js, css or assets for `path`, or None (never a path outside
    them)."""
    candidate = (_ROOT / path).resolve()
    if not any(candidate.is_relative_to(_ROOT / top) for top in _ASSET_DIRS):
        return None
    return candidate if candidate.is_file() else None


@router.get("/ui")
async def page() -> Response:
    return _page()


@router.get("/ui/{path:path}")
async def asset_or_page(path: str) -> Response:
    if path.startswith(tuple(f"{top}/" for top in _ASSET_DIRS)):
        found = _asset(path)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        kind = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                ".png": "image/png"}.get(found.suffix, "application/octet-stream")
        return FileResponse(found, media_type=kind, headers={
            "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
    return _page()


@router.get("/", include_in_schema=False)
async def root() -> Response:
    """A person opening the server's address finds the UI."""
    return RedirectResponse("/ui", status_code=307)
