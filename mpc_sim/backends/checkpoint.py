"""Checkpoints: the cluster's state after a round, as ``.npz`` arrays and a JSON manifest (no pickle).

Layout of a checkpoint directory::

    checkpoint.json              the manifest: format, run identity, last complete round, block
                                 bounds, the block files of that round, the trace so far
    round-000003/block-0000.npz  block 0 after round 3: kept memories (state_words,
                                 state_offsets) and the inbox delivered for round 4 (inbox_src,
                                 inbox_dst, inbox_offsets, inbox_words, inbox_machine_offsets)

Every file is written to a temporary name in its directory, flushed to disk and renamed over
its final name, so a reader sees a whole file or none. Block files are written first (by the
workers holding the blocks); the manifest, written last by the driver, is the commit: the last
complete round is the one it names, whatever else a crash left in the directory. After a
commit the files of other rounds are removed.

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
>>> save_block(str(path), (state, None)) > 0
True
>>> store.commit({"round": 0, "files": [str(path.relative_to(root))]})
>>> loaded, inbox = load_block(str(path))
>>> loaded.equals(state), inbox is None, store.manifest()["round"]
(True, True, 0)
"""
from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np

from ..state import ClusterState, Delivery, MessageBatch
from .base import CheckpointError

__all__ = ["CHECKPOINT_FORMAT", "MANIFEST", "CheckpointStore", "save_block", "load_block", "write_atomically"]

CHECKPOINT_FORMAT = "anna-mpc/checkpoint/1"
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


def save_block(path: str, held: tuple[ClusterState, Delivery | None]) -> int:
    """Write one block's kept memories and inbox (``None``: nothing delivered) to ``path``
    (atomically); returns its size in bytes. Runs on the worker holding the block."""
    state, delivery = held
    arrays = {"state_words": state.words, "state_offsets": state.offsets}
    if delivery is not None:
        m = delivery.messages
        arrays.update(zip(_INBOX, (m.src, m.dst, m.offsets, m.words, delivery.machine_offsets)))
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(target, lambda f: np.savez(f, **arrays))
    return target.stat().st_size


def load_block(path: str) -> tuple[ClusterState, Delivery | None]:
    """Read a block written by :func:`save_block` (arrays only: pickled objects are refused)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            state = ClusterState(z["state_words"], z["state_offsets"])
            if "inbox_src" not in z.files:
                return state, None
            src, dst, offsets, words, machine_offsets = (z[name] for name in _INBOX)
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot read checkpoint block {path}: {exc}") from exc
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
        """The committed manifest, or None if the directory holds no checkpoint."""
        if not self.manifest_path.exists():
            return None
        try:
            data = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read the checkpoint manifest {self.manifest_path}: {exc}") from exc
        if data.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"{self.manifest_path} is not an anna-mpc checkpoint (format "
                                  f"{data.get('format')!r}, expected {CHECKPOINT_FORMAT!r})")
        return data

    def commit(self, manifest: dict) -> None:
        """Write the manifest atomically (this makes its round the last complete one), then
        remove the files of every other round."""
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": CHECKPOINT_FORMAT, **manifest}, indent=1)
        write_atomically(self.manifest_path, lambda f: f.write(text.encode()))
        keep = f"round-{int(manifest['round']):06d}"
        for path in self.root.glob("round-*"):
            if path.is_dir() and path.name != keep:
                shutil.rmtree(path, ignore_errors=True)

    def files(self, manifest: dict) -> list[Path]:
        """The block files a manifest names, checked to exist."""
        paths = [self.root / name for name in manifest["files"]]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise CheckpointError(f"the checkpoint of round {manifest['round']} in {self.root} is missing "
                                  f"{len(missing)} block file(s), e.g. {missing[0]}")
        return paths
