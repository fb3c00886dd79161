//! The builder options both drivers share ([`NodeConfig`]) and their setters, written once
//! ([`node_builder_setters!`](crate::node_builder_setters)) for each driver's `NodeBuilder`.

use std::path::PathBuf;

use ipc_proto::NodeOptions;

use crate::DEFAULT_MAX_OUTBOX;

/// The group used when none is given.
pub const DEFAULT_GROUP: &str = "default";

/// The default bound on a node's pool segments.
pub const DEFAULT_POOL_BYTES: u64 = 256 << 20;

/// What every driver's builder configures: the node's options for the protocol, where its
/// group lives, and the bounds of its links and pool.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's options for the protocol (name, keepalive, access, limits...).
    pub options: NodeOptions,
    /// The group's name.
    pub group: String,
    /// A directory for a group opened to other users; `None` for this user's private one.
    pub dir: Option<PathBuf>,
    /// Most bytes queued for one peer before it is considered too slow and disconnected.
    pub max_outbox: usize,
    /// Most bytes of pool segments this node's publishers may create.
    pub pool_bytes: u64,
}

impl NodeConfig {
    /// The defaults for a node called `name`, of this process's uid.
    pub fn new(name: &str) -> Self {
        let mut options = NodeOptions::new(name, ipc_os::current_credentials().uid);
        // Both drivers move data links' records through shared-memory rings (`Links`).
        options.rings = true;
        Self {
            options,
            group: DEFAULT_GROUP.into(),
            dir: None,
            max_outbox: DEFAULT_MAX_OUTBOX,
            pool_bytes: DEFAULT_POOL_BYTES,
        }
    }
}

/// Writes the setters of [`NodeConfig`] into a driver's builder, whose field `config` holds
/// it: `impl NodeBuilder { ipc_driver_core::node_builder_setters!(); }`. Each setter takes
/// and returns the builder, so calls chain.
#[macro_export]
macro_rules! node_builder_setters {
    () => {
        /// The group to join. Default `"default"`.
        pub fn group(mut self, group: impl Into<String>) -> Self {
            self.config.group = group.into();
            self
        }

        /// Where the group's sockets live, for a group opened to other users
        /// ([`allow_uid`](Self::allow_uid), [`allow_gid`](Self::allow_gid),
        /// [`allow_anyone`](Self::allow_anyone)): the group's directory is `dir/<group>`, made
        /// accessible to everyone, so `dir`'s own permissions decide who can reach the group
        /// and the access policy decides whom its members accept. Every member must name the
        /// same `dir`.
        ///
        /// By default a group lives in this user's private runtime directory
        /// (`$XDG_RUNTIME_DIR/ipc-pubsub/<group>`, else `/tmp/ipc-pubsub-<uid>/<group>`, mode
        /// 0700), which no other user can enter.
        pub fn dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
            self.config.dir = Some(dir.into());
            self
        }

        /// The keepalive limit: a node (or hub) silent for this long is declared gone.
        /// Default 2 s. Unless [`heartbeat`](Self::heartbeat) says otherwise, heartbeats go
        /// out four times per limit (every 500 ms by default).
        ///
        /// A stopped process (`SIGSTOP`) is not dead, so no pidfd reports it: the keepalive
        /// is what finds it. Members of one group may choose different figures: each side of
        /// a hub link judges its peer by its own limit, and heartbeats at the shorter of its
        /// own interval and the peer's, so that no one flaps because another is slower.
        pub fn keepalive(mut self, timeout: std::time::Duration) -> Self {
            self.config.options.keepalive = timeout;
            self
        }

        /// The heartbeat interval: how often a heartbeat goes out on the hub link when nothing
        /// else did. Default: a quarter of the [`keepalive`](Self::keepalive) limit (500 ms).
        /// It must be above zero and at most half the limit, so that one late heartbeat does
        /// not expel a live node; the node refuses to start otherwise
        /// ([`DriverError::Config`](crate::DriverError::Config)).
        pub fn heartbeat(mut self, interval: std::time::Duration) -> Self {
            self.config.options.heartbeat = Some(interval);
            self
        }

        /// How long a new hub waits for the nodes it inherited to reconnect before declaring
        /// them gone. Default 200 ms. Nodes whose processes are known to have exited (the
        /// driver watches each hub link's peer with a pidfd) go at once; the grace is for those
        /// whose death cannot be confirmed (another pid namespace, `IPC_PUBSUB_NO_PIDFD=1`).
        pub fn grace(mut self, grace: std::time::Duration) -> Self {
            self.config.options.grace = grace;
            self
        }

        /// Whether this node may run the group's hub when none answers (default yes). A node
        /// that may not waits for another to take over: a group needs at least one that may.
        pub fn hub_eligible(mut self, eligible: bool) -> Self {
            self.config.options.hub_eligible = eligible;
            self
        }

        /// Whether this node keeps a copy of every shared document of the group, opened or
        /// not, so that a patch acknowledged to its writer survives the death of any one
        /// process (default yes; see [`Committed`](crate::Committed)). A node that leaves
        /// right after its work, a one-shot writer, should say no: its copy would be gone when
        /// it is needed. Witnessing costs the documents' size in memory, within
        /// [`DocLimits::max_witness_bytes`](crate::DocLimits::max_witness_bytes), and one
        /// small receipt to the hub per patch received.
        pub fn witness(mut self, witness: bool) -> Self {
            self.config.options.witness = witness;
            self
        }

        /// Whether this node's data links carry messages through shared-memory rings (default
        /// yes): a ring of 64 message slots with up to 4 KiB inline, about 266 KiB of shared
        /// memory per link, touched as used, set up by the subscriber when its publisher's
        /// driver takes one ([`ipc_proto::ring::link`]). Without, every record goes through
        /// the link's socket, as with a driver that has no rings: for comparison, or to
        /// spare the memory on hosts with very many links.
        pub fn shared_memory_rings(mut self, on: bool) -> Self {
            self.config.options.rings = on;
            self
        }

        /// Also let processes of `uid` join, should this node run the hub. By default only the
        /// same uid may join.
        pub fn allow_uid(mut self, uid: u32) -> Self {
            self.config.options.access.allow_uid(uid);
            self
        }

        /// Also let processes whose effective group is `gid` join, should this node run the
        /// hub.
        pub fn allow_gid(mut self, gid: u32) -> Self {
            self.config.options.access.allow_gid(gid);
            self
        }

        /// Let anyone join, should this node run the hub (open the group explicitly).
        pub fn allow_anyone(mut self) -> Self {
            self.config.options.access.anyone = true;
            self
        }

        /// Bounds on what peers may send.
        pub fn limits(mut self, limits: $crate::__Limits) -> Self {
            self.config.options.limits = limits;
            self
        }

        /// Most bytes queued for one peer before it is considered too slow and disconnected.
        /// Default 8 MiB.
        pub fn max_outbox(mut self, bytes: usize) -> Self {
            self.config.max_outbox = bytes;
            self
        }

        /// Whether this node's messages also reach its own subscriptions. Default no.
        pub fn self_delivery(mut self, on: bool) -> Self {
            self.config.options.self_delivery = on;
            self
        }

        /// Most bytes of pool segments this node's publishers may create (they are reused;
        /// the pool never shrinks below what it reached). Default 256 MiB.
        pub fn pool_bytes(mut self, bytes: u64) -> Self {
            self.config.pool_bytes = bytes;
            self
        }
    };
}
