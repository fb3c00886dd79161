//! What both ipc-pubsub drivers do the same way with sockets, written once.
//!
//! A driver (`ipc-driver-std`'s I/O thread, `ipc-driver-calloop`'s event source) owns a
//! [`Member`](ipc_proto::Member) and a [`Links`] table. The table holds the node's `epoll` set,
//! its group directory, the hub and data listeners and every link, with a bounded outbox per
//! link; its methods take the member where they feed it (connected, accepted, blocked,
//! writable, peer down, records). What stays in a driver is its own: how it waits (a thread, a
//! calloop source), its run loop and read loop, and what it does with deliveries and events.
//!
//! - `links`: the link table ([`Links`]), readiness tokens ([`Ready`]) and what reading a
//!   record did ([`Read`]).
//! - `received`: segments received from publishers ([`ReceivedSegments`]), until mapped and
//!   released.
//! - `start`: how a node starts ([`start`](fn@start)): group directory, id, data listener, member.
//! - `log`: how both drivers log member events about peers, rate-limited ([`PeerLog`]).
//! - `spin`: when a receiver without a spin of its own polls before it sleeps
//!   ([`AdaptiveSpin`], [`RECV_SPIN`]).
//!
//! And the vocabulary both drivers speak to their applications, re-exported by each: what a
//! node reports (`event`: [`NodeEvent`], [`EventKinds`], [`HubInfo`]; `doc_event`:
//! [`DocEvent`], [`Committed`], [`PatchError`], [`DocSnapshot`]), the one error type
//! (`error`: [`DriverError`]), a received [`Message`] (`message`) and the builders' options
//! (`options`: [`NodeConfig`] and [`node_builder_setters!`]) and typed payloads (`typed`:
//! [`TypeName`], [`PodLoan`], [`Message::pod`], [`Message::decode`], [`TypeError`]).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::time::Duration;

pub mod api;
mod doc_event;
mod error;
mod event;
mod links;
mod loan;
mod log;
mod message;
mod options;
mod received;
mod ring;
mod spin;
mod start;
mod typed;

pub use doc_event::{Committed, DocEvent, DocSnapshot, ObserverId, PatchError};
pub use error::{DriverError, RecvError};
pub use event::{EventKinds, HubInfo, NodeEvent};
#[doc(hidden)]
pub use ipc_proto::Limits as __Limits;
pub use options::{DEFAULT_GROUP, DEFAULT_POOL_BYTES, NodeConfig};

pub use links::{
    Attachments, EXIT_WATCH_AFTER_CLOSE, Links, OWN_TOKEN, Owned, Read, Reading, Ready,
};
pub use loan::{LoanBuf, PoolBytes, SegmentsInUse, fresh_loan, inline_buffer};
pub use log::{PeerLog, log_member_evt};
pub use message::{Message, Via};
pub use received::{ReceivedSegments, map_own};
pub use spin::{
    AdaptiveSpin, AdaptiveWait, AdaptiveWaits, PastWindow, RECV_SPIN, SPIN_PROBE, WRITING_SPIN,
};
pub use start::{Started, start};
pub use typed::{
    BINCODE_MIME, DECODE_LIMIT, POD_MIME, PodLoan, TopicTypes, TypeError, TypeName, bincode_mime,
    decode, encode, pod_from_bytes, pod_mime,
};

/// A spinning receiver ([`SubscriptionOptions::spin`](ipc_proto::data::SubscriptionOptions::spin))
/// reads the clock (and whatever else ends its spin) once in this many looks at the rings: a
/// clock read costs about what a look at an empty ring does, and a look that comes sooner
/// after the publisher's push takes the message sooner. Measured with the std driver (spin
/// at both ends of a 64 B round trip between two pinned processes, 200,000 round trips,
/// alternated runs): median 1.84 µs with a clock read at every look (9 runs: 1.76-1.96),
/// 1.73 µs with one in 8 (15 runs: 1.67-1.80). Looks made faster still (no clock read in the
/// look itself) were slower (1.82-1.89 µs): polled that often, the ring's lines leave the
/// publisher's cache while it writes them. A spin's end (or a receive's deadline) is seen up
/// to that many looks late, well under a microsecond.
pub const LOOKS_PER_CLOCK: u32 = 8;

/// `d` after `t`, or `u32::MAX` seconds (136 years) after it if `t + d` overflows: a spin of
/// `Duration::MAX` ("for ever") must not overflow the clock's arithmetic, and what is added
/// to the result later (a millisecond or so) must not either.
pub fn later(t: std::time::Instant, d: Duration) -> std::time::Instant {
    t.checked_add(d)
        .unwrap_or_else(|| t + Duration::from_secs(u64::from(u32::MAX)))
}

/// Records read from one link per wakeup before the others get their turn.
pub const READ_BUDGET: usize = 64;

/// Connections accepted from one listener per wakeup before the links get their turn.
pub const ACCEPT_BUDGET: usize = 64;

/// Log lines about misbehaving or refused peers: this many per interval, then a summary.
pub const PEER_LOG_BURST: u32 = 10;

/// The interval of [`PEER_LOG_BURST`].
pub const PEER_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// How long a link that is being closed may take to flush what is queued for it.
pub const CLOSE_FLUSH: Duration = Duration::from_millis(500);

/// How long a leaving node may take in all (its hub's goodbyes, flushing its data links).
pub const LEAVE_DEADLINE: Duration = Duration::from_millis(1500);

/// Most file descriptors one data record may carry (a ring offer's three are the most; a
/// fourth tells a violation from a truncation).
pub const MAX_FDS: usize = 4;

/// A pool segment free for this long is destroyed (its subscribers unmap it).
pub const POOL_IDLE: Duration = Duration::from_secs(1);

/// Most bytes queued for one peer on a topology link before it is considered too slow and
/// disconnected (the builders' default; the member bounds data links itself).
pub const DEFAULT_MAX_OUTBOX: usize = 8 << 20;

/// The send buffer asked for on a data link this node connects (records carry payloads).
pub const DATA_SEND_BUFFER: usize = 1 << 20;

/// A seed for a machine's generator (or a node id), from the OS.
pub(crate) fn random_seed() -> u64 {
    getrandom::u64().expect("the OS random source is available on Linux")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::later;

    #[test]
    fn later_adds_and_saturates_far_away() {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let t = Instant::now();
        let ms = Duration::from_millis(3);
        assert_eq!(later(t, ms), t + ms);
        let far = later(t, Duration::MAX);
        assert_eq!(far, t + Duration::from_secs(u64::from(u32::MAX)));
        // What the drivers add to a deadline afterwards still fits.
        assert!(far.checked_add(Duration::from_secs(1)).is_some());
    }
}
