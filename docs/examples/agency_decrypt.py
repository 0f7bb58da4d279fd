"""An agency's side of per-recipient encryption, end to end: make a key pair, register the
public key, pin the broker's delivery-signing keys, consume your own Kafka topic, decrypt each
record and check that the broker signed it.

Needs Python 3.11+, ``pip install joserfc aiokafka httpx`` and the decrypt helper
``services/core/crypto/recipient.py`` (copy that one file beside this one, or install
isa-broker). Run::

    # 1. a key pair: the private key stays with you (mode 0600), the public one is registered
    python agency_decrypt.py keygen --kid vawg-2026-12 --out keys/

    # 2. register the public key (a client of your party with subscriptions:manage)
    python agency_decrypt.py register --gateway https://isa-broker.example \\
        --token "$TOKEN" --public keys/vawg-2026-12.public.jwk.json

    # 3. save the broker's delivery-signing keys and compare the thumbprints it prints with
    #    those the broker's operators gave you out of band (isa-broker keys list)
    python agency_decrypt.py broker-keys --gateway https://isa-broker.example \\
        --out keys/broker-delivery-signing.jwks.json

    # 4. consume and decrypt as your own Kafka principal (the kafka_credential shown once
    #    when you made your first kafka subscription; its password in a 0600 file), over
    #    SASL_SSL; give every private key you still hold (rotation). A record signed by a
    #    key not in the saved set makes it fetch the set again from --gateway (https), at
    #    most every five minutes
    python agency_decrypt.py consume --bootstrap kafka.example:9093 --ca-file kafka-ca.pem \\
        --username agency-eastborough-vawg --password-file kafka-password \\
        --topic isa.agency.eastborough-vawg.v1 --party eastborough-vawg \\
        --key keys/vawg-2026-12.private.jwk.json \\
        --broker-keys keys/broker-delivery-signing.jwks.json --gateway https://isa-broker.example

The cluster lets your principal read your own topic, in consumer groups named
``<party>.<anything>`` (here ``eastborough-vawg.decrypt``), and nothing else.

A webhook body of a subscription made with ``"encrypt": true`` is the same compact JWE
(content type ``application/jose``): verify the webhook signature over the body as received,
then ``recipient.open_(body, keys, broker_keys=broker, recipient=PARTY,
delivery_id=headers["webhook-id"])``.

A record that does not open is not lost: it stays on the topic. Log its offset and the
error (never its content), fix the key, and read from that offset again. A record refused as
``NotSignedByBroker`` decrypted with your key but was not signed by the broker for this
delivery: someone else wrote it; never act on it, and tell the broker's operators."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

try:
    from services.core.crypto import recipient
except ImportError:  # the helper copied beside this file
    import recipient  # type: ignore[import-not-found, no-redef]


def keygen(kid: str, out: Path) -> tuple[Path, Path]:
    """Write ``<kid>.private.jwk.json`` (0600) and ``<kid>.public.jwk.json`` under ``out``."""
    private, public = recipient.generate_key(kid)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_path, public_path = out / f"{kid}.private.jwk.json", out / f"{kid}.public.jwk.json"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(private, fh)
    public_path.write_text(json.dumps(public, indent=2))
    return private_path, public_path


def load_keys(paths: list[Path]) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in paths]


def save_broker_keys(gateway: str, out: Path, allow_http: bool = False) -> dict[str, str]:
    """Fetch the broker's delivery-signing keys from its https endpoint, save them in ``out``
    and return their thumbprints (by kid): compare those with the operators' out of band
    before you trust the file."""
    url = gateway.rstrip("/") + recipient.BROKER_KEYS_PATH
    keys = recipient.BrokerKeys.from_url(url, allow_http=allow_http)
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    out.write_text(json.dumps(keys.jwks(), indent=2))
    return keys.thumbprints()


def load_broker_keys(
    path: Path, gateway: str | None = None, allow_http: bool = False
) -> recipient.BrokerKeys:
    """The pinned keys saved by :func:`save_broker_keys`; with ``gateway``, refreshed from
    its endpoint when a record names a key not in the file."""
    url = gateway.rstrip("/") + recipient.BROKER_KEYS_PATH if gateway else None
    return recipient.BrokerKeys.from_file(path, url=url, allow_http=allow_http)


def register(gateway: str, token: str, public: Path) -> dict[str, Any]:
    import httpx

    r = httpx.post(
        f"{gateway.rstrip('/')}/v1/encryption-keys",
        json={"jwk": json.loads(public.read_text())},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    r.raise_for_status()
    registered: dict[str, Any] = r.json()
    return registered


async def consume(
    bootstrap: str,
    topic: str,
    party: str,
    keys: list[dict[str, Any]],
    broker_keys: recipient.BrokerKeys,
    security: dict[str, Any] | None = None,
) -> None:
    """Print each record's message id, type and the field names it carries. ``security``:
    aiokafka's SASL_SSL settings (:func:`sasl_ssl`); none for a cluster without security."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        # the cluster allows the agency's groups only under its own prefix
        group_id=f"{party}.decrypt",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(security or {}),
    )
    await consumer.start()
    try:
        async for record in consumer:
            try:
                opened = recipient.open_record(
                    record.value or b"",
                    record.headers,
                    keys,
                    broker_keys=broker_keys,
                    recipient=party,
                )
            except recipient.NotSignedByBroker as e:
                # decrypted, but not the broker's: a forgery; never act on it
                print(f"offset {record.offset}: FORGED, not the broker's: {e}", file=sys.stderr)
                await consumer.commit()
                continue
            except recipient.DeliveryDecryptError as e:
                print(f"offset {record.offset}: not opened: {e}", file=sys.stderr)
                continue
            event = opened.event
            print(
                f"offset {record.offset}: {event['type']} {event['id']} "
                f"under {opened.binding.agreements}: fields {sorted(event.get('data', {}))}"
            )
            # ... hand ``event`` to your case system here, then:
            await consumer.commit()
    finally:
        await consumer.stop()


def sasl_ssl(ca_file: Path | None, username: str, password_file: Path) -> dict[str, Any]:
    """SCRAM-SHA-512 over TLS, the broker's certificates checked (host names too) against
    ``ca_file`` or the system's trust store."""
    from aiokafka.helpers import create_ssl_context

    return {
        "security_protocol": "SASL_SSL",
        "ssl_context": create_ssl_context(cafile=str(ca_file) if ca_file else None),
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": username,
        "sasl_plain_password": password_file.read_text().strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keygen")
    p.add_argument("--kid", required=True)
    p.add_argument("--out", type=Path, default=Path("keys"))
    p = sub.add_parser("register")
    p.add_argument("--gateway", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--public", type=Path, required=True)
    p = sub.add_parser("broker-keys")
    p.add_argument("--gateway", required=True)
    p.add_argument("--out", type=Path, default=Path("keys/broker-delivery-signing.jwks.json"))
    p.add_argument("--allow-http", action="store_true", help="local development only")
    p = sub.add_parser("consume")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--party", required=True)
    p.add_argument("--key", type=Path, action="append", required=True)
    p.add_argument("--broker-keys", type=Path, required=True, help="saved by broker-keys")
    p.add_argument("--gateway", help="refresh the broker keys from here (https)")
    p.add_argument("--allow-http", action="store_true", help="local development only")
    p.add_argument("--ca-file", type=Path, help="PEM of the CAs of the brokers' certificates")
    p.add_argument("--username", help="your Kafka principal, agency-<party>")
    p.add_argument("--password-file", type=Path, help="file holding its password")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        private_path, public_path = keygen(args.kid, args.out)
        print(f"private key: {private_path} (keep secret)\npublic key:  {public_path}")
    elif args.command == "register":
        print(json.dumps(register(args.gateway, args.token, args.public), indent=2))
    elif args.command == "broker-keys":
        thumbprints = save_broker_keys(args.gateway, args.out, args.allow_http)
        print(f"saved {args.out}; check these thumbprints with the broker's operators:")
        for kid, value in sorted(thumbprints.items()):
            print(f"  {kid}  {value}")
    else:
        security = None
        if args.username:
            if args.password_file is None:
                parser.error("--username needs --password-file")
            security = sasl_ssl(args.ca_file, args.username, args.password_file)
        keys = load_keys(args.key)
        broker = load_broker_keys(args.broker_keys, args.gateway, args.allow_http)
        asyncio.run(consume(args.bootstrap, args.topic, args.party, keys, broker, security))
    return 0


if __name__ == "__main__":
    sys.exit(main())
