"""The API documentation pages: Swagger UI at ``/docs`` (with its OAuth 2.0 redirect page at
``/docs/oauth2-redirect``) and ReDoc at ``/redoc``, in development and production mode alike,
as FastAPI serves them by default, but with every script, style sheet and icon served by the
gateway itself. Partners' networks are often closed to the internet, and a page that loaded
its code from a CDN would also let that CDN run script in a page that holds access tokens.

The files are vendored from the npm packages ``swagger-ui-dist`` and ``redoc`` into
``static/docs/`` (package data, so a wheel carries them) with the packages' licences;
``static/docs/manifest.json`` records each file's package, version, tarball and SHA-512, and
``deploy/vendor-docs-assets.py`` fetches, checks and rewrites them to upgrade. They are served
at ``/docs/assets/{package}/{version}/{file}``: an npm version never changes, so an answer may
be cached for a year, and an upgrade changes every URL.

The gateway sets no Content-Security-Policy elsewhere (its other answers are JSON); each page
carries its own, which allows scripts from the gateway only, plus the inline start-up script
of FastAPI's Swagger UI page (and of the redirect page) by its SHA-256, computed from the page
as rendered. ``'unsafe-inline'`` is never allowed for scripts. ReDoc needs two relaxations,
for styles only: it styles itself with styled-components, which writes ``<style>`` elements
at run time (``style-src 'unsafe-inline'``), and it runs its search index in a worker built
from a ``blob:`` URL (``worker-src blob:``). Images may be ``data:`` URLs (the style sheets'
icons). Requests go to the gateway only (``connect-src 'self'``), and Swagger UI's online
validator badge, which would send the document's URL to an outside service, is switched off.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse
from starlette.exceptions import HTTPException

STATIC = Path(__file__).parent / "static" / "docs"
MANIFEST = STATIC / "manifest.json"

SWAGGER_UI_URL = "/docs"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs/assets"

#: the files the pages load (paths under ``static/docs/``) and the types they are served as
SWAGGER_JS = "swagger-ui-dist/swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui-dist/swagger-ui.css"
FAVICON = "swagger-ui-dist/favicon-32x32.png"
REDOC_JS = "redoc/redoc.standalone.js"
MEDIA_TYPES = {
    SWAGGER_JS: "text/javascript; charset=utf-8",
    SWAGGER_CSS: "text/css; charset=utf-8",
    FAVICON: "image/png",
    REDOC_JS: "text/javascript; charset=utf-8",
}

ASSET_CACHE = "public, max-age=31536000, immutable"
PAGE_CACHE = "no-cache"

#: the directives every page shares; each page adds to ``script-src`` and the rest
BASE_POLICY: Mapping[str, str] = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self' data:",
    "connect-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "frame-ancestors": "'none'",
}

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@dataclass(frozen=True)
class Asset:
    """A vendored file the pages load, as the manifest records it."""

    path: str
    package: str
    version: str
    sha512: str

    @property
    def url(self) -> str:
        name = self.path.split("/", 1)[1]
        return f"{ASSETS_URL}/{self.package}/{self.version}/{name}"


def load_assets(manifest: Path = MANIFEST) -> dict[str, Asset]:
    """The served files (:data:`MEDIA_TYPES`) by path, from the manifest. A file missing from
    it means a broken installation, refused at start-up rather than at the first page."""
    files = json.loads(manifest.read_text("utf-8"))["files"]
    missing = sorted(set(MEDIA_TYPES) - set(files))
    if missing:
        raise LookupError(f"{manifest} lists no {', '.join(missing)}: reinstall the package")
    return {
        path: Asset(path, files[path]["package"], files[path]["version"], files[path]["sha512"])
        for path in MEDIA_TYPES
    }


def inline_script_hashes(html: str) -> list[str]:
    """CSP source expressions (``'sha256-...'``) for each inline ``<script>`` of ``html``."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html)
    ]


def content_security_policy(**directives: str) -> str:
    """:data:`BASE_POLICY` with ``directives`` (``script_src=`` for ``script-src``) added to
    or set in it."""
    policy = dict(BASE_POLICY)
    for name, value in directives.items():
        policy[name.replace("_", "-")] = value
    return "; ".join(f"{name} {value}" for name, value in policy.items())


def _page(page: HTMLResponse, policy: str) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = policy
    page.headers["Cache-Control"] = PAGE_CACHE
    page.headers["X-Content-Type-Options"] = "nosniff"
    page.headers["Referrer-Policy"] = "same-origin"
    return page


def install(app: FastAPI) -> None:
    """Serve the pages and their assets on ``app``, built with ``docs_url=None,
    redoc_url=None``; as in FastAPI, there are no pages when it serves no document."""
    openapi_url = app.openapi_url
    if openapi_url is None:
        return
    assets = load_assets()
    by_url = {asset.url: asset for asset in assets.values()}

    def urls(request: Request) -> dict[str, str]:
        # behind a proxy that strips a prefix, every URL the browser sees starts with it
        root = request.scope.get("root_path", "").rstrip("/")
        return {
            "openapi": root + openapi_url,
            "oauth2_redirect": root + OAUTH2_REDIRECT_URL,
            **{path: root + asset.url for path, asset in assets.items()},
        }

    async def swagger_ui(request: Request) -> HTMLResponse:
        url = urls(request)
        page = get_swagger_ui_html(
            openapi_url=url["openapi"],
            title=f"{app.title} - Swagger UI",
            swagger_js_url=url[SWAGGER_JS],
            swagger_css_url=url[SWAGGER_CSS],
            swagger_favicon_url=url[FAVICON],
            oauth2_redirect_url=url["oauth2_redirect"],
            # the badge would send the document's URL to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )
        hashes = inline_script_hashes(bytes(page.body).decode())
        return _page(page, content_security_policy(script_src=" ".join(["'self'", *hashes])))

    async def swagger_ui_redirect(_: Request) -> HTMLResponse:
        page = get_swagger_ui_oauth2_redirect_html()
        hashes = inline_script_hashes(bytes(page.body).decode())
        return _page(
            page,
            content_security_policy(script_src=" ".join(hashes), connect_src="'none'"),
        )

    async def redoc(request: Request) -> HTMLResponse:
        url = urls(request)
        page = get_redoc_html(
            openapi_url=url["openapi"],
            title=f"{app.title} - ReDoc",
            redoc_js_url=url[REDOC_JS],
            redoc_favicon_url=url[FAVICON],
            with_google_fonts=False,
        )
        return _page(
            page,
            content_security_policy(style_src="'self' 'unsafe-inline'", worker_src="blob:"),
        )

    async def asset(request: Request) -> FileResponse:
        p = request.path_params
        found = by_url.get(f"{ASSETS_URL}/{p['package']}/{p['version']}/{p['name']}")
        if found is None:
            raise HTTPException(404, "Not Found")
        return FileResponse(
            STATIC / found.path,
            media_type=MEDIA_TYPES[found.path],
            headers={"Cache-Control": ASSET_CACHE, "X-Content-Type-Options": "nosniff"},
        )

    app.add_route(SWAGGER_UI_URL, swagger_ui, include_in_schema=False)
    app.add_route(OAUTH2_REDIRECT_URL, swagger_ui_redirect, include_in_schema=False)
    app.add_route(REDOC_URL, redoc, include_in_schema=False)
    app.add_route(ASSETS_URL + "/{package}/{version}/{name:path}", asset, include_in_schema=False)
