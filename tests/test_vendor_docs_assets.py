"""deploy/vendor-docs-assets.py against a registry of its own (real HTTP, made-up tarballs):
it writes only the named files of a tarball whose integrity checks, records them in the
manifest, and writes nothing when a tarball does not match the registry's integrity."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.servers import ThreadedServer

SCRIPT = Path(__file__).resolve().parents[1] / "deploy" / "vendor-docs-assets.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("vendor_docs_assets", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


vendor = _load()


def tarball(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def release_files(package: Any, version: str) -> dict[str, bytes]:
    files = {name: f"{package.name} {version} {name}".encode() for name in package.files}
    files["package/README.md"] = b"not wanted"
    return files


class Registry:
    """npm's registry API, the three calls the script makes: the package document, a
    version's document and the tarball."""

    def __init__(self) -> None:
        self.tarballs: dict[str, bytes] = {}
        self.published: dict[str, dict[str, dict[str, Any]]] = {}
        self.tampered: set[str] = set()
        self.base_url = ""

    def publish(self, package: Any, version: str, deprecated: bool = False) -> None:
        data = tarball(release_files(package, version))
        file = f"{package.name}-{version}.tgz"
        self.tarballs[file] = data
        doc: dict[str, Any] = {
            "name": package.name,
            "version": version,
            "dist": {
                "tarball": f"{self.base_url}/tarballs/{file}",
                "integrity": integrity(data),
            },
        }
        if deprecated:
            doc["deprecated"] = "do not use"
        self.published.setdefault(package.name, {})[version] = doc

    def app(self) -> Starlette:
        async def packument(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in self.published:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse({"name": name, "versions": self.published[name]})

        async def version(request: Request) -> Response:
            doc = self.published.get(request.path_params["name"], {}).get(
                request.path_params["version"]
            )
            return JSONResponse(doc) if doc else JSONResponse({"error": "not found"}, 404)

        async def download(request: Request) -> Response:
            file = request.path_params["file"]
            data = self.tarballs[file]
            if file in self.tampered:
                data = tarball({"package/LICENSE": b"something else"})
            return Response(data, media_type="application/octet-stream")

        return Starlette(
            routes=[
                Route("/tarballs/{file}", download),
                Route("/{name}", packument),
                Route("/{name}/{version}", version),
            ]
        )


@pytest.fixture
def registry() -> Iterator[Registry]:
    found = Registry()
    server = ThreadedServer(found.app())
    found.base_url = server.start()
    try:
        yield found
    finally:
        server.stop()


SWAGGER, REDOC = vendor.PACKAGES


def run(registry: Registry, dest: Path, *args: str) -> int:
    code: int = vendor.main(["--registry", registry.base_url, "--dest", str(dest), *args])
    return code


def test_latest_takes_the_newest_release_of_each_major_line(
    registry: Registry, tmp_path: Path
) -> None:
    for version in ("5.9.0", "5.10.1", "6.0.0", "5.11.0-rc.1"):
        registry.publish(SWAGGER, version)
    registry.publish(SWAGGER, "5.10.2", deprecated=True)
    registry.publish(REDOC, "2.5.4")
    registry.publish(REDOC, "3.0.1")

    assert run(registry, tmp_path, "--latest") == 0

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    versions = {e["package"]: e["version"] for e in manifest["files"].values()}
    assert versions == {"swagger-ui-dist": "5.10.1", "redoc": "2.5.4"}
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    expected = {f"{p.name}/{name}" for p in vendor.PACKAGES for name in p.files.values()}
    assert written == expected | {"manifest.json"}
    entry = manifest["files"]["swagger-ui-dist/swagger-ui-bundle.js"]
    content = (tmp_path / "swagger-ui-dist" / "swagger-ui-bundle.js").read_bytes()
    assert content == b"swagger-ui-dist 5.10.1 package/swagger-ui-bundle.js"
    assert entry["sha512"] == hashlib.sha512(content).hexdigest()
    assert entry["tarball"] == f"{registry.base_url}/tarballs/swagger-ui-dist-5.10.1.tgz"
    assert (
        entry["integrity"] == registry.published["swagger-ui-dist"]["5.10.1"]["dist"]["integrity"]
    )
    assert vendor.check(tmp_path) == []


def test_without_arguments_the_pinned_versions_are_fetched_again(
    registry: Registry, tmp_path: Path
) -> None:
    for version in ("5.9.0", "5.10.1"):
        registry.publish(SWAGGER, version)
    registry.publish(REDOC, "2.5.4")
    assert run(registry, tmp_path, "swagger-ui-dist@5.9.0", "redoc@2.5.4") == 0
    (tmp_path / "redoc" / "redoc.standalone.js").write_bytes(b"edited")
    assert vendor.check(tmp_path) == ["redoc/redoc.standalone.js: sha512 differs from the manifest"]
    assert run(registry, tmp_path, "--check") == 1

    assert run(registry, tmp_path) == 0

    assert vendor.check(tmp_path) == []
    assert vendor.pinned_versions(vendor.read_manifest(tmp_path)) == {
        "swagger-ui-dist": "5.9.0",
        "redoc": "2.5.4",
    }


def test_a_tarball_that_does_not_match_its_integrity_writes_nothing(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.publish(SWAGGER, "5.9.0")
    registry.publish(REDOC, "2.5.4")
    registry.tampered.add("redoc-2.5.4.tgz")

    assert run(registry, tmp_path, "--latest") == 1

    assert "does not match the registry's sha512-" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_version_outside_the_major_line_is_refused(
    registry: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.publish(SWAGGER, "5.9.0")
    registry.publish(REDOC, "3.0.1")
    assert run(registry, tmp_path, "swagger-ui-dist@5.9.0", "redoc@3.0.1") == 1
    assert "written for release 2.x.y" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_only_regular_files_of_the_given_names_are_extracted() -> None:
    data = tarball(
        {"package/LICENSE": b"licence", "package/other.js": b"x"},
        symlinks={"package/NOTICE": "/etc/passwd"},
    )
    assert vendor.extract(data, {"package/LICENSE": "LICENSE"}) == {"package/LICENSE": b"licence"}
    with pytest.raises(vendor.VendorError, match="package/NOTICE"):
        vendor.extract(data, {"package/LICENSE": "LICENSE", "package/NOTICE": "NOTICE"})
    with pytest.raises(vendor.VendorError, match="cannot be read"):
        vendor.extract(b"not a tarball", {"package/LICENSE": "LICENSE"})


def test_integrity_is_compared_as_npm_does() -> None:
    data = b"tarball"
    vendor.check_integrity(data, integrity(data))
    vendor.check_integrity(data, "sha1-abc " + integrity(data))
    with pytest.raises(vendor.VendorError):
        vendor.check_integrity(data, integrity(b"other"))
    with pytest.raises(vendor.VendorError):
        # the right digest, labelled as another algorithm
        vendor.check_integrity(data, "sha1-" + integrity(data).removeprefix("sha512-"))


def test_the_shipped_files_pass_the_scripts_check() -> None:
    assert vendor.check(vendor.DEST) == []
    assert set(vendor.pinned_versions(vendor.read_manifest(vendor.DEST))) == {
        p.name for p in vendor.PACKAGES
    }
