//! The drivers' one error type, [`DriverError`]: what a call of either driver can fail with.

use std::io;
use std::time::Duration;

use ipc_os::rendezvous::RendezvousError;
use ipc_proto::CmdError;
use ipc_proto::doc::{DocError, PathError};

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
}
