"""Reading decision logs: read_log, read_candidates, read_outcomes and
funnel on logs `nextbest simulate --log` writes (plain and zstd); evaluate
and impact giving the figures `nextbest evaluate` and `nextbest impact`
give."""

from __future__ import annotations

import json
import random
import shutil

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
    assert log["first_action"].to_list() == [a[0] if a else None for a in log["actions"].to_list()]
    # The context, flattened, one column per attribute; sensitive ones masked.
    assert log["context.age"].to_list() == [c["context"].get("age") for c in population]
    assert log.schema["context.products"] == pl.List(pl.String)
    assert set(log["context.email"].unique().to_list()) == {"***"}
    assert log["masked"][0].to_list() == ["email", "phone", "postcode"]
    wins = log.explode("actions")["actions"].value_counts()
    chosen = dict(zip(wins["actions"].to_list(), wins["count"].to_list()))
    assert chosen == {a: w["chosen"] for a, w in report["wins"].items() if w["chosen"]}


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
    per_decision = cands.group_by("decision_id", "channel").agg(
        pl.len().alias("n"), pl.col("chosen").sum().alias("chosen")
    )
    # every action of the decision's channel, each time (the population
    # comes on several channels)
    per_channel = per_decision.group_by("channel").agg(pl.col("n").n_unique())
    assert per_channel.height > 1 and (per_channel["n"] == 1).all()
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


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """The retail bank running an experiment (champion, a challenger that
    is a copy of it, a random-eligible control), its population decided
    with decide_batch into the decision log, and outcomes recorded through
    the engine: the first action of a decision is accepted with its arm's
    rate, else rejected. Returns the log and what was recorded per arm."""
    d = tmp_path_factory.mktemp("experiment")
    rules = d / "rules"
    shutil.copytree(RETAIL, rules)
    shutil.copytree(RETAIL, rules / "challenger")
    with open(rules / "ruleset.toml", "a") as f:
        f.write(
            '\n[experiment]\nname = "python-impact"\nsalt = "py"\nchallenger = "challenger"\n'
            'challenger_share = 0.3\ncontrol_share = 0.2\ncontrol = "random_eligible"\n'
        )
    log = d / "decisions.jsonl"
    engine = nextbest.Engine(rules, decision_log={"path": log})
    customers = pl.read_ndjson(RETAIL / "customers.jsonl").drop("channel").unnest("context")
    engine.decide_batch(customers, "call_center", now=NOW)
    engine.flush()
    rates = {"champion": 0.3, "challenger": 0.25, "control": 0.1}
    draw = random.Random(7)
    recorded = {arm: {"decisions": 0, "accepted": 0} for arm in rates}
    for row in nextbest.read_log(log).iter_rows(named=True):
        arm = recorded[row["arm"]]
        arm["decisions"] += 1
        if not row["actions"]:
            continue
        kind = "accepted" if draw.random() < rates[row["arm"]] else "rejected"
        arm["accepted"] += kind == "accepted"
        engine.record_outcome(
            row["customer_id"], row["first_action"], "call_center", kind,
            decision_id=row["decision_id"], timestamp="2026-11-23T11:00:00Z",
        )
    engine.flush()
    return log, recorded


def test_impact_gives_the_clis_figures(cli, experiment):
    log, recorded = experiment
    got = nextbest.impact(log)
    assert got == json.loads(run_cli(cli, "impact", log, "--json"))
    assert got == json.loads(run_cli(cli, "impact", log, "--json", "--mde", "0.1"))
    assert nextbest.impact([log], mde=0.2) == json.loads(
        run_cli(cli, "impact", log, "--json", "--mde", "0.2")
    )
    # and the figures are the outcomes recorded above, arm by arm
    assert got["experiments"] == ["python-impact"] and got["unjoined_outcomes"] == 0
    arms = {a["arm"]: a for a in got["arms"]}
    assert set(arms) == set(recorded)
    for name, r in recorded.items():
        assert arms[name]["decisions"] == r["decisions"]
        assert arms[name]["outcomes"]["accepted"] == r["accepted"]
        assert arms[name]["acceptance_rate"]["value"] == pytest.approx(r["accepted"] / r["decisions"])
    lifts = pl.DataFrame(got["lifts"]).unnest("lift")
    champion = lifts.filter(
        (pl.col("test") == "champion") & (pl.col("control") == "control")
        & (pl.col("metric") == "acceptance_rate")
    ).row(0, named=True)
    rate = {n: r["accepted"] / r["decisions"] for n, r in recorded.items()}
    assert champion["value"] == pytest.approx(rate["champion"] / rate["control"] - 1)
    assert champion["low"] < champion["value"] < champion["high"]


def test_impact_refuses_a_lift_it_cannot_size(experiment):
    log, _ = experiment
    with pytest.raises(errors.RequestError, match="mde 0"):
        nextbest.impact(log, mde=0)
