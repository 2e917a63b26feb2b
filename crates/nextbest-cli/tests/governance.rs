//! Governed change from the command line: keys, revisions, approvals,
//! publish, rollback and the change log, as a team would run them.

mod common;

use std::path::{Path, PathBuf};

use common::{edit, fails, ok, retail_bank_v2, s};

/// A governance repository with alice and bob as approvers (one approval
/// required), initialised from `live`.
struct Team {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
}

impl Team {
    fn new(live: &str) -> Team {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let keys = root.join("keys");
        for who in ["alice", "bob"] {
            let r = ok(&["keygen", who, "--dir", s(&keys)]);
            assert!(r.out.contains(&format!("{who}.pub")), "{}", r.out);
        }
        let repo = root.join("gov");
        let (a, b) = (keys.join("alice.pub"), keys.join("bob.pub"));
        let r = ok(&[
            "revision",
            "init",
            "--repo",
            s(&repo),
            "--from",
            live,
            "--approver",
            s(&a),
            "--approver",
            s(&b),
            "--required",
            "1",
        ]);
        assert_eq!(r.last_line(), "r0001", "{}", r.out);
        Team {
            _dir: dir,
            root,
            repo,
        }
    }

    fn key(&self, who: &str) -> PathBuf {
        self.root.join("keys").join(format!("{who}.key"))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `nextbest revision CMD ARGS... --repo REPO`.
    fn args<'a>(&'a self, cmd: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["revision", cmd];
        a.extend_from_slice(rest);
        a.extend(["--repo", s(&self.repo)]);
        a
    }

    /// Create and submit a revision of `dir` by `author`; its id.
    fn new_submitted(&self, dir: &Path, author: &Path, title: &str) -> String {
        let r = ok(&self.args(
            "new",
            &[
                s(dir),
                "--title",
                title,
                "--requested-by",
                "cards product owner",
                "--key",
                s(author),
            ],
        ));
        let id = r.last_line().to_string();
        ok(&self.args("submit", &[&id, "--key", s(author)]));
        id
    }

    fn log_json(&self) -> Vec<serde_json::Value> {
        ok(&self.args("log", &["--json"]))
            .out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[test]
fn a_change_goes_live_only_with_another_persons_approval_and_every_step_is_logged() {
    let team = Team::new("rules/retail_bank");
    let v2 = retail_bank_v2(&team.root);
    let (alice, bob) = (team.key("alice"), team.key("bob"));
    let id = team.new_submitted(&v2, &alice, "Raise the gold card income floor");
    assert_eq!(id, "r0002");

    let r = fails(&team.args("approve", &[&id, "--key", s(&alice)]));
    assert!(
        r.err
            .contains("self-approval refused: alice is the author of r0002"),
        "{}",
        r.err
    );

    let r = fails(&team.args("publish", &[&id, "--key", s(&bob)]));
    assert!(
        r.err.contains(
            "publish of r0002 refused: r0002 has 0 valid approval(s), governance.toml requires 1"
        ),
        "{}",
        r.err
    );

    let report = team.path("report.html");
    let r = ok(&[
        "review",
        s(&v2),
        "--baseline",
        "rules/retail_bank",
        "--customers",
        "rules/retail_bank/customers.jsonl",
        "-o",
        s(&report),
    ]);
    let sha = r
        .last_line()
        .strip_prefix("sha256 ")
        .expect("the last line is the report's sha256")
        .to_string();
    assert_eq!(sha, sha256_of(&report));

    let r = ok(&team.args("approve", &[&id, "--key", s(&bob), "--report", s(&report)]));
    assert!(
        r.out
            .contains("approved r0002 by bob (1 of 1 required approval(s)); now approved"),
        "{}",
        r.out
    );
    assert!(
        team.repo
            .join("evidence")
            .join(format!("{sha}.html"))
            .is_file(),
        "the report is kept as evidence"
    );

    let r = ok(&team.args("publish", &[&id, "--key", s(&bob)]));
    assert!(
        r.out
            .contains("published r0002 by bob: live version 2, approved by bob; r0001 superseded"),
        "{}",
        r.out
    );
    let live: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(team.repo.join("LIVE")).unwrap()).unwrap();
    assert_eq!(live["revision"], "r0002");

    let r = ok(&team.args(
        "rollback",
        &["--key", s(&bob), "--reason", "branch complaints"],
    ));
    assert!(
        r.out
            .contains("rolled back r0002 to r0001 by bob: live version 3"),
        "{}",
        r.out
    );

    let events: Vec<(String, String, String)> = team
        .log_json()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().into(),
                e["revision"].as_str().unwrap().into(),
                e["actor"].as_str().unwrap().into(),
            )
        })
        .collect();
    let expected = [
        ("init", "r0001", "init"),
        ("created", "r0002", "alice"),
        ("submitted", "r0002", "alice"),
        ("publish_refused", "r0002", "bob"),
        ("approved", "r0002", "bob"),
        ("published", "r0002", "bob"),
        ("rolled_back", "r0001", "bob"),
    ];
    let expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect();
    assert_eq!(events, expected);
    let approval = &team.log_json()[4];
    assert_eq!(
        approval["evidence"],
        sha.as_str(),
        "the approval signs the report's hash"
    );

    let r = ok(&team.args("log", &["--verify"]));
    assert!(
        r.out
            .contains("verified: 7 entries, chain and signatures intact"),
        "{}",
        r.out
    );
    let r = ok(&team.args("show", &[&id]));
    assert!(
        r.out
            .contains("r0002  rolled_back  \"Raise the gold card income floor\""),
        "{}",
        r.out
    );
    assert!(r.out.contains("integrity     ok"), "{}", r.out);
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn log_verify_fails_after_a_line_is_edited_or_deleted() {
    let team = Team::new("tests/fixtures/mini");
    let id = team.new_submitted(
        &common::root().join("tests/fixtures/mini_v2"),
        &team.key("alice"),
        "Older contacts only",
    );
    ok(&team.args("approve", &[&id, "--key", s(&team.key("bob"))]));
    ok(&team.args("log", &["--verify"]));
    let log = team.repo.join("changelog.jsonl");
    let original = std::fs::read_to_string(&log).unwrap();

    edit(&log, "\"actor\":\"alice\"", "\"actor\":\"mallory\"");
    let r = fails(&team.args("log", &["--verify"]));
    assert!(
        r.out.contains(
            "changelog.jsonl:2: mallory's signature does not verify: the entry was edited"
        ),
        "{}",
        r.out
    );
    assert!(r.out.contains("changelog.jsonl:3: `prev` is"), "{}", r.out);
    let r = fails(&team.args("publish", &[&id, "--key", s(&team.key("bob"))]));
    assert!(
        r.err.contains("the change log is damaged"),
        "commands refuse a damaged log: {}",
        r.err
    );

    let lines: Vec<&str> = original.lines().collect();
    let without_second = [lines[0], lines[2], lines[3]].join("\n") + "\n";
    std::fs::write(&log, without_second).unwrap();
    let r = fails(&team.args("log", &["--verify"]));
    assert!(
        r.out
            .contains("entry #3 follows entry #1: entries were deleted, inserted or reordered"),
        "{}",
        r.out
    );

    std::fs::write(&log, [lines[0], lines[1], lines[2]].join("\n") + "\n").unwrap();
    let r = fails(&team.args("log", &["--verify"]));
    assert!(
        r.out.contains("says 4 entries, the log has 3"),
        "a deleted last line is found too: {}",
        r.out
    );
}

#[test]
fn publishing_a_tampered_revision_is_refused_and_logged() {
    let team = Team::new("tests/fixtures/mini");
    let id = team.new_submitted(
        &common::root().join("tests/fixtures/mini_v2"),
        &team.key("alice"),
        "Older contacts only",
    );
    let bob = team.key("bob");
    ok(&team.args("approve", &[&id, "--key", s(&bob)]));
    edit(
        &team.repo.join("revisions/r0002/rules/actions/actions.toml"),
        "> 400",
        "> 4",
    );
    let r = fails(&team.args("publish", &[&id, "--key", s(&bob)]));
    assert!(r.err.contains("revision r0002 in"), "{}", r.err);
    assert!(
        r.err
            .contains("is tampered: rules/actions/actions.toml has SHA-256"),
        "{}",
        r.err
    );
    let last = team.log_json().pop().unwrap();
    assert_eq!(last["event"], "publish_refused");
    assert!(
        last["reason"].as_str().unwrap().contains("tampered"),
        "{last}"
    );
    let r = fails(&team.args("show", &[&id]));
    assert!(r.out.contains("integrity     FAILED"), "{}", r.out);
}

#[test]
fn an_approval_needs_a_listed_key_and_a_report_of_this_revision() {
    let team = Team::new("tests/fixtures/mini");
    let keys = team.path("keys");
    ok(&["keygen", "mallory", "--dir", s(&keys)]);
    let id = team.new_submitted(
        &common::root().join("tests/fixtures/mini_v2"),
        &team.key("alice"),
        "Older contacts only",
    );

    let r = fails(&team.args("approve", &[&id, "--key", s(&team.key("mallory"))]));
    assert!(
        r.err
            .contains("mallory may not approve: their key is not an approver in"),
        "{}",
        r.err
    );

    let other = team.path("other.html");
    ok(&[
        "review",
        "tests/fixtures/mini",
        "--baseline",
        "tests/fixtures/mini_v2",
        "--customers",
        "tests/fixtures/mini/customers.jsonl",
        "-o",
        s(&other),
    ]);
    let r = fails(&team.args(
        "approve",
        &[&id, "--key", s(&team.key("bob")), "--report", s(&other)],
    ));
    assert!(
        r.err.contains("but r0002 holds rules"),
        "a report of other rules is no evidence: {}",
        r.err
    );

    let r = fails(&team.args(
        "reject",
        &[&id, "--key", s(&team.key("bob")), "--reason", " "],
    ));
    assert!(r.err.contains("a rejection needs a reason"), "{}", r.err);
    ok(&team.args(
        "reject",
        &[
            &id,
            "--key",
            s(&team.key("bob")),
            "--reason",
            "retention drops too much",
        ],
    ));
    let r = fails(&team.args("publish", &[&id, "--key", s(&team.key("bob"))]));
    assert!(
        r.err
            .contains("publish of r0002 refused: r0002 is rejected"),
        "{}",
        r.err
    );
}

#[test]
fn a_revision_equal_to_the_live_one_is_refused() {
    let team = Team::new("tests/fixtures/mini");
    let r = fails(&team.args(
        "new",
        &[
            "tests/fixtures/mini",
            "--title",
            "t",
            "--requested-by",
            "me",
            "--key",
            s(&team.key("alice")),
        ],
    ));
    assert!(
        r.err
            .contains("has the same rules as the live revision r0001"),
        "{}",
        r.err
    );
}
