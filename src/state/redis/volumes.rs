//! The fleet's volume-constraint counters on Redis: every engine of a
//! fleet takes units from the same count per constraint and period, so a
//! cap holds across processes and machines (docs/FLEET.md).
//!
//! Layout, per constraint (its name, from the rule set) and period (its
//! number: whole periods since the epoch, as [`VolumePeriod::number`]):
//! - `{prefix}{vol}:{name}:{number}`: the units taken in the period (a
//!   string holding an integer);
//! - `{prefix}{vol}:{name}:newest`: the newest period counted.
//!
//! `{vol}` is a Cluster hash tag: all the volume keys of a prefix share one
//! slot, so the take script (two keys) and the read of every cap a
//! channel can meet (one `MGET`) are each one command on one node. One
//! command matters for the deadline too: a pipeline of reads against a
//! server that hangs would wait one deadline per reply.
//!
//! Guarantees (besides the deadlines of [`super`]): the same answers as
//! the in-memory counter ([`crate::state::volumes`]), across processes.
//! - [`VolumeStore::take`] is one Lua script (`EVALSHA`, loaded at
//!   connect): refuse a period [`KEPT_PERIODS`] or more before the newest
//!   one counted, refuse at `max`, else `INCR`; on a count's creation set
//!   its expiry; advance the newest period. Redis runs a script alone, so
//!   a cap is exact however many engines take at once.
//! - [`VolumeStore::give_back`] is one script: `DECR` only above zero.
//! - [`VolumeStore::used`] is one command: an `MGET` of each period's
//!   count and its constraint's newest period.
//! - Expiry: a count (and the newest period) lives until [`KEPT_PERIODS`]
//!   periods after its period ends, or, for a back-dated period that has
//!   already ended, [`KEPT_PERIODS`] periods after it was counted: as long
//!   as the in-memory counter could still answer for it.
//!
//! Commands: `MGET`, `GET`, `SET .. EX`, `INCR`, `DECR`, `EXPIRE` (with
//! `GT`, Redis 7.0), `EVALSHA`.

use std::sync::Arc;

use redis::Script;

use super::Pool;
use crate::base::Error;
use crate::state::fleet::StateConfig;
use crate::state::volumes::{Take, TakeEach, VolumePeriod, VolumeStore, KEPT_PERIODS};

/// Take a unit. KEYS: the period's count, the newest period counted.
/// ARGV: the period's number, the cap, the expiry (seconds), the periods
/// kept. Returns 1 (taken), 0 (full) or -1 (too old).
const TAKE: &str = r"
local period = tonumber(ARGV[1])
local newest = tonumber(redis.call('GET', KEYS[2]) or '-1')
if newest >= period + tonumber(ARGV[4]) then return -1 end
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[2]) then return 0 end
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
if period > newest then
  redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
else
  redis.call('EXPIRE', KEYS[2], ARGV[3], 'GT')
end
return 1
";

/// Take a unit of each period of each action, all of an action's or none.
/// KEYS: per period, its count and its constraint's newest period. ARGV:
/// the periods kept, the number of actions, then per action its number of
/// periods and per period its number, cap and expiry (seconds). Returns
/// per action 0 (taken), j (the j-th period is full) or -j (too old),
/// stopping after a -j.
const TAKE_EACH: &str = r"
local kept = tonumber(ARGV[1])
local a, k = 3, 1
local out = {}
for i = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[a]); a = a + 1
  local verdict = 0
  for j = 1, n do
    local p, q = a + 3 * (j - 1), k + 2 * (j - 1)
    local newest = tonumber(redis.call('GET', KEYS[q + 1]) or '-1')
    if newest >= tonumber(ARGV[p]) + kept then verdict = -j break end
    if tonumber(redis.call('GET', KEYS[q]) or '0') >= tonumber(ARGV[p + 1]) then verdict = j break end
  end
  if verdict == 0 then
    for j = 1, n do
      local p, q = a + 3 * (j - 1), k + 2 * (j - 1)
      if redis.call('INCR', KEYS[q]) == 1 then redis.call('EXPIRE', KEYS[q], ARGV[p + 2]) end
      if tonumber(ARGV[p]) > tonumber(redis.call('GET', KEYS[q + 1]) or '-1') then
        redis.call('SET', KEYS[q + 1], ARGV[p], 'EX', ARGV[p + 2])
      else
        redis.call('EXPIRE', KEYS[q + 1], ARGV[p + 2], 'GT')
      end
    end
  end
  out[i] = verdict
  a = a + 3 * n
  k = k + 2 * n
  if verdict < 0 then break end
end
return out
";

/// Give back a unit. KEYS: the period's count. Returns 1 (given back) or
/// 0 (nothing to give back: the count is zero or gone).
const GIVE_BACK: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then
  redis.call('DECR', KEYS[1])
  return 1
end
return 0
";

/// Volume-constraint counters in Redis, shared by every engine pointed at
/// it (see the module's documentation for the keys and guarantees).
pub struct RedisVolumes {
    pool: Arc<Pool>,
    take: Script,
    take_each: Script,
    give_back: Script,
}

impl std::fmt::Debug for RedisVolumes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisVolumes")
            .field("pool", &self.pool)
            .finish()
    }
}

impl RedisVolumes {
    /// Connect to the store `config` names and load the scripts, so a
    /// wrong address is an error here, not at the first decision.
    pub fn connect(config: &StateConfig) -> Result<RedisVolumes, Error> {
        let store = RedisVolumes::lazy(config)?;
        store.load_scripts()?;
        Ok(store)
    }

    /// A store for `config` that connects on its first call, so an engine
    /// can start while the store is down (its decisions then follow
    /// `on_unavailable`). Only a malformed URL is an error here.
    pub fn lazy(config: &StateConfig) -> Result<RedisVolumes, Error> {
        Ok(RedisVolumes::on(Arc::new(Pool::new(config)?)))
    }

    /// The counters on `pool`'s server and connections.
    pub(crate) fn on(pool: Arc<Pool>) -> RedisVolumes {
        RedisVolumes {
            pool,
            take: Script::new(TAKE),
            take_each: Script::new(TAKE_EACH),
            give_back: Script::new(GIVE_BACK),
        }
    }

    pub(crate) fn load_scripts(&self) -> Result<(), Error> {
        self.pool
            .load(&[&self.take, &self.take_each, &self.give_back])
    }

    /// The key of a constraint's count in one period.
    pub fn key_of(&self, period: &VolumePeriod<'_>) -> String {
        count_key(self.pool.prefix(), period)
    }

    /// The key of the newest period a constraint has counted.
    fn newest_key(&self, constraint: &str) -> String {
        newest_key(self.pool.prefix(), constraint)
    }
}

fn count_key(prefix: &str, period: &VolumePeriod<'_>) -> String {
    format!("{prefix}{{vol}}:{}:{}", period.constraint, period.number)
}

fn newest_key(prefix: &str, constraint: &str) -> String {
    format!("{prefix}{{vol}}:{constraint}:newest")
}

/// The keys that tell `periods`' counts: each period's count and its
/// constraint's newest period.
pub(super) fn keys<'a>(
    prefix: &'a str,
    periods: &'a [VolumePeriod<'_>],
) -> impl Iterator<Item = String> + 'a {
    periods
        .iter()
        .flat_map(move |p| [count_key(prefix, p), newest_key(prefix, p.constraint)])
}

/// The one command that reads `periods`: an `MGET` of [`keys`].
pub(super) fn mget(prefix: &str, periods: &[VolumePeriod<'_>]) -> redis::Cmd {
    let mut mget = redis::cmd("MGET");
    for k in keys(prefix, periods) {
        mget.arg(k);
    }
    mget
}

/// The counts of `periods` from the replies of [`mget`], into `out`.
pub(super) fn read_used(
    store: &str,
    periods: &[VolumePeriod<'_>],
    got: &[Option<i64>],
    out: &mut Vec<Option<u32>>,
) -> Result<(), Error> {
    out.clear();
    if got.len() != 2 * periods.len() {
        return Err(Error::State(format!(
            "{store}: {} replies to {} volume reads",
            got.len(),
            2 * periods.len()
        )));
    }
    for (p, pair) in periods.iter().zip(got.chunks_exact(2)) {
        let newest = pair[1].unwrap_or(-1);
        out.push(if newest >= i64::from(p.number) + i64::from(KEPT_PERIODS) {
            None
        } else {
            Some(u32::try_from(pair[0].unwrap_or(0).max(0)).unwrap_or(u32::MAX))
        });
    }
    Ok(())
}

/// Seconds a count of `period` is kept, from `now` (epoch seconds): until
/// [`KEPT_PERIODS`] periods after the period ends, and at least that many
/// periods from now (a back-dated period). Clocks that disagree by less
/// than a period change nothing a cap depends on.
fn expiry(period: &VolumePeriod<'_>, now: i64) -> i64 {
    let kept = i64::from(KEPT_PERIODS).saturating_mul(period.length.max(1));
    period.ends.saturating_sub(now).max(0).saturating_add(kept)
}

fn wall_clock() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl VolumeStore for RedisVolumes {
    fn used(&self, periods: &[VolumePeriod<'_>], out: &mut Vec<Option<u32>>) -> Result<(), Error> {
        out.clear();
        if periods.is_empty() {
            return Ok(());
        }
        let mget = mget(self.pool.prefix(), periods);
        let got: Vec<Option<i64>> = self.pool.with("volume_used", |con| mget.query(con))?;
        read_used(self.pool.name(), periods, &got, out)
    }

    fn take(&self, period: VolumePeriod<'_>, max: u32) -> Result<Take, Error> {
        let mut inv = self.take.key(self.key_of(&period));
        inv.key(self.newest_key(period.constraint))
            .arg(period.number)
            .arg(max)
            .arg(expiry(&period, wall_clock()))
            .arg(KEPT_PERIODS);
        let took: i64 = self.pool.with("volume_take", |con| inv.invoke(con))?;
        Ok(match took {
            1 => Take::Taken,
            0 => Take::Full,
            _ => Take::TooOld,
        })
    }

    /// One script (`TAKE_EACH`): every action's units in one round
    /// trip and one atomic step.
    fn take_each(
        &self,
        actions: &[&[(VolumePeriod<'_>, u32)]],
        out: &mut Vec<TakeEach>,
    ) -> Result<(), Error> {
        out.clear();
        if actions.is_empty() {
            return Ok(());
        }
        let mut inv = self.take_each.prepare_invoke();
        inv.arg(KEPT_PERIODS).arg(actions.len());
        let now = wall_clock();
        for list in actions {
            inv.arg(list.len());
            for (p, max) in list.iter() {
                inv.key(self.key_of(p)).key(self.newest_key(p.constraint));
                inv.arg(p.number).arg(*max).arg(expiry(p, now));
            }
        }
        let got: Vec<i64> = self.pool.with("volume_take_each", |con| inv.invoke(con))?;
        let bad = || {
            Error::State(format!(
                "{}: {} verdicts for {} actions",
                self.pool.name(),
                got.len(),
                actions.len()
            ))
        };
        for (i, v) in got.iter().enumerate() {
            let index = |v: i64| usize::try_from(v.unsigned_abs() - 1).unwrap_or(usize::MAX);
            out.push(match *v {
                0 => TakeEach::Taken,
                v if v > 0 && index(v) < actions[i].len() => TakeEach::Full(index(v)),
                v if v < 0 && index(v) < actions[i].len() => TakeEach::TooOld(index(v)),
                _ => return Err(bad()),
            });
        }
        let stopped = matches!(out.last(), Some(TakeEach::TooOld(_)));
        if got.len() > actions.len() || (got.len() < actions.len() && !stopped) {
            return Err(bad());
        }
        Ok(())
    }

    fn give_back(&self, period: VolumePeriod<'_>) -> Result<(), Error> {
        let inv = self.give_back.key(self.key_of(&period));
        let _: i64 = self.pool.with("volume_give_back", |con| inv.invoke(con))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_outlives_its_period_by_the_periods_kept() {
        let day = |number: u32| VolumePeriod {
            constraint: "c",
            number,
            ends: (i64::from(number) + 1) * 86_400,
            length: 86_400,
        };
        let kept = i64::from(KEPT_PERIODS) * 86_400;
        // Today, ten hours in: the rest of the day, then the periods kept.
        let now = 20_000 * 86_400 + 36_000;
        assert_eq!(expiry(&day(20_000), now), 86_400 - 36_000 + kept);
        // Long ago: kept that long from now, not expired at once.
        assert_eq!(expiry(&day(19_000), now), kept);
    }
}
