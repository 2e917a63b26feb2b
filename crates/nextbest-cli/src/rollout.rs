//! Rule rollout to the fleet: `nextbest publish DIR --state URL`,
//! `nextbest rollback --state URL [--to N]` and `nextbest fleet --state
//! URL` (docs/FLEET.md, "Rule rollout" and "Instance status").
//!
//! `publish` validates and compiles the rule directory here first: a
//! broken one is refused with every error's file, line and column, and
//! nothing is written to the store. Instances following the fleet
//! (`nextbest decide ... --state URL --follow`) compile it again and
//! serve it under the fleet's number.

use std::path::PathBuf;
use std::process::ExitCode;

use nextbest::state::fleet::StateConfig;
use nextbest::state::redis::{FleetRollout, InstanceStatus};
use nextbest::{Error, RuleSet};

/// The fleet's rule rollout and instances.
#[derive(clap::Subcommand)]
pub enum FleetCommand {
    /// Publish a rule directory to the fleet: validated and compiled here
    /// (a broken one is refused, and nothing is written), stored in the
    /// fleet's store under the next fleet-wide version number, made live,
    /// and announced to the instances following it. (A governance
    /// repository's revisions go live with `nextbest revision publish`.)
    Publish {
        /// The rule directory.
        dir: PathBuf,
        #[command(flatten)]
        store: Store,
        /// Who publishes (default: $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make an earlier fleet version live again, and announce it.
    Rollback {
        #[command(flatten)]
        store: Store,
        /// The version to go back to (default: the one live before the
        /// live one).
        #[arg(long, value_name = "N")]
        to: Option<u64>,
        /// Who rolls back (default: $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the fleet's live version, the instances whose heartbeat is
    /// current (id, host, version served and its hash, last heartbeat,
    /// decisions, errors) and, with --history, the change log.
    Fleet {
        #[command(flatten)]
        store: Store,
        /// Also print the change log (publishes and rollbacks).
        #[arg(long)]
        history: bool,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The fleet's store.
#[derive(clap::Args)]
pub struct Store {
    /// The fleet's store (`redis://host:port/db`).
    #[arg(long, value_name = "URL")]
    state: String,
    /// The key prefix the fleet's engines use.
    #[arg(long, value_name = "PREFIX", default_value = "nb:")]
    key_prefix: String,
    /// The deadline of each call to the store, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    state_timeout_ms: u64,
}

impl Store {
    fn connect(&self) -> Result<FleetRollout, Error> {
        FleetRollout::connect(&StateConfig {
            key_prefix: self.key_prefix.clone(),
            timeout_ms: self.state_timeout_ms,
            ..StateConfig::new(self.state.clone())
        })
    }
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Run a fleet command.
pub fn run(command: FleetCommand) -> Result<ExitCode, Error> {
    match command {
        FleetCommand::Publish {
            dir,
            store,
            by,
            json,
        } => publish(&dir, &store, &who(by), json),
        FleetCommand::Rollback {
            store,
            to,
            by,
            json,
        } => {
            let fleet = store.connect()?;
            let by = who(by);
            let number = fleet.rollback(to, &by)?;
            let hash = fleet.fetch(number)?.map(|v| v.hash).unwrap_or_default();
            if json {
                let out = serde_json::json!({"rolled_back": true, "version": number, "hash": hash, "by": by});
                println!("{out}");
            } else {
                println!(
                    "fleet version {number} (hash {}) is live again in {}",
                    short(&hash),
                    fleet.store()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetCommand::Fleet {
            store,
            history,
            json,
        } => list(&store.connect()?, history, json),
    }
}

fn publish(dir: &std::path::Path, store: &Store, by: &str, json: bool) -> Result<ExitCode, Error> {
    // Compiled before the store is touched: a broken rule directory is
    // refused with its errors, and nothing is written.
    let rules = RuleSet::from_dir(dir)?;
    let fleet = store.connect()?;
    if let Some(live) = fleet.live()?.and_then(|n| fleet.fetch(n).transpose()) {
        let live = live?;
        if live.hash == rules.hash() {
            if json {
                let out = serde_json::json!({"published": false, "version": live.number, "hash": live.hash, "name": live.name});
                println!("{out}");
            } else {
                println!(
                    "unchanged: fleet version {} (hash {}) is live with this content already",
                    live.number,
                    short(&live.hash)
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
    }
    let number = fleet.publish(&rules, by)?;
    if json {
        let out = serde_json::json!({"published": true, "version": number, "hash": rules.hash(), "name": rules.name(), "by": by});
        println!("{out}");
    } else {
        println!(
            "published {} as fleet version {number} (hash {}) to {} by {by}",
            rules.name(),
            short(rules.hash()),
            fleet.store()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(fleet: &FleetRollout, history: bool, json: bool) -> Result<ExitCode, Error> {
    let live = match fleet.live()? {
        Some(n) => fleet.fetch(n)?,
        None => None,
    };
    let instances = fleet.instances()?;
    let events = if history {
        fleet.history()?
    } else {
        Vec::new()
    };
    if json {
        let live = live.as_ref().map(|v| {
            serde_json::json!({"version": v.number, "name": v.name, "hash": v.hash, "by": v.by, "published": v.published})
        });
        let mut out =
            serde_json::json!({"store": fleet.store(), "live": live, "instances": instances});
        if history {
            out["history"] = serde_json::json!(events);
        }
        println!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    match &live {
        Some(v) => println!(
            "live: fleet version {} of {} (hash {}), published by {} at {}",
            v.number,
            v.name,
            short(&v.hash),
            v.by,
            v.published
        ),
        None => println!("live: nothing published to {}", fleet.store()),
    }
    println!("{} instance(s)", instances.len());
    if !instances.is_empty() {
        println!(
            "{:<24} {:<16} {:>7} {:>7} {:<12} {:<24} {:>10} {:>7}  LAST ERROR",
            "ID", "HOST", "PID", "VERSION", "HASH", "HEARTBEAT", "DECISIONS", "ERRORS"
        );
    }
    for i in &instances {
        let InstanceStatus {
            id,
            host,
            pid,
            version,
            hash,
            heartbeat,
            decisions,
            ..
        } = i;
        let errors = i.decision_errors + i.refused + i.store_errors;
        println!(
            "{id:<24} {host:<16} {pid:>7} {version:>7} {:<12} {heartbeat:<24} {decisions:>10} {errors:>7}  {}",
            short(hash),
            i.last_error.as_deref().unwrap_or("-")
        );
    }
    for e in &events {
        let from = e.from.map(|f| format!(" from {f}")).unwrap_or_default();
        println!("{} {} {}{from} by {}", e.at, e.event, e.version, e.by);
    }
    Ok(ExitCode::SUCCESS)
}
