"""Shared fixtures: the repository's rule sets and population, and the
`nextbest` command-line tool the results are compared with.

The CLI is found at $NEXTBEST_BIN, else target/release/nextbest (what
.ci/run builds before it runs these tests). A missing CLI fails the tests
that need it: nothing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[3]
RETAIL = REPO / "rules" / "retail_bank"
NOW = "2026-11-23T10:00:00Z"


def _cli_path() -> Path:
    return Path(os.environ.get("NEXTBEST_BIN", REPO / "target" / "release" / "nextbest"))


@pytest.fixture(scope="session")
def cli() -> Path:
    path = _cli_path()
    assert path.is_file(), (
        f"the nextbest CLI is not at {path}: build it with "
        "`cargo build --release -p nextbest-cli` or set NEXTBEST_BIN"
    )
    return path


def run_cli(cli: Path, *args: Any, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(cli), *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, f"nextbest {' '.join(map(str, args))} failed:\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="session")
def population() -> List[Dict[str, Any]]:
    """rules/retail_bank/customers.jsonl, one dict per customer."""
    with open(RETAIL / "customers.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="session")
def customers() -> pl.DataFrame:
    """The population as a polars frame: customer_id, then a column per
    context attribute."""
    return (
        pl.read_ndjson(RETAIL / "customers.jsonl")
        .drop("channel")
        .unnest("context")
    )
