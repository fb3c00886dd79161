//! The bridge's errors.

use ipc_driver_std::DriverError;

/// Why a bridge could not start ([`Bridge::start`](crate::Bridge::start)) or a configuration was
/// refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The group could not be joined.
    #[error("cannot join group {group}: {source}")]
    Join {
        /// The group.
        group: String,
        /// What the driver said.
        #[source]
        source: DriverError,
    },
    /// The Zenoh configuration was refused or its session could not open.
    #[error("zenoh: {0}")]
    Zenoh(String),
    /// A topic pattern or the key prefix is not a Zenoh key expression.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// `"export pattern"`, `"import pattern"` or `"key prefix"`.
        what: &'static str,
        /// The value given.
        value: String,
        /// Why.
        reason: String,
    },
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Io(#[from] std::io::Error),
}

impl BridgeError {
    pub(crate) fn zenoh(e: impl std::fmt::Display) -> Self {
        Self::Zenoh(e.to_string())
    }
}
