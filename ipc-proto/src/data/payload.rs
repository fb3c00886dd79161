//! Segments and payloads as the driver and the application see them: what is published,
//! received and delivered.

use std::sync::Arc;

use crate::ids::{NodeId, PeerId};
use crate::wire::SlotRef;

/// A memory segment as the driver knows it: a fresh memfd, a pool segment, or a segment
/// received from a publisher.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct SegmentId(pub u64);

/// Links this machine opens (to subscribers) carry ids with this bit set; the driver numbers
/// the links it accepts (from publishers) below it.
pub const OUTGOING: u64 = 1 << 63;

/// The seals a received memfd carries, as the driver read them (`F_GET_SEALS`).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Seals {
    /// `F_SEAL_SHRINK`.
    pub shrink: bool,
    /// `F_SEAL_GROW`.
    pub grow: bool,
    /// `F_SEAL_WRITE`.
    pub write: bool,
    /// `F_SEAL_FUTURE_WRITE`.
    pub future_write: bool,
}

/// A segment received with a record: verified by the driver to be a memfd that cannot shrink,
/// so that mapping it is safe, and registered under `segment`.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub struct ReceivedSegment {
    /// The driver's handle.
    pub segment: SegmentId,
    /// Its size (`fstat`).
    pub size: u64,
    /// Its seals.
    pub seals: Seals,
}

/// A payload to publish.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Payload {
    /// The bytes, sent in the frame.
    Inline(Vec<u8>),
    /// A fresh memfd holding the payload, sealed against writing, growing and shrinking.
    Fresh {
        /// The segment.
        segment: SegmentId,
        /// The payload's length.
        len: u64,
    },
    /// A range of a pool segment (sealed against growing, shrinking and new writers).
    Pooled {
        /// The segment.
        segment: SegmentId,
        /// The segment's size.
        size: u64,
        /// Where the payload starts.
        offset: u64,
        /// The payload's length.
        len: u64,
    },
}

impl Payload {
    /// The segment holding the payload, if any.
    pub fn segment(&self) -> Option<SegmentId> {
        match self {
            Self::Inline(_) => None,
            Self::Fresh { segment, .. } | Self::Pooled { segment, .. } => Some(*segment),
        }
    }

    /// The payload's length.
    pub fn len(&self) -> u64 {
        match self {
            Self::Inline(b) => b.len() as u64,
            Self::Fresh { len, .. } | Self::Pooled { len, .. } => *len,
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The way the payload travels, for reports.
    pub fn mode(&self) -> Mode {
        match self {
            Self::Inline(_) => Mode::Inline,
            Self::Fresh { .. } => Mode::Fresh,
            Self::Pooled { .. } => Mode::Pooled,
        }
    }
}

/// The payload of a publish ([`DataPlane::publish_topic`](super::DataPlane::publish_topic),
/// [`Member::publish_topic`](crate::Member::publish_topic)): a [`Payload`], or the bytes of an
/// inline one borrowed for the call. Either way the data plane copies inline bytes into
/// what carries them (a ring, a record, a local delivery) during the call; borrowed, nothing
/// stands between the application's bytes and those copies (a 4 KiB message's `memcpy` into
/// a buffer of its own, for one). An owned inline payload's buffer is kept for the next
/// records.
///
/// ```
/// use ipc_proto::data::{Outbound, Payload};
///
/// let bytes = [1u8, 2, 3];
/// assert_eq!(Outbound::Inline(&bytes).bytes(), &bytes);
/// let owned: Outbound = Payload::Inline(bytes.to_vec()).into();
/// assert_eq!(owned.bytes(), &bytes);
/// assert_eq!(owned.into_owned(), Payload::Inline(bytes.to_vec()));
/// ```
#[derive(Debug)]
pub enum Outbound<'a> {
    /// A payload the data plane may keep.
    Payload(Payload),
    /// An inline payload's bytes, borrowed.
    Inline(&'a [u8]),
}

impl Outbound<'_> {
    /// The bytes carried in the message's frame: an inline payload's, none for a segment's.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Inline(b) => b,
            Self::Payload(Payload::Inline(b)) => b,
            Self::Payload(_) => &[],
        }
    }

    /// The segment holding the payload, if any.
    pub fn segment(&self) -> Option<SegmentId> {
        match self {
            Self::Inline(_) => None,
            Self::Payload(p) => p.segment(),
        }
    }

    /// The payload, owned (a borrowed one copied).
    pub fn into_owned(self) -> Payload {
        self.into_owned_with(|| None)
    }

    /// [`into_owned`](Self::into_owned), a borrowed payload copied into the buffer `spare`
    /// gives if it gives one (a buffer the data plane left,
    /// [`DataPlane::spare_buffer`](super::DataPlane::spare_buffer): no allocation); `spare` is
    /// called only for a borrowed payload.
    pub fn into_owned_with(self, spare: impl FnOnce() -> Option<Vec<u8>>) -> Payload {
        match self {
            Self::Inline(b) => {
                let mut buf = spare().unwrap_or_default();
                buf.clear();
                buf.extend_from_slice(b);
                Payload::Inline(buf)
            }
            Self::Payload(p) => p,
        }
    }
}

impl From<Payload> for Outbound<'_> {
    fn from(p: Payload) -> Self {
        Self::Payload(p)
    }
}

/// How a payload travels.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub enum Mode {
    /// In the frame.
    Inline,
    /// In a fresh memfd per message.
    Fresh,
    /// In a pool segment.
    Pooled,
}

impl Mode {
    /// `inline`, `fresh` or `pooled`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Inline => "inline",
            Self::Fresh => "fresh",
            Self::Pooled => "pooled",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A payload delivered to this node.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Delivered {
    /// The bytes, in one allocation a driver's message can share as it is (no second one
    /// per message to wrap them). The data plane may hold a reference too (payloads of
    /// 512 bytes and more, its last 64): once every other is dropped, it writes a later
    /// payload of the same length into that allocation. Only shared, never unwrapped: the
    /// bytes a holder sees never change.
    Inline(Arc<[u8]>),
    /// The first `len` bytes of a fresh segment, now the driver's to map and close.
    Fresh {
        /// The segment.
        segment: SegmentId,
        /// The payload's length.
        len: u64,
    },
    /// A range of a pool segment; give it back with [`DataCmd::Release`] once read.
    ///
    /// [`DataCmd::Release`]: super::DataCmd::Release
    Pooled {
        /// The segment (the driver's handle, mapped once).
        segment: SegmentId,
        /// Where the payload starts.
        offset: u64,
        /// The payload's length.
        len: u64,
        /// What to give back.
        slot: SlotRef,
    },
}

/// A buffer for an inline payload this node receives, from
/// [`DataPlane::payload_buffer`](super::DataPlane::payload_buffer): the driver writes the
/// payload into it (a ring's reader pops it straight in,
/// [`RingReceiver::next_into`](crate::ring::link::RingReceiver::next_into)) and hands it back
/// with [`DataPlane::receive_payload`](super::DataPlane::receive_payload), which delivers it
/// as it is: one copy out of the ring, none after (two for the rare message popped before
/// its turn, which waits in the reader's own buffer).
#[derive(Debug)]
pub struct PayloadBuffer(pub(super) Arc<[u8]>);

impl PayloadBuffer {
    /// A new buffer of `len` zeroes.
    pub(crate) fn zeroed(len: usize) -> Self {
        Self(std::iter::repeat_n(0, len).collect())
    }

    /// The payload's bytes as written so far.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl AsMut<[u8]> for PayloadBuffer {
    fn as_mut(&mut self) -> &mut [u8] {
        // Made unshared by the data plane, and never shared before it takes it back (an empty
        // slice otherwise: the writer finds it too short).
        let unique = Arc::get_mut(&mut self.0);
        debug_assert!(unique.is_some(), "a payload buffer is never shared");
        unique.unwrap_or_default()
    }
}

/// A message for a local subscription.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Delivery {
    /// The topic.
    pub topic: Arc<str>,
    /// The publishing node.
    pub publisher: NodeId,
    /// The publisher's sequence number for the topic.
    pub seq: u64,
    /// The link it came on ([`LOCAL`] for this node's own messages).
    pub peer: PeerId,
    /// The payload.
    pub payload: Delivered,
}

/// The pseudo-link of messages this node delivers to itself.
pub const LOCAL: PeerId = PeerId(u64::MAX);

/// An inline message's payload given without its record: borrowed, or in a buffer of the
/// plane's own ([`DataPlane::payload_buffer`](super::DataPlane::payload_buffer)) to deliver as it is.
pub(super) enum InlineBody<'a> {
    Bytes(&'a [u8]),
    Buffer(Arc<[u8]>),
}

impl InlineBody<'_> {
    pub(super) fn bytes(&self) -> &[u8] {
        match self {
            Self::Bytes(b) => b,
            Self::Buffer(b) => b,
        }
    }
}
