"""The mpc_sim commands of the ``anna-mpc`` CLI: the protocol listing and ``simulate``."""
from mpc_sim.protocols import CATALOG, protocol_class
from reductions.cli import main as cli_main


def test_protocols_lists_every_catalog_protocol_with_its_summary_bounds_and_dask_style(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")                        # one table row per protocol
    assert cli_main(["protocols", "--eps", "0.5"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in CATALOG:
        cls = protocol_class(name)
        assert cls.summary, f"{name} has no one-line summary"
        assert name in out and cls.summary in out
    assert "block batch" in out and "per machine" in out        # sort runs its batch step on Dask blocks
    assert "R = S + 3 + 2 J" in out and "[popcount(k') > 1]" in out.replace("\u2502", "")  # khop's formula
    assert "R = start + P L" in out                              # connectivity's


def test_simulate_runs_a_protocol_and_verifies_its_output(capsys):
    assert cli_main(["simulate", "sort", "--n", "2000", "--eps", "0.5", "--seed", "3", "--no-table"]) == 0
    out = capsys.readouterr().out
    assert "sort" in out and "verified" in out.lower()


def test_simulate_refuses_dask_timeouts_without_the_dask_backend(capsys):
    status = cli_main(["simulate", "broadcast", "--n", "64", "--eps", "0.5", "--round-timeout", "5"])
    assert status == 2 and "--round-timeout need --backend dask" in capsys.readouterr().err
