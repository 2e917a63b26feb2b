"""Engine: deciding one customer, outcomes, hot swap, stats, errors and
threads."""

from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime, timezone

import polars as pl
import pytest

import nextbest
from nextbest import errors

from conftest import NOW, REPO, RETAIL, run_cli

CONTEXT = {
    "age": 34,
    "income": 52_000.0,
    "segment": "affluent",
    "tenure_months": 40,
    "products": ["CURRENT"],
    "call_reason": "cancellation",
}


@pytest.fixture
def engine() -> nextbest.Engine:
    return nextbest.Engine(RETAIL)


def test_decide_gives_the_decision_json_the_cli_gives(engine, cli):
    d = engine.decide("C1", "call_center", CONTEXT, now=NOW)
    request = {"customer_id": "C1", "channel": "call_center", "context": CONTEXT, "now": NOW}
    expected = json.loads(run_cli(cli, "decide", RETAIL, stdin=json.dumps(request) + "\n"))
    volatile = {"decision_id", "elapsed_ns"}
    assert {k: v for k, v in d.items() if k not in volatile} == {
        k: v for k, v in expected.items() if k not in volatile
    }
    assert [a["rank"] for a in d["actions"]] == list(range(1, len(d["actions"]) + 1))
    assert d["actions"][0]["action"] == "RET_FEE_WAIVER"
    assert d["timestamp"] == NOW and d["channel"] == "call_center"


def test_explain_lists_what_removed_each_action(engine):
    plain = engine.decide("C1", "call_center", CONTEXT, now=NOW)
    explained = engine.decide("C1", "call_center", CONTEXT, explain=True, limit=1, now=NOW)
    assert plain["filtered"] == []
    assert len(explained["actions"]) == 1
    assert explained["actions"][0] == plain["actions"][0]
    stages = {f["stage"] for f in explained["filtered"]}
    assert "applicability" in stages  # e.g. products the customer already has
    assert all("condition" in f for f in explained["filtered"] if f["stage"] == "eligibility")


def test_timestamps_may_be_text_epoch_seconds_or_datetimes(engine):
    as_text = engine.decide("C1", "web", {**CONTEXT, "last_contact": "2026-10-01T08:00:00Z"}, now=NOW)
    as_epoch = engine.decide(
        "C1", "web", {**CONTEXT, "last_contact": 1_790_841_600}, now=1_795_428_000
    )
    as_datetime = engine.decide(
        "C1",
        "web",
        {**CONTEXT, "last_contact": datetime(2026, 10, 1, 8, 0)},  # naive means UTC
        now=datetime(2026, 11, 23, 10, 0, tzinfo=timezone.utc),
    )
    assert as_text["timestamp"] == as_epoch["timestamp"] == as_datetime["timestamp"] == NOW
    assert as_text["actions"] == as_epoch["actions"] == as_datetime["actions"]


def test_rule_errors_carry_every_location(cli):
    broken = REPO / "tests" / "fixtures" / "broken"
    with pytest.raises(errors.RuleError) as caught:
        nextbest.Engine(broken)
    e = caught.value
    assert isinstance(e, nextbest.NextbestError) and isinstance(e, ValueError)
    validated = json.loads(run_cli_allowing_failure(cli, "validate", "--json", broken))
    expected = [(x["file"], x["line"], x["column"], x["message"]) for x in validated["errors"]]
    assert [(p.file, p.line, p.column, p.message) for p in e.errors] == [
        (str(REPO / f) if not f.startswith("/") else f, line, col, msg)
        for f, line, col, msg in expected
    ]
    assert (e.file, e.line, e.column) == (e.errors[0].file, e.errors[0].line, e.errors[0].column)
    assert e.file.endswith("actions/bad.toml") and e.line >= 1 and e.column >= 1
    assert "unknown group `cardz`" in str(e)


def run_cli_allowing_failure(cli, *args):
    import subprocess

    done = subprocess.run([str(cli), *map(str, args)], capture_output=True, text=True, cwd=REPO)
    return done.stdout


def test_request_errors_are_exceptions_with_the_engines_message(engine):
    with pytest.raises(errors.ContextError) as caught:
        engine.decide("C1", "call_center", {"age": "forty"})
    assert caught.value.attribute == "age"
    assert str(caught.value) == "context attribute `age`: expected int, got str 'forty'"
    with pytest.raises(errors.ContextError, match="not one of the allowed values"):
        engine.decide("C1", "call_center", {"segment": "gold"})
    with pytest.raises(errors.ContextError, match="expected int"):
        engine.decide("C1", "call_center", {"age": True})  # a bool is not an int
    with pytest.raises(errors.ChannelError) as caught:
        engine.decide("C1", "fax", CONTEXT)
    assert caught.value.channel == "fax"
    assert isinstance(caught.value, errors.RequestError)
    with pytest.raises(errors.RequestError, match="limit"):
        engine.decide("C1", "call_center", CONTEXT, limit=0)
    with pytest.raises(errors.ConfigError, match="no_such_key"):
        nextbest.Engine(RETAIL, no_such_key=1)
    with pytest.raises(errors.FileError) as caught:
        nextbest.Engine(REPO / "no" / "such" / "dir")
    assert isinstance(caught.value, OSError)
    # unknown context keys are ignored, as in JSON requests
    assert engine.decide("C1", "call_center", {**CONTEXT, "shoe_size": 44}, now=NOW)["actions"]


def test_an_accepted_offer_is_suppressed_by_the_contact_policy(engine):
    first = engine.decide("C7", "call_center", CONTEXT, now=NOW)
    top = first["actions"][0]["action"]
    engine.record_outcome(
        "C7", top, "call_center", "accepted", decision_id=first["decision_id"], timestamp=NOW
    )
    again = engine.decide("C7", "call_center", CONTEXT, now=NOW, explain=True)
    assert top not in [a["action"] for a in again["actions"]]
    assert {"action": top, "stage": "contact_policy"}.items() <= next(
        f for f in again["filtered"] if f["action"] == top
    ).items()
    assert engine.stats()["outcomes"] == 1
    with pytest.raises(errors.RequestError, match="unknown kind"):
        engine.record_outcome("C7", top, "call_center", "loved_it")
    with pytest.raises(errors.RequestError, match="unknown action"):
        engine.record_outcome("C7", "NO_SUCH_ACTION", "call_center", "accepted")


def test_publish_and_rollback_swap_versions(engine, tmp_path):
    v2 = tmp_path / "retail_v2"
    shutil.copytree(RETAIL, v2)
    ruleset = v2 / "ruleset.toml"
    ruleset.write_text(ruleset.read_text().replace('lever = 10\n', 'lever = 90\n', 1))
    assert engine.publish(v2) == 2
    assert engine.stats()["current"]["version"] == 2
    assert engine.decide("C1", "call_center", CONTEXT, now=NOW)["ruleset"]["version"] == 2

    with pytest.raises(errors.RuleError) as caught:
        engine.publish(REPO / "tests" / "fixtures" / "broken")
    assert caught.value.file.startswith(str(REPO / "tests" / "fixtures" / "broken"))
    stats = engine.stats()
    assert stats["current"]["version"] == 2 and stats["loads_failed"] == 1

    assert engine.rollback() == 1
    assert engine.decide("C1", "call_center", CONTEXT, now=NOW)["ruleset"]["version"] == 1
    with pytest.raises(errors.RollbackError):
        engine.rollback()
    stats = engine.stats()
    assert [v["version"] for v in stats["versions"]] == [1]
    assert stats["decisions"]["champion"] == 2


def test_threads_decide_at_once_and_agree_with_one_thread(engine, population):
    requests = [(c["customer_id"], c["context"]) for c in population[:400]]
    expected = [engine.decide(cid, "web", ctx, now=NOW)["actions"] for cid, ctx in requests]
    results = {}

    def work(k: int) -> None:
        results[k] = [engine.decide(cid, "web", ctx, now=NOW)["actions"] for cid, ctx in requests]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(results[k] == expected for k in range(4))
    assert engine.stats()["decisions"]["champion"] == 5 * len(requests)


def test_the_gil_is_released_while_the_engine_works(engine, customers):
    """While one thread is inside decide_batch, another runs Python code.

    The main thread notes each 10 ms slot in which it ran; had the call held
    the GIL, it could have run in none of the slots between the call's start
    and end (but for the last few ms, when the call had returned)."""
    table = pl.concat([customers] * 50)  # 100,000 rows, about a second on one thread
    span = {}
    finished = threading.Event()

    def batch() -> None:
        span["start"] = time.perf_counter()
        engine.decide_batch(table, "call_center", now=NOW, threads=1)
        span["end"] = time.perf_counter()
        finished.set()

    t = threading.Thread(target=batch)
    slots = set()
    t.start()
    while not finished.is_set():
        slots.add(int(time.perf_counter() * 100))
    t.join()
    start, end = span["start"], span["end"]
    inside = {s for s in slots if start * 100 < s < end * 100 - 1}
    total = int((end - start) * 100) - 2
    assert total >= 20, f"the call took only {end - start:.3f} s: too short to tell"
    assert len(inside) >= total // 2, f"Python ran in {len(inside)} of {total} slots"
