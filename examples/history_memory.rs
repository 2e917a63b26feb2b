//! Memory of the in-memory interaction history ([`MemoryHistory`]): fill
//! it with N customers × M events and measure the process's resident set
//! size (VmRSS in /proc/self/status) before and after.
//!
//! ```text
//! cargo run --release --example history_memory
//! cargo run --release --example history_memory -- --customers 100000 --events 50
//! cargo run --release --example history_memory -- --sequential
//! ```
//!
//! Customer ids are `C0000001`, `C0000002`, ... (8 characters at the
//! default size). Events arrive round-robin by default: one event for every
//! customer, then a second for every customer, and so on (each customer's
//! vector grows while the others are allocated, as in a live service);
//! `--sequential` records all of one customer's events before the next.
//!
//! The resident size includes everything the store costs: 32 bytes per
//! event, the vectors' spare capacity, the id strings, the map's slots and
//! control bytes, and the allocator's headers and fragmentation. It is
//! checked against the targets: at most 64 bytes per event amortized over
//! the whole store, and less than 1 GiB in total; the program exits with
//! status 1 when either is missed. Linux only (it reads /proc).

use std::process::ExitCode;
use std::time::Instant;

use nextbest::state::history::{
    channel_key, key, Event, HistoryConfig, HistoryStore, MemoryHistory,
};
use nextbest::OutcomeKind;

const TARGET_BYTES_PER_EVENT: f64 = 64.0;
const TARGET_TOTAL_BYTES: u64 = 1 << 30;

/// The resident set size, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS in /proc/self/status")
}

fn usage() -> ! {
    eprintln!("usage: history_memory [--customers N] [--events M] [--sequential]");
    std::process::exit(2);
}

fn main() -> ExitCode {
    let mut customers: usize = 1_000_000;
    let mut events: usize = 10;
    let mut sequential = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = || -> usize {
            args.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--customers" => customers = number(),
            "--events" => events = number(),
            "--sequential" => sequential = true,
            // `cargo bench`/`cargo test` style flags are not ours.
            _ => usage(),
        }
    }
    if customers == 0 || events == 0 {
        usage();
    }

    // Every event inside the default retention and under max_events, so
    // nothing is evicted: the store holds customers × events.
    let config = HistoryConfig {
        max_events: HistoryConfig::default().max_events.max(events),
        ..HistoryConfig::default()
    };
    let actions: Vec<(u64, u64)> = (0..16)
        .map(|i| {
            (
                key(&format!("ACTION_{i}")),
                key(&format!("group_{}", i % 4)),
            )
        })
        .collect();
    let channels: Vec<u32> = ["web", "mobile_app", "call_center", "email"]
        .iter()
        .map(|c| channel_key(c))
        .collect();
    let width = customers.to_string().len().max(7);
    let t0: i64 = 1_795_392_000;

    let before = rss();
    let started = Instant::now();
    let store = MemoryHistory::new(config);
    let mut id = String::with_capacity(width + 1);
    let mut record = |c: usize, e: usize| {
        use std::fmt::Write;
        id.clear();
        let _ = write!(id, "C{:0width$}", c + 1);
        let (action, group) = actions[(c + e) % actions.len()];
        store
            .record(
                &id,
                Event {
                    at: t0 + (e * 3_600) as i64,
                    action,
                    group,
                    channel: channels[(c ^ e) % channels.len()],
                    kind: OutcomeKind::ALL[(c + 3 * e) % OutcomeKind::ALL.len()],
                },
            )
            .expect("the in-memory store does not fail");
    };
    if sequential {
        for c in 0..customers {
            for e in 0..events {
                record(c, e);
            }
        }
    } else {
        for e in 0..events {
            for c in 0..customers {
                record(c, e);
            }
        }
    }
    let filled = started.elapsed();
    let after = rss();

    let held = store.events();
    assert_eq!(store.customers(), customers, "every customer is held");
    assert_eq!(held, customers * events, "no event was evicted");
    let mut probe = Vec::new();
    store
        .recent(&format!("C{:0width$}", customers), 0, &mut probe)
        .expect("the in-memory store does not fail");
    assert_eq!(probe.len(), events);

    let total = after.saturating_sub(before);
    let per_event = total as f64 / held as f64;
    let per_customer = total as f64 / customers as f64;
    let overhead = per_customer - (events * std::mem::size_of::<Event>()) as f64;
    println!(
        "order: {}",
        if sequential {
            "sequential"
        } else {
            "round-robin"
        }
    );
    println!("customers: {customers}");
    println!("events: {held} ({events} per customer)");
    println!("rss before: {before} bytes, after: {after} bytes");
    println!(
        "total bytes: {total} ({:.1} MiB)",
        total as f64 / (1u64 << 20) as f64
    );
    println!("bytes per event: {per_event:.1} (target <= {TARGET_BYTES_PER_EVENT})");
    println!(
        "bytes per customer: {per_customer:.1}, of which beyond {} B per event: {overhead:.1}",
        std::mem::size_of::<Event>()
    );
    println!("fill time: {:.2} s", filled.as_secs_f64());

    let mut ok = true;
    if per_event > TARGET_BYTES_PER_EVENT {
        println!("FAIL: {per_event:.1} bytes per event exceeds {TARGET_BYTES_PER_EVENT}");
        ok = false;
    }
    if total >= TARGET_TOTAL_BYTES {
        println!("FAIL: {total} bytes in total is not below 1 GiB");
        ok = false;
    }
    // Keep the store alive until measured.
    drop(store);
    if ok {
        println!("ok: within targets");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
