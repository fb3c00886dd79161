//! Identifiers: nodes, links, hub terms, history positions.

use std::fmt;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

/// A node's identity in its group: random, non-zero, chosen once per node instance.
///
/// Printed as 16 lowercase hex digits, the form the CLI and logs use.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(NonZeroU64);

impl NodeId {
    /// The id `raw`, or `None` for 0, which is never a valid id.
    pub const fn new(raw: u64) -> Option<Self> {
        match NonZeroU64::new(raw) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The raw value (never 0).
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// A driver's handle for one link (a connected socket), opaque to the machines.
///
/// The driver chooses the values and must not reuse one while the machine may still refer to
/// it, that is until the machine has seen [`Input::PeerDown`](crate::Input::PeerDown) or emitted
/// [`Output::Disconnect`](crate::Output::Disconnect) for it.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer#{}", self.0)
    }
}

/// A hub's incarnation number: each hub takes one more than the highest term it knows of.
#[derive(
    Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Term(pub u64);

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A history record's position: an epoch in the high 32 bits and a counter in the low 32.
///
/// Every hub mints in an epoch higher than any it has seen, so positions never move backwards,
/// also across hub changes, and records of different hubs never collide unless two hubs
/// started from the same knowledge (a split), which the merge rules resolve the hub's way.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(u64);

impl Seq {
    /// The position `counter` in `epoch`.
    pub const fn new(epoch: u32, counter: u32) -> Self {
        Self(((epoch as u64) << 32) | counter as u64)
    }

    /// The position from its raw 64-bit form.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw 64-bit form (what the CLI prints).
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The epoch: which hub incarnation minted the record.
    pub const fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The counter within the epoch.
    pub const fn counter(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch(), self.counter())
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({self})")
    }
}

/// A record's random, non-zero tag: two records with the same [`Seq`] and different uids
/// conflict.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Uid(NonZeroU64);

impl Uid {
    /// The uid `raw`, or `None` for 0.
    pub const fn new(raw: u64) -> Option<Self> {
        match NonZeroU64::new(raw) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }

    /// The raw value (never 0).
    pub const fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Uid({:016x})", self.0)
    }
}

/// What the kernel says about the process at the other end of a link (`SO_PEERCRED`).
///
/// Unforgeable: the driver reads it from the socket, never from the peer's bytes.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Credentials {
    /// Process id.
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_orders_by_epoch_then_counter() {
        assert!(Seq::new(1, u32::MAX) < Seq::new(2, 0));
        assert!(Seq::new(2, 1) < Seq::new(2, 2));
        let s = Seq::new(7, 9);
        assert_eq!((s.epoch(), s.counter()), (7, 9));
        assert_eq!(Seq::from_raw(s.get()), s);
        assert_eq!(s.to_string(), "7.9");
    }

    #[test]
    fn node_id_zero_is_invalid_and_prints_16_hex_digits() {
        assert_eq!(NodeId::new(0), None);
        let id = NodeId::new(0xab).expect("non-zero");
        assert_eq!(id.to_string(), "00000000000000ab");
    }
}
