"""Benchmark: decide_batch against the engine's own Rust API throughput.

    python crates/nextbest-py/bench/decide_batch.py [--rows 1000000] [--threads 2]

The retail_bank population (2,000 customers) is repeated to ROWS rows.
Alternating runs, in one process and one run of this script:

- Rust API: `rust_api_throughput` (crates/nextbest-arrow/examples),
  THREADS threads calling Engine::decide on the same customers, two ways:
  `prebound` (contexts bound before timing: the engine alone) and
  `per_request` (each decision builds its context from typed values with
  Context::builder, as a Rust program holding the records would);
- decide_batch: the polars frame in, the polars frame of decisions out
  (binding from Arrow, deciding, building the output: everything), with a
  sampler thread reading this process's resident memory every 2 ms;
- with --parquet, the CLI twin `nextbest decide --batch` on the same rows
  written to Parquet, its peak memory from the kernel.

Prints the median of --runs runs of each, and the memory figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict

import polars as pl

import nextbest

REPO = Path(__file__).resolve().parents[3]
RETAIL = REPO / "rules" / "retail_bank"
NOW = "2026-11-23T10:00:00Z"


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def rust_api(example: Path, rows: int, threads: int, channel: str) -> Dict[str, float]:
    out = subprocess.run(
        [str(example), str(RETAIL), str(RETAIL / "customers.jsonl"), channel, str(rows), str(threads)],
        check=True, capture_output=True, text=True,
    ).stdout
    return {r["way"]: r["decisions_per_s"] for r in map(json.loads, out.splitlines())}


def batch(engine, table: pl.DataFrame, threads: int, channel: str):
    base = rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t = time.perf_counter()
    out = engine.decide_batch(table, channel, now=NOW, threads=threads)
    secs = time.perf_counter() - t
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss_bytes())
    return table.height / secs, peak[0] - base, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channel", default="call_center")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--parquet", action="store_true")
    args = ap.parse_args()

    for build in (["-p", "nextbest-cli"], ["-p", "nextbest-arrow", "--example", "rust_api_throughput"]):
        subprocess.run(["cargo", "build", "--release", "-q", *build], check=True, cwd=REPO)
    example = REPO / "target" / "release" / "examples" / "rust_api_throughput"
    cli = REPO / "target" / "release" / "nextbest"

    customers = pl.read_ndjson(RETAIL / "customers.jsonl").drop("channel").unnest("context")
    copies = -(-args.rows // customers.height)
    table = pl.concat([customers] * copies).head(args.rows).rechunk()
    engine = nextbest.Engine(RETAIL)
    batch(engine, table.head(20_000), args.threads, args.channel)  # warm up

    api: Dict[str, list] = {"prebound": [], "per_request": []}
    bat, mem = [], []
    out = None
    for _ in range(args.runs):
        for way, rate in rust_api(example, args.rows, args.threads, args.channel).items():
            api[way].append(rate)
        rate, grown, out = batch(engine, table, args.threads, args.channel)
        bat.append(rate)
        mem.append(grown)
        del out
    out = engine.decide_batch(table.head(100_000), args.channel, now=NOW, threads=args.threads)
    out_per_row = out.estimated_size() / 100_000

    b = statistics.median(bat)
    mib = 1024 * 1024
    runs = lambda xs: ", ".join(f"{x:,.0f}" for x in xs)  # noqa: E731
    print(f"retail_bank, channel {args.channel}, {args.rows:,} rows, {args.threads} threads, "
          f"median of {args.runs} alternating runs")
    for way, label in [("prebound", "contexts bound before timing"),
                       ("per_request", "context built per decision")]:
        a = statistics.median(api[way])
        print(f"  Rust API, {label}: {a:,.0f} decisions/s (runs: {runs(api[way])}); "
              f"decide_batch / this: {100 * b / a:.1f}%")
    print(f"  decide_batch (polars in, polars out): {b:,.0f} decisions/s (runs: {runs(bat)})")
    out_mib = out_per_row * args.rows / mib
    grown = statistics.median(mem) / mib
    print(f"  input frame {table.estimated_size() / mib:,.0f} MiB; output frame ~{out_mib:,.0f} MiB "
          f"(estimated from 100,000 rows)")
    print(f"  resident memory grown during decide_batch: {grown:,.0f} MiB "
          f"(runs: {', '.join(f'{m / mib:,.0f}' for m in mem)}), of which the output frame "
          f"~{out_mib:,.0f} MiB: working memory ~{max(grown - out_mib, 0):,.0f} MiB")

    if args.parquet:
        with tempfile.TemporaryDirectory() as d:
            source, target = Path(d) / "customers.parquet", Path(d) / "decisions.parquet"
            table.write_parquet(source)
            # A process of its own, so its peak is the CLI's alone.
            peak_of = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                       "capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
            t = time.perf_counter()
            peak = int(subprocess.run(
                [sys.executable, "-c", peak_of, str(cli), "decide", str(RETAIL), "--batch", str(source),
                 "-o", str(target), "--channel", args.channel, "--now", NOW, "--threads", str(args.threads)],
                check=True, capture_output=True, text=True).stdout)
            secs = time.perf_counter() - t
            print(f"  CLI twin (Parquet in and out): {args.rows / secs:,.0f} decisions/s including "
                  f"start-up; peak resident memory {peak / 1024:,.0f} MiB; input {source.stat().st_size / mib:,.1f} MiB, output "
                  f"{target.stat().st_size / mib:,.1f} MiB on disk")


if __name__ == "__main__":
    sys.exit(main())
