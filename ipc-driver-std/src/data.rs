//! Payloads: publishers, loans, messages and subscriptions.
//!
//! What application threads share with the I/O thread for the data path: the publisher's pool
//! of segments and its fresh segments (application threads fill them, the links send their
//! fds), the queues of subscriptions, and the mailbox through which dropped messages give
//! their pool ranges back. (The publishing credit, which a `Block` subscriber holds back, is
//! kept under the node's own lock: `reactor::credits`.)

use std::collections::BTreeMap;
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use ipc_proto::PeerId;
use ipc_proto::data::{Inbox, Incoming, Loss, Offered, Pool, SegmentId};
pub(crate) use ipc_proto::data::{PublisherOptions, SendMode, SubscriptionOptions};
use ipc_proto::wire::SlotRef;

pub(crate) use ipc_driver_core::Message;
use ipc_driver_core::{LoanBuf, POOL_IDLE, PoolBytes, SegmentsInUse, Via, later};
use ipc_os::memfd::{MappingMut, SealSet, Segment};
use ipc_os::poll::Waker;

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ids of fresh segments start here; pool segments below.
const FRESH_IDS: u64 = 1 << 48;

/// A pool segment: created and sealed once, written by one loan at a time.
pub(crate) struct PoolSegment {
    segment: Segment,
    /// The writer's mapping, created before the seals (no new one can be made after them). A
    /// loan takes it out for as long as it holds the segment (see [`PoolWriter`]).
    map: Mutex<Option<MappingMut>>,
}

impl fmt::Debug for PoolSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolSegment")
            .field("len", &self.segment.len())
            .finish_non_exhaustive()
    }
}

impl PoolSegment {
    /// The segment's size.
    pub(crate) fn len(&self) -> usize {
        self.segment.len()
    }
}

/// A pool segment lent to one loan, with the segment's writable mapping; the mapping goes
/// back to the segment when the loan is sent or dropped.
pub(crate) struct PoolWriter {
    seg: Arc<PoolSegment>,
    /// `None` only once dropped.
    map: Option<MappingMut>,
}

impl PoolWriter {
    /// Takes `seg`'s mapping, which the pool hands to one loan at a time.
    pub(crate) fn new(seg: Arc<PoolSegment>) -> Self {
        // The pool lends a segment to one loan at a time and takes it back only when the data
        // plane releases it, after that loan was sent (and so dropped its writer).
        let map = lock(&seg.map)
            .take()
            .expect("a free pool segment has its mapping");
        Self {
            seg,
            map: Some(map),
        }
    }

    /// The segment's size.
    pub(crate) fn len(&self) -> usize {
        self.seg.len()
    }

    fn map(&self) -> &MappingMut {
        self.map.as_ref().expect("taken only on drop")
    }

    fn map_mut(&mut self) -> &mut MappingMut {
        self.map.as_mut().expect("taken only on drop")
    }
}

impl Drop for PoolWriter {
    fn drop(&mut self) {
        *lock(&self.seg.map) = self.map.take();
    }
}

impl AsFd for PoolSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.segment.as_fd()
    }
}

/// A publisher's fd for a segment on its way out: the I/O thread attaches it to records.
#[derive(Clone, Debug)]
pub(crate) enum OutSegment {
    Pool(Arc<PoolSegment>),
    Fresh(Arc<OwnedFd>),
}

impl AsFd for OutSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd()
    }
}

impl OutSegment {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Self::Pool(p) => p.as_fd(),
            Self::Fresh(f) => f.as_fd(),
        }
    }
}

#[derive(Debug)]
struct PoolState {
    pool: Pool,
    segments: BTreeMap<SegmentId, Arc<PoolSegment>>,
    /// Threads waiting for a segment to come back: only then is `pool_freed` notified (a
    /// notification is a system call, and every release would pay it).
    waiting: u32,
}

/// What publishing threads share with the I/O thread.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pool: Mutex<PoolState>,
    /// When the pool's oldest free segment came back, readable without the pool's lock.
    pool_clock: PoolClock,
    pool_freed: Condvar,
    fresh: Mutex<BTreeMap<SegmentId, Arc<OwnedFd>>>,
    next_fresh: AtomicU64,
}

/// When the pool's oldest free segment came back ([`Pool::oldest_free`]), kept where the
/// I/O thread's wake checks read it without the pool's lock: every publish asks when the pool
/// is next trimmed ([`Outgoing::next_trim`]), and a lock per message costs more than the
/// answer. Updated under the pool's lock by every call that frees, takes or trims a segment.
#[derive(Debug)]
struct PoolClock {
    epoch: Instant,
    /// Nanoseconds since `epoch`, plus one; 0: no free segment.
    oldest_free: AtomicU64,
}

impl PoolClock {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            oldest_free: AtomicU64::new(0),
        }
    }

    /// Takes the pool's oldest free segment as it is now.
    fn note(&self, pool: &Pool) {
        let nanos = pool.oldest_free().map_or(0, |t| {
            let since = t.saturating_duration_since(self.epoch).as_nanos();
            u64::try_from(since).unwrap_or(u64::MAX - 1) + 1
        });
        self.oldest_free.store(nanos, Ordering::Release);
    }

    fn oldest_free(&self) -> Option<Instant> {
        match self.oldest_free.load(Ordering::Acquire) {
            0 => None,
            n => Some(self.epoch + Duration::from_nanos(n - 1)),
        }
    }
}

impl Outgoing {
    pub(crate) fn new(pool_bytes: u64) -> Self {
        Self {
            pool: Mutex::new(PoolState {
                pool: Pool::new(pool_bytes, 1),
                segments: BTreeMap::new(),
                waiting: 0,
            }),
            pool_clock: PoolClock::new(),
            pool_freed: Condvar::new(),
            fresh: Mutex::new(BTreeMap::new()),
            next_fresh: AtomicU64::new(FRESH_IDS),
        }
    }

    /// The fd of a segment, for the I/O thread.
    pub(crate) fn segment(&self, id: SegmentId) -> Option<OutSegment> {
        if id.0 >= FRESH_IDS {
            lock(&self.fresh).get(&id).cloned().map(OutSegment::Fresh)
        } else {
            lock(&self.pool)
                .segments
                .get(&id)
                .cloned()
                .map(OutSegment::Pool)
        }
    }

    /// The data plane refers to `id` no more: a pool segment is free, a fresh one is closed once
    /// the I/O thread's queues let go of it.
    pub(crate) fn release(&self, id: SegmentId) -> bool {
        if id.0 >= FRESH_IDS {
            return lock(&self.fresh).remove(&id).is_some();
        }
        let mut st = lock(&self.pool);
        let freed = st.pool.free(id, Instant::now());
        self.pool_clock.note(&st.pool);
        let waiting = st.waiting > 0;
        drop(st);
        if freed && waiting {
            self.pool_freed.notify_all();
        }
        freed
    }

    /// Destroys pool segments idle for [`POOL_IDLE`]; returns them, for the data plane to
    /// retire on the links they were offered to.
    pub(crate) fn trim(&self, now: Instant) -> Vec<SegmentId> {
        let mut st = lock(&self.pool);
        let gone = st.pool.trim(now, POOL_IDLE);
        self.pool_clock.note(&st.pool);
        for id in &gone {
            st.segments.remove(id);
        }
        gone
    }

    /// When [`trim`](Self::trim) has work next.
    pub(crate) fn next_trim(&self) -> Option<Instant> {
        self.pool_clock.oldest_free().map(|t| t + POOL_IDLE)
    }

    /// A pool segment for `len` bytes, waiting up to `wait` for one to come back when the pool
    /// is at its bound; before the first wait, `reclaim` takes back what subscribers gave
    /// back already and asks for a wake at their next return (called without the pool's
    /// lock).
    pub(crate) fn pool_slot(
        &self,
        len: usize,
        wait: Duration,
        reclaim: impl FnOnce(),
    ) -> std::io::Result<Option<(SegmentId, Arc<PoolSegment>)>> {
        let deadline = later(Instant::now(), wait);
        let mut reclaim = Some(reclaim);
        let mut st = lock(&self.pool);
        loop {
            if let Some(slot) = st.pool.alloc(len as u64) {
                self.pool_clock.note(&st.pool);
                if !slot.new {
                    let seg = Arc::clone(
                        st.segments
                            .get(&slot.segment)
                            .expect("allocated segments exist"),
                    );
                    return Ok(Some((slot.segment, seg)));
                }
                // Create it outside the lock: page faults are slow.
                drop(st);
                let created = create_pool_segment(slot.size as usize);
                let mut st = lock(&self.pool);
                return match created {
                    Ok(seg) => {
                        let seg = Arc::new(seg);
                        st.segments.insert(slot.segment, Arc::clone(&seg));
                        Ok(Some((slot.segment, seg)))
                    }
                    Err(e) => {
                        // Give the id back unused; the pool counts it as created, so the bound
                        // stays conservative.
                        st.pool.free(slot.segment, Instant::now());
                        self.pool_clock.note(&st.pool);
                        Err(e)
                    }
                };
            }
            if let Some(reclaim) = reclaim.take() {
                drop(st);
                reclaim();
                st = lock(&self.pool);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            st.waiting += 1;
            st = self
                .pool_freed
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            st.waiting -= 1;
        }
    }

    /// Bytes of pool segments created.
    pub(crate) fn pool_bytes(&self) -> u64 {
        lock(&self.pool).pool.bytes()
    }

    /// Pool segments handed out and not back yet, and fresh segments not released yet.
    pub(crate) fn in_use(&self) -> SegmentsInUse {
        SegmentsInUse {
            pool: lock(&self.pool).pool.busy(),
            fresh: lock(&self.fresh).len(),
        }
    }

    /// Registers a sealed fresh segment; returns its id.
    pub(crate) fn add_fresh(&self, fd: OwnedFd) -> SegmentId {
        let id = SegmentId(self.next_fresh.fetch_add(1, Ordering::Relaxed));
        lock(&self.fresh).insert(id, Arc::new(fd));
        id
    }
}

fn create_pool_segment(size: usize) -> std::io::Result<PoolSegment> {
    let segment = Segment::create("ipc-pubsub-pool", size)?;
    let map = segment.map_rw()?;
    // The writer keeps its mapping; nobody else may write, grow or shrink it.
    segment.seal(SealSet::POOLED)?;
    Ok(PoolSegment {
        segment,
        map: Mutex::new(Some(map)),
    })
}

/// A writable buffer of a given length for the next message of a [`Publisher`](crate::Publisher),
/// written in place and sent without a copy by [`Publisher::send`](crate::Publisher::send);
/// made by [`Publisher::loan`](crate::Publisher::loan).
///
/// It derefs to its bytes: zeroes, or what an earlier message of this node left in the
/// buffer or pool slot it reuses, so write all the bytes the message carries. Where they are depends on the topic's
/// [`PublisherOptions`] and the payload's size ([`via`](Self::via)): a plain buffer sent
/// inline, a slot of this node's pool of memfd segments that subscribers map once, or a fresh
/// memfd sealed when sent. Dropping a loan unsent gives its memory back.
pub struct Loan {
    pub(crate) kind: LoanKind,
    pub(crate) len: usize,
}

/// A pool segment held by a loan.
pub(crate) struct PooledLoan {
    pub(crate) segment: SegmentId,
    pub(crate) seg: PoolWriter,
}

impl PoolBytes for PooledLoan {
    fn bytes(&self) -> &[u8] {
        self.seg.map()
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        self.seg.map_mut()
    }
}

pub(crate) type LoanKind = LoanBuf<PooledLoan>;

impl Loan {
    /// How it will travel.
    pub fn via(&self) -> Via {
        self.kind.via()
    }
}

ipc_driver_core::loan_bytes!(Loan);

/// A subscription's counters ([`Subscription::counters`](crate::Subscription::counters)).
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct SubscriptionCounters {
    /// Messages received (queued for the application).
    pub received: u64,
    /// Messages this subscription's queue dropped (`DropOldest`, `DropNewest`).
    pub dropped: u64,
    /// Messages reported lost to this subscription, whatever the cause (its queue's drops
    /// included): the sum of its [`Loss`] counts.
    pub lost: u64,
    /// Messages queued now, not received by the application yet.
    pub queued: usize,
}

/// Gives received pooled ranges back to their publisher when the last message using them goes.
pub(crate) struct ReleaseGuard {
    peer: PeerId,
    slot: SlotRef,
    mailbox: Arc<Mailbox>,
}

impl ReleaseGuard {
    pub(crate) fn new(peer: PeerId, slot: SlotRef, mailbox: Arc<Mailbox>) -> Self {
        Self {
            peer,
            slot,
            mailbox,
        }
    }
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        self.mailbox.release(self.peer, self.slot);
    }
}

/// Acts on a mailbox's request on the calling thread, if it can right now: the node's state
/// ([`Core`](crate::reactor::Core)) does, so that a thread that gives a range back or drains
/// a paused queue need not wake the I/O thread to do it.
pub(crate) trait ActNow: Send + Sync {
    /// Gives `slot` back to `peer` now; `false` if the node's state is held (by this thread
    /// too): queue it for the I/O thread.
    fn release(&self, peer: PeerId, slot: SlotRef) -> bool;

    /// Reads `peer`'s link paused by a full queue again, now; `false` if the node's state is
    /// held.
    fn resume(&self, peer: PeerId) -> bool;
}

/// Requests from any thread: ranges to give back, links to resume reading. Done on the
/// calling thread where the node's state is free ([`ActNow`]), else queued for the I/O
/// thread, which picks them up when woken.
pub(crate) struct Mailbox {
    waker: Arc<Waker>,
    releases: Mutex<Vec<(PeerId, SlotRef)>>,
    resume: Mutex<Vec<PeerId>>,
    now: OnceLock<Weak<dyn ActNow>>,
    /// Threads of the node waiting on a queue's condition (not on the rings): the rings must
    /// park for them, or nobody reads what the publishers push (see [`Links::linger`]).
    ///
    /// [`Links::linger`]: ipc_driver_core::Links::linger
    queue_waiters: AtomicUsize,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("releases", &self.releases)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl Mailbox {
    pub(crate) fn new(waker: Arc<Waker>) -> Self {
        Self {
            waker,
            releases: Mutex::new(Vec::new()),
            resume: Mutex::new(Vec::new()),
            now: OnceLock::new(),
            queue_waiters: AtomicUsize::new(0),
        }
    }

    /// From now on, requests are done by `now` where it can.
    pub(crate) fn act_with(&self, now: Weak<dyn ActNow>) {
        let _ = self.now.set(now);
    }

    fn act_now(&self) -> Option<Arc<dyn ActNow>> {
        self.now.get().and_then(Weak::upgrade)
    }

    fn release(&self, peer: PeerId, slot: SlotRef) {
        if self.act_now().is_some_and(|a| a.release(peer, slot)) {
            return;
        }
        let first = {
            let mut r = lock(&self.releases);
            r.push((peer, slot));
            r.len() == 1
        };
        // One wakeup per batch: the I/O thread takes them all.
        if first {
            let _ = self.waker.wake();
        }
    }

    fn resume(&self, peer: PeerId) {
        if self.act_now().is_some_and(|a| a.resume(peer)) {
            return;
        }
        lock(&self.resume).push(peer);
        let _ = self.waker.wake();
    }

    /// Whether a thread of the node waits on a queue's condition, or is about to.
    pub(crate) fn has_queue_waiters(&self) -> bool {
        self.queue_waiters.load(Ordering::SeqCst) > 0
    }

    /// What to give back, grouped by link.
    pub(crate) fn take_releases(&self) -> BTreeMap<PeerId, Vec<SlotRef>> {
        let mut out: BTreeMap<PeerId, Vec<SlotRef>> = BTreeMap::new();
        for (peer, slot) in lock(&self.releases).drain(..) {
            out.entry(peer).or_default().push(slot);
        }
        out
    }

    pub(crate) fn take_resumes(&self) -> Vec<PeerId> {
        std::mem::take(&mut *lock(&self.resume))
    }
}

/// A thread counted as waiting on a queue's condition ([`SubQueue::queue_waiter`]) until
/// this is dropped.
#[must_use]
pub(crate) struct QueueWaiter(Arc<Mailbox>);

impl Drop for QueueWaiter {
    fn drop(&mut self) {
        self.0.queue_waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug)]
struct Queue {
    inbox: Inbox<Message>,
    closed: bool,
    /// Links paused because this queue filled under `Block`.
    paused: Vec<PeerId>,
    /// Threads waiting on the queue's condition: only then is it notified (a notification
    /// is a system call).
    waiting: u32,
    /// The thread waiting on the node's rings for this queue ([`Core::wait_on_rings`]), woken
    /// through this instead of the condition.
    ///
    /// [`Core::wait_on_rings`]: crate::reactor::Core::wait_on_rings
    ring_waiter: Option<Arc<Waker>>,
}

/// A subscription's queue, shared by the I/O thread (which fills it) and the application: the
/// protocol's [`Inbox`] (policy, losses in order) behind a lock.
#[derive(Debug)]
pub(crate) struct SubQueue {
    pub(crate) options: SubscriptionOptions,
    queue: Mutex<Queue>,
    /// Whether the inbox holds an item, stored under `queue`'s lock after every change of it:
    /// a look for an item finds none without that lock (two atomic operations, about 9 ns on
    /// the machines measured, at every receive). An item added while the look reads it may be
    /// missed, as by a look just before; every wait takes the lock.
    holds: AtomicBool,
    ready: Condvar,
    mailbox: Arc<Mailbox>,
}

impl SubQueue {
    pub(crate) fn new(topic: &str, options: SubscriptionOptions, mailbox: Arc<Mailbox>) -> Self {
        let queue = Queue {
            inbox: Inbox::new(Arc::from(topic), options.policy, options.depth),
            closed: false,
            paused: Vec::new(),
            waiting: 0,
            ring_waiter: None,
        };
        Self {
            options,
            queue: Mutex::new(queue),
            holds: AtomicBool::new(false),
            ready: Condvar::new(),
            mailbox,
        }
    }

    /// After a change of the inbox, under its lock: whether it holds an item now.
    fn update_holds(&self, q: &Queue) {
        self.holds.store(!q.inbox.is_empty(), Ordering::Release);
    }

    /// The I/O thread offers a message that came on `peer`: whether the link must pause
    /// (`Block`, full), and whose message the policy dropped.
    pub(crate) fn offer(&self, msg: Message, peer: PeerId) -> Offered {
        let mut q = lock(&self.queue);
        let offered = q.inbox.offer(msg);
        self.update_holds(&q);
        if offered.full {
            q.paused.push(peer);
        }
        self.notify(q);
        offered
    }

    /// [`offer`](Self::offer), and the queue's next item taken in the same hold of its lock,
    /// for the thread polling the rings for this queue (see `reactor::Core::poll_rings`): not
    /// while the queue paused a link, which taking resumes once the queue has drained enough
    /// (a resume acts on the node, whose lock the caller holds: the thread takes its item
    /// from the queue as usual).
    pub(crate) fn offer_take(
        &self,
        msg: Message,
        peer: PeerId,
    ) -> (Offered, Option<Incoming<Message>>) {
        let mut q = lock(&self.queue);
        let (offered, item) = if q.paused.is_empty() {
            q.inbox.offer_pop(msg)
        } else {
            (q.inbox.offer(msg), None)
        };
        self.update_holds(&q);
        if offered.full {
            q.paused.push(peer);
        }
        if !q.inbox.is_empty() {
            self.notify(q);
        }
        (offered, item)
    }

    /// Messages that will not come, told in their place.
    pub(crate) fn lost(&self, loss: Loss) {
        let mut q = lock(&self.queue);
        q.inbox.lost(loss);
        self.update_holds(&q);
        self.notify(q);
    }

    /// Wakes a thread waiting for the queue, if one does.
    fn notify(&self, q: MutexGuard<'_, Queue>) {
        Self::wake_ring_waiter(&q);
        let waiting = q.waiting > 0;
        drop(q);
        if waiting {
            self.ready.notify_one();
        }
    }

    /// Wakes the thread waiting on the rings for this queue, if one does. Under the queue's
    /// lock: once [`SubQueue::wait_on_rings`] has taken the waker away, it is not woken.
    fn wake_ring_waiter(q: &Queue) {
        if let Some(waker) = &q.ring_waiter
            && let Err(e) = waker.wake()
        {
            tracing::warn!(error = %e, "cannot wake a thread waiting on the rings");
        }
    }

    /// No more messages will come (the subscription or the node is closing).
    pub(crate) fn close(&self) {
        let mut q = lock(&self.queue);
        q.closed = true;
        Self::wake_ring_waiter(&q);
        drop(q);
        self.ready.notify_all();
    }

    /// A thread waits on the node's rings for this queue (`Some`, woken through `waker`
    /// when an item is added or the queue closes) or stops doing so (`None`). Whether the
    /// queue has an item or is closed: nothing to wait for.
    pub(crate) fn wait_on_rings(&self, waker: Option<Arc<Waker>>) -> bool {
        let mut q = lock(&self.queue);
        q.ring_waiter = waker;
        !q.inbox.is_empty() || q.closed
    }

    /// A thread that found the rings taken will wait on this queue's condition: counted as a
    /// queue waiter from now (under the node's lock, before any thread decides to leave the
    /// rings unparked) until the waiter is dropped.
    pub(crate) fn queue_waiter(&self) -> QueueWaiter {
        self.mailbox.queue_waiters.fetch_add(1, Ordering::SeqCst);
        QueueWaiter(Arc::clone(&self.mailbox))
    }

    /// Whether the queue has an item, or is closed: a waiting thread stops waiting.
    pub(crate) fn is_ready(&self) -> bool {
        let q = lock(&self.queue);
        !q.inbox.is_empty() || q.closed
    }

    /// The next item; once the queue has drained enough, the links it paused are resumed,
    /// after its lock is let go (the thread may read them itself, which hands it messages).
    fn take(&self, mut q: MutexGuard<'_, Queue>) -> Option<Incoming<Message>> {
        let item = q.inbox.pop()?;
        self.update_holds(&q);
        if q.paused.is_empty() || !q.inbox.may_resume() {
            return Some(item);
        }
        let paused = std::mem::take(&mut q.paused);
        drop(q);
        for peer in paused {
            self.mailbox.resume(peer);
        }
        Some(item)
    }

    /// The next item, if the inbox holds one (see `holds`: an item added during the look may
    /// be missed).
    pub(crate) fn try_recv(&self) -> Option<Incoming<Message>> {
        if !self.holds.load(Ordering::Acquire) {
            return None;
        }
        self.take(lock(&self.queue))
    }

    /// Whether the queue is closed: no message will be added.
    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.queue).closed
    }

    pub(crate) fn recv_deadline(&self, deadline: Option<Instant>) -> Option<Incoming<Message>> {
        let mut q = lock(&self.queue);
        loop {
            if !q.inbox.is_empty() {
                match self.take(q) {
                    Some(m) => return Some(m),
                    None => q = lock(&self.queue),
                }
                continue;
            }
            if q.closed {
                return None;
            }
            let left = match deadline {
                None => None,
                Some(d) => match d.saturating_duration_since(Instant::now()) {
                    left if left.is_zero() => return None,
                    left => Some(left),
                },
            };
            q.waiting += 1;
            self.mailbox.queue_waiters.fetch_add(1, Ordering::SeqCst);
            q = match left {
                None => self.ready.wait(q).unwrap_or_else(PoisonError::into_inner),
                Some(left) => {
                    self.ready
                        .wait_timeout(q, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            self.mailbox.queue_waiters.fetch_sub(1, Ordering::SeqCst);
            q.waiting -= 1;
        }
    }

    pub(crate) fn counters(&self) -> SubscriptionCounters {
        let c = lock(&self.queue).inbox.counters();
        SubscriptionCounters {
            received: c.received,
            dropped: c.dropped,
            lost: c.lost,
            queued: c.queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_proto::NodeId;
    use ipc_proto::wire::Policy;

    fn queue(policy: Policy, depth: u32) -> SubQueue {
        let mailbox = Arc::new(Mailbox::new(Arc::new(Waker::new().expect("an eventfd"))));
        let options = SubscriptionOptions {
            policy,
            depth,
            ..SubscriptionOptions::default()
        };
        SubQueue::new("t", options, mailbox)
    }

    fn message(seq: u64) -> Message {
        let publisher = NodeId::new(7).expect("non-zero");
        Message::inline(Arc::from("t"), publisher, seq, vec![seq as u8])
    }

    fn seq_of(item: Option<Incoming<Message>>) -> Option<u64> {
        match item? {
            Incoming::Message(m) => Some(m.seq()),
            Incoming::Lost(_) => None,
        }
    }

    /// The polling thread's take as a look hands a message on: the queue's head, so what
    /// was queued before comes first, counted as any received message.
    #[test]
    fn offer_take_takes_the_head_and_counts_it() {
        let q = queue(Policy::DropOldest, 4);
        let (_, item) = q.offer_take(message(1), PeerId(1));
        assert_eq!(seq_of(item), Some(1));
        assert!(q.try_recv().is_none());
        // One queued before (handed on by another thread): it comes first, the new one stays.
        q.offer(message(2), PeerId(1));
        let (_, item) = q.offer_take(message(3), PeerId(1));
        assert_eq!(seq_of(item), Some(2));
        assert_eq!(seq_of(q.try_recv()), Some(3));
        let c = q.counters();
        assert_eq!((c.received, c.queued), (3, 0));
    }

    /// A look for an item, made without the queue's lock (`holds`), sees each way an item
    /// comes into an empty queue: an offer, a loss told, a taken offer that leaves one
    /// (`offer_take_leaves_a_queue_that_paused_a_link`); and a drained queue holds none.
    #[test]
    fn a_look_without_the_lock_sees_every_change() {
        let q = queue(Policy::DropOldest, 4);
        assert!(q.try_recv().is_none(), "empty");
        q.offer(message(1), PeerId(1));
        assert_eq!(seq_of(q.try_recv()), Some(1));
        assert!(q.try_recv().is_none(), "drained");
        let publisher = NodeId::new(7).expect("non-zero");
        let reason = ipc_proto::data::LossReason::Publisher;
        q.lost(Loss::single(Arc::from("t"), publisher, 2, reason));
        assert!(
            matches!(q.try_recv(), Some(Incoming::Lost(l)) if l.first == 2),
            "the loss, told into an empty queue"
        );
        assert!(q.try_recv().is_none(), "drained");
        let (_, item) = q.offer_take(message(3), PeerId(1));
        assert_eq!(seq_of(item), Some(3));
        assert!(q.try_recv().is_none(), "handed on: nothing left");
        assert!(!q.is_ready());
    }

    /// A queue that paused a link is left to its receiver's own take, which resumes the link
    /// once it has drained enough.
    #[test]
    fn offer_take_leaves_a_queue_that_paused_a_link() {
        let q = queue(Policy::Block { timeout_ms: 100 }, 1);
        let (offered, item) = q.offer_take(message(1), PeerId(1));
        assert!(
            offered.full,
            "a Block queue of depth 1 is full with one message"
        );
        assert!(item.is_none(), "taken although the queue paused the link");
        assert_eq!(seq_of(q.try_recv()), Some(1));
    }
}
