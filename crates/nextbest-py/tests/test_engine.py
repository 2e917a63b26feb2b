"""Engine: deciding one customer, outcomes, hot swap, stats, errors and
threads."""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime, timezone

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


def test_a_misspelt_context_key_is_named_in_the_warnings_as_the_cli_names_it(engine, cli):
    context = {**CONTEXT, "agee": 40}
    d = engine.decide("C1", "call_center", context, now=NOW)
    assert d["warnings"] == [
        "context attribute `agee` is not in the schema and was ignored (did you mean `age`?)"
    ]
    request = {"customer_id": "C1", "channel": "call_center", "context": context, "now": NOW}
    expected = json.loads(run_cli(cli, "decide", RETAIL, stdin=json.dumps(request) + "\n"))
    assert d["warnings"] == expected["warnings"]
    assert "warnings" not in engine.decide("C1", "call_center", CONTEXT, now=NOW)


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


# Run in a process of its own: had deciding held the GIL, this would hang,
# and the parent's timeout turns the hang into a failure.
BLOCKED_ON_THE_LOG = r"""
import fcntl, json, os, select, sys, threading
import polars as pl
import nextbest

rules, fifo, how = sys.argv[1:4]
os.mkfifo(fifo)
pipe = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader, so the engine's open does not wait
engine = nextbest.Engine(
    rules, decision_log={"path": fifo, "queue_capacity": 1, "candidates": "all"}
)
customers = pl.read_ndjson(os.path.join(rules, "customers.jsonl")).drop("channel").unnest("context")

def decide():
    if how == "decide_batch":
        engine.decide_batch(customers, "call_center", now="2026-11-23T10:00:00Z")
    else:
        for row in customers.iter_rows(named=True):
            engine.decide(row.pop("customer_id"), "call_center", row, now="2026-11-23T10:00:00Z")

deciding = threading.Thread(target=decide)
deciding.start()
read = 0
while deciding.is_alive():
    if select.select([pipe], [], [], 0.05)[0]:
        read += len(os.read(pipe, 1 << 16))
print(json.dumps({"read_while_deciding": read, "pipe": fcntl.fcntl(pipe, 1032)}))  # F_GETPIPE_SZ
sys.stdout.flush()
os._exit(0)  # the log writer may still be blocked on the pipe: no teardown
"""


@pytest.mark.parametrize("how", ["decide", "decide_batch"])
def test_the_gil_is_released_while_deciding(how, tmp_path):
    """The decision log is a named pipe that only this process's main
    thread reads, and its queue holds one record: once the pipe and the
    writer's buffer (256 KiB) are full, deciding blocks inside the engine
    until the main thread reads. A decision log of megabytes can then only
    pass if the main thread runs Python while the other thread is inside
    `decide` or `decide_batch`; had they held the GIL, nothing would be
    read and the process would hang."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_ON_THE_LOG, str(RETAIL), str(tmp_path / "log.fifo"), how],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    # Far more than the pipe and the writer's buffer hold passed through.
    assert figures["read_while_deciding"] > 8 * (figures["pipe"] + 256 * 1024)


def test_a_panic_is_an_internal_error_not_a_crash(engine):
    from nextbest import _nextbest

    with pytest.raises(errors.InternalError, match="internal error: on purpose") as caught:
        _nextbest._panic_in_guard("on purpose")
    assert isinstance(caught.value, nextbest.NextbestError)
    # the module and the engine still work
    assert engine.decide("C1", "call_center", CONTEXT, now=NOW)["actions"]
