//! Interaction history: what each customer was shown and did, for contact
//! policies and channel limits.
//!
//! The decision path asks the store once per decision (and only when the
//! rule version has contact policies or channel limits) for the customer's
//! events since some time, into a reused buffer, and counts them locally:
//! no lock is held while policies are evaluated, and a shared store (Redis,
//! say) answers the same question with one round trip.
//!
//! Events name actions, groups and channels by [`key`]: a 64-bit hash of
//! the name, stable across rule versions, processes and machines, so
//! instances sharing a store agree without coordinating ids.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::base::Error;
use crate::base::OutcomeKind;
/// The keys events carry: re-exported here, where [`Event`] uses them.
pub use crate::base::{channel_key, key};

/// One thing that happened between a customer and an action: 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, in seconds since the Unix epoch.
    pub at: i64,
    /// [`key`] of the action's id.
    pub action: u64,
    /// [`key`] of the action's group when the event was recorded.
    pub group: u64,
    /// Low 32 bits of the channel name's [`key`].
    pub channel: u32,
    /// What happened.
    pub kind: OutcomeKind,
}

/// What [`HistoryStore::record_outcome`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The outcome is recorded (now, or by an earlier try of the same
    /// delivery).
    New,
    /// The same outcome was recorded before; nothing changed.
    Duplicate,
}

/// Where interaction history lives. The engine calls [`HistoryStore::recent`]
/// at most once per decision and [`HistoryStore::record`] once per outcome;
/// implementations must be safe to call from many threads at once.
///
/// The calls that read or change the history return a `Result`: a shared
/// store (Redis) can be unreachable or late, and says so with
/// [`Error::StoreUnavailable`]; the in-memory store never fails. A failed
/// call must change nothing (or nothing a retry would double).
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// Add one event to a customer's history.
    fn record(&self, customer: &str, event: Event) -> Result<(), Error>;

    /// Append to `out` the customer's events at or after `since` (seconds),
    /// oldest first.
    fn recent(&self, customer: &str, since: i64, out: &mut Vec<Event>) -> Result<(), Error>;

    /// Record `events` (impressions a decision returns on one channel) only
    /// if the customer has fewer than `limit.max` impressions on
    /// `limit.channel` in the window ending at `limit.now`, as one atomic
    /// step per customer: whether they were recorded. This is how a
    /// channel's contact limit stays exact when decisions for the same
    /// customer race.
    ///
    /// The default counts with [`HistoryStore::recent`] and then records,
    /// which is not atomic: a store shared by threads or processes must
    /// override it (as [`MemoryHistory`] and the Redis store do).
    fn record_within_limit(
        &self,
        customer: &str,
        limit: ContactLimitCheck,
        events: &[Event],
    ) -> Result<bool, Error> {
        let mut recent = Vec::new();
        self.recent(
            customer,
            limit.now.saturating_sub(limit.within),
            &mut recent,
        )?;
        if limit.reached(&recent) {
            return Ok(false);
        }
        for e in events {
            self.record(customer, *e)?;
        }
        Ok(true)
    }

    /// Whether the outcome `key` (a hash of the decision id, action and
    /// outcome kind it reports) is new for `customer`: `true` the first
    /// time, remembered as at `at` (epoch seconds), and `false` for every
    /// repeat while the store keeps the customer's history, so that an
    /// outcome delivered twice is counted once. As one atomic step per
    /// customer. [`HistoryStore::forget_outcome`] undoes it when the
    /// outcome could not be recorded after all.
    ///
    /// The default remembers nothing (every outcome is new): a store that
    /// should deduplicate overrides it, as [`MemoryHistory`] and the Redis
    /// store do.
    fn first_outcome(&self, customer: &str, key: u64, at: i64) -> Result<bool, Error> {
        let _ = (customer, key, at);
        Ok(true)
    }

    /// Forget the outcome `key` that [`HistoryStore::first_outcome`]
    /// remembered for `customer` (it could not be logged or recorded), so
    /// that a retry counts. The default does nothing.
    fn forget_outcome(&self, customer: &str, key: u64) -> Result<(), Error> {
        let _ = (customer, key);
        Ok(())
    }

    /// Record an outcome's `event` for `customer`, once: when `once` (the
    /// outcome's key, as [`HistoryStore::first_outcome`] takes it) was
    /// recorded before, record nothing and return
    /// [`Recorded::Duplicate`]. `delivery` names this delivery of the
    /// outcome: calling again with the same `delivery` after a failure
    /// (a lost reply) records it at most once and answers
    /// [`Recorded::New`] again, so buffered outcomes can be retried.
    ///
    /// The default calls [`HistoryStore::first_outcome`] and then
    /// [`HistoryStore::record`] (forgetting the key if that fails); the
    /// Redis store does both in one script.
    fn record_outcome(
        &self,
        customer: &str,
        once: Option<u64>,
        event: Event,
        delivery: u64,
    ) -> Result<Recorded, Error> {
        let _ = delivery;
        if let Some(key) = once {
            if !self.first_outcome(customer, key, event.at)? {
                return Ok(Recorded::Duplicate);
            }
        }
        if let Err(e) = self.record(customer, event) {
            if let Some(key) = once {
                let _ = self.forget_outcome(customer, key);
            }
            return Err(e);
        }
        Ok(Recorded::New)
    }

    /// Forget `events` recorded for the customer by a decision that was
    /// not returned after all (its log record could not be written). The
    /// default does nothing.
    fn unrecord(&self, customer: &str, events: &[Event]) -> Result<(), Error> {
        let _ = (customer, events);
        Ok(())
    }

    /// What the decision path calls: the [`Memo`] kept with the customer's
    /// events if it [fits](Memo::fits) `tag` and `now`; otherwise the events
    /// at or after `since` appended to `out` (as [`HistoryStore::recent`]),
    /// with a stamp of their state for [`HistoryStore::keep_memo`] if the
    /// store keeps memos.
    ///
    /// The default keeps no memos: it calls [`HistoryStore::recent`] and
    /// returns no stamp, so the engine derives everything from the events
    /// on every decision.
    fn recent_or_memo(
        &self,
        customer: &str,
        since: i64,
        tag: u64,
        now: i64,
        out: &mut Vec<Event>,
    ) -> Result<Recent, Error> {
        let _ = (tag, now);
        self.recent(customer, since, out)?;
        Ok(Recent::Events { stamp: None })
    }

    /// Keep `memo` with the customer's events, unless they changed since
    /// [`HistoryStore::recent_or_memo`] returned `stamp`. A store that keeps
    /// memos drops a customer's memo whenever it records an event for them.
    fn keep_memo(&self, customer: &str, stamp: u64, memo: Arc<Memo>) {
        let _ = (customer, stamp, memo);
    }

    /// Write the whole history (JSON Lines, see [`MemoryHistory::save`]).
    /// A store that persists itself (a shared database) need not support
    /// this.
    fn save(&self, _out: &mut dyn Write) -> Result<(), Error> {
        Err(Error::State(
            "this history store persists itself; it cannot be saved to a file".into(),
        ))
    }

    /// Replace the history with the events of a file written by
    /// [`HistoryStore::save`], all or nothing: a damaged or truncated input
    /// is an error and changes nothing; customers the file does not have
    /// are forgotten. `first_line` is the input's first line number in its file,
    /// for error messages.
    fn load(&self, _input: &mut dyn BufRead, _first_line: usize) -> Result<(), Error> {
        Err(Error::State(
            "this history store persists itself; it cannot be loaded from a file".into(),
        ))
    }

    /// Whether [`HistoryStore::save`] and [`HistoryStore::load`] work. A
    /// store that persists itself (a shared database) says no, and
    /// [`crate::Engine::save_state`] then saves only learning and volumes.
    fn saves_to_file(&self) -> bool {
        false
    }

    /// Forget the customers whose newest event is older than the
    /// retention window at `now`, returning how many were forgotten. The
    /// default does nothing (a shared store expires keys itself).
    fn purge(&self, now: i64) -> usize {
        let _ = now;
        0
    }

    /// How many customers and events the store holds, if it can say (for
    /// [`crate::Engine::stats`]). [`MemoryHistory`] walks its map: a few
    /// milliseconds for a million customers, off the decision path.
    fn size(&self) -> Option<HistorySize> {
        None
    }
}

/// A channel's contact limit as [`HistoryStore::record_within_limit`]
/// checks it: at most `max` impressions on the channel whose key is
/// `channel` in the window of `within` seconds ending at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactLimitCheck {
    /// The channel's [`channel_key`].
    pub channel: u32,
    /// The window, seconds.
    pub within: i64,
    /// Impressions allowed in the window.
    pub max: u32,
    /// The end of the window (the decision time), epoch seconds.
    pub now: i64,
}

impl ContactLimitCheck {
    /// Whether `events` (the customer's, in time order) reach the limit.
    pub fn reached(&self, events: &[Event]) -> bool {
        crate::state::contact::contacts(events, self.channel, self.within, self.now) >= self.max
    }
}

/// The size of a history store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct HistorySize {
    /// Customers with at least one event.
    pub customers: usize,
    /// Events held.
    pub events: usize,
}

/// What the engine derived from one customer's events for one rule
/// version: which actions and groups its contact policies suppress and which
/// channels are at their contact limit, and the times between which that
/// holds (nothing it depends on changes in between: no event enters or
/// leaves a window, no suppression starts or ends). A store keeps it with
/// the events so that the next decisions read a few entries instead of
/// re-deriving them from every event. Opaque outside the engine.
#[derive(Debug)]
pub struct Memo {
    /// The rule version's memo tag.
    pub(crate) tag: u64,
    /// Valid for decisions at `from <= now < until`.
    pub(crate) from: i64,
    pub(crate) until: i64,
    /// Bit `i`: channel `i` is at its contact limit.
    pub(crate) limited: u64,
    /// Each suppressed action's index and the first policy (in declaration
    /// order) that suppresses it, by action index.
    pub(crate) suppressed: Box<[(u32, u32)]>,
}

impl Memo {
    /// Whether the memo holds for a decision by the rule version with
    /// memo tag `tag` at `now` (seconds).
    pub fn fits(&self, tag: u64, now: i64) -> bool {
        self.tag == tag && self.from <= now && now < self.until
    }
}

/// The answer of [`HistoryStore::recent_or_memo`].
#[derive(Debug)]
pub enum Recent {
    /// The kept memo fits: no events were fetched.
    Memo(Arc<Memo>),
    /// The events were appended to the output; `stamp` is their state for
    /// [`HistoryStore::keep_memo`] (`None`: keep no memo).
    Events {
        /// The state of the customer's events when they were read.
        stamp: Option<u64>,
    },
}

/// Bounds of a [`MemoryHistory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Events older than this many seconds before a customer's newest event
    /// are evicted (default 90 days). Contact policies cannot see further
    /// back than this.
    #[serde(default = "default_retention")]
    pub retention_secs: i64,
    /// At most this many events per customer; the oldest go first (default
    /// 256).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
}

fn default_retention() -> i64 {
    90 * 86_400
}

fn default_max_events() -> usize {
    256
}

impl HistoryConfig {
    /// An error naming the field when a bound would make the history
    /// useless (nothing kept).
    pub fn check(&self) -> Result<(), Error> {
        if self.retention_secs <= 0 {
            return Err(Error::InvalidConfig(format!(
                "history.retention_secs is {}: give the seconds of history to keep (at least 1; default 7776000, 90 days)",
                self.retention_secs
            )));
        }
        if self.max_events == 0 {
            return Err(Error::InvalidConfig(
                "history.max_events is 0: give the events to keep per customer (at least 1; default 256)".into(),
            ));
        }
        Ok(())
    }
}

impl Default for HistoryConfig {
    fn default() -> HistoryConfig {
        HistoryConfig {
            retention_secs: default_retention(),
            max_events: default_max_events(),
        }
    }
}

/// The in-memory history: a sharded map from customer id to that
/// customer's events, oldest first, bounded by [`HistoryConfig`].
///
/// Memory: 32 bytes per event, plus per customer about 150 to 220 bytes:
/// the id's allocation (32 bytes for ids up to 24 characters with glibc),
/// the map's slot (a 16-byte id, a 24-byte vector header, the memo pointer
/// and a change counter, 56 bytes, in a table 44% to 88% full: about 65 to
/// 130 bytes), the allocator's header on the event vector and, when
/// customers' histories grow interleaved, fragmentation. Vectors grow by a
/// quarter, not by doubling, so capacity stays close to length.
/// `examples/history_memory.rs` measured 1,000,000 customers × 10 events
/// (8-character ids, glibc, x86-64 Linux) at 512 MiB: 53.7 bytes per event.
/// A customer decided since their last outcome also holds a [`Memo`]: 80
/// bytes, plus 8 per suppressed action (and the allocator's 16) when any
/// is.
#[derive(Debug)]
pub struct MemoryHistory {
    map: DashMap<Box<str>, Entry, rustc_hash::FxBuildHasher>,
    config: HistoryConfig,
}

/// One customer's events in a [`MemoryHistory`], with the memo the engine
/// derived from them and a counter of changes (the memo's stamp).
#[derive(Debug, Default)]
struct Entry {
    events: Vec<Event>,
    memo: Option<Arc<Memo>>,
    changes: u32,
    /// The outcomes recorded with a decision id ([`HistoryStore::first_outcome`]):
    /// their keys and times, as many and as old as the events kept (boxed:
    /// one word in every customer's entry until an outcome names one).
    #[allow(clippy::box_collection)] // one word, not a Vec's three
    outcomes: Option<Box<Vec<(u64, i64)>>>,
}

impl Default for MemoryHistory {
    fn default() -> MemoryHistory {
        MemoryHistory::new(HistoryConfig::default())
    }
}

/// One customer's line in a saved history file.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    customer: std::borrow::Cow<'a, str>,
    events: Vec<Event>,
}

/// The last line of a saved history (format 2): how many customer lines
/// precede it, so a truncated file is detected.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    kind: String,
    customers: usize,
}

/// The first line of a saved history file.
#[derive(Serialize, Deserialize)]
struct Header {
    v: u32,
    kind: String,
}

impl MemoryHistory {
    /// An empty history with these bounds.
    pub fn new(config: HistoryConfig) -> MemoryHistory {
        MemoryHistory {
            map: DashMap::with_hasher(rustc_hash::FxBuildHasher),
            config: HistoryConfig {
                retention_secs: config.retention_secs.max(0),
                max_events: config.max_events.max(1),
            },
        }
    }

    /// Customers with at least one event.
    pub fn customers(&self) -> usize {
        self.map.len()
    }

    /// Events held, over all customers.
    pub fn events(&self) -> usize {
        self.map.iter().map(|e| e.value().events.len()).sum()
    }

    fn evict(&self, events: &mut Vec<Event>) {
        let newest = events.last().map_or(i64::MIN, |e| e.at);
        let cutoff = newest.saturating_sub(self.config.retention_secs);
        let old = events.partition_point(|e| e.at < cutoff);
        let over = events.len().saturating_sub(self.config.max_events);
        let drop = old.max(over);
        if drop > 0 {
            events.drain(..drop);
        }
    }
}

impl HistoryStore for MemoryHistory {
    fn saves_to_file(&self) -> bool {
        true
    }

    /// Customers are kept until forgotten here: events age out relative
    /// to a customer's newest one, so a customer who stops calling keeps
    /// their last events (and map entry) until a purge. Locks one shard of
    /// the map at a time: call it from a maintenance thread (say hourly),
    /// not on the decision path.
    fn purge(&self, now: i64) -> usize {
        let cutoff = now.saturating_sub(self.config.retention_secs);
        let before = self.map.len();
        self.map
            .retain(|_, e| e.events.last().is_some_and(|ev| ev.at >= cutoff));
        before.saturating_sub(self.map.len())
    }

    fn size(&self) -> Option<HistorySize> {
        Some(HistorySize {
            customers: self.customers(),
            events: self.events(),
        })
    }

    fn record(&self, customer: &str, event: Event) -> Result<(), Error> {
        let mut entry = match self.map.get_mut(customer) {
            Some(e) => e,
            None => self.map.entry(customer.into()).or_default(),
        };
        entry.memo = None;
        entry.changes = entry.changes.wrapping_add(1);
        let events = &mut entry.events;
        if events.len() == events.capacity() {
            // Grow by a quarter: memory stays close to the events held.
            let more = (events.len() / 4).max(1);
            events.reserve_exact(more);
        }
        // Usually the newest: appended. A late event goes to its place.
        let at = events.partition_point(|e| e.at <= event.at);
        events.insert(at, event);
        self.evict(events);
        Ok(())
    }

    fn record_within_limit(
        &self,
        customer: &str,
        limit: ContactLimitCheck,
        events: &[Event],
    ) -> Result<bool, Error> {
        // The entry's shard stays locked from the count to the last event
        // recorded: no other decision for the customer can count between.
        let mut entry = match self.map.get_mut(customer) {
            Some(e) => e,
            None => self.map.entry(customer.into()).or_default(),
        };
        let from = entry
            .events
            .partition_point(|e| e.at <= limit.now.saturating_sub(limit.within));
        if limit.reached(&entry.events[from..]) {
            return Ok(false);
        }
        entry.memo = None;
        entry.changes = entry.changes.wrapping_add(1);
        for e in events {
            let at = entry.events.partition_point(|x| x.at <= e.at);
            entry.events.insert(at, *e);
        }
        self.evict(&mut entry.events);
        Ok(true)
    }

    fn first_outcome(&self, customer: &str, key: u64, at: i64) -> Result<bool, Error> {
        let mut entry = match self.map.get_mut(customer) {
            Some(e) => e,
            None => self.map.entry(customer.into()).or_default(),
        };
        let seen = entry.outcomes.get_or_insert_with(Default::default);
        if seen.iter().any(|&(k, _)| k == key) {
            return Ok(false);
        }
        // Bounded as the events are: by the retention before the newest,
        // and by count (the oldest go first).
        let newest = seen.iter().map(|&(_, t)| t).max().unwrap_or(at).max(at);
        let cutoff = newest.saturating_sub(self.config.retention_secs);
        seen.retain(|&(_, t)| t >= cutoff);
        if seen.len() >= self.config.max_events {
            if let Some(oldest) = (0..seen.len()).min_by_key(|&i| seen[i].1) {
                seen.swap_remove(oldest);
            }
        }
        seen.push((key, at));
        Ok(true)
    }

    fn forget_outcome(&self, customer: &str, key: u64) -> Result<(), Error> {
        if let Some(seen) = self
            .map
            .get_mut(customer)
            .as_mut()
            .and_then(|e| e.outcomes.as_mut())
        {
            seen.retain(|&(k, _)| k != key);
        }
        Ok(())
    }

    fn unrecord(&self, customer: &str, events: &[Event]) -> Result<(), Error> {
        if let Some(mut entry) = self.map.get_mut(customer) {
            let mut changed = false;
            for e in events {
                if let Some(i) = entry.events.iter().rposition(|x| x == e) {
                    entry.events.remove(i);
                    changed = true;
                }
            }
            if changed {
                entry.memo = None;
                entry.changes = entry.changes.wrapping_add(1);
            }
        }
        Ok(())
    }

    fn recent(&self, customer: &str, since: i64, out: &mut Vec<Event>) -> Result<(), Error> {
        if let Some(entry) = self.map.get(customer) {
            let events = &entry.events;
            let from = events.partition_point(|e| e.at < since);
            out.extend_from_slice(&events[from..]);
        }
        Ok(())
    }

    fn recent_or_memo(
        &self,
        customer: &str,
        since: i64,
        tag: u64,
        now: i64,
        out: &mut Vec<Event>,
    ) -> Result<Recent, Error> {
        let Some(entry) = self.map.get(customer) else {
            // No history: nothing to derive, and no entry is made for it.
            return Ok(Recent::Events { stamp: None });
        };
        if let Some(m) = entry.memo.as_ref().filter(|m| m.fits(tag, now)) {
            return Ok(Recent::Memo(Arc::clone(m)));
        }
        let events = &entry.events;
        let from = events.partition_point(|e| e.at < since);
        out.extend_from_slice(&events[from..]);
        Ok(Recent::Events {
            stamp: Some(u64::from(entry.changes)),
        })
    }

    fn keep_memo(&self, customer: &str, stamp: u64, memo: Arc<Memo>) {
        if let Some(mut entry) = self.map.get_mut(customer) {
            if u64::from(entry.changes) == stamp {
                entry.memo = Some(memo);
            }
        }
    }

    /// JSON Lines: a header `{"v":2,"kind":"history"}`, one line per
    /// customer, sorted by id: `{"customer":"C1","events":[{"at":..,
    /// "action":..,"group":..,"channel":..,"kind":"impression"}, ...]}`,
    /// and `{"kind":"end","customers":N}`. Version 1 files (no end line)
    /// still load.
    fn save(&self, out: &mut dyn Write) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::State(format!("saving history: {e}"));
        let json = |e: serde_json::Error| Error::State(format!("saving history: {e}"));
        serde_json::to_writer(
            &mut *out,
            &Header {
                v: 2,
                kind: "history".into(),
            },
        )
        .map_err(json)?;
        out.write_all(b"\n").map_err(io)?;
        // Sorted by customer, so the same history always saves to the same
        // bytes (the map's order depends on its shards' sizes).
        let mut customers: Vec<Box<str>> = self.map.iter().map(|e| e.key().clone()).collect();
        customers.sort_unstable();
        let mut written = 0usize;
        for customer in customers {
            // Copy out, then write without holding the shard lock.
            let Some(events) = self.map.get(&*customer).map(|e| e.value().events.clone()) else {
                continue;
            };
            let line = Line {
                customer: std::borrow::Cow::Borrowed(&customer),
                events,
            };
            serde_json::to_writer(&mut *out, &line).map_err(json)?;
            out.write_all(b"\n").map_err(io)?;
            written += 1;
        }
        serde_json::to_writer(
            &mut *out,
            &End {
                kind: "end".into(),
                customers: written,
            },
        )
        .map_err(json)?;
        out.write_all(b"\n").map_err(io)
    }

    fn load(&self, input: &mut dyn BufRead, first_line: usize) -> Result<(), Error> {
        // Parse everything first: a damaged input changes nothing.
        let mut buf = String::new();
        let mut n = 0usize;
        let mut version = 0;
        let mut parsed: Vec<(String, Vec<Event>)> = Vec::new();
        let mut ended = false;
        loop {
            buf.clear();
            let at = first_line + n;
            n += 1;
            let read = input
                .read_line(&mut buf)
                .map_err(|e| Error::State(format!("line {at}: {e}")))?;
            if read == 0 {
                break;
            }
            let bad = |e: serde_json::Error| Error::State(format!("line {at}: {e}"));
            if ended {
                return Err(Error::State(format!(
                    "line {at}: text after the history's end line"
                )));
            }
            if n == 1 {
                let h: Header = serde_json::from_str(&buf).map_err(bad)?;
                if !(h.v == 1 || h.v == 2) || h.kind != "history" {
                    return Err(Error::State(format!(
                        "line {at}: expected {{\"v\":2,\"kind\":\"history\"}}, found v {} kind `{}`",
                        h.v, h.kind
                    )));
                }
                version = h.v;
                continue;
            }
            if version >= 2 && buf.starts_with("{\"kind\":\"end\"") {
                let end: End = serde_json::from_str(&buf).map_err(bad)?;
                if end.kind != "end" || end.customers != parsed.len() {
                    return Err(Error::State(format!(
                        "line {at}: the end line counts {} customers, the file has {}",
                        end.customers,
                        parsed.len()
                    )));
                }
                ended = true;
                continue;
            }
            let line: Line<'_> = serde_json::from_str(&buf).map_err(bad)?;
            parsed.push((line.customer.into_owned(), line.events));
        }
        if n == 1 {
            return Err(Error::State(format!("line {first_line}: no history")));
        }
        // Version 1 files had no end line; version 2 files cut short lack it.
        if version >= 2 && !ended {
            return Err(Error::State(format!(
                "line {}: the history ends without its end line: the file is truncated",
                first_line + n - 1
            )));
        }
        // Replaced, never added to: loading the same file twice (or into an
        // engine that has served) must not count its events twice.
        self.map.clear();
        for (customer, events) in parsed {
            for e in events {
                self.record(&customer, e)?;
            }
        }
        Ok(())
    }
}

/// Write a file atomically: to `path.tmp`, synced, then renamed over
/// `path`, so a crash leaves the old file or the new one, never half.
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), Error>,
) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::io(path, e);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let written = (|| {
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)
    })();
    if written.is_err() {
        // Leave no half-written temporary file behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Make the rename itself durable (best effort where directories
        // cannot be opened).
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_forgets_only_customers_with_nothing_in_the_window() {
        let h = MemoryHistory::new(HistoryConfig {
            retention_secs: 100,
            max_events: 8,
        });
        h.record("old", ev(1_000, OutcomeKind::Accepted)).unwrap();
        h.record("edge", ev(1_900, OutcomeKind::Rejected)).unwrap();
        h.record("mixed", ev(1_870, OutcomeKind::Rejected)).unwrap();
        h.record("mixed", ev(1_950, OutcomeKind::Rejected)).unwrap();
        assert_eq!(h.purge(2_000), 1, "only `old` is past the window");
        assert_eq!(h.customers(), 2);
        let mut out = Vec::new();
        h.recent("mixed", 0, &mut out).unwrap();
        assert_eq!(out.len(), 2, "a kept customer keeps all its events");
        out.clear();
        h.recent("old", 0, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(h.purge(2_000), 0, "a second purge finds nothing");
        assert_eq!(h.purge(2_001), 1, "`edge` leaves a second later");
    }

    fn ev(at: i64, kind: OutcomeKind) -> Event {
        Event {
            at,
            action: key("A"),
            group: key("g"),
            channel: channel_key("web"),
            kind,
        }
    }

    #[test]
    fn an_event_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Event>(), 32);
    }

    #[test]
    fn events_are_kept_in_time_order_and_evicted_by_age_and_count() {
        let h = MemoryHistory::new(HistoryConfig {
            retention_secs: 100,
            max_events: 3,
        });
        h.record("c", ev(50, OutcomeKind::Impression)).unwrap();
        h.record("c", ev(10, OutcomeKind::Clicked)).unwrap();
        let mut out = Vec::new();
        h.recent("c", 0, &mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.at).collect::<Vec<_>>(), [10, 50]);
        // 10 is more than 100 s before 120: evicted.
        h.record("c", ev(120, OutcomeKind::Impression)).unwrap();
        out.clear();
        h.recent("c", 0, &mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.at).collect::<Vec<_>>(), [50, 120]);
        h.record("c", ev(121, OutcomeKind::Impression)).unwrap();
        h.record("c", ev(122, OutcomeKind::Impression)).unwrap();
        out.clear();
        h.recent("c", 0, &mut out).unwrap();
        assert_eq!(
            out.iter().map(|e| e.at).collect::<Vec<_>>(),
            [120, 121, 122]
        );
        out.clear();
        h.recent("c", 121, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        out.clear();
        h.recent("nobody", 0, &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_damaged_history_file_is_an_error_naming_the_line() {
        let h = MemoryHistory::default();
        let text = "{\"v\":1,\"kind\":\"history\"}\n{\"customer\":\"c\",\"events\":[{]}\n";
        let e = h.load(&mut text.as_bytes(), 1).unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = h.load(&mut text.as_bytes(), 5).unwrap_err().to_string();
        assert!(e.contains("line 6"), "{e}");
        let e = h.load(&mut &b""[..], 1).unwrap_err().to_string();
        assert!(e.contains("no history"), "{e}");
    }

    #[test]
    fn a_history_loads_all_or_nothing_and_a_cut_is_detected() {
        let h = MemoryHistory::default();
        for (c, at) in [("b", 10), ("a", 20), ("c", 30), ("a", 40)] {
            h.record(c, ev(at, OutcomeKind::Impression)).unwrap();
        }
        let mut saved = Vec::new();
        h.save(&mut saved).unwrap();
        let text = String::from_utf8(saved).unwrap();
        // Sorted by customer, ending with the count.
        let customers: Vec<String> = text
            .lines()
            .skip(1)
            .take(3)
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["customer"].to_string())
            .collect();
        assert_eq!(customers, ["\"a\"", "\"b\"", "\"c\""]);
        assert!(
            text.ends_with("{\"kind\":\"end\",\"customers\":3}\n"),
            "{text}"
        );

        let fresh = MemoryHistory::default();
        fresh.load(&mut text.as_bytes(), 1).unwrap();
        assert_eq!((fresh.customers(), fresh.events()), (3, 4));

        // Every proper prefix is an error, and loads nothing.
        // (Cut before the last newline only, all the data is there.)
        for cut in 0..text.len() - 1 {
            let fresh = MemoryHistory::default();
            assert!(
                fresh.load(&mut &text.as_bytes()[..cut], 1).is_err(),
                "{cut}"
            );
            assert_eq!(fresh.events(), 0, "{cut}");
        }
        // A wrong count, and text after the end.
        let wrong = text.replace("\"customers\":3", "\"customers\":4");
        assert!(fresh_err(&wrong).contains("counts 4 customers, the file has 3"));
        assert!(fresh_err(&format!("{text}{{}}\n")).contains("after the history's end"));
    }

    fn fresh_err(text: &str) -> String {
        let h = MemoryHistory::default();
        let e = h.load(&mut text.as_bytes(), 1).unwrap_err().to_string();
        assert_eq!(h.events(), 0);
        e
    }
}
