//! The fleet's learning counts on Redis: every engine adds the outcomes it
//! records to one hash and reads the fleet's totals back, so each engine's
//! propensities reflect every outcome recorded anywhere (docs/FLEET.md).
//!
//! Layout: one hash, `{prefix}{learn}:counts`, a field per count
//! (`action/channel/kind` for the per-action counts: see
//! [`crate::state::learning`]), an integer each; and a marker per delivered
//! batch, `{prefix}{learn}:batch:{id}`, that expires after a day. `{learn}`
//! is a Cluster hash tag: both live in one slot, so an exchange is one
//! script on one node.
//!
//! Guarantees (besides the deadlines of [`super`]):
//! - [`LearningStore::exchange`] is one Lua script (`EVALSHA`, loaded at
//!   connect): if the batch's marker is new (`SET NX`), `HINCRBY` each
//!   delta; then return the whole hash (`HGETALL`). Redis runs a script
//!   alone, so the deltas of a batch are added whole or not at all, and a
//!   batch sent again after a lost reply is not added twice.
//! - Counts are only added to, so engines may exchange in any order.
//!
//! Commands: `SET .. NX EX`, `HINCRBY`, `HGETALL`, `EVALSHA`.

use std::sync::Arc;

use redis::Script;

use super::Pool;
use crate::base::Error;
use crate::state::learning::LearningStore;

/// KEYS: the counts hash, the batch's marker. ARGV: field, delta pairs.
/// Returns the hash as field, value pairs.
const EXCHANGE: &str = r"
if #ARGV > 0 and redis.call('SET', KEYS[2], 1, 'NX', 'EX', 86400) then
  for i = 1, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return redis.call('HGETALL', KEYS[1])
";

/// Learning counts in Redis, summed over every engine pointed at it.
pub struct RedisLearning {
    pool: Arc<Pool>,
    exchange: Script,
}

impl std::fmt::Debug for RedisLearning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLearning")
            .field("pool", &self.pool)
            .finish()
    }
}

impl RedisLearning {
    pub(super) fn on(pool: Arc<Pool>) -> RedisLearning {
        RedisLearning {
            pool,
            exchange: Script::new(EXCHANGE),
        }
    }

    pub(super) fn load_scripts(&self) -> Result<(), Error> {
        self.pool.load(&[&self.exchange])
    }

    /// The key of the counts hash.
    pub fn key(&self) -> String {
        format!("{}{{learn}}:counts", self.pool.prefix())
    }
}

impl LearningStore for RedisLearning {
    fn exchange(&self, batch: u64, deltas: &[(String, u64)]) -> Result<Vec<(String, u64)>, Error> {
        let mut inv = self.exchange.key(self.key());
        inv.key(format!(
            "{}{{learn}}:batch:{batch:016x}",
            self.pool.prefix()
        ));
        for (f, n) in deltas {
            inv.arg(f).arg(*n);
        }
        let totals: Vec<(String, i64)> = self.pool.with("learning", |con| inv.invoke(con))?;
        Ok(totals
            .into_iter()
            .map(|(f, n)| (f, u64::try_from(n).unwrap_or(0)))
            .collect())
    }
}
