//! The fleet's interaction history on Redis: every engine of a fleet
//! reads and writes the same customers' events, so a contact limit or a
//! contact policy holds across processes and machines (docs/FLEET.md).
//!
//! Layout: one sorted set per customer, `{prefix}h:{customer}` (the braces
//! are a Cluster hash tag: everything about one customer lives in one
//! slot), scored by the event's time in epoch seconds. A member is the
//! event's 32 bytes packed little-endian (time, action key, group key,
//! channel key, kind: 29 bytes) and an 8-byte nonce that keeps two equal
//! events in the same second apart.
//!
//! Guarantees (besides the deadlines of [`super`]):
//! - [`HistoryStore::recent`] is one round trip (`ZRANGE .. BYSCORE`).
//! - [`HistoryStore::record_within_limit`] is one Lua script (`EVALSHA`,
//!   loaded at connect): count the channel's impressions in the window,
//!   append only if under the limit, trim to the retention and the event
//!   cap, refresh the key's expiry. Redis runs a script alone, so the
//!   limit is exact across processes.
//!
//! Commands: `ZRANGE .. BYSCORE`, `ZADD`, `ZREM`, `ZREMRANGEBYSCORE`,
//! `ZREMRANGEBYRANK`, `EXPIRE`, `EVALSHA`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::Script;

use super::{Pool, RedisVolumes};
use crate::base::{Error, OutcomeKind};
use crate::state::fleet::StateConfig;
use crate::state::history::{ContactLimitCheck, Event, HistoryConfig, HistoryStore, Recorded};
use crate::state::volumes::{StateReads, VolumePeriod};

/// Bytes of a member that describe the event (the rest is the nonce).
const EVENT_BYTES: usize = 29;

/// The Lua function both appending scripts end with: keep a customer's
/// events within `retention` seconds of the newest and at most `cap` of
/// them, and expire the key `retention` seconds from now.
macro_rules! trim_fn {
    () => {
        r"
local function trim(key, retention, cap)
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if newest[2] then
    local cutoff = tonumber(newest[2]) - tonumber(retention)
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', cutoff))
  end
  redis.call('ZREMRANGEBYRANK', key, 0, -(tonumber(cap) + 1))
  redis.call('EXPIRE', key, retention)
end
"
    };
}

/// Append events (score, member pairs from `ARGV[7]`); when `ARGV[3]` is
/// not empty, only if the member bytes 25..29 (channel and kind) match it
/// fewer than `ARGV[4]` times in the window `(ARGV[1], ARGV[2]]`. Then trim
/// events older than the newest minus `ARGV[5]` seconds and beyond the
/// newest `ARGV[6]`, and expire the key `ARGV[5]` seconds from now.
const APPEND: &str = concat!(
    trim_fn!(),
    r"
local key = KEYS[1]
if ARGV[3] ~= '' then
  local n = 0
  for _, m in ipairs(redis.call('ZRANGE', key, '(' .. ARGV[1], ARGV[2], 'BYSCORE')) do
    if string.sub(m, 25, 29) == ARGV[3] then n = n + 1 end
  end
  if n >= tonumber(ARGV[4]) then return 0 end
end
for i = 7, #ARGV, 2 do
  redis.call('ZADD', key, ARGV[i], ARGV[i + 1])
end
trim(key, ARGV[5], ARGV[6])
return 1
"
);

/// Record an outcome once. KEYS: the customer's history, and (when the
/// outcome has a key) its marker. ARGV: the delivery's token, the
/// retention (seconds), the event's score and member, the event cap.
/// Returns 1 (recorded, now or by an earlier try of this delivery) or 0
/// (a duplicate: another delivery recorded it).
const OUTCOME: &str = concat!(
    trim_fn!(),
    r"
if KEYS[2] then
  local old = redis.call('SET', KEYS[2], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
  if old and old ~= ARGV[1] then return 0 end
end
local key = KEYS[1]
redis.call('ZADD', key, ARGV[3], ARGV[4])
trim(key, ARGV[2], ARGV[5])
return 1
"
);

/// A decision's reads. KEYS: the customer's history, then the caps' keys.
/// ARGV: the earliest time. Returns the events at or after it and the
/// caps' values.
const READ: &str = r"
local events = redis.call('ZRANGE', KEYS[1], ARGV[1], '+inf', 'BYSCORE')
local caps = {}
if #KEYS > 1 then caps = redis.call('MGET', unpack(KEYS, 2)) end
return {events, caps}
";

/// Remove one member per (score, 29-byte event) pair of `ARGV`.
const REMOVE: &str = r"
local removed = 0
for i = 1, #ARGV, 2 do
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], ARGV[i], ARGV[i], 'BYSCORE')) do
    if string.sub(m, 1, 29) == ARGV[i + 1] then
      redis.call('ZREM', KEYS[1], m)
      removed = removed + 1
      break
    end
  end
end
return removed
";

/// Interaction history in Redis, shared by every engine pointed at it.
/// Connections are pooled (one per thread deciding at once, at most);
/// bounds on what is kept per customer are a [`HistoryConfig`]'s.
pub struct RedisHistory {
    pool: Arc<Pool>,
    bounds: HistoryConfig,
    append: Script,
    remove: Script,
    outcome: Script,
    read: Script,
    nonce: AtomicU64,
}

impl std::fmt::Debug for RedisHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisHistory")
            .field("pool", &self.pool)
            .finish()
    }
}

impl RedisHistory {
    /// Connect to the store `config` names, with the default bounds
    /// (90 days, 256 events per customer). One connection is opened and
    /// kept, so a wrong address is an error here, not at the first
    /// decision.
    pub fn connect(config: &StateConfig) -> Result<RedisHistory, Error> {
        RedisHistory::connect_with(config, HistoryConfig::default())
    }

    /// [`RedisHistory::connect`] with other bounds on what is kept.
    pub fn connect_with(
        config: &StateConfig,
        bounds: HistoryConfig,
    ) -> Result<RedisHistory, Error> {
        let store = RedisHistory::lazy(config, bounds)?;
        store
            .pool
            .load(&[&store.append, &store.remove, &store.outcome, &store.read])?;
        Ok(store)
    }

    /// A store for `config` that connects on its first call, so an engine
    /// can start while the store is down (its decisions then follow
    /// `on_unavailable`). Only a malformed URL is an error here.
    pub fn lazy(config: &StateConfig, bounds: HistoryConfig) -> Result<RedisHistory, Error> {
        bounds.check()?;
        let pool = Arc::new(Pool::new(config)?);
        let seed = xxhash_rust::xxh3::xxh3_64(
            format!("{}:{:?}", std::process::id(), std::time::SystemTime::now()).as_bytes(),
        );
        let store = RedisHistory {
            pool,
            bounds,
            append: Script::new(APPEND),
            remove: Script::new(REMOVE),
            outcome: Script::new(OUTCOME),
            read: Script::new(READ),
            nonce: AtomicU64::new(seed),
        };
        Ok(store)
    }

    /// The count of calls (round trips) made to the server through this
    /// store's connections, the volume counters' and learning's on them
    /// included.
    pub fn calls(&self) -> Arc<AtomicU64> {
        self.pool.calls()
    }

    /// The key of a customer's history.
    pub fn key_of(&self, customer: &str) -> String {
        format!("{}h:{{{customer}}}", self.pool.prefix())
    }

    /// The volume counters of the same server and key prefix, on the same
    /// connections (what an engine's `"state"` configuration uses). Loads
    /// their scripts now; an unreachable store is an error here.
    pub fn volumes(&self) -> Result<RedisVolumes, Error> {
        let volumes = RedisVolumes::on(self.pool.clone());
        volumes.load_scripts()?;
        Ok(volumes)
    }

    /// The learning counts of the same server and key prefix, on the same
    /// connections. Loads their script now; an unreachable store is an
    /// error here.
    pub fn learning(&self) -> Result<super::RedisLearning, Error> {
        let learning = super::RedisLearning::on(self.pool.clone());
        learning.load_scripts()?;
        Ok(learning)
    }

    /// The events of the members read from `key`, into `out`.
    fn parse_events(
        &self,
        key: &str,
        members: &[Vec<u8>],
        out: &mut Vec<Event>,
    ) -> Result<(), Error> {
        for m in members {
            match parse_event(m) {
                Some(e) => out.push(e),
                None => {
                    return Err(Error::State(format!(
                        "{}: key `{key}` holds a member that is not a nextbest event ({} bytes)",
                        self.pool.name(),
                        m.len()
                    )))
                }
            }
        }
        Ok(())
    }

    fn member(&self, e: &Event) -> Vec<u8> {
        let mut m = event_bytes(e);
        let n = self.nonce.fetch_add(1, Ordering::Relaxed);
        m.extend_from_slice(&n.to_le_bytes());
        m
    }

    fn append(
        &self,
        operation: &'static str,
        customer: &str,
        limit: Option<ContactLimitCheck>,
        events: &[Event],
    ) -> Result<bool, Error> {
        let key = self.key_of(customer);
        let mut inv = self.append.key(key);
        match limit {
            Some(l) => {
                let mut tag = l.channel.to_le_bytes().to_vec();
                tag.push(kind_byte(OutcomeKind::Impression));
                inv.arg(l.now.saturating_sub(l.within))
                    .arg(l.now)
                    .arg(tag)
                    .arg(l.max);
            }
            None => {
                inv.arg(0).arg(0).arg("").arg(0);
            }
        }
        inv.arg(self.bounds.retention_secs)
            .arg(self.bounds.max_events);
        for e in events {
            inv.arg(e.at).arg(self.member(e));
        }
        let done: i64 = self.pool.with(operation, |con| inv.invoke(con))?;
        Ok(done == 1)
    }
}

impl HistoryStore for RedisHistory {
    fn record(&self, customer: &str, event: Event) -> Result<(), Error> {
        self.append("record", customer, None, &[event]).map(|_| ())
    }

    /// `SET NX` of the outcome's key (beside the customer's history, in
    /// its hash slot) with the history's retention as its expiry: the first
    /// instance of the fleet to record the outcome sets it.
    fn first_outcome(&self, customer: &str, key: u64, _at: i64) -> Result<bool, Error> {
        let seen = format!("{}o:{{{customer}}}:{key:016x}", self.pool.prefix());
        let set: Option<String> = self.pool.with("first_outcome", |con| {
            redis::cmd("SET")
                .arg(&seen)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(self.bounds.retention_secs.max(1))
                .query(con)
        })?;
        Ok(set.is_some())
    }

    /// One script: `SET NX GET` of the outcome's marker (its value the
    /// delivery's token, so a retry of the same delivery is not taken for
    /// a duplicate), then `ZADD` of the event with the delivery as its
    /// nonce (so a retry adds the same member again, which changes
    /// nothing), the trim and the expiry, as [`HistoryStore::record`].
    fn record_outcome(
        &self,
        customer: &str,
        once: Option<u64>,
        event: Event,
        delivery: u64,
    ) -> Result<Recorded, Error> {
        let mut inv = self.outcome.key(self.key_of(customer));
        if let Some(key) = once {
            inv.key(format!("{}o:{{{customer}}}:{key:016x}", self.pool.prefix()));
        }
        let mut member = event_bytes(&event);
        member.extend_from_slice(&delivery.to_le_bytes());
        inv.arg(delivery)
            .arg(self.bounds.retention_secs.max(1))
            .arg(event.at)
            .arg(member)
            .arg(self.bounds.max_events);
        let done: i64 = self.pool.with("record_outcome", |con| inv.invoke(con))?;
        Ok(if done == 1 {
            Recorded::New
        } else {
            Recorded::Duplicate
        })
    }

    fn forget_outcome(&self, customer: &str, key: u64) -> Result<(), Error> {
        let seen = format!("{}o:{{{customer}}}:{key:016x}", self.pool.prefix());
        self.pool
            .with("forget_outcome", |con| {
                redis::cmd("DEL").arg(&seen).query::<i64>(con)
            })
            .map(|_| ())
    }

    fn recent(&self, customer: &str, since: i64, out: &mut Vec<Event>) -> Result<(), Error> {
        let key = self.key_of(customer);
        let members: Vec<Vec<u8>> = self
            .pool
            .with("recent", |con| zrange(&key, since).query(con))?;
        self.parse_events(&key, &members, out)
    }

    fn record_within_limit(
        &self,
        customer: &str,
        limit: ContactLimitCheck,
        events: &[Event],
    ) -> Result<bool, Error> {
        self.append("record_within_limit", customer, Some(limit), events)
    }

    fn unrecord(&self, customer: &str, events: &[Event]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let mut inv = self.remove.key(self.key_of(customer));
        for e in events {
            inv.arg(e.at).arg(event_bytes(e));
        }
        let _: i64 = self.pool.with("unrecord", |con| inv.invoke(con))?;
        Ok(())
    }
}

/// The read of a customer's events at or after `since`.
fn zrange(key: &str, since: i64) -> redis::Cmd {
    let mut c = redis::cmd("ZRANGE");
    c.arg(key).arg(since).arg("+inf").arg("BYSCORE");
    c
}

/// One round trip and one command: a script that runs the history's
/// `ZRANGE` and the caps' `MGET` and returns both. One command, not a
/// pipeline, so that against a server that hangs the call waits one
/// deadline (the client would read each reply of a pipeline with the whole
/// deadline). The script touches the customer's slot and the caps' `{vol}`
/// slot: fine on one server (what this build speaks to); a Cluster client
/// would make two calls.
impl StateReads for RedisHistory {
    fn recent_and_used(
        &self,
        customer: &str,
        since: i64,
        events: &mut Vec<Event>,
        periods: &[VolumePeriod<'_>],
        used: &mut Vec<Option<u32>>,
    ) -> Result<(), Error> {
        let key = self.key_of(customer);
        let mut inv = self.read.key(&key);
        for k in super::volumes::keys(self.pool.prefix(), periods) {
            inv.key(k);
        }
        inv.arg(since);
        let (members, got): (Vec<Vec<u8>>, Vec<Option<i64>>) =
            self.pool.with("recent_and_used", |con| inv.invoke(con))?;
        super::volumes::read_used(self.pool.name(), periods, &got, used)?;
        self.parse_events(&key, &members, events)
    }
}

/// The event's 29 bytes, little-endian.
fn event_bytes(e: &Event) -> Vec<u8> {
    let mut m = Vec::with_capacity(EVENT_BYTES + 8);
    m.extend_from_slice(&e.at.to_le_bytes());
    m.extend_from_slice(&e.action.to_le_bytes());
    m.extend_from_slice(&e.group.to_le_bytes());
    m.extend_from_slice(&e.channel.to_le_bytes());
    m.push(kind_byte(e.kind));
    m
}

fn kind_byte(k: OutcomeKind) -> u8 {
    OutcomeKind::ALL.iter().position(|&x| x == k).unwrap_or(0) as u8
}

fn parse_event(m: &[u8]) -> Option<Event> {
    if m.len() != EVENT_BYTES + 8 {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(m[i..i + 8].try_into().unwrap_or_default());
    Some(Event {
        at: u64_at(0) as i64,
        action: u64_at(8),
        group: u64_at(16),
        channel: u32::from_le_bytes(m[24..28].try_into().unwrap_or_default()),
        kind: *OutcomeKind::ALL.get(usize::from(m[28]))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_survives_its_member_encoding() {
        for kind in OutcomeKind::ALL {
            let e = Event {
                at: 1_795_000_000,
                action: u64::MAX - 3,
                group: 7,
                channel: 0xdead_beef,
                kind,
            };
            let mut m = event_bytes(&e);
            assert_eq!(m.len(), EVENT_BYTES);
            m.extend_from_slice(&42u64.to_le_bytes());
            assert_eq!(parse_event(&m), Some(e));
        }
        assert_eq!(parse_event(b"short"), None);
    }
}
