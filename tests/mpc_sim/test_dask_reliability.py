"""A checkpoint is resumed only as written: a block file edited, truncated, swapped or deleted, a
manifest edited (its trace or any other field), truncated, or naming files outside its directory
is a CheckpointError naming the file and what is wrong, raised at once (never retried as a lost
worker). One checkpoint is written per test module; each case damages a copy of it."""
import json
import shutil

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the dask backend needs the optional extra anna-mpc[dask]")

from mpc_sim import Simulator, make_protocol  # noqa: E402
from mpc_sim.backends import CheckpointError  # noqa: E402
from mpc_sim.backends.checkpoint import MANIFEST, json_sha256  # noqa: E402
from mpc_sim.backends.dask import DaskOptions  # noqa: E402
from tests.strategies.backends import in_process_client  # noqa: E402

STOP = 2


class Stop(Exception):
    pass


def stop_after(stats):
    if stats.round == STOP:
        raise Stop


client = pytest.fixture(scope="module", name="client")(in_process_client)


@pytest.fixture(scope="module")
def run(client, tmp_path_factory):
    """A sort stopped after round 2 with its checkpoint, and the uninterrupted local result."""
    protocol = make_protocol("sort")
    config = protocol.default_config(1000, 0.5)
    data = protocol.generate_input(config, seed=1)
    root = tmp_path_factory.mktemp("ckpt") / "original"
    with pytest.raises(Stop):
        Simulator(config, backend="dask", client=client, dask=DaskOptions(blocks=3), checkpoint=root,
                  on_round=stop_after).run(protocol, data, seed=2)
    local = Simulator(config).run(protocol, data, seed=2)
    return protocol, config, data, root, local


def resume(client, run, directory):
    protocol, config, data, _, _ = run
    return Simulator(config, backend="dask", client=client, dask=DaskOptions(blocks=3),
                     resume=directory).run(protocol, data, seed=2)


def copy(run, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(run[3], target)
    return target, json.loads((target / MANIFEST).read_text())


def rewrite(directory, manifest, *, rehash):
    """Write ``manifest`` back, recomputing its digests when ``rehash`` (a forger's edit)."""
    if rehash:
        manifest["trace_sha256"] = json_sha256(manifest["trace"])
        manifest["manifest_sha256"] = json_sha256({k: v for k, v in manifest.items() if k != "manifest_sha256"})
    (directory / MANIFEST).write_text(json.dumps(manifest))


def test_an_intact_checkpoint_resumes_to_the_uninterrupted_result(client, run, tmp_path):
    directory, manifest = copy(run, tmp_path)
    assert len(manifest["sha256"]) == 3 and len(manifest["manifest_sha256"]) == 64
    result = resume(client, run, directory)
    assert result.trace.counts() == run[4].trace.counts() and np.array_equal(result.output, run[4].output)
    assert result.trace.retries == ()


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def damage_block(kind, directory, manifest):
    first, second = (directory / name for name in manifest["files"][:2])
    if kind == "edited":
        flip_a_byte(first)
    elif kind == "truncated":
        first.write_bytes(first.read_bytes()[:-10])
    elif kind == "swapped":
        a, b = first.read_bytes(), second.read_bytes()
        first.write_bytes(b)
        second.write_bytes(a)
    elif kind == "deleted":
        first.unlink()
    return first


@pytest.mark.parametrize("kind, says", [("edited", "does not match the sha256"), ("truncated", "bytes, the manifest says"),
                                        ("swapped", "(does not match the sha256|bytes, the manifest says)"),
                                        ("deleted", "missing")])
def test_a_damaged_block_file_is_a_checkpoint_error_naming_it(client, run, tmp_path, kind, says):
    directory, manifest = copy(run, tmp_path)
    damaged = damage_block(kind, directory, manifest)
    with pytest.raises(CheckpointError, match=says) as info:
        resume(client, run, directory)
    assert damaged.name in str(info.value)


def test_a_block_of_the_same_size_edited_is_caught_where_it_is_read_without_a_retry(client, run, tmp_path):
    directory, manifest = copy(run, tmp_path)
    flip_a_byte(directory / manifest["files"][2])
    with pytest.raises(CheckpointError, match=r"block-0002\.npz does not match the sha256") as info:
        resume(client, run, directory)
    assert "lost" not in str(info.value)


def edit_trace(manifest):
    manifest["trace"]["rounds"][0]["max_memory"] += 1


def edit_bounds(manifest):
    manifest["bounds"][1] += 1


def edit_round(manifest):
    manifest["round"] = 1


@pytest.mark.parametrize("edit, says", [(edit_trace, "'trace' does not match its trace_sha256"),
                                        (edit_bounds, "does not match its manifest_sha256"),
                                        (edit_round, "does not match its manifest_sha256")])
def test_an_edited_manifest_is_refused(client, run, tmp_path, edit, says):
    directory, manifest = copy(run, tmp_path)
    edit(manifest)
    rewrite(directory, manifest, rehash=False)
    with pytest.raises(CheckpointError, match=says) as info:
        resume(client, run, directory)
    assert MANIFEST in str(info.value)


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.npz", "round-000002/../../x.npz",
                                  "round-000002/block-0001.npz"])
def test_block_names_outside_the_directory_or_of_another_block_are_refused_even_when_rehashed(client, run, tmp_path,
                                                                                              name):
    directory, manifest = copy(run, tmp_path)
    manifest["files"][0] = name
    rewrite(directory, manifest, rehash=True)
    with pytest.raises(CheckpointError, match="is not block 0 of round 2 inside"):
        resume(client, run, directory)


@pytest.mark.parametrize("text, says", [("{\"format\": ", "cannot read the checkpoint manifest"),
                                        ("[1, 2]", "must be a JSON object"),
                                        ("{\"format\": \"anna-mpc/checkpoint/1\"}", "is not an anna-mpc checkpoint")])
def test_a_truncated_or_misshaped_manifest_is_refused(client, run, tmp_path, text, says):
    directory, _ = copy(run, tmp_path)
    (directory / MANIFEST).write_text(text)
    with pytest.raises(CheckpointError, match=says):
        resume(client, run, directory)


@pytest.mark.parametrize("field, value, says", [("round", "2", "'round' must be an integer"),
                                                ("sha256", [], "'sha256' must list one str per block file"),
                                                ("bounds", [0, 5], "'bounds' must be 4 non-decreasing"),
                                                ("run", 3, "'run' must be a JSON object")])
def test_rehashed_manifest_fields_of_the_wrong_type_are_refused_by_name(client, run, tmp_path, field, value, says):
    directory, manifest = copy(run, tmp_path)
    manifest[field] = value
    rewrite(directory, manifest, rehash=True)
    with pytest.raises(CheckpointError, match=says):
        resume(client, run, directory)


# --- the canonical trace: byte-identical for the same seed on every backend ---------------------------------
@pytest.mark.parametrize("name", ["sort", "prefix-sum", "aggregate", "broadcast"])
def test_the_canonical_trace_json_is_byte_identical_for_the_same_seed_on_every_backend(client, name):
    protocol = make_protocol(name)
    config = protocol.default_config(600, 0.5)
    data = protocol.generate_input(config, seed=4)
    texts = {Simulator(config).run(protocol, data, seed=4).trace.to_json(timings=False) for _ in range(2)}
    for blocks in (1, 3):
        result = Simulator(config, backend="dask", client=client, dask=DaskOptions(blocks=blocks)).run(protocol, data,
                                                                                                      seed=4)
        texts.add(result.trace.to_json(timings=False))
    assert len(texts) == 1
    text = texts.pop()
    assert "wall_time" not in text and "retries" not in text
    other = Simulator(config).run(protocol, data, seed=5).trace.to_json(timings=False)
    assert other != text and other.replace('"seed": 5', '"seed": 4') != text or name != "sort"   # sort's samples


def test_a_resumed_run_has_the_canonical_trace_of_an_uninterrupted_one(client, run, tmp_path):
    directory, _ = copy(run, tmp_path)
    assert resume(client, run, directory).trace.to_json(timings=False) == run[4].trace.to_json(timings=False)


def test_a_checkpoint_that_cannot_be_written_is_a_checkpoint_error_not_a_lost_worker(client, run, tmp_path):
    protocol, config, data, _, _ = run
    (tmp_path / "a-file").write_text("")
    with pytest.raises(CheckpointError, match="cannot write checkpoint block .*a-file"):
        Simulator(config, backend="dask", client=client, checkpoint=tmp_path / "a-file" / "ckpt").run(protocol, data)
