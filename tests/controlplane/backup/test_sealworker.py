"""The sealing processes (controlplane/backup/sealworker.py): what they seal opens to exactly the
snapshot's bytes, also when pages were sealed beforehand from a live file that changed since."""

from __future__ import annotations

import os
import struct

from controlplane.backup import sealworker
from controlplane.backup.crypto import MasterKey, Sealer, chunk_aad

PAGE = 4096


def _file(path, pages: list[bytes]) -> None:
    header = b"SQLite format 3\x00" + struct.pack(">H", PAGE) + b"\x00" * (PAGE - 18)
    path.write_bytes(header + b"".join(pages))


def _opened(sealer: Sealer, ids: list[bytes], lengths: list[int], sealed: list[bytes]) -> list[bytes | None]:
    out, it = [], iter(sealed)
    for cid, n in zip(ids, lengths):
        if not n:
            out.append(None)
            continue
        plain = sealer.open(next(it), chunk_aad(cid))
        assert sealer.chunk_id(plain) == cid
        out.append(plain)
    return out


def test_presealed_pages_are_used_only_for_the_same_bytes(tmp_path):
    master = MasterKey.generate()
    sealer = Sealer(master, -1)
    pages = [os.urandom(200) * 20 + bytes(PAGE - 4000) for _ in range(40)]
    live, snapshot = tmp_path / "live.sqlite3", tmp_path / "snapshot.sqlite3"
    _file(live, pages)
    changed = pages[:]
    changed[5] = b"changed after the preseal".ljust(PAGE, b".")
    changed[17] = changed[17][::-1]
    _file(snapshot, changed)

    pre = sealworker._Preseal(sealer, set(), str(live), 0, 1, PAGE)
    pre.thread.join(10)  # let it seal the whole (small) file, then stop it
    cache, cpu = pre.stop()
    assert len(cache) == 41 and cpu >= 0  # the header page and the 40 pages, each sealed once

    data = snapshot.read_bytes()
    known = {sealer.chunk_id(data[:PAGE])}  # one the repository already holds: not sealed at all
    ids, lengths, sealed = sealworker.seal_range(sealer, known, memoryview(data), PAGE, dict(cache))
    assert [sealer.chunk_id(data[o:o + PAGE]) for o in range(0, len(data), PAGE)] == ids
    opened = _opened(sealer, ids, lengths, sealed)
    assert opened[0] is None and lengths[0] == 0
    assert opened[1:] == [data[o:o + PAGE] for o in range(PAGE, len(data), PAGE)]
    reused = [i for i, s in enumerate(sealed, start=1) if s is cache.get(ids[i])]
    assert 6 not in reused and 18 not in reused and len(reused) == 38  # the changed pages sealed anew


def test_a_worker_seals_ranges_in_order_and_stops_when_its_input_closes(tmp_path):
    master = MasterKey.generate()
    pages = [bytes([i]) * PAGE for i in range(30)]
    snapshot = tmp_path / "snapshot.sqlite3"
    _file(snapshot, pages)
    pool = sealworker.Pool(2, master, -1, [])
    try:
        pool.preseal(snapshot, PAGE)  # the "live" file is the snapshot here: every page is presealed
        size = snapshot.stat().st_size
        step = 8 * PAGE
        tasks = [(pool.workers[k % 2], off, min(step, size - off)) for k, off in enumerate(range(0, size, step))]
        for worker, off, n in tasks:
            worker.submit(str(snapshot), off, n, PAGE)
        sealer, data, got = Sealer(master, -1), snapshot.read_bytes(), []
        for worker, off, n in tasks:
            id_blob, lengths, body, cpu = worker.result()
            ids = [id_blob[i:i + 32] for i in range(0, len(id_blob), 32)]
            parts, pos = [], 0
            for length in lengths:
                parts.append(body[pos:pos + length])
                pos += length
            got += _opened(sealer, ids, list(lengths), parts)
        assert got == [data[o:o + PAGE] for o in range(0, len(data), PAGE)]
        pool.finish()
        for w in pool.workers:
            assert w.proc.wait(timeout=10) == 0
    finally:
        pool.close(kill=True)
