//! `nextbest outcome`: outcome lines in, one status line out each, bad
//! lines reported and skipped; with `--state`, recorded in the fleet's
//! shared store, where another process's next decision sees them.
//!
//! The Redis test reads the server's URL from `NEXTBEST_TEST_REDIS_URL`
//! (`.ci/run` starts one). Without it, it skips with a note, except under
//! CI (`CI` set), where a missing server is a failure.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

#[path = "../../../tests/support/redis.rs"]
mod support;
use support::*;

/// Run `nextbest args` from the repository root with `stdin`: (exit code,
/// stdout, stderr).
fn nextbest(args: &[&str], stdin: &str) -> (i32, String, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nextbest");
    {
        let mut sin = child.stdin.take().expect("stdin");
        sin.write_all(stdin.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Every line is answered in order, a bad one with an error line naming
/// it; the good lines after it are still recorded (here, into the log);
/// the run fails with the count unless `--allow-errors`.
#[test]
fn outcome_answers_each_line_and_fails_with_a_count_when_lines_failed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("outcomes.jsonl");
    let input = concat!(
        r#"{"customer_id":"C1","action":"CARD_GOLD","channel":"email","outcome":"accepted"}"#,
        "\n",
        "{not json\n",
        "\n",
        r#"{"customer_id":"C2","action":"NO_SUCH","channel":"email","outcome":"rejected"}"#,
        "\n",
        r#"{"customer_id":"C3","action":"CARD_GOLD","channel":"fax","outcome":"rejected"}"#,
        "\n",
        r#"{"customer_id":"C4","action":"CARD_BASIC","channel":"call_center","outcome":"rejected"}"#,
        "\n",
    );
    let log_arg = log.to_str().unwrap();
    let args = ["outcome", "tests/fixtures/mini", "--log", log_arg];
    let (code, out, err) = nextbest(&args, input);
    assert_eq!(code, 1, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 5, "one answer per non-blank line: {out}");
    assert_eq!(lines[0], serde_json::json!({"line": 1, "recorded": true}));
    assert_eq!(lines[1]["error"]["line"], 2);
    assert_eq!(lines[2]["error"]["line"], 4);
    assert!(
        lines[2]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown action `NO_SUCH`"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["error"]["line"], 5);
    assert!(lines[3]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`fax`"));
    assert_eq!(lines[4], serde_json::json!({"line": 6, "recorded": true}));
    assert!(err.contains("2 recorded, 3 of 5 line(s) failed"), "{err}");
    // The two good outcomes are in the log, in order.
    let logged: Vec<serde_json::Value> = json_lines(&std::fs::read_to_string(&log).unwrap());
    let customers: Vec<&str> = logged
        .iter()
        .map(|r| r["customer_id"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["C1", "C4"]);

    // --allow-errors: the same answers, exit 0; the log is appended to.
    let allowed = [
        "outcome",
        "tests/fixtures/mini",
        "--log",
        log_arg,
        "--allow-errors",
    ];
    let (code, again, err) = nextbest(&allowed, input);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_lines(&again), lines);
    assert!(err.contains("3 of 5 line(s) failed"), "{err}");
    assert_eq!(json_lines(&std::fs::read_to_string(&log).unwrap()).len(), 4);
}

#[test]
fn outcome_with_a_store_that_is_down_fails_at_once_naming_it() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let line =
        r#"{"customer_id":"C1","action":"CARD_GOLD","channel":"email","outcome":"accepted"}"#;
    let (code, out, err) = nextbest(
        &[
            "outcome",
            "tests/fixtures/mini",
            "--state",
            &url,
            "--state-timeout-ms",
            "2000",
        ],
        line,
    );
    assert_eq!(code, 1);
    assert_eq!(out, "");
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("unavailable"),
        "{err}"
    );
}

/// A rule set whose policy suppresses an action its customer rejected in
/// the last 30 days.
fn write_rules(dir: &Path) {
    std::fs::create_dir_all(dir.join("actions")).unwrap();
    std::fs::write(
        dir.join("ruleset.toml"),
        r#"
name = "fleet_outcomes"
default_limit = 1
[schema]
age = "int"
[channels]
web = { direction = "inbound", limit = 1 }
[issues.growth]
[groups.cards]
issue = "growth"

[[contact_policies]]
name = "rejected_lately"
outcomes = ["rejected"]
count = 1
within = "30d"
"#,
    )
    .unwrap();
    let mut actions = String::new();
    for (id, value) in [("CARD_A", 30.0), ("CARD_B", 20.0)] {
        actions.push_str(&format!(
            "[[actions]]\nid = \"{id}\"\ngroup = \"cards\"\nchannels = [\"web\"]\nvalue = {value}\nstarting_propensity = 0.1\ntreatment = \"{id}\"\n\n"
        ));
    }
    std::fs::write(dir.join("actions/cards.toml"), actions).unwrap();
}

/// `nextbest decide DIR --state URL` for each customer (one process): the
/// action each got.
fn decide(dir: &str, url: &str, customers: &[&str]) -> Vec<String> {
    let input: String = customers
        .iter()
        .map(|c| {
            format!(
                "{{\"customer_id\":\"{c}\",\"channel\":\"web\",\"context\":{{\"age\":40}},\"now\":\"2026-11-23T10:00:00Z\"}}\n"
            )
        })
        .collect();
    let (code, out, err) = nextbest(
        &["decide", dir, "--state", url, "--state-timeout-ms", "2000"],
        &input,
    );
    assert_eq!(code, 0, "{err}");
    json_lines(&out)
        .iter()
        .map(|d| d["actions"][0]["action"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_outcome_recorded_through_the_cli_suppresses_the_action_in_another_process() {
    let Some(url) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path());
    let rules = dir.path().to_str().unwrap();
    // Customers no other run uses (the CLI writes under the default prefix).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let (x, y) = (
        format!("x-{}-{nanos}", std::process::id()),
        format!("y-{}-{nanos}", std::process::id()),
    );
    assert_eq!(decide(rules, &url, &[&x, &y]), ["CARD_A", "CARD_A"]);

    // A bad line first: reported, skipped, and the line after it served.
    let input = format!(
        "{{oops\n{{\"customer_id\":\"{x}\",\"action\":\"CARD_A\",\"channel\":\"web\",\"outcome\":\"rejected\",\"timestamp\":\"2026-11-23T09:00:00Z\"}}\n"
    );
    let (code, out, err) = nextbest(
        &[
            "outcome",
            rules,
            "--state",
            &url,
            "--state-timeout-ms",
            "2000",
        ],
        &input,
    );
    assert_eq!(code, 1, "{err}");
    let lines = json_lines(&out);
    assert_eq!(lines[0]["error"]["line"], 1);
    assert_eq!(lines[1], serde_json::json!({"line": 2, "recorded": true}));
    assert!(err.contains("1 recorded, 1 of 2 line(s) failed"), "{err}");

    // Another process's next decision: x rejected CARD_A, y did not.
    assert_eq!(decide(rules, &url, &[&x, &y]), ["CARD_B", "CARD_A"]);
}
