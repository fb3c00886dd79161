//! [`Limits`]: the bounds on what a peer may send, checked before anything is allocated.

use std::time::Duration;

use crate::error::DecodeError;

/// Bounds on what a peer may send; every length from the wire is checked against them before
/// anything is allocated for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame (tag and body), in bytes. Default 64 KiB.
    pub max_frame: usize,
    /// Longest node name, topic name, type string or data address, in bytes. Default 255.
    pub max_name: usize,
    /// Most topic roles (publications plus subscriptions) one node may hold. Default 4,096.
    pub max_topics_per_node: usize,
    /// Most records one history may hold: a spoke's introduction, a hub's snapshot.
    /// Default 1,048,576.
    pub max_history: usize,
    /// Most accepted links (on the hub address and the node's data address together) that have not
    /// completed their handshake (sent their `Hello`); a link accepted beyond it is closed at once
    /// and counted ([`GuardStats::pending_refused`](super::GuardStats::pending_refused)). Default
    /// 64.
    pub max_pending: usize,
    /// How long an accepted link may take to send its `Hello`; it is closed and counted
    /// ([`GuardStats::handshake_expired`](super::GuardStats::handshake_expired)) when the time is
    /// up. Default 2 s.
    pub handshake_timeout: Duration,
    /// How long a node stops accepting connections after an accept failed for lack of resources
    /// (`EMFILE`, `ENFILE`): the links it has are served meanwhile, and the pending connections
    /// wait in the listeners' backlogs
    /// ([`GuardStats::accept_paused`](super::GuardStats::accept_paused)). Default 100 ms.
    pub accept_backoff: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame: 64 * 1024,
            max_name: 255,
            max_topics_per_node: 4096,
            max_history: 1 << 20,
            max_pending: 64,
            handshake_timeout: Duration::from_secs(2),
            accept_backoff: Duration::from_millis(100),
        }
    }
}

impl Limits {
    /// The largest encoded size of one record under these limits, with room to spare: used to
    /// cut histories into frames that fit [`max_frame`](Self::max_frame).
    pub(crate) fn max_record(&self) -> usize {
        // seq, uid (varints, <= 9 bytes each), tag, two ids, four strings with length prefixes,
        // pid and uid: generously rounded.
        64 + 4 * (self.max_name + 9)
    }

    /// How many records go into one frame.
    pub(crate) fn records_per_frame(&self) -> usize {
        (self.max_frame.saturating_sub(16) / self.max_record()).max(1)
    }

    pub(super) fn check_name(&self, what: &'static str, s: &str) -> Result<(), DecodeError> {
        if s.len() > self.max_name {
            return Err(DecodeError::FieldTooLong {
                what,
                len: s.len(),
                max: self.max_name,
            });
        }
        Ok(())
    }
}
