//! The shared-memory ring of a data link: layout, invariants and algorithms, over words both
//! processes map.
//!
//! One ring carries one data link's messages from its publisher (the [`Producer`]) to its
//! subscriber (the [`Consumer`]): a single-producer single-consumer queue of fixed-size slots,
//! each a message descriptor plus inline bytes for a small payload, and beside it a *return
//! ring* that carries pool ranges the subscriber is done with back to the publisher. This
//! module does no I/O: the OS layer creates, seals, passes and maps the region and hands it
//! over as atomic words (`ipc_os::shared::SharedRegion`'s `SharedWord`s), and the code here is
//! generic over [`Word`] so that loom model-checks the same code. The driver calls it from the application's own threads: the
//! publishing thread pushes, the receiving thread pops; each side owns its half, so neither
//! needs a lock.
//!
//! # Layout
//! Words are little-endian `u64`s; a "line" is [`LINE_WORDS`] words (128 bytes). The creator
//! writes the header ([`init`]); the other side reads and checks it ([`attach`]) and both keep
//! their own validated copy ([`Layout`]), so nothing the peer writes later moves an index.
//!
//! ```text
//! word          written by  contents
//! 0             creator     MAGIC = "IPCRING\x01"
//! 1             creator     VERSION = 2
//! 2             creator     capacity: descriptor slots, a power of two <= 65536
//! 3             creator     slot_words: 8 descriptor words + inline words, a multiple of 8
//! 4             creator     return_capacity: return entries, a power of two <= 65536
//! 5             creator     pool_len: bytes of the largest pool segment (0: none)
//! 6             creator     region_words: the whole region, checked against the above
//! 7..16         -           zero
//! 16            producer    head: messages pushed (free-running)
//! 17            producer    writing: nonzero while the producer writes a message for this
//!                           ring (it holds a loan): cpu + 2 if it says on which CPU, else 1;
//!                           a hint ([`Writer`]), cleared at its next push
//! 32            consumer    tail: messages popped (free-running)
//! 48            consumer    return head: ranges given back (free-running)
//! 64            producer    return tail: ranges taken back (free-running)
//! 80            producer    waiting: the producer's wait epoch while it waits for room (or
//!                           room or returns), | 1 << 63 while it waits for returns only;
//!                           else 0
//! 96            consumer    parked: the consumer's park epoch while it sleeps, else 0
//! 112 + i*slot_words        slot i (index & (capacity - 1)), written by the producer:
//!   +0            binding (low 32 bits: the link's topic binding) | flags << 32 (bit 0: pool)
//!   +1            seq: the publisher's number for this message on its topic
//!   +2            len: payload bytes (inline: <= inline_max; pool: the range's length)
//!   +3            pool segment (the data plane's SegmentId; 0 for inline)
//!   +4            pool offset (0 for inline)
//!   +5            sent_before: records the producer sent on the link's socket before this
//!                 message (0 where the ring is used alone; see [`link`])
//!   +6..8         zero
//!   +8..          inline bytes, 8 per word, little-endian, the last word zero-padded
//! 112 + capacity*slot_words + j*4  return entry j, written by the consumer:
//!   +0 segment  +1 offset  +2 len  +3 zero
//! ```
//!
//! `binding` and `seq` are the data plane's: a publisher binds a topic to a `u32` on a link
//! with [`DataFrame::Topic`](crate::wire::DataFrame::Topic) (still sent over the socket) and
//! numbers each topic's messages from 1 ([`MessageHeader`](crate::wire::MessageHeader)); a
//! ring descriptor is a `DataFrame::Message` without its frame. `segment` is the
//! [`SegmentId`](crate::data::SegmentId) of a pool segment offered on the link's socket.
//!
//! # Algorithms
//! - **Push** ([`Producer::push`]): if the last tail seen leaves no free slot, read the tail
//!   (`Acquire`); still full → [`Push::Full`], nothing written. Else write the slot
//!   (`Relaxed`), store `head + 1` (`Release`), then a `SeqCst` fence and read `parked`: if it
//!   holds an epoch this producer has not woken yet, [`Push::Done`] says `wake: true` and the
//!   driver writes the consumer's eventfd. A busy stream therefore costs no syscall per
//!   message; a parked consumer is woken once per park.
//! - **Pop** ([`Consumer::pop`]): if the last head seen equals the tail, read the head
//!   (`Acquire`); empty → `None`. Else read and check the descriptor, copy the inline bytes
//!   out to the caller's buffer, store `tail + 1` (`Release`; the producer may reuse the slot
//!   only after this), then the same fence and read of the producer's `waiting` word decides
//!   [`Popped::wake_producer`].
//! - **Park** (the eventcount, [`Consumer::prepare_park`]): store a new epoch into `parked`,
//!   `SeqCst` fence, read the head again. Non-empty → clear `parked`, [`Park::Ready`]. Else
//!   [`Park::Sleep`]: block on the eventfd, then [`Consumer::finish_park`] and pop again.
//!   The two fences make it impossible for the producer to miss `parked` *and* the consumer to
//!   miss the head: a wakeup is never lost. Wakeups may be spurious (an eventfd token left
//!   from a park that found a message at its re-check); the consumer just loops.
//! - **Waiting for room** ([`Producer::prepare_wait`], the `Block` policy, or a pool range to
//!   come back): the same protocol mirrored, on the `waiting` word; the consumer decides the
//!   wake after each pop and each return. A producer that waits for returns only
//!   ([`Producer::prepare_wait_returns`]: it has room, and ranges out) sets bit 63 of its
//!   epoch, and the consumer wakes it after a return, not after a pop: a publisher streaming
//!   pooled messages is woken for the ranges that come back, not also for every message taken.
//!   (A consumer that does not know the bit wakes it after pops too: spurious wakes, no lost
//!   one; a producer that does not set it is woken as before.)
//! - **Writing** ([`Producer::writing`]): a producer about to fill a message in place (a
//!   pooled loan, microseconds to milliseconds of writing) stores nonzero in `writing` (its
//!   CPU + 2 where the driver knows it, else 1); its next push stores zero. A consumer about
//!   to park may read it ([`Consumer::producer_writing`]) and spin a little longer instead:
//!   the message is on its way, and a park would cost the producer a wake write and this side
//!   a sleep and a wakeup; but not if it runs on the CPU the producer named, which the
//!   producer needs to finish ([`Writer::worth_polling_from`]). Only a hint: nothing waits on
//!   it, no wake depends on it, and a wrong value costs a spin or a park. (A producer that
//!   stores 1, as before the CPU was added, is a writer on any CPU.)
//! - **Return ring**: the consumer pushes `(segment, offset, len)` entries
//!   ([`Consumer::push_return`]), the producer pops them ([`Producer::pop_return`]), with the
//!   same index rules. Full: the consumer sends the release over the socket instead.
//!
//! # Credit and policies
//! The free slots are the credit: [`Producer::free`] (`capacity - (head - tail)`) is what the
//! link can still take. The data plane's policies stay where they are
//! ([`Policy`](crate::wire::Policy), [`HoldBack`](crate::data::HoldBack)): the driver reports
//! the ring's free slots as the link's room, so `Block` holds a publish while the ring is full
//! (waiting with [`Producer::prepare_wait`] up to the subscriber's timeout), `DropNewest`
//! drops a message the ring cannot take, and `DropOldest` drops the oldest message still
//! queued on the publisher's side (a message in the ring belongs to the consumer and is never
//! taken back). A subscriber's `depth` is at most the ring's capacity.
//!
//! # Hostile memory
//! The peer can write every word of the region at any time. So:
//! - each side keeps its own index and only reads the other's, and checks it: a head in
//!   `[last head seen, tail + capacity]`, a tail in `[last tail seen, head]`; anything else is
//!   [`RingError::Index`];
//! - every descriptor is checked after it is copied out: known flags, inline `len <=
//!   inline_max` (else [`RingError::Length`]), pool range within `pool_len`
//!   ([`RingError::PoolRange`]); the inline bytes are copied, never lent;
//! - the geometry comes from the side's own [`Layout`], never re-read for indexing; the
//!   header is re-checked on the slow paths ([`Consumer::prepare_park`],
//!   [`Producer::prepare_wait`], [`Layout::check_header`]): [`RingError::HeaderChanged`];
//! - all access is through `get` and checked arithmetic: no panic, no out-of-bounds index, and
//!   no allocation at all, let alone one sized by a peer's number.
//!
//! The peer's park and wait words only steer wakeups *of the peer*: a corrupt one costs it its
//! own wakeups (or costs us a spurious eventfd write), nothing else. Its `writing` hint only
//! steers how long this side spins before it parks, which the driver bounds. A torn descriptor (the
//! peer rewriting a slot we read) yields values that pass or fail the checks like any other.
//! A [`RingError`] means: close the link with a log line; the ring is not used again.
//!
//! # Model checking
//! `ring::loom` runs the push/pop/park/wake and return protocols under
//! [loom](https://docs.rs/loom), and `ring::loom::link` the link-level protocol
//! ([`link`]) as the drivers sequence it, each side's eventfd and socket modelled as what
//! its epoll waits on: no lost wake, no busy loop, every message handed on in order, every
//! pool range back. Each model takes a few seconds; building them takes minutes (loom's
//! atomics in every dependency), so CI does not run them:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom \
//!     cargo test -p ipc-proto --release --lib ring::loom
//! ```

mod consumer;
mod error;
mod layout;
pub mod link;
#[cfg(all(test, loom))]
mod loom;
mod producer;
#[cfg(all(test, not(loom)))]
mod tests;

use std::sync::atomic::Ordering;

pub use consumer::Consumer;
pub use error::RingError;
pub use layout::{
    DESC_WORDS, LINE_WORDS, Layout, MAGIC, MAX_CAPACITY, MAX_INLINE, MAX_REGION_BYTES,
    RETURN_WORDS, RingConfig, VERSION, Word, load_words, store_words,
};
pub use producer::Producer;

use layout::{SLOTS_START, W_CONSUMER_PARKED, W_MAGIC, W_RETURN_HEAD, words};

/// What the producer's `writing` hint says ([`Consumer::producer_writing`]): only a hint, the
/// peer's word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    /// Not writing a message for the ring.
    Idle,
    /// Writing one; where, it did not say (or said something out of range).
    Writing,
    /// Writing one on this CPU: a consumer running on the same CPU gains nothing by polling
    /// for it (the producer needs that CPU to finish), and parks.
    WritingOn(u32),
}

impl Writer {
    /// The hint as stored: 0 idle, 1 writing, `cpu + 2` writing on `cpu`.
    fn of(word: u64) -> Self {
        match word {
            0 => Self::Idle,
            1 => Self::Writing,
            w => u32::try_from(w - 2).map_or(Self::Writing, Self::WritingOn),
        }
    }

    /// The word that says it (see [`Self::of`]).
    fn word(cpu: Option<u32>) -> u64 {
        cpu.map_or(1, |c| u64::from(c) + 2)
    }

    /// Whether a consumer on CPU `here` (if known) may poll for the message: the producer is
    /// writing, and not on that CPU.
    pub fn worth_polling_from(self, here: Option<u32>) -> bool {
        match self {
            Self::Idle => false,
            Self::Writing => true,
            Self::WritingOn(cpu) => here != Some(cpu),
        }
    }
}

/// A range of a pool segment: where a pooled payload lies, or what is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct PoolRange {
    /// The segment ([`SegmentId`](crate::data::SegmentId)'s number).
    pub segment: u64,
    /// Start of the range in the segment.
    pub offset: u64,
    /// Length of the range.
    pub len: u64,
}

/// A message's payload, to push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// These bytes, copied into the slot.
    Inline(&'a [u8]),
    /// A range of a pool segment.
    Pool(PoolRange),
}

/// A popped message's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingPayload {
    /// `len` bytes, copied into the caller's buffer.
    Inline {
        /// The payload's length.
        len: usize,
    },
    /// A range of a pool segment (within the pool's length; whether the segment was offered
    /// is the caller's check).
    Pool(PoolRange),
}

/// A popped message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Popped {
    /// The topic, as bound on the link.
    pub binding: u32,
    /// The publisher's sequence number.
    pub seq: u64,
    /// Records the producer had sent on the link's socket before this message (what it gave
    /// [`Producer::push_after`]; unchecked: see [`link::RingReceiver`]).
    pub sent_before: u64,
    /// Where the payload is.
    pub payload: RingPayload,
    /// The producer waits for room (not for returns only): write its eventfd.
    pub wake_producer: bool,
}

/// What a push did.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Push {
    /// Published. `wake`: the other side sleeps on its eventfd and must be woken.
    Done {
        /// Write the other side's eventfd.
        wake: bool,
    },
    /// No free slot; nothing was written.
    Full,
}

/// What a side about to sleep must do.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Park {
    /// Sleep on the eventfd: the other side will see the flag and wake it.
    Sleep,
    /// Do not sleep: what it waited for is there.
    Ready,
}

/// Creates a ring in `region` (zeroed, then the header): for the side that made the memfd.
pub fn init<W: Word>(region: &[W], config: &RingConfig) -> Result<Layout, RingError> {
    let layout = config.layout()?;
    layout.write(region)?;
    Ok(layout)
}

/// Validates a ring another process created in `region`: its header, its length, and that it
/// is fresh (every index and flag 0, but what the consumer may do before the producer
/// attaches: park on the empty ring, and give up to the return ring's capacity of ranges
/// back, lent before the ring was there). Then make the [`Producer`] or [`Consumer`] with it.
pub fn attach<W: Word>(region: &[W]) -> Result<Layout, RingError> {
    let layout = Layout::read(region)?;
    // Header words beyond the ones checked, and the index lines.
    for (i, w) in words(region, 0, SLOTS_START)?.iter().enumerate() {
        if (i < 7 && i != W_MAGIC) || i == W_CONSUMER_PARKED {
            continue;
        }
        let found = w.load(Ordering::Acquire);
        let fresh = match i {
            W_MAGIC => true,
            W_RETURN_HEAD => found <= layout.return_capacity(),
            _ => found == 0,
        };
        if !fresh {
            return Err(RingError::NotFresh { word: i, found });
        }
    }
    Ok(layout)
}

/// Whether `range` ends within the pool.
fn check_range(layout: &Layout, range: PoolRange) -> Result<(), RingError> {
    match range.offset.checked_add(range.len) {
        Some(end) if end <= layout.pool_len() => Ok(()),
        _ => Err(RingError::PoolRange {
            offset: range.offset,
            len: range.len,
            pool: layout.pool_len(),
        }),
    }
}
