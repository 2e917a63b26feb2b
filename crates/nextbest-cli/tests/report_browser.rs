//! The review report opened in a real browser (headless Chromium): its
//! sections, charts and figures are in the rendered DOM and the screenshot
//! is not blank. Without Chromium the test fails when `CI` is set, and
//! skips with a message otherwise (install it with `apt-get install -y
//! chromium`; `NEXTBEST_CHROMIUM` names another binary).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{experiment_logs, ok, retail_bank_v2, s};

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NEXTBEST_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Run headless Chromium on `page` with `extra` arguments; its stdout.
fn headless(browser: &Path, page: &Path, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
        ])
        .args([
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    // Read while it runs: a DOM larger than the pipe's buffer would
    // otherwise block it.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).map(|_| text)
    });
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            panic!("chromium did not finish within 180 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "chromium failed: {status:?}");
    reader.join().unwrap().expect("chromium's output")
}

#[test]
fn the_review_report_renders_its_sections_charts_and_figures_in_a_browser() {
    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed, and CI must run the browser test: apt-get install -y chromium");
        }
        eprintln!(
            "SKIPPED: the browser test needs chromium (apt-get install -y chromium); CI runs it"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let v2 = retail_bank_v2(dir.path());
    let rates = BTreeMap::from([("control", 0.10), ("champion", 0.15), ("challenger", 0.12)]);
    let (logs, _) = experiment_logs(dir.path(), 1, &rates);
    let report = dir.path().join("report.html");
    ok(&[
        "review",
        s(&v2),
        "--baseline",
        "rules/retail_bank",
        "--customers",
        "rules/retail_bank/customers.jsonl",
        "--log",
        s(&logs[0]),
        "-o",
        s(&report),
    ]);

    let dom = headless(&browser, &report, &["--dump-dom"]);
    for heading in [
        "Summary",
        "What changed",
        "Persona tests",
        "Funnel per stage",
        "Action mix per channel",
        "Customers left without an action",
        "Decisions that change",
        "Off-policy estimate",
        "Impact against control",
    ] {
        assert!(
            dom.contains(&format!("{heading}</h2>")),
            "heading `{heading}` not rendered"
        );
    }
    assert!(dom.contains("<code>CARD_GOLD</code>"), "the changed action");
    assert!(
        dom.contains("income &gt;= 45000.0"),
        "the changed condition"
    );
    assert!(dom.contains("13 of 13"), "the persona tests pass");
    for channel in ["call_center", "branch", "web", "mobile_app", "email", "sms"] {
        assert!(
            dom.contains(&format!("Funnel on {channel}")),
            "funnel chart of {channel}"
        );
        assert!(
            dom.contains(&format!("Actions chosen on {channel}")),
            "mix chart of {channel}"
        );
    }
    assert!(
        dom.matches("<svg").count() >= 14,
        "12 channel charts, an estimate chart and a lift chart"
    );
    assert!(dom.contains("champion vs control"), "the lift table");
    assert!(dom.contains("SNIPS"), "the off-policy estimate");

    let shot = dir.path().join("report.png");
    headless(
        &browser,
        &report,
        &[
            "--window-size=1200,1600",
            &format!("--screenshot={}", shot.display()),
        ],
    );
    let (colours, ink) = picture(&shot);
    assert!(colours > 16, "the screenshot has {colours} colours: blank");
    assert!(
        ink > 0.02,
        "only {:.1}% of the screenshot is not background",
        100.0 * ink
    );
}

/// The number of distinct colours of a PNG and the share of its pixels
/// that differ from the most common one (the background).
fn picture(path: &Path) -> (usize, f64) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(step).collect();
    let distinct: HashSet<&[u8]> = pixels.iter().copied().collect();
    let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
    for p in &pixels {
        *counts.entry(p).or_default() += 1;
    }
    let background = counts.values().copied().max().unwrap_or(0);
    (
        distinct.len(),
        1.0 - background as f64 / pixels.len() as f64,
    )
}
