//! How an engine reaches the fleet's shared state: the `"state"` section of
//! the engine configuration, and what a decision does when the shared store
//! cannot answer. See docs/FLEET.md for what is shared and how.

use serde::Deserialize;

use crate::base::Error;

/// What a decision does when the shared state store fails (times out,
/// refuses or drops the connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnUnavailable {
    /// No action is offered unchecked (the default). When the history
    /// fails, the decision returns [`Error::StoreUnavailable`] and records
    /// nothing; when the volume counters fail, each action with a volume
    /// constraint is removed at that stage with the reason "state
    /// unavailable", and the others still decide.
    #[default]
    Closed,
    /// The decision goes on without what the store would have said: as if
    /// the customer had no interaction history in reach (contact policies
    /// and the channel's contact limit remove nothing; impressions are not
    /// recorded), and without the volume caps (no unit counted). The
    /// failure is counted. For channels where offering something beats
    /// offering nothing.
    Open,
}

/// The shared state store: `{"url": "redis://127.0.0.1:6379/0",
/// "key_prefix": "nb:", "timeout_ms": 20, "on_unavailable": "closed"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// The store's address: `redis://host:port/db` (`rediss://` is not
    /// supported in this build).
    pub url: String,
    /// Prefix of every key the engine writes (default `nb:`), so several
    /// rule sets or environments can share one server.
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// The deadline of each call to the store, connecting included, in
    /// milliseconds (default 20).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// What a decision does when the store fails (default `closed`).
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// Whether the learning counts are the fleet's (default `true`): each
    /// engine adds the outcomes it records to the store's counts and reads
    /// the fleet's totals back every `exchange_ms`.
    #[serde(default = "yes")]
    pub share_learning: bool,
    /// How often the engine delivers buffered outcomes and exchanges
    /// learning counts with the store, in milliseconds (default 1000).
    #[serde(default = "default_exchange")]
    pub exchange_ms: u64,
    /// How many outcomes wait for the store while it is down (default
    /// 100000); one more is refused to its caller and counted.
    #[serde(default = "default_outcome_buffer")]
    pub outcome_buffer: usize,
    /// Follow the fleet's rule rollout: serve the version `nextbest
    /// publish` made live (under the fleet's number), and write a
    /// heartbeat (default `false`). Started by
    /// [`Engine::follow_fleet`](crate::Engine::follow_fleet), and by the
    /// command line's `--follow`; see docs/FLEET.md.
    #[serde(default)]
    pub follow: bool,
    /// This instance's id in `nextbest fleet` (default: `HOST-PID`).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// How often a following instance writes its heartbeat and polls the
    /// live version, in milliseconds (default 1000); a heartbeat lives
    /// for three of these (at least 1 s).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_exchange() -> u64 {
    1000
}

fn default_outcome_buffer() -> usize {
    100_000
}

fn default_heartbeat() -> u64 {
    1000
}

fn default_prefix() -> String {
    "nb:".into()
}

fn default_timeout() -> u64 {
    20
}

impl StateConfig {
    /// The configuration for `url` with every default.
    pub fn new(url: impl Into<String>) -> StateConfig {
        StateConfig {
            url: url.into(),
            key_prefix: default_prefix(),
            timeout_ms: default_timeout(),
            on_unavailable: OnUnavailable::Closed,
            share_learning: true,
            exchange_ms: default_exchange(),
            outcome_buffer: default_outcome_buffer(),
            follow: false,
            instance_id: None,
            heartbeat_ms: default_heartbeat(),
        }
    }

    /// An error naming the field when the configuration cannot work.
    pub fn check(&self) -> Result<(), Error> {
        if self.timeout_ms == 0 {
            return Err(Error::InvalidConfig(
                "state.timeout_ms is 0: give the deadline of a store call in milliseconds (default 20)".into(),
            ));
        }
        if self.exchange_ms == 0 {
            return Err(Error::InvalidConfig(
                "state.exchange_ms is 0: give how often to exchange with the store in milliseconds (default 1000)".into(),
            ));
        }
        if self.heartbeat_ms == 0 {
            return Err(Error::InvalidConfig(
                "state.heartbeat_ms is 0: give the heartbeat interval in milliseconds (default 1000)".into(),
            ));
        }
        if !self.url.starts_with("redis://") {
            return Err(Error::InvalidConfig(format!(
                "state.url `{}`: expected redis://host:port/db",
                self.url
            )));
        }
        Ok(())
    }
}
