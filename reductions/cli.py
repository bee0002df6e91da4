"""The ``anna-mpc`` command line: one entry point over the three packages.

Subcommands: ``demo`` (the README's main demo), ``protocols`` and ``simulate`` (the MPC simulator),
``compile``, ``decompile`` and ``verify`` (the reductions and the claims), ``experiment`` (the
paper's experiments, docs/theory.md §6).
"""
from __future__ import annotations

import argparse
import sys

from rich.console import Console

from mpc_sim import cli as mpc_cli

__all__ = ["build_parser", "main"]


class _OneLineParser(argparse.ArgumentParser):
    """argparse's exit code (2) and message, on one line: no usage block before it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _user_errors() -> tuple[type[Exception], ...]:
    from anna.experiments.cli import UsageError as ExperimentUsageError
    return (mpc_cli.UsageError, ExperimentUsageError)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="anna-mpc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import commands, demo
    demo.register(sub)
    mpc_cli.register(sub)
    commands.register(sub)
    from . import explore
    explore.register(sub)           # --compile on the simulator's explore command
    from .decompile import cli as decompile_cli
    decompile_cli.register(sub)
    from anna.experiments import cli as experiment_cli
    experiment_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; returns the exit code."""
    args = build_parser().parse_args(argv)
    console = Console()
    from mpc_sim.compile_notice import announce_compiles
    try:
        with announce_compiles(lambda line: console.print(f"[dim]{line}[/]")):
            return int(args.func(args, console) or 0)
    except _user_errors() as exc:           # a bad command line: one line, argparse's exit code
        print(f"anna-mpc {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
