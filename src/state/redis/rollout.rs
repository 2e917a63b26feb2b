//! Rule rollout to the fleet, on Redis: the fleet's rule versions (their
//! source files, content hash, fleet-wide number, who published them and
//! when), the live pointer every instance follows, the change log, the
//! notice instances listen for, and the instances' heartbeats
//! (docs/FLEET.md, "Rule rollout" and "Instance status").
//!
//! Guarantees:
//! - A publish is one Lua script: take the next number (`INCR`), store the
//!   version, move the live pointer, append to the change log and
//!   `PUBLISH` the notice. Redis runs it alone, so two publishers never
//!   get one number, and an instance never sees a pointer to a version
//!   not yet stored. A rollback is one script too.
//! - What the store holds was validated and compiled by the publisher
//!   ([`FleetRollout::publish`] takes a compiled [`RuleSet`]); each
//!   instance compiles the source again and serves it only if it compiles
//!   to the hash stored with it.
//! - Every key of a prefix is under the literal Cluster hash tag
//!   `{fleet}` (`{key_prefix}{fleet}:...`): one slot, so each script
//!   touches one node. Redis 7.0 commands only, which Valkey has too.

use std::collections::BTreeMap;
use std::path::PathBuf;

use redis::Script;
use serde::{Deserialize, Serialize};

use super::Pool;
use crate::base::{Error, Timestamp};
use crate::ruleset::{RuleSet, RuleSource};
use crate::state::fleet::StateConfig;

/// How many change-log entries (publishes and rollbacks) are kept.
const LOG_ENTRIES: usize = 1000;

/// Publish: KEYS = counter, live pointer, live stack, versions, log,
/// version hashes, live hash; ARGV = the version's record, the log entry
/// after its number, the channel, the log's length, the version's hash.
const PUBLISH: &str = r#"
local n = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[4], n, ARGV[1])
redis.call('SET', KEYS[2], n)
redis.call('RPUSH', KEYS[3], n)
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[4]), -1)
redis.call('RPUSH', KEYS[5], '{\"event\":\"publish\",\"version\":' .. n .. ',' .. ARGV[2])
redis.call('LTRIM', KEYS[5], -tonumber(ARGV[4]), -1)
redis.call('HSET', KEYS[6], n, ARGV[5])
redis.call('SET', KEYS[7], ARGV[5])
redis.call('PUBLISH', ARGV[3], n)
return n
"#;

/// Rollback: KEYS = live pointer, live stack, versions, log, version
/// hashes, live hash; ARGV = the version to go to (empty: the one live
/// before), the log entry's tail, the channel, the log's length. Returns
/// {1, number} or {0, reason}.
const ROLLBACK: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return {0, 'nothing has been published to this fleet'} end
local target
if ARGV[1] == '' then
  if redis.call('LLEN', KEYS[2]) < 2 then
    return {0, 'no version was live before version ' .. cur .. ' (give --to N)'}
  end
  redis.call('RPOP', KEYS[2])
  target = redis.call('LINDEX', KEYS[2], -1)
else
  target = ARGV[1]
  if redis.call('HEXISTS', KEYS[3], target) == 0 then
    return {0, 'version ' .. target .. ' is not stored in this fleet'}
  end
  if target == cur then return {1, tonumber(cur)} end
  redis.call('RPUSH', KEYS[2], target)
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[4]), -1)
end
redis.call('SET', KEYS[1], target)
redis.call('SET', KEYS[6], redis.call('HGET', KEYS[5], target) or '')
redis.call('RPUSH', KEYS[4], '{\"event\":\"rollback\",\"version\":' .. target .. ',\"from\":' .. cur .. ',' .. ARGV[2])
redis.call('LTRIM', KEYS[4], -tonumber(ARGV[4]), -1)
redis.call('PUBLISH', ARGV[3], target)
return {1, tonumber(target)}
"#;

/// Heartbeat: KEYS = the instance's key, the index; ARGV = the status,
/// its time to live (ms), the instance id. The index scores each
/// instance by when its key expires (server time), and forgets the
/// expired.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return 1
"#;

/// A version as the store keeps it (its number is its field).
#[derive(Serialize, Deserialize)]
struct Stored {
    name: String,
    hash: String,
    by: String,
    published: String,
    files: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    challenger: Option<BTreeMap<String, String>>,
}

/// A rule version of the fleet, as stored: its source, to compile.
#[derive(Debug, Clone)]
pub struct FleetVersion {
    /// The fleet-wide number.
    pub number: u64,
    /// The rule set's name.
    pub name: String,
    /// The content hash its publisher compiled it to.
    pub hash: String,
    /// Who published it.
    pub by: String,
    /// When (RFC 3339, the publisher's clock).
    pub published: String,
    /// Its rule files (and its challenger's), to compile.
    pub source: RuleSource,
}

impl FleetVersion {
    /// Compile the version; an error unless it compiles to the hash its
    /// publisher stored (a different build, or a changed record).
    pub fn compile(&self) -> Result<RuleSet, Error> {
        let rules = RuleSet::compile(&self.source)?;
        if rules.hash() != self.hash {
            return Err(Error::State(format!(
                "its rules compile here to hash {}, its publisher stored {} (another build of \
                 nextbest, or a changed record)",
                short(rules.hash()),
                short(&self.hash)
            )));
        }
        Ok(rules)
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// One entry of the fleet's change log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetEvent {
    /// `publish` or `rollback`.
    pub event: String,
    /// The version live after it.
    pub version: u64,
    /// For a rollback: the version live before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// For a publish: the content hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Who.
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
}

/// What an instance following the fleet reports in its heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance's id (unique in the fleet).
    pub id: String,
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The rule set's name it serves.
    pub ruleset: String,
    /// The version number it serves (the fleet's, once it follows).
    pub version: u64,
    /// That version's content hash.
    pub hash: String,
    /// When it wrote this (RFC 3339).
    pub heartbeat: String,
    /// When it started following.
    pub started: String,
    /// Decisions made (every arm).
    pub decisions: u64,
    /// Decisions that returned an error.
    pub decision_errors: u64,
    /// Fleet versions it refused (did not compile here, or to another
    /// hash): it kept serving the last good one.
    pub refused: u64,
    /// Calls to the store that failed while following.
    pub store_errors: u64,
    /// Its last rule-load error or refusal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The fleet's rule versions, live pointer, change log and instances in
/// one Redis (see the module docs).
#[derive(Debug)]
pub struct FleetRollout {
    pool: Pool,
    publish: Script,
    rollback: Script,
    heartbeat: Script,
}

impl FleetRollout {
    /// Connect to the store `config` names and load the scripts; an
    /// unreachable store is an error here.
    pub fn connect(config: &StateConfig) -> Result<FleetRollout, Error> {
        let r = FleetRollout::lazy(config)?;
        r.pool.load(&[&r.publish, &r.rollback, &r.heartbeat])?;
        Ok(r)
    }

    /// As [`FleetRollout::connect`], connecting on first use.
    pub fn lazy(config: &StateConfig) -> Result<FleetRollout, Error> {
        Ok(FleetRollout {
            pool: Pool::new(config)?,
            publish: Script::new(PUBLISH),
            rollback: Script::new(ROLLBACK),
            heartbeat: Script::new(HEARTBEAT),
        })
    }

    fn key(&self, what: &str) -> String {
        format!("{}{{fleet}}:{what}", self.pool.prefix())
    }

    /// The channel notices of a new live version go to (its number).
    pub fn channel(&self) -> String {
        self.key("notify")
    }

    /// The store's URL without credentials.
    pub fn store(&self) -> &str {
        self.pool.name()
    }

    /// Store `rules` (compiled, so validated) as the fleet's next version,
    /// make it live and notify the instances; returns its number.
    ///
    /// ```no_run
    /// use nextbest::state::{fleet::StateConfig, redis::FleetRollout};
    /// let fleet = FleetRollout::connect(&StateConfig::new("redis://127.0.0.1:6379/0"))?;
    /// let rules = nextbest::RuleSet::from_dir("rules/retail_bank")?;
    /// let number = fleet.publish(&rules, "alice")?;
    /// for i in fleet.instances()? {
    ///     println!("{} serves {} (published {number})", i.id, i.version);
    /// }
    /// # Ok::<(), nextbest::Error>(())
    /// ```
    pub fn publish(&self, rules: &RuleSet, by: &str) -> Result<u64, Error> {
        let files = |s: &RuleSource| -> BTreeMap<String, String> {
            s.files()
                .map(|(p, t)| (portable(p), t.to_string()))
                .collect()
        };
        let at = Timestamp::now().to_string();
        let stored = Stored {
            name: rules.name().to_string(),
            hash: rules.hash().to_string(),
            by: by.to_string(),
            published: at.clone(),
            files: files(rules.source()),
            challenger: rules.source().challenger_source().map(files),
        };
        let record = serde_json::to_string(&stored).map_err(|e| Error::State(e.to_string()))?;
        let tail = tail(&[("hash", rules.hash()), ("by", by), ("at", &at)]);
        let mut call = self.publish.prepare_invoke();
        call.key(self.key("next"))
            .key(self.key("live"))
            .key(self.key("stack"))
            .key(self.key("versions"))
            .key(self.key("log"))
            .key(self.key("hashes"))
            .key(self.key("live_hash"))
            .arg(record)
            .arg(tail)
            .arg(self.channel())
            .arg(LOG_ENTRIES)
            .arg(rules.hash());
        self.pool.with("fleet publish", |c| call.invoke(c))
    }

    /// Make version `to` live again (default: the one live before the
    /// live one), notify the instances, and return the number now live.
    /// Refused, changing nothing, when there is no such version.
    pub fn rollback(&self, to: Option<u64>, by: &str) -> Result<u64, Error> {
        let at = Timestamp::now().to_string();
        let mut call = self.rollback.prepare_invoke();
        call.key(self.key("live"))
            .key(self.key("stack"))
            .key(self.key("versions"))
            .key(self.key("log"))
            .key(self.key("hashes"))
            .key(self.key("live_hash"))
            .arg(to.map(|n| n.to_string()).unwrap_or_default())
            .arg(tail(&[("by", by), ("at", &at)]))
            .arg(self.channel())
            .arg(LOG_ENTRIES);
        let (ok, value): (i64, redis::Value) =
            self.pool.with("fleet rollback", |c| call.invoke(c))?;
        match (ok, value) {
            (1, redis::Value::Int(n)) => Ok(n as u64),
            (_, redis::Value::BulkString(reason)) => Err(Error::Rollback(
                String::from_utf8_lossy(&reason).into_owned(),
            )),
            (_, other) => Err(Error::Rollback(format!("unexpected reply {other:?}"))),
        }
    }

    /// The live version's number, or `None` if nothing was published.
    pub fn live(&self) -> Result<Option<u64>, Error> {
        Ok(self.live_pointer()?.map(|(n, _)| n))
    }

    /// The live version's number and content hash (one `MGET`), or `None`
    /// if nothing was published. Both together, so that a follower tells
    /// a new version from the one it serves even when a store that lost
    /// its data numbers from 1 again.
    pub fn live_pointer(&self) -> Result<Option<(u64, String)>, Error> {
        let keys = [self.key("live"), self.key("live_hash")];
        let (number, hash): (Option<u64>, Option<String>) = self
            .pool
            .with("fleet live", |c| redis::cmd("MGET").arg(&keys).query(c))?;
        Ok(number.map(|n| (n, hash.unwrap_or_default())))
    }

    /// The live version, or `None` if nothing was published.
    pub fn live_version(&self) -> Result<Option<FleetVersion>, Error> {
        match self.live()? {
            Some(n) => self.fetch(n),
            None => Ok(None),
        }
    }

    /// Version `number`, or `None` if the store does not hold it.
    pub fn fetch(&self, number: u64) -> Result<Option<FleetVersion>, Error> {
        let key = self.key("versions");
        let record: Option<String> = self.pool.with("fleet fetch", |c| {
            redis::cmd("HGET").arg(&key).arg(number).query(c)
        })?;
        let Some(record) = record else {
            return Ok(None);
        };
        let s: Stored = serde_json::from_str(&record).map_err(|e| {
            Error::State(format!("fleet version {number} in {}: {e}", self.store()))
        })?;
        let source = |files: BTreeMap<String, String>| {
            files.into_iter().fold(RuleSource::new(), |src, (p, t)| {
                src.file(PathBuf::from(p), t)
            })
        };
        let mut src = source(s.files);
        if let Some(c) = s.challenger {
            src = src.challenger(source(c));
        }
        Ok(Some(FleetVersion {
            number,
            name: s.name,
            hash: s.hash,
            by: s.by,
            published: s.published,
            source: src,
        }))
    }

    /// The change log, oldest first (its last 1,000 entries).
    pub fn history(&self) -> Result<Vec<FleetEvent>, Error> {
        let key = self.key("log");
        let entries: Vec<String> = self.pool.with("fleet history", |c| {
            redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query(c)
        })?;
        Ok(entries
            .iter()
            .filter_map(|e| serde_json::from_str(e).ok())
            .collect())
    }

    /// The instances whose heartbeat has not expired, by id.
    pub fn instances(&self) -> Result<Vec<InstanceStatus>, Error> {
        let index = self.key("instances");
        let ids: Vec<String> = self.pool.with("fleet instances", |c| {
            redis::cmd("ZRANGE").arg(&index).arg(0).arg(-1).query(c)
        })?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.instance_key(id)).collect();
        let found: Vec<Option<String>> = self.pool.with("fleet instances", |c| {
            redis::cmd("MGET").arg(&keys).query(c)
        })?;
        let mut all: Vec<InstanceStatus> = found
            .iter()
            .flatten()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(all)
    }

    fn instance_key(&self, id: &str) -> String {
        self.key(&format!("instance:{id}"))
    }

    /// Write `status` as the instance's heartbeat, to expire after `ttl_ms`.
    pub fn heartbeat(&self, status: &InstanceStatus, ttl_ms: u64) -> Result<(), Error> {
        let json = serde_json::to_string(status).map_err(|e| Error::State(e.to_string()))?;
        let mut call = self.heartbeat.prepare_invoke();
        call.key(self.instance_key(&status.id))
            .key(self.key("instances"))
            .arg(json)
            .arg(ttl_ms.max(1))
            .arg(&status.id);
        self.pool
            .with("fleet heartbeat", |c| call.invoke::<i64>(c))?;
        Ok(())
    }

    /// Remove the instance `id` from the listing (it stops following).
    pub fn leave(&self, id: &str) -> Result<(), Error> {
        let (key, index) = (self.instance_key(id), self.key("instances"));
        self.pool.with("fleet leave", |c| {
            redis::pipe()
                .cmd("DEL")
                .arg(&key)
                .ignore()
                .cmd("ZREM")
                .arg(&index)
                .arg(id)
                .ignore()
                .query::<()>(c)
        })
    }

    /// A connection of its own, for the follower to subscribe to
    /// [`FleetRollout::channel`] on (a subscribed connection serves
    /// nothing else).
    pub(crate) fn notice_connection(&self) -> Result<redis::Connection, Error> {
        self.pool.open("fleet subscribe")
    }

    pub(crate) fn unavailable(&self, operation: &'static str, e: redis::RedisError) -> Error {
        self.pool.unavailable(operation, e)
    }
}

/// A rule file's path with `/` separators.
fn portable(p: &std::path::Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// `"k":"v",...}`: the rest of a log entry after its number.
fn tail(fields: &[(&str, &str)]) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in fields {
        map.insert((*k).to_string(), serde_json::Value::from(*v));
    }
    let object = serde_json::Value::Object(map).to_string();
    object[1..].to_string()
}
