"""Verification of the tamper-evident disclosure log, and the checkpoints a partner keeps.

:func:`verify_log` first takes a snapshot: the checkpoints, then the last sealed entry (the
tail). It then reads the entries up to the tail's ``seq`` in one pass, page by page, and
stops at the first fault, in this order of checks as it walks the entries by ``seq``:

1. an unsealed entry older than the last sealed one: it was inserted (or committed later
   than the settle window; see docs/operations.md);
2. positions 0, 1, 2, ... in ``seq`` order: a missing position means the entry there was
   removed; a repeated or backward one means an entry was inserted;
3. each sealed entry's leaf hash recomputed from its content (:mod:`.canonical`): a
   difference (or content that no longer parses) means it was altered;
4. the chain hash recomputed from the leaves;
5. each checkpoint: its signature by a trusted log-signing key, its size within the log,
   and its root and chain hash equal to those recomputed from the entries' content (a
   compact range gives each root as the walk reaches its size). The first failing
   checkpoint bounds the fault to the entries since the previous good one: this catches an
   alteration hidden by recomputing the hash columns. A fault of checks 1 to 4 anywhere is
   reported before a failing checkpoint;
6. with exported checkpoints (a partner's copy, with the public keys it was given): each
   must be signed by one of those keys and have the same root as the log's first entries
   at its size. With check 5, which found the newest checkpoint's root in the same log,
   this establishes that the newest checkpoint extends the exported one; the RFC 9162
   consistency proof between them (s2.1.4), built in the same pass, is verified as well.

Entries after the tail (written, or sealed by a running sealer, since the snapshot) count
as not yet sealed. Memory holds one page of entries and O(log n) hashes per checkpoint,
whatever the length of the log; time is linear in it. The walk reports its progress to an
optional ``on_progress(entries checked, sealed entries)`` callback (the command's progress
bar), as does the walk of :func:`export_checkpoints`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..store import Store
from ..store.audit_log import CHAIN_START, PAGE
from . import CheckpointFileInvalid
from .canonical import entry_leaf
from .keys import LogSigningKeys, public_key_from_b64, verify_signature
from .merkle import ConsistencyProofs, verify_consistency

FORMAT = "isa-broker-audit-checkpoints/1"

#: ``on_progress(done, total)``: how far a walk over the sealed entries is
OnProgress = Callable[[int, int], None]


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


def _fail(message: str, seq: int | None = None, position: int | None = None) -> Verdict:
    return Verdict(False, message, seq=seq, position=position)


class _Pass:
    """Checks 1 to 5 in one pass over the entries up to the tail, in ``seq`` order, with the
    roots and consistency proofs that check 6 needs."""

    def __init__(
        self,
        last_sealed: int,
        checkpoints: list[dict[str, Any]],
        keys: dict[str, Ed25519PublicKey],
        exported_sizes: list[int],
    ) -> None:
        self.last_sealed = last_sealed
        self.checkpoints, self.keys = checkpoints, keys
        latest = checkpoints[-1]["tree_size"] if checkpoints else 0
        self.tree = ConsistencyProofs((m, latest) for m in set(exported_sizes) if 0 < m < latest)
        self.exported_roots: dict[int, bytes] = {}
        self._exported_sizes = set(exported_sizes)
        self.chain = CHAIN_START
        self.previous_seq: int | None = None
        self.unsealed = 0
        self._next = 0  # the next checkpoint to check
        self._good = 0  # the size of the last good checkpoint
        self._good_seq: int | None = None  # the seq at position ``_good``
        self.checkpoint_fault: Verdict | None = None
        self._reached()

    def entry(self, e: dict[str, Any]) -> Verdict | None:
        """Checks 1 to 4 of one entry; check 5 of the checkpoints at its position."""
        seq, position = int(e["seq"]), e["position"]
        if position is None:
            if seq < self.last_sealed:
                previous = self.previous_seq
                where = f"after seq {previous}" if previous is not None else "first"
                return _fail(
                    f"entry seq {seq} was inserted: it is not sealed, yet older than sealed "
                    f"entries ({where})",
                    seq,
                )
            self.unsealed += 1
            return None
        expected = self.tree.size
        if position > expected:
            previous = self.previous_seq
            after = f"after seq {previous}" if previous is not None else "the first"
            return _fail(f"entry at position {expected} ({after}) was removed", previous, expected)
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
        self.chain = hashlib.sha256(self.chain + leaf).digest()
        if self.chain.hex() != e["chain_hash"]:
            return _fail(
                f"entry seq {seq} (position {position}): its chain hash was altered",
                seq,
                position,
            )
        if position == self._good:
            self._good_seq = seq
        self.tree.append(leaf)
        self.previous_seq = seq
        self._reached()
        return None

    def _reached(self) -> None:
        """The tree reached a new size: keep an exported checkpoint's root; check 5 of the
        checkpoints of this size (until one fails)."""
        size = self.tree.size
        if size in self._exported_sizes:
            self.exported_roots[size] = self.tree.root()
        while (
            self.checkpoint_fault is None
            and self._next < len(self.checkpoints)
            and self.checkpoints[self._next]["tree_size"] <= size
        ):
            self.checkpoint_fault = self._check(self.checkpoints[self._next])
            self._next += 1

    def _signed(self, cp: dict[str, Any]) -> Verdict | None:
        if verify_signature(self.keys, cp):
            return None
        return _fail(
            f"the checkpoint at size {cp['tree_size']} (signed at {cp['signed_at']}) has no "
            "valid signature by a trusted log-signing key"
        )

    def _check(self, cp: dict[str, Any]) -> Verdict | None:
        size = cp["tree_size"]
        unsigned = self._signed(cp)
        if unsigned is not None:
            return unsigned
        if self.tree.root().hex() != cp["root_hash"] or self.chain.hex() != cp["chain_hash"]:
            good, first, last = self._good, self._good_seq, self.previous_seq
            return _fail(
                f"the log does not match the checkpoint at size {size} signed at "
                f"{cp['signed_at']}: an entry between position {good} (seq {first}) and "
                f"position {size - 1} (seq {last}) was altered, removed or inserted and the "
                "hashes recomputed",
                first if size - good == 1 else None,
                good if size - good == 1 else None,
            )
        self._good = size
        return None

    def finish(self) -> Verdict | None:
        """Check 5 of the checkpoints beyond the log's end, after the first failing one."""
        if self.checkpoint_fault is not None or self._next == len(self.checkpoints):
            return self.checkpoint_fault
        cp = self.checkpoints[self._next]
        size, n, last = cp["tree_size"], self.tree.size, self.previous_seq
        return self._signed(cp) or _fail(
            f"entries from position {n} (after seq {last}) were removed: the checkpoint at "
            f"size {size} signed at {cp['signed_at']} covers {size} entries, the log holds "
            f"{n}",
            last,
            n,
        )

    def exported(self, latest: dict[str, Any] | None, exported: dict[str, Any]) -> Verdict | None:
        """Check 6."""
        keys, checkpoints = exported["keys"], exported["checkpoints"]
        for cp in checkpoints:
            size = cp["tree_size"]
            if not verify_signature(keys, cp):
                return _fail(f"the exported checkpoint at size {size} has no valid signature")
            if latest is None or size > latest["tree_size"] or size > self.tree.size:
                return _fail(
                    f"the log is shorter than the exported checkpoint at size {size}: entries "
                    "were removed"
                )
            if (r := self.exported_roots.get(size)) is None or r.hex() != cp["root_hash"]:
                return _fail(
                    f"the log was rewritten: its first {size} entries do not have the root of "
                    f"the exported checkpoint signed at {cp['signed_at']}"
                )
            second = latest["tree_size"]
            proof = self.tree.proof(size, second) if 0 < size < second else []
            if not verify_consistency(
                size,
                second,
                bytes.fromhex(cp["root_hash"]),
                bytes.fromhex(latest["root_hash"]),
                proof,
            ):
                return _fail(
                    f"the newest checkpoint (size {second}) is not consistent with the "
                    f"exported checkpoint at size {size}"
                )
        return None


async def verify_log(
    store: Store,
    keys: LogSigningKeys,
    exported: dict[str, Any] | None = None,
    *,
    page: int = PAGE,
    on_progress: OnProgress | None = None,
) -> Verdict:
    """Check the log up to its last sealed entry and its checkpoints (and ``exported``, from
    :func:`read_export`), reading ``page`` entries at a time; the verdict names the first
    fault. ``on_progress`` is told the sealed entries checked, of those in the snapshot,
    after each entry."""
    checkpoints = await store.audit_checkpoints()
    tail = await store.sealed_tail()  # after the checkpoints: it covers every one of them
    last_sealed = tail[1] if tail is not None else 0
    total = tail[0] + 1 if tail is not None else 0
    sizes = [cp["tree_size"] for cp in exported["checkpoints"]] if exported is not None else []
    walk = _Pass(last_sealed, checkpoints, keys.public_keys(), sizes)
    async for entry in store.log_entries(last_sealed, page=page):
        bad = walk.entry(entry)
        if bad is not None:
            return bad
        if on_progress is not None:
            on_progress(walk.tree.size, total)
    bad = walk.finish()
    if bad is None and exported is not None:
        bad = walk.exported(checkpoints[-1] if checkpoints else None, exported)
    if bad is not None:
        return bad
    sealed = walk.tree.size
    unsealed = walk.unsealed + await store.count_unsealed_after(tail)
    against = f", {len(exported['checkpoints'])} exported" if exported is not None else ""
    return Verdict(
        True,
        f"{sealed} sealed entries, {len(checkpoints)} checkpoints{against} verified; "
        f"{unsealed} entries not yet sealed",
        sealed=sealed,
        unsealed=unsealed,
        checkpoints=len(checkpoints),
    )


async def export_checkpoints(
    store: Store,
    keys: LogSigningKeys,
    *,
    page: int = PAGE,
    on_progress: OnProgress | None = None,
) -> dict[str, Any]:
    """Every checkpoint with the public keys that verify them and the RFC 9162 consistency
    proof from each to the next, for a partner to keep (and check offline); the proofs are
    built in one pass over the sealed leaves, ``page`` at a time (``on_progress`` is told
    the leaves read, of those the newest checkpoint covers, after each one)."""
    checkpoints = await store.audit_checkpoints()
    sizes = [cp["tree_size"] for cp in checkpoints]
    pairs = list(zip(sizes, sizes[1:], strict=False))
    tree = ConsistencyProofs(pairs)
    if pairs:
        async for _, leaf, _ in store.sealed_leaves(0, sizes[-1], page=page):
            tree.append(leaf)
            if on_progress is not None:
                on_progress(tree.size, sizes[-1])
    proofs = [
        {"first": a, "second": b, "proof": [p.hex() for p in tree.proof(a, b)]}
        for a, b in pairs
        if b <= tree.size
    ]
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
