//! The [`Engine`]: the handle services hold and share between threads.
//!
//! The live rule version sits behind an `ArcSwap`. A decision loads it
//! exactly once and uses that version from start to end, so a publish never
//! changes a decision in flight, and readers never take a lock.
//!
//! Invariants a reader of this file must keep:
//! - `decide` takes its hold on the version once (`held()`, from this
//!   thread's lane) and passes it down; nothing in the decision path loads
//!   again. Every lane points at the version in `current` once publish or
//!   rollback returns (both set them under the history's lock).
//! - The history (the last K versions) and the graveyard are touched only
//!   by publish, rollback, reload and stats, under one mutex that `decide`
//!   never takes.
//! - A replaced version is freed off the decision path: when it leaves the
//!   history it moves to the graveyard, which drops it on a later publish
//!   or stats call once no decision holds it any more, so the last
//!   reference is never released by a deciding thread.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::Serialize;

use crate::audit::{DecisionLog, FileSink, LogConfig, LogOptions, LogStats, OnFull, Sink};
use crate::base::util::Striped;
use crate::base::{Arm, Error, Outcome, Timestamp};
use crate::context::schema::Schema;
use crate::decide;
use crate::decide::decision::Decision;
use crate::decide::request::DecisionRequest;
use crate::decide::version::{clock, Held, Version, VersionRef};
use crate::ruleset::{source_hash, RuleSet, RuleSource};
use crate::state::exchange::{Buffered, Exchange, FleetStats};
use crate::state::fleet::{OnUnavailable, StateConfig};
use crate::state::history::{HistoryConfig, HistoryStore, MemoryHistory, Recorded};
use crate::state::learning::Learned;
#[cfg(feature = "redis")]
use crate::state::learning::LearningStore;
use crate::state::volumes::{MemoryVolumes, StateReads, VolumeStore};

#[cfg(feature = "redis")]
mod fleet;
mod governed;
mod metrics;
#[cfg(feature = "redis")]
pub use fleet::{FleetFollower, FollowStatus};
pub use governed::GovernanceStats;

/// One lane: the live version as a hold, on a cache line of its own.
type Lane = crate::base::util::Padded<ArcSwap<Held>>;

fn lane(v: &Arc<Version>) -> Lane {
    crate::base::util::Padded(ArcSwap::new(Arc::new(Held(v.clone()))))
}

/// The history section of a state file saved from a store that persists
/// itself.
const EXTERNAL_HISTORY: &str =
    "{\"v\":2,\"kind\":\"history\",\"external\":true}\n{\"kind\":\"end\",\"customers\":0}\n";

/// Engine settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EngineConfig {
    /// How many versions to keep for rollback (at least 1: the live one).
    pub keep_versions: usize,
    /// The decision log (none by default).
    pub decision_log: Option<LogConfig>,
    /// Bounds of the in-memory interaction history.
    pub history: HistoryConfig,
    /// Whether a live decision records an impression of each action it
    /// returns in the interaction history (default: no; the application
    /// reports impressions with [`Engine::record_outcome`] when it actually
    /// shows the action).
    pub record_impressions: bool,
    /// Refuse a request whose context names an attribute the schema does
    /// not declare (an [`Error::InvalidContext`] naming the closest
    /// declared attribute), rather than deciding without it and listing
    /// it in [`Decision::warnings`] (the default).
    pub strict_requests: bool,
    /// How many recent decisions the engine remembers the predictor bins
    /// of, for a contextual model to learn their outcomes from (see
    /// docs/DECISIONS.md, "Contextual models"); default 100,000.
    pub response_memory: usize,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            keep_versions: 10,
            decision_log: None,
            history: HistoryConfig::default(),
            record_impressions: false,
            strict_requests: false,
            response_memory: 100_000,
        }
    }
}

/// How to open an engine: the JSON (or TOML) configuration that the C ABI's
/// `nb_engine_open` and services pass.
///
/// ```json
/// {"rules_dir": "tests/fixtures/mini", "keep_versions": 10,
///  "decision_log": {"path": "decisions.jsonl"}}
/// ```
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineOptions {
    /// The rule directory to serve (this or `governance_repo`; or
    /// neither, with `state.follow`: the fleet's live version).
    #[serde(default)]
    pub rules_dir: Option<PathBuf>,
    /// A governance repository whose live revision to serve, instead of
    /// `rules_dir` (see docs/GOVERNANCE.md): only approved, untampered
    /// revisions are served; [`Engine::follow_governance`] and
    /// [`Engine::watch_governance`] follow its publishes and rollbacks.
    #[serde(default)]
    pub governance_repo: Option<PathBuf>,
    /// How many versions to keep for rollback.
    #[serde(default)]
    pub keep_versions: Option<usize>,
    /// Where and how to log decisions and outcomes.
    #[serde(default)]
    pub decision_log: Option<crate::audit::LogConfig>,
    /// Bounds of the in-memory interaction history:
    /// `{"retention_secs": 7776000, "max_events": 256}`.
    #[serde(default)]
    pub history: Option<HistoryConfig>,
    /// Record an impression for every action a decision returns.
    #[serde(default)]
    pub record_impressions: Option<bool>,
    /// Refuse requests whose context names an attribute the schema does
    /// not declare (default: decide, and list them in the decision's
    /// `warnings`).
    #[serde(default)]
    pub strict_requests: Option<bool>,
    /// How many recent decisions' predictor bins to remember for a
    /// contextual model (default 100,000).
    #[serde(default)]
    pub response_memory: Option<usize>,
    /// Load interaction history and learning state from this file (written
    /// by [`Engine::save_state`]) when opening, if it exists.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// Keep interaction history and volume counters in a shared store
    /// (Redis) for a fleet of engines: `{"url": "redis://127.0.0.1:6379/0",
    /// "key_prefix": "nb:", "timeout_ms": 20, "on_unavailable": "closed"}`;
    /// with `"follow": true`, [`Engine::follow_fleet`] (which the C ABI's
    /// `nb_engine_open` and the command line's `--follow` start) serves
    /// the fleet's rule rollout. See docs/FLEET.md.
    #[serde(default)]
    pub state: Option<StateConfig>,
}

/// A summary of a kept version.
#[derive(Debug, Clone, Serialize)]
pub struct VersionInfo {
    /// Version number.
    pub version: u64,
    /// Rule set name.
    pub name: String,
    /// Content hash.
    pub hash: String,
    /// When it was published (RFC 3339).
    pub published: String,
}

impl VersionInfo {
    fn of(v: &Version) -> VersionInfo {
        VersionInfo {
            version: v.number,
            name: v.rules.name().to_string(),
            hash: v.rules.hash().to_string(),
            published: v.published.to_string(),
        }
    }
}

/// Counters and the state of the version history.
#[derive(Debug, Clone, Serialize)]
pub struct EngineStats {
    /// The live version.
    pub current: VersionInfo,
    /// Versions kept for rollback, oldest first (the live one last).
    pub versions: Vec<VersionInfo>,
    /// Rule loads (initial, publish, reload) that went live.
    pub loads_succeeded: u64,
    /// Rule loads that failed validation or I/O (nothing went live).
    pub loads_failed: u64,
    /// The last load error, if any.
    pub last_load_error: Option<String>,
    /// Decisions per experiment arm.
    pub decisions: ArmCounts,
    /// Requests that returned an error.
    pub decision_errors: u64,
    /// Outcomes recorded.
    pub outcomes: u64,
    /// Outcomes not counted because the same one (decision id, action and
    /// outcome) had been recorded already (see [`Engine::record_outcome`]).
    pub duplicate_outcomes: u64,
    /// Outcomes a contextual model could not learn from: they named no
    /// decision, or one the engine no longer remembers (older than its
    /// `response_memory` last decisions, made by another instance or
    /// before a restart). The per-action counts learned them.
    pub outcomes_without_context: u64,
    /// Strategy hook failures (each left the decision without that hook).
    pub script_errors: u64,
    /// Calls to the shared state store that failed (timed out, refused,
    /// dropped), from decisions and outcomes, plus volume units a decision
    /// could not give back because the store had failed in it. With
    /// `on_unavailable = "closed"` a decision failed by the history store
    /// is also in `decision_errors` (the volume counters' failures remove
    /// actions instead of failing decisions).
    pub store_errors: u64,
    /// The decision log's counters, if there is a log.
    pub log: Option<LogStats>,
    /// The interaction history's size, if its store can say.
    pub history: Option<crate::state::history::HistorySize>,
    /// The governance repository served, if any.
    pub governance: Option<GovernanceStats>,
    /// The exchange with the fleet's shared store (buffered outcomes,
    /// learning counts), if the engine has one.
    pub fleet: Option<FleetStats>,
}

/// Decisions per arm.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ArmCounts {
    /// Decided by the champion.
    pub champion: u64,
    /// Decided by the challenger.
    pub challenger: u64,
    /// In the control group.
    pub control: u64,
}

struct History {
    /// Oldest first; the last is the live version.
    versions: VecDeque<Arc<Version>>,
    /// Versions out of the history that decisions may still hold.
    graveyard: Vec<Arc<Version>>,
    next_number: u64,
    loads_succeeded: u64,
    loads_failed: u64,
    last_load_error: Option<String>,
}

impl History {
    fn sweep(&mut self) {
        // strong_count == 1: only the graveyard holds it, and nobody can
        // clone it any more, so dropping it here frees it here.
        self.graveyard.retain(|v| Arc::strong_count(v) > 1);
    }
}

/// The decision engine. `Send + Sync`; share it in an `Arc`.
///
/// ```
/// use nextbest::{Engine, Context, DecisionRequest};
/// let engine = Engine::from_dir("tests/fixtures/mini")?;
/// let ctx = Context::builder(&engine.schema())
///     .set("age", 35)
///     .set("income", 48_000.0)
///     .build()?;
/// let decision = engine.decide(&DecisionRequest::new("C42", "call_center", ctx))?;
/// assert!(decision.actions().len() <= 3);
/// # Ok::<(), nextbest::Error>(())
/// ```
pub struct Engine {
    current: ArcSwap<Version>,
    /// The live version again, once per lane (a thread uses the lane of its
    /// stripe): a decision takes its hold from its lane, so two threads
    /// deciding do not both write the version's reference count. Publish
    /// and rollback set every lane, under the history's lock, before they
    /// return.
    lanes: Box<[Lane]>,
    history: Mutex<History>,
    keep_versions: usize,
    arms: [Striped; 3],
    errors: Striped,
    outcomes: Striped,
    duplicate_outcomes: Striped,
    script_errors: Striped,
    store_errors: Striped,
    on_unavailable: OnUnavailable,
    log: Option<DecisionLog>,
    archive_dir: Option<PathBuf>,
    interactions: Arc<dyn HistoryStore>,
    learned: Arc<Learned>,
    /// The engine's own volume counters, bound by each version at publish.
    counters: Arc<MemoryVolumes>,
    /// A shared volume store that replaces them, if any.
    volume_store: Option<Arc<dyn VolumeStore>>,
    /// The history and volume reads in one round trip, when one shared
    /// store keeps both.
    reads: Option<Arc<dyn StateReads>>,
    record_impressions: bool,
    strict_requests: bool,
    /// The scratch memory of decisions made through [`Engine::decide`].
    scratch: decide::scratch::Pool,
    /// The governance repository served (`governance_repo`), if any.
    governed: Option<governed::Governed>,
    /// Buffered outcomes and shared learning counts, with a shared store.
    exchange: Option<Exchange>,
    /// Whether the learning counts are a shared store's.
    shared_learning: bool,
    /// The next outcome delivery's id (seeded per engine and run).
    deliveries: std::sync::atomic::AtomicU64,
    /// Recent decisions' predictor bins (contextual models).
    responses: crate::state::responses::Responses,
    /// Outcomes a contextual model could not learn from: their decision
    /// was not in `responses`.
    outcomes_without_context: Striped,
}
/// The saved-state file (see [`Engine::save_state`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct SavedState {
    v: u32,
    kind: String,
    saved: String,
    learning: Vec<crate::state::learning::SavedCounts>,
    /// Volume counters by constraint-name key: (window << 32) | count, one
    /// entry per period counted.
    volumes: Vec<(u64, u64)>,
    /// Saved from an engine whose volume counters live in a shared store
    /// (which persists them): `volumes` is empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    external_volumes: bool,
    /// Saved from an engine whose learning counts live in a shared store:
    /// `learning` is empty.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    external_learning: bool,
    /// Contextual models' counts (none with a shared learning store).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    contextual: Vec<crate::state::learning::SavedBins>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.current.load();
        f.debug_struct("Engine")
            .field("ruleset", &v.rules.name())
            .field("version", &v.number)
            .finish()
    }
}

impl Engine {
    /// An engine serving `rules` as version 1, without a decision log.
    pub fn new(rules: RuleSet) -> Engine {
        Engine::build(rules, &EngineConfig::default(), None, None)
    }

    /// An engine serving `rules` as version 1, with `config`. Fails only if
    /// the decision log cannot be opened.
    pub fn try_with_config(rules: RuleSet, config: EngineConfig) -> Result<Engine, Error> {
        config.history.check()?;
        let (log, archive) = match &config.decision_log {
            Some(lc) => {
                let mut sink =
                    FileSink::open_as(&lc.path, lc.max_bytes, lc.keep_files, lc.file_format())
                        .map_err(|e| Error::io(&lc.path, e))?
                        .keep_for(lc.keep_for()?);
                let spool = lc
                    .ship
                    .as_ref()
                    .map(|s| Arc::new(crate::audit::Spool::new(s)));
                if let Some(spool) = spool.as_ref().filter(|s| s.on_full != OnFull::Drop) {
                    sink.keep_unshipped(spool.clone());
                }
                let mut log = DecisionLog::start(Box::new(sink), lc.options())?;
                if let (Some(options), Some(spool)) = (&lc.ship, spool) {
                    log.ship(options, &lc.path, spool)?;
                }
                (Some(log), lc.archive_dir.clone())
            }
            None => (None, None),
        };
        let engine = Engine::build(rules, &config, log, archive);
        engine.archive(&engine.current.load())?;
        Ok(engine)
    }

    /// An engine that logs to `sink` (a callback, memory, or your own).
    pub fn with_sink(
        rules: RuleSet,
        config: EngineConfig,
        sink: Box<dyn Sink>,
        options: LogOptions,
    ) -> Result<Engine, Error> {
        config.history.check()?;
        let log = DecisionLog::start(sink, options)?;
        Ok(Engine::build(rules, &config, Some(log), None))
    }

    fn build(
        rules: RuleSet,
        config: &EngineConfig,
        log: Option<DecisionLog>,
        archive_dir: Option<PathBuf>,
    ) -> Engine {
        let keep_versions = config.keep_versions;
        // The decision clock calibrates itself on first use (about half a
        // millisecond, once per process): here, not in the first decision.
        let _ = clock();
        let learned = Arc::new(Learned::default());
        let counters = Arc::new(MemoryVolumes::default());
        let first = Arc::new(Version::new(1, rules, &learned, &counters));
        Engine {
            current: ArcSwap::new(first.clone()),
            lanes: (0..crate::base::util::STRIPES)
                .map(|_| lane(&first))
                .collect(),
            history: Mutex::new(History {
                versions: VecDeque::from([first]),
                graveyard: Vec::new(),
                next_number: 2,
                loads_succeeded: 1,
                loads_failed: 0,
                last_load_error: None,
            }),
            keep_versions: keep_versions.max(1),
            arms: Default::default(),
            errors: Striped::default(),
            outcomes: Striped::default(),
            duplicate_outcomes: Striped::default(),
            script_errors: Striped::default(),
            store_errors: Striped::default(),
            on_unavailable: OnUnavailable::Closed,
            log,
            archive_dir,
            interactions: Arc::new(MemoryHistory::new(config.history)),
            learned,
            counters,
            volume_store: None,
            reads: None,
            record_impressions: config.record_impressions,
            strict_requests: config.strict_requests,
            scratch: decide::scratch::Pool::default(),
            governed: None,
            exchange: None,
            shared_learning: false,
            deliveries: std::sync::atomic::AtomicU64::new(delivery_seed()),
            responses: crate::state::responses::Responses::new(config.response_memory),
            outcomes_without_context: Striped::default(),
        }
    }

    /// Use `store` for interaction history instead of the in-memory one
    /// (a shared store, for example). Call before serving.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")] {
    /// use std::sync::Arc;
    /// use nextbest::state::{fleet::StateConfig, redis::RedisHistory};
    /// let store = RedisHistory::connect(&StateConfig::new("redis://127.0.0.1:6379/0"))?;
    /// let engine = nextbest::Engine::from_dir("tests/fixtures/mini")?
    ///     .with_history_store(Arc::new(store));
    /// # }
    /// # Ok::<(), nextbest::Error>(())
    /// ```
    pub fn with_history_store(mut self, store: Arc<dyn HistoryStore>) -> Engine {
        self.interactions = store;
        self.reads = None;
        self
    }

    /// Count volume-constraint units in `store` (a shared store, for
    /// example) instead of the engine's own counters. Call before
    /// serving: units taken before stay in the engine's counters.
    ///
    /// ```no_run
    /// # #[cfg(feature = "redis")] {
    /// use std::sync::Arc;
    /// use nextbest::state::{fleet::StateConfig, redis::RedisVolumes};
    /// let store = RedisVolumes::connect(&StateConfig::new("redis://127.0.0.1:6379/0"))?;
    /// let engine = nextbest::Engine::from_dir("tests/fixtures/mini")?
    ///     .with_volume_store(Arc::new(store));
    /// # }
    /// # Ok::<(), nextbest::Error>(())
    /// ```
    pub fn with_volume_store(mut self, store: Arc<dyn VolumeStore>) -> Engine {
        self.volume_store = Some(store);
        self.reads = None;
        self
    }

    /// What decisions do when a shared store fails (default
    /// [`OnUnavailable::Closed`]). Call before serving. See
    /// [`OnUnavailable`] and docs/FLEET.md.
    pub fn with_on_unavailable(mut self, on_unavailable: OnUnavailable) -> Engine {
        self.on_unavailable = on_unavailable;
        self
    }

    /// Use the shared store `config` names for interaction history and
    /// volume counters (see docs/FLEET.md), with its failure policy: both
    /// share its connections. Connects once to check the address and load
    /// the scripts; an unreachable store is an error here.
    pub fn with_state(self, config: &StateConfig) -> Result<Engine, Error> {
        config.check()?;
        #[cfg(feature = "redis")]
        {
            let history = crate::state::redis::RedisHistory::connect(config)?;
            let volumes = history.volumes()?;
            let learning: Option<Arc<dyn LearningStore>> = match config.share_learning {
                true => Some(Arc::new(history.learning()?)),
                false => None,
            };
            let history = Arc::new(history);
            let calls = history.calls();
            let mut engine = self
                .with_history_store(history.clone())
                .with_volume_store(Arc::new(volumes))
                .with_on_unavailable(config.on_unavailable);
            engine.reads = Some(history);
            engine.shared_learning = learning.is_some();
            let exchange = Exchange::start(
                engine.interactions.clone(),
                learning,
                engine.learned.clone(),
                Some(calls),
                Duration::from_millis(config.exchange_ms),
                config.outcome_buffer,
            );
            // The fleet's counts from the start (the store answered above).
            if let Err(e) = exchange.round() {
                tracing::warn!(error = %e, "the first exchange with the state store failed");
            }
            engine.exchange = Some(exchange);
            Ok(engine)
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = self;
            Err(Error::InvalidConfig(
                "state: this build of nextbest has no shared store (build with the `redis` feature)"
                    .into(),
            ))
        }
    }

    /// The interaction history store.
    pub fn history_store(&self) -> &Arc<dyn HistoryStore> {
        &self.interactions
    }

    /// Save interaction history, learning counts and volume counters to
    /// `path`, atomically (a temporary file, synced, then renamed).
    ///
    /// The file is JSON Lines: a header `{"v":1,"kind":"nextbest-state",
    /// "saved":..,"learning":[{"action":..,"channel":..,"counts":[impression,
    /// clicked, accepted, rejected, no_response]}],"volumes":[[key, word]]}`,
    /// then the history: `{"v":2,"kind":"history"}`, one line per customer
    /// sorted by id (see [`MemoryHistory`]) and `{"kind":"end","customers":N}`,
    /// so a truncated file is an error. Equal state saves to equal bytes,
    /// but for the header's `saved` time.
    ///
    /// A shared store persists itself: with a shared history store the
    /// history section is empty and marked `"external": true`; with a
    /// shared volume store `volumes` is empty and the header says
    /// `"external_volumes": true`.
    pub fn save_state(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        let header = SavedState {
            v: 1,
            kind: "nextbest-state".into(),
            saved: Timestamp::now().to_string(),
            learning: match self.shared_learning {
                true => Vec::new(),
                false => self.learned.save(),
            },
            external_learning: self.shared_learning,
            contextual: match self.shared_learning {
                true => Vec::new(),
                false => self.learned.save_bins(),
            },
            // A shared volume store persists itself: no counts here.
            volumes: match self.volume_store {
                Some(_) => Vec::new(),
                None => self.counters.save(),
            },
            external_volumes: self.volume_store.is_some(),
        };
        crate::state::history::write_atomically(path.as_ref(), |w| {
            serde_json::to_writer(&mut *w, &header).map_err(|e| Error::State(e.to_string()))?;
            std::io::Write::write_all(w, b"\n").map_err(|e| Error::io(path.as_ref(), e))?;
            if self.interactions.saves_to_file() {
                self.interactions.save(w)
            } else {
                // The store persists itself: an empty, marked section.
                std::io::Write::write_all(w, EXTERNAL_HISTORY.as_bytes())
                    .map_err(|e| Error::io(path.as_ref(), e))
            }
        })
    }

    /// Load a file written by [`Engine::save_state`]: its history events,
    /// outcome counts and volume counters replace the engine's (what the
    /// file does not have is forgotten), so loading a file twice, or into
    /// an engine that has already served, never counts anything twice.
    /// All or nothing: a damaged or truncated file is an error that names
    /// the line, and changes nothing. So is a file with events or volume
    /// counts for an engine whose history or volume counters live in a
    /// shared store (which keeps its own). Meant for startup: decisions
    /// made while it runs may see part of the old state and part of the
    /// new.
    pub fn load_state(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        use std::io::{BufRead, Read};
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let mut r = std::io::BufReader::new(file);
        let mut first = String::new();
        r.read_line(&mut first).map_err(|e| Error::io(path, e))?;
        let header: SavedState = serde_json::from_str(&first)
            .map_err(|e| Error::State(format!("{} line 1: {e}", path.display())))?;
        if header.v != 1 || header.kind != "nextbest-state" {
            return Err(Error::State(format!(
                "{}: not a nextbest state file (v {}, kind `{}`)",
                path.display(),
                header.v,
                header.kind
            )));
        }
        if self.volume_store.is_some() && !header.volumes.is_empty() {
            return Err(Error::State(format!(
                "{}: the file holds volume counters, but this engine counts volumes in its shared \
                 store (which keeps them itself): load it into an engine without one",
                path.display()
            )));
        }
        if self.shared_learning && !header.learning.is_empty() {
            return Err(Error::State(format!(
                "{}: the file holds learning counts, but this engine's learning counts are its \
                 shared store's (which keeps them itself): load it into an engine without one, \
                 or with `share_learning: false`",
                path.display()
            )));
        }
        if self.shared_learning && !header.contextual.is_empty() {
            return Err(Error::State(format!(
                "{}: the file holds contextual-model counts, but this engine's learning counts \
                 are its shared store's: load it into an engine without one, or with \
                 `share_learning: false`",
                path.display()
            )));
        }
        crate::state::learning::check_bins(&header.contextual)
            .map_err(|m| Error::State(format!("{}: {m}", path.display())))?;
        // The history loads all or nothing; learning and volumes cannot
        // fail after the header parsed (the contextual counts are checked
        // above), so a damaged file changes nothing.
        let mut second = String::new();
        r.read_line(&mut second).map_err(|e| Error::io(path, e))?;
        let (external_header, external_end) = EXTERNAL_HISTORY
            .split_once('\n')
            .unwrap_or((EXTERNAL_HISTORY, ""));
        if second.trim_end() == external_header {
            // Saved from a store that persists itself: no events.
            let mut rest = String::new();
            std::io::Read::read_to_string(&mut r, &mut rest).map_err(|e| Error::io(path, e))?;
            if rest != external_end {
                return Err(Error::State(format!(
                    "{} line 3: expected the end of an empty history section",
                    path.display()
                )));
            }
        } else {
            let mut history = std::io::Cursor::new(second.into_bytes()).chain(r);
            self.interactions
                .load(&mut history, 2)
                .map_err(|e| match e {
                    Error::State(m) => Error::State(format!("{}: {m}", path.display())),
                    other => other,
                })?;
        }
        self.learned
            .load_bins(&header.contextual)
            .map_err(|e| match e {
                Error::State(m) => Error::State(format!("{}: {m}", path.display())),
                other => other,
            })?;
        self.learned.load(&header.learning);
        self.learned.snapshot_models();
        self.counters.load(header.volumes);
        Ok(())
    }

    /// Write a version's rule files to the archive (if configured) under
    /// its hash, so replays can find it. Written to a temporary directory
    /// and renamed, so an archived version is always complete.
    fn archive(&self, v: &Version) -> Result<(), Error> {
        let Some(dir) = &self.archive_dir else {
            return Ok(());
        };
        crate::ruleset::archive::archive_version(dir, &v.rules)
    }

    /// Load, validate and compile a rule directory and serve it.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Engine, Error> {
        Ok(Engine::new(RuleSet::from_dir(dir)?))
    }

    /// Open an engine from [`EngineOptions`]: its `rules_dir`, or the
    /// live revision of its `governance_repo` (refused, with the reason,
    /// unless it is approved and untampered).
    pub fn open(options: &EngineOptions) -> Result<Engine, Error> {
        let (rules, governed) = match (&options.rules_dir, &options.governance_repo) {
            (Some(dir), None) => (RuleSet::from_dir(dir)?, None),
            (None, Some(repo)) => {
                let (g, rules) = governed::Governed::open(repo)?;
                (rules, Some(g))
            }
            (Some(_), Some(_)) => {
                return Err(Error::InvalidConfig(
                    "give `rules_dir` or `governance_repo`, not both: a governed engine serves the repository's live revision".into(),
                ))
            }
            (None, None) => match options.state.as_ref().filter(|s| s.follow) {
                #[cfg(feature = "redis")]
                Some(state) => (fleet::live_rules(state)?, None),
                _ => return Err(Error::InvalidConfig(
                    "`rules_dir` (a rule directory), `governance_repo` (a governance repository) or `state` with `\"follow\": true` (the fleet's live version) is required".into(),
                )),
            },
        };
        let mut config = EngineConfig::default();
        if let Some(n) = options.response_memory {
            config.response_memory = n;
        }
        if let Some(k) = options.keep_versions {
            config.keep_versions = k;
        }
        config.decision_log = options.decision_log.clone();
        if let Some(h) = options.history {
            config.history = h;
        }
        if let Some(r) = options.record_impressions {
            config.record_impressions = r;
        }
        if let Some(s) = options.strict_requests {
            config.strict_requests = s;
        }
        let mut engine = Engine::try_with_config(rules, config)?;
        engine.governed = governed;
        if let Some(state) = &options.state {
            engine = engine.with_state(state)?;
        }
        if let Some(state) = options.state_file.as_ref().filter(|p| p.exists()) {
            engine.load_state(state)?;
        }
        Ok(engine)
    }

    /// Open an engine from [`EngineOptions`] given as JSON.
    pub fn from_config_json(json: &str) -> Result<Engine, Error> {
        let options: EngineOptions = serde_json::from_str(json)
            .map_err(|e| Error::InvalidConfig(format!("engine configuration: {e}")))?;
        Engine::open(&options)
    }

    /// Publish a compiled version atomically; decisions in flight finish on
    /// the version they started with. Returns the new version's number.
    pub fn publish(&self, rules: RuleSet) -> u64 {
        self.publish_as(rules, None)
    }

    /// Publish a compiled version atomically under `number`, a number
    /// given elsewhere (the fleet's, see [`Engine::follow_fleet`]) rather
    /// than the engine's next: decisions and their log records carry it.
    /// A kept version with the same number leaves the history; the
    /// engine's own next number stays above every number it served.
    pub fn publish_numbered(&self, rules: RuleSet, number: u64) -> u64 {
        self.publish_as(rules, Some(number))
    }

    fn publish_as(&self, rules: RuleSet, number: Option<u64>) -> u64 {
        let archived = self
            .archive_dir
            .as_ref()
            .map(|d| crate::ruleset::archive::archive_version(d, &rules));
        let mut h = self.history.lock();
        if let Some(Err(e)) = archived {
            h.last_load_error = Some(format!("archiving the version failed: {e}"));
        }
        let number = match number {
            Some(n) => {
                h.next_number = h.next_number.max(n.saturating_add(1));
                if let Some(old) = h
                    .versions
                    .iter()
                    .position(|v| v.number == n)
                    .and_then(|i| h.versions.remove(i))
                {
                    h.graveyard.push(old);
                }
                n
            }
            None => {
                let n = h.next_number;
                h.next_number += 1;
                n
            }
        };
        let v = Arc::new(Version::new(number, rules, &self.learned, &self.counters));
        self.current.store(v.clone());
        self.set_lanes(&v);
        h.versions.push_back(v);
        while h.versions.len() > self.keep_versions {
            if let Some(old) = h.versions.pop_front() {
                h.graveyard.push(old);
            }
        }
        h.loads_succeeded += 1;
        h.sweep();
        tracing::info!(version = number, hash = %self.current.load().rules.hash, "rule version published");
        number
    }

    /// Load, validate and compile `dir` (off the decision path) and publish
    /// it. On error nothing changes: the live version keeps serving, the
    /// failure is counted in [`Engine::stats`] and returned with every
    /// location. Reloading rules whose content hash equals the live
    /// version's is a no-op that returns the live version's number.
    pub fn reload(&self, dir: impl AsRef<Path>) -> Result<u64, Error> {
        let loaded = RuleSource::from_dir(dir.as_ref()).and_then(|src| {
            let live = self.current.load();
            if source_hash(&src) == live.rules.hash {
                return Ok(None);
            }
            RuleSet::compile(&src).map(Some)
        });
        match loaded {
            Ok(None) => Ok(self.current.load().number),
            Ok(Some(rules)) => Ok(self.publish(rules)),
            Err(e) => {
                tracing::warn!(dir = %dir.as_ref().display(), error = %e, "rule load refused: the live version keeps serving");
                let mut h = self.history.lock();
                h.loads_failed += 1;
                h.last_load_error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Serve the kept version `number` again if its content hash is
    /// `hash` (a fleet's rollback to a version this engine still keeps):
    /// it becomes the live one, last in the history. False if no kept
    /// version matches.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn serve_kept(&self, number: u64, hash: &str) -> bool {
        let mut h = self.history.lock();
        let Some(v) = h
            .versions
            .iter()
            .position(|v| v.number == number && v.rules.hash == hash)
            .and_then(|i| h.versions.remove(i))
        else {
            return false;
        };
        self.current.store(v.clone());
        self.set_lanes(&v);
        h.versions.push_back(v);
        true
    }

    /// Serve the previous kept version again, at once. The version rolled
    /// back from leaves the history. Returns the number now serving.
    pub fn rollback(&self) -> Result<u64, Error> {
        let mut h = self.history.lock();
        if h.versions.len() < 2 {
            return Err(Error::Rollback(
                "no previous version is kept to roll back to".into(),
            ));
        }
        let Some(gone) = h.versions.pop_back() else {
            return Err(Error::Rollback("no version".into()));
        };
        let Some(prev) = h.versions.back().cloned() else {
            return Err(Error::Rollback("no version".into()));
        };
        self.current.store(prev.clone());
        self.set_lanes(&prev);
        tracing::info!(from = gone.number, to = prev.number, "rolled back");
        h.graveyard.push(gone);
        h.sweep();
        Ok(prev.number)
    }

    /// Forget the interaction history of customers with no event within
    /// the retention window at `now` (default: the current time), and
    /// return how many were forgotten. Without it, the in-memory history
    /// keeps every customer it has seen. Off the decision path: run it
    /// periodically from a maintenance thread.
    pub fn purge_history(&self, now: Option<Timestamp>) -> usize {
        let now = now.unwrap_or_else(Timestamp::now);
        self.interactions.purge(now.0)
    }

    /// The live version.
    pub fn current(&self) -> Arc<Version> {
        self.current.load_full()
    }

    /// Point every lane at `v` (under the history's lock). A hold on the
    /// version a lane had is released by the last decision holding it; the
    /// version itself stays in the history or the graveyard, so no deciding
    /// thread frees it.
    fn set_lanes(&self, v: &Arc<Version>) {
        for lane in self.lanes.iter() {
            lane.0.store(Arc::new(Held(v.clone())));
        }
    }

    /// The live version, held through this thread's lane.
    #[inline]
    fn held(&self) -> VersionRef {
        self.lanes[crate::base::util::stripe()].0.load_full()
    }

    /// The kept versions, oldest first (the live one last).
    pub fn versions(&self) -> Vec<VersionInfo> {
        self.history
            .lock()
            .versions
            .iter()
            .map(|v| VersionInfo::of(v))
            .collect()
    }

    /// Counters and the version history.
    pub fn stats(&self) -> EngineStats {
        // Before the history's lock: following takes the governance state's
        // lock, then the history's (to publish), never the other way round.
        let governance = self.governed.as_ref().map(governed::Governed::stats);
        let mut h = self.history.lock();
        h.sweep();
        EngineStats {
            current: VersionInfo::of(&self.current.load()),
            versions: h.versions.iter().map(|v| VersionInfo::of(v)).collect(),
            loads_succeeded: h.loads_succeeded,
            loads_failed: h.loads_failed,
            last_load_error: h.last_load_error.clone(),
            decisions: ArmCounts {
                champion: self.arms[0].sum(),
                challenger: self.arms[1].sum(),
                control: self.arms[2].sum(),
            },
            decision_errors: self.errors.sum(),
            outcomes: self.outcomes.sum() + self.exchange.as_ref().map_or(0, Exchange::delivered),
            duplicate_outcomes: self.duplicate_outcomes.sum()
                + self.exchange.as_ref().map_or(0, Exchange::duplicates),
            outcomes_without_context: self.outcomes_without_context.sum(),
            script_errors: self.script_errors.sum(),
            store_errors: self.store_errors.sum(),
            log: self.log.as_ref().map(DecisionLog::stats),
            history: self.interactions.size(),
            governance,
            fleet: self.exchange.as_ref().map(Exchange::stats),
        }
    }

    /// Record what a customer did with an action: validated against the
    /// live version (the channel must exist; the action must exist in a
    /// kept version) and logged.
    ///
    /// An outcome that carries the `decision_id` it answers is counted
    /// once: the same (decision, action, outcome) again returns `Ok` and
    /// changes nothing (counted in [`EngineStats::duplicate_outcomes`]),
    /// for as long as the history store keeps the customer's events (the
    /// in-memory store: its retention and event bound, in this process;
    /// the fleet store: across instances). Outcomes without one cannot be
    /// told apart and are each counted.
    pub fn record_outcome(&self, outcome: &Outcome) -> Result<(), Error> {
        let live = self.current.load();
        let ci = live.rules.channel(&outcome.channel)? as usize;
        let now = Timestamp::now();
        let at = outcome.timestamp.unwrap_or(now);
        // The action's group (for per-group contact policies) and its
        // counts: from the live version when it has the action, else from
        // the newest kept version that has it.
        let group;
        let counts;
        if let Some(ai) = live.rules.action_index(&outcome.action) {
            let ai = ai as usize;
            let a = &live.rules.actions[ai];
            group = live.rules.groups[a.group as usize].key;
            counts = live.bound.counts[ai * live.rules.channels.len() + ci]
                .clone()
                .unwrap_or_else(|| self.learned.counts(&outcome.action, &outcome.channel));
        } else {
            let h = self.history.lock();
            let Some((rs, ai)) = h.versions.iter().rev().find_map(|v| {
                v.rules
                    .action_index(&outcome.action)
                    .map(|ai| (&v.rules, ai as usize))
            }) else {
                return Err(Error::InvalidRequest(format!(
                    "outcome: unknown action `{}`",
                    outcome.action
                )));
            };
            group = rs.groups[rs.actions[ai].group as usize].key;
            drop(h);
            counts = self.learned.counts(&outcome.action, &outcome.channel);
        }
        // An outcome that names its decision is counted once: a repeat of
        // the same (decision, action, outcome) changes nothing and is
        // counted as a duplicate (not logged: readers join outcomes by
        // decision id and would count it again).
        let once = outcome.decision_id.map(|id| {
            crate::base::key(&format!(
                "{id}/{}/{}",
                outcome.action,
                outcome.kind.as_str()
            ))
        });
        let event = crate::state::history::Event {
            at: at.0,
            action: crate::base::key(&outcome.action),
            group,
            channel: crate::base::channel_key(&outcome.channel),
            kind: outcome.kind,
        };
        // Unique to this delivery (engine and run), whatever the store:
        // two outcomes never share a member or a marker's token.
        let delivery = self.deliveries.fetch_add(1, Ordering::Relaxed);
        // Recorded in the history (once) first, then logged, then counted:
        // an outcome the log refuses (`on_error = "fail"`) is taken out of
        // the history again, so that a retry counts it once.
        match self
            .interactions
            .record_outcome(&outcome.customer_id, once, event, delivery)
        {
            Ok(Recorded::New) => {}
            Ok(Recorded::Duplicate) => {
                self.duplicate_outcomes.add(1);
                return Ok(());
            }
            Err(e) => {
                self.store_errors.add(1);
                let buffered = self.buffer_outcome(outcome, now, once, event, delivery, counts, e);
                // Taken: the contextual model learns it now (its counts
                // are not in the history store).
                if buffered.is_ok() {
                    self.learn_contextual(&live, outcome);
                }
                return buffered;
            }
        }
        if let Some(log) = &self.log {
            if let Err(e) = log.log(crate::audit::outcome_item(outcome, now)) {
                let undone = self
                    .interactions
                    .unrecord(&outcome.customer_id, &[event])
                    .and_then(|()| match once {
                        Some(key) => self.interactions.forget_outcome(&outcome.customer_id, key),
                        None => Ok(()),
                    });
                if undone.is_err() {
                    self.store_errors.add(1);
                }
                return Err(e);
            }
        }
        counts.add(outcome.kind, 1);
        self.learn_contextual(&live, outcome);
        self.outcomes.add(1);
        Ok(())
    }

    /// Teach the live version's contextual models (the champion's, and
    /// the challenger's when it has its own) an outcome, from the bins of
    /// the decision it names; a model takes a new snapshot every
    /// `snapshot_every` outcomes it learns.
    fn learn_contextual(&self, live: &Version, outcome: &Outcome) {
        use crate::base::outcome::kind_bit;
        let challenger = live
            .rules
            .experiment
            .as_ref()
            .and_then(|e| e.challenger.as_deref())
            .zip(live.challenger_bound.as_ref());
        let mut missed = false;
        let mut learned = false;
        // A challenger with the champion's model shares its counts: added
        // once.
        let mut added: Vec<*const crate::state::learning::PredCounts> = Vec::new();
        for (rs, bound) in std::iter::once((&live.rules, &live.bound)).chain(challenger) {
            let (Some(l), Some(models)) = (rs.learning.as_ref(), bound.models.as_ref()) else {
                continue;
            };
            let Some(model) = l.contextual.as_deref() else {
                continue;
            };
            let bit = kind_bit(outcome.kind);
            let success = l.success & bit != 0;
            if !success && l.failure & bit == 0 {
                continue;
            }
            let bins = outcome
                .decision_id
                .and_then(|id| self.responses.recall(id.0, model.id));
            let (Some(bins), Some(ai), Ok(ci)) = (
                bins,
                rs.action_index(&outcome.action),
                rs.channel(&outcome.channel),
            ) else {
                missed = true;
                continue;
            };
            let row = ai as usize * rs.channels.len() + ci as usize;
            let np = model.predictors.len();
            let first = models.counts[row * np]
                .as_ref()
                .map_or(std::ptr::null(), Arc::as_ptr);
            if !added.contains(&first) {
                added.push(first);
                for ((p, pred), bin) in model.predictors.iter().enumerate().zip(bins.iter()) {
                    if let Some(c) = &models.counts[row * np + p] {
                        c.add((bin - pred.offset) as usize, success);
                    }
                }
            }
            learned = true;
            let n = models.since.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= model.snapshot_every {
                models.snapshot();
            }
        }
        if missed && !learned {
            self.outcomes_without_context.add(1);
        }
    }

    /// Take a new snapshot of the live version's contextual models now
    /// (they take one every `snapshot_every` outcomes on their own, and
    /// on [`Engine::flush`]), so the next decisions read every outcome
    /// recorded so far.
    pub fn snapshot_models(&self) {
        self.learned.snapshot_models();
    }

    /// An outcome the shared store could not take (`failed`): logged now
    /// and kept for the exchange to deliver when the store answers again,
    /// or, without an exchange or with its buffer full, `failed` returned.
    #[allow(clippy::too_many_arguments)]
    fn buffer_outcome(
        &self,
        outcome: &Outcome,
        now: Timestamp,
        once: Option<u64>,
        event: crate::state::history::Event,
        delivery: u64,
        counts: Arc<crate::state::learning::Counts>,
        failed: Error,
    ) -> Result<(), Error> {
        let Some(exchange) = &self.exchange else {
            return Err(failed);
        };
        if !matches!(failed, Error::StoreUnavailable { .. }) || !exchange.has_room() {
            return Err(failed);
        }
        // Logged when it arrives, so the log has it even if this process
        // ends before the store returns.
        if let Some(log) = &self.log {
            log.log(crate::audit::outcome_item(outcome, now))?;
        }
        let kept = exchange.buffer(Buffered {
            customer: outcome.customer_id.clone(),
            once,
            event,
            delivery,
            counts,
        });
        match kept {
            true => Ok(()),
            false => Err(failed),
        }
    }

    /// [`Engine::record_outcome`] from the outcome JSON in the README.
    pub fn record_outcome_json(&self, json: &str) -> Result<(), Error> {
        self.record_outcome(&Outcome::from_json(json)?)
    }

    /// Return once every record logged before this call is written and
    /// synced to disk: an error if the sync failed, or if records were
    /// lost since the last flush (see docs/DECISION_LOG.md, "When
    /// something fails"). Without a log, there is nothing to do.
    ///
    /// With a shared store, it first delivers the outcomes buffered while
    /// the store was down and exchanges the learning counts (as the
    /// exchange thread does every `exchange_ms`): an error if the store
    /// failed (what failed is kept and tried again).
    pub fn flush(&self) -> Result<(), Error> {
        let exchanged = self.exchange.as_ref().map_or(Ok(()), Exchange::round);
        self.snapshot_models();
        let flushed = match &self.log {
            Some(log) => log.flush(),
            None => Ok(()),
        };
        flushed.and(exchanged)
    }

    /// The live version's context schema, to build contexts with
    /// [`Context::builder`](crate::Context::builder).
    pub fn schema(&self) -> Arc<Schema> {
        self.current.load().rules.schema.clone()
    }

    /// Decide: the next best actions for the request's customer and
    /// channel, as its [`Mode`](crate::Mode) says (serving, by default).
    pub fn decide(&self, request: &DecisionRequest) -> Result<Decision, Error> {
        self.decide_on(self.held(), request)
    }

    /// Decide from a JSON request (the shape in the README), binding its
    /// context to the live version's schema.
    pub fn decide_json(&self, json: &str) -> Result<Decision, Error> {
        let version = self.held();
        match DecisionRequest::from_json(&version.rules.schema, json) {
            Ok(request) => self.decide_on(version, &request),
            Err(e) => {
                self.errors.add(1);
                Err(e)
            }
        }
    }

    /// The one decision path of both entries: decide on `version` with a
    /// scratch from the pool; a decision that commits is then logged and
    /// counted. If its record cannot be logged, what it took from engine
    /// state is given back.
    fn decide_on(&self, version: VersionRef, request: &DecisionRequest) -> Result<Decision, Error> {
        if self.strict_requests {
            if let Some(w) = request.warnings().first() {
                self.errors.add(1);
                return Err(w.to_error());
            }
        }
        let commits = request.mode.commits();
        let state = decide::State {
            history: &*self.interactions,
            volumes: self.volume_store.as_deref(),
            reads: self.reads.as_deref(),
            record_impressions: self.record_impressions,
            keep_memo: !self.record_impressions,
            on_unavailable: self.on_unavailable,
            store_errors: &self.store_errors,
            responses: Some(&self.responses),
        };
        let keep = self
            .log
            .as_ref()
            .filter(|_| commits)
            .map(|l| l.detail.keep());
        let mut scratch = self.scratch.get();
        let d = decide::decide(version, request, &state, keep, &mut scratch);
        if !commits {
            return d;
        }
        // Matched in place: moving the decision through a tuple would copy
        // it twice more per decision.
        let Some(log) = &self.log else {
            self.count(&d);
            return d;
        };
        let full = match d {
            Ok(full) => full,
            Err(e) => {
                self.errors.add(1);
                return Err(e);
            }
        };
        let user = if request.explain {
            full.clone()
        } else {
            full.without_candidates()
        };
        // The full decision moves to the log (no second copy). A record the
        // log refuses (`on_error = "fail"`) fails the decision, and what it
        // took from engine state goes back.
        let d = match log.log_decision(full, &request.customer_id, &request.context, request.limit)
        {
            Ok(spent) => {
                if let Some(spent) = spent {
                    scratch.recycle(spent);
                }
                Ok(user)
            }
            Err(e) => {
                decide::release(&user, &state, &request.customer_id);
                Err(e)
            }
        };
        self.count(&d);
        d
    }

    fn count(&self, r: &Result<Decision, Error>) {
        match r {
            Ok(d) => {
                self.arms[match d.arm {
                    Arm::Champion => 0,
                    Arm::Challenger => 1,
                    Arm::Control => 2,
                }]
                .add(1);
                if !d.diagnostics.is_empty() {
                    self.script_errors.add(d.diagnostics.len() as u64);
                }
            }
            Err(_) => self.errors.add(1),
        }
    }

    /// Watch `dir` and reload it when its content changes, polling every
    /// `interval`. A change is loaded only once the directory's content
    /// hash has been the same on two consecutive polls, so a directory
    /// being written is never loaded half-way (writers that want an
    /// immediate, certain switch can also build the new directory elsewhere
    /// and rename it into place). A content that fails to load is counted
    /// once in [`Engine::stats`] and not retried until it changes. The
    /// watcher stops when the returned [`Watcher`] or the engine is dropped.
    pub fn watch(self: &Arc<Self>, dir: impl Into<PathBuf>, interval: Duration) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let engine: Weak<Engine> = Arc::downgrade(self);
        let dir = dir.into();
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("nextbest-watch".into())
            .spawn(move || watch_loop(engine, dir, interval, flag))
            .ok();
        Watcher { stop, handle }
    }
}

/// A random start for an engine's outcome delivery ids: the process, the
/// time and the engine's number in the process, hashed.
fn delivery_seed() -> u64 {
    static ENGINES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = ENGINES.fetch_add(1, Ordering::Relaxed);
    xxhash_rust::xxh3::xxh3_64(
        format!(
            "deliveries:{}:{:?}:{n}",
            std::process::id(),
            std::time::SystemTime::now()
        )
        .as_bytes(),
    )
}

fn watch_loop(engine: Weak<Engine>, dir: PathBuf, interval: Duration, stop: Arc<AtomicBool>) {
    let mut previous: Option<String> = None;
    let mut settled: Option<String> = engine
        .upgrade()
        .map(|e| e.current.load().rules.hash.clone());
    while !stop.load(Ordering::Acquire) {
        std::thread::park_timeout(interval);
        if stop.load(Ordering::Acquire) {
            break;
        }
        let Some(engine) = engine.upgrade() else {
            break;
        };
        let Ok(src) = RuleSource::from_dir(&dir) else {
            previous = None;
            continue;
        };
        let hash = source_hash(&src);
        let stable = previous.as_deref() == Some(hash.as_str());
        previous = Some(hash.clone());
        if !stable || settled.as_deref() == Some(hash.as_str()) {
            continue;
        }
        settled = Some(hash);
        match RuleSet::compile(&src) {
            Ok(rules) => {
                engine.publish(rules);
            }
            Err(e) => {
                let mut h = engine.history.lock();
                h.loads_failed += 1;
                h.last_load_error = Some(e.to_string());
            }
        }
    }
}

/// A running directory watcher (see [`Engine::watch`]); dropping it stops
/// the thread.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Engine>();
        assert_send_sync::<Decision>();
    }

    #[test]
    fn every_lane_serves_the_live_version_once_publish_or_rollback_returns() {
        let load = || {
            let src = RuleSource::from_dir("rules/telco_care").expect("the shipped rule set");
            RuleSet::compile(&src).expect("it compiles")
        };
        let engine = Engine::new(load());
        let lanes =
            |e: &Engine| -> Vec<u64> { e.lanes.iter().map(|l| l.0.load().number).collect() };
        assert_eq!(lanes(&engine), vec![1; crate::base::util::STRIPES]);
        assert_eq!(engine.publish(load()), 2);
        assert_eq!(lanes(&engine), vec![2; crate::base::util::STRIPES]);
        assert_eq!(engine.publish(load()), 3);
        assert_eq!(lanes(&engine), vec![3; crate::base::util::STRIPES]);
        assert_eq!(engine.rollback().expect("2 is kept"), 2);
        assert_eq!(lanes(&engine), vec![2; crate::base::util::STRIPES]);
        // The lanes hold the live version once each, and nothing else.
        let live = engine.current();
        let held_by_lanes = engine
            .lanes
            .iter()
            .filter(|l| Arc::ptr_eq(&l.0.load().0, &live))
            .count();
        assert_eq!(held_by_lanes, crate::base::util::STRIPES);
        let gone = engine.history.lock().graveyard.len();
        assert!(gone <= 1, "{gone} versions wait in the graveyard");
    }
}
