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

use std::time::Duration;

use parking_lot::Mutex;
use redis::{Client, Connection, IntoConnectionInfo};

use super::fleet::StateConfig;
use crate::base::Error;

mod history;
mod rollout;
mod volumes;

pub use history::RedisHistory;
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
}

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
        })
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

    pub(crate) fn open(&self, operation: &'static str) -> Result<Connection, Error> {
        let err = |e| self.unavailable(operation, e);
        let con = self
            .client
            .get_connection_with_timeout(self.timeout)
            .map_err(err)?;
        con.set_read_timeout(Some(self.timeout)).map_err(err)?;
        con.set_write_timeout(Some(self.timeout)).map_err(err)?;
        Ok(con)
    }

    /// Run `f` on a pooled connection. A connection whose call failed is
    /// dropped (its stream may hold a late reply), not returned.
    pub(crate) fn with<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Error> {
        let pooled = self.idle.lock().pop();
        let mut con = match pooled {
            Some(c) => c,
            None => self.open(operation)?,
        };
        match f(&mut con) {
            Ok(v) => {
                self.idle.lock().push(con);
                Ok(v)
            }
            Err(e) => Err(self.unavailable(operation, e)),
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
