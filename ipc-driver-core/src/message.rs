//! A message received on a subscription: the one [`Message`] type both drivers hand to
//! applications.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use ipc_os::memfd::Mapping;
use ipc_proto::NodeId;
use ipc_proto::data::Mode;

/// How a received payload travelled ([`Message::via`]): the protocol's transfer mode.
pub use ipc_proto::data::Mode as Via;

/// A message received on a subscription.
///
/// It derefs to the payload's bytes. A payload that came in a memfd is mapped read-only and
/// borrowed, not copied; the mapping is released when the last clone of the message is dropped,
/// and a pooled range is given back to its publisher then: hold messages only as long as needed
/// (a `Block` subscriber holding `depth` of them stops its publishers).
///
/// A pooled payload is immutable by protocol, not by the kernel: a publisher never rewrites a
/// range a subscriber holds, but a buggy or hostile publisher of the same uid could. Use
/// `SendMode::Fresh` (kernel-sealed) where publishers are
/// not trusted.
#[derive(Clone)]
pub struct Message {
    topic: Arc<str>,
    publisher: NodeId,
    seq: u64,
    mode: Mode,
    payload: Payload,
}

/// The payload, shared by the message's clones: an inline one is a single allocation (the
/// one the protocol delivered it in, [`Delivered::Inline`]), with no second one around it.
///
/// [`Delivered::Inline`]: ipc_proto::data::Delivered::Inline
#[derive(Clone)]
enum Payload {
    Inline(Arc<[u8]>),
    Mapped(Arc<Mapped>),
}

struct Mapped {
    map: Arc<Mapping>,
    start: usize,
    len: usize,
    /// Dropped with the last clone of the message: gives a pooled range back.
    _release: Option<Box<dyn Any + Send + Sync>>,
}

impl Message {
    /// A message whose payload came inline. For drivers.
    pub fn inline(
        topic: Arc<str>,
        publisher: NodeId,
        seq: u64,
        bytes: impl Into<Arc<[u8]>>,
    ) -> Self {
        Self {
            topic,
            publisher,
            seq,
            mode: Mode::Inline,
            payload: Payload::Inline(bytes.into()),
        }
    }

    /// A message whose payload is `len` bytes at `start` of a mapped segment, which came as
    /// `mode`; `release` is dropped with the last clone of the message (a guard that gives a
    /// pooled range back to its publisher). `None` if the range does not lie inside the
    /// mapping. For drivers.
    #[allow(clippy::too_many_arguments)] // one constructor for both mapped kinds
    pub fn mapped(
        topic: Arc<str>,
        publisher: NodeId,
        seq: u64,
        mode: Mode,
        map: Arc<Mapping>,
        (start, len): (usize, usize),
        release: Option<Box<dyn Any + Send + Sync>>,
    ) -> Option<Self> {
        (start.checked_add(len)? <= map.len()).then_some(())?;
        Some(Self {
            topic,
            publisher,
            seq,
            mode,
            payload: Payload::Mapped(Arc::new(Mapped {
                map,
                start,
                len,
                _release: release,
            })),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The publishing node.
    pub fn publisher(&self) -> NodeId {
        self.publisher
    }

    /// The publisher's sequence number for this topic (from 1, per publisher and topic; a gap
    /// is a dropped message).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The payload's length.
    pub fn len(&self) -> usize {
        self.as_ref().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How the payload travelled: inline in the record, in a fresh memfd, or in a pool
    /// segment (it displays as `inline`, `fresh` or `pooled`).
    pub fn via(&self) -> Via {
        self.mode
    }
}

impl AsRef<[u8]> for Message {
    fn as_ref(&self) -> &[u8] {
        match &self.payload {
            Payload::Inline(v) => v,
            // The range was checked against the mapping, which never shrinks.
            Payload::Mapped(m) => &m.map[m.start..m.start + m.len],
        }
    }
}

impl Deref for Message {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.topic)
            .field("publisher", &self.publisher)
            .field("seq", &self.seq)
            .field("len", &self.len())
            .field("via", &self.via())
            .finish()
    }
}

/// What a subscription's queue needs to know of a message: its place in its publisher's
/// sequence.
impl ipc_proto::data::Sequenced for Message {
    fn publisher(&self) -> NodeId {
        self.publisher
    }

    fn seq(&self) -> u64 {
        self.seq
    }
}
