//! The payload API: publishers, subscriptions, bus channels.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use ipc_proto::SpokeCmd;
use ipc_proto::data::{Incoming, Paths, Payload};

use crate::data::{
    Loan, LoanKind, Message, Outgoing, PoolWriter, PooledLoan, PublisherOptions, QueueWaiter,
    SendMode, SubQueue, SubscriptionCounters, lock,
};
use crate::reactor::{Core, Linger, Look, Stopped};
use crate::request::{LEFT, Request, Requester};
use ipc_driver_core::{
    AdaptiveWait, AdaptiveWaits, DriverError, LOOKS_PER_CLOCK, PastWindow, RecvError, WRITING_SPIN,
    fresh_loan, inline_buffer, later,
};
use ipc_os::memfd::SealSet;

/// What publishers and subscriptions need of their node.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) requester: Requester,
    /// The node's state, which publishing threads drive themselves.
    pub(crate) core: Arc<Core>,
    pub(crate) outgoing: Arc<Outgoing>,
    /// Whether the group is open only to this uid (pooled payloads by default) and the node's
    /// links take rings: how `SendMode::Auto` sends a payload.
    pub(crate) paths: Paths,
}

impl Handle {
    pub(crate) fn send(&self, r: Request) -> Result<(), DriverError> {
        self.requester.send(r)
    }

    /// Publishes on the calling thread (see [`Core::publish`]); with `spare`, takes a spare
    /// buffer for the next inline payload.
    fn publish(
        &self,
        topic: &Arc<str>,
        payload: Payload,
        spare: bool,
    ) -> Result<Option<Vec<u8>>, DriverError> {
        self.core
            .publish(topic, payload, spare)
            .map_err(|Stopped| self.requester.stopped())
    }

    /// A topology command whose answer is not awaited (its errors were checked before).
    fn cmd(&self, cmd: SpokeCmd) -> Result<(), DriverError> {
        self.requester.cmd(cmd)
    }
}

/// Publishes messages on one topic: created by [`Node::publisher`](crate::Node::publisher),
/// which announces the topic; dropping the node's last publisher of the topic retracts it.
///
/// Payloads go point to point to every node subscribed to the topic, never through the hub:
/// inline (in the link's ring or its socket record) up to
/// [`PublisherOptions::auto_inline_max`], larger ones in a memfd whose fd is passed with
/// `SCM_RIGHTS` once (pooled) or with each message (fresh) ([`SendMode`]).
///
/// ```no_run
/// # fn main() -> Result<(), ipc_driver_std::DriverError> {
/// let node = ipc_driver_std::Node::builder("camera").group("robot").join()?;
/// let frames = node.publisher("frames", "image/x-raw")?;
/// frames.publish(b"small: inline")?;
/// let mut loan = frames.loan(4 << 20)?;   // written in place, sent without a copy
/// loan.fill(0x7f);
/// frames.send(loan)?;
/// # Ok(()) }
/// ```
pub struct Publisher {
    handle: Handle,
    /// Shared with every message's command: a publish copies no name.
    topic: Arc<str>,
    options: PublisherOptions,
    /// A buffer the last inline message left (see [`Member::spare_buffer`]), for the next
    /// inline loan: no allocation, no zeroing.
    ///
    /// [`Member::spare_buffer`]: ipc_proto::Member::spare_buffer
    spare: Mutex<Option<Vec<u8>>>,
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("options", &self.options)
            .finish()
    }
}

impl Publisher {
    pub(crate) fn new(
        handle: Handle,
        topic: &str,
        mime: &str,
        options: PublisherOptions,
    ) -> Result<Self, DriverError> {
        let topic: Arc<str> = Arc::from(topic);
        let publisher = |reply| Request::Publisher {
            topic: Arc::clone(&topic),
            mime: mime.into(),
            reply,
        };
        handle.requester.call(publisher)??;
        Ok(Self {
            handle,
            topic,
            options,
            spare: Mutex::new(None),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// How a payload of `len` bytes travels.
    pub fn mode_for(&self, len: usize) -> SendMode {
        self.options.mode_for(len, self.handle.paths)
    }

    /// Publishes a copy of `data`.
    ///
    /// Sends on the calling thread: returns once the message is in its subscribers' rings or
    /// sockets, or queued for those that are full. If a subscriber with a `Block` policy is
    /// full, waits for room up to that subscriber's timeout first; after it, the message is
    /// dropped for that subscriber only.
    pub fn publish(&self, data: &[u8]) -> Result<(), DriverError> {
        let len = data.len();
        if self.mode_for(len) != SendMode::Inline {
            return self.send(self.loan_of(len, Some(data))?);
        }
        self.check_inline(len)?;
        // Borrowed under the node's lock, copied into the rings and records that carry it
        // (see `Core::publish_copy`).
        (self.handle.core)
            .publish_copy(&self.topic, data)
            .map_err(|Stopped| self.handle.requester.stopped())
    }

    /// Refuses an inline payload of `len` bytes above the publisher's inline maximum.
    fn check_inline(&self, len: usize) -> Result<(), DriverError> {
        if len > self.options.inline_max {
            return Err(DriverError::TooLarge {
                len,
                max: self.options.inline_max,
            });
        }
        Ok(())
    }

    /// A writable buffer of `len` bytes for the next message, sent without a copy by
    /// [`send`](Self::send). Pooled: a pool segment; fresh: a new memfd; inline: a buffer.
    pub fn loan(&self, len: usize) -> Result<Loan, DriverError> {
        self.loan_of(len, None)
    }

    /// A loan of `len` bytes holding `data` (of that length) if given, else what [`Loan`]
    /// says (zeroes, or what an earlier message left): an inline one is a copy of `data`,
    /// not zeroes written over.
    fn loan_of(&self, len: usize, data: Option<&[u8]>) -> Result<Loan, DriverError> {
        let kind = match self.mode_for(len) {
            SendMode::Inline => {
                self.check_inline(len)?;
                let bytes = inline_buffer(lock(&self.spare).take(), len, data);
                return Ok(Loan {
                    kind: LoanKind::Inline(bytes),
                    len,
                });
            }
            SendMode::Pooled => {
                match self
                    .handle
                    .outgoing
                    .pool_slot(len, self.options.pool_wait, || {
                        self.handle.core.take_returns(true)
                    })? {
                    Some((segment, seg)) => {
                        // Its subscribers' threads about to sleep poll a little longer: the
                        // message is on its way (the ring's `writing` hint).
                        self.handle.core.writing(&self.topic);
                        LoanKind::Pooled(PooledLoan {
                            segment,
                            seg: PoolWriter::new(seg),
                        })
                    }
                    // The pool is at its bound and nothing came back in time: this one goes fresh.
                    None => fresh_loan(len)?,
                }
            }
            _ => fresh_loan(len)?,
        };
        let mut loan = Loan { kind, len };
        if let Some(data) = data {
            loan.copy_from_slice(data);
        }
        Ok(loan)
    }

    /// Sends a loan's buffer as the next message (see [`publish`](Self::publish)).
    pub fn send(&self, loan: Loan) -> Result<(), DriverError> {
        let len = loan.len;
        let inline = matches!(loan.kind, LoanKind::Inline(_));
        let payload = match loan.kind {
            LoanKind::Inline(bytes) => Payload::Inline(bytes),
            LoanKind::Pooled(PooledLoan { segment, seg }) => {
                // The writer, and with it the mapping, goes back to the segment here.
                let size = seg.len() as u64;
                Payload::Pooled {
                    segment,
                    size,
                    offset: 0,
                    len: len as u64,
                }
            }
            LoanKind::Fresh { segment, map } => {
                drop(map);
                segment.seal(SealSet::FRESH)?;
                let id = self.handle.outgoing.add_fresh(segment.into_fd());
                Payload::Fresh {
                    segment: id,
                    len: len as u64,
                }
            }
        };
        let spare = self.handle.publish(&self.topic, payload, inline)?;
        if spare.is_some() {
            *lock(&self.spare) = spare;
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // The node retracts the topic once its last publisher goes.
        let _ = self.handle.send(Request::Withdraw(Arc::clone(&self.topic)));
    }
}

/// Receives the messages of one topic: created by
/// [`Node::subscription`](crate::Node::subscription), which subscribes to the topic; dropping
/// it unsubscribes.
///
/// Messages from each publisher arrive in order. The queue holds
/// [`SubscriptionOptions::depth`](crate::SubscriptionOptions::depth) messages and applies the
/// subscription's policy when full: `Block` holds publishers back (lossless), `DropOldest` and
/// `DropNewest` drop. Iterating blocks until the next message and ends when the node leaves.
pub struct Subscription {
    handle: Handle,
    topic: Arc<str>,
    queue: Arc<SubQueue>,
    /// Without [`SubscriptionOptions::spin`](crate::SubscriptionOptions::spin): whether a
    /// receive looks at the rings for up to [`RECV_SPIN`](ipc_driver_core::RECV_SPIN) before
    /// it sleeps, and on, up to [`WRITING_SPIN`], while a publisher says it fills a message
    /// for this node.
    waits: AdaptiveWaits,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn new(handle: Handle, topic: &str, queue: SubQueue) -> Result<Self, DriverError> {
        let topic: Arc<str> = Arc::from(topic);
        let queue = Arc::new(queue);
        handle.send(Request::Take(Arc::clone(&topic), Arc::clone(&queue)))?;
        handle.cmd(SpokeCmd::Subscribe {
            topic: topic.to_string(),
        })?;
        Ok(Self {
            handle,
            topic,
            queue,
            waits: AdaptiveWaits::default(),
        })
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next message if one is queued; else [`RecvError::Empty`], or why none will come
    /// ([`RecvError::is_final`]). Losses are skipped (see [`try_recv_incoming`]).
    ///
    /// [`try_recv_incoming`]: Self::try_recv_incoming
    pub fn try_recv(&self) -> Result<Message, RecvError> {
        loop {
            if let Incoming::Message(m) = self.try_recv_incoming()? {
                return Ok(m);
            }
        }
    }

    /// The next message, waiting for it; once none will come, why: the node has left
    /// ([`RecvError::Left`]) or stopped by itself ([`RecvError::Stopped`]). Losses are
    /// skipped (see [`recv_incoming`](Self::recv_incoming)).
    pub fn recv(&self) -> Result<Message, RecvError> {
        loop {
            if let Incoming::Message(m) = self.recv_incoming()? {
                return Ok(m);
            }
        }
    }

    /// The next message, waiting at most `timeout` ([`RecvError::TimedOut`]), or why none
    /// will come. Losses are skipped (see [`recv_incoming_timeout`]).
    ///
    /// [`recv_incoming_timeout`]: Self::recv_incoming_timeout
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvError> {
        // What is queued already is taken without reading the clock.
        while let Some(item) = self.queue.try_recv() {
            if let Incoming::Message(m) = item {
                return Ok(m);
            }
        }
        let mut now = Instant::now();
        let deadline = later(now, timeout);
        loop {
            match self.recv_incoming_until(now, deadline) {
                Some(Ok(Incoming::Message(m))) => return Ok(m),
                Some(Ok(Incoming::Lost(_))) => now = Instant::now(),
                Some(Err(e)) => return Err(e),
                None => return Err(RecvError::TimedOut(timeout)),
            }
        }
    }

    /// The next message or [`Loss`](crate::Loss), waiting for it: messages of a publisher
    /// that will not come (dropped by a policy, lost with a link or this node's expulsion)
    /// are told in their place, after that publisher's earlier messages and before its next.
    /// Per publisher, messages received plus messages told lost are the messages it published
    /// since this subscription began.
    ///
    /// ```no_run
    /// use ipc_driver_std::{Incoming, Node};
    ///
    /// let node = Node::builder("viewer").group("demo").join()?;
    /// let frames = node.subscription("frames", Default::default())?;
    /// while let Ok(item) = frames.recv_incoming() {
    ///     match item {
    ///         Incoming::Message(m) => println!("{} bytes, seq {}", m.len(), m.seq()),
    ///         Incoming::Lost(l) => eprintln!("{} lost ({})", l.count, l.reason),
    ///     }
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn recv_incoming(&self) -> Result<Incoming<Message>, RecvError> {
        if let Some(m) = self.queue.try_recv() {
            return Ok(m);
        }
        if let Some(m) = self.spin(None, Instant::now()) {
            return Ok(m);
        }
        let _waiter = self.wait(None);
        self.queue.recv_deadline(None).ok_or_else(|| self.ended())
    }

    /// The next message or loss if one is queued (see [`recv_incoming`]); else
    /// [`RecvError::Empty`], or why none will come.
    ///
    /// [`recv_incoming`]: Self::recv_incoming
    pub fn try_recv_incoming(&self) -> Result<Incoming<Message>, RecvError> {
        match self.queue.try_recv() {
            Some(m) => Ok(m),
            None if self.queue.is_closed() => Err(self.ended()),
            None => Err(RecvError::Empty),
        }
    }

    /// The next message or loss (see [`recv_incoming`]), waiting at most `timeout`
    /// ([`RecvError::TimedOut`]), or why none will come.
    ///
    /// [`recv_incoming`]: Self::recv_incoming
    pub fn recv_incoming_timeout(&self, timeout: Duration) -> Result<Incoming<Message>, RecvError> {
        if let Some(m) = self.queue.try_recv() {
            return Ok(m);
        }
        let now = Instant::now();
        self.recv_incoming_until(now, later(now, timeout))
            .unwrap_or(Err(RecvError::TimedOut(timeout)))
    }

    /// [`Self::recv_incoming_timeout`] until `deadline`, read from the clock at `now` (a
    /// moment ago: the spin starts from it, and a timeout far away is `later`'s, never an
    /// overflow); `None` at the deadline.
    fn recv_incoming_until(
        &self,
        now: Instant,
        deadline: Instant,
    ) -> Option<Result<Incoming<Message>, RecvError>> {
        if let Some(m) = self.spin(Some(deadline), now) {
            return Some(Ok(m));
        }
        let _waiter = self.wait(Some(deadline));
        match self.queue.recv_deadline(Some(deadline)) {
            Some(m) => Some(Ok(m)),
            None if self.queue.is_closed() => Some(Err(self.ended())),
            None => None,
        }
    }

    /// With [`SubscriptionOptions::spin`](crate::SubscriptionOptions::spin): polls the
    /// node's rings on this thread for up to that long (or until `deadline`) for the next
    /// message or loss; never if it is zero. Without: as the subscription's
    /// [`AdaptiveWaits`] decide (up to [`RECV_SPIN`](ipc_driver_core::RECV_SPIN) while such
    /// waits find messages, on up to [`WRITING_SPIN`] while a publisher says it fills one
    /// for this node). `None`: nothing came, sleep. `now`: the clock a moment ago, the
    /// spin's start. The caller has looked at the queue first; a message queued since is
    /// found by the first look, or by the wait that follows.
    fn spin(&self, deadline: Option<Instant>, now: Instant) -> Option<Incoming<Message>> {
        let own = self.queue.options.spin;
        let core = &self.handle.core;
        // Without a spin of its own: an adaptive wait.
        let mut wait = match own {
            Some(Duration::ZERO) => return None,
            Some(_) => None,
            None => Some(self.waits.start(|| core.peer_writing())?),
        };
        let spin = own.or(wait.map(|w| w.window())).unwrap_or_default();
        let start = now;
        let cap = |d: Duration| {
            let after = later(start, d);
            deadline.map_or(after, |dl| dl.min(after))
        };
        let until = cap(spin);
        // Only an adaptive wait polls on for a publisher's hint (a clock sum is about 30
        // instructions, on a message's path).
        let writing_until = wait.map(|_| cap(WRITING_SPIN));
        // The spin starts with the first look, in the same hold of the node's lock; unless
        // another thread holds it right now.
        let mut first = true;
        let mut looks = 0u32;
        // The clock as last read: the looks' `now` (see `Core::poll_rings`).
        let mut clock = start;
        // The time of the look that found the message, if a look of this thread's did.
        let mut found_at = None;
        // Whether a look stopped the spin (it got the message: see `Core::poll_rings`).
        let mut stopped = false;
        let linger = |wait: Option<AdaptiveWait>| Linger {
            spin,
            follow_hint: wait.is_some(),
            hinted: wait.is_some_and(|w| w.hinted()),
        };
        let got = loop {
            let looked = match core.poll_rings(clock, &self.queue, linger(wait), first) {
                Look::Got(m) => {
                    stopped = true;
                    break Some(m);
                }
                Look::Done => true,
                Look::NotNow if first => {
                    if !core.spin_start() {
                        return None;
                    }
                    false
                }
                Look::NotNow => false,
            };
            first = false;
            if let Some(m) = self.queue.try_recv() {
                found_at = looked.then_some(clock);
                break Some(m);
            }
            looks = looks.wrapping_add(1);
            if !looks.is_multiple_of(LOOKS_PER_CLOCK) {
                std::hint::spin_loop();
                continue;
            }
            if self.queue.is_closed() {
                break None;
            }
            let now = Instant::now();
            clock = now;
            if now >= until {
                let Some(w) = &mut wait else {
                    break None;
                };
                let writing = writing_until.is_some_and(|w| now < w);
                match w.past_window(&self.waits, writing, core.peer_writing()) {
                    PastWindow::Poll => {}
                    PastWindow::LookAgain => continue,
                    PastWindow::End => break None,
                }
            }
            std::hint::spin_loop();
        };
        // A thread that got its message comes back for the next soon: the rings stay
        // unparked for one more spin, or, while a publisher says it fills its next message
        // for this node, as long as the thread would poll for that one: then its push wakes
        // nobody, whether it comes before this thread is back or after. (Checked at every
        // message found: without it, pooled 4 to 64 KiB streams ran 5-15 % slower.) One that
        // did not get a message sleeps, and the rings park now.
        if !stopped {
            let linger = match got {
                Some(_) => linger(wait).after(|| core.peer_writing()),
                None => Duration::ZERO,
            };
            core.spin_stop(linger, found_at);
        }
        if let Some(w) = wait {
            w.end(&self.waits, got.is_some());
        }
        got
    }

    /// With nothing queued, waits on the node's rings on this thread, which reads what they
    /// bring (see [`Core::wait_on_rings`](crate::reactor::Core::wait_on_rings)), until the
    /// queue has an item or closes, or `deadline`. Returns at once if the rings are not this
    /// thread's to wait on; the queue's own wait follows either way, counted as such while
    /// what this returns is kept.
    fn wait(&self, deadline: Option<Instant>) -> Option<QueueWaiter> {
        if self.queue.is_ready() {
            return None;
        }
        self.handle.core.wait_on_rings(&self.queue, deadline)
    }

    /// Why no message will come: the queue is closed.
    fn ended(&self) -> RecvError {
        let s = self.handle.requester.shared().lock();
        if s.no_group {
            drop(s);
            return RecvError::Stopped(self.handle.requester.no_group().to_string());
        }
        match &s.stopped {
            Some(why) if why != LEFT => RecvError::Stopped(why.clone()),
            _ => RecvError::Left,
        }
    }

    /// Messages received, dropped by this subscription's queue, told lost, and queued.
    pub fn counters(&self) -> SubscriptionCounters {
        self.queue.counters()
    }
}

/// Iterating blocks for each message, and ends once none will come.
impl Iterator for &Subscription {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.queue.close();
        let weak: Weak<SubQueue> = Arc::downgrade(&self.queue);
        // The node unsubscribes once the topic's last subscription goes.
        let _ = self
            .handle
            .send(Request::Drop(Arc::clone(&self.topic), weak));
    }
}

/// A bus channel: every member's message reaches every other member, never the sender.
///
/// A channel `name` is the topic `bus:<name>`: every member publishes and subscribes to it, and a
/// node never receives its own messages. Members come and go with the group's topology; a hung
/// member leaves with the keepalive.
pub struct Bus {
    publisher: Publisher,
    subscription: Subscription,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("topic", &self.publisher.topic)
            .finish()
    }
}

impl Bus {
    pub(crate) fn new(publisher: Publisher, subscription: Subscription) -> Self {
        Self {
            publisher,
            subscription,
        }
    }

    /// Sends `data` to every other member.
    pub fn send(&self, data: &[u8]) -> Result<(), DriverError> {
        self.publisher.publish(data)
    }

    /// The next message from another member (see [`Subscription::recv`]).
    pub fn recv(&self) -> Result<Message, RecvError> {
        self.subscription.recv()
    }

    /// The next message, waiting at most `timeout` (see [`Subscription::recv_timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Message, RecvError> {
        self.subscription.recv_timeout(timeout)
    }

    /// The next message if one is queued (see [`Subscription::try_recv`]).
    pub fn try_recv(&self) -> Result<Message, RecvError> {
        self.subscription.try_recv()
    }
}
