//! The driver's error type.

use std::io;

use ipc_os::rendezvous::RendezvousError;
use ipc_proto::CmdError;
use ipc_proto::doc::{DocError, PathError};

/// What can go wrong in the calloop driver.
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
    /// The node refused a document command (invalid name or update, not open...).
    #[error(transparent)]
    Doc(#[from] DocError),
    /// A document path that does not parse.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The node has left the group (or its loop is gone): it takes no more commands.
    #[error("the node has left the group")]
    Left,
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
    /// for it as it may: publish again after [`NodeEvent::Room`](crate::NodeEvent::Room).
    #[error("the subscribers of {0:?} are full")]
    Full(String),
}
