#!/usr/bin/env python3
"""Vendor the assets of the gateway's API docs pages (Swagger UI at /docs, ReDoc at /redoc)
from the npm registry into services/gateway/static/docs/, and rewrite its manifest.json.

    python3 deploy/vendor-docs-assets.py                  # the versions manifest.json pins
    python3 deploy/vendor-docs-assets.py --latest         # newest release of each major line
    python3 deploy/vendor-docs-assets.py swagger-ui-dist@5.36.0 redoc@2.5.4
    python3 deploy/vendor-docs-assets.py --check          # offline: files against manifest

For each package it asks the registry for the version's document, downloads ``dist.tarball``,
and refuses it unless its SHA-512 equals the registry's ``dist.integrity`` (the Subresource
Integrity value npm itself checks). Only then does it extract the files named in
:data:`PACKAGES` (regular files only; nothing else in the tarball is written), replace the
package's folder with them, and record each file's package, version, tarball URL, tarball
integrity and SHA-512 in the manifest. ``--registry`` (or ``NPM_CONFIG_REGISTRY``) points
it at a mirror. Standard library only, so that it runs wherever Python does; review the diff
and commit the files with the manifest.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_REGISTRY = "https://registry.npmjs.org"
DEST = Path(__file__).resolve().parent.parent / "services" / "gateway" / "static" / "docs"
MANIFEST_NAME = "manifest.json"
MAX_TARBALL_BYTES = 64 * 1024 * 1024
TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Package:
    """An npm package, the major line followed (the docs pages' HTML is written for it), and
    the files taken from it: path in the tarball -> path under the package's folder."""

    name: str
    major: int
    files: Mapping[str, str]


PACKAGES = (
    Package(
        "swagger-ui-dist",
        5,
        {
            "package/swagger-ui-bundle.js": "swagger-ui-bundle.js",
            "package/swagger-ui.css": "swagger-ui.css",
            "package/favicon-32x32.png": "favicon-32x32.png",
            "package/LICENSE": "LICENSE",
            "package/NOTICE": "NOTICE",
            "package/swagger-ui-bundle.js.LICENSE.txt": "swagger-ui-bundle.js.LICENSE.txt",
        },
    ),
    Package(
        "redoc",
        2,
        {
            "package/bundles/redoc.standalone.js": "redoc.standalone.js",
            "package/LICENSE": "LICENSE",
            "package/bundles/redoc.standalone.js.LICENSE.txt": "redoc.standalone.js.LICENSE.txt",
        },
    ),
)


class VendorError(Exception):
    """Anything that stops the vendoring; nothing has been written when it is raised."""


@dataclass(frozen=True)
class Release:
    package: Package
    version: str
    tarball: str
    integrity: str


# -- the registry --------------------------------------------------------------------------------


def _get(url: str, accept: str, limit: int) -> bytes:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("https", "http"):
        raise VendorError(f"{url}: only http(s) URLs are fetched")
    request = urllib.request.Request(url, headers={"Accept": accept})  # noqa: S310 (checked)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            body: bytes = response.read(limit + 1)
    except OSError as e:
        raise VendorError(f"{url}: {e}") from e
    if len(body) > limit:
        raise VendorError(f"{url}: larger than {limit} bytes")
    return body


def _get_json(url: str) -> dict[str, Any]:
    try:
        doc = json.loads(_get(url, "application/json", 32 * 1024 * 1024))
    except ValueError as e:
        raise VendorError(f"{url}: not JSON ({e})") from e
    if not isinstance(doc, dict):
        raise VendorError(f"{url}: not a JSON object")
    return doc


def _release_number(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a plain release; None for a pre-release or build."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        return None
    return int(parts[0]), int(parts[1]), int(parts[2])


def newest_in_major(packument: Mapping[str, Any], major: int) -> str:
    """The newest non-deprecated plain release ``major.x.y`` in a registry package document."""
    candidates: list[tuple[tuple[int, int, int], str]] = []
    for version, doc in packument.get("versions", {}).items():
        number = _release_number(version)
        if number and number[0] == major and not doc.get("deprecated"):
            candidates.append((number, version))
    if not candidates:
        raise VendorError(f"{packument.get('name')}: no release {major}.x.y")
    return max(candidates)[1]


def resolve(registry: str, package: Package, version: str | None) -> Release:
    """The release of ``package`` at ``version`` (newest of its major line when None)."""
    base = f"{registry.rstrip('/')}/{urllib.parse.quote(package.name, safe='@')}"
    if version is None:
        version = newest_in_major(_get_json(base), package.major)
    number = _release_number(version)
    if number is None or number[0] != package.major:
        raise VendorError(
            f"{package.name}@{version}: the pages are written for release {package.major}.x.y"
        )
    doc = _get_json(f"{base}/{version}")
    dist = doc.get("dist") or {}
    tarball, integrity = dist.get("tarball"), dist.get("integrity")
    if doc.get("version") != version or not isinstance(tarball, str):
        raise VendorError(f"{package.name}@{version}: the registry's document is not for it")
    if not isinstance(integrity, str) or not integrity.startswith("sha512-"):
        raise VendorError(f"{package.name}@{version}: the registry publishes no sha512 integrity")
    return Release(package, version, tarball, integrity)


# -- the tarball ---------------------------------------------------------------------------------


def check_integrity(data: bytes, integrity: str) -> None:
    """Raise unless ``data`` matches one of the ``sha512-`` values of an SRI ``integrity``."""
    digest = base64.b64encode(hashlib.sha512(data).digest()).decode()
    expected = [i.split("?")[0][7:] for i in integrity.split() if i.startswith("sha512-")]
    if digest not in expected:
        raise VendorError(f"tarball sha512-{digest} does not match the registry's {integrity}")


def extract(data: bytes, members: Mapping[str, str]) -> dict[str, bytes]:
    """The named regular files of a gzipped npm tarball: tarball path -> content."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for info in tar:
                if info.name in members and info.isfile():
                    reader = tar.extractfile(info)
                    if reader is not None:
                        found[info.name] = reader.read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise VendorError(f"the tarball cannot be read: {e}") from e
    missing = sorted(set(members) - set(found))
    if missing:
        raise VendorError(f"not in the tarball (or not a regular file): {', '.join(missing)}")
    return found


def fetch(release: Release) -> dict[str, bytes]:
    """The package's files (path under its folder -> content), checked and extracted."""
    data = _get(release.tarball, "application/octet-stream", MAX_TARBALL_BYTES)
    check_integrity(data, release.integrity)
    files = extract(data, release.package.files)
    return {release.package.files[name]: content for name, content in files.items()}


# -- the folder and its manifest -----------------------------------------------------------------


def read_manifest(dest: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((dest / MANIFEST_NAME).read_text("utf-8"))
    except FileNotFoundError:
        return {"files": {}}
    return manifest


def pinned_versions(manifest: Mapping[str, Any]) -> dict[str, str]:
    """package -> version, as the manifest's files record them."""
    return {entry["package"]: entry["version"] for entry in manifest.get("files", {}).values()}


def _write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as f:
        f.write(content)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)


def install(dest: Path, fetched: Sequence[tuple[Release, Mapping[str, bytes]]]) -> dict[str, Any]:
    """Write each release's files into ``dest/<package>/`` (removing what it no longer ships)
    and rewrite the manifest; returns the manifest."""
    manifest = read_manifest(dest)
    entries: dict[str, Any] = dict(manifest.get("files", {}))
    for release, files in fetched:
        folder = dest / release.package.name
        if folder.is_dir():
            for old in folder.iterdir():
                if old.is_file() and old.name not in files:
                    old.unlink()
        entries = {k: v for k, v in entries.items() if v["package"] != release.package.name}
        for name, content in files.items():
            _write(folder / name, content)
            entries[f"{release.package.name}/{name}"] = {
                "package": release.package.name,
                "version": release.version,
                "tarball": release.tarball,
                "integrity": release.integrity,
                "sha512": hashlib.sha512(content).hexdigest(),
                "bytes": len(content),
            }
    manifest = {
        "about": "Assets of the API docs pages, vendored from the npm registry by "
        "deploy/vendor-docs-assets.py; do not edit by hand.",
        "files": dict(sorted(entries.items())),
    }
    _write(dest / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest


def check(dest: Path) -> list[str]:
    """What differs between ``dest``'s files and its manifest (empty when they agree)."""
    problems = []
    for path, entry in read_manifest(dest).get("files", {}).items():
        try:
            content = (dest / path).read_bytes()
        except FileNotFoundError:
            problems.append(f"{path}: missing")
            continue
        if hashlib.sha512(content).hexdigest() != entry["sha512"]:
            problems.append(f"{path}: sha512 differs from the manifest")
    return problems


# -- the command ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "versions",
        nargs="*",
        metavar="PACKAGE@VERSION",
        help="versions to vendor (others stay as pinned)",
    )
    parser.add_argument("--latest", action="store_true", help="newest release of each major line")
    parser.add_argument("--check", action="store_true", help="only compare files and manifest")
    parser.add_argument(
        "--registry", default=os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY
    )
    parser.add_argument("--dest", type=Path, default=DEST, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.check:
        problems = check(args.dest)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0

    known = {p.name: p for p in PACKAGES}
    wanted: dict[str, str | None] = {}
    if not args.latest:
        wanted.update(pinned_versions(read_manifest(args.dest)))
    for spec in args.versions:
        name, _, version = spec.rpartition("@")
        if name not in known or not version:
            parser.error(f"{spec}: expected one of {', '.join(known)} as NAME@VERSION")
        wanted[name] = version
    try:
        releases = [resolve(args.registry, p, wanted.get(p.name)) for p in PACKAGES]
        fetched = [(release, fetch(release)) for release in releases]
    except VendorError as e:
        print(f"vendor-docs-assets: {e}", file=sys.stderr)
        return 1
    install(args.dest, fetched)
    for release, files in fetched:
        size = sum(len(c) for c in files.values())
        print(f"{release.package.name}@{release.version}: {len(files)} files, {size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
