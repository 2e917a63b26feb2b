//! The `nextbest` command-line tool: validate and test rule sets, decide
//! from JSON lines and record outcomes, simulate a population; govern changes (keys,
//! revisions, approvals, the change log, the review report) and measure
//! impact against control.

use std::io::{BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[macro_use]
mod out;
mod batch;
mod error;
mod governance;
mod impact;
mod keys;
mod learn;
mod review;
mod rollout;
mod ship;

use clap::{Parser, Subcommand};
use error::CliError;
use learn::{run_learn, LearnArgs};
use nextbest::persona::{load_personas, run_persona};
use nextbest::simulate::{load_customers, simulate, SimulateOptions};
use nextbest::{Engine, Error, RuleSet, Timestamp};

#[derive(Parser)]
#[command(
    name = "nextbest",
    version,
    about = "Real-time next-best-action decisioning"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Core(CoreCommand),
    #[command(flatten)]
    Governed(GovernedCommand),
    #[command(flatten)]
    Fleet(rollout::FleetCommand),
    /// Ship a decision log's records to Kafka, at least once, resuming
    /// from the position the last run stored (docs/SHIPPING.md).
    Ship(ship::ShipArgs),
}

/// The commands that use the core library alone.
#[derive(Subcommand)]
enum CoreCommand {
    /// Load, validate and compile rule directories; report every error.
    Validate {
        /// Rule directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Print a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Run the personas in DIR/personas against the rule set.
    Test {
        /// Rule directory.
        dir: PathBuf,
        /// Print JSON results.
        #[arg(long)]
        json: bool,
    },
    /// Decide: request JSON lines on stdin, decision JSON lines on stdout,
    /// each answer written (and flushed) before the next line is read, so
    /// that a program can use it as a request/response subprocess through
    /// a pipe. A line that fails is answered with {"error": {"line",
    /// "message"}}; at the end, if any failed, their count goes to stderr
    /// and the exit status is 1 (unless --allow-errors). Or, with --batch,
    /// every customer of a Parquet file to a Parquet file.
    Decide {
        /// Rule directory.
        #[arg(required_unless_present_any = ["repo", "follow"])]
        dir: Option<PathBuf>,
        /// Serve a governance repository's live revision instead, and
        /// follow its publishes and rollbacks (see docs/GOVERNANCE.md).
        #[arg(long, conflicts_with = "dir")]
        repo: Option<PathBuf>,
        /// Keep interaction history and volume counters in the fleet's
        /// shared store (`redis://host:port/db`, key prefix `nb:`, 20 ms
        /// deadline, on_unavailable closed: see docs/FLEET.md).
        #[arg(long, value_name = "URL")]
        state: Option<String>,
        /// With --state: the deadline of each call to the store, in
        /// milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 20, requires = "state")]
        state_timeout_ms: u64,
        #[command(flatten)]
        follow: FollowArgs,
        /// Exit 0 even when lines failed (each is still answered with an
        /// error line and counted on stderr).
        #[arg(long, conflicts_with = "batch")]
        allow_errors: bool,
        /// Refuse (answer with an error line) a request whose context names
        /// an attribute the schema does not declare. Without it, such a
        /// request is decided without that attribute and its decision lists
        /// it under "warnings", with the closest declared name.
        #[arg(long, conflicts_with = "batch")]
        strict: bool,
        /// Decide every row of this Parquet file (one customer a row,
        /// columns named like the schema's attributes) on all cores.
        #[arg(long, requires_all = ["output", "channel"])]
        batch: Option<PathBuf>,
        /// --batch: where to write the decisions (Parquet, one row per
        /// chosen action).
        #[arg(short, long, requires = "batch")]
        output: Option<PathBuf>,
        /// --batch: the channel every row is decided for.
        #[arg(long, requires = "batch")]
        channel: Option<String>,
        /// --batch: the column of customer ids.
        #[arg(long, default_value = "customer_id", requires = "batch")]
        customer_id: String,
        /// --batch: actions per customer (default: the channel's limit).
        #[arg(long, requires = "batch")]
        limit: Option<usize>,
        /// --batch: decision time, RFC 3339 (default: when each row is
        /// decided).
        #[arg(long, requires = "batch")]
        now: Option<String>,
        /// --batch: deciding threads (default: one per core).
        #[arg(long, requires = "batch")]
        threads: Option<usize>,
        /// --batch: rows per chunk (the unit of work, and of memory).
        #[arg(long, default_value_t = 4096, requires = "batch")]
        chunk_rows: usize,
    },
    /// Record outcomes: JSON lines in, one status line out each; with
    /// --state, into the fleet's shared store.
    ///
    /// Outcome JSON lines on stdin ({"customer_id", "action", "channel",
    /// "outcome", optional "decision_id" and "timestamp"}), one status
    /// line out per line ({"line", "recorded": true}), each written (and
    /// flushed) before the next line is read. A
    /// line that fails is answered with {"error": {"line", "message"}} and
    /// skipped, and the lines after it are still recorded; at the end, if
    /// any failed, their count goes to stderr and the exit status is 1
    /// (unless --allow-errors). With --state the outcomes go to the fleet's
    /// shared interaction history, where every engine's next decision sees
    /// them. Without --state they are recorded into this process's own
    /// engine and gone when it exits: useful only with --log.
    Outcome {
        /// Rule directory (outcomes are checked against it: the channel
        /// and the action must exist).
        dir: PathBuf,
        /// Record into the fleet's shared store (`redis://host:port/db`,
        /// key prefix `nb:`, 20 ms deadline: see docs/FLEET.md).
        #[arg(long, value_name = "URL")]
        state: Option<String>,
        /// With --state: the deadline of each call to the store, in
        /// milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 20, requires = "state")]
        state_timeout_ms: u64,
        /// Also write each outcome to this decision log (appended to it).
        #[arg(long, value_name = "PATH")]
        log: Option<PathBuf>,
        #[command(flatten)]
        ship: ShipTo,
        /// Exit 0 even when lines failed (each is still answered with an
        /// error line and counted on stderr).
        #[arg(long)]
        allow_errors: bool,
    },
    /// Decide for a population and report throughput, latency, wins and
    /// the funnel.
    Simulate {
        /// Rule directory.
        dir: PathBuf,
        /// Population file (JSON lines); default DIR/customers.jsonl.
        #[arg(long)]
        customers: Option<PathBuf>,
        /// Decide every line on this channel: it wins over the lines' own
        /// `channel`. Without it, each line is decided on its own channel
        /// (lines without one: the first inbound channel), and the report
        /// splits per channel.
        #[arg(long)]
        channel: Option<String>,
        /// Actions per decision (default: the channel's limit).
        #[arg(long, conflicts_with = "learn")]
        limit: Option<usize>,
        /// Decision time, RFC 3339 (default 2026-11-23T10:00:00Z).
        #[arg(long)]
        now: Option<String>,
        /// Write the decision log (JSON Lines; zstd-compressed when the name
        /// ends in .zst) of the timed pass here (with --learn: of the one
        /// policy, decisions and outcomes). A run starts a new log: an
        /// existing file of that name, and its rotated files (NAME.1,
        /// NAME.2, ...), are replaced, unless --append.
        #[arg(long)]
        log: Option<PathBuf>,
        /// With --log: add this run's records to the existing log instead of
        /// replacing it.
        #[arg(long, requires = "log")]
        append: bool,
        #[command(flatten)]
        ship: ShipTo,
        /// Decide against the fleet's shared store (`redis://host:port/db`:
        /// its customers' history, volume caps and learning counts, as a
        /// fleet instance would; see docs/FLEET.md). Not with --learn.
        #[arg(long, value_name = "URL", conflicts_with = "learn")]
        state: Option<String>,
        /// With --state: the deadline of each call to the store, in
        /// milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 20, requires = "state")]
        state_timeout_ms: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// The closed-loop learning demo: customers answer with hidden true
        /// rates; compare policies' convergence and cumulative regret.
        #[arg(long)]
        learn: bool,
        /// --learn: rounds (every customer is decided for once per round).
        #[arg(long, default_value_t = 30, requires = "learn")]
        rounds: usize,
        /// --learn: time between rounds (e.g. 7d, 1d, 12h): how often a
        /// customer comes back.
        #[arg(long, default_value = "7d", requires = "learn")]
        interval: String,
        /// --learn: seed of the responses and draws.
        #[arg(long, default_value_t = 1, requires = "learn")]
        seed: u64,
        /// --learn: policies to compare (static, posterior_mean, thompson,
        /// epsilon_greedy); default all.
        #[arg(long, value_delimiter = ',', requires = "learn")]
        policies: Vec<String>,
        /// --learn: the hidden rates (default DIR/truth.toml, else the
        /// starting propensities perturbed by a seeded factor in [1/3, 3]).
        #[arg(long, requires = "learn")]
        truth: Option<PathBuf>,
        /// --learn without a truth file: perturb per value of this context
        /// attribute too.
        #[arg(long, requires = "learn")]
        segment: Option<String>,
        /// --learn: write the cumulative-regret and best-action plot (SVG).
        #[arg(long, default_value = "learning.svg", requires = "learn")]
        plot: PathBuf,
    },
    /// Re-run every decision in a decision log on its exact rule version
    /// and report every mismatch.
    Replay {
        /// Log files, directories of them, or patterns such as
        /// 'logs/decisions.jsonl*': the files of a rotated log are read
        /// oldest first (PATH.N ... PATH.1, PATH) however they are named.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// A rule directory; used for records whose hash matches it.
        #[arg(long)]
        rules: Option<PathBuf>,
        /// The version archive (`decision_log.archive_dir`).
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Off-policy evaluation: estimate the acceptance rate a candidate rule
    /// version would have had on logged traffic (IPS and self-normalised
    /// IPS with 95% intervals), from the logged selection probabilities
    /// and the outcomes joined by decision id.
    Evaluate {
        /// Decision log files, directories of them, or patterns such as
        /// 'logs/decisions.jsonl*': the files of a rotated log are read
        /// oldest first (PATH.N ... PATH.1, PATH) however they are named.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// The candidate rule directory.
        #[arg(long)]
        rules: PathBuf,
        /// Outcome kinds that count as success (default: accepted).
        #[arg(long, value_delimiter = ',')]
        success: Vec<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two rule versions' decisions over a population.
    Diff {
        /// The live rule directory.
        before: PathBuf,
        /// The candidate rule directory.
        after: PathBuf,
        /// Population file (JSON lines).
        #[arg(long)]
        customers: PathBuf,
        /// Decide every line on this channel (both versions must have it):
        /// it wins over the lines' own `channel`. Without it, each line is
        /// decided on its own channel (lines without one: the first inbound
        /// channel of BEFORE), and the report splits per channel.
        #[arg(long)]
        channel: Option<String>,
        /// How many example customers to show.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// Decision time, RFC 3339 (default 2026-11-23T10:00:00Z).
        #[arg(long)]
        now: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Governed change and impact.
#[derive(Subcommand)]
enum GovernedCommand {
    /// Make a signing key pair for one person: DIR/NAME.key (secret) and
    /// DIR/NAME.pub (for governance.toml).
    Keygen {
        /// The person's name (letters, digits, `_`, `-`, `.`).
        name: String,
        /// Where to write the files.
        #[arg(long, default_value = "keys")]
        dir: PathBuf,
    },
    /// Governed change: revisions, approvals, publish, rollback and the
    /// change log of a governance repository.
    Revision {
        #[command(subcommand)]
        command: RevisionCommand,
    },
    /// Write the review report of a candidate rule directory against the
    /// live one: one self-contained HTML file; prints its SHA-256, which
    /// approvers sign.
    Review {
        /// The candidate rule directory.
        candidate: PathBuf,
        /// The live rule directory.
        #[arg(long)]
        baseline: PathBuf,
        /// Population file (JSON lines).
        #[arg(long)]
        customers: PathBuf,
        /// Decide every line on this channel: it wins over the lines' own
        /// `channel`. Without it, each line is decided on its own channel
        /// (lines without one: the baseline's first inbound channel), with
        /// a section per channel.
        #[arg(long)]
        channel: Option<String>,
        /// Decision logs (oldest first): adds the off-policy estimate and
        /// impact against control.
        #[arg(long)]
        log: Vec<PathBuf>,
        /// The report file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Decision time, RFC 3339 (default 2026-11-23T10:00:00Z).
        #[arg(long)]
        now: Option<String>,
        /// Example customers per channel.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// The relative lift to size experiments for (0.1 = 10%).
        #[arg(long, default_value_t = 0.1)]
        mde: f64,
    },
    /// Impact against control: per experiment arm, decisions, outcomes,
    /// acceptance rate and value per decision with 95% intervals, lift over
    /// control and the sample size needed to detect a lift.
    Impact {
        /// Decision log files (rotated files too), oldest first.
        #[arg(required = true)]
        logs: Vec<PathBuf>,
        /// The relative lift to size the experiment for (0.1 = 10%).
        #[arg(long, default_value_t = 0.1)]
        mde: f64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum RevisionCommand {
    /// Create a governance repository: governance.toml (approvers, required
    /// approvals) and the first, live revision.
    Init {
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The rule directory that is live now.
        #[arg(long)]
        from: PathBuf,
        /// An approver's public key file (NAME.pub); repeat for each.
        #[arg(long = "approver", required = true)]
        approvers: Vec<PathBuf>,
        /// Valid approvals a publish needs.
        #[arg(long, default_value_t = 1)]
        required: usize,
        /// Sign the init entry with this key.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Create a draft revision from a rule directory, against the live one;
    /// the last line printed is its id.
    New {
        /// The changed rule directory.
        dir: PathBuf,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The change request's title.
        #[arg(long)]
        title: String,
        /// Who asked for the change.
        #[arg(long)]
        requested_by: String,
        /// The business objective.
        #[arg(long)]
        objective: Option<String>,
        /// Notes from the author.
        #[arg(long)]
        notes: Option<String>,
        /// The author's secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Submit a draft for approval (its author).
    Submit {
        /// The revision id.
        id: String,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The author's secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Approve a submitted revision: sign its hash and the review report's.
    Approve {
        /// The revision id.
        id: String,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The approver's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The review report read (its SHA-256 is signed; a copy is kept).
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// Reject a submitted revision, with a reason.
    Reject {
        /// The revision id.
        id: String,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The approver's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Make an approved revision live (refused, and logged, without the
    /// approvals governance.toml requires).
    Publish {
        /// The revision id.
        id: String,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The publisher's secret key file (a listed approver).
        #[arg(long)]
        key: PathBuf,
    },
    /// Make an earlier revision live again, as a new change-log entry.
    Rollback {
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// The secret key file of a listed approver.
        #[arg(long)]
        key: PathBuf,
        /// The revision to go back to (default: the one live before).
        #[arg(long)]
        to: Option<String>,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print the change log; --verify checks its chain, signatures and
    /// head, every revision's files and the live pointer.
    Log {
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Check the log; exit 1 on any problem.
        #[arg(long)]
        verify: bool,
        /// Print the entries as JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Show a revision: its change request, state, approvals, integrity and
    /// history.
    Show {
        /// The revision id.
        id: String,
        /// The repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Governed(c) => run_governed(c),
        Command::Core(c) => run_core(c).map_err(CliError::from),
        Command::Ship(args) => ship::run(args),
        Command::Fleet(c) => rollout::run(c).map_err(CliError::from),
    };
    out::finish(match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    })
}

fn run_governed(command: GovernedCommand) -> Result<ExitCode, CliError> {
    match command {
        GovernedCommand::Keygen { name, dir } => run_keygen(&name, &dir),
        GovernedCommand::Revision { command } => run_revision(command),
        GovernedCommand::Review {
            candidate,
            baseline,
            customers,
            channel,
            log,
            output,
            now,
            examples,
            mde,
        } => parse_now(now).map_err(CliError::from).and_then(|now| {
            let opts = review::ReviewOptions {
                candidate,
                baseline,
                customers,
                channel,
                logs: log,
                now,
                examples,
                mde,
            };
            review::run(&opts, &output)
        }),
        GovernedCommand::Impact { logs, mde, json } => run_impact(&logs, mde, json),
    }
}

/// The commands that only use the core library.
fn run_core(command: CoreCommand) -> Result<ExitCode, Error> {
    match command {
        CoreCommand::Validate { dirs, json } => validate(&dirs, json),
        CoreCommand::Test { dir, json } => test(&dir, json),
        CoreCommand::Decide {
            dir: Some(dir),
            batch: Some(input),
            output: Some(output),
            channel: Some(channel),
            customer_id,
            limit,
            now,
            threads,
            chunk_rows,
            ..
        } => batch::run_batch(
            &dir,
            batch::BatchArgs {
                input,
                output,
                channel,
                customer_id,
                limit,
                now,
                threads,
                chunk_rows,
            },
        ),
        CoreCommand::Decide { batch: Some(_), .. } => Err(Error::InvalidConfig(
            "--batch decides with a rule directory, not --repo".into(),
        )),
        CoreCommand::Decide {
            dir,
            repo,
            state,
            state_timeout_ms,
            follow,
            allow_errors,
            strict,
            ..
        } => decide(
            dir.as_deref(),
            repo.as_deref(),
            fleet(state, state_timeout_ms).map(|s| follow.apply(s)),
            allow_errors,
            strict,
        ),
        CoreCommand::Outcome {
            dir,
            state,
            state_timeout_ms,
            log,
            ship,
            allow_errors,
        } => outcome(
            &dir,
            fleet(state, state_timeout_ms),
            log.map(|path| ship.log_config(path)),
            allow_errors,
        ),
        CoreCommand::Simulate {
            dir,
            customers,
            channel,
            limit,
            now,
            log,
            append,
            ship,
            state,
            state_timeout_ms,
            json,
            learn,
            rounds,
            interval,
            seed,
            policies,
            truth,
            segment,
            plot,
        } => {
            if learn && ship.ship_kafka.is_some() {
                return Err(Error::InvalidConfig(
                    "--ship-kafka ships the log of a timed pass, not of --learn".into(),
                ));
            }
            if learn {
                let args = LearnArgs {
                    customers,
                    channel,
                    now,
                    rounds,
                    interval,
                    seed,
                    policies,
                    truth,
                    segment,
                    plot,
                    json,
                    log,
                    append,
                };
                run_learn(&dir, args)
            } else {
                let log = log.map(|path| (ship.log_config(path), append));
                let state = fleet(state, state_timeout_ms);
                run_simulate(&dir, customers, channel, limit, now, log, state, json)
            }
        }
        CoreCommand::Replay {
            logs,
            rules,
            archive,
            json,
        } => run_replay(&logs, rules, archive, json),
        CoreCommand::Evaluate {
            logs,
            rules,
            success,
            json,
        } => learn::run_evaluate(&logs, &rules, &success, json),
        CoreCommand::Diff {
            before,
            after,
            customers,
            channel,
            examples,
            now,
            json,
        } => run_diff(&before, &after, &customers, channel, examples, now, json),
    }
}

fn run_keygen(name: &str, dir: &Path) -> Result<ExitCode, CliError> {
    let (secret, public, public_path) = keys::keygen(name, dir)?;
    println!("wrote {} (secret: keep it to yourself)", secret.display());
    println!(
        "wrote {} (public key {})",
        public_path.display(),
        public.public_key
    );
    Ok(ExitCode::SUCCESS)
}

fn run_revision(command: RevisionCommand) -> Result<ExitCode, CliError> {
    use governance::commands as gc;
    match command {
        RevisionCommand::Init {
            repo,
            from,
            approvers,
            required,
            key,
        } => gc::init(&repo, &from, &approvers, required, key.as_deref()),
        RevisionCommand::New {
            dir,
            repo,
            title,
            requested_by,
            objective,
            notes,
            key,
        } => gc::new(
            &repo,
            &gc::NewRevision {
                dir,
                title,
                objective,
                requested_by,
                notes,
                key,
            },
        ),
        RevisionCommand::Submit { id, repo, key } => gc::submit(&repo, &id, &key),
        RevisionCommand::Approve {
            id,
            repo,
            key,
            report,
        } => gc::approve(&repo, &id, &key, report.as_deref()),
        RevisionCommand::Reject {
            id,
            repo,
            key,
            reason,
        } => gc::reject(&repo, &id, &key, &reason),
        RevisionCommand::Publish { id, repo, key } => gc::publish(&repo, &id, &key),
        RevisionCommand::Rollback {
            repo,
            key,
            to,
            reason,
        } => gc::rollback(&repo, &key, to.as_deref(), reason.as_deref()),
        RevisionCommand::Log { repo, verify, json } => gc::log(&repo, verify, json),
        RevisionCommand::Show { id, repo, json } => gc::show(&repo, &id, json),
    }
}

fn run_impact(logs: &[PathBuf], mde: f64, json: bool) -> Result<ExitCode, CliError> {
    if !(mde > 0.0 && mde.is_finite()) {
        return Err(CliError::refused(format!(
            "--mde {mde}: give the relative lift to detect, e.g. 0.1 for 10%"
        )));
    }
    let r = impact::impact(logs, mde)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        impact::print(&r);
    }
    Ok(ExitCode::SUCCESS)
}

fn validate(dirs: &[PathBuf], json: bool) -> Result<ExitCode, Error> {
    let mut ok = true;
    for dir in dirs {
        match RuleSet::from_dir(dir) {
            Ok(rs) => {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "dir": dir, "ok": true, "name": rs.name(), "hash": rs.hash(),
                            "actions": rs.action_ids().count(),
                            "channels": rs.channel_names().collect::<Vec<_>>(),
                            "conditions": rs.condition_count(),
                            "attributes": rs.schema().attributes().len(),
                            "strategy_hooks": rs.strategy_hooks().into_iter()
                                .map(|(h, why)| (h.to_string(), serde_json::Value::from(why.map_or_else(|| "lowered".to_string(), |w| format!("rhai: {w}")))))
                                .collect::<serde_json::Map<_, _>>(),
                            "models": rs.model_versions()
                                .map(|(name, hash)| serde_json::json!({"name": name, "hash": hash}))
                                .collect::<Vec<_>>(),
                        })
                    );
                } else {
                    println!(
                        "ok: {} ({}): {} actions, {} channels, {} attributes, {} distinct conditions, hash {}",
                        rs.name(),
                        dir.display(),
                        rs.action_ids().count(),
                        rs.channel_names().count(),
                        rs.schema().attributes().len(),
                        rs.condition_count(),
                        &rs.hash()[..16]
                    );
                    for (name, hash) in rs.model_versions() {
                        let file = rs.schema().attribute(name).and_then(|a| a.model());
                        println!(
                            "  predictive model {name}: {}, version {}",
                            file.unwrap_or_default(),
                            &hash[..16]
                        );
                    }
                    for (hook, why) in rs.strategy_hooks() {
                        match why {
                            None => {
                                println!("  strategy hook {hook}: lowered to native operations")
                            }
                            Some(w) => {
                                println!("  strategy hook {hook}: runs in rhai's interpreter: {w}")
                            }
                        }
                    }
                }
            }
            Err(Error::Rules(errs)) => {
                ok = false;
                if json {
                    let list: Vec<_> = errs
                        .errors()
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "file": dir.join(&e.location.file), "line": e.location.line,
                                "column": e.location.column, "message": e.message,
                            })
                        })
                        .collect();
                    println!(
                        "{}",
                        serde_json::json!({"dir": dir, "ok": false, "errors": list})
                    );
                } else {
                    eprintln!("{}: {} error(s):", dir.display(), errs.errors().len());
                    for e in errs.errors() {
                        eprintln!(
                            "  {}:{}:{}: {}",
                            dir.join(&e.location.file).display(),
                            e.location.line,
                            e.location.column,
                            e.message
                        );
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn test(dir: &Path, json: bool) -> Result<ExitCode, Error> {
    let engine = Engine::from_dir(dir)?;
    let personas = load_personas(dir)?;
    if personas.is_empty() {
        eprintln!(
            "{}: no personas in {}",
            dir.display(),
            dir.join("personas").display()
        );
        return Ok(ExitCode::FAILURE);
    }
    let (mut passed, mut failed) = (0, 0);
    for p in &personas {
        let name = p
            .file
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let result = run_persona(&engine, p);
        let (ok, detail, actions) = match &result {
            Ok(r) => (r.passed(), r.failures.clone(), r.actions.clone()),
            Err(e) => (false, vec![e.to_string()], Vec::new()),
        };
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
        if json {
            println!(
                "{}",
                serde_json::json!({"persona": name, "passed": ok, "actions": actions, "failures": detail})
            );
        } else if ok {
            println!("ok    {name}: {}", actions.join(", "));
        } else {
            println!("FAIL  {name}: {}", actions.join(", "));
            for f in detail {
                println!("        {f}");
            }
        }
    }
    if !json {
        println!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn decide(
    dir: Option<&Path>,
    repo: Option<&Path>,
    state: Option<nextbest::state::fleet::StateConfig>,
    allow_errors: bool,
    strict: bool,
) -> Result<ExitCode, Error> {
    let mut engine = match (dir, repo) {
        (None, None) if state.as_ref().is_some_and(|s| s.follow) => {
            let state = state.as_ref().map(fleet_live).transpose()?;
            Engine::new(state.ok_or_else(|| {
                Error::InvalidConfig("--follow without a rule directory needs --state".into())
            })?)
        }
        (_, Some(repo)) => {
            let config = serde_json::json!({ "governance_repo": repo, "strict_requests": strict });
            Engine::from_config_json(&config.to_string())?
        }
        (Some(dir), None) => {
            let config = serde_json::json!({ "rules_dir": dir, "strict_requests": strict });
            Engine::from_config_json(&config.to_string())?
        }
        (None, None) => {
            return Err(Error::InvalidConfig(
                "give a rule directory or --repo".into(),
            ))
        }
    };
    if let Some(url) = &state {
        engine = engine.with_state(url)?;
    }
    let engine = std::sync::Arc::new(engine);
    // With --repo, publishes and rollbacks are followed while serving.
    let _following = repo.map(|_| engine.watch_governance(std::time::Duration::from_secs(1)));
    // With --follow, the fleet's.
    let _fleet = match state.as_ref().filter(|s| s.follow) {
        Some(s) => Some(engine.follow_fleet(s)?),
        None => None,
    };
    let mut warned = 0usize;
    let (decided, errors) = serve_lines(|_, line| {
        engine.decide_json(line).map(|d| {
            warned += usize::from(!d.warnings().is_empty());
            d.to_json()
        })
    })?;
    if warned > 0 {
        eprintln!(
            "{warned} decision(s) ignored context attributes the schema does not declare (see their \"warnings\"; --strict refuses them)"
        );
    }
    Ok(summary(decided, "decided", errors, allow_errors))
}

/// The fleet's live version, compiled: what `decide --follow` without a
/// rule directory starts from.
fn fleet_live(state: &nextbest::state::fleet::StateConfig) -> Result<RuleSet, Error> {
    let store = nextbest::state::redis::FleetRollout::connect(state)?;
    match store.live_version()? {
        Some(v) => v.compile(),
        None => Err(Error::InvalidConfig(format!(
            "--follow without a rule directory: nothing has been published to {} (nextbest publish DIR --state URL)",
            store.store()
        ))),
    }
}

/// `nextbest outcome`: record each outcome line, into the shared store
/// with `state`, logged with `log`.
/// The shared store of `--state URL` with `--state-timeout-ms`.
fn fleet(url: Option<String>, timeout_ms: u64) -> Option<nextbest::state::fleet::StateConfig> {
    url.map(|url| nextbest::state::fleet::StateConfig {
        timeout_ms,
        ..nextbest::state::fleet::StateConfig::new(url)
    })
}

/// `decide --follow`: follow the fleet's rule rollout.
#[derive(clap::Args)]
struct FollowArgs {
    /// With --state: serve the fleet's live rule version (published by
    /// `nextbest publish DIR --state URL`) under the fleet's number, follow
    /// its publishes and rollbacks, and write a heartbeat that `nextbest
    /// fleet` lists. The rule directory is then optional: without it the
    /// fleet's live version is served from the start.
    #[arg(long, requires = "state", conflicts_with_all = ["repo", "batch"])]
    follow: bool,
    /// With --follow: this instance's id in `nextbest fleet` (default:
    /// HOST-PID).
    #[arg(long, value_name = "ID", requires = "follow")]
    instance_id: Option<String>,
    /// With --follow: how often to write the heartbeat and poll the live
    /// version, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000, requires = "follow")]
    heartbeat_ms: u64,
    /// With --state: the key prefix the fleet's engines use.
    #[arg(long, value_name = "PREFIX", default_value = "nb:", requires = "state")]
    key_prefix: String,
}

impl FollowArgs {
    fn apply(
        self,
        state: nextbest::state::fleet::StateConfig,
    ) -> nextbest::state::fleet::StateConfig {
        nextbest::state::fleet::StateConfig {
            follow: self.follow,
            instance_id: self.instance_id,
            heartbeat_ms: self.heartbeat_ms,
            key_prefix: self.key_prefix,
            ..state
        }
    }
}

/// `--ship-kafka` and `--ship-topic`: ship the `--log` to Kafka from
/// inside the engine (docs/SHIPPING.md).
#[derive(clap::Args)]
struct ShipTo {
    /// With --log: ship the log's records to these Kafka bootstrap
    /// servers (host:port[,...]) as they are written, at least once; the
    /// command ends once they are acknowledged (at most 5 s after its
    /// work; what is left goes with the next run on the same log).
    #[arg(long = "ship-kafka", value_name = "BROKERS", requires_all = ["log", "ship_topic"])]
    ship_kafka: Option<String>,
    /// With --ship-kafka: the topic.
    #[arg(long = "ship-topic", value_name = "TOPIC", requires = "ship_kafka")]
    ship_topic: Option<String>,
}

impl ShipTo {
    /// The decision log at `path`, shipped if asked.
    fn log_config(&self, path: PathBuf) -> nextbest::audit::LogConfig {
        let mut config = nextbest::audit::LogConfig::for_file(path);
        if let (Some(kafka), Some(topic)) = (&self.ship_kafka, &self.ship_topic) {
            config.ship = Some(nextbest::audit::ShipOptions::new(kafka, topic));
        }
        config
    }
}

fn outcome(
    dir: &Path,
    state: Option<nextbest::state::fleet::StateConfig>,
    log: Option<nextbest::audit::LogConfig>,
    allow_errors: bool,
) -> Result<ExitCode, Error> {
    let rules = RuleSet::from_dir(dir)?;
    let mut config = nextbest::EngineConfig::default();
    config.decision_log = log;
    let mut engine = Engine::try_with_config(rules, config)?;
    if let Some(url) = state {
        engine = engine.with_state(&url)?;
    }
    let (recorded, errors) = serve_lines(|i, line| {
        engine
            .record_outcome_json(line)
            .map(|()| format!("{{\"line\":{i},\"recorded\":true}}"))
    })?;
    engine.flush()?;
    Ok(summary(recorded, "recorded", errors, allow_errors))
}

/// Answer each non-blank line of stdin (`answer` gets its number, from 1,
/// and its text) with `answer`'s JSON on stdout, or with `{"error":
/// {"line", "message"}}` when it fails, before the next line is read:
/// (lines served, lines failed).
fn serve_lines(
    mut answer: impl FnMut(usize, &str) -> Result<String, Error>,
) -> Result<(usize, usize), Error> {
    let mut input = std::io::BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
    let mut out = BufWriter::new(std::io::stdout().lock());
    let (mut served, mut errors) = (0usize, 0usize);
    let mut line = String::new();
    for i in 1.. {
        line.clear();
        let read = input.read_line(&mut line).map_err(|e| Error::Io {
            path: "<stdin>".into(),
            source: e,
        })?;
        if read == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let answer = match answer(i, &line) {
            Ok(a) => {
                served += 1;
                a
            }
            Err(e) => {
                errors += 1;
                serde_json::json!({"error": {"line": i, "message": e.to_string()}}).to_string()
            }
        };
        // Flushed whenever the next line is not already read in full: a
        // program that writes one line and waits gets its answer, and a
        // file of lines is still written in large blocks.
        let pending = input.buffer().contains(&b'\n');
        let written = writeln!(out, "{answer}").and_then(|()| match pending {
            true => Ok(()),
            false => out.flush(),
        });
        if let Err(e) = written {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(Error::Io {
                path: "<stdout>".into(),
                source: e,
            });
        }
    }
    let _ = out.flush();
    Ok((served, errors))
}

/// The exit status of a run that served `served` lines (`what`: decided,
/// recorded) and failed `errors`, with their count on stderr if any.
fn summary(served: usize, what: &str, errors: usize, allow_errors: bool) -> ExitCode {
    if errors == 0 {
        return ExitCode::SUCCESS;
    }
    eprintln!(
        "{served} {what}, {errors} of {} line(s) failed (answered with an error line)",
        served + errors
    );
    if allow_errors {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Remove the log at `path` and its rotated files (`path.1`, `path.2`, ...)
/// so that a run's log holds that run alone; say so on stderr.
pub(crate) fn start_new_log(path: &Path) -> Result<(), Error> {
    let rotated = |n: usize| {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    };
    let mut removed = 0;
    for file in std::iter::once(path.to_path_buf()).chain((1..).map(rotated)) {
        match std::fs::remove_file(&file) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && file != path => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::Io {
                    path: file,
                    source: e,
                })
            }
        }
    }
    // A shipper's position in the files just removed means nothing now
    // (docs/SHIPPING.md: `.NAME.ship-position` beside the log).
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        let position = dir.join(format!(".{}.ship-position", name.to_string_lossy()));
        if position.exists() {
            std::fs::remove_file(&position).map_err(|source| Error::Io {
                path: position.clone(),
                source,
            })?;
        }
    }
    if removed > 0 {
        eprintln!(
            "{}: replaced the log of an earlier run ({removed} file(s); --append adds to it instead)",
            path.display()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_simulate(
    dir: &Path,
    customers: Option<PathBuf>,
    channel: Option<String>,
    limit: Option<usize>,
    now: Option<String>,
    log: Option<(nextbest::audit::LogConfig, bool)>,
    state: Option<nextbest::state::fleet::StateConfig>,
    json: bool,
) -> Result<ExitCode, Error> {
    let rules = RuleSet::from_dir(dir)?;
    let path = customers.unwrap_or_else(|| dir.join("customers.jsonl"));
    let customers = load_customers(&path)?;
    let engine = match log {
        Some((log, append)) => {
            if !append {
                start_new_log(&log.path)?;
            }
            let mut config = nextbest::EngineConfig::default();
            config.decision_log = Some(log);
            Engine::try_with_config(rules, config)?
        }
        None => Engine::new(rules),
    };
    let engine = match state {
        Some(state) => engine.with_state(&state)?,
        None => engine,
    };
    let opts = SimulateOptions {
        channel,
        limit,
        now: Some(parse_now(now)?),
    };
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(2 * customers.len() as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg} [{bar:40}] {pos}/{len} ({per_sec})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_message("simulating");
        Some(b)
    } else {
        None
    };
    let report = simulate(&engine, &customers, &opts, |n| {
        if let Some(b) = &bar {
            b.set_position(n as u64);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    engine.flush()?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_report(&report);
    Ok(ExitCode::SUCCESS)
}

fn run_replay(
    logs: &[PathBuf],
    rules: Option<PathBuf>,
    archive: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode, Error> {
    let sources = nextbest::tools::replay::VersionSources {
        rules_dir: rules,
        archive_dir: archive,
    };
    let r = nextbest::tools::replay::replay(logs, &sources)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    } else {
        println!(
            "read {} records from {} files ({})",
            r.records,
            r.files.len(),
            files_list(&r.files)
        );
        println!(
            "{} records: {} decisions, {} outcomes; {} decisions replayed exactly, {} mismatches, {} not reproducible (masked attributes), {} version not found",
            r.records,
            r.decisions,
            r.outcomes,
            r.matched,
            r.mismatches.len(),
            r.masked.len(),
            r.unavailable.len()
        );
        for (title, list) in [
            ("mismatch", &r.mismatches),
            ("version not found", &r.unavailable),
            ("masked", &r.masked),
            ("partial last line", &r.read.partial_last_lines),
            ("corrupt line", &r.read.corrupt_lines),
        ] {
            for m in list.iter().take(20) {
                println!("  {title}: {m}");
            }
            if list.len() > 20 {
                println!("  ... and {} more", list.len() - 20);
            }
        }
    }
    Ok(if r.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The files a log reader read, oldest first, for a one-line summary.
pub(crate) fn files_list(files: &[PathBuf]) -> String {
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    match names.len() {
        0..=4 => names.join(", "),
        n => format!("{}, ... {} more ..., {}", names[0], n - 2, names[n - 1]),
    }
}

fn parse_now(now: Option<String>) -> Result<Timestamp, Error> {
    Timestamp::parse(now.as_deref().unwrap_or(nextbest::persona::DEFAULT_NOW))
        .map_err(Error::InvalidRequest)
}

fn run_diff(
    before: &Path,
    after: &Path,
    customers: &Path,
    channel: Option<String>,
    examples: usize,
    now: Option<String>,
    json: bool,
) -> Result<ExitCode, Error> {
    let (b, a) = (Engine::from_dir(before)?, Engine::from_dir(after)?);
    let customers = load_customers(customers)?;
    let r = nextbest::diff::diff(
        &b,
        &a,
        &customers,
        channel.as_deref(),
        parse_now(now)?,
        examples,
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    println!("before   {}", r.before);
    println!("after    {}", r.after);
    println!(
        "channel  {}",
        channel_rule(r.channel.as_deref(), &r.default_channel)
    );
    println!(
        "{} of {} decisions change ({:.1}%); the first action changes for {} ({:.1}%)",
        r.changed,
        r.customers,
        100.0 * r.changed_share,
        r.top_changed,
        if r.customers > 0 {
            100.0 * r.top_changed as f64 / r.customers as f64
        } else {
            0.0
        }
    );
    if r.errors > 0 {
        println!(
            "{} request(s) failed on one of the versions, e.g.:",
            r.errors
        );
        for e in &r.error_examples {
            println!("  {e}");
        }
    }
    if r.channels.len() > 1 {
        println!();
        println!(
            "{:<16} {:>9} {:>8} {:>12} {:>7}",
            "channel", "customers", "changed", "first action", "errors"
        );
        for c in &r.channels {
            println!(
                "{:<16} {:>9} {:>8} {:>12} {:>7}",
                c.channel, c.customers, c.changed, c.top_changed, c.errors
            );
        }
    }
    if !r.actions.is_empty() {
        println!();
        println!(
            "{:<28} {:>8} {:>8} {:>8}",
            "action", "before", "after", "change"
        );
        for s in r.actions.iter().take(15) {
            println!(
                "{:<28} {:>8} {:>8} {:>+8}",
                s.action, s.before, s.after, s.delta
            );
        }
    }
    if !r.examples.is_empty() {
        println!();
        println!("examples");
        for e in &r.examples {
            println!(
                "  {}: [{}] -> [{}]",
                e.customer_id,
                e.before.join(", "),
                e.after.join(", ")
            );
            println!("    {}", e.why);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A report's channel line: the one given, or each line's own.
fn channel_rule(given: Option<&str>, default: &str) -> String {
    match given {
        Some(c) => format!("{c} (--channel: every line decided on it)"),
        None => format!("each line's own (lines without one: {default})"),
    }
}

fn print_report(r: &nextbest::simulate::SimulationReport) {
    println!(
        "rule set    {} (hash {})",
        r.ruleset,
        &r.hash[..16.min(r.hash.len())]
    );
    println!(
        "channel     {}",
        channel_rule(r.channel.as_deref(), &r.default_channel)
    );
    println!(
        "customers   {}  decisions {}  errors {}",
        r.customers, r.decisions, r.errors
    );
    if r.channels.len() > 1 {
        println!(
            "  {:<14} {:>9} {:>7} {:>8} {:>13} {:>9}",
            "per channel", "customers", "errors", "chosen", "most in one", "no action"
        );
        for c in &r.channels {
            println!(
                "  {:<14} {:>9} {:>7} {:>8} {:>13} {:>9}",
                c.channel, c.customers, c.errors, c.chosen, c.most_chosen, c.no_action
            );
        }
    }
    for e in &r.error_examples {
        println!("  error: {e}");
    }
    for (warning, lines) in &r.ignored_attributes {
        println!("  warning: {warning}: {lines} line(s)");
    }
    println!(
        "throughput  {:.0} decisions/s (one thread)",
        r.decisions_per_sec
    );
    let us = |ns: u64| ns as f64 / 1000.0;
    println!(
        "latency     p50 {:.2} µs  p99 {:.2} µs  p99.9 {:.2} µs  max {:.2} µs",
        us(r.latency_ns.p50),
        us(r.latency_ns.p99),
        us(r.latency_ns.p999),
        us(r.latency_ns.max)
    );
    println!();
    println!("funnel (candidates = actions offered on the channel x customers)");
    println!("  {:<16} {:>10}", "candidates", r.funnel.candidates);
    for st in nextbest::Stage::ALL {
        let n = r.funnel.removed.get(st.as_str()).copied().unwrap_or(0);
        let pct = if r.funnel.candidates > 0 {
            100.0 * n as f64 / r.funnel.candidates as f64
        } else {
            0.0
        };
        println!("  - {:<14} {:>10}  ({pct:.1}%)", st.as_str(), n);
    }
    println!("  {:<16} {:>10}", "ranked", r.funnel.ranked);
    println!("  {:<16} {:>10}", "chosen", r.funnel.chosen);
    println!();
    let no_pct = if r.decisions > 0 {
        100.0 * r.no_action as f64 / r.decisions as f64
    } else {
        0.0
    };
    println!("customers with no action: {} ({no_pct:.1}%)", r.no_action);
    if !r.no_action_examples.is_empty() {
        println!("  e.g. {}", r.no_action_examples.join(", "));
    }
    println!();
    let mut wins: Vec<_> = r.wins.iter().collect();
    wins.sort_by(|a, b| b.1.chosen.cmp(&a.1.chosen).then(a.0.cmp(b.0)));
    println!(
        "{:<28} {:>8} {:>8} {:>7}",
        "action", "chosen", "first", "share"
    );
    for (a, w) in wins {
        let share = if r.decisions > 0 {
            100.0 * w.chosen as f64 / r.decisions as f64
        } else {
            0.0
        };
        println!("{a:<28} {:>8} {:>8} {share:>6.1}%", w.chosen, w.first);
    }
}
