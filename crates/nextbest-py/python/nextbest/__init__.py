"""nextbest: real-time next-best-action decisioning, from Python.

Decide for one customer, decide for a whole table (a polars or pandas
DataFrame, or a pyarrow Table) on every core, and read the decision log as
polars DataFrames::

    import nextbest, polars as pl

    engine = nextbest.Engine("rules/retail_bank")
    d = engine.decide("C1", "call_center", {"age": 34, "income": 52000.0})
    d["actions"][0]["action"]

    customers = pl.read_ndjson("customers.jsonl")  # customer_id + a column per attribute
    decisions = engine.decide_batch(customers, "email")

    log = nextbest.read_log("decisions.jsonl")  # and read_candidates, funnel, impact, evaluate

The engine is the Rust library's: the same rules, the same decisions, the
same errors (as :mod:`nextbest.errors` exceptions). See docs/PYTHON.md.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import polars as pl

from . import errors
from ._nextbest import STAGES, __version__
from ._nextbest import Engine as _NativeEngine
from ._nextbest import _funnel, _read_candidates, _read_decisions, _read_outcomes
from ._nextbest import evaluate as _evaluate
from ._nextbest import impact as _impact
from .errors import NextbestError

__all__ = [
    "Engine",
    "read_log",
    "read_candidates",
    "read_outcomes",
    "funnel",
    "evaluate",
    "impact",
    "STAGES",
    "NextbestError",
    "errors",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
Logs = Union[PathLike, Sequence[PathLike]]
Time = Union[str, int, Any]  # RFC 3339 text, epoch seconds or a datetime


def _arrow_stream(table: Any) -> Any:
    """An object the native module reads as an Arrow C stream: one with
    ``__arrow_c_stream__`` (polars, pyarrow, recent pandas), or a stream
    exporter with pyarrow's ``_export_to_c(address)`` (the
    RecordBatchReader of a pyarrow without the protocol). Older pandas and
    polars go through their own columnar conversion to pyarrow: no row
    becomes a Python object there either."""
    if hasattr(table, "__arrow_c_stream__"):
        return table
    module = type(table).__module__.split(".")[0]
    if module == "pandas":
        import pyarrow as pa

        return _arrow_stream(pa.Table.from_pandas(table, preserve_index=False))
    if module == "polars":
        return _arrow_stream(table.to_arrow())
    if module == "pyarrow":
        import pyarrow as pa

        if isinstance(table, pa.RecordBatchReader):
            return table
        if isinstance(table, pa.RecordBatch):
            return pa.RecordBatchReader.from_batches(table.schema, [table])
        if isinstance(table, pa.Table):
            return table.to_reader()
    elif hasattr(table, "_export_to_c"):
        return table  # another stream exporter
    raise TypeError(
        "decide_batch takes a polars or pandas DataFrame, a pyarrow Table or "
        f"any object with __arrow_c_stream__, not {type(table).__name__}"
    )


class Engine(_NativeEngine):
    """A decision engine serving a rule directory.

    ``Engine(rules_dir, **config)`` loads, validates and compiles the rules
    (a :class:`~nextbest.errors.RuleError` lists every problem with its
    file, line and column). ``config`` takes the keys of the engine's JSON
    configuration (docs/OPERATIONS.md), e.g.
    ``decision_log={"path": "decisions.jsonl"}``, ``keep_versions=10``,
    ``record_impressions=True``, ``state_file="state.jsonl"``.

    Thread-safe: share one engine between threads. Deciding releases the
    GIL, so threads decide in parallel.
    """

    def decide(
        self,
        customer_id: str,
        channel: str,
        context: Optional[Dict[str, Any]] = None,
        explain: bool = False,
        limit: Optional[int] = None,
        now: Optional[Time] = None,
    ) -> Dict[str, Any]:
        """Decide the next best actions for one customer on ``channel``.

        ``context`` maps schema attributes to values (``None`` means
        missing; a key the schema does not declare is ignored and named,
        with the closest declared name, in the decision's ``warnings``); timestamps may be
        RFC 3339 strings, epoch seconds or datetimes (naive means UTC).
        Returns the decision JSON as a dict: ``decision_id``, ``timestamp``,
        ``ruleset``, ``channel``, ``arm``, ``actions`` (each with ``rank``,
        ``action``, ``group``, ``issue``, ``treatment``, ``priority``,
        ``propensity``, ``context_weight``, ``value``, ``lever``) and, with
        ``explain=True``, ``filtered`` and ``ranked``. ``now`` sets the
        decision time (default: now).
        """
        return super().decide(customer_id, channel, context, explain, limit, now)

    def decide_batch(
        self,
        table: Any,
        channel: str,
        customer_id: str = "customer_id",
        limit: Optional[int] = None,
        now: Optional[Time] = None,
        *,
        chunk_rows: int = 4096,
        threads: Optional[int] = None,
    ) -> pl.DataFrame:
        """Decide for every row of ``table`` on ``channel``.

        ``table`` is a polars or pandas DataFrame, a pyarrow Table or
        RecordBatchReader, or any object with ``__arrow_c_stream__``: one
        row per customer, the ids in column ``customer_id``, attributes in
        columns named like the schema's (others are ignored; nulls are
        missing). Its columns are read through the Arrow C data interface,
        never as Python objects, and decided in chunks of ``chunk_rows``
        rows on ``threads`` threads (default: every core) with the GIL
        released.

        Returns one row per chosen action, customers in input order,
        actions by rank: ``customer_id``, ``rank``, ``action``, ``group``,
        ``issue``, ``treatment``, ``priority``, ``propensity``,
        ``context_weight``, ``value``, ``lever``. A customer who gets no
        action has no row. The first row that cannot be decided raises
        :class:`~nextbest.errors.BatchError` naming it.
        """
        out = self._decide_batch(
            _arrow_stream(table), channel, customer_id, limit, now, chunk_rows, threads
        )
        return pl.DataFrame(out)

    def record_outcome(
        self,
        customer_id: str,
        action: str,
        channel: str,
        outcome: str,
        decision_id: Optional[str] = None,
        timestamp: Optional[Time] = None,
    ) -> None:
        """Record what a customer did with an action: ``outcome`` is
        ``impression``, ``clicked``, ``accepted``, ``rejected`` or
        ``no_response``. Feeds contact policies and learning; logged."""
        return super().record_outcome(customer_id, action, channel, outcome, decision_id, timestamp)

    def publish(self, rules_dir: PathLike) -> int:
        """Load, validate and compile ``rules_dir`` and make it live at once
        (decisions in flight finish on their version). Returns the live
        version number; on error nothing changes."""
        return super().publish(rules_dir)

    def rollback(self) -> int:
        """Serve the previous kept version again, at once; returns its number."""
        return super().rollback()

    def stats(self) -> Dict[str, Any]:
        """Counters and the version history (docs/OPERATIONS.md, *Stats*)."""
        return super().stats()

    def flush(self) -> None:
        """Return once every record logged so far is written and synced."""
        return super().flush()


def _frame(result: Any) -> pl.DataFrame:
    batches, problems = result
    for p in problems:
        warnings.warn(f"decision log: {p}", stacklevel=3)
    return pl.DataFrame(batches)


def read_log(log: Logs) -> pl.DataFrame:
    """The decisions of a decision log, one row per decision.

    ``log`` is a file or a list of files (rotated ones too, oldest first),
    plain JSON Lines or zstd. Columns: ``decision_id``, ``timestamp`` (UTC),
    ``ruleset``, ``version``, ``hash``, ``customer_id``, ``channel``,
    ``experiment``, ``arm``, ``seed``, ``limit``, ``detail``, ``actions``
    (list), ``first_action``, ``selection_probability``, ``elapsed_ns``,
    ``masked`` (list), then one ``context.NAME`` column per context
    attribute. Damaged lines are skipped with a warning. The candidates are
    in :func:`read_candidates`, the outcomes in :func:`read_outcomes`.
    """
    return _frame(_read_decisions(log))


def read_candidates(log: Logs) -> pl.DataFrame:
    """Every candidate of every logged decision, one row each:
    ``decision_id``, ``customer_id``, ``channel``, ``action``, ``rank``,
    ``chosen``, ``stage`` (what removed it; null for ranked ones),
    ``level``, ``condition``, ``reason`` (with ``detail = "all"``), and the
    ranked ones' ``propensity``, ``context_weight``, ``value``, ``lever``,
    ``priority``."""
    return _frame(_read_candidates(log))


def read_outcomes(log: Logs) -> pl.DataFrame:
    """The outcome records of a log: ``decision_id``, ``timestamp`` (UTC),
    ``customer_id``, ``action``, ``channel``, ``outcome``."""
    return _frame(_read_outcomes(log))


def funnel(log: Logs) -> pl.DataFrame:
    """Where a log's candidates were lost: one row per stage, in funnel
    order (:data:`STAGES`, then ``arbitration``: ranked but not chosen),
    with ``removed`` (candidates that stage removed), ``remaining`` (left
    after it) and ``share`` (``removed`` / all candidates).

    Counts every decision logged with ``candidates = "stages"`` (the
    default) or ``"all"``; decisions logged with less detail do not list
    their removals and raise :class:`~nextbest.errors.NextbestError`.
    """
    counts, problems = _funnel(log)
    for p in problems:
        warnings.warn(f"decision log: {p}", stacklevel=2)
    if counts["without_removals"]:
        raise NextbestError(
            f"{counts['without_removals']} decision(s) in the log were logged with a detail "
            "('ranked' or 'chosen') that leaves removed candidates out; log with "
            "candidates = 'stages' (the default) to count the funnel"
        )
    total = counts["candidates"]
    stages: List[str] = []
    removed: List[int] = []
    for stage, n in counts["removed"]:
        stages.append(stage)
        removed.append(n)
    stages.append("arbitration")
    removed.append(counts["ranked"] - counts["chosen"])
    remaining: List[int] = []
    left = total
    for n in removed:
        left -= n
        remaining.append(left)
    return pl.DataFrame(
        {
            "stage": stages,
            "removed": removed,
            "remaining": remaining,
            "share": [n / total if total else 0.0 for n in removed],
        },
        schema={"stage": pl.String, "removed": pl.Int64, "remaining": pl.Int64, "share": pl.Float64},
    )


def evaluate(
    log: Logs, candidate_dir: PathLike, success: Optional[Iterable[str]] = None
) -> Dict[str, Any]:
    """Off-policy estimate of the acceptance rate the rules in
    ``candidate_dir`` would have had on the logged decisions: the same
    figures as ``nextbest evaluate LOG --rules DIR --json`` (``ips``,
    ``snips`` and ``logged``, each with ``value``, ``std_error``, ``low``,
    ``high``, or ``None`` when no outcome in the log answers a logged
    decision (``joined_outcomes`` is 0, and ``warnings`` says so);
    ``effective_sample_size``; counts and ``warnings``).
    ``success`` lists the outcome kinds that count (default ``accepted``).
    """
    return _evaluate(log, os.fspath(candidate_dir), list(success) if success else None)


def impact(log: Logs, mde: float = 0.1) -> Dict[str, Any]:
    """Impact against control: the same report as ``nextbest impact LOG
    --json``, as a dict.

    Per experiment arm (``arms``: ``champion``, ``challenger``,
    ``control``): ``decisions``, ``offered``, ``outcomes`` (decisions by
    their outcome), ``acceptance_rate`` and ``value_per_decision``, each an
    estimate with ``value``, ``std_error``, ``low`` and ``high`` (95%), or
    ``None`` (and no ``lifts``) when no outcome in the log joined a decision
    (``joined_outcomes`` is 0; ``warnings`` says so).
    ``lifts``: each test arm over control (and the challenger over the
    champion) per metric, ``lift`` = (test - control) / control with its
    delta-method interval (``None`` when the control's figure is 0), and
    ``sample_size``: the decisions needed to detect a relative lift of
    ``mde``. Also ``experiments``, ``joined_outcomes``, ``unjoined_outcomes``,
    ``accepted_without_value`` and ``warnings``.

    For frames: ``pl.DataFrame(r["lifts"]).unnest("lift")``.
    """
    return _impact(log, mde)
