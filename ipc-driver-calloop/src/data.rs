//! Payload memory: what a node publishes from (its pool, fresh segments, loans) and what it
//! receives (messages, which give pooled ranges back when dropped).

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use calloop::ping::Ping;
use ipc_proto::PeerId;
use ipc_proto::data::{Pool, SegmentId};
use ipc_proto::wire::SlotRef;

pub(crate) use ipc_driver_core::Message;
use ipc_driver_core::{Attachments, LoanBuf, POOL_IDLE, PoolBytes, SegmentsInUse, Via};
use ipc_os::memfd::{MappingMut, SealSet, Segment};

/// Ids of fresh segments start here; pool segments below.
const FRESH_IDS: u64 = 1 << 48;

/// A pool segment: created and sealed once, written by one loan at a time.
#[derive(Debug)]
pub(crate) struct PoolSegment {
    segment: Segment,
    map: MappingMut,
}

impl PoolSegment {
    pub(crate) fn size(&self) -> usize {
        self.map.as_slice().len()
    }
}

/// What this node publishes from.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pool: Pool,
    /// Every pool segment; `None` while a loan holds it.
    segments: HashMap<SegmentId, Option<Box<PoolSegment>>>,
    /// Sealed fresh segments, until the data plane has sent them to everyone.
    fresh: HashMap<SegmentId, OwnedFd>,
    next_fresh: u64,
}

impl Attachments<SegmentId> for Outgoing {
    /// A segment's fd, looked up when its record is sent (a record that has to wait holds a
    /// duplicate: see [`Attachments::keeps_fd`]); a segment retired before its record was
    /// queued drops the record.
    fn fd<'a>(&'a self, id: &'a SegmentId) -> Option<BorrowedFd<'a>> {
        Self::fd(self, *id)
    }
}

impl Outgoing {
    pub(crate) fn new(pool_bytes: u64) -> Self {
        Self {
            pool: Pool::new(pool_bytes, 1),
            segments: HashMap::new(),
            fresh: HashMap::new(),
            next_fresh: FRESH_IDS,
        }
    }

    /// The fd of a segment to send, if it is still there (and not loaned).
    pub(crate) fn fd(&self, id: SegmentId) -> Option<BorrowedFd<'_>> {
        if id.0 >= FRESH_IDS {
            self.fresh.get(&id).map(AsFd::as_fd)
        } else {
            self.segments.get(&id)?.as_ref().map(|s| s.segment.as_fd())
        }
    }

    /// The data plane refers to `id` no more: a pool segment is free, a fresh one closes.
    /// `false` if it is not one of ours.
    pub(crate) fn release(&mut self, id: SegmentId, now: Instant) -> bool {
        if id.0 >= FRESH_IDS {
            return self.fresh.remove(&id).is_some();
        }
        self.pool.free(id, now)
    }

    /// Destroys pool segments idle for [`POOL_IDLE`]; returns them for the data plane to retire.
    pub(crate) fn trim(&mut self, now: Instant) -> Vec<SegmentId> {
        let gone = self.pool.trim(now, POOL_IDLE);
        for id in &gone {
            self.segments.remove(id);
        }
        gone
    }

    /// When [`trim`](Self::trim) has work next.
    pub(crate) fn next_trim(&self) -> Option<Instant> {
        self.pool.oldest_free().map(|t| t + POOL_IDLE)
    }

    /// A pool segment for `len` bytes, or `None` when the pool is at its bound with none free.
    pub(crate) fn pool_loan(
        &mut self,
        len: usize,
        now: Instant,
    ) -> std::io::Result<Option<(SegmentId, Box<PoolSegment>)>> {
        let Some(slot) = self.pool.alloc(len as u64) else {
            return Ok(None);
        };
        if !slot.new {
            let seg = self
                .segments
                .get_mut(&slot.segment)
                .and_then(Option::take)
                .expect("a free pool segment is in the map, not loaned");
            return Ok(Some((slot.segment, seg)));
        }
        let created = (|| {
            let size = usize::try_from(slot.size).map_err(std::io::Error::other)?;
            let segment = Segment::create("ipc-pubsub-pool", size)?;
            let map = segment.map_rw()?;
            // The writer keeps its mapping; nobody else may write, grow or shrink it.
            segment.seal(SealSet::POOLED)?;
            Ok(Box::new(PoolSegment { segment, map }))
        })();
        match created {
            Ok(seg) => {
                self.segments.insert(slot.segment, None);
                Ok(Some((slot.segment, seg)))
            }
            Err(e) => {
                // The id goes back unused; the pool counts it as created, so the bound stays
                // conservative.
                self.pool.free(slot.segment, now);
                Err(e)
            }
        }
    }

    /// A loaned segment comes back: sent (still in use) or dropped unsent (`free`).
    pub(crate) fn give_back(
        &mut self,
        id: SegmentId,
        seg: Box<PoolSegment>,
        free: bool,
        now: Instant,
    ) {
        if let Some(slot) = self.segments.get_mut(&id) {
            *slot = Some(seg);
        }
        if free {
            self.pool.free(id, now);
        }
    }

    /// Registers a sealed fresh segment; returns its id.
    pub(crate) fn add_fresh(&mut self, fd: OwnedFd) -> SegmentId {
        let id = SegmentId(self.next_fresh);
        self.next_fresh += 1;
        self.fresh.insert(id, fd);
        id
    }

    /// Whether `id` is one of this node's pool segments.
    pub(crate) fn is_pool(&self, id: SegmentId) -> bool {
        id.0 < FRESH_IDS && self.segments.contains_key(&id)
    }

    /// Pool segments lent out (to loans or subscribers) and fresh segments not released.
    pub(crate) fn in_use(&self) -> SegmentsInUse {
        SegmentsInUse {
            pool: self.pool.busy(),
            fresh: self.fresh.len(),
        }
    }

    /// Bytes of pool segments created.
    pub(crate) fn pool_bytes(&self) -> u64 {
        self.pool.bytes()
    }
}

/// Things dropped anywhere (any thread) that the node must act on: pooled ranges received and
/// read, pool segments loaned and not sent. Pings the node's loop on the first one.
#[derive(Debug)]
pub(crate) struct Mailbox {
    ping: Ping,
    inner: Mutex<Returns>,
}

/// What the mailbox holds.
#[derive(Debug, Default)]
pub(crate) struct Returns {
    pub(crate) releases: Vec<(PeerId, SlotRef)>,
    pub(crate) loans: Vec<(SegmentId, Box<PoolSegment>)>,
}

impl Mailbox {
    pub(crate) fn new(ping: Ping) -> Self {
        Self {
            ping,
            inner: Mutex::new(Returns::default()),
        }
    }

    fn with(&self, f: impl FnOnce(&mut Returns)) {
        let mut r = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let first = r.releases.is_empty() && r.loans.is_empty();
        f(&mut r);
        drop(r);
        if first {
            self.ping.ping();
        }
    }

    pub(crate) fn take(&self) -> Returns {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A writable buffer of a given length for the next message of a topic, written in place and
/// sent without a copy by [`Node::send`](crate::Node::send); made by
/// [`Node::loan`](crate::Node::loan) (or [`NodeHandle::loan`](crate::NodeHandle::loan) on
/// another thread).
///
/// It derefs to its bytes: zeroes, or what an earlier message of this node left in the
/// buffer or pool slot it reuses, so write all the bytes the message carries. Where they are depends on the topic's
/// [`PublisherOptions`](crate::PublisherOptions) and the payload's size ([`via`](Self::via)):
/// a plain buffer sent inline, a slot of this node's pool of memfd segments that subscribers
/// map once, or a fresh memfd sealed when sent. Dropping a loan unsent gives its memory back.
pub struct Loan {
    pub(crate) topic: Arc<str>,
    pub(crate) len: usize,
    pub(crate) kind: LoanKind,
}

/// A pool segment held by a loan; given back to the node's loop if dropped unsent.
pub(crate) struct PooledLoan {
    pub(crate) segment: SegmentId,
    /// `None` once sent.
    pub(crate) seg: Option<Box<PoolSegment>>,
    pub(crate) mailbox: Arc<Mailbox>,
}

impl PoolBytes for PooledLoan {
    fn bytes(&self) -> &[u8] {
        self.seg.as_ref().map_or(&[], |s| s.map.as_slice())
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.seg.as_mut().map_or(&mut [], |s| &mut s.map[..])
    }
}

impl Drop for PooledLoan {
    fn drop(&mut self) {
        if let Some(seg) = self.seg.take() {
            let segment = self.segment;
            self.mailbox.with(|r| r.loans.push((segment, seg)));
        }
    }
}

pub(crate) type LoanKind = LoanBuf<PooledLoan>;

impl Loan {
    /// The topic it will be published on.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How it will travel.
    pub fn via(&self) -> Via {
        self.kind.via()
    }
}

ipc_driver_core::loan_bytes!(Loan);

/// Gives a received pooled range back to its publisher when the message goes.
#[derive(Debug)]
pub(crate) struct ReleaseGuard {
    pub(crate) peer: PeerId,
    pub(crate) slot: SlotRef,
    pub(crate) mailbox: Arc<Mailbox>,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let (peer, slot) = (self.peer, self.slot);
        self.mailbox.with(|r| r.releases.push((peer, slot)));
    }
}
