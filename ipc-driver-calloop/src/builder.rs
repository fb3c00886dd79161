//! Configuring a node ([`NodeBuilder`]): a leaf, which [`NodeSource`](crate::NodeSource)
//! starts from.

use std::path::PathBuf;
use std::time::Duration;

use ipc_driver_core::DEFAULT_MAX_OUTBOX;
use ipc_proto::{Limits, NodeOptions};

/// Configures and starts a node as a calloop event source.
///
/// ```no_run
/// use calloop::EventLoop;
/// use ipc_driver_calloop::{NodeEvent, NodeSource};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut event_loop: EventLoop<()> = EventLoop::try_new()?;
/// let source = NodeSource::builder("panel").group("desktop").join()?;
/// event_loop.handle().insert_source(source, |event, node, _state| {
///     if let NodeEvent::Synced { hub, .. } = event {
///         println!("{} sees hub {hub}: {} nodes", node.name(), node.view().nodes().len());
///     }
/// })?;
/// event_loop.run(None, &mut (), |_| {})?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug)]
pub struct NodeBuilder {
    pub(crate) options: NodeOptions,
    pub(crate) group: String,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) max_outbox: usize,
    pub(crate) pool_bytes: u64,
}

impl NodeBuilder {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            options: NodeOptions::new(name, ipc_os::current_credentials().uid),
            group: "default".into(),
            dir: None,
            max_outbox: DEFAULT_MAX_OUTBOX,
            pool_bytes: 256 << 20,
        }
    }

    /// The group to join. Default `"default"`.
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// Where the group's sockets live, for a group opened to other users
    /// ([`allow_uid`](Self::allow_uid), [`allow_gid`](Self::allow_gid),
    /// [`allow_anyone`](Self::allow_anyone)): the group's directory is `dir/<group>`, made
    /// accessible to everyone, so `dir`'s own permissions decide who can reach the group and
    /// the access policy decides whom its members accept. Every member must name the same
    /// `dir`. By default a group lives in this user's private runtime directory, which no
    /// other user can enter (see [`ipc_proto::names`]).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// A node (or hub) silent for this long is declared gone; heartbeats go out four times
    /// per period. Default 2 s.
    pub fn keepalive(mut self, timeout: Duration) -> Self {
        self.options.keepalive = timeout;
        self
    }

    /// How long a new hub waits for the nodes it inherited to reconnect. Default 200 ms.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.options.grace = grace;
        self
    }

    /// Whether this node keeps a copy of every shared document of the group, opened or not,
    /// so that a patch acknowledged to its writer survives the death of any one process
    /// (default yes; see [`ipc_proto::doc`]). A node that leaves right after its work should
    /// say no: its copy would be gone when it is needed.
    pub fn witness(mut self, witness: bool) -> Self {
        self.options.witness = witness;
        self
    }

    /// Also let processes of `uid` join, should this node run the hub.
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.options.access.allow_uid(uid);
        self
    }

    /// Also let processes whose effective group is `gid` join, should this node run the hub.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.options.access.allow_gid(gid);
        self
    }

    /// Let anyone join, should this node run the hub (open the group explicitly).
    pub fn allow_anyone(mut self) -> Self {
        self.options.access.anyone = true;
        self
    }

    /// Bounds on what peers may send.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.options.limits = limits;
        self
    }

    /// Most bytes queued for one peer before it is considered too slow and disconnected.
    /// Default 8 MiB.
    pub fn max_outbox(mut self, bytes: usize) -> Self {
        self.max_outbox = bytes;
        self
    }

    /// Whether this node's messages also reach its own subscriptions. Default no.
    pub fn self_delivery(mut self, on: bool) -> Self {
        self.options.self_delivery = on;
        self
    }

    /// Most bytes of pool segments this node may create. Default 256 MiB.
    pub fn pool_bytes(mut self, bytes: u64) -> Self {
        self.pool_bytes = bytes;
        self
    }
}
