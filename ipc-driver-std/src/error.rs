//! The driver's error type.

use std::io;
use std::time::Duration;

use ipc_proto::CmdError;
use ipc_proto::doc::DocError;

use ipc_os::rendezvous::RendezvousError;

/// What can go wrong in the std driver.
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
    /// The node refused a document command (invalid name, already open...).
    #[error(transparent)]
    Doc(#[from] DocError),
    /// The node's I/O thread has stopped, and why.
    #[error("the node has stopped: {0}")]
    Stopped(String),
    /// No hub runs in the group, and this node may not start one
    /// ([`NodeBuilder::join_existing`](crate::NodeBuilder::join_existing)): at the join, or
    /// later once the hub is gone and no other member took over within the keepalive timeout.
    #[error("no group named {group:?} is running")]
    NoGroup {
        /// The group's name.
        group: String,
    },
    /// Waited too long.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
}
