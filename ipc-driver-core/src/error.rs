//! The drivers' error types: [`DriverError`], what a call of either driver can fail with, and
//! [`RecvError`], why a blocking receive returned no message.

use std::io;
use std::time::Duration;

use ipc_os::rendezvous::RendezvousError;
use ipc_proto::doc::{DocError, PathError};
use ipc_proto::{CmdError, ConfigError};

use crate::TypeError;

/// Why a receive returned no message (std driver: `Subscription::recv` and its variants).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// Nothing is queued (`try_recv`); more may come.
    #[error("no message is queued")]
    Empty,
    /// No message came within the timeout (`recv_timeout`); more may come.
    #[error("no message within {0:?}")]
    TimedOut(Duration),
    /// The node has left the group (its `leave`, or it was dropped), or the subscription is
    /// closed: no message will come.
    #[error("the node has left the group")]
    Left,
    /// The node stopped by itself, and why: no hub runs in a group it may only join
    /// (`join_existing`), or its I/O failed. No message will come.
    #[error("the node has stopped: {0}")]
    Stopped(String),
}

impl RecvError {
    /// Whether no message will ever come on this receiver ([`Left`](Self::Left),
    /// [`Stopped`](Self::Stopped)).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Left | Self::Stopped(_))
    }
}

/// What can go wrong in a driver (the same type in `ipc-driver-std` and `ipc-driver-calloop`).
///
/// Some variants come from one driver only, and say so: the std driver blocks and waits
/// ([`Timeout`](Self::Timeout), [`Stopped`](Self::Stopped)), the calloop driver holds
/// messages for full subscribers instead of blocking ([`Full`](Self::Full)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The group's directory cannot be used: an invalid group name, a socket path too long,
    /// or an unsafe or unreachable directory.
    #[error("the group's directory: {0}")]
    Group(#[from] RendezvousError),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The builder's options do not make sense together (a heartbeat interval of zero, or
    /// above half the keepalive limit); the node did not start.
    #[error("invalid options: {0}")]
    Config(#[from] ConfigError),
    /// The node refused the command (invalid topic, too many topics, left already...).
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// The node refused a document command (invalid name or update, already open, not
    /// open...).
    #[error(transparent)]
    Doc(#[from] DocError),
    /// A document path that does not parse.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The node has left the group (or its loop is gone): it takes no more commands.
    #[error("the node has left the group")]
    Left,
    /// The node's I/O thread has stopped, and why (std driver).
    #[error("the node has stopped: {0}")]
    Stopped(String),
    /// No hub runs in the group, and this node may not start one (`join_existing`): at the
    /// join, or later once the hub is gone and no other member took over within the
    /// keepalive timeout.
    #[error("no group named {group:?} is running")]
    NoGroup {
        /// The group's name.
        group: String,
    },
    /// Waited too long (std driver): how long, and for what.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    /// `topic` is not published by this node: open a publisher first.
    #[error("not a publisher of {0:?}")]
    NotPublishing(String),
    /// A payload is larger than its mode allows.
    #[error("a payload of {len} bytes exceeds the maximum of {max} for its mode")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A `Block` subscriber of `topic` is full and this node already holds as many messages
    /// for it as it may (calloop driver): publish again after
    /// [`NodeEvent::Room`](crate::NodeEvent::Room).
    #[error("the subscribers of {0:?} are full")]
    Full(String),
    /// A typed payload could not be sent: its value does not encode, or the topic is not
    /// published with that type.
    #[error(transparent)]
    Type(#[from] TypeError),
}
