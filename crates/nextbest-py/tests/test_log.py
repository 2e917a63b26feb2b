"""Reading decision logs: read_log, read_candidates, read_outcomes and
funnel on logs `nextbest simulate --log` writes (plain and zstd), and
evaluate giving the figures `nextbest evaluate` gives."""

from __future__ import annotations

import json

import polars as pl
import pytest

import nextbest
from nextbest import errors

from conftest import NOW, RETAIL, run_cli


@pytest.fixture(scope="module")
def simulated(cli, tmp_path_factory):
    """A simulation's report and its log, written plain and compressed."""
    d = tmp_path_factory.mktemp("simulated")
    plain, packed = d / "decisions.jsonl", d / "decisions.jsonl.zst"
    report = json.loads(run_cli(cli, "simulate", RETAIL, "--log", plain, "--json"))
    run_cli(cli, "simulate", RETAIL, "--log", packed, "--json")
    assert packed.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"  # zstd frames
    return report, plain, packed


def test_read_log_has_a_row_per_decision_with_flat_columns(simulated, population):
    report, plain, _ = simulated
    log = nextbest.read_log(plain)
    assert log.height == len(population)
    assert log["customer_id"].to_list() == [c["customer_id"] for c in population]
    assert isinstance(log.schema["timestamp"], pl.Datetime)
    assert log.schema["timestamp"].time_zone == "UTC"
    assert log["timestamp"].dt.to_string("%Y-%m-%dT%H:%M:%SZ").unique().to_list() == [NOW]
    assert log["ruleset"].unique().to_list() == ["retail_bank"]
    assert log.schema["actions"] == pl.List(pl.String)
    assert log["first_action"].to_list() == [a[0] if a else None for a in log["actions"]]
    # The context, flattened, one column per attribute; sensitive ones masked.
    assert log["context.age"].to_list() == [c["context"].get("age") for c in population]
    assert log.schema["context.products"] == pl.List(pl.String)
    assert set(log["context.email"].unique().to_list()) == {"***"}
    assert log["masked"][0].to_list() == ["email", "phone", "postcode"]
    wins = log.explode("actions")["actions"].value_counts()
    chosen = dict(zip(wins["actions"].to_list(), wins["count"].to_list()))
    assert chosen == {a: w["chosen"] for a, w in report["wins"].items()}


def test_a_zstd_log_reads_as_the_plain_one(simulated):
    _, plain, packed = simulated
    volatile = ["decision_id", "elapsed_ns"]
    a = nextbest.read_log(plain).drop(volatile)
    b = nextbest.read_log(packed).drop(volatile)
    assert a.equals(b)
    ca = nextbest.read_candidates(plain).drop("decision_id")
    cb = nextbest.read_candidates(packed).drop("decision_id")
    assert ca.equals(cb)


def test_the_funnel_of_the_log_is_the_simulations(simulated):
    report, plain, packed = simulated
    f = report["funnel"]
    got = nextbest.funnel(plain)
    assert got.columns == ["stage", "removed", "remaining", "share"]
    assert got["stage"].to_list() == list(nextbest.STAGES) + ["arbitration"]
    removed = dict(zip(got["stage"].to_list(), got["removed"].to_list()))
    assert {s: removed[s] for s in f["removed"]} == f["removed"]
    assert removed["arbitration"] == f["ranked"] - f["chosen"]
    assert got["remaining"][-1] == f["chosen"]
    assert got["remaining"][len(nextbest.STAGES) - 1] == f["ranked"]
    assert sum(got["removed"]) == f["candidates"] - f["chosen"]
    assert got.equals(nextbest.funnel(packed))


def test_candidates_list_every_offered_action_once(simulated):
    _, plain, _ = simulated
    log = nextbest.read_log(plain)
    cands = nextbest.read_candidates(plain)
    per_decision = cands.group_by("decision_id").agg(
        pl.len().alias("n"), pl.col("chosen").sum().alias("chosen")
    )
    assert per_decision["n"].n_unique() == 1  # every action of the channel, each time
    chosen = log.select("decision_id", pl.col("actions").list.len().alias("k"))
    joined = per_decision.join(chosen, on="decision_id")
    assert joined.height == log.height
    assert (joined["chosen"] == joined["k"]).all()
    ranked = cands.filter(pl.col("stage").is_null())
    assert ranked["priority"].null_count() == 0 and ranked["rank"].min() == 1
    removed = cands.filter(pl.col("stage").is_not_null())
    assert set(removed["stage"].unique().to_list()) <= set(nextbest.STAGES)
    assert removed["priority"].null_count() == removed.height


def test_an_engines_own_log_with_outcomes(tmp_path):
    path = tmp_path / "engine.jsonl"
    engine = nextbest.Engine(RETAIL, decision_log={"path": path, "candidates": "all"})
    ids = []
    for i in range(10):
        d = engine.decide(f"C{i}", "web", {"age": 30 + i, "income": 40_000.0 + i}, now=NOW)
        ids.append(d["decision_id"])
    engine.record_outcome("C3", d["actions"][0]["action"], "web", "clicked", decision_id=ids[3])
    engine.flush()
    log = nextbest.read_log(path)
    assert log["decision_id"].to_list() == ids
    assert log["context.age"].to_list() == list(range(30, 40))
    assert log["detail"].unique().to_list() == ["all"]
    outcomes = nextbest.read_outcomes(path)
    assert outcomes.select("decision_id", "customer_id", "outcome").rows() == [
        (ids[3], "C3", "clicked")
    ]
    cands = nextbest.read_candidates(path)
    removed = cands.filter(pl.col("stage").is_not_null())
    assert removed["condition"].null_count() < removed.height  # "all" logs conditions
    funnel = nextbest.funnel(path)
    assert funnel["remaining"][-1] == log["actions"].list.len().sum()


def test_a_log_without_removals_has_no_funnel(tmp_path):
    path = tmp_path / "ranked.jsonl"
    engine = nextbest.Engine(RETAIL, decision_log={"path": path, "candidates": "ranked"})
    engine.decide("C1", "web", {"age": 30}, now=NOW)
    engine.flush()
    with pytest.raises(errors.NextbestError, match="leaves removed candidates out"):
        nextbest.funnel(path)


def test_a_damaged_line_is_a_warning_not_an_error(simulated, tmp_path):
    _, plain, _ = simulated
    damaged = tmp_path / "damaged.jsonl"
    lines = plain.read_text().splitlines(keepends=True)
    damaged.write_text("".join(lines[:5]) + "{not json\n" + "".join(lines[5:10]))
    with pytest.warns(UserWarning, match="damaged.jsonl:6"):
        log = nextbest.read_log(damaged)
    assert log.height == 10
    with pytest.raises(errors.FileError):
        nextbest.read_log(tmp_path / "missing.jsonl")


def test_evaluate_gives_the_clis_figures(cli, tmp_path):
    log = tmp_path / "explore.jsonl"
    run_cli(
        cli, "simulate", RETAIL, "--learn", "--policies", "epsilon_greedy",
        "--rounds", "3", "--log", log, "--plot", tmp_path / "learning.svg",
    )
    expected = json.loads(run_cli(cli, "evaluate", log, "--rules", RETAIL, "--json"))
    got = nextbest.evaluate(log, RETAIL)
    assert got == expected
    assert got["used"] > 0 and got["ips"] is not None
    clicks = nextbest.evaluate([log], RETAIL, success=["accepted", "clicked"])
    expected = json.loads(
        run_cli(cli, "evaluate", log, "--rules", RETAIL, "--success", "accepted,clicked", "--json")
    )
    assert clicks == expected
