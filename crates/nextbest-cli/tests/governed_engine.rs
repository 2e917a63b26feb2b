//! An engine serving a governance repository (`governance_repo`): it
//! serves the live revision, follows publishes and rollbacks made with
//! `nextbest revision`, and refuses a live revision that is tampered or
//! was never approved, while the last good version keeps serving.

mod common;

use std::path::{Path, PathBuf};

use common::{edit, ok, retail_bank_v2, s};
use nextbest::{Engine, Error};

/// A repository with alice and bob as approvers (one approval required),
/// initialised from the retail bank, and r0002 (the gold card income
/// floor raised to 45,000) created by alice and submitted.
struct Repo {
    _dir: tempfile::TempDir,
    root: PathBuf,
    gov: PathBuf,
}

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let keys = root.join("keys");
        for who in ["alice", "bob"] {
            ok(&["keygen", who, "--dir", s(&keys)]);
        }
        let gov = root.join("gov");
        ok(&[
            "revision",
            "init",
            "--repo",
            s(&gov),
            "--from",
            "rules/retail_bank",
            "--approver",
            s(&keys.join("alice.pub")),
            "--approver",
            s(&keys.join("bob.pub")),
            "--required",
            "1",
        ]);
        let repo = Repo {
            _dir: dir,
            root,
            gov,
        };
        let v2 = retail_bank_v2(&repo.root);
        let alice = repo.key("alice");
        let r = repo.run(
            "new",
            &[
                s(&v2),
                "--title",
                "Raise the gold card income floor",
                "--requested-by",
                "cards product owner",
                "--key",
                s(&alice),
            ],
        );
        assert_eq!(r.last_line(), "r0002", "{}", r.out);
        repo.run("submit", &["r0002", "--key", s(&alice)]);
        repo
    }

    fn key(&self, who: &str) -> PathBuf {
        self.root.join("keys").join(format!("{who}.key"))
    }

    /// `nextbest revision CMD ARGS... --repo GOV`, which must succeed.
    fn run(&self, cmd: &str, rest: &[&str]) -> common::Run {
        let mut a = vec!["revision", cmd];
        a.extend_from_slice(rest);
        a.extend(["--repo", s(&self.gov)]);
        ok(&a)
    }

    /// Bob approves and publishes r0002.
    fn approve_and_publish(&self) {
        let bob = self.key("bob");
        self.run("approve", &["r0002", "--key", s(&bob)]);
        self.run("publish", &["r0002", "--key", s(&bob)]);
    }

    /// An engine on the repository, logging to `log` when given.
    fn engine(&self, log: Option<&Path>) -> Result<Engine, Error> {
        let mut config = serde_json::json!({"governance_repo": self.gov});
        if let Some(l) = log {
            config["decision_log"] = serde_json::json!({"path": l});
        }
        Engine::from_config_json(&config.to_string())
    }
}

/// Whether the engine's rules refuse the gold card to a customer earning
/// 40,000 for their income: the change r0002 makes.
fn gold_floor_raised(engine: &Engine) -> bool {
    let request = r#"{"customer_id": "C7", "channel": "web", "explain": true,
        "now": "2026-11-23T10:00:00Z",
        "context": {"age": 35, "income": 40000.0, "segment": "mass", "credit_score": 720,
                    "tenure_months": 24, "products": ["CURRENT"]}}"#;
    let d = engine.decide_json(request).expect("the request decides");
    let offered = d.actions().any(|a| a.action() == "CARD_GOLD");
    let refused = d.filtered().any(|f| {
        f.action() == "CARD_GOLD"
            && f.condition()
                .is_some_and(|c| c.contains("income >= 45000.0"))
    });
    assert!(
        offered != refused,
        "the gold card is either offered or refused for income: {}",
        d.to_json()
    );
    refused
}

fn governance_error(r: Result<u64, Error>) -> String {
    match r {
        Err(Error::Governance(m)) => m,
        other => panic!("expected a governance refusal, got {other:?}"),
    }
}

#[test]
fn an_engine_serves_the_live_revision_and_follows_a_publish_and_a_rollback() {
    let repo = Repo::new();
    let engine = repo
        .engine(None)
        .expect("the live revision r0001 is served");
    assert!(
        !gold_floor_raised(&engine),
        "r0001 is the retail bank as it is"
    );
    let g = engine.stats().governance.expect("governed");
    assert_eq!((g.revision.as_str(), g.live_version), ("r0001", 1));

    // Submitted but not published: nothing changes.
    assert_eq!(engine.follow_governance().unwrap(), 1);
    assert!(!gold_floor_raised(&engine));

    repo.approve_and_publish();
    assert_eq!(engine.follow_governance().unwrap(), 2);
    assert!(gold_floor_raised(&engine), "r0002 is live");
    let g = engine.stats().governance.unwrap();
    assert_eq!(g.revision, "r0002");
    assert_eq!(g.approvers, vec!["bob".to_string()]);
    assert_eq!((g.followed, g.refused), (1, 0));

    repo.run("rollback", &["--key", s(&repo.key("bob"))]);
    assert_eq!(engine.follow_governance().unwrap(), 3);
    assert!(!gold_floor_raised(&engine), "rolled back to r0001");
    let g = engine.stats().governance.unwrap();
    assert_eq!(
        (g.revision.as_str(), g.live_version, g.followed),
        ("r0001", 3, 2)
    );
}

#[test]
fn a_tampered_live_revision_is_refused_and_logged_while_the_last_good_one_serves() {
    let repo = Repo::new();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let engine = repo.engine(Some(&log)).unwrap();
    repo.approve_and_publish();
    // After the publish (which checked it), someone edits the revision's
    // copy of the rules: the floor goes back down.
    let cards = repo.gov.join("revisions/r0002/rules/actions/cards.toml");
    edit(&cards, "income >= 45000.0", "income >= 25000.0");

    let m = governance_error(engine.follow_governance());
    assert!(
        m.contains("revision r0002")
            && m.contains("is tampered: rules/actions/cards.toml has SHA-256"),
        "{m}"
    );
    assert!(!gold_floor_raised(&engine), "r0001 keeps serving");
    let stats = engine.stats();
    let g = stats.governance.unwrap();
    assert_eq!((g.revision.as_str(), g.refused), ("r0001", 1));
    assert_eq!(
        stats.last_load_error.as_deref(),
        Some(format!("governance: {m}").as_str())
    );
    // Asking again about the same repository counts nothing new.
    governance_error(engine.follow_governance());
    assert_eq!(engine.stats().governance.unwrap().refused, 1);

    engine.flush().unwrap();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["kind"] == "governance")
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["event"], "refused");
    assert_eq!(records[0]["detail"]["serving"], "r0001");
    assert!(records[0]["detail"]["reason"]
        .as_str()
        .unwrap()
        .contains("is tampered"));

    // Put right, it is followed.
    edit(&cards, "income >= 25000.0", "income >= 45000.0");
    assert_eq!(engine.follow_governance().unwrap(), 2);
    assert!(gold_floor_raised(&engine));

    // An engine opening on a tampered live revision does not open.
    edit(&cards, "income >= 45000.0", "income >= 25000.0");
    let e = repo.engine(None).expect_err("refused").to_string();
    assert!(
        e.starts_with("governance: revision r0002") && e.contains("is tampered"),
        "{e}"
    );
}

#[test]
fn a_live_pointer_moved_without_an_approved_publish_is_refused() {
    let repo = Repo::new();
    let engine = repo.engine(None).unwrap();
    // r0002 is submitted, never approved: point LIVE at it by hand.
    let live_path = repo.gov.join("LIVE");
    let mut live: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&live_path).unwrap()).unwrap();
    let log = std::fs::read_to_string(repo.gov.join("changelog.jsonl")).unwrap();
    let created: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "created")
        .unwrap();
    live["revision"] = "r0002".into();
    live["revision_hash"] = created["revision_hash"].clone();
    live["rules_hash"] = created["rules_hash"].clone();
    live["rules_dir"] = "revisions/r0002/rules".into();
    std::fs::write(&live_path, live.to_string()).unwrap();

    let m = governance_error(engine.follow_governance());
    assert!(
        m.contains("names r0002")
            && m.contains("but the change log made r0001")
            && m.contains("without a logged, approved publish"),
        "{m}"
    );
    assert!(!gold_floor_raised(&engine), "r0001 keeps serving");
    assert_eq!(engine.stats().governance.unwrap().refused, 1);
}

#[test]
fn a_signed_publish_entry_without_approvals_is_refused() {
    let repo = Repo::new();
    let engine = repo.engine(None).unwrap();
    // Bob, an approver, appends a publish of r0002 to the log with his own
    // key, bypassing `nextbest revision publish`: the chain and his
    // signature verify, but r0002 has no approval.
    forge_publish(&repo.gov, &repo.key("bob"), "r0002");
    let m = governance_error(engine.follow_governance());
    assert!(
        m.contains("r0002 was published (change-log entry #4) with 0 valid approval(s); governance.toml requires 1"),
        "{m}"
    );
    assert!(!gold_floor_raised(&engine), "r0001 keeps serving");
}

/// Sign a `published` entry for `id` with `key` and append it to the log
/// of `gov`, moving the head and `LIVE` as the tool would.
fn forge_publish(gov: &Path, key: &Path, id: &str) {
    use ed25519_dalek::{Signer, SigningKey};
    use nextbest_governance::changelog::{Entry, Event};

    let file: toml::Table = toml::from_str(&std::fs::read_to_string(key).unwrap()).unwrap();
    let secret: [u8; 32] = hex::decode(file["secret_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signing = SigningKey::from_bytes(&secret);
    let path = gov.join("changelog.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let created: Entry = lines
        .iter()
        .map(|l| serde_json::from_str::<Entry>(l).unwrap())
        .find(|e| e.event == Event::Created && e.revision == id)
        .unwrap();
    let mut e = Entry::new(
        Event::Published,
        id,
        &created.revision_hash,
        &created.rules_hash,
    );
    e.seq = lines.len() as u64 + 1;
    e.prev = nextbest_governance::sha256_hex(lines.last().unwrap().as_bytes());
    e.actor = file["name"].as_str().unwrap().to_string();
    e.actor_key = Some(hex::encode(signing.verifying_key().as_bytes()));
    e.live_version = Some(2);
    e.previous_live = Some("r0001".into());
    e.signature = Some(hex::encode(signing.sign(&e.signed_bytes()).to_bytes()));
    let line = e.line();
    std::fs::write(&path, format!("{text}{line}\n")).unwrap();
    let head = serde_json::json!({"entries": e.seq, "last_hash": nextbest_governance::sha256_hex(line.as_bytes())});
    std::fs::write(gov.join("changelog.head"), format!("{head}\n")).unwrap();
    let live = serde_json::json!({
        "revision": id, "revision_hash": created.revision_hash, "rules_hash": created.rules_hash,
        "rules_dir": format!("revisions/{id}/rules"), "live_version": 2, "since": e.at,
    });
    std::fs::write(gov.join("LIVE"), format!("{live:#}\n")).unwrap();
}

#[test]
fn an_engine_does_not_open_a_directory_that_is_not_a_governance_repository() {
    let rules = common::root().join("rules/retail_bank");
    let config = serde_json::json!({ "governance_repo": rules });
    let e = Engine::from_config_json(&config.to_string())
        .expect_err("refused")
        .to_string();
    assert!(
        e.starts_with("governance: ")
            && e.contains("retail_bank is not a governance repository (no governance.toml)"),
        "{e}"
    );
    let e = Engine::from_config_json(
        r#"{"governance_repo": "gov/", "rules_dir": "rules/retail_bank"}"#,
    )
    .expect_err("refused")
    .to_string();
    assert!(
        e.contains("give `rules_dir` or `governance_repo`, not both"),
        "{e}"
    );
}

#[test]
fn nextbest_decide_with_repo_serves_the_live_revision() {
    use std::io::Write;
    let repo = Repo::new();
    repo.approve_and_publish();
    let request = r#"{"customer_id": "C7", "channel": "web", "explain": true, "now": "2026-11-23T10:00:00Z", "context": {"age": 35, "income": 40000.0, "segment": "mass", "credit_score": 720, "tenure_months": 24, "products": ["CURRENT"]}}"#;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nextbest"))
        .args(["decide", "--repo", s(&repo.gov)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{request}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let log = std::fs::read_to_string(repo.gov.join("changelog.jsonl")).unwrap();
    let published: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "published")
        .unwrap();
    assert_eq!(d["ruleset"]["hash"], published["rules_hash"], "{stdout}");
    let gold = d["filtered"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["action"] == "CARD_GOLD")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(gold["condition"], "income >= 45000.0", "{stdout}");
}

/// Whether `done` holds within ten seconds (checked every 10 ms).
fn wait_for(done: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    done()
}

#[test]
fn a_governance_watcher_follows_a_publish_and_reports_a_refusal() {
    let repo = Repo::new();
    let engine = std::sync::Arc::new(repo.engine(None).unwrap());
    let watcher = engine.watch_governance(std::time::Duration::from_millis(10));
    let serving = |e: &Engine| e.stats().governance.unwrap();
    repo.approve_and_publish();
    assert!(
        wait_for(|| serving(&engine).revision == "r0002"),
        "the publish was not followed"
    );
    assert!(gold_floor_raised(&engine));

    // LIVE moved back to r0001 by hand, without a logged rollback.
    let live_path = repo.gov.join("LIVE");
    let mut live: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&live_path).unwrap()).unwrap();
    let log = std::fs::read_to_string(repo.gov.join("changelog.jsonl")).unwrap();
    let init: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    live["revision"] = "r0001".into();
    live["revision_hash"] = init["revision_hash"].clone();
    // Replaced whole, as the tools (and editors that save by renaming) do:
    // a file written in place can be polled half-written on a busy
    // machine, and that state is (rightly) refused first, as a refusal of
    // its own.
    let edited = repo.gov.join("LIVE.edited");
    std::fs::write(&edited, live.to_string()).unwrap();
    std::fs::rename(&edited, &live_path).unwrap();
    assert!(
        wait_for(|| serving(&engine).refused == 1),
        "the hand-moved pointer was not refused"
    );
    let g = serving(&engine);
    assert_eq!(g.revision, "r0002", "r0002 keeps serving");
    assert!(g.last_refusal.unwrap().contains("names r0001"));
    assert!(gold_floor_raised(&engine));
    drop(watcher);
}
