"""``yuflow worker``: mounted by the CLI from its ``yuflow.commands`` entry point (pyproject.toml), so
that pipeline/ does not import the agents."""

from __future__ import annotations


def worker(log_level: str = "info") -> None:
    """Run a Faust worker with every agent until interrupted."""
    from agents.app import run_worker  # the Faust app is built only for this command

    run_worker(log_level)
