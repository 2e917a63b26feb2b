"""decide_batch: polars, pandas and pyarrow inputs decide what the CLI
decides for the same customers; the CLI's own --batch twin agrees."""

from __future__ import annotations

import json

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import nextbest
from nextbest import errors

from conftest import NOW, RETAIL, run_cli

COLUMNS = [
    "customer_id",
    "rank",
    "action",
    "group",
    "issue",
    "treatment",
    "priority",
    "propensity",
    "context_weight",
    "value",
    "lever",
]


@pytest.fixture(scope="module")
def engine() -> nextbest.Engine:
    return nextbest.Engine(RETAIL)


def cli_decisions(cli, population, channel: str) -> pl.DataFrame:
    """`nextbest decide` on every customer of the population, as rows."""
    requests = "".join(
        json.dumps(
            {"customer_id": c["customer_id"], "channel": channel, "context": c["context"], "now": NOW}
        )
        + "\n"
        for c in population
    )
    lines = run_cli(cli, "decide", RETAIL, stdin=requests).splitlines()
    assert len(lines) == len(population)
    rows = []
    for c, line in zip(population, lines):
        d = json.loads(line)
        assert "error" not in d, d
        rows += [{"customer_id": c["customer_id"], **a} for a in d["actions"]]
    return pl.DataFrame(rows).select(COLUMNS).with_columns(pl.col("rank").cast(pl.UInt32))


@pytest.fixture(scope="module")
def expected(cli, population):
    return {ch: cli_decisions(cli, population, ch) for ch in ["call_center", "email"]}


def test_a_polars_frame_decides_as_the_cli(engine, customers, expected):
    got = engine.decide_batch(customers, "call_center", now=NOW)
    assert got.columns == COLUMNS
    assert got.height == expected["call_center"].height > len(customers)
    assert got.equals(expected["call_center"])


def test_a_pandas_frame_decides_as_the_cli(engine, population, expected):
    # Built the way pandas users build it: records, lists in object columns.
    frame = pd.DataFrame.from_records(
        [{"customer_id": c["customer_id"], **c["context"]} for c in population]
    )
    got = engine.decide_batch(frame, "email", now=NOW)
    assert got.equals(expected["email"])


def test_a_pyarrow_table_or_reader_decides_as_the_cli(engine, population, expected):
    table = pa.Table.from_pylist(
        [{"customer_id": c["customer_id"], **c["context"]} for c in population]
    )
    assert engine.decide_batch(table, "call_center", now=NOW).equals(expected["call_center"])
    # Many small batches, decided in smaller chunks still, on several threads.
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=300))
    got = engine.decide_batch(reader, "call_center", now=NOW, chunk_rows=128, threads=3)
    assert got.equals(expected["call_center"])


def test_pyarrows_export_to_c_is_read_too(engine, customers, expected):
    class OnlyExportToC:
        """What an older pyarrow reader offers: no PyCapsule protocol."""

        def __init__(self, reader):
            self._reader = reader

        def _export_to_c(self, address):
            self._reader._export_to_c(address)

    reader = customers.to_arrow().to_reader()
    got = engine.decide_batch(OnlyExportToC(reader), "email", now=NOW)
    assert got.equals(expected["email"])


def test_datetimes_categoricals_and_threads_change_nothing(engine, customers, expected):
    typed = customers.with_columns(
        pl.col("last_contact").str.to_datetime(time_zone="UTC"),
        pl.col("segment").cast(pl.Categorical),
        pl.col("age").cast(pl.Int16),
    )
    for threads in (1, 2):
        got = engine.decide_batch(typed, "call_center", now=NOW, threads=threads, chunk_rows=333)
        assert got.equals(expected["call_center"])


def test_limit_and_customer_id_column(engine, customers, expected):
    renamed = customers.rename({"customer_id": "who"})
    got = engine.decide_batch(renamed, "call_center", customer_id="who", limit=1, now=NOW)
    firsts = expected["call_center"].filter(pl.col("rank") == 1)
    assert got.equals(firsts)


def test_a_bad_row_raises_naming_it(engine, customers):
    bad = customers.with_columns(
        pl.when(pl.int_range(pl.len()) == 1234)
        .then(pl.lit("gold"))
        .otherwise(pl.col("segment"))
        .alias("segment")
    )
    with pytest.raises(errors.BatchError) as caught:
        engine.decide_batch(bad, "web", now=NOW)
    e = caught.value
    assert (e.row, e.customer_id, e.column) == (1234, customers["customer_id"][1234], "segment")
    assert "not one of the allowed values" in str(e)

    with pytest.raises(errors.BatchError) as caught:
        engine.decide_batch(customers.drop("customer_id"), "web")
    assert caught.value.column == "customer_id"
    with pytest.raises(errors.BatchError, match="cannot hold attribute `age`"):
        engine.decide_batch(customers.with_columns(pl.col("age").cast(pl.String)), "web")
    with pytest.raises(errors.ChannelError):
        engine.decide_batch(customers, "fax")
    with pytest.raises(TypeError, match="polars or pandas DataFrame"):
        engine.decide_batch([{"customer_id": "C1"}], "web")


def test_the_cli_twin_writes_the_same_decisions(cli, engine, customers, tmp_path):
    source = tmp_path / "customers.parquet"
    target = tmp_path / "decisions.parquet"
    customers.write_parquet(source)
    run_cli(
        cli, "decide", RETAIL, "--batch", source, "-o", target, "--channel", "email", "--now", NOW
    )
    from_cli = pl.read_parquet(target)
    assert from_cli.equals(engine.decide_batch(customers, "email", now=NOW))
