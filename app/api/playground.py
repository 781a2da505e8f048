"""GET /playground: the web page in `app/playground` (hand-written HTML, CSS and plain
JavaScript ES modules, no build step, nothing fetched from elsewhere at run time).

Only the files listed in `ASSETS` are served, so nothing else of the package can be read
through this router. The Content-Security-Policy makes "nothing from elsewhere" a rule the
browser enforces: scripts, styles and connections only to this origin; images also from
`blob:`/`data:` (previews of attachments and inline media parts). The page is left out of
the OpenAPI document: it is not part of the API. `create_app` includes this router only
when the playground is enabled (`PARLEY_PLAYGROUND`), so a disabled one is a plain 404.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse

from app.api.guard import api_router
from app.errors import NotFound

PLAYGROUND_DIR = Path(__file__).resolve().parent.parent / "playground"
MODULES = (
    "app.js",
    "attachments.js",
    "context.js",
    "dom.js",
    "http.js",
    "messages.js",
    "packs.js",
    "state.js",
    "stream.js",
    "tools.js",
    "tree.js",
)
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    # ES modules: a browser refuses to run a module served with any other type
    **dict.fromkeys(MODULES, "text/javascript; charset=utf-8"),
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

router = api_router(tags=["playground"], include_in_schema=False)


def _asset(name: str) -> FileResponse:
    return FileResponse(
        PLAYGROUND_DIR / name,
        media_type=ASSETS[name],
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/playground", include_in_schema=False)
async def playground_page() -> FileResponse:
    return _asset("index.html")


@router.get("/playground/{name}", include_in_schema=False)
async def playground_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise NotFound(f"no playground file {name!r}")
    return _asset(name)
