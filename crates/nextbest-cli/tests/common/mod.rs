//! Helpers shared by the governed-change, impact and report tests: run the
//! real binary, copy rule sets, and write decision logs with outcomes whose
//! true acceptance rates per arm are known.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::{Rng, SeedableRng};

/// The repository root (where `rules/` and `tests/fixtures/` are).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// What a run of the binary did.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl Run {
    /// The last line of stdout.
    pub fn last_line(&self) -> &str {
        self.out.lines().last().unwrap_or("")
    }
}

/// Run `nextbest args` from the repository root.
pub fn nextbest(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .current_dir(root())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run nextbest");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Run and require success.
pub fn ok(args: &[&str]) -> Run {
    let r = nextbest(args);
    assert_eq!(r.code, 0, "nextbest {args:?} failed:\n{}\n{}", r.out, r.err);
    r
}

/// Run and require failure.
pub fn fails(args: &[&str]) -> Run {
    let r = nextbest(args);
    assert_eq!(
        r.code, 1,
        "nextbest {args:?} should fail:\n{}\n{}",
        r.out, r.err
    );
    r
}

/// A path as a `&str` argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Copy a rule directory's rule files, personas and population to `to`.
pub fn copy_rules(from: &Path, to: &Path) {
    for sub in ["actions", "strategies", "models", "personas"] {
        let d = from.join(sub);
        if !d.is_dir() {
            continue;
        }
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, to.join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    for f in ["ruleset.toml", "customers.jsonl"] {
        if from.join(f).exists() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
}

/// Replace `old` by `new` in `file` (which must contain it).
pub fn edit(file: &Path, old: &str, new: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(old), "{} has no `{old}`", file.display());
    std::fs::write(file, text.replacen(old, new, 1)).unwrap();
}

/// The retail bank with its gold card income floor raised from 35,000 to
/// 45,000: the change request of the tests.
pub fn retail_bank_v2(dir: &Path) -> PathBuf {
    let v2 = dir.join("retail_bank_v2");
    raise_gold_floor(&v2);
    v2
}

fn raise_gold_floor(to: &Path) {
    copy_rules(&root().join("rules/retail_bank"), to);
    edit(
        &to.join("actions/cards.toml"),
        r#"suitability = ["income >= 35000.0", "credit_score >= 680"]"#,
        r#"suitability = ["income >= 45000.0", "credit_score >= 680"]"#,
    );
}

/// The retail bank running an experiment: champion (the rules as they
/// are), challenger (`retail_bank_v2`), and a random-eligible control.
pub fn experiment_rules(dir: &Path) -> PathBuf {
    let exp = dir.join("experiment");
    copy_rules(&root().join("rules/retail_bank"), &exp);
    raise_gold_floor(&exp.join("challenger"));
    let mut text = std::fs::read_to_string(exp.join("ruleset.toml")).unwrap();
    text.push_str(
        "\n[experiment]\nname = \"gold-floor\"\nsalt = \"impact-test\"\nchallenger = \"challenger\"\n\
         challenger_share = 0.3\ncontrol_share = 0.2\ncontrol = \"random_eligible\"\n",
    );
    std::fs::write(exp.join("ruleset.toml"), text).unwrap();
    exp
}

/// One decision of a log, as the outcome writer needs it.
pub struct LoggedDecision {
    pub arm: String,
    pub first: Option<(String, f64)>,
}

/// What [`write_outcomes`] drew, for the true figures.
#[derive(Default)]
pub struct Truth {
    /// Per arm: decisions, and Σ of the expected acceptance and expected
    /// value per decision under the generating rates.
    pub arms: BTreeMap<String, (f64, f64, f64)>,
}

impl Truth {
    /// The true acceptance rate per decision of an arm.
    pub fn rate(&self, arm: &str) -> f64 {
        let (n, acc, _) = self.arms[arm];
        acc / n
    }
    /// The true value per decision of an arm.
    pub fn value(&self, arm: &str) -> f64 {
        let (n, _, v) = self.arms[arm];
        v / n
    }
}

/// Append outcome records to `log` for its decisions: the first action of
/// a decision in arm `a` is accepted with probability `rates[a]`, else
/// rejected with probability 0.3, else not responded to. Every other
/// outcome carries its decision id; the rest must be joined by customer,
/// action and channel. Returns the true per-decision rates and values.
pub fn write_outcomes(log: &Path, rates: &BTreeMap<&str, f64>, seed: u64) -> Truth {
    let text = std::fs::read_to_string(log).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut truth = Truth::default();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        if r["kind"] != "decision" {
            continue;
        }
        let arm = r["arm"].as_str().unwrap().to_string();
        let q = rates[arm.as_str()];
        let slot = truth.arms.entry(arm).or_default();
        slot.0 += 1.0;
        let Some(action) = r["actions"][0].as_str() else {
            continue;
        };
        let value = r["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["action"] == action)
            .and_then(|c| c["value"].as_f64())
            .unwrap();
        slot.1 += q;
        slot.2 += q * value;
        let kind = if rng.random::<f64>() < q {
            "accepted"
        } else if rng.random::<f64>() < 0.3 {
            "rejected"
        } else {
            "no_response"
        };
        let at = nextbest::Timestamp::parse(r["timestamp"].as_str().unwrap()).unwrap();
        let at = time::OffsetDateTime::from_unix_timestamp(at.unix_seconds() + 3600)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let mut o = serde_json::json!({
            "v": 1, "kind": "outcome", "timestamp": at, "customer_id": r["customer_id"],
            "action": action, "channel": r["channel"], "outcome": kind,
        });
        if i % 2 == 0 {
            o["decision_id"] = r["decision_id"].clone();
        }
        out.push_str(&format!("{o}\n"));
    }
    let mut all = text;
    all.push_str(&out);
    std::fs::write(log, all).unwrap();
    truth
}

/// Simulate the experiment rule set over the retail bank's customers on
/// `days` successive days, one log file per day, with outcomes at the
/// given rates; returns the logs and the truth over all of them.
pub fn experiment_logs(
    dir: &Path,
    days: u32,
    rates: &BTreeMap<&str, f64>,
) -> (Vec<PathBuf>, Truth) {
    let exp = experiment_rules(dir);
    let customers = root().join("rules/retail_bank/customers.jsonl");
    let mut logs = Vec::new();
    let mut truth = Truth::default();
    for day in 0..days {
        let log = dir.join(format!("decisions-{day}.jsonl"));
        let now = format!("2026-11-{:02}T10:00:00Z", 10 + day);
        ok(&[
            "simulate",
            s(&exp),
            "--customers",
            s(&customers),
            "--log",
            s(&log),
            "--now",
            &now,
        ]);
        let t = write_outcomes(&log, rates, 1000 + u64::from(day));
        for (arm, (n, a, v)) in t.arms {
            let slot = truth.arms.entry(arm).or_default();
            slot.0 += n;
            slot.1 += a;
            slot.2 += v;
        }
        logs.push(log);
    }
    (logs, truth)
}
