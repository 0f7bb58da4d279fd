"""The tamper-evident disclosure log on SQLite and PostgreSQL: sealing (contiguous
positions, out-of-order commits, two sealers) and verification naming the first entry
altered, removed or inserted, with checkpoints exported to a partner."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from services.core.audit.canonical import entry_leaf
from services.core.audit.keys import LogSigningKeys
from services.core.audit.sealer import Sealer
from services.core.audit.verify import export_checkpoints, read_export, verify_log
from services.core.errors import Unavailable
from services.core.store import Store
from services.core.store import tables as t

pytestmark = pytest.mark.integration

A = t.audit


async def _write(store: Store, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await store.audit(
            "delivered",
            message_id=f"m{i:04d}",
            message_type="release-notice",
            recipient="eastborough-vlo",
            person="psn_" + "0" * 32,
            detail={"delivery_id": f"d{i}", "fields": ["release.date"], "reason": f"rq{i:04d}q"},
        )


def _sealer(store: Store, tmp_path: Path, **kw: Any) -> Sealer:
    return Sealer(store, LogSigningKeys(tmp_path), **kw)


async def _rows(store: Store) -> list[dict[str, Any]]:
    async with store.engine.connect() as c:
        r = await c.execute(sa.select(A).order_by(A.c.seq))
        return [dict(x._mapping) for x in r.all()]


async def _execute(store: Store, *statements: Any) -> None:
    async with store.engine.begin() as c:
        for s in statements:
            await c.execute(s)


async def test_sealing_gives_contiguous_positions_and_checkpoints(
    store: Store, tmp_path: Path
) -> None:
    sealer = _sealer(store, tmp_path)
    await _write(store, 10)
    assert await sealer.seal_now() == 10
    await _write(store, 5, 10)
    assert await sealer.seal_now() == 5
    assert await sealer.seal_now() == 0
    rows = await _rows(store)
    assert [r["position"] for r in rows] == list(range(15))
    checkpoints = await store.audit_checkpoints()
    assert [c["tree_size"] for c in checkpoints] == [10, 15]
    key_file = next((tmp_path / "keys" / "audit-log").glob("*.key"))
    assert key_file.stat().st_mode & 0o777 == 0o600
    verdict = await verify_log(store, sealer.keys)
    assert verdict.ok, verdict.message
    assert (
        verdict.line() == "OK: 15 sealed entries, 2 checkpoints verified; 0 entries not yet sealed"
    )


async def test_a_new_sealer_continues_the_log(store: Store, tmp_path: Path) -> None:
    await _write(store, 3)
    await _sealer(store, tmp_path).seal_now()
    await _write(store, 4, 3)
    assert await _sealer(store, tmp_path).seal_now() == 4
    assert (await verify_log(store, LogSigningKeys(tmp_path))).ok


async def _insert_at(store: Store, seq: int, at: dt.datetime) -> None:
    await _execute(
        store,
        A.insert().values(seq=seq, at=at, event="accepted", detail={"n": seq}),
    )


async def test_a_gap_is_not_sealed_past_until_it_settles(store: Store, tmp_path: Path) -> None:
    """seq 2 is visible before seq 1 (a transaction that took seq 1 has not committed)."""
    now = dt.datetime.now(dt.UTC)
    sealer = _sealer(store, tmp_path, settle_seconds=5)
    await _insert_at(store, 2, now)
    assert await sealer.seal_now() == 0  # seq 1 may still commit
    await _insert_at(store, 1, now)
    assert await sealer.seal_now() == 2
    await _insert_at(store, 4, now)  # seq 3 never commits (rolled back)
    assert await sealer.seal_now() == 0
    later = _sealer(store, tmp_path, settle_seconds=5, clock=lambda: now + dt.timedelta(seconds=6))
    assert await later.seal_now() == 1
    rows = await _rows(store)
    assert [(r["seq"], r["position"]) for r in rows] == [(1, 0), (2, 1), (4, 2)]
    assert (await verify_log(store, sealer.keys)).ok


async def test_an_uncommitted_transaction_holds_sealing_back(
    postgres_url: str, tmp_path: Path
) -> None:
    """PostgreSQL: a real transaction takes seq 1, another commits seq 2 first."""
    store = Store(postgres_url)
    await store.init_schema()
    try:
        sealer = _sealer(store, tmp_path)
        async with store.engine.connect() as slow:
            tx = await slow.begin()
            await slow.execute(
                A.insert().values(at=dt.datetime.now(dt.UTC), event="accepted", detail={})
            )
            await _write(store, 1)
            assert await sealer.seal_now() == 0
            await tx.commit()
        assert await sealer.seal_now() == 2
        assert [(r["seq"], r["position"]) for r in await _rows(store)] == [(1, 0), (2, 1)]
        assert (await verify_log(store, sealer.keys)).ok
    finally:
        await store.aclose()


async def test_two_sealers_never_give_one_position_twice(database_url: str, tmp_path: Path) -> None:
    stores = [Store(database_url) for _ in range(2)]
    await stores[0].init_schema()
    sealers = [_sealer(s, tmp_path, batch=7) for s in stores]

    async def seal(sealer: Sealer) -> None:
        for _ in range(15):
            with contextlib.suppress(Unavailable):  # SQLite: the other sealer is writing
                await sealer.seal_now()
            await asyncio.sleep(0)

    async def write() -> None:
        for i in range(0, 60, 6):
            await _write(stores[0], 6, i)

    try:
        await asyncio.gather(write(), seal(sealers[0]), seal(sealers[1]))
        await sealers[0].seal_now()
        positions = [r["position"] for r in await _rows(stores[0])]
        assert positions == list(range(60))
        verdict = await verify_log(stores[0], sealers[0].keys)
        assert verdict.ok, verdict.message
    finally:
        for s in stores:
            await s.aclose()


# -- verification --------------------------------------------------------------------------


async def _sealed_log(store: Store, tmp_path: Path, n: int = 12, every: int = 4) -> Sealer:
    sealer = _sealer(store, tmp_path)
    for i in range(0, n, every):
        await _write(store, every, i)
        await sealer.seal_now()
    return sealer


async def _verdict(store: Store, tmp_path: Path, exported: Path | None = None) -> str:
    v = await verify_log(
        store, LogSigningKeys(tmp_path), read_export(exported) if exported else None
    )
    return v.line()


async def test_an_untouched_log_passes(store: Store, tmp_path: Path) -> None:
    await _sealed_log(store, tmp_path)
    await _write(store, 2, 12)  # written, not yet sealed: fine
    assert await _verdict(store, tmp_path) == (
        "OK: 12 sealed entries, 3 checkpoints verified; 2 entries not yet sealed"
    )


async def test_an_altered_entry_is_named(store: Store, tmp_path: Path) -> None:
    await _sealed_log(store, tmp_path)
    row = (await _rows(store))[6]
    detail = dict(row["detail"], reason="rq0006r")  # one byte changed
    await _execute(store, A.update().where(A.c.seq == row["seq"]).values(detail=detail))
    assert await _verdict(store, tmp_path) == (
        f"FAILED: entry seq {row['seq']} (position 6) was altered"
    )


async def test_a_changed_column_is_named(store: Store, tmp_path: Path) -> None:
    await _sealed_log(store, tmp_path)
    row = (await _rows(store))[2]
    await _execute(store, A.update().where(A.c.seq == row["seq"]).values(recipient="x"))
    assert f"entry seq {row['seq']} (position 2) was altered" in await _verdict(store, tmp_path)


async def test_a_removed_entry_is_named(store: Store, tmp_path: Path) -> None:
    await _sealed_log(store, tmp_path)
    rows = await _rows(store)
    await _execute(store, A.delete().where(A.c.seq == rows[5]["seq"]))
    assert await _verdict(store, tmp_path) == (
        f"FAILED: entry at position 5 (after seq {rows[4]['seq']}) was removed"
    )


async def test_removing_the_newest_entries_is_caught_by_the_checkpoint(
    store: Store, tmp_path: Path
) -> None:
    await _sealed_log(store, tmp_path)
    rows = await _rows(store)
    await _execute(store, A.delete().where(A.c.seq >= rows[10]["seq"]))
    line = await _verdict(store, tmp_path)
    assert line.startswith(
        f"FAILED: entries from position 10 (after seq {rows[9]['seq']}) were removed"
    ), line


async def test_an_inserted_entry_is_named(store: Store, tmp_path: Path) -> None:
    await _sealed_log(store, tmp_path)
    old = (await _rows(store))[0]["at"] - dt.timedelta(days=1)
    await _insert_at(store, 0, old)
    line = await _verdict(store, tmp_path)
    assert line.startswith("FAILED: entry seq 0 was inserted"), line


async def test_an_entry_unsealed_among_sealed_ones_is_named(store: Store, tmp_path: Path) -> None:
    """An entry whose seal was taken away looks like one slipped in among sealed ones."""
    await _sealed_log(store, tmp_path)
    rows = await _rows(store)
    await _execute(store, A.update().where(A.c.seq == rows[3]["seq"]).values(position=None))
    line = await _verdict(store, tmp_path)
    assert line.startswith(f"FAILED: entry seq {rows[3]['seq']} was inserted"), line


def _rehash(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a forger without the signing key can do: recompute every leaf and chain hash."""
    chain = bytes(32)
    out = []
    for r in rows:
        e = dict(r, detail=json.dumps(r["detail"]))
        leaf = entry_leaf(e)
        chain = hashlib.sha256(chain + leaf).digest()
        out.append({"seq": r["seq"], "leaf_hash": leaf.hex(), "chain_hash": chain.hex()})
    return out


async def _rewrite(store: Store, position: int) -> dict[str, Any]:
    rows = await _rows(store)
    target = rows[position]
    target["detail"] = dict(target["detail"], reason="rewritten")
    statements = [A.update().where(A.c.seq == target["seq"]).values(detail=target["detail"])]
    for h in _rehash(rows):
        statements.append(
            A.update()
            .where(A.c.seq == h["seq"])
            .values(leaf_hash=h["leaf_hash"], chain_hash=h["chain_hash"])
        )
    await _execute(store, *statements)
    return target


async def test_recomputed_hashes_are_caught_by_the_checkpoints(
    store: Store, tmp_path: Path
) -> None:
    await _sealed_log(store, tmp_path)  # checkpoints at 4, 8 and 12
    target = await _rewrite(store, 5)
    first = (await _rows(store))[4]["seq"]
    assert await _verdict(store, tmp_path) == (
        "FAILED: the log does not match the checkpoint at size 8 signed at "
        f"{(await store.audit_checkpoints())[1]['signed_at']}: an entry between position 4 "
        f"(seq {first}) and position 7 (seq {target['seq'] + 2}) was altered, removed or "
        "inserted and the hashes recomputed"
    )


async def test_with_a_checkpoint_per_entry_the_rewritten_entry_is_named(
    store: Store, tmp_path: Path
) -> None:
    await _sealed_log(store, tmp_path, n=6, every=1)
    target = await _rewrite(store, 3)
    v = await verify_log(store, LogSigningKeys(tmp_path))
    assert not v.ok and (v.seq, v.position) == (target["seq"], 3)


async def test_a_checkpoint_forged_without_the_key_is_refused(store: Store, tmp_path: Path) -> None:
    await _sealed_log(store, tmp_path)
    await _rewrite(store, 5)
    leaves = [bytes.fromhex(r["leaf_hash"]) for r in await _rows(store)]
    from services.core.audit.merkle import root

    for size in (8, 12):
        await _execute(
            store,
            t.audit_checkpoints.update()
            .where(t.audit_checkpoints.c.tree_size == size)
            .values(root_hash=root(leaves[:size]).hex()),
        )
    line = await _verdict(store, tmp_path)
    assert line.startswith("FAILED: the checkpoint at size 8 (signed at "), line
    assert "has no valid signature by a trusted log-signing key" in line


async def test_exported_checkpoints_of_an_older_log_are_accepted(
    store: Store, tmp_path: Path
) -> None:
    sealer = await _sealed_log(store, tmp_path, n=5, every=5)
    exported = tmp_path / "partner.json"
    exported.write_text(json.dumps(await export_checkpoints(store, sealer.keys)))
    for i in range(5, 23, 3):
        await _write(store, 3, i)
        await sealer.seal_now()
    doc = await export_checkpoints(store, sealer.keys)
    assert len(doc["consistency"]) == len(doc["checkpoints"]) - 1
    assert await _verdict(store, tmp_path, exported) == (
        "OK: 23 sealed entries, 7 checkpoints, 1 exported verified; 0 entries not yet sealed"
    )


async def test_a_log_rewritten_and_signed_again_is_refused_by_a_partners_copy(
    store: Store, tmp_path: Path
) -> None:
    """The forger controls the broker's host: it recomputes every hash and signs new
    checkpoints with a key of its own. The partner's exported copy still refuses it."""
    sealer = await _sealed_log(store, tmp_path)
    exported = tmp_path / "partner.json"
    exported.write_text(json.dumps(await export_checkpoints(store, sealer.keys)))
    await _rewrite(store, 5)
    await _execute(store, t.audit_checkpoints.delete())
    shutil.rmtree(tmp_path / "keys" / "audit-log")
    await _sealer(store, tmp_path).seal_now()
    assert (await _verdict(store, tmp_path)).startswith("OK")  # the host alone is fooled
    line = await _verdict(store, tmp_path, exported)
    assert line.startswith(
        "FAILED: the log was rewritten: its first 8 entries do not have the root of the "
        "exported checkpoint signed at "
    ), line


async def test_a_byte_changed_in_the_sqlite_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = Store(f"sqlite+aiosqlite:///{path}")
    await store.init_schema()
    await _sealed_log(store, tmp_path)
    seq = (await _rows(store))[7]["seq"]
    await store.aclose()  # the WAL is checkpointed into the file
    data = bytearray(path.read_bytes())
    at = data.find(b"rq0007q")
    assert at > 0 and data.find(b"rq0007q", at + 1) == -1
    data[at + 1] ^= 0x01  # "rq..." -> "rp..."
    path.write_bytes(bytes(data))
    store = Store(f"sqlite+aiosqlite:///{path}")
    try:
        assert (
            await _verdict(store, tmp_path) == f"FAILED: entry seq {seq} (position 7) was altered"
        )
        # a byte that breaks the stored JSON is reported the same way
        data[at - 3] = ord("}")
        await store.aclose()
        path.write_bytes(bytes(data))
        store = Store(f"sqlite+aiosqlite:///{path}")
        assert (
            await _verdict(store, tmp_path) == f"FAILED: entry seq {seq} (position 7) was altered"
        )
    finally:
        await store.aclose()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"ISA_BROKER_MODE": "dev", "ISA_BROKER_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "services.cli", "audit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_audit_commands(tmp_path: Path) -> None:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'isa-broker.db'}")
    await store.init_schema()
    await _write(store, 6)
    out = await asyncio.to_thread(_cli, tmp_path, "seal")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "sealed 6 entries; the log holds 6 sealed entries\n"
    out = await asyncio.to_thread(_cli, tmp_path, "verify")
    assert (out.returncode, out.stdout) == (
        0,
        "OK: 6 sealed entries, 1 checkpoints verified; 0 entries not yet sealed\n",
    )
    partner = tmp_path / "partner.json"
    out = await asyncio.to_thread(_cli, tmp_path, "checkpoints", "export", "--out", str(partner))
    assert out.returncode == 0, out.stderr
    assert json.loads(partner.read_text())["checkpoints"][0]["tree_size"] == 6
    out = await asyncio.to_thread(_cli, tmp_path, "verify", "--checkpoints", str(partner))
    assert out.returncode == 0 and "1 exported verified" in out.stdout
    row = (await _rows(store))[2]
    await _execute(store, A.update().where(A.c.seq == row["seq"]).values(detail={"reason": "x"}))
    out = await asyncio.to_thread(_cli, tmp_path, "verify")
    assert (out.returncode, out.stdout) == (
        1,
        f"FAILED: entry seq {row['seq']} (position 2) was altered\n",
    )
    out = await asyncio.to_thread(_cli, tmp_path, "verify", "--checkpoints", str(tmp_path / "no"))
    assert out.returncode == 2 and "checkpoint_file_invalid" in out.stderr
    await store.aclose()


# -- reading the log in pages ------------------------------------------------------------


def _alter(rows: list[dict[str, Any]]) -> list[Any]:
    return [A.update().where(A.c.seq == rows[31]["seq"]).values(recipient="x")]


def _remove(rows: list[dict[str, Any]]) -> list[Any]:
    return [A.delete().where(A.c.seq == rows[29]["seq"])]


def _remove_newest(rows: list[dict[str, Any]]) -> list[Any]:
    return [A.delete().where(A.c.seq >= rows[44]["seq"])]


def _unseal(rows: list[dict[str, Any]]) -> list[Any]:
    return [A.update().where(A.c.seq == rows[40]["seq"]).values(position=None)]


def _rehash_from(rows: list[dict[str, Any]]) -> list[Any]:
    rows[25]["detail"] = dict(rows[25]["detail"], reason="rewritten")
    out: list[Any] = [
        A.update().where(A.c.seq == rows[25]["seq"]).values(detail=rows[25]["detail"])
    ]
    for h in _rehash(rows):
        out.append(
            A.update()
            .where(A.c.seq == h["seq"])
            .values(leaf_hash=h["leaf_hash"], chain_hash=h["chain_hash"])
        )
    return out


@pytest.mark.parametrize(
    "tamper", [None, _alter, _remove, _remove_newest, _unseal, _rehash_from], ids=str
)
async def test_verification_in_pages_gives_the_same_verdict(
    store: Store, tmp_path: Path, tamper: Any
) -> None:
    """Pages of 3 entries (a page boundary at every third position, and a last page that is
    full) give the verdict of one page for the whole log."""
    sealer = await _sealed_log(store, tmp_path, n=24, every=6)
    exported = tmp_path / "partner.json"
    exported.write_text(json.dumps(await export_checkpoints(store, sealer.keys)))
    for i in range(24, 48, 6):
        await _write(store, 6, i)
        await sealer.seal_now()
    await _write(store, 2, 48)  # not yet sealed
    if tamper is not None:
        await _execute(store, *tamper(await _rows(store)))
    partner = read_export(exported)
    for against in (None, partner):
        whole = await verify_log(store, sealer.keys, against)
        paged = await verify_log(store, sealer.keys, against, page=3)
        assert paged == whole
    if tamper is None:
        assert whole.line() == (
            "OK: 48 sealed entries, 8 checkpoints, 4 exported verified; 2 entries not yet sealed"
        )
    else:
        assert not whole.ok


async def test_export_in_pages_gives_the_same_proofs(store: Store, tmp_path: Path) -> None:
    sealer = await _sealed_log(store, tmp_path, n=48, every=5)  # checkpoints at 5, 10, ... 50
    whole = await export_checkpoints(store, sealer.keys)
    assert await export_checkpoints(store, sealer.keys, page=3) == whole
    assert len(whole["consistency"]) == len(whole["checkpoints"]) - 1 == 9
    from services.core.audit.merkle import consistency_proof, verify_consistency

    leaves = [bytes.fromhex(r["leaf_hash"]) for r in await _rows(store)]
    roots = {cp["tree_size"]: bytes.fromhex(cp["root_hash"]) for cp in whole["checkpoints"]}
    for p in whole["consistency"]:
        proof = [bytes.fromhex(h) for h in p["proof"]]
        assert proof == consistency_proof(p["first"], leaves[: p["second"]])
        assert verify_consistency(
            p["first"], p["second"], roots[p["first"]], roots[p["second"]], proof
        )


async def test_a_sealer_catches_up_in_pages(store: Store, tmp_path: Path) -> None:
    first = await _sealed_log(store, tmp_path, n=48, every=6)
    later = _sealer(store, tmp_path, page=3)
    cp = await later.checkpoint()  # catches up first: the stored checkpoint at 48 again
    stored = (await store.audit_checkpoints())[-1]
    assert cp is not None and later.sealed == first.sealed == 48
    assert (cp["tree_size"], cp["root_hash"], cp["chain_hash"]) == (
        stored["tree_size"],
        stored["root_hash"],
        stored["chain_hash"],
    )
    await _write(store, 5, 48)
    assert await later.seal_now() == 5  # its chain and tree continue the stored ones
    assert (await verify_log(store, later.keys, page=3)).line() == (
        "OK: 53 sealed entries, 9 checkpoints verified; 0 entries not yet sealed"
    )


async def test_verification_while_another_router_seals_between_its_pages(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries unsealed when one page is read are sealed (and checkpointed) before the next
    one: verification covers the log as it was when it started, and counts the rest as not
    yet sealed, with no false alarm."""
    await _sealed_log(store, tmp_path, n=20, every=10)
    await _write(store, 20, 20)
    other = _sealer(store, tmp_path, batch=2)
    pages = store.log_entries

    async def sealing_between_pages(upto_seq: int | None = None, *, page: int) -> Any:
        async for entry in pages(upto_seq, page=page):
            yield entry
            if entry["seq"] % page == 0:  # page boundary: the next page is read after this
                await other.seal_once()
                await other.checkpoint()

    monkeypatch.setattr(store, "log_entries", sealing_between_pages)
    verdict = await verify_log(store, other.keys, page=3)
    assert verdict.line() == (
        "OK: 20 sealed entries, 2 checkpoints verified; 20 entries not yet sealed"
    )
    assert other.sealed > 20  # the other router did seal meanwhile
    monkeypatch.undo()
    assert (await verify_log(store, other.keys, page=3)).ok


async def test_verification_concurrent_with_writing_and_sealing(
    store: Store, tmp_path: Path
) -> None:
    await _sealed_log(store, tmp_path, n=6, every=3)
    sealer = _sealer(store, tmp_path, batch=4, checkpoint_seconds=0)
    verdicts = []

    async def write_and_seal() -> None:
        for i in range(6, 60, 6):
            await _write(store, 6, i)
            await sealer.seal_now()
            await asyncio.sleep(0)

    async def verify() -> None:
        for _ in range(6):
            verdicts.append(await verify_log(store, sealer.keys, page=3))
            await asyncio.sleep(0)

    await asyncio.gather(write_and_seal(), verify())
    for v in verdicts:
        assert v.ok, v.message
    final = await verify_log(store, sealer.keys, page=3)
    assert (final.sealed, final.unsealed) == (60, 0)
