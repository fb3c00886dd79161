//! Identifiers: nodes, links, hub terms, history positions.

use std::fmt;
use std::num::NonZeroU64;

use serde::{Deserialize, Serialize};

/// A node's identity in its group: random, non-zero, chosen once per node instance.
///
/// Printed as 16 lowercase hex digits, the form the CLI and logs use.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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

/// Which hub minted a record: its term, and a random salt that keeps two hubs of the same term
/// (a node with no history winning the election while older histories survive) from minting
/// the same positions.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Epoch {
    term: u32,
    salt: u32,
}

impl Epoch {
    /// The epoch of a hub of `term` that drew `salt`.
    pub const fn new(term: u32, salt: u32) -> Self {
        Self { term, salt }
    }

    /// The hub's term.
    pub const fn term(self) -> u32 {
        self.term
    }

    /// The hub's salt.
    pub const fn salt(self) -> u32 {
        self.salt
    }

    /// The next epoch in order, saturating at the last.
    pub(crate) const fn successor(self) -> Self {
        match (self.salt.checked_add(1), self.term.checked_add(1)) {
            (Some(salt), _) => Self {
                term: self.term,
                salt,
            },
            (None, Some(term)) => Self { term, salt: 0 },
            (None, None) => self,
        }
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Epoch({}.{:08x})", self.term, self.salt)
    }
}

/// A history record's position: the minting hub's epoch, then a counter within it.
///
/// Every hub mints in an epoch above any it has seen, so positions never move backwards, also
/// across hub changes, and two hubs never mint the same position unless they drew the same
/// salt for the same term (a 1 in 2^32 chance after a split), which the merge rules resolve the
/// hub's way.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Seq {
    epoch: Epoch,
    counter: u32,
}

impl Seq {
    /// The position `counter` in `epoch`.
    pub const fn new(epoch: Epoch, counter: u32) -> Self {
        Self { epoch, counter }
    }

    /// The epoch: which hub minted the record.
    pub const fn epoch(self) -> Epoch {
        self.epoch
    }

    /// The counter within the epoch.
    pub const fn counter(self) -> u32 {
        self.counter
    }
}

/// `term.counter`, e.g. `3.17` (the salt is left out; [`Debug`](fmt::Debug) shows it).
impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch.term, self.counter)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Seq({}.{:08x}.{})",
            self.epoch.term, self.epoch.salt, self.counter
        )
    }
}

/// A record's random, non-zero tag: two records with the same [`Seq`] and different uids
/// conflict.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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
    fn seq_orders_by_term_then_salt_then_counter() {
        let e = |t, s| Epoch::new(t, s);
        assert!(Seq::new(e(1, u32::MAX), u32::MAX) < Seq::new(e(2, 0), 0));
        assert!(Seq::new(e(2, 5), 9) < Seq::new(e(2, 6), 1));
        assert!(Seq::new(e(2, 1), 1) < Seq::new(e(2, 1), 2));
        let s = Seq::new(e(7, 3), 9);
        assert_eq!((s.epoch().term(), s.epoch().salt(), s.counter()), (7, 3, 9));
        assert_eq!(s.to_string(), "7.9");
        assert_eq!(e(1, u32::MAX).successor(), e(2, 0));
        assert_eq!(e(1, 4).successor(), e(1, 5));
        assert_eq!(e(u32::MAX, u32::MAX).successor(), e(u32::MAX, u32::MAX));
    }

    #[test]
    fn node_id_zero_is_invalid_and_prints_16_hex_digits() {
        assert_eq!(NodeId::new(0), None);
        let id = NodeId::new(0xab).expect("non-zero");
        assert_eq!(id.to_string(), "00000000000000ab");
    }
}
