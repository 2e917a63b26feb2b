//! Fleet mode: decision latency and throughput with the shared store
//! (Redis on loopback) against the in-memory store, on the 100-action
//! catalog (with a contact policy and a daily cap per channel added, so
//! every decision reads the store) and on rules/retail_bank with its
//! customers (its contact policies, limits and caps), for 1 and 8
//! deciding threads. Criterion does not report tail percentiles, so this
//! harness times each decision itself: p50, p99 and decisions/s, from one
//! run. Impressions are not recorded (the engine's default): a decision's
//! store work is its one read round trip.
//!
//! The server: `NEXTBEST_TEST_REDIS_URL` if set, else a `redis-server` of
//! its own on a free loopback port (stopped by its pid at the end); with
//! neither, the fleet rows are skipped.
//!
//! `cargo bench --bench fleet`; `-- --test` runs a short smoke version.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nextbest::state::fleet::StateConfig;
use nextbest::{DecisionRequest, Engine, Outcome, OutcomeKind, RuleSet, RuleSource};

#[allow(dead_code)]
mod support;
use support::{main_file, population, Catalog};

fn main() {
    let smoke = std::env::args().any(|a| a == "--test");
    let per_thread = if smoke { 200 } else { 20_000 };
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::find(dir.path());
    let Some(url) = server.as_ref().map(Server::url) else {
        eprintln!("fleet: skipped (no NEXTBEST_TEST_REDIS_URL and no redis-server on the PATH)");
        return;
    };

    let catalog = Catalog::generate(100, 7);
    let mut source = catalog.to_source();
    let mut main = main_file(&source);
    main.push_str(
        "\n[[contact_policies]]\nname = \"rejected_lately\"\noutcomes = [\"rejected\"]\ncount = 1\nwithin = \"30d\"\n",
    );
    for c in &catalog.channels {
        main.push_str(&format!(
            "\n[[volume_constraints]]\nname = \"{0}_daily\"\nchannel = \"{0}\"\nmax = 1000000000\nperiod = \"day\"\n",
            c.name
        ));
    }
    source = source.file("ruleset.toml", main);
    let schema = Engine::new(RuleSet::compile(&source).expect("the catalog compiles")).schema();
    let requests: Vec<DecisionRequest> = population(1_000, 11)
        .iter()
        .map(|c| c.request(&catalog, &schema, false))
        .collect();
    println!("| rule set | store | threads | p50 µs | p99 µs | decisions/s | round trips |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    compare("catalog/100", &source, &requests, &url, per_thread);

    let retail = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/retail_bank");
    match support::shipped(&retail) {
        Ok((_, requests)) => {
            let source = RuleSource::from_dir(&retail).expect("loads");
            compare("retail_bank", &source, &requests, &url, per_thread / 2);
        }
        Err(why) => eprintln!("fleet (retail_bank): skipped ({why})"),
    }
    drop(server);
}

/// The in-memory and the fleet store on `rules`, 1 and 8 threads.
fn compare(name: &str, source: &RuleSource, requests: &[DecisionRequest], url: &str, n: usize) {
    let rules = || RuleSet::compile(source).expect("compiles");
    let requests = Arc::new(requests.to_vec());
    let memory = Arc::new(Engine::new(rules()));
    let prefix = format!("nbbench:{}:{}:", std::process::id(), name);
    let config = StateConfig {
        key_prefix: prefix,
        ..StateConfig::new(url)
    };
    let fleet = Arc::new(
        Engine::new(rules())
            .with_state(&config)
            .expect("the fleet store answers"),
    );
    // Some history for each customer, so reads return events.
    for e in [&memory, &fleet] {
        for (i, r) in requests.iter().enumerate().take(500) {
            let d = e.decide(r).expect("decide");
            if let Some(a) = d.action_ids().first() {
                let kind = if i % 3 == 0 {
                    OutcomeKind::Rejected
                } else {
                    OutcomeKind::Clicked
                };
                e.record_outcome(&Outcome {
                    decision_id: Some(d.id()),
                    customer_id: r.customer_id.clone(),
                    action: a.to_string(),
                    channel: r.channel.clone(),
                    kind,
                    timestamp: r.now,
                })
                .expect("outcome");
            }
        }
    }
    let previews = Arc::new(
        requests
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.mode = nextbest::Mode::Preview;
                r
            })
            .collect::<Vec<_>>(),
    );
    let mut p99 = [0.0; 2];
    for threads in [1usize, 8] {
        // The reads alone (previews: nothing taken, nothing logged), then
        // whole decisions.
        let r = run(&fleet, &previews, threads, n);
        println!(
            "| {name} | redis, reads only | {threads} | {:.1} | {:.1} | {:.0} | {:.2} |",
            r.p50, r.p99, r.per_second, r.round_trips
        );
        for (store, engine) in [("memory", &memory), ("redis", &fleet)] {
            let r = run(engine, &requests, threads, n);
            if threads == 1 {
                p99[usize::from(store == "redis")] = r.p99;
            }
            println!(
                "| {name} | {store} | {threads} | {:.1} | {:.1} | {:.0} | {:.2} |",
                r.p50, r.p99, r.per_second, r.round_trips
            );
        }
    }
    let s = fleet.stats();
    assert_eq!(s.store_errors, 0, "the store failed during the run");

    println!(
        "{name}: the fleet store adds {:.1} µs at p99 on one thread",
        p99[1] - p99[0]
    );
}

struct Run {
    p50: f64,
    p99: f64,
    per_second: f64,
    /// Store round trips per timed decision.
    round_trips: f64,
}

fn run(
    engine: &Arc<Engine>,
    requests: &Arc<Vec<DecisionRequest>>,
    threads: usize,
    n: usize,
) -> Run {
    // Warm up: connections, caches.
    for r in requests.iter().take(200) {
        std::hint::black_box(engine.decide(r).expect("decide"));
    }
    let calls = || engine.stats().fleet.map_or(0, |f| f.store_calls);
    let calls_before = calls();
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (engine, requests) = (engine.clone(), requests.clone());
            std::thread::spawn(move || {
                let mut times = Vec::with_capacity(n);
                for i in 0..n {
                    let r = &requests[(i * 7 + t * 131) % requests.len()];
                    let at = Instant::now();
                    let d = engine.decide(r).expect("decide");
                    times.push(at.elapsed().as_nanos() as u64);
                    std::hint::black_box(d);
                }
                times
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a decider panicked"))
        .collect();
    let elapsed = started.elapsed();
    let round_trips = (calls() - calls_before) as f64 / all.len() as f64;
    all.sort_unstable();
    let pct = |p: f64| {
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i] as f64 / 1_000.0
    };
    Run {
        p50: pct(0.50),
        p99: pct(0.99),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        round_trips,
    }
}

/// The server to measure against.
enum Server {
    Given(String),
    Own { port: u16, pid_file: PathBuf },
}

impl Server {
    fn find(dir: &Path) -> Option<Server> {
        if let Ok(url) = std::env::var("NEXTBEST_TEST_REDIS_URL") {
            if !url.is_empty() {
                return Some(Server::Given(url));
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let pid_file = dir.join("redis.pid");
        let started = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "yes"])
            .arg("--pidfile")
            .arg(&pid_file)
            .stdout(Stdio::null())
            .status()
            .ok()?;
        if !started.success() {
            return None;
        }
        let server = Server::Own { port, pid_file };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if nextbest::state::redis::RedisVolumes::connect(&StateConfig::new(server.url()))
                .is_ok()
            {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn url(&self) -> String {
        match self {
            Server::Given(u) => u.clone(),
            Server::Own { port, .. } => format!("redis://127.0.0.1:{port}/0"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Server::Own { pid_file, .. } = self {
            if let Ok(pid) = std::fs::read_to_string(pid_file) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}
