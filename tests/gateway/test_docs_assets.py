"""The API docs pages (/docs, /redoc) load every script, style sheet and icon from the gateway
itself: the files vendored into the package, which match their manifest, under a
Content-Security-Policy that allows scripts from the gateway only."""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import re
import tomllib
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from services.core.runtime import Runtime
from services.gateway import docs_pages
from services.gateway.app import create_app

REPO_ROOT = Path(__file__).resolve().parents[2]
PAGES = ("/docs", "/redoc")
#: what each served type must look like to count as the real thing
MEDIA_TYPES = {
    ".js": ("text/javascript", 100_000),
    ".css": ("text/css", 10_000),
    ".png": ("image/png", 100),
}


class PageRefs(HTMLParser):
    """The URLs a page makes the browser load, and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            if found.get("src"):
                self.urls.append(str(found["src"]))
            else:
                self._in_inline_script = True
                self.inline_scripts.append("")
        elif tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))
        elif tag in ("img", "iframe", "source") and found.get("src"):
            self.urls.append(str(found["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data


def refs_of(html: str) -> PageRefs:
    parser = PageRefs()
    parser.feed(html)
    parser.close()
    return parser


def policy_of(r: httpx.Response) -> dict[str, list[str]]:
    policy = r.headers["content-security-policy"]
    return {name: values for name, *values in (d.split() for d in policy.split(";") if d.strip())}


def sha256_source(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


@pytest.mark.parametrize("page", PAGES)
async def test_a_page_loads_every_asset_from_the_gateway(
    http: httpx.AsyncClient, page: str
) -> None:
    r = await http.get(page)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?i)https?:|//[a-z0-9]", r.text), "the page names another host"
    refs = refs_of(r.text)
    assert any(u.endswith(".js") for u in refs.urls)
    assert any(u.endswith(".png") for u in refs.urls), "no favicon"
    for url in refs.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/"), url
        asset = await http.get(url)
        assert asset.status_code == 200, url
        media_type, least = MEDIA_TYPES[Path(parts.path).suffix]
        assert asset.headers["content-type"].split(";")[0] == media_type, url
        assert len(asset.content) >= least, url
        assert int(asset.headers["content-length"]) == len(asset.content)
        assert "immutable" in asset.headers["cache-control"]
        assert asset.headers["x-content-type-options"] == "nosniff"
    # the document they show is the gateway's own
    assert "'/openapi.json'" in r.text or 'spec-url="/openapi.json"' in r.text


async def test_swagger_ui_loads_its_script_css_and_favicon(http: httpx.AsyncClient) -> None:
    refs = refs_of((await http.get("/docs")).text)
    names = {Path(u).name for u in refs.urls}
    assert names == {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
    png = (await http.get(next(u for u in refs.urls if u.endswith(".png")))).content
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    js = (await http.get(next(u for u in refs.urls if u.endswith(".js")))).text
    assert "SwaggerUIBundle" in js


async def test_redoc_loads_its_bundle_and_no_web_fonts(http: httpx.AsyncClient) -> None:
    r = await http.get("/redoc")
    refs = refs_of(r.text)
    assert {Path(u).name for u in refs.urls} == {"redoc.standalone.js", "favicon-32x32.png"}
    assert "fonts.googleapis" not in r.text
    js = (await http.get(next(u for u in refs.urls if u.endswith(".js")))).text
    assert "Redoc" in js


@pytest.mark.parametrize("page", [*PAGES, "/docs/oauth2-redirect"])
async def test_a_page_allows_scripts_from_the_gateway_only(
    http: httpx.AsyncClient, page: str
) -> None:
    r = await http.get(page)
    assert r.status_code == 200
    policy = policy_of(r)
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    scripts = policy["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    for source in scripts:
        assert source == "'self'" or re.fullmatch(r"'sha256-[A-Za-z0-9+/]+={0,2}'", source)
    # every inline script runs: its hash is allowed
    for script in refs_of(r.text).inline_scripts:
        assert sha256_source(script) in scripts, script
    # and no directive lets the page reach another host
    for name, values in policy.items():
        assert not any(":" in v and v != "data:" and v != "blob:" for v in values), name
    assert r.headers["cache-control"] == "no-cache"


async def test_swagger_ui_runs_its_start_up_script_and_no_online_validator(
    http: httpx.AsyncClient,
) -> None:
    r = await http.get("/docs")
    (script,) = refs_of(r.text).inline_scripts
    assert "SwaggerUIBundle(" in script
    # the validator badge would send the document's URL to validator.swagger.io
    assert '"validatorUrl": null' in script
    assert policy_of(r)["connect-src"] == ["'self'"]


async def test_redoc_styles_inline_and_searches_in_a_blob_worker(
    http: httpx.AsyncClient,
) -> None:
    """ReDoc writes <style> elements at run time and builds its search worker from a blob:
    URL; its policy allows both, and nothing more for scripts."""
    policy = policy_of(await http.get("/redoc"))
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]
    assert policy["worker-src"] == ["blob:"]
    assert policy["script-src"] == ["'self'"]


@pytest.fixture
async def behind_a_prefix(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway behind a proxy that serves it under ``/broker`` (uvicorn --root-path)."""
    transport = httpx.ASGITransport(app=create_app(runtime), root_path="/broker")
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as c:
        yield c


async def test_pages_follow_the_proxys_root_path(behind_a_prefix: httpx.AsyncClient) -> None:
    r = await behind_a_prefix.get("/broker/docs")
    assert r.status_code == 200
    for url in refs_of(r.text).urls:
        assert url.startswith("/broker/docs/assets/"), url
    assert "'/broker/openapi.json'" in r.text
    assert "'/broker/docs/oauth2-redirect'" in r.text
    for url in refs_of(r.text).urls:
        assert (await behind_a_prefix.get(url)).status_code == 200, url


async def test_only_the_pages_assets_are_served(http: httpx.AsyncClient) -> None:
    url = docs_pages.load_assets()[docs_pages.SWAGGER_JS].url
    assert (await http.head(url)).status_code == 200
    package, version, name = url.removeprefix(docs_pages.ASSETS_URL + "/").split("/")
    for other in (
        f"{docs_pages.ASSETS_URL}/{package}/0.0.1/{name}",  # another version
        f"{docs_pages.ASSETS_URL}/{package}/{version}/LICENSE",  # shipped, not served
        f"{docs_pages.ASSETS_URL}/{package}/{version}/../../../manifest.json",
        f"{docs_pages.ASSETS_URL}/{package}/{version}/swagger-ui.js",
    ):
        r = await http.get(other)
        assert r.status_code == 404, other
        assert r.headers["content-type"].startswith("application/problem+json")


async def test_the_pages_stay_out_of_the_openapi_document(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]


# -- the vendored files ---------------------------------------------------------------------------


def _manifest() -> dict[str, dict[str, object]]:
    files: dict[str, dict[str, object]] = json.loads(docs_pages.MANIFEST.read_text())["files"]
    return files


def test_the_shipped_files_match_the_manifest() -> None:
    files = _manifest()
    on_disk = {
        p.relative_to(docs_pages.STATIC).as_posix()
        for p in docs_pages.STATIC.rglob("*")
        if p.is_file() and p != docs_pages.MANIFEST
    }
    assert on_disk == set(files)
    for path, entry in files.items():
        content = (docs_pages.STATIC / path).read_bytes()
        assert hashlib.sha512(content).hexdigest() == entry["sha512"], path
        assert len(content) == entry["bytes"], path


def test_the_manifest_names_each_files_release_and_licence() -> None:
    files = _manifest()
    for path, entry in files.items():
        package, version = entry["package"], entry["version"]
        assert path.startswith(f"{package}/")
        assert re.fullmatch(r"\d+\.\d+\.\d+", str(version)), path
        assert entry["tarball"] == (
            f"https://registry.npmjs.org/{package}/-/{package}-{version}.tgz"
        ), path
        assert str(entry["integrity"]).startswith("sha512-"), path
    served = {files[p]["package"] for p in docs_pages.MEDIA_TYPES}
    assert served == {"swagger-ui-dist", "redoc"}
    for package in served:
        assert f"{package}/LICENSE" in files
        assert len({e["version"] for e in files.values() if e["package"] == package}) == 1
    assert str(files[docs_pages.SWAGGER_JS]["version"]).startswith("5.")
    assert str(files[docs_pages.REDOC_JS]["version"]).startswith("2.")


def test_a_wheel_carries_the_files() -> None:
    """setuptools expands package-data globs as ``glob(..., recursive=True)`` from the
    package's folder and keeps the files: every vendored file and the manifest must match."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["services.gateway"]
    package_dir = REPO_ROOT / "services" / "gateway"
    matched = {
        Path(m).relative_to(package_dir).as_posix()
        for pattern in patterns
        for m in glob.glob(os.path.join(package_dir, pattern), recursive=True)
        if os.path.isfile(m)
    }
    expected = {f"static/docs/{p}" for p in _manifest()} | {"static/docs/manifest.json"}
    assert expected <= matched
