//! The fleet's shared state on Redis: the interaction history
//! ([`RedisHistory`]) and the volume-constraint counters
//! ([`RedisVolumes`]), so that every engine pointed at one server sees the
//! same customers' events and counts against the same caps, and the rule
//! rollout ([`FleetRollout`]) (docs/FLEET.md).
//!
//! Both stores go through one pool of blocking connections to the
//! server the `"state"` configuration names. Guarantees they share:
//! - Every socket operation (connect, write, read) has the deadline
//!   `timeout_ms`; a failed call is [`Error::StoreUnavailable`], drops its
//!   connection (the next call opens a new one) and changes nothing it did
//!   not finish: a script either ran whole on the server or not at all.
//! - What must be exact across processes is one Lua script (`EVALSHA`,
//!   loaded when the store connects; loaded again if the server lost it),
//!   touching the keys of one Cluster slot.
//! - Only Redis 7.0 commands, which Valkey has too.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::{Client, Connection, IntoConnectionInfo};

use super::fleet::StateConfig;
use crate::base::Error;

mod history;
mod learning;
mod rollout;
mod volumes;

pub use history::RedisHistory;
pub use learning::RedisLearning;
pub use rollout::{FleetEvent, FleetRollout, FleetVersion, InstanceStatus};
pub use volumes::RedisVolumes;

/// Connections to one server, and what every call to it needs: the key
/// prefix, the deadline, and the server's name for error messages.
/// Connections are pooled: one per thread calling at once, at most.
pub(crate) struct Pool {
    client: Client,
    /// The URL without credentials, for error messages.
    name: String,
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    /// Calls made (round trips: a pipeline is one).
    calls: Arc<AtomicU64>,
    /// Calls in a row that failed to reach the server.
    failures: AtomicU32,
    /// While the server is failing: no call before this (milliseconds
    /// since `born`).
    retry_at: AtomicU64,
    born: Instant,
}

/// The first pause after [`BACKOFF_AFTER`] failures in a row; it doubles
/// with each further failure, up to [`BACKOFF_MAX`].
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// The longest pause between tries while the server is failing.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Failures in a row before calls pause (one failure only drops its
/// connection: a late reply under load is not an outage).
pub(crate) const BACKOFF_AFTER: u32 = 2;

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("store", &self.name)
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Pool {
    /// A pool for `config` that connects on its first call. Only a
    /// malformed URL (or deadline) is an error here.
    pub(crate) fn new(config: &StateConfig) -> Result<Pool, Error> {
        config.check()?;
        let name = without_credentials(&config.url);
        let bad = |e: redis::RedisError| Error::InvalidConfig(format!("state.url `{name}`: {e}"));
        let info = config.url.as_str().into_connection_info().map_err(bad)?;
        // No `CLIENT SETINFO` after connecting: its two replies would each
        // get the whole deadline from a server that hangs (the client
        // reads every reply of a pipeline), so a connection could take
        // two deadlines before its first command.
        let settings = info.redis_settings().clone().set_skip_set_lib_name();
        let client = Client::open(info.set_redis_settings(settings)).map_err(bad)?;
        Ok(Pool {
            client,
            name,
            prefix: config.key_prefix.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            idle: Mutex::new(Vec::new()),
            calls: Arc::new(AtomicU64::new(0)),
            failures: AtomicU32::new(0),
            retry_at: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The error of a call not made because the server is failing and
    /// the pause before the next try has not passed.
    fn backing_off(&self, operation: &'static str) -> Option<Error> {
        let failures = self.failures.load(Ordering::Relaxed);
        if failures < BACKOFF_AFTER {
            return None;
        }
        let wait = self
            .retry_at
            .load(Ordering::Relaxed)
            .checked_sub(self.elapsed_ms())
            .filter(|&w| w > 0)?;
        Some(Error::StoreUnavailable {
            store: self.name.clone(),
            operation,
            message: format!(
                "not tried: the last {failures} calls failed; the next try is in {wait} ms"
            ),
        })
    }

    /// Count a call that could not reach the server and, from
    /// [`BACKOFF_AFTER`] in a row, pause calls: 10 ms, doubling, up to
    /// 1 s. The first call after the pause tries the server again.
    fn failed(&self, operation: &'static str, e: &redis::RedisError) {
        if !(e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal())
        {
            return;
        }
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if n >= BACKOFF_AFTER {
            let pause = BACKOFF_FIRST
                .saturating_mul(1 << (n - BACKOFF_AFTER).min(10))
                .min(BACKOFF_MAX);
            let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
            self.retry_at
                .store(self.elapsed_ms().saturating_add(ms), Ordering::Relaxed);
            if n == BACKOFF_AFTER {
                tracing::warn!(store = %self.name, operation, error = %e, "state store unreachable: pausing calls, then retrying with backoff");
            }
        }
    }

    fn reached(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            let n = self.failures.swap(0, Ordering::Relaxed);
            if n >= BACKOFF_AFTER {
                tracing::info!(store = %self.name, failures = n, "state store reachable again");
            }
        }
    }

    /// The count of calls made through the pool (round trips).
    pub(crate) fn calls(&self) -> Arc<AtomicU64> {
        self.calls.clone()
    }

    /// The prefix of every key.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The server's URL without credentials.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn unavailable(&self, operation: &'static str, e: redis::RedisError) -> Error {
        Error::StoreUnavailable {
            store: self.name.clone(),
            operation,
            message: e.to_string(),
        }
    }

    fn open_raw(&self) -> redis::RedisResult<Connection> {
        let con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }

    /// A new connection outside the pool (the rollout's notice channel),
    /// with the deadline.
    pub(crate) fn open(&self, operation: &'static str) -> Result<Connection, Error> {
        self.open_raw().map_err(|e| self.unavailable(operation, e))
    }

    /// Run `f` on a pooled connection. A connection whose call failed is
    /// dropped (its stream may hold a late reply), not returned.
    pub(crate) fn with<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        if let Some(e) = self.backing_off(operation) {
            return Err(e);
        }
        let started = Instant::now();
        self.calls.fetch_add(1, Ordering::Relaxed);
        let pooled = self.idle.lock().pop();
        let result = match pooled {
            Some(c) => Ok(c),
            None => self.open_raw(),
        }
        .and_then(|mut con| f(&mut con).map(|v| (v, con)));
        metrics::histogram!("nextbest_store_seconds", "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok((v, con)) => {
                self.reached();
                self.idle.lock().push(con);
                Ok(v)
            }
            Err(e) => {
                self.failed(operation, &e);
                metrics::counter!("nextbest_store_call_errors_total", "operation" => operation)
                    .increment(1);
                tracing::debug!(store = %self.name, operation, error = %e, "state store call failed");
                Err(self.unavailable(operation, e))
            }
        }
    }

    /// Load `scripts` on the server (one connection, kept in the pool), so
    /// that the first decisions run `EVALSHA` only; an unreachable server
    /// is an error here.
    ///
    /// This runs when an engine opens, not on a decision's path: the first
    /// connection and the script loads wait up to [`STARTUP_TIMEOUT`] (or
    /// `timeout_ms` if longer), since a busy host can take longer than a
    /// call's deadline to accept a connection and load scripts; the
    /// connection then gets `timeout_ms` like every other.
    pub(crate) fn load(&self, scripts: &[&redis::Script]) -> Result<(), Error> {
        let startup = self.timeout.max(STARTUP_TIMEOUT);
        let err = |e| self.unavailable("connect", e);
        let mut con = self
            .client
            .get_connection_with_timeout(startup)
            .map_err(err)?;
        con.set_read_timeout(Some(startup)).map_err(err)?;
        con.set_write_timeout(Some(startup)).map_err(err)?;
        for s in scripts {
            s.prepare_invoke().load(&mut con).map_err(err)?;
        }
        con.set_read_timeout(Some(self.timeout)).map_err(err)?;
        con.set_write_timeout(Some(self.timeout)).map_err(err)?;
        self.idle.lock().push(con);
        Ok(())
    }
}

/// The longest an engine's opening waits for the store (see
/// [`Pool::load`]).
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(2);

/// `redis://user:secret@host/0` as `redis://host/0`.
fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_reach_error_messages() {
        assert_eq!(
            without_credentials("redis://u:pw@10.0.0.1:6379/2"),
            "redis://10.0.0.1:6379/2"
        );
        assert_eq!(
            without_credentials("redis://127.0.0.1/0"),
            "redis://127.0.0.1/0"
        );
    }
}
