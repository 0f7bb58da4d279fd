"""Operator commands on who may do what: ``clients create|list|disable|enable`` and
``keys list|rotate|retire-kek``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

from ..core.settings import Settings

if TYPE_CHECKING:
    from ..core.crypto.keys import KeyStore
from .common import load_settings, read_json_file


async def clients_create(args: argparse.Namespace) -> int:
    from ..core.clients import create_client
    from ..core.runtime import Runtime

    settings = load_settings()
    runtime = await Runtime.create(settings, settings.kafka.bootstrap_servers or "", embedded=False)
    try:
        jwks = read_json_file("--jwks", args.jwks) if args.jwks else None
        creds = await create_client(
            runtime,
            args.party,
            scopes=args.scope,
            jwks=jwks,
            external_subject=args.external_subject,
        )
    finally:
        await runtime.aclose()
    print(json.dumps(creds, indent=2))
    return 0


async def clients_list(_: argparse.Namespace) -> int:
    from ..core.clients import auth_method
    from ..core.runtime import Runtime

    settings = load_settings()
    runtime = await Runtime.create(settings, settings.kafka.bootstrap_servers or "", embedded=False)
    try:
        rows = await runtime.store.list_clients()
    finally:
        await runtime.aclose()
    for r in rows:
        state = "disabled" if r["disabled"] else "active"
        print(f"{r['client_id']}\t{r['party']}\t{auth_method(r)}\t{state}\t{' '.join(r['scopes'])}")
    return 0


async def clients_set_disabled(args: argparse.Namespace) -> int:
    from ..core.clients import set_client_disabled
    from ..core.runtime import Runtime

    settings = load_settings()
    runtime = await Runtime.create(settings, settings.kafka.bootstrap_servers or "", embedded=False)
    disabled = args.clients_command == "disable"
    try:
        found = await set_client_disabled(runtime, args.client_id, disabled, actor="operator")
    finally:
        await runtime.aclose()
    if found is None:
        print(f"isa-broker: no client {args.client_id!r}", file=sys.stderr)
        return 1
    print(f"{args.client_id} {'disabled' if disabled else 'enabled'}")
    return 0


def keys_command(args: argparse.Namespace) -> int:
    from ..core.crypto.keys import KeyStore
    from ..core.crypto.signing_keys import RotationPolicy

    settings = load_settings()
    store = KeyStore(
        settings.data_dir,
        RotationPolicy.from_settings(settings),
        delivery_rotation=RotationPolicy.for_delivery_signing(settings),
    )
    delivery = getattr(args, "delivery", False)
    keys = store.delivery_signing if delivery else store.signing
    now = dt.datetime.now(dt.UTC)
    if args.keys_command in ("rotate-kek", "retire-kek"):
        if args.keys_command == "rotate-kek":
            kid = store.kek.rotate()
            print(f"new current key-encryption key {kid}")
            asyncio.run(log_key_event(settings, "kek_rotated", {"kid": kid}))
        else:
            if args.kid in {k.kid for k in store.kek.describe() if not k.current}:
                # webhook signing keys sealed under it are sealed again under the current one
                moved = asyncio.run(reseal_signing_keys(settings, store))
                print(f"sealed {moved} webhook signing key(s) again under the current key")
            store.kek.retire(args.kid)
            print(f"retired key-encryption key {args.kid}")
            asyncio.run(log_key_event(settings, "kek_retired", {"kid": args.kid}))
        return 0
    if args.keys_command == "rotate":
        ahead = settings.tokens.signing_key_publish_ahead_seconds
        if args.publish_ahead is not None:
            ahead = args.publish_ahead
        if delivery:
            store.delivery_signing_key(now)  # a key to retire, rather than none
        before = {k["kid"] for k in keys.describe(now)}
        keys.rotate(now, dt.timedelta(seconds=ahead))
        added = sorted({k["kid"] for k in keys.describe(now)} - before)
        if added:
            detail = {"kid": added[0], "publish_ahead_seconds": ahead}
            event = "delivery_signing_key_rotated" if delivery else "signing_key_rotated"
            asyncio.run(log_key_event(settings, event, detail))
    if not delivery:
        for k in keys.describe(now):
            print(f"{k['kid']}\t{k['state']}\tsigns from {k['activates_at']:%Y-%m-%dT%H:%M:%SZ}")
    if delivery or args.keys_command == "list":
        # thumbprints: what agencies pin (docs/integrators.md)
        for k in store.delivery_signing.describe(now):
            print(
                f"{k['kid']}\tdelivery {k['state']}\tsigns from "
                f"{k['activates_at']:%Y-%m-%dT%H:%M:%SZ}\t{k['thumbprint']}"
            )
    if args.keys_command == "list":
        for kek in store.kek.describe():
            state = "current" if kek.current else "unwraps only"
            print(f"{kek.kid}\tkek {state}\tcreated {kek.created_at:%Y-%m-%dT%H:%M:%SZ}")
    return 0


async def reseal_signing_keys(settings: Settings, keys: KeyStore) -> int:
    """Seal every stored webhook signing key under the current key-encryption key."""
    from ..core.crypto.at_rest import SigningKeysAtRest, reseal_all
    from ..core.crypto.envelope import Envelope
    from ..core.store import Store

    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        return await reseal_all(store, SigningKeysAtRest(Envelope(keys.kek)))
    finally:
        await store.aclose()


async def log_key_event(settings: Settings, event: str, detail: dict[str, Any]) -> None:
    """A key rotation or retirement made from the command line, in the disclosure log (key
    ids only), with actor ``operator`` and client id ``cli`` as the other operator
    commands."""
    from ..core.store import Store

    store = Store(settings.resolved_database_url)
    try:
        await store.init_schema()
        await store.audit(event, actor="operator", detail={**detail, "client_id": "cli"})
    finally:
        await store.aclose()
