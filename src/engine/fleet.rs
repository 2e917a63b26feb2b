//! Following the fleet's rule rollout ([`Engine::follow_fleet`]): the
//! engine serves the version `nextbest publish` (or a rollback) made live
//! in the fleet's store, under the fleet's number, and writes a heartbeat
//! that `nextbest fleet` lists.
//!
//! What it guarantees:
//! - A notice (pub/sub, on a connection of its own) or a poll every
//!   `heartbeat_ms` (the fallback for a notice lost while the
//!   connection was down) reads the live pointer; a version that differs
//!   from the one served is fetched, compiled here, checked against the
//!   hash its publisher stored, and swapped in at once
//!   ([`Engine::publish_numbered`]); a version this engine still keeps
//!   (a rollback) is served again without compiling.
//! - A version that does not compile here (or to another hash) is
//!   refused: the last good version keeps serving, and the refusal is
//!   counted once per version in [`EngineStats`](super::EngineStats)
//!   (`loads_failed`, `last_load_error`), in [`FollowStatus`], in the
//!   heartbeat, and written to the decision log (`"kind":"fleet"`).
//! - Never a hang: every call has the store's deadline (`timeout_ms`);
//!   the notice connection waits at most 200 ms per read, so the thread
//!   sees a stop quickly. A store that fails is retried with a backoff
//!   (100 ms doubling to 5 s), each failure counted; the engine keeps
//!   serving what it has.
//! - The thread stops when the [`FleetFollower`] or the engine is
//!   dropped, and then removes its heartbeat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use super::Engine;
use crate::base::{Error, Timestamp};
use crate::state::fleet::StateConfig;
use crate::state::redis::{FleetRollout, FleetVersion, InstanceStatus};

/// The longest the notice connection waits per read.
const SLICE: Duration = Duration::from_millis(200);
/// The shortest life of a heartbeat.
const MIN_TTL: Duration = Duration::from_secs(1);
/// The first and the longest wait before retrying a failed store.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What a following engine has done, from [`FleetFollower::status`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowStatus {
    /// This instance's id in the fleet.
    pub instance_id: String,
    /// The fleet's live version, as last read (`None`: nothing published
    /// yet, or never read).
    pub fleet_version: Option<u64>,
    /// The fleet version this engine serves (`None` until it serves one).
    pub serving: Option<u64>,
    /// Fleet versions that went live here (the first included).
    pub followed: u64,
    /// Fleet versions refused (they did not compile here, or to another
    /// hash): the last good one kept serving.
    pub refused: u64,
    /// Why the last one was refused.
    pub last_refusal: Option<String>,
    /// Calls to the store that failed while following.
    pub store_errors: u64,
    /// The last of them.
    pub last_store_error: Option<String>,
    /// Heartbeats written.
    pub heartbeats: u64,
}

/// A running fleet follower (see [`Engine::follow_fleet`]); dropping it
/// stops the thread.
#[derive(Debug)]
pub struct FleetFollower {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
    status: Arc<Mutex<FollowStatus>>,
}

impl FleetFollower {
    /// What it has done so far.
    pub fn status(&self) -> FollowStatus {
        self.status.lock().clone()
    }
}

impl Drop for FleetFollower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

impl Engine {
    /// Follow the fleet's rule rollout in the store `config` names (see
    /// the module docs and docs/FLEET.md): serve its live version now, if
    /// it has one that compiles here, then follow its publishes and
    /// rollbacks from a thread, writing a heartbeat every
    /// `config.heartbeat_ms`. Decisions carry the fleet's version numbers.
    ///
    /// An unreachable store is an error here; after that, a store that
    /// fails is retried and counted while the engine keeps serving.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use nextbest::state::fleet::StateConfig;
    /// let engine = Arc::new(nextbest::Engine::from_dir("tests/fixtures/mini")?);
    /// let config = StateConfig {
    ///     follow: true,
    ///     instance_id: Some("web-1".into()),
    ///     ..StateConfig::new("redis://127.0.0.1:6379/0")
    /// };
    /// let follower = engine.follow_fleet(&config)?;
    /// // Serving the fleet's live version now, under the fleet's number.
    /// println!("{}: {:?}", engine.current().number(), follower.status());
    /// // Dropping `follower` (or the engine) stops following.
    /// # Ok::<(), nextbest::Error>(())
    /// ```
    pub fn follow_fleet(self: &Arc<Self>, config: &StateConfig) -> Result<FleetFollower, Error> {
        config.check()?;
        if self.governed.is_some() {
            return Err(Error::InvalidConfig(
                "this engine serves a governance repository (`governance_repo`): it follows that, not the fleet's rollout".into(),
            ));
        }
        let store = FleetRollout::connect(config)?;
        let id = config
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("{}-{}", host(), std::process::id()));
        let status = Arc::new(Mutex::new(FollowStatus {
            instance_id: id.clone(),
            ..FollowStatus::default()
        }));
        let interval = Duration::from_millis(config.heartbeat_ms);
        let mut follower = Follower {
            store,
            id,
            host: host(),
            started: Timestamp::now().to_string(),
            interval,
            status: status.clone(),
            serving: None,
            refused: None,
            failures: 0,
            next_poll: Instant::now(),
            next_beat: Instant::now(),
        };
        follower.poll(self);
        follower.beat(self);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = Arc::downgrade(self);
        let handle = std::thread::Builder::new()
            .name("nextbest-fleet".into())
            .spawn(move || follower.run(&engine, &flag))
            .map_err(|e| {
                Error::InvalidConfig(format!("could not start the fleet follower: {e}"))
            })?;
        Ok(FleetFollower {
            stop,
            handle: Some(handle),
            status,
        })
    }
}

/// The fleet's live version, compiled: what an engine that follows the
/// fleet without a rule directory of its own opens with (it is then
/// renumbered by [`Engine::follow_fleet`]).
pub(super) fn live_rules(config: &StateConfig) -> Result<crate::ruleset::RuleSet, Error> {
    let store = FleetRollout::connect(config)?;
    match store.live_version()? {
        Some(v) => v.compile(),
        None => Err(Error::InvalidConfig(format!(
            "no `rules_dir`, and nothing has been published to the fleet in {} to follow (nextbest publish DIR --state URL)",
            store.store()
        ))),
    }
}

/// This machine's name.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

enum Exit {
    Stop,
    Reconnect,
}

struct Follower {
    store: FleetRollout,
    id: String,
    host: String,
    started: String,
    interval: Duration,
    status: Arc<Mutex<FollowStatus>>,
    /// The live pointer (number, hash) served, and the one refused last
    /// (so that polling it again counts and logs it once).
    serving: Option<(u64, String)>,
    refused: Option<(u64, String)>,
    /// Store failures in a row (the backoff's exponent).
    failures: u32,
    next_poll: Instant,
    next_beat: Instant,
}

impl Follower {
    fn run(mut self, engine: &Weak<Engine>, stop: &AtomicBool) {
        let channel = self.store.channel();
        loop {
            let mut con = match self.store.notice_connection() {
                Ok(c) => Some(c),
                Err(e) => {
                    self.failed(&e);
                    None
                }
            };
            let mut notices = None;
            if let Some(con) = con.as_mut() {
                let mut ps = con.as_pubsub();
                match ps
                    .subscribe(&channel)
                    .and_then(|()| ps.set_read_timeout(Some(SLICE)))
                {
                    Ok(()) => notices = Some(ps),
                    Err(e) => self.failed(&self.store.unavailable("fleet subscribe", e)),
                }
            }
            // Subscribed: listen until the connection fails. Not: poll
            // until the backoff says to try again.
            let until = match notices {
                Some(_) => None,
                None => Some(Instant::now() + self.backoff()),
            };
            // A notice may have been missed while not subscribed.
            self.next_poll = Instant::now();
            let subscribed = notices.is_some();
            if let Exit::Stop = self.serve(engine, stop, notices.as_mut(), until) {
                break;
            }
            if subscribed {
                // The notice connection broke: wait the backoff before the
                // next, so a server that drops every connection is not
                // hammered (a stop unparks this thread).
                std::thread::park_timeout(self.backoff());
                if stop.load(Ordering::Acquire) {
                    break;
                }
            }
        }
        let _ = self.store.leave(&self.id);
    }

    fn serve(
        &mut self,
        engine: &Weak<Engine>,
        stop: &AtomicBool,
        mut notices: Option<&mut redis::PubSub<'_>>,
        until: Option<Instant>,
    ) -> Exit {
        loop {
            if stop.load(Ordering::Acquire) {
                return Exit::Stop;
            }
            let notified = match notices.as_mut() {
                Some(ps) => match ps.get_message() {
                    Ok(_) => true,
                    Err(e) if e.is_timeout() => false,
                    Err(e) => {
                        self.failed(&self.store.unavailable("fleet notice", e));
                        return Exit::Reconnect;
                    }
                },
                None => {
                    std::thread::park_timeout(SLICE);
                    false
                }
            };
            if stop.load(Ordering::Acquire) {
                return Exit::Stop;
            }
            let now = Instant::now();
            let poll = notified || now >= self.next_poll;
            if poll || now >= self.next_beat {
                let Some(engine) = engine.upgrade() else {
                    return Exit::Stop;
                };
                if poll {
                    self.poll(&engine);
                }
                // (A version that went live or was refused is reported at once.)
                if Instant::now() >= self.next_beat {
                    self.beat(&engine);
                }
            }
            if until.is_some_and(|u| now >= u) {
                return Exit::Reconnect;
            }
        }
    }

    fn backoff(&self) -> Duration {
        let exp = self.failures.saturating_sub(1).min(16);
        BACKOFF_MIN.saturating_mul(1 << exp).min(BACKOFF_MAX)
    }

    fn failed(&mut self, e: &Error) {
        self.failures = self.failures.saturating_add(1);
        let mut s = self.status.lock();
        s.store_errors += 1;
        s.last_store_error = Some(e.to_string());
    }

    /// Read the live pointer and serve its version if it changed; the
    /// next poll comes after the interval, or the backoff on a failure.
    fn poll(&mut self, engine: &Engine) {
        match self.sync(engine) {
            Ok(()) => {
                self.failures = 0;
                self.next_poll = Instant::now() + self.interval;
            }
            Err(e) => {
                self.failed(&e);
                self.next_poll = Instant::now() + self.backoff();
            }
        }
    }

    /// Serve the fleet's live version. Only a store failure is an error:
    /// a version that cannot be served is refused (counted, logged).
    fn sync(&mut self, engine: &Engine) -> Result<(), Error> {
        let pointer = self.store.live_pointer()?;
        self.status.lock().fleet_version = pointer.as_ref().map(|p| p.0);
        let Some(pointer) = pointer else {
            return Ok(());
        };
        if self.serving.as_ref() == Some(&pointer) || self.refused.as_ref() == Some(&pointer) {
            return Ok(());
        }
        let live = pointer.0;
        let version = match self.store.fetch(live) {
            Ok(Some(v)) => v,
            Ok(None) => {
                let why =
                    format!("the live pointer names version {live}, which the store does not hold");
                self.refuse(engine, pointer, &why);
                return Ok(());
            }
            Err(e @ Error::StoreUnavailable { .. }) => return Err(e),
            Err(e) => {
                self.refuse(engine, pointer, &e.to_string());
                return Ok(());
            }
        };
        let current = engine.current();
        let same = current.number == live && current.rules.hash == version.hash;
        if same || engine.serve_kept(live, &version.hash) {
            self.followed(engine, &version, pointer);
            return Ok(());
        }
        match version.compile() {
            Ok(rules) => {
                engine.publish_numbered(rules, live);
                self.followed(engine, &version, pointer);
            }
            Err(e) => self.refuse(engine, pointer, &format!("fleet version {live}: {e}")),
        }
        Ok(())
    }

    fn followed(&mut self, engine: &Engine, v: &FleetVersion, pointer: (u64, String)) {
        self.serving = Some(pointer);
        self.refused = None;
        self.next_beat = Instant::now();
        let previous = {
            let mut s = self.status.lock();
            s.followed += 1;
            s.serving.replace(v.number)
        };
        let detail = serde_json::json!({
            "hash": v.hash, "by": v.by, "published": v.published, "previous": previous,
        });
        note(engine, "followed", &self.id, v.number, detail);
    }

    fn refuse(&mut self, engine: &Engine, pointer: (u64, String), why: &str) {
        let number = pointer.0;
        self.refused = Some(pointer);
        self.next_beat = Instant::now();
        {
            let mut s = self.status.lock();
            s.refused += 1;
            s.last_refusal = Some(why.to_string());
        }
        {
            let mut h = engine.history.lock();
            h.loads_failed += 1;
            h.last_load_error = Some(why.to_string());
        }
        let serving = engine.current().number;
        let detail = serde_json::json!({ "reason": why, "serving": serving });
        note(engine, "refused", &self.id, number, detail);
    }

    /// Write the heartbeat (a failure is counted, and retried at the next
    /// one).
    fn beat(&mut self, engine: &Engine) {
        self.next_beat = Instant::now() + self.interval;
        // Not `Engine::stats`: it sizes the in-memory history too, work a
        // heartbeat does not need.
        let (refused, store_errors, last_refusal) = {
            let s = self.status.lock();
            (s.refused, s.store_errors, s.last_refusal.clone())
        };
        let last_load_error = engine.history.lock().last_load_error.clone();
        let live = engine.current.load_full();
        let status = InstanceStatus {
            id: self.id.clone(),
            host: self.host.clone(),
            pid: std::process::id(),
            ruleset: live.rules.name().to_string(),
            version: live.number,
            hash: live.rules.hash().to_string(),
            heartbeat: Timestamp::now().to_string(),
            started: self.started.clone(),
            decisions: engine.arms.iter().map(|a| a.sum()).sum(),
            decision_errors: engine.errors.sum(),
            refused,
            store_errors,
            last_error: last_refusal.or(last_load_error),
        };
        // Three intervals, and at least the longest pause a busy host may
        // take between two heartbeats.
        let ttl = self.interval.saturating_mul(3).max(MIN_TTL);
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self.store.heartbeat(&status, ttl) {
            Ok(()) => self.status.lock().heartbeats += 1,
            Err(e) => self.failed(&e),
        }
    }
}

/// A `"kind":"fleet"` decision-log record, when there is a log (a record
/// the log refuses is counted by the log).
fn note(engine: &Engine, event: &str, instance: &str, version: u64, detail: serde_json::Value) {
    if let Some(log) = &engine.log {
        let _ = log.log_note(serde_json::json!({
            "v": 1,
            "kind": "fleet",
            "timestamp": Timestamp::now().to_string(),
            "event": event,
            "instance": instance,
            "version": version,
            "detail": detail,
        }));
    }
}
