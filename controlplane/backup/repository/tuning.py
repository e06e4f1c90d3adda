"""How a repository's work is spread over threads and processes, and the sizes it works in.

Read at call time (tuning.X), so a test can change one for a run.
"""

from __future__ import annotations

from .. import sealworker

CHUNK_LIST_IDS = 2048  # ids per chunk-list blob (64 KiB)
REPACK_UNUSED_RATIO = 0.4  # prune repacks a pack when at least this share of its bytes is unused
UPLOAD_WORKERS = 2
SEAL_WORKERS = 2  # sealing threads (hashing, zstd and uploads release the GIL; the main thread reads)
SEAL_BATCH = 1 << 20  # bytes of the snapshot per unit of work of a sealing thread
# SQLite databases at least this big are sealed by SEAL_PROCESSES processes (see sealworker.py), in
# ranges of SEAL_RANGE bytes; smaller ones (and pg_dump files, cut by content here) by threads
SEAL_PROCESS_MIN_BYTES = 32 << 20
SEAL_PROCESSES = 2
SEAL_RANGE = sealworker.SEAL_RANGE
# an L1 check or a restore reading at least this many bytes of packs opens them in SEAL_PROCESSES
# processes too (each authenticates, decompresses, hashes and writes the chunks of a pack)
OPEN_PROCESS_MIN_BYTES = 32 << 20
