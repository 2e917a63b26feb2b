//! The command-line tool, run as a user would.

use std::io::Write;
use std::process::{Command, Stdio};

/// Run `nextbest args` from the repository root (where `rules/` and
/// `tests/fixtures/` are).
fn nextbest(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
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
        if let Some(s) = stdin {
            sin.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_a_good_rule_set_and_locates_every_error_in_a_bad_one() {
    let (code, out, _) = nextbest(&["validate", "tests/fixtures/mini"], None);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok: mini"), "{out}");
    let (code, _, err) = nextbest(&["validate", "tests/fixtures/broken"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("tests/fixtures/broken/actions/bad.toml:3:9: unknown group `cardz`"),
        "{err}"
    );
    assert!(
        err.contains("tests/fixtures/broken/actions/bad.toml:7:16: unknown attribute `agee`"),
        "{err}"
    );
}

#[test]
fn validate_json_lists_errors_with_line_and_column() {
    let (code, out, _) = nextbest(&["validate", "--json", "tests/fixtures/broken"], None);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 3);
    assert_eq!(v["errors"][0]["column"], 9);
}

#[test]
fn test_runs_personas_and_reports_the_count() {
    let (code, out, _) = nextbest(&["test", "tests/fixtures/mini"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 passed, 0 failed"), "{out}");
}

/// Every line is answered, a bad one with an error line; the run fails
/// with the count of failed lines unless `--allow-errors`.
#[test]
fn decide_answers_each_line_and_fails_with_a_count_when_lines_failed() {
    let input = concat!(
        r#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":90000,"segment":"gold"},"now":"2026-11-23T10:00:00Z"}"#,
        "\n",
        "{not json\n",
        r#"{"customer_id":"C2","channel":"fax","context":{}}"#,
        "\n",
        r#"{"customer_id":"C3","channel":"call_center","context":{"age":"old"}}"#,
        "\n",
        r#"{"customer_id":"C4","channel":"email","context":{"age":42,"income":90000,"segment":"gold"}}"#,
        "\n",
    );
    let (code, out, err) = nextbest(&["decide", "tests/fixtures/mini"], Some(input));
    assert_eq!(code, 1, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["actions"][0]["action"], "CARD_BASIC");
    assert_eq!(lines[1]["error"]["line"], 2);
    assert!(lines[2]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown channel `fax`"));
    assert!(lines[3]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`age`"));
    assert_eq!(
        lines[4]["actions"].as_array().unwrap().len(),
        1,
        "email limit is 1"
    );
    assert!(err.contains("2 decided, 3 of 5 line(s) failed"), "{err}");

    let allowed = ["decide", "tests/fixtures/mini", "--allow-errors"];
    let (code, again, err) = nextbest(&allowed, Some(input));
    assert_eq!(code, 0, "{err}");
    assert_eq!(again.lines().count(), 5);
    assert!(err.contains("3 of 5 line(s) failed"), "{err}");

    let good = input.lines().next().unwrap();
    let (code, _, err) = nextbest(&["decide", "tests/fixtures/mini"], Some(good));
    assert_eq!((code, err.as_str()), (0, ""));
}

/// A desktop runs `decide` as a subprocess: it writes a request and reads
/// the answer while its end of the pipe stays open.
#[test]
fn decide_answers_each_request_before_its_input_ends() {
    use std::io::BufRead;
    use std::sync::mpsc;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root)
        .args(["decide", "tests/fixtures/mini"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nextbest");
    let mut requests = child.stdin.take().expect("stdin");
    let answers = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in answers.lines() {
            if tx.send(line.expect("utf-8 answer")).is_err() {
                break;
            }
        }
    });
    // Waits only to fail instead of hanging when no answer ever comes.
    let mut answer = |request: &str| -> serde_json::Value {
        writeln!(requests, "{request}").expect("write a request");
        requests.flush().expect("flush the request");
        match rx.recv_timeout(std::time::Duration::from_secs(120)) {
            Ok(line) => serde_json::from_str(&line).expect("a JSON answer"),
            Err(e) => {
                let _ = child.kill();
                panic!("no answer to {request} while stdin is open ({e})");
            }
        }
    };
    let first = answer(
        r#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":90000,"segment":"gold"}}"#,
    );
    assert_eq!(first["actions"][0]["action"], "CARD_BASIC", "{first}");
    let second = answer(r#"{"customer_id":"C2","channel":"fax","context":{}}"#);
    assert_eq!(second["error"]["line"], 2, "{second}");
    drop(requests);
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 decided, 1 of 2 line(s) failed"), "{err}");
}

#[test]
fn simulate_reports_funnel_wins_and_customers_left_with_nothing() {
    let (code, out, err) = nextbest(&["simulate", "tests/fixtures/mini", "--json"], None);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(r["customers"], 3);
    assert_eq!(r["decisions"], 3);
    assert_eq!(r["funnel"]["candidates"], 9);
    assert_eq!(r["funnel"]["removed"]["eligibility"], 4);
    assert_eq!(r["no_action"], 1);
    assert_eq!(r["no_action_examples"][0], "M3");
    assert_eq!(r["wins"]["RETAIN"]["first"], 1);
    assert!(r["latency_ns"]["p50"].as_u64().unwrap() > 0);
}

#[test]
fn simulate_rejects_an_unknown_channel() {
    let (code, _, err) = nextbest(
        &["simulate", "tests/fixtures/mini", "--channel", "fax"],
        None,
    );
    assert_eq!(code, 1);
    assert!(err.contains("unknown channel `fax`"), "{err}");
}

#[test]
fn diff_reports_the_changed_share_the_shifted_actions_and_why() {
    let (code, out, err) = nextbest(
        &[
            "diff",
            "tests/fixtures/mini",
            "tests/fixtures/mini_v2",
            "--customers",
            "tests/fixtures/mini/customers.jsonl",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(r["customers"], 3);
    assert_eq!(r["changed"], 1);
    assert_eq!(r["actions"][0]["action"], "RETAIN");
    assert_eq!(r["actions"][0]["delta"], -1);
    assert_eq!(r["examples"][0]["customer_id"], "M2");
    let why = r["examples"][0]["why"].as_str().unwrap();
    assert!(
        why.contains("`RETAIN` is now removed at eligibility by `days_since(last_contact) > 400`"),
        "{why}"
    );
    let (code, out, _) = nextbest(
        &[
            "diff",
            "tests/fixtures/mini",
            "tests/fixtures/mini_v2",
            "--customers",
            "tests/fixtures/mini/customers.jsonl",
        ],
        None,
    );
    assert_eq!(code, 0);
    assert!(out.contains("1 of 3 decisions change (33.3%)"), "{out}");
}

#[test]
fn simulate_logs_zstd_when_the_name_says_so_and_replay_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl.zst");
    let log_arg = log.to_str().unwrap();
    let (code, _, err) = nextbest(&["simulate", "tests/fixtures/mini", "--log", log_arg], None);
    assert_eq!(code, 0, "{err}");
    let bytes = std::fs::read(&log).unwrap();
    assert!(bytes.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]), "not zstd");
    let (code, out, err) = nextbest(
        &[
            "replay",
            log_arg,
            "--rules",
            "tests/fixtures/mini",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json report");
    assert_eq!(r["decisions"], 3, "{r}");
    assert_eq!(r["matched"], 3, "{r}");
}

/// `replay` and `evaluate` take the directory of a rotated log, or a
/// pattern of its files, read them oldest first and say how many records
/// and files they read.
#[test]
fn replay_and_evaluate_read_a_rotated_log_from_its_directory_or_a_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let log_arg = log.to_str().unwrap();
    // Two runs, the first moved aside as the log rotates it (the second
    // appends, so the rotated file of the first is kept).
    for run in 0..2 {
        if log.exists() {
            std::fs::rename(&log, dir.path().join("d.jsonl.1")).unwrap();
        }
        let mut args = vec!["simulate", "tests/fixtures/mini", "--log", log_arg];
        if run == 1 {
            args.push("--append");
        }
        let (code, _, err) = nextbest(&args, None);
        assert_eq!(code, 0, "{err}");
    }
    let dir_arg = dir.path().to_str().unwrap();
    let (code, out, err) = nextbest(&["replay", dir_arg, "--rules", "tests/fixtures/mini"], None);
    assert_eq!(code, 0, "{out}{err}");
    let first = format!("read 6 records from 2 files ({dir_arg}/d.jsonl.1, {dir_arg}/d.jsonl)");
    assert!(out.starts_with(&first), "{out}");
    assert!(out.contains("6 decisions replayed exactly"), "{out}");
    let pattern = format!("{dir_arg}/d.jsonl*");
    let (code, out, err) = nextbest(
        &["evaluate", &pattern, "--rules", "tests/fixtures/mini"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&first), "{out}");
}

/// Decisions in a log, as `replay` counts them.
fn logged_decisions(log: &str) -> u64 {
    let (code, out, err) = nextbest(
        &["replay", log, "--rules", "tests/fixtures/mini", "--json"],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json report");
    r["decisions"].as_u64().unwrap()
}

#[test]
fn simulate_log_starts_a_new_log_each_run_unless_told_to_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let log_arg = log.to_str().unwrap();
    // A rotated file of an earlier run goes too: readers take PATH.1 as
    // older records of the same log.
    std::fs::write(dir.path().join("decisions.jsonl.1"), "{}\n").unwrap();
    let simulate = ["simulate", "tests/fixtures/mini", "--log", log_arg];
    let (code, _, err) = nextbest(&simulate, None);
    assert_eq!(code, 0, "{err}");
    assert!(!dir.path().join("decisions.jsonl.1").exists());
    let (code, _, err) = nextbest(&simulate, None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replaced the log of an earlier run"), "{err}");
    assert_eq!(logged_decisions(log_arg), 3, "the second run alone");

    let (code, _, err) = nextbest(&[&simulate[..], &["--append"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    assert_eq!(logged_decisions(log_arg), 6, "both runs");
}

/// A log of decisions and no outcomes measures nothing: `evaluate` and
/// `impact` say so and give no rate, rather than a bare 0.000%.
#[test]
fn estimates_from_a_log_without_outcomes_say_nothing_was_measured() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let log_arg = log.to_str().unwrap();
    let (code, _, err) = nextbest(&["simulate", "tests/fixtures/mini", "--log", log_arg], None);
    assert_eq!(code, 0, "{err}");

    let evaluate = ["evaluate", log_arg, "--rules", "tests/fixtures/mini"];
    let (code, out, err) = nextbest(&[&evaluate[..], &["--json"]].concat(), None);
    assert_eq!(code, 0, "{err}");
    let ev: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert!(ev["used"].as_u64().unwrap() > 0, "{ev}");
    assert_eq!(ev["joined_outcomes"], 0);
    for estimate in ["logged", "ips", "snips"] {
        assert!(ev[estimate].is_null(), "{estimate}: {ev}");
    }
    let warning = ev["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("no outcome in the log answers any of its 3 decisions"),
        "{warning}"
    );
    let (_, out, _) = nextbest(&evaluate, None);
    assert!(!out.contains("0.000%"), "{out}");
    assert!(out.contains("no outcomes: not measured"), "{out}");
    assert!(out.contains("warning: no outcome in the log"), "{out}");

    let (code, out, err) = nextbest(&["impact", log_arg, "--json"], None);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["joined_outcomes"], 0);
    assert!(r["arms"][0]["acceptance_rate"].is_null(), "{r}");
    assert!(r["arms"][0]["value_per_decision"].is_null(), "{r}");
    let warning = r["warnings"][0].as_str().unwrap();
    assert!(
        warning.starts_with("no outcome in the log joined any of its 3 decisions"),
        "{warning}"
    );
    let (_, out, _) = nextbest(&["impact", log_arg], None);
    assert!(!out.contains("0.0000 [0.0000, 0.0000]"), "{out}");
    assert!(out.contains("no outcomes: not measured"), "{out}");
}

/// Run `nextbest args` with its standard output closed after the first
/// line, as `nextbest ... | head -1` does; the exit code and stderr.
fn nextbest_into_head(args: &[&str]) -> (i32, String) {
    use std::io::{BufRead, Read};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nextbest");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("read the first line");
    // The reader is dropped here: the pipe is closed, as after `head -1`.
    assert!(!first.is_empty(), "{args:?} printed nothing");
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr");
    let status = child.wait().expect("wait");
    (status.code().unwrap_or(-1), err)
}

#[test]
fn a_reader_that_stops_early_ends_every_command_quietly_and_the_log_is_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("decisions.jsonl");
    let log = log.to_str().expect("utf-8 path");
    // simulate prints its report after deciding: the reader is gone by
    // then, and the log it wrote must still be complete.
    let (code, err) = nextbest_into_head(&["simulate", "rules/retail_bank", "--log", log]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let customers = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../rules/retail_bank/customers.jsonl"),
    )
    .expect("population");
    let records = std::fs::read_to_string(log).expect("log");
    assert_eq!(records.lines().count(), customers.lines().count());
    for args in [
        &["validate", "rules/retail_bank", "rules/telco_care"][..],
        &["test", "rules/retail_bank"],
        &["replay", log, "--rules", "rules/retail_bank", "--json"],
        &["evaluate", log, "--rules", "rules/retail_bank"],
        &[
            "diff",
            "rules/retail_bank",
            "rules/retail_bank",
            "--customers",
            "rules/retail_bank/customers.jsonl",
        ],
    ] {
        let (code, err) = nextbest_into_head(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_report_that_cannot_be_written_fails_the_command_with_the_reason() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root)
        .args(["validate", "rules/retail_bank"])
        .stdout(std::fs::File::create("/dev/full").expect("/dev/full"))
        .output()
        .expect("run nextbest");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: writing to standard output: No space left on device"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn decide_names_a_misspelt_attribute_and_strict_refuses_it() {
    let input = concat!(
        r#"{"customer_id":"C1","channel":"call_center","context":{"agee":42,"income":90000}}"#,
        "\n",
        r#"{"customer_id":"C2","channel":"call_center","context":{"age":42,"income":90000}}"#,
        "\n",
    );
    let (code, out, err) = nextbest(&["decide", "tests/fixtures/mini"], Some(input));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        lines[0]["warnings"][0],
        "context attribute `agee` is not in the schema and was ignored (did you mean `age`?)"
    );
    assert!(lines[1].get("warnings").is_none(), "{}", lines[1]);
    assert!(
        err.contains("1 decision(s) ignored context attributes the schema does not declare"),
        "{err}"
    );
    let (code, out, err) = nextbest(&["decide", "--strict", "tests/fixtures/mini"], Some(input));
    assert_eq!(code, 1, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(
        lines[0]["error"]["message"],
        "context attribute `agee`: not in the schema (did you mean `age`?)"
    );
    assert!(lines[1]["actions"].is_array(), "{}", lines[1]);
    // simulate counts the lines that named it.
    let dir = tempfile::tempdir().expect("tempdir");
    let population = dir.path().join("typo.jsonl");
    std::fs::write(&population, input).expect("population");
    let (code, out, err) = nextbest(
        &[
            "simulate",
            "tests/fixtures/mini",
            "--customers",
            population.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("warning: context attribute `agee` is not in the schema and was ignored (did you mean `age`?): 1 line(s)"),
        "{out}"
    );
}
