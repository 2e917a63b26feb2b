//! `nextbest simulate DIR --learn`: the closed-loop learning demo's tables
//! and plot (the simulation itself is `nextbest::simulate::learn`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nextbest::simulate::learn::{
    default_truth_file, parse_interval, simulate_learning, LearnOptions, LearnReport, Policy, Truth,
};
use nextbest::simulate::load_customers;
use nextbest::{Error, RuleSet};

/// The command line of `simulate --learn`.
pub struct LearnArgs {
    pub customers: Option<PathBuf>,
    pub channel: Option<String>,
    pub now: Option<String>,
    pub rounds: usize,
    pub interval: String,
    pub seed: u64,
    pub policies: Vec<String>,
    pub truth: Option<PathBuf>,
    pub segment: Option<String>,
    pub plot: PathBuf,
    pub json: bool,
    pub log: Option<PathBuf>,
    /// Add to an existing log instead of starting a new one.
    pub append: bool,
}

pub fn run_learn(dir: &Path, args: LearnArgs) -> Result<ExitCode, Error> {
    let rules = RuleSet::from_dir(dir)?;
    let truth = match args.truth.or_else(|| default_truth_file(dir)) {
        Some(path) => {
            if args.segment.is_some() {
                return Err(Error::InvalidConfig(format!(
                    "--segment is for perturbed rates; {} names its own segment",
                    path.display()
                )));
            }
            Truth::load(&path, &rules)?
        }
        None => {
            if let Some(seg) = &args.segment {
                if !rules.schema().attributes().iter().any(|a| a.name() == seg) {
                    return Err(Error::InvalidConfig(format!(
                        "--segment `{seg}` is not an attribute of rule set `{}`",
                        rules.name()
                    )));
                }
            }
            Truth::perturbed(args.seed, args.segment)
        }
    };
    let policies = if args.policies.is_empty() {
        Policy::ALL.to_vec()
    } else {
        args.policies
            .iter()
            .map(|p| {
                Policy::parse(p).ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "unknown policy `{p}`; use static, posterior_mean, thompson or epsilon_greedy"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let opts = LearnOptions {
        rounds: args.rounds,
        interval_secs: parse_interval(&args.interval)?,
        seed: args.seed,
        policies,
        channel: args.channel,
        start: Some(super::parse_now(args.now)?),
        log: args.log,
        ..LearnOptions::default()
    };
    let path = args
        .customers
        .unwrap_or_else(|| dir.join("customers.jsonl"));
    let customers = load_customers(&path)?;
    if let (Some(log), false) = (&opts.log, args.append) {
        super::start_new_log(log)?;
    }
    let total = (customers.len() * opts.rounds * opts.policies.len()) as u64;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message("learning");
        b
    });
    let report = simulate_learning(dir, &customers, &truth, &opts, |n| {
        if let Some(b) = &bar {
            b.set_position(n as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    plot(&report, &args.plot)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        print_learn_report(&report);
        println!("\nplot: {}", args.plot.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_learn_report(r: &LearnReport) {
    println!(
        "{}: {} customers x {} rounds, one every {}, seed {}",
        r.ruleset,
        r.customers,
        r.rounds,
        human_secs(r.interval_secs),
        r.seed
    );
    println!("true acceptance rates: {}", r.truth);
    if let Some(s) = &r.segment {
        println!("segment attribute: {s}");
    }
    for e in &r.errors {
        println!("  error: {e}");
    }
    // At most about 15 rows: every k-th round and the last.
    let step = r.rounds.div_ceil(15).max(1);
    let rows: Vec<usize> = (0..r.rounds)
        .filter(|i| (i + 1) % step == 0 || *i == 0 || *i + 1 == r.rounds)
        .collect();
    let header = |title: &str| {
        println!("\n{title}");
        print!("{:>6}", "round");
        for p in &r.policies {
            print!(" {:>15}", p.policy);
        }
        println!();
    };
    header("Decisions whose first action was the best one (by the hidden rates), per round:");
    for &i in &rows {
        print!("{:>6}", i + 1);
        for p in &r.policies {
            print!(" {:>14.1}%", 100.0 * p.rounds[i].best_share());
        }
        println!();
    }
    header("Acceptance rate, per round:");
    for &i in &rows {
        print!("{:>6}", i + 1);
        for p in &r.policies {
            print!(" {:>14.2}%", 100.0 * p.rounds[i].acceptance());
        }
        println!();
    }
    header("Cumulative regret (expected value lost to the best action, all rounds so far):");
    for &i in &rows {
        print!("{:>6}", i + 1);
        for p in &r.policies {
            print!(" {:>15.0}", p.rounds[i].cumulative_regret);
        }
        println!();
    }
    println!("\nTotals:");
    println!(
        "  {:<15} {:>10} {:>9} {:>10} {:>14} {:>12}",
        "policy", "decisions", "accepted", "best", "regret", "vs static"
    );
    let base = r
        .policies
        .iter()
        .find(|p| p.policy == "static")
        .map(|p| p.regret);
    for p in &r.policies {
        let best: usize = p.rounds.iter().map(|s| s.best).sum();
        let versus = match base {
            Some(b) if b > 0.0 => format!("{:+.1}%", 100.0 * (p.regret - b) / b),
            _ => "-".to_string(),
        };
        println!(
            "  {:<15} {:>10} {:>9} {:>9.1}% {:>14.0} {:>12}",
            p.policy,
            p.decisions,
            p.accepted,
            100.0 * best as f64 / p.decisions.max(1) as f64,
            p.regret,
            versus
        );
    }
    // What the policies chose in the last round, against what was best.
    let Some(first) = r.policies.iter().find(|p| p.policy != "static") else {
        return;
    };
    let mut best: Vec<(&String, &usize)> = first.last_round_best.iter().collect();
    best.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    println!(
        "\nLast round: the actions most often best (for {}'s customers), and how often each policy chose them first:",
        first.policy
    );
    print!("  {:<24} {:>8}", "action", "best");
    for p in &r.policies {
        print!(" {:>15}", p.policy);
    }
    println!();
    for (action, n) in best.into_iter().take(10) {
        print!("  {action:<24} {n:>8}");
        for p in &r.policies {
            print!(
                " {:>15}",
                p.last_round_chosen.get(action).copied().unwrap_or(0)
            );
        }
        println!();
    }
}

fn human_secs(s: i64) -> String {
    match s {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Two panels: cumulative regret and the best-action share, per round.
fn plot(r: &LearnReport, path: &Path) -> Result<(), Error> {
    use plotters::prelude::*;
    let fail =
        |e: &dyn std::fmt::Display| Error::InvalidConfig(format!("plot {}: {e}", path.display()));
    let colors = [
        RGBColor(0x55, 0x55, 0x55),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
    ];
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let title = format!(
        "{}: {} customers x {} rounds (seed {})",
        r.ruleset, r.customers, r.rounds, r.seed
    );
    let root = root
        .titled(&title, ("sans-serif", 18))
        .map_err(|e| fail(&e))?;
    let (left, right) = root.split_horizontally(500);
    let rounds = r.rounds as f64;
    let max_regret = r
        .policies
        .iter()
        .map(|p| p.regret)
        .fold(0.0f64, f64::max)
        .max(1.0);

    let mut chart = ChartBuilder::on(&left)
        .caption("Cumulative regret (expected value)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..rounds, 0.0..max_regret * 1.05)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("round")
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, p) in r.policies.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points = std::iter::once((0.0, 0.0)).chain(
            p.rounds
                .iter()
                .map(|s| (s.round as f64, s.cumulative_regret)),
        );
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(p.policy.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .draw()
        .map_err(|e| fail(&e))?;

    let mut chart = ChartBuilder::on(&right)
        .caption("First action was the best one (%)", ("sans-serif", 15))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(1.0..rounds.max(2.0), 0.0..100.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("round")
        .draw()
        .map_err(|e| fail(&e))?;
    for (i, p) in r.policies.iter().enumerate() {
        let color = colors[i % colors.len()];
        let points = p
            .rounds
            .iter()
            .map(|s| (s.round as f64, 100.0 * s.best_share()));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}

/// `nextbest evaluate LOG... --rules DIR`.
pub fn run_evaluate(
    logs: &[PathBuf],
    rules: &Path,
    success: &[String],
    json: bool,
) -> Result<ExitCode, Error> {
    use nextbest::tools::evaluate::{evaluate, EvaluateOptions};
    let mut opts = EvaluateOptions::default();
    if !success.is_empty() {
        opts.success = success
            .iter()
            .map(|s| {
                nextbest::OutcomeKind::parse(s).ok_or_else(|| {
                    Error::InvalidConfig(format!(
                        "unknown outcome kind `{s}`; use impression, clicked, accepted, rejected or no_response"
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
    }
    let engine = nextbest::Engine::from_dir(rules)?;
    let ev = evaluate(logs, &engine, &opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&ev).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "read {} records from {} files ({})",
        ev.records,
        ev.files.len(),
        crate::files_list(&ev.files)
    );
    println!(
        "candidate {} ({}) on {} logged decisions ({} records); success = {}",
        ev.candidate,
        ev.candidate_hash,
        ev.decisions,
        ev.records,
        ev.success.join(", ")
    );
    println!(
        "used {} decisions with a first action: {} successes; the candidate agrees on {} ({:.1}%)",
        ev.used,
        ev.successes,
        ev.matched,
        100.0 * ev.matched as f64 / ev.used.max(1) as f64
    );
    println!(
        "\n  {:<28} {:>9} {:>19} {:>9}",
        "estimate", "rate", "95% interval", "std err"
    );
    for (name, e) in [
        ("logged policy (on-policy)", ev.logged),
        ("candidate, IPS", ev.ips),
        ("candidate, self-normalised", ev.snips),
    ] {
        match e {
            Some(e) => println!(
                "  {name:<28} {:>8.3}% [{:>7.3}%, {:>7.3}%] {:>8.3}%",
                100.0 * e.value,
                100.0 * e.low,
                100.0 * e.high,
                100.0 * e.std_error
            ),
            None if ev.joined_outcomes == 0 => {
                println!("  {name:<28} {:>9}", crate::impact::NO_OUTCOMES)
            }
            None => println!("  {name:<28} {:>9}", "-"),
        }
    }
    println!(
        "\neffective sample size {:.0} of {}; largest weight {:.1}",
        ev.effective_sample_size, ev.used, ev.max_weight
    );
    if ev.unjoined_outcomes > 0 {
        println!("{} outcomes name no logged decision", ev.unjoined_outcomes);
    }
    for e in &ev.errors {
        println!("  error: {e}");
    }
    for p in ev
        .read
        .partial_last_lines
        .iter()
        .chain(&ev.read.corrupt_lines)
    {
        println!("  damaged: {p}");
    }
    for w in &ev.warnings {
        println!("warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
