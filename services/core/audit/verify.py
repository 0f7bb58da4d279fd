"""Verification of the tamper-evident disclosure log, and the checkpoints a partner keeps.

:func:`verify_log` reads every entry and checkpoint and stops at the first fault, in this
order of checks as it walks the entries by ``seq``:

1. an unsealed entry older than the last sealed one: it was inserted (or committed later
   than the settle window; see docs/operations.md);
2. positions 0, 1, 2, ... in ``seq`` order: a missing position means the entry there was
   removed; a repeated or backward one means an entry was inserted;
3. each sealed entry's leaf hash recomputed from its content (:mod:`.canonical`): a
   difference (or content that no longer parses) means it was altered;
4. the chain hash recomputed from the leaves;
5. each checkpoint: its signature by a trusted log-signing key, its size within the log,
   and its root and chain hash equal to those recomputed from the entries' content. The
   first failing checkpoint bounds the fault to the entries since the previous good one:
   this catches an alteration hidden by recomputing the hash columns;
6. with exported checkpoints (a partner's copy, with the public keys it was given): each
   must be signed by one of those keys, have the same root as the log at its size, and be
   proved consistent with the newest checkpoint (RFC 9162 s2.1.4)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..store import Store
from ..store.audit_log import CHAIN_START
from . import CheckpointFileInvalid
from .canonical import entry_leaf
from .keys import LogSigningKeys, public_key_from_b64, verify_signature
from .merkle import CompactRange, consistency_proof, root, verify_consistency

FORMAT = "isa-broker-audit-checkpoints/1"


@dataclass
class Verdict:
    ok: bool
    message: str
    sealed: int = 0
    unsealed: int = 0
    checkpoints: int = 0
    #: the first bad entry, when one can be named
    seq: int | None = None
    position: int | None = None

    def line(self) -> str:
        return ("OK: " if self.ok else "FAILED: ") + self.message


@dataclass
class _Walk:
    leaves: list[bytes]
    chains: list[bytes]
    seqs: list[int]


def _fail(message: str, seq: int | None = None, position: int | None = None) -> Verdict:
    return Verdict(False, message, seq=seq, position=position)


def _walk(entries: list[dict[str, Any]]) -> _Walk | Verdict:
    """Checks 1 to 4; the recomputed leaves and chain hashes by position."""
    sealed_seqs = [e["seq"] for e in entries if e["position"] is not None]
    last_sealed = max(sealed_seqs, default=0)
    walk = _Walk([], [], [])
    chain = CHAIN_START
    previous_seq: int | None = None
    for e in entries:
        seq, position = int(e["seq"]), e["position"]
        if position is None:
            if seq < last_sealed:
                where = f"after seq {previous_seq}" if previous_seq is not None else "first"
                return _fail(
                    f"entry seq {seq} was inserted: it is not sealed, yet older than sealed "
                    f"entries ({where})",
                    seq,
                )
            continue
        expected = len(walk.leaves)
        if position > expected:
            after = f"after seq {previous_seq}" if previous_seq is not None else "the first"
            return _fail(
                f"entry at position {expected} ({after}) was removed", previous_seq, expected
            )
        if position < expected:
            return _fail(
                f"entry seq {seq} (position {position}) was inserted: position {position} "
                "is already taken by an earlier entry",
                seq,
                position,
            )
        try:
            leaf = entry_leaf(e)
        except (ValueError, TypeError, KeyError):
            leaf = b""
        if leaf.hex() != e["leaf_hash"]:
            return _fail(f"entry seq {seq} (position {position}) was altered", seq, position)
        chain = hashlib.sha256(chain + leaf).digest()
        if chain.hex() != e["chain_hash"]:
            return _fail(
                f"entry seq {seq} (position {position}): its chain hash was altered",
                seq,
                position,
            )
        walk.leaves.append(leaf)
        walk.chains.append(chain)
        walk.seqs.append(seq)
        previous_seq = seq
    return walk


def _check_checkpoints(
    walk: _Walk, checkpoints: list[dict[str, Any]], keys: dict[str, Ed25519PublicKey]
) -> Verdict | None:
    """Check 5, in one pass over the leaves (each root from a compact range)."""
    tree = CompactRange()
    good = 0
    for cp in checkpoints:
        size = cp["tree_size"]
        if not verify_signature(keys, cp):
            return _fail(
                f"the checkpoint at size {size} (signed at {cp['signed_at']}) has no valid "
                f"signature by a trusted log-signing key"
            )
        n = len(walk.leaves)
        if size > n:
            return _fail(
                f"entries from position {n} (after seq {walk.seqs[-1] if n else None}) were "
                f"removed: the checkpoint at size {size} signed at {cp['signed_at']} covers "
                f"{size} entries, the log holds {n}",
                walk.seqs[-1] if n else None,
                n,
            )
        while tree.size < size:
            tree.append(walk.leaves[tree.size])
        if tree.root().hex() != cp["root_hash"] or walk.chains[size - 1].hex() != cp["chain_hash"]:
            first, last = walk.seqs[good], walk.seqs[size - 1]
            return _fail(
                f"the log does not match the checkpoint at size {size} signed at "
                f"{cp['signed_at']}: an entry between position {good} (seq {first}) and "
                f"position {size - 1} (seq {last}) was altered, removed or inserted and the "
                "hashes recomputed",
                first if size - good == 1 else None,
                good if size - good == 1 else None,
            )
        good = size
    return None


def _check_exported(
    walk: _Walk, latest: dict[str, Any] | None, exported: dict[str, Any]
) -> Verdict | None:
    """Check 6."""
    keys, checkpoints = exported["keys"], exported["checkpoints"]
    for cp in checkpoints:
        size = cp["tree_size"]
        if not verify_signature(keys, cp):
            return _fail(f"the exported checkpoint at size {size} has no valid signature")
        if latest is None or size > latest["tree_size"] or size > len(walk.leaves):
            return _fail(
                f"the log is shorter than the exported checkpoint at size {size}: entries "
                "were removed"
            )
        if root(walk.leaves[:size]).hex() != cp["root_hash"]:
            return _fail(
                f"the log was rewritten: its first {size} entries do not have the root of the "
                f"exported checkpoint signed at {cp['signed_at']}"
            )
        second = latest["tree_size"]
        proof = consistency_proof(size, walk.leaves[:second]) if size < second else []
        if not verify_consistency(
            size,
            second,
            bytes.fromhex(cp["root_hash"]),
            bytes.fromhex(latest["root_hash"]),
            proof,
        ):
            return _fail(
                f"the newest checkpoint (size {second}) is not consistent with the exported "
                f"checkpoint at size {size}"
            )
    return None


async def verify_log(
    store: Store, keys: LogSigningKeys, exported: dict[str, Any] | None = None
) -> Verdict:
    """Check the whole log and its checkpoints (and ``exported``, from
    :func:`read_export`); the verdict names the first fault."""
    entries = await store.audit_log()
    checkpoints = await store.audit_checkpoints()
    walk = _walk(entries)
    if isinstance(walk, Verdict):
        return walk
    bad = _check_checkpoints(walk, checkpoints, keys.public_keys())
    if bad is None and exported is not None:
        bad = _check_exported(walk, checkpoints[-1] if checkpoints else None, exported)
    if bad is not None:
        return bad
    sealed = len(walk.leaves)
    unsealed = len(entries) - sealed
    against = f", {len(exported['checkpoints'])} exported" if exported is not None else ""
    return Verdict(
        True,
        f"{sealed} sealed entries, {len(checkpoints)} checkpoints{against} verified; "
        f"{unsealed} entries not yet sealed",
        sealed=sealed,
        unsealed=unsealed,
        checkpoints=len(checkpoints),
    )


async def export_checkpoints(store: Store, keys: LogSigningKeys) -> dict[str, Any]:
    """Every checkpoint with the public keys that verify them and the RFC 9162 consistency
    proof from each to the next, for a partner to keep (and check offline)."""
    checkpoints = await store.audit_checkpoints()
    leaves = [leaf for _, leaf, _ in await store.sealed_leaves()]
    proofs = []
    for a, b in zip(checkpoints, checkpoints[1:], strict=False):
        if b["tree_size"] <= len(leaves):
            path = consistency_proof(a["tree_size"], leaves[: b["tree_size"]])
            proofs.append(
                {
                    "first": a["tree_size"],
                    "second": b["tree_size"],
                    "proof": [p.hex() for p in path],
                }
            )
    return {
        "format": FORMAT,
        "hash": "sha256",
        "signature": "ed25519",
        "public_keys": keys.export_public(),
        "checkpoints": [
            {
                k: cp[k]
                for k in (
                    "tree_size",
                    "root_hash",
                    "chain_hash",
                    "signed_at",
                    "key_id",
                    "signature",
                )
            }
            for cp in checkpoints
        ],
        "consistency": proofs,
    }


def read_export(path: Path) -> dict[str, Any]:
    """An exported checkpoints file: its trusted public keys and checkpoints."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        keys = {kid: public_key_from_b64(b64) for kid, b64 in doc["public_keys"].items()}
        checkpoints = sorted(doc["checkpoints"], key=lambda cp: int(cp["tree_size"]))
        for cp in checkpoints:
            cp["tree_size"] = int(cp["tree_size"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointFileInvalid(f"{path} is not an exported checkpoints file: {e}") from e
    return {"keys": keys, "checkpoints": checkpoints}
