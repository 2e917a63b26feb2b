//! The decision log: masking, concurrency, rotation, durability, replay,
//! and failures (crashes are in `log_crash.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use nextbest::audit::reader::read_log;
use nextbest::audit::{
    Compression, LogConfig, LogDetail, LogOptions, Masking, MemorySink, WhenFull,
};
use nextbest::tools::replay::{replay, VersionSources};
use nextbest::{Engine, EngineConfig, RuleSet};

fn memory_engine(dir: &str, masking: Masking) -> (Engine, MemorySink) {
    let sink = MemorySink::new();
    let options = LogOptions {
        masking,
        ..LogOptions::default()
    };
    let engine = Engine::with_sink(
        RuleSet::from_dir(dir).unwrap(),
        EngineConfig::default(),
        Box::new(sink.clone()),
        options,
    )
    .unwrap();
    (engine, sink)
}

fn records(sink: &MemorySink) -> Vec<serde_json::Value> {
    sink.records()
        .iter()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

const MASKED_REQ: &str = r#"{"customer_id":"C1","channel":"web","context":{"age":40,"email":"ann@example.com","national_id":"AB123","vip":true},"now":"2026-11-23T10:00:00Z"}"#;

#[test]
fn sensitive_attributes_are_masked_before_any_sink_sees_them() {
    let (engine, sink) = memory_engine("tests/fixtures/masked", Masking::Fixed);
    engine.decide_json(MASKED_REQ).unwrap();
    engine.flush().unwrap();
    let lines = sink.records();
    assert_eq!(lines.len(), 1);
    assert!(
        !lines[0].contains("ann@example.com") && !lines[0].contains("AB123"),
        "{}",
        lines[0]
    );
    let r = &records(&sink)[0];
    assert_eq!(r["context"]["email"], "***");
    assert_eq!(r["context"]["age"], 40);
    assert_eq!(r["masked"], serde_json::json!(["email", "national_id"]));
}

#[test]
fn keyed_masks_keep_equal_values_joinable() {
    let (engine, sink) = memory_engine("tests/fixtures/masked", Masking::KeyedHash(b"k1".to_vec()));
    engine.decide_json(MASKED_REQ).unwrap();
    engine.decide_json(&MASKED_REQ.replace("C1", "C2")).unwrap();
    engine
        .decide_json(&MASKED_REQ.replace("ann@", "bob@"))
        .unwrap();
    engine.flush().unwrap();
    let r = records(&sink);
    let masks: Vec<&str> = r
        .iter()
        .map(|x| x["context"]["email"].as_str().unwrap())
        .collect();
    assert!(
        masks[0].starts_with("hmac:") && masks[0].len() == 5 + 32,
        "{}",
        masks[0]
    );
    assert_eq!(masks[0], masks[1]);
    assert_ne!(masks[0], masks[2]);
    // A different key gives a different mask: the mask is keyed.
    let (other, sink2) = memory_engine("tests/fixtures/masked", Masking::KeyedHash(b"k2".to_vec()));
    other.decide_json(MASKED_REQ).unwrap();
    other.flush().unwrap();
    assert_ne!(
        records(&sink2)[0]["context"]["email"].as_str().unwrap(),
        masks[0]
    );
}

#[test]
fn records_equal_decisions_made_across_threads_and_none_interleave() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let mut config = EngineConfig::default();
    config.decision_log = Some(LogConfig::new(&path));
    let engine = Arc::new(
        Engine::try_with_config(RuleSet::from_dir("tests/fixtures/mini").unwrap(), config).unwrap(),
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..2_000 {
                    let req = format!(
                        r#"{{"customer_id":"T{t}-{i}","channel":"call_center","context":{{"age":{},"income":50000.0,"segment":"gold"}}}}"#,
                        18 + i % 50
                    );
                    engine.decide_json(&req).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    engine.flush().unwrap();
    let (lines, problems) = read_log(&[path]).unwrap();
    assert!(problems.corrupt_lines.is_empty() && problems.partial_last_lines.is_empty());
    assert_eq!(lines.len(), 8_000);
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l.record["decision_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8_000);
    let stats = engine.stats().log.unwrap();
    assert_eq!((stats.written, stats.dropped, stats.errors), (8_000, 0, 0));
}

#[test]
fn files_rotate_by_size_and_only_keep_files_are_retained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let mut lc = LogConfig::new(&path);
    lc.max_bytes = 16 * 1024;
    lc.keep_files = 3;
    let mut config = EngineConfig::default();
    config.decision_log = Some(lc);
    let engine =
        Engine::try_with_config(RuleSet::from_dir("tests/fixtures/mini").unwrap(), config).unwrap();
    for i in 0..600 {
        engine
            .decide_json(&format!(
                r#"{{"customer_id":"C{i}","channel":"call_center","context":{{"age":30}}}}"#
            ))
            .unwrap();
    }
    engine.flush().unwrap();
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec!["d.jsonl", "d.jsonl.1", "d.jsonl.2", "d.jsonl.3"]
    );
    for f in &files {
        let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
        assert!(len <= 16 * 1024, "{f} is {len} bytes");
    }
    // Rotated files hold whole records only.
    let all: Vec<PathBuf> = files.iter().rev().map(|f| dir.path().join(f)).collect();
    let (lines, problems) = read_log(&all).unwrap();
    assert!(problems.corrupt_lines.is_empty() && problems.partial_last_lines.is_empty());
    assert!(lines.len() < 600, "older files were removed");
}

/// `keep_for`: at the next rotation, rotated files last written longer ago
/// than it are deleted, whatever `keep_files` allows.
#[test]
fn rotated_files_older_than_keep_for_go_at_the_next_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.jsonl");
    let open = |keep_for: &str| {
        let mut lc = LogConfig::new(&path);
        lc.max_bytes = 16 * 1024;
        lc.keep_files = 100;
        lc.keep_for = Some(keep_for.into());
        let mut config = EngineConfig::default();
        config.decision_log = Some(lc);
        Engine::try_with_config(RuleSet::from_dir("tests/fixtures/mini").unwrap(), config)
    };
    let decide = |engine: &Engine, from: usize, n: usize| {
        for i in from..from + n {
            engine
                .decide_json(&format!(
                    r#"{{"customer_id":"C{i}","channel":"call_center","context":{{"age":30}}}}"#
                ))
                .unwrap();
        }
        engine.flush().unwrap();
    };
    let rotated = || {
        (1..)
            .map(|n| dir.path().join(format!("d.jsonl.{n}")))
            .take_while(|p| p.exists())
            .collect::<Vec<_>>()
    };
    let err = open("a week").unwrap_err().to_string();
    assert!(
        err.contains("decision_log.keep_for") && err.contains("`a week`"),
        "{err}"
    );

    let engine = open("1h").unwrap();
    decide(&engine, 0, 600);
    let before = rotated();
    assert!(before.len() >= 4, "{} rotated files", before.len());
    // All but the newest rotated file were last written two hours ago.
    let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    for p in &before[1..] {
        std::fs::File::options()
            .append(true)
            .open(p)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
    }
    // One more rotation: `d.jsonl.1` is another file.
    let inode = |p: &std::path::Path| {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    };
    let newest = inode(&before[0]);
    let mut i = 600;
    while inode(&before[0]) == newest {
        decide(&engine, i, 20);
        i += 20;
        assert!(i < 2000, "the log rotates");
    }
    let after = rotated();
    assert_eq!(
        after.len(),
        2,
        "the newest file rotated and the one before it are kept: {after:?}"
    );
}

#[test]
fn the_drop_policy_never_blocks_and_counts_what_it_drops() {
    struct Slow;
    impl nextbest::audit::Sink for Slow {
        fn write(&mut self, _: &str) -> std::io::Result<()> {
            std::thread::sleep(std::time::Duration::from_millis(2));
            Ok(())
        }
        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let options = LogOptions {
        queue_capacity: 4,
        when_full: WhenFull::Drop,
        ..LogOptions::default()
    };
    let engine = Engine::with_sink(
        RuleSet::from_dir("tests/fixtures/mini").unwrap(),
        EngineConfig::default(),
        Box::new(Slow),
        options,
    )
    .unwrap();
    for i in 0..200 {
        engine
            .decide_json(&format!(
                r#"{{"customer_id":"C{i}","channel":"call_center","context":{{"age":30}}}}"#
            ))
            .unwrap();
    }
    engine.flush().unwrap();
    let s = engine.stats().log.unwrap();
    assert!(s.dropped > 0, "{s:?}");
    assert_eq!(s.queued + s.dropped, 200);
    assert_eq!(s.written, s.queued);
}

#[test]
fn outcomes_are_logged_and_validated() {
    let (engine, sink) = memory_engine("tests/fixtures/mini", Masking::Fixed);
    let d = engine
        .decide_json(r#"{"customer_id":"C1","channel":"call_center","context":{"age":42,"income":90000,"segment":"gold"}}"#)
        .unwrap();
    let outcome = format!(
        r#"{{"decision_id":"{}","customer_id":"C1","action":"CARD_GOLD","channel":"call_center","outcome":"accepted"}}"#,
        d.id()
    );
    engine.record_outcome_json(&outcome).unwrap();
    let err = engine
        .record_outcome_json(
            r#"{"customer_id":"C1","action":"NOPE","channel":"call_center","outcome":"accepted"}"#,
        )
        .unwrap_err();
    assert!(err.to_string().contains("unknown action `NOPE`"), "{err}");
    let err = engine
        .record_outcome_json(r#"{"customer_id":"C1","action":"CARD_GOLD","channel":"call_center","outcome":"loved_it"}"#)
        .unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `loved_it`"),
        "{err}"
    );
    engine.flush().unwrap();
    let r = records(&sink);
    assert_eq!(r.len(), 2);
    assert_eq!(r[1]["kind"], "outcome");
    assert_eq!(r[1]["decision_id"], d.id().to_string());
    assert_eq!(r[1]["outcome"], "accepted");
    assert_eq!(engine.stats().outcomes, 1);
}

/// Replay `log` on the rule directory `rules` (no archive).
fn replay_on(log: &Path, rules: impl Into<PathBuf>) -> nextbest::tools::replay::ReplayReport {
    replay(
        &[log.to_path_buf()],
        &VersionSources {
            rules_dir: Some(rules.into()),
            archive_dir: None,
        },
    )
    .unwrap()
}

/// The records of a plain log file.
fn file_records(log: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

fn log_population(
    rules: &Path,
    customers: &Path,
    log: &Path,
    compression: Compression,
    detail: LogDetail,
) {
    let mut config = EngineConfig::default();
    let mut lc = LogConfig::new(log);
    lc.compression = compression;
    lc.candidates = detail;
    lc.archive_dir = Some(log.with_extension("archive"));
    config.decision_log = Some(lc);
    let engine = Engine::try_with_config(RuleSet::from_dir(rules).unwrap(), config).unwrap();
    for line in std::fs::read_to_string(customers).unwrap().lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let channels: Vec<String> = engine
            .current()
            .rules()
            .channel_names()
            .map(str::to_string)
            .collect();
        for ch in channels {
            let req = serde_json::json!({"customer_id": c["customer_id"], "channel": ch, "context": c["context"],
                                         "now": "2026-11-23T10:00:00Z"});
            engine.decide_json(&req.to_string()).unwrap();
        }
    }
    engine.flush().unwrap();
}

#[test]
fn every_logged_decision_replays_exactly_on_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut sets: Vec<PathBuf> = vec!["tests/fixtures/mini".into()];
    for s in ["rules/retail_bank", "rules/telco_care"] {
        if Path::new(s).join("customers.jsonl").exists() {
            sets.push(s.into());
        }
    }
    // Every set with the default detail (`stages`) and with `all`; the
    // small set compressed too: replay reads zstd logs.
    let runs = sets.iter().flat_map(|s| {
        let zstd = s
            .ends_with("mini")
            .then_some((s, Compression::Zstd, LogDetail::Stages));
        [
            (s, Compression::None, LogDetail::Stages),
            (s, Compression::None, LogDetail::All),
        ]
        .into_iter()
        .chain(zstd)
    });
    for (set, compression, detail) in runs {
        let log = dir.path().join(format!(
            "{}-{detail:?}.jsonl{}",
            set.file_name().unwrap().to_string_lossy(),
            if compression == Compression::Zstd {
                ".zst"
            } else {
                ""
            }
        ));
        log_population(set, &set.join("customers.jsonl"), &log, compression, detail);
        if compression == Compression::Zstd {
            let head = std::fs::read(&log).unwrap();
            assert!(head.starts_with(&[0x28, 0xB5, 0x2F, 0xFD]), "not zstd");
        }
        let by_dir = replay_on(&log, set);
        assert!(
            by_dir.ok(),
            "{}: {:?}",
            set.display(),
            by_dir.mismatches.iter().take(3).collect::<Vec<_>>()
        );
        assert!(by_dir.decisions > 0);
        assert_eq!(by_dir.matched, by_dir.decisions, "{}", set.display());
        // The archive written on publish identifies the version too.
        let by_archive = replay(
            std::slice::from_ref(&log),
            &VersionSources {
                rules_dir: None,
                archive_dir: Some(log.with_extension("archive")),
            },
        )
        .unwrap();
        assert_eq!(by_archive.matched, by_dir.decisions);
    }
}

/// A `stages` record names, for every removed candidate, the stage that an
/// `all` record of the same decision gives it, and ranks the same
/// candidates; replay notices a candidate moved to another stage.
#[test]
fn stages_records_carry_every_removal_stage_of_the_full_record() {
    for set in ["rules/retail_bank", "rules/telco_care"] {
        let dir = tempfile::tempdir().unwrap();
        let set = Path::new(set);
        let customers = set.join("customers.jsonl");
        let logs = [LogDetail::All, LogDetail::Stages].map(|detail| {
            let log = dir.path().join(format!("{detail:?}.jsonl"));
            log_population(set, &customers, &log, Compression::None, detail);
            let mut records = file_records(&log);
            records.retain(|r| r["kind"] == "decision");
            records
        });
        let [all, stages] = &logs;
        assert_eq!(all.len(), stages.len());
        let mut removed = 0;
        for (a, s) in all.iter().zip(stages) {
            assert_eq!(s["detail"], "stages");
            assert_eq!(a["customer_id"], s["customer_id"]);
            let cands = a["candidates"].as_array().unwrap();
            let mut want: Vec<(String, String)> = cands
                .iter()
                .filter(|c| c.get("stage").is_some())
                .map(|c| (c["stage"].to_string(), c["action"].to_string()))
                .collect();
            let mut got: Vec<(String, String)> = s["removed"]
                .as_object()
                .unwrap()
                .iter()
                .flat_map(|(stage, actions)| {
                    let stage = serde_json::Value::from(stage.as_str()).to_string();
                    actions
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(move |a| (stage.clone(), a.to_string()))
                })
                .collect();
            want.sort();
            got.sort();
            assert_eq!(got, want, "{}", s["customer_id"]);
            removed += got.len();
            let ranked: Vec<&serde_json::Value> =
                cands.iter().filter(|c| c.get("rank").is_some()).collect();
            let s_ranked: Vec<&serde_json::Value> =
                s["candidates"].as_array().unwrap().iter().collect();
            assert_eq!(ranked, s_ranked);
        }
        assert!(
            removed > all.len(),
            "{}: too few removals to test",
            set.display()
        );

        // Move one removed candidate to another stage: replay must notice.
        let log = dir.path().join("Stages.jsonl");
        let text = std::fs::read_to_string(&log).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let (i, mut rec) = lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i, serde_json::from_str::<serde_json::Value>(l).unwrap()))
            .find(|(_, r)| r["removed"].get("eligibility").is_some())
            .expect("a record with an eligibility removal");
        let moved = rec["removed"]["eligibility"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        rec["removed"]["suitability"] = serde_json::json!([moved]);
        lines[i] = rec.to_string();
        let tampered = dir.path().join("tampered.jsonl");
        std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
        let report = replay_on(&tampered, set);
        assert_eq!(report.mismatches.len(), 1, "{:?}", report.mismatches);
        assert!(
            report.mismatches[0].contains("removed at suitability was logged"),
            "{}",
            report.mismatches[0]
        );
    }
}

#[test]
fn replay_refuses_a_rule_directory_whose_hash_differs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    log_population(
        Path::new("tests/fixtures/mini"),
        Path::new("tests/fixtures/mini/customers.jsonl"),
        &log,
        Compression::None,
        LogDetail::Stages,
    );
    let r = replay_on(&log, "tests/fixtures/mini_v2");
    assert!(!r.ok());
    assert_eq!(r.matched, 0);
    assert_eq!(r.unavailable.len(), r.decisions);
    assert!(
        r.unavailable[0].contains("but the rule directory given has hash"),
        "{}",
        r.unavailable[0]
    );
}

#[test]
fn masked_attributes_that_decisions_read_are_reported_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let mut config = EngineConfig::default();
    config.decision_log = Some(LogConfig::new(&log));
    let engine =
        Engine::try_with_config(RuleSet::from_dir("tests/fixtures/masked").unwrap(), config)
            .unwrap();
    engine.decide_json(MASKED_REQ).unwrap();
    engine.flush().unwrap();
    let r = replay_on(&log, "tests/fixtures/masked");
    assert_eq!(r.masked.len(), 1, "{r:?}");
    assert!(r.mismatches.is_empty());
}

#[test]
fn a_partial_last_line_is_reported_and_other_damage_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    log_population(
        Path::new("tests/fixtures/mini"),
        Path::new("tests/fixtures/mini/customers.jsonl"),
        &log,
        Compression::None,
        LogDetail::Stages,
    );
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"v\":1,\"kind\":\"decis");
    std::fs::write(&log, &text).unwrap();
    let (lines, problems) = read_log(std::slice::from_ref(&log)).unwrap();
    assert_eq!(lines.len(), 6);
    assert_eq!(problems.partial_last_lines.len(), 1);
    assert!(problems.corrupt_lines.is_empty());
    let damaged = text.replacen("\"kind\":\"decision\"", "\"kind\":\"dec", 1);
    std::fs::write(&log, damaged).unwrap();
    let (_, problems) = read_log(&[log]).unwrap();
    assert_eq!(problems.corrupt_lines.len(), 1);
}

/// Whether a strategy's wall-clock budget runs out depends on the machine's
/// load, not on the decision's inputs. The log records which hooks it
/// stopped, and replay skips exactly those (and runs the others without a
/// wall clock), so a decision made under load still replays exactly.
#[test]
fn hooks_stopped_by_the_time_budget_replay_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(rules.join("actions")).unwrap();
    std::fs::create_dir_all(rules.join("strategies")).unwrap();
    let mini = Path::new("tests/fixtures/mini");
    let ruleset = std::fs::read_to_string(mini.join("ruleset.toml")).unwrap()
        + "[strategy]\nscript = \"strategies/s.rhai\"\n[strategy.limits]\ntime_budget_us = 1\nmax_operations = 1000000\n";
    std::fs::write(rules.join("ruleset.toml"), ruleset).unwrap();
    std::fs::copy(
        mini.join("actions/actions.toml"),
        rules.join("actions/actions.toml"),
    )
    .unwrap();
    // select() reverses the ranking after a loop far longer than 1 µs: when
    // it runs to the end the result differs from the plain top N.
    std::fs::write(
        rules.join("strategies/s.rhai"),
        "fn select(customer, ranked) {\n    let i = 0;\n    while i < 20000 { i += 1; }\n    ranked.reverse();\n    ranked\n}\n",
    )
    .unwrap();
    let log = dir.path().join("log.jsonl");
    log_population(
        &rules,
        &mini.join("customers.jsonl"),
        &log,
        Compression::None,
        LogDetail::Stages,
    );
    let records = file_records(&log);
    let timed_out = records
        .iter()
        .filter(|r| r["timed_out"] == serde_json::json!(["select"]))
        .count();
    assert!(
        timed_out > 0,
        "no decision logged a timed-out select: {}",
        records[0]
    );
    let report = replay_on(&log, &rules);
    assert!(
        report.ok(),
        "{:?}",
        report.mismatches.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(report.matched, records.len());
}

/// A decision made only for the log leaves its survivors unsorted (the
/// writer sorts them): records still list them in arbitration order, as an
/// explained decision ranks them. Twelve actions whose values do not
/// follow their order in the file, no strategy (a strategy sorts them on
/// the decision path).
#[test]
fn logged_candidates_are_in_rank_order_when_only_the_log_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ruleset.toml"),
        "name = \"order\"\n[schema]\nage = \"int\"\n\
         [channels]\ncall_center = { direction = \"inbound\", limit = 3 }\n\
         [issues.growth]\n[groups.cards]\nissue = \"growth\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("actions")).unwrap();
    let actions: String = (0..12)
        .map(|i| {
            format!(
                "[[actions]]\nid = \"A{i:02}\"\ngroup = \"cards\"\nchannels = [\"call_center\"]\n\
                 value = \"age * {}.0\"\nstarting_propensity = 0.1\ntreatment = \"t\"\n\n",
                (i * 7) % 12 + 1
            )
        })
        .collect();
    std::fs::write(dir.path().join("actions/a.toml"), actions).unwrap();
    let (engine, sink) = memory_engine(dir.path().to_str().unwrap(), Masking::Fixed);
    let req = r#"{"customer_id":"C1","channel":"call_center","context":{"age":40}}"#;
    let chosen: Vec<String> = engine
        .decide_json(req)
        .unwrap()
        .actions()
        .map(|a| a.action().to_string())
        .collect();
    let explained = engine
        .decide_json(&req.replace("}}", "},\"explain\":true}"))
        .unwrap();
    let expected: Vec<String> = explained.ranked().map(|r| r.action().to_string()).collect();
    assert_eq!(expected.len(), 12);
    assert_eq!(chosen, expected[..3]);
    engine.flush().unwrap();
    let r = &records(&sink)[0];
    let ranked: Vec<&serde_json::Value> = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("rank").is_some())
        .collect();
    let ids: Vec<&str> = ranked
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(ids, expected);
    for (i, c) in ranked.iter().enumerate() {
        assert_eq!(c["rank"], i + 1);
        assert_eq!(c["chosen"], i < 3);
    }
}

#[test]
fn a_sync_interval_of_any_length_logs_and_flushes() {
    let dir = tempfile::tempdir().unwrap();
    for ms in [0, 1, u64::MAX] {
        let path = dir.path().join(format!("d{ms}.jsonl"));
        let mut config = EngineConfig::default();
        let mut lc = LogConfig::new(&path);
        lc.sync_interval_ms = ms;
        config.decision_log = Some(lc);
        let engine =
            Engine::try_with_config(RuleSet::from_dir("tests/fixtures/mini").unwrap(), config)
                .unwrap();
        for n in 0..50 {
            engine
                .decide_json(&format!(r#"{{"customer_id":"C{n}","channel":"call_center","context":{{"age":30,"income":1.5}}}}"#))
                .unwrap();
        }
        engine.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 50, "sync_interval_ms = {ms}");
        assert_eq!(
            engine.stats().log.map(|s| (s.written, s.errors)),
            Some((50, 0))
        );
    }
}

/// A crash leaves a partial last line; the log, reopened, cuts it off
/// before appending, so the next record starts a line of its own (issue
/// 28, item 4: it used to be joined to the partial line, making both
/// unreadable).
#[test]
fn a_torn_last_line_is_cut_off_when_the_log_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let mini = Path::new("tests/fixtures/mini");
    let customers = mini.join("customers.jsonl");
    log_population(mini, &customers, &log, Compression::None, LogDetail::Stages);
    let first = file_records(&log).len();
    let torn = "{\"v\":1,\"kind\":\"decision\",\"decision_id\":\"d35";
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str(torn);
    std::fs::write(&log, &text).unwrap();
    log_population(mini, &customers, &log, Compression::None, LogDetail::Stages);
    let (lines, problems) = read_log(std::slice::from_ref(&log)).unwrap();
    assert!(problems.corrupt_lines.is_empty(), "{problems:?}");
    assert!(problems.partial_last_lines.is_empty(), "{problems:?}");
    assert_eq!(lines.len(), 2 * first);
    assert!(replay_on(&log, mini).ok());
}

/// A record of a format this reader does not know is refused, naming its
/// file and line, rather than read as if it were version 1 (issue 28,
/// item 6).
#[test]
fn a_record_of_an_unknown_format_version_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("d.jsonl");
    let mini = Path::new("tests/fixtures/mini");
    log_population(
        mini,
        &mini.join("customers.jsonl"),
        &log,
        Compression::None,
        LogDetail::Stages,
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let v99 = lines[1].replacen("\"v\":1", "\"v\":99", 1);
    assert_ne!(v99, lines[1], "records start with \"v\":1");
    lines[1] = &v99;
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let err = read_log(std::slice::from_ref(&log))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("{}", log.display())), "{err}");
    assert!(err.contains("line 2") && err.contains("99"), "{err}");
    let err = replay(
        std::slice::from_ref(&log),
        &VersionSources {
            rules_dir: Some(mini.into()),
            archive_dir: None,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("line 2") && err.contains("99"), "{err}");
}
