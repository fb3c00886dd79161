//! What every machine takes in and gives out.

use crate::ids::{Credentials, PeerId};

/// An input to a machine: a command, bytes from a link, a link change, or a driver's report.
#[derive(Debug)]
pub enum Input<'a, C> {
    /// A command from the local application.
    Cmd(C),
    /// Bytes received on a link, in any chunking.
    Bytes {
        /// The link.
        peer: PeerId,
        /// The bytes.
        data: &'a [u8],
    },
    /// A link came up: for a hub, a spoke connected; for a spoke, its connection to the hub
    /// succeeded.
    PeerUp {
        /// The link.
        peer: PeerId,
        /// The kernel's credentials of the process at the other end, where the driver can read
        /// them. A hub refuses a joiner, and a spoke its hub, whose credentials its access
        /// policy does not allow, or that come without credentials unless the policy allows
        /// anyone; a spoke sends nothing to a hub it refuses.
        cred: Option<Credentials>,
    },
    /// A link went down (hangup, error, or the driver closed it).
    PeerDown(PeerId),
    /// Spoke only: the connection attempt a spoke asked for failed (no hub listens). Hubs
    /// ignore it.
    ConnectFailed,
    /// Spoke only: the outcome of the bind a spoke asked for. Hubs ignore it.
    BindOutcome {
        /// Whether this process now holds the hub address (and runs a hub).
        won: bool,
    },
}

/// What a machine asks of its driver; drain with `poll_output` until `None`.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Output<E> {
    /// Send bytes on a link (one record on a `SOCK_SEQPACKET` link).
    Transmit(Transmit),
    /// Close a link once what is queued for it is flushed. The machine has forgotten it and
    /// ignores a later [`Input::PeerDown`] for it.
    Disconnect(PeerId),
    /// An event for the application or the driver.
    Evt(E),
}

impl<E> Output<E> {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Transmit(_) => "Transmit",
            Self::Disconnect(_) => "Disconnect",
            Self::Evt(_) => "Evt",
        }
    }
}

/// Bytes for one link: one or more whole frames.
#[must_use]
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The link.
    pub peer: PeerId,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Transmit({}, {} bytes)", self.peer, self.bytes.len())
    }
}

/// Who may take part in a group: checked against every link's kernel credentials, by the hub
/// for its joiners, by each spoke for its hub, and by each data plane for its data links and
/// stats requests, before a byte is sent on the link or believed.
///
/// The default allows nobody; drivers start from [`AccessPolicy::same_uid`] with their own uid,
/// which is what "only the same uid may join" means.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Allowed user ids.
    pub uids: std::collections::BTreeSet<u32>,
    /// Allowed group ids.
    pub gids: std::collections::BTreeSet<u32>,
    /// Allow anyone, even a link without credentials.
    pub anyone: bool,
}

impl AccessPolicy {
    /// Only processes running as `uid`.
    pub fn same_uid(uid: u32) -> Self {
        Self {
            uids: [uid].into(),
            ..Self::default()
        }
    }

    /// Everyone (the group is opened explicitly).
    pub fn anyone() -> Self {
        Self {
            anyone: true,
            ..Self::default()
        }
    }

    /// Also allow `uid`.
    pub fn allow_uid(&mut self, uid: u32) -> &mut Self {
        self.uids.insert(uid);
        self
    }

    /// Also allow members of `gid` (the peer's effective group).
    pub fn allow_gid(&mut self, gid: u32) -> &mut Self {
        self.gids.insert(gid);
        self
    }

    /// Whether a peer with these credentials may join.
    pub fn allows(&self, cred: Option<&Credentials>) -> bool {
        self.anyone
            || cred.is_some_and(|c| self.uids.contains(&c.uid) || self.gids.contains(&c.gid))
    }
}
