"""Checkpoints: the cluster's state after a round, as ``.npz`` arrays and a JSON manifest (no pickle).

Layout of a checkpoint directory::

    checkpoint.json              the manifest: format, run identity, last complete round, block
                                 bounds, the block files of that round with their sizes and
                                 sha256 digests, the trace so far (rounds, violations, retries,
                                 peaks) with its sha256, and the sha256 of the whole manifest
    round-000003/block-0000.npz  block 0 after round 3: kept memories (state_words,
                                 state_offsets) and the inbox delivered for round 4 (inbox_src,
                                 inbox_dst, inbox_offsets, inbox_words, inbox_machine_offsets)

Every file is written to a temporary name in its directory, flushed to disk and renamed over
its final name, so a reader sees a whole file or none. Block files are written first (by the
workers holding the blocks); the manifest, written last by the driver, is the commit: the last
complete round is the one it names, whatever else a crash left in the directory. After a
commit the files of other rounds are removed.

Integrity. Nothing read back is trusted: the manifest's own digest and its trace's digest are
checked when it is read, its block file names must be exactly those of its round (inside the
checkpoint directory), and every block file is checked against its size and sha256 before it is
loaded. A file edited, truncated, swapped with another or missing is a :class:`CheckpointError`
naming the file and what is wrong (never retried as a lost worker).

Examples
--------
>>> import tempfile
>>> from pathlib import Path
>>> from mpc_sim import ClusterState
>>> root = Path(tempfile.mkdtemp())
>>> store = CheckpointStore(root)
>>> store.manifest() is None
True
>>> state = ClusterState.from_list([np.array([1, 2]), np.array([3])])
>>> path = store.block_path(0, 0)
>>> size, digest = save_block(str(path), (state, None))
>>> store.commit({"round": 0, "files": [str(path.relative_to(root))], "bytes": [size], "sha256": [digest]})
>>> loaded, inbox = load_block(str(path), size=size, sha256=digest)
>>> loaded.equals(state), inbox is None, store.manifest()["round"]
(True, True, 0)
>>> _ = path.write_bytes(path.read_bytes()[:-1])      # a truncated block is caught, by name
>>> load_block(str(path), size=size, sha256=digest)
Traceback (most recent call last):
...
mpc_sim.backends.base.CheckpointError: checkpoint block ... has ... bytes, the manifest says ... (truncated or replaced)
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import zipfile

import numpy as np

from ..errors import MPCError
from ..state import ClusterState, Delivery, MessageBatch
from .base import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "MANIFEST", "CheckpointStore", "save_block", "load_block", "write_atomically",
           "file_sha256", "json_sha256"]

CHECKPOINT_FORMAT = "anna-mpc/checkpoint/2"          # /2: sha256 digests of blocks, trace and manifest
MANIFEST = "checkpoint.json"
_INBOX = ("inbox_src", "inbox_dst", "inbox_offsets", "inbox_words", "inbox_machine_offsets")


def write_atomically(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, flush it to disk, rename it
    over ``path``: readers see the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex), read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def json_sha256(value: object) -> str:
    """The sha256 of a JSON value in canonical form (sorted keys, no spaces): equal for equal values."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_block(path: str, held: tuple[ClusterState, Delivery | None]) -> tuple[int, str]:
    """Write one block's kept memories and inbox (``None``: nothing delivered) to ``path``
    (atomically); returns its size in bytes and its sha256. Runs on the worker holding the block."""
    state, delivery = held
    arrays = {"state_words": state.words, "state_offsets": state.offsets}
    if delivery is not None:
        m = delivery.messages
        arrays.update(zip(_INBOX, (m.src, m.dst, m.offsets, m.words, delivery.machine_offsets)))
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, lambda f: np.savez(f, **arrays))
        return target.stat().st_size, file_sha256(target)
    except OSError as exc:              # a full or read-only disk: no retry writes it better
        raise CheckpointError(f"cannot write checkpoint block {path}: {type(exc).__name__}: {exc}") from exc


def load_block(path: str, *, size: int | None = None, sha256: str | None = None) -> tuple[ClusterState, Delivery | None]:
    """Read a block written by :func:`save_block` (arrays only: pickled objects are refused),
    first checked against the ``size`` and ``sha256`` its manifest recorded.

    Raises
    ------
    CheckpointError
        Naming the file: missing, another size or digest than recorded, unreadable arrays.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint block {path} is missing")
    if size is not None and os.path.getsize(path) != size:
        raise CheckpointError(f"checkpoint block {path} has {os.path.getsize(path)} bytes, the manifest says "
                              f"{size} (truncated or replaced)")
    if sha256 is not None and file_sha256(path) != sha256:
        raise CheckpointError(f"checkpoint block {path} does not match the sha256 its manifest recorded "
                              f"(edited, or swapped with another block)")
    try:
        with np.load(path, allow_pickle=False) as z:
            state = ClusterState(z["state_words"], z["state_offsets"])
            if "inbox_src" not in z.files:
                return state, None
            src, dst, offsets, words, machine_offsets = (z[name] for name in _INBOX)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, MPCError) as exc:
        raise CheckpointError(f"cannot read checkpoint block {path}: {type(exc).__name__}: {exc}") from exc
    return state, Delivery(MessageBatch(src, dst, offsets, words), machine_offsets)


class CheckpointStore:
    """A checkpoint directory: block file names, the manifest (read and committed), pruning."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST

    def block_path(self, round: int, block: int) -> Path:
        return self.root / f"round-{round:06d}" / f"block-{block:04d}.npz"

    def manifest(self) -> dict | None:
        """The committed manifest, or None if the directory holds no checkpoint. Its format, its
        own sha256 and its trace's sha256 are checked, and the types of its fields."""
        if not self.manifest_path.exists():
            return None
        where = self.manifest_path
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the checkpoint manifest {where}: {exc}") from exc
        if not isinstance(data, dict):
            raise CheckpointError(f"{where}: the manifest must be a JSON object, got {type(data).__name__}")
        if data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{where} is not an anna-mpc checkpoint (format "
                                  f"{data.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
        body = {k: v for k, v in data.items() if k != "manifest_sha256"}
        if "trace" in data and data.get("trace_sha256") != json_sha256(data["trace"]):
            raise CheckpointError(f"{where}: field 'trace' does not match its trace_sha256 (the trace was edited)")
        if data.get("manifest_sha256") != json_sha256(body):
            raise CheckpointError(f"{where}: the manifest does not match its manifest_sha256 (a field was edited)")
        _check_fields(where, data)
        return data

    def commit(self, manifest: dict) -> None:
        """Write the manifest atomically (this makes its round the last complete one), then
        remove the files of every other round. The trace's and the manifest's sha256 are added."""
        self.root.mkdir(parents=True, exist_ok=True)
        body = {"format": CHECKPOINT_FORMAT, **manifest}
        if "trace" in body:
            body["trace_sha256"] = json_sha256(body["trace"])
        text = json.dumps({**body, "manifest_sha256": json_sha256(body)}, indent=1)
        write_atomically(self.manifest_path, lambda f: f.write(text.encode()))
        keep = f"round-{int(manifest['round']):06d}"
        for path in self.root.glob("round-*"):
            if path.is_dir() and path.name != keep:
                shutil.rmtree(path, ignore_errors=True)

    def files(self, manifest: dict) -> list[tuple[Path, int, str]]:
        """The block files a manifest names, with their recorded sizes and sha256: checked to be
        the files of its round, inside this directory, and to exist with the recorded size (their
        digests are checked by :func:`load_block`, where they are read)."""
        r, names = int(manifest["round"]), manifest["files"]
        blocks = []
        for b, name in enumerate(names):
            path = (self.root / name).resolve()
            if not path.is_relative_to(self.root) or path != self.block_path(r, b):
                raise CheckpointError(f"{self.manifest_path}: block file {name!r} is not block {b} of round {r} "
                                      f"inside {self.root} (expected {self.block_path(r, b).relative_to(self.root)})")
            if not path.is_file():
                raise CheckpointError(f"the checkpoint of round {r} in {self.root} is missing block file {path}")
            size = int(manifest["bytes"][b])
            if path.stat().st_size != size:
                raise CheckpointError(f"checkpoint block {path} has {path.stat().st_size} bytes, the manifest says "
                                      f"{size} (truncated or replaced)")
            blocks.append((path, size, manifest["sha256"][b]))
        return blocks


def _check_fields(where: Path, data: dict) -> None:
    """The manifest's fields have the types and ranges a resume needs (CheckpointError naming the field)."""
    def bad(field: str, why: str):
        raise CheckpointError(f"{where}: field {field!r} {why}")

    r = data.get("round")
    if isinstance(r, bool) or not isinstance(r, int) or r < 0:
        bad("round", f"must be an integer >= 0, got {r!r}")
    files = data.get("files")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        bad("files", "must be a list of file names")
    for key, kind in (("bytes", int), ("sha256", str)):
        values = data.get(key)
        if not isinstance(values, list) or len(values) != len(files) or \
                not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
            bad(key, f"must list one {kind.__name__} per block file ({len(files)})")
    if "bounds" in data:
        bounds = data["bounds"]
        if not isinstance(bounds, list) or len(bounds) != len(files) + 1 or \
                not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) or \
                bounds[0] != 0 or any(a > b for a, b in zip(bounds, bounds[1:])):
            bad("bounds", f"must be {len(files) + 1} non-decreasing integers from 0, got {bounds!r}")
    for key in ("run", "trace"):
        if key in data and not isinstance(data[key], dict):
            bad(key, "must be a JSON object")
    if "trace" in data:
        for key in ("rounds", "violations", "retries"):
            if not isinstance(data["trace"].get(key), list):
                bad(f"trace.{key}", "must be a list")
        if not isinstance(data["trace"].get("peaks", []), list):     # optional: older checkpoints have none
            bad("trace.peaks", "must be a list")
        if len(data["trace"]["rounds"]) != r:
            bad("trace.rounds", f"holds {len(data['trace']['rounds'])} rounds, the checkpoint is of round {r}")
