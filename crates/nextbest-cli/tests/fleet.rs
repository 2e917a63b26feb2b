//! Rule rollout to the fleet, end to end, with real processes (issue 29):
//! three `nextbest decide --state URL --follow` instances serve what
//! `nextbest publish DIR --state URL` made live, under the fleet's
//! number, within a few seconds; a broken rule directory is refused by
//! `publish` and never reaches an instance; `nextbest rollback` brings
//! every instance back; `nextbest fleet` lists them with the version each
//! serves.
//!
//! The Redis server's URL comes from `NEXTBEST_TEST_REDIS_URL` (`.ci/run`
//! starts one). Without it, it skips with a note, except under CI (`CI`
//! set), where a missing server is a failure.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/redis.rs"]
mod support;
use support::*;

const INSTANCES: usize = 3;
/// How long every instance has to serve a new live version.
const WITHIN: Duration = Duration::from_secs(5);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Run `nextbest args` to its end: (exit code, stdout, stderr).
fn nextbest(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("run nextbest");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `nextbest fleet --json`.
fn fleet(url: &str, prefix: &str) -> serde_json::Value {
    let (code, out, err) = nextbest(&["fleet", "--state", url, "--key-prefix", prefix, "--json"]);
    assert_eq!(code, 0, "nextbest fleet: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// One following instance: a `nextbest decide` process answering request
/// lines through pipes.
struct Instance {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl Instance {
    fn start(url: &str, prefix: &str, id: &str) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nextbest"))
            .current_dir(root())
            .args([
                "decide",
                "--state",
                url,
                "--key-prefix",
                prefix,
                "--state-timeout-ms",
                "500",
            ])
            .args(["--follow", "--instance-id", id, "--heartbeat-ms", "200"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run nextbest decide --follow");
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().expect("stdout"));
        Instance {
            child,
            input,
            output,
        }
    }

    /// Decide once: the version number the decision carries.
    fn version(&mut self) -> u64 {
        let request = r#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":50000.0,"segment":"gold","call_reason":"billing","last_contact":"2026-11-20T09:00:00Z"}}"#;
        let input = self.input.as_mut().expect("running");
        writeln!(input, "{request}").expect("write a request");
        input.flush().expect("flush");
        let mut line = String::new();
        self.output.read_line(&mut line).expect("read a decision");
        let d: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        d["ruleset"]["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("no version in {line}"))
    }

    /// Close its input: it ends, and leaves the fleet.
    fn stop(mut self) {
        drop(self.input.take());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the instance exited with {status}");
    }
}

/// Wait until every instance decides with `version` (at most
/// [`WITHIN`]); how long it took.
fn all_serve(instances: &mut [Instance], version: u64) -> Duration {
    let start = Instant::now();
    for (i, inst) in instances.iter_mut().enumerate() {
        loop {
            let got = inst.version();
            if got == version {
                break;
            }
            assert!(
                start.elapsed() < WITHIN,
                "instance {i} still decides with version {got}, not {version}, after {WITHIN:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    start.elapsed()
}

/// Wait until `nextbest fleet` lists `n` instances all serving `version`.
fn listed(url: &str, prefix: &str, n: usize, version: u64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let f = fleet(url, prefix);
        let instances = f["instances"].as_array().cloned().unwrap_or_default();
        if instances.len() == n && instances.iter().all(|i| i["version"] == version) {
            return f;
        }
        assert!(
            start.elapsed() < WITHIN,
            "nextbest fleet does not list {n} instances on version {version}: {f}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Make version `number` live with rules that do not compile, as no
/// `nextbest publish` would, and announce it.
fn plant_broken(url: &str, prefix: &str, number: u64) {
    let record = serde_json::json!({
        "name": "mini", "hash": "0".repeat(64), "by": "mallory",
        "published": "2026-12-01T00:00:00Z",
        "files": {"ruleset.toml": "name = \"mini\"\n[schema]\nage = \"integer\"\n"},
    });
    let key = |k: &str| format!("{prefix}{{fleet}}:{k}");
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("a connection");
    redis::pipe()
        .cmd("HSET")
        .arg(key("versions"))
        .arg(number)
        .arg(record.to_string())
        .cmd("SET")
        .arg(key("live"))
        .arg(number)
        .cmd("SET")
        .arg(key("live_hash"))
        .arg("0".repeat(64))
        .cmd("PUBLISH")
        .arg(key("notify"))
        .arg(number)
        .query::<()>(&mut con)
        .expect("plant a version");
}

/// The mini rule set without its personas, and its second version.
fn rule_dirs(tmp: &Path) -> (PathBuf, PathBuf) {
    let mut dirs = Vec::new();
    for name in ["mini", "mini_v2"] {
        let to = tmp.join(name);
        std::fs::create_dir_all(to.join("actions")).expect("mkdir");
        let from = root().join("tests/fixtures").join(name);
        for f in ["ruleset.toml", "actions/actions.toml"] {
            std::fs::copy(from.join(f), to.join(f)).expect("copy the fixture");
        }
        dirs.push(to);
    }
    (dirs[0].clone(), dirs[1].clone())
}

#[test]
fn a_publish_reaches_every_instance_a_broken_one_none_and_a_rollback_all() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("cli_rollout");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (v1_dir, v2_dir) = rule_dirs(tmp.path());
    let (v1_dir, v2_dir) = (v1_dir.to_string_lossy(), v2_dir.to_string_lossy());
    let publish = |dir: &str| {
        nextbest(&[
            "publish",
            dir,
            "--state",
            &url,
            "--key-prefix",
            &prefix,
            "--by",
            "alice",
            "--json",
        ])
    };

    // Version 1 of the fleet; the instances start from it (no rule
    // directory of their own).
    let (code, out, err) = publish(&v1_dir);
    assert_eq!(code, 0, "{err}");
    let first: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(first["version"], 1);
    let mut instances: Vec<Instance> = (0..INSTANCES)
        .map(|i| Instance::start(&url, &prefix, &format!("inst-{i}")))
        .collect();
    all_serve(&mut instances, 1);
    listed(&url, &prefix, INSTANCES, 1);

    // A new version: every process serves it, under the fleet's number.
    let (code, out, err) = publish(&v2_dir);
    assert_eq!(code, 0, "{err}");
    let second: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(second["version"], 2);
    let took = all_serve(&mut instances, 2);
    eprintln!("every instance served version 2 within {took:?}");

    // A broken rule directory is refused with its errors' locations, and
    // nothing reaches the store or an instance.
    let (code, _, err) = publish("tests/fixtures/broken");
    assert_eq!(code, 1);
    assert!(err.contains("actions/bad.toml:3:9"), "{err}");
    let f = fleet(&url, &prefix);
    assert_eq!(f["live"]["version"], 2, "{f}");
    std::thread::sleep(Duration::from_millis(500));
    for inst in &mut instances {
        assert_eq!(inst.version(), 2);
    }

    // A version that `publish` would have refused, planted in the store
    // by hand (as another build, or a bad hand, could): every instance
    // refuses it, keeps serving version 2, and says so in `nextbest fleet`.
    plant_broken(&url, &prefix, 9);
    let start = Instant::now();
    loop {
        let f = fleet(&url, &prefix);
        let instances = f["instances"].as_array().cloned().unwrap_or_default();
        let refused = |i: &serde_json::Value| {
            i["refused"] == 1
                && i["version"] == 2
                && i["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("fleet version 9"))
        };
        if instances.len() == INSTANCES && instances.iter().all(refused) {
            break;
        }
        assert!(start.elapsed() < WITHIN, "not refused everywhere: {f}");
        std::thread::sleep(Duration::from_millis(100));
    }
    for inst in &mut instances {
        assert_eq!(inst.version(), 2);
    }
    // The fleet recovers with the next publish (version 3 here: the
    // planted 9 took no number from the counter), served everywhere.
    let (code, out, err) = publish(&v1_dir);
    assert_eq!(code, 0, "{err}");
    let third: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(third["version"], 3);
    all_serve(&mut instances, 3);
    // Back to 2 for what follows.
    let (code, _, err) = nextbest(&["rollback", "--state", &url, "--key-prefix", &prefix]);
    assert_eq!(code, 0, "{err}");
    all_serve(&mut instances, 2);

    // `nextbest fleet` lists every instance with the version it serves.
    let f = listed(&url, &prefix, INSTANCES, 2);
    let ids: Vec<&str> = f["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert_eq!(ids, ["inst-0", "inst-1", "inst-2"]);
    for i in f["instances"].as_array().into_iter().flatten() {
        assert_eq!(i["hash"], second["hash"], "{i}");
        assert!(i["decisions"].as_u64().unwrap_or(0) >= 1, "{i}");
        assert!(i["heartbeat"].as_str().is_some(), "{i}");
    }

    // Rollback: every instance serves version 1 again (the live stack is
    // 1, 2: 3 was rolled back, 9 was never published).
    let (code, out, err) = nextbest(&[
        "rollback",
        "--state",
        &url,
        "--key-prefix",
        &prefix,
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let back: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(back["version"], 1);
    assert_eq!(back["hash"], first["hash"]);
    all_serve(&mut instances, 1);
    listed(&url, &prefix, INSTANCES, 1);

    // Nothing earlier to go back to: refused, nothing changes.
    let (code, _, err) = nextbest(&["rollback", "--state", &url, "--key-prefix", &prefix]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no version was live before version 1"),
        "{err}"
    );
    // --to goes forward again.
    let (code, _, err) = nextbest(&[
        "rollback",
        "--state",
        &url,
        "--key-prefix",
        &prefix,
        "--to",
        "2",
    ]);
    assert_eq!(code, 0, "{err}");
    all_serve(&mut instances, 2);

    // The change log says who did what.
    let (code, out, _) = nextbest(&[
        "fleet",
        "--state",
        &url,
        "--key-prefix",
        &prefix,
        "--history",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("publish 1 by alice"), "{out}");
    assert!(out.contains("publish 3 by alice"), "{out}");
    assert!(out.contains("rollback 2 from 3"), "{out}");
    assert!(out.contains("rollback 1 from 2"), "{out}");
    assert!(out.contains("rollback 2 from 1"), "{out}");

    // Stopped instances leave the listing.
    for inst in instances {
        inst.stop();
    }
    let f = fleet(&url, &prefix);
    assert_eq!(f["instances"].as_array().map(Vec::len), Some(0), "{f}");
}

#[test]
fn publishing_the_live_content_again_changes_nothing() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("cli_rollout_same");
    let args = [
        "publish",
        "tests/fixtures/mini",
        "--state",
        &url,
        "--key-prefix",
        &prefix,
    ];
    let (code, out, err) = nextbest(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("as fleet version 1"), "{out}");
    let (code, out, err) = nextbest(&args);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("unchanged: fleet version 1"), "{out}");
    assert_eq!(fleet(&url, &prefix)["live"]["version"], 1);
}

#[test]
fn follow_without_a_rule_directory_needs_a_published_version() {
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix("cli_rollout_empty");
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root())
        .args([
            "decide",
            "--state",
            &url,
            "--key-prefix",
            &prefix,
            "--follow",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing has been published"), "{err}");
}

/// `simulate --state URL` decides against the fleet's store (its history
/// and caps are read, its learning counts exchanged), and a store that
/// cannot be reached is an error naming it, before any decision.
#[test]
fn simulate_decides_against_the_fleet_store() {
    let Some(url) = redis_url() else { return };
    let (code, out, err) = nextbest(&["simulate", "rules/retail_bank", "--state", &url, "--json"]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(report.to_string().contains("decisions"), "{report}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("redis://127.0.0.1:{port}/0");
    let (code, _, err) = nextbest(&["simulate", "rules/retail_bank", "--state", &down]);
    assert_ne!(code, 0);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}
