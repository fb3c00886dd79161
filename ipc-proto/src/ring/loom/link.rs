//! Loom models of a ring *link* as the drivers run it: [`RingSender`], [`RingReceiver`] and
//! [`Lent`] sequenced the way ipc-driver-core's `RingLink` (`src/ring.rs`) and `Links`
//! (`src/links/mod.rs`) sequence them, with each side's eventfd and socket in its place.
//!
//! The drivers' code uses real fds, so it cannot run here; [`Publisher`] and [`Subscriber`]
//! mirror it call for call (each method names the driver function it stands for): one I/O
//! thread per side, whose events are the ring's (`Links::ring_woken`, then flush, then a read
//! of at most a budget of records, then `Links::budget_spent`) and the socket's (a read). Change
//! them together.
//!
//! # What sleeps and what wakes
//! Each side's epoll is [`Fds`]: its eventfd, a counter that is readable while nonzero and
//! that only a reset clears (epoll is level-triggered), and its end of the link's socket,
//! readable while a record waits. A side with nothing to do blocks in [`Fds::wait`] on a loom
//! `Condvar` until one of them is readable, as `epoll_wait` would. So a lost wake (a side
//! sleeping with work pending and no write or send to come) leaves it blocked for good, and
//! once the other side has finished or blocks too, loom reports a **deadlock**. A side that
//! never blocks and never finishes (a busy loop) trips the iteration bounds
//! ([`MAX_WAKEUPS`], [`MAX_LOOPS`]). Every model runs until the subscriber has handed on every
//! message, in the order published, and the publisher has every pool range back; each also
//! checks that some execution took the paths it is about ([`Path`]).
//!
//! # The models
//! 1. Messages (`messages_*`): the subscriber pops, parks, re-checks and sleeps while the
//!    publisher pushes into a one-slot ring and waits for room; a message held behind the
//!    socket record sent before it; a spent read budget.
//! 2. Returns (`returns_*`): a publisher out of pool ranges, or with ranges out, waits for
//!    them: a range lent on the socket before the ring existed and given back before or after
//!    the publisher took the ring; returns found where room was looked for; a return ring too
//!    full, the release on the socket; a wait for returns only, which the subscriber's pops
//!    leave for its returns to wake ([`Path::PopLeftReturnsWait`]).
//! 3. The eventfd reset rule: only the ring's own event resets the publisher's eventfd, only
//!    parking the subscriber's. The models above follow it; two mutants break it.
//!
//! Not modelled: a subscription's pause and resume (`Links::set_paused`, which wakes the
//! ring's side itself), timeouts, a full socket, the `Hello` before the offer.
//!
//! # Mutants
//! Each `*_mutant` test breaks one rule of the drivers' sequencing the way an earlier version
//! did or a tempting cleanup would, and expects the model to fail: evidence that the models
//! can see that class of bug.
//!
//! The shared state is in `std::sync::Arc`s, not loom's: dropping a loom `Arc` while a
//! deadlock panic unwinds re-enters loom and aborts the process, which `should_panic` cannot
//! catch.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom \
//!     cargo test -p ipc-proto --release --lib ring::loom
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::Relaxed};

use ::loom::sync::atomic::AtomicU64;
use ::loom::sync::{Condvar, Mutex};
use ::loom::thread;

use crate::ring::layout::{W_PRODUCER_WAITING, WAIT_RETURNS_ONLY};
use crate::ring::link::{Lent, Next, NextInto, RingReceiver, RingSender, Sent, link_config};
use crate::ring::{Park, attach, init};
use crate::wire::{
    DataFrame, MessageHeader, MessageRef, SlotRef, decode_data, encode_data, encode_ring_offer,
    ring_offer,
};

type Region = Arc<Vec<AtomicU64>>;

/// Most wakeups of one side's loop in a model: a side that wakes more often spins.
const MAX_WAKEUPS: usize = 16;
/// Most rounds of one read (`Links::read_record`'s loop) before it hands on a record or stops.
const MAX_LOOPS: usize = 8;
/// Ranges taken back into one release record (`links::MAX_RETURNS`).
const MAX_RETURNS: usize = 256;

/// One side's epoll set on the link: its eventfd and its socket (see the module docs). The
/// mutex is the kernel's: each operation is atomic, and a write or a send happens before
/// whatever the side it wakes does next.
struct Fds {
    state: Mutex<FdState>,
    readable: Condvar,
}

struct FdState {
    /// The eventfd's counter.
    eventfd: u64,
    /// Records sent to this side, not read yet.
    socket: VecDeque<Vec<u8>>,
}

/// What `epoll_wait` reported.
struct Ready {
    ring: bool,
    socket: bool,
}

impl Fds {
    fn new(socket: impl IntoIterator<Item = Vec<u8>>) -> Self {
        Self {
            state: Mutex::new(FdState {
                eventfd: 0,
                socket: socket.into_iter().collect(),
            }),
            readable: Condvar::new(),
        }
    }

    /// `Waker::wake`: writes the eventfd.
    fn wake(&self) {
        self.state.lock().expect("lock").eventfd += 1;
        self.readable.notify_all();
    }

    /// `Waker::reset`: reads the eventfd, clearing it.
    fn reset(&self) {
        self.state.lock().expect("lock").eventfd = 0;
    }

    /// The peer's `send_record` on the socket (which never fills here).
    fn send(&self, record: Vec<u8>) {
        self.state.lock().expect("lock").socket.push_back(record);
        self.readable.notify_all();
    }

    /// `recv_record`; `None`: would block.
    fn recv(&self) -> Option<Vec<u8>> {
        self.state.lock().expect("lock").socket.pop_front()
    }

    /// `epoll_wait` without a timeout: blocks until the eventfd or the socket is readable.
    fn wait(&self) -> Ready {
        let mut state = self.state.lock().expect("lock");
        loop {
            let ready = Ready {
                ring: state.eventfd > 0,
                socket: !state.socket.is_empty(),
            };
            if ready.ring || ready.socket {
                return ready;
            }
            state = self.readable.wait(state).expect("lock");
        }
    }
}

/// A rule of the drivers broken on purpose (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mutation {
    /// The drivers as they are.
    None,
    /// The idle publisher resets its eventfd (`RingLink::idle_sender`): only the ring's own
    /// event (`RingLink::woken`), which flushes after it, may take a wake for room.
    PublisherResetsWhenIdle,
    /// The subscriber resets its eventfd on the ring's event: only parking may (the wake a
    /// spent read budget leaves itself is taken while `armed` stays set, and never written
    /// again).
    SubscriberResetsOnWake,
    /// The publisher counts the ranges it lends through the ring only, not those sent on the
    /// socket before the ring was there (their returns then never wake it: the pooled bench's
    /// stall at message 64).
    LentCountsRingOnly,
    /// The idle publisher with ranges out waits for "room or returns" (`prepare_wait`): with a
    /// free slot it is ready at once, and its read loop spins.
    IdleWaitsForRoom,
}

/// A path through the drivers that a model is meant to take in some execution: each test
/// checks that its paths were taken, so that a model that stopped reaching them fails.
#[derive(Clone, Copy, Debug)]
enum Path {
    /// The publisher found the ring full and slept for room.
    RoomWait = 1 << 0,
    /// It found the ring full, but ranges had come back: it came back through its own wake.
    ReturnsNotRoom = 1 << 1,
    /// The publisher slept with ranges out.
    SleptWithRangesOut = 1 << 2,
    /// The subscriber gave a range back before the publisher had the ring.
    ReturnedBeforeAttach = 1 << 3,
    /// The return ring was full: a release went on the socket.
    ReleaseOnSocket = 1 << 4,
    /// A ring message waited for a socket record sent before it.
    RingBehindSocket = 1 << 5,
    /// A socket record waited for ring messages pushed before it.
    SocketBehindRing = 1 << 6,
    /// The subscriber's read budget ran out: it woke itself.
    BudgetSpent = 1 << 7,
    /// The subscriber's park found a message at its re-check.
    ParkFoundMessage = 1 << 8,
    /// The subscriber took a message while the publisher waited for returns only, and did not
    /// wake it (its return must).
    PopLeftReturnsWait = 1 << 9,
    /// A message held behind a socket record came, once due, in the reader's buffer
    /// (`RingReceiver::next_into`).
    HeldIntoBuffer = 1 << 10,
}

/// The paths taken, over all executions of a model.
#[derive(Default)]
struct Seen(AtomicU32);

impl Seen {
    fn saw(&self, path: Path) {
        self.0.fetch_or(path as u32, Relaxed);
    }

    fn has(&self, path: Path) -> bool {
        self.0.load(Relaxed) & path as u32 != 0
    }
}

/// A message of the publisher's application.
#[derive(Clone, Copy, Debug)]
enum Msg {
    /// A topic binding: always on the socket.
    Binding,
    /// An inline message with this seq.
    Inline(u64),
    /// A pooled message with this seq: published once a pool range is free.
    Pooled(u64),
}

const TOPIC: u32 = 1;

fn binding() -> Vec<u8> {
    let topic = DataFrame::Topic {
        id: TOPIC,
        topic: "t".into(),
    };
    encode_data(&topic, &[])
}

fn header(seq: u64) -> MessageHeader {
    MessageHeader { topic: TOPIC, seq }
}

fn pooled(seq: u64, slot: SlotRef) -> Vec<u8> {
    let frame = DataFrame::Pooled {
        header: header(seq),
        segment: slot.segment,
        offset: slot.offset,
        len: 100,
    };
    encode_data(&frame, &[])
}

/// What a record is, for the order check: `(kind, seq)`.
fn describe(record: &[u8]) -> (&'static str, u64) {
    match MessageRef::of(record) {
        Some(MessageRef::Inline { header, .. }) => ("inline", header.seq),
        Some(MessageRef::Pooled { header, .. }) => ("pooled", header.seq),
        None => ("other", 0),
    }
}

impl Msg {
    fn describe(self) -> (&'static str, u64) {
        match self {
            Self::Binding => ("other", 0),
            Self::Inline(seq) => ("inline", seq),
            Self::Pooled(seq) => ("pooled", seq),
        }
    }
}

/// The publisher's `RingLink`.
struct SendEnd {
    tx: RingSender,
    armed: bool,
}

impl SendEnd {
    /// `RingLink::rearm`.
    fn rearm(&mut self, mine: &Fds) {
        if !self.armed {
            self.armed = true;
            mine.wake();
        }
    }
}

/// The publisher's driver for one link: `Links` and `RingLink`, and its application and
/// data plane as far as they matter here (messages to publish, pool ranges to carry them).
struct Publisher {
    region: Region,
    mine: Arc<Fds>,
    theirs: Arc<Fds>,
    /// `None` until the subscriber's offer is read.
    ring: Option<SendEnd>,
    lent: Lent,
    /// Records sent on the socket (`Link::sent`).
    sent: u64,
    outbox: VecDeque<Vec<u8>>,
    /// Not handed to the driver yet.
    app: VecDeque<Msg>,
    /// Free pool ranges.
    free: Vec<SlotRef>,
    /// Ranges in the pool.
    pool: usize,
    budget: usize,
    mutation: Mutation,
    seen: Arc<Seen>,
    /// Set once the publisher has the ring (this execution's; for [`Path::ReturnedBeforeAttach`]).
    attached: Arc<AtomicBool>,
}

impl Publisher {
    /// The data plane hands what it can to the driver (`Links::transmit`, which flushes);
    /// with nothing to hand on, nothing is flushed.
    fn publish(&mut self) {
        let queued = self.outbox.len();
        while let Some(&msg) = self.app.front() {
            let record = match msg {
                Msg::Binding => binding(),
                Msg::Inline(seq) => encode_data(&DataFrame::Inline(header(seq)), b"hi"),
                Msg::Pooled(seq) => match self.free.pop() {
                    Some(slot) => pooled(seq, slot),
                    None => break,
                },
            };
            self.app.pop_front();
            self.outbox.push_back(record);
        }
        if self.outbox.len() > queued {
            self.flush();
        }
    }

    /// `Links::flush` (the socket takes everything) with `RingLink::send`.
    fn flush(&mut self) {
        while let Some(bytes) = self.outbox.front() {
            if self.ring.is_some() {
                match self.send(self.lent.after(bytes)) {
                    Ok(true) => {
                        let bytes = self.outbox.pop_front().expect("front");
                        self.lent.sent(&bytes);
                        continue;
                    }
                    Ok(false) => {}
                    Err(()) => return,
                }
            }
            let bytes = self.outbox.pop_front().expect("front");
            if self.mutation != Mutation::LentCountsRingOnly {
                self.lent.sent(&bytes);
            }
            self.theirs.send(bytes);
            self.sent += 1;
            if let Some(ring) = &mut self.ring {
                ring.tx.record_sent();
            }
        }
    }

    /// `RingLink::send` of the outbox's front: `Ok(true)` in the ring, `Ok(false)` for the
    /// socket, `Err`: full, wait.
    fn send(&mut self, lent: u64) -> Result<bool, ()> {
        let r = &self.region[..];
        let ring = self.ring.as_mut().expect("a ring");
        let record = self.outbox.front().expect("front");
        loop {
            match ring.tx.send(r, record).expect("send") {
                Sent::Ring { wake } => {
                    if wake {
                        self.theirs.wake();
                    }
                    if ring.tx.watch_returns(r, lent).expect("watch") {
                        ring.rearm(&self.mine);
                    }
                    return Ok(true);
                }
                Sent::Socket => return Ok(false),
                Sent::Full => match ring.tx.prepare_wait(r).expect("wait") {
                    Park::Sleep => {
                        self.seen.saw(Path::RoomWait);
                        return Err(());
                    }
                    Park::Ready if ring.tx.has_room() => continue,
                    Park::Ready => {
                        self.seen.saw(Path::ReturnsNotRoom);
                        break;
                    }
                },
            }
        }
        ring.rearm(&self.mine);
        Err(())
    }

    /// `Links::read_record` on the publisher's side, with `RingLink::take_returns`,
    /// `Links::take_ring` and `RingLink::idle_sender`. `false`: `Read::Done`.
    fn read_record(&mut self) -> bool {
        for _ in 0..MAX_LOOPS {
            let r = &self.region[..];
            if let Some(ring) = &mut self.ring {
                let mut release = Vec::new();
                let n = ring
                    .tx
                    .take_returns(r, MAX_RETURNS, &mut release)
                    .expect("take_returns");
                if n > 0 {
                    self.lent.returned(n);
                    self.hand_on(&release);
                    return true;
                }
            }
            if let Some(record) = self.mine.recv() {
                if let Some(offer) = ring_offer(&record) {
                    offer.expect("an offer");
                    self.ring = Some(SendEnd {
                        tx: RingSender::new(attach(r).expect("attach"), self.sent),
                        armed: false,
                    });
                    self.attached.store(true, Relaxed);
                } else {
                    self.lent.read(&record);
                    self.hand_on(&record);
                }
                return true;
            }
            let lent = self.lent.get();
            let Some(ring) = &mut self.ring else {
                return false;
            };
            // `RingLink::idle_sender`.
            let again = match self.mutation {
                Mutation::PublisherResetsWhenIdle => {
                    self.mine.reset();
                    ring.tx.watch_returns(r, lent)
                }
                Mutation::IdleWaitsForRoom if lent > 0 => {
                    ring.tx.prepare_wait(r).map(|p| p == Park::Ready)
                }
                _ => ring.tx.watch_returns(r, lent),
            };
            if !again.expect("idle") {
                return false;
            }
        }
        panic!("the publisher's read loop spins");
    }

    /// The data plane takes a record from the subscriber: a release frees its ranges.
    fn hand_on(&mut self, record: &[u8]) {
        if let Ok((DataFrame::Release(refs), _)) = decode_data(record, 0, usize::MAX) {
            self.free.extend(refs);
        }
    }

    /// The driver's `read`: up to a budget of records, each acted on (`pump`) before the next;
    /// `Links::budget_spent` if it runs out.
    fn read(&mut self) {
        for _ in 0..self.budget {
            if !self.read_record() {
                return;
            }
            self.publish();
        }
        if let Some(ring) = &mut self.ring {
            ring.rearm(&self.mine);
        }
    }

    fn done(&self) -> bool {
        self.app.is_empty() && self.outbox.is_empty() && self.free.len() == self.pool
    }

    /// The driver's event loop, from the application's first publish until everything is
    /// sent and every range is back.
    fn run(mut self) {
        if self.ring.is_some() {
            // It took the ring in a read, which goes on.
            self.read();
        }
        self.publish();
        let mut wakeups = 0;
        while !self.done() {
            if self.lent.get() > 0 {
                self.seen.saw(Path::SleptWithRangesOut);
            }
            let ready = self.mine.wait();
            wakeups += 1;
            assert!(wakeups <= MAX_WAKEUPS, "the publisher spins");
            if ready.ring {
                // `Links::ring_woken` (`RingLink::woken`), then flush and read.
                let ring = self.ring.as_mut().expect("only a ring writes the eventfd");
                self.mine.reset();
                ring.armed = false;
                ring.tx.finish_wait(&self.region[..]).expect("finish_wait");
                self.flush();
                self.read();
            }
            if ready.socket {
                self.read();
            }
        }
    }
}

/// The subscriber's `RingLink`.
struct RecvEnd {
    rx: RingReceiver,
    armed: bool,
    record: Vec<u8>,
}

/// The subscriber's driver for one link (`Links` and `RingLink`), its data plane giving each
/// pooled range back as soon as the message is handed on.
struct Subscriber {
    region: Region,
    mine: Arc<Fds>,
    theirs: Arc<Fds>,
    ring: RecvEnd,
    /// A socket record read behind ring messages (`Link::held`).
    held: Option<Vec<u8>>,
    /// What was handed on, in order.
    got: Vec<(&'static str, u64)>,
    expected: usize,
    budget: usize,
    mutation: Mutation,
    seen: Arc<Seen>,
    attached: Arc<AtomicBool>,
    /// The next look is a `next_into` (the driver's, whose inline payloads come in a buffer
    /// of the reader's), the one after a `next`, and so on.
    into: bool,
    /// A message was held behind a socket record (`Path::RingBehindSocket`) and has not come
    /// yet.
    held_message: bool,
}

impl Subscriber {
    /// `RingLink::next`: `RingReceiver::next_into` and `RingReceiver::next` in turn, an
    /// inline message from the former written as the record the latter gives.
    fn next(&mut self) -> bool {
        let ring = &mut self.ring;
        let into = self.into;
        self.into = !into;
        let found = if into {
            match ring.rx.next_into(&self.region[..], |len| vec![0; len]) {
                Ok(NextInto::Inline { header, payload }) => {
                    ring.record = encode_data(&DataFrame::Inline(header), &payload);
                    if std::mem::take(&mut self.held_message) {
                        self.seen.saw(Path::HeldIntoBuffer);
                    }
                    true
                }
                Ok(NextInto::Other(Next::Record)) => {
                    ring.record = ring.rx.record().to_vec();
                    self.held_message = false;
                    true
                }
                Ok(NextInto::Other(_)) => false,
                Err(e) => panic!("next_into: {e}"),
            }
        } else {
            let next = ring.rx.next(&self.region[..]).expect("next");
            if next == Next::Record {
                ring.record = ring.rx.record().to_vec();
                self.held_message = false;
            }
            next == Next::Record
        };
        let woke = ring.rx.take_wake();
        if woke {
            self.theirs.wake();
        } else if found && self.region[W_PRODUCER_WAITING].load(Relaxed) & WAIT_RETURNS_ONLY != 0 {
            self.seen.saw(Path::PopLeftReturnsWait);
        }
        found
    }

    /// `RingLink::park`: `true` if something came meanwhile.
    fn park(&mut self) -> bool {
        self.mine.reset();
        self.ring.armed = false;
        self.ring.rx.prepare_park(&self.region[..]).expect("park") == Park::Ready
    }

    /// `Links::read_record` on the subscriber's side (with `Links::read_socket`). `false`:
    /// `Read::Done`.
    fn read_record(&mut self) -> bool {
        for _ in 0..MAX_LOOPS {
            if self.next() {
                let record = std::mem::take(&mut self.ring.record);
                self.hand_on(&record);
                return true;
            }
            if let Some(record) = self.held.take() {
                self.ring.rx.record_read();
                self.hand_on(&record);
                return true;
            }
            if let Some(record) = self.mine.recv() {
                // Ring messages pushed before this record was sent go first.
                if self.next() {
                    self.seen.saw(Path::SocketBehindRing);
                    self.held = Some(record);
                    let record = std::mem::take(&mut self.ring.record);
                    self.hand_on(&record);
                } else {
                    if self.ring.rx.has_more() {
                        self.seen.saw(Path::RingBehindSocket);
                        self.held_message = true;
                    }
                    self.ring.rx.record_read();
                    self.hand_on(&record);
                }
                return true;
            }
            if !self.park() {
                return false;
            }
            self.seen.saw(Path::ParkFoundMessage);
        }
        panic!("the subscriber's read loop spins");
    }

    /// The member takes a record; a pooled one is released at once (`Links::transmit` of the
    /// release, with `RingLink::give_back`; what the return ring cannot take goes on the
    /// socket).
    fn hand_on(&mut self, record: &[u8]) {
        self.got.push(describe(record));
        if let Some(MessageRef::Pooled {
            segment, offset, ..
        }) = MessageRef::of(record)
        {
            if !self.attached.load(Relaxed) {
                self.seen.saw(Path::ReturnedBeforeAttach);
            }
            let slots = [SlotRef { segment, offset }];
            let given = self
                .ring
                .rx
                .give_back(&self.region[..], &slots)
                .expect("give_back");
            if self.ring.rx.take_wake() {
                self.theirs.wake();
            }
            if given < slots.len() {
                self.seen.saw(Path::ReleaseOnSocket);
                let rest = DataFrame::Release(slots[given..].to_vec());
                self.theirs.send(encode_data(&rest, &[]));
            }
        }
    }

    /// The driver's `read`, then `Links::budget_spent` if the budget ran out.
    fn read(&mut self) {
        for _ in 0..self.budget {
            if !self.read_record() {
                return;
            }
        }
        self.seen.saw(Path::BudgetSpent);
        if !self.ring.armed {
            self.ring.armed = true;
            self.mine.wake();
        }
    }

    /// The driver's event loop until every message is handed on.
    fn run(mut self) -> Vec<(&'static str, u64)> {
        // It offered the ring in a read, which goes on.
        self.read();
        let mut wakeups = 0;
        while self.got.len() < self.expected {
            let ready = self.mine.wait();
            wakeups += 1;
            assert!(wakeups <= MAX_WAKEUPS, "the subscriber spins");
            if ready.ring {
                // `Links::ring_woken` (`RingLink::woken`), then flush (nothing) and read.
                if self.mutation == Mutation::SubscriberResetsOnWake {
                    self.mine.reset();
                }
                self.ring
                    .rx
                    .finish_park(&self.region[..])
                    .expect("finish_park");
                self.read();
            }
            if ready.socket {
                self.read();
            }
        }
        self.got
    }
}

/// A model: what the publisher publishes, through a ring of `capacity` slots and `returns`
/// return entries, with `pool` ranges.
struct Link {
    msgs: Vec<Msg>,
    capacity: u32,
    returns: u32,
    pool: usize,
    /// The publisher has the ring from the start; else the subscriber's offer waits on its
    /// socket, read after its first publishes.
    ring_first: bool,
    /// Read budgets (`READ_BUDGET`): the publisher's, the subscriber's.
    budgets: (usize, usize),
    mutation: Mutation,
    /// Loom's preemption bound, unless `LOOM_MAX_PREEMPTIONS` says otherwise.
    preemptions: usize,
    /// Paths some execution must take.
    paths: Vec<Path>,
}

impl Link {
    fn new(msgs: &[Msg]) -> Self {
        Self {
            msgs: msgs.to_vec(),
            capacity: 1,
            returns: 1,
            pool: 0,
            ring_first: true,
            budgets: (64, 64),
            mutation: Mutation::None,
            preemptions: 3,
            paths: Vec::new(),
        }
    }

    fn check(self) {
        let Self {
            msgs,
            capacity,
            returns,
            pool,
            ring_first,
            budgets,
            mutation,
            preemptions,
            paths,
        } = self;
        let mut builder = ::loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(preemptions);
        }
        let seen = Arc::new(Seen::default());
        let executions = Arc::new(AtomicUsize::new(0));
        let (seen2, executions2) = (seen.clone(), executions.clone());
        builder.check(move || {
            executions2.fetch_add(1, Relaxed);
            let mut config = link_config();
            config
                .capacity(capacity)
                .inline_max(16)
                .return_capacity(returns);
            let layout = config.layout().expect("layout");
            let region: Region = Arc::new(
                (0..layout.region_words())
                    .map(|_| AtomicU64::new(0))
                    .collect(),
            );
            let created = init(&region[..], &config).expect("init");
            let offer = (!ring_first).then(|| encode_ring_offer(layout.region_bytes()));
            let pub_fds = Arc::new(Fds::new(offer));
            let sub_fds = Arc::new(Fds::new(None));
            let attached = Arc::new(AtomicBool::new(ring_first));
            let ring = ring_first.then(|| SendEnd {
                tx: RingSender::new(attach(&region[..]).expect("attach"), 0),
                armed: false,
            });
            let publisher = Publisher {
                region: region.clone(),
                mine: pub_fds.clone(),
                theirs: sub_fds.clone(),
                ring,
                lent: Lent::default(),
                sent: 0,
                outbox: VecDeque::new(),
                app: msgs.iter().copied().collect(),
                free: (0..pool as u64)
                    .map(|i| SlotRef {
                        segment: 9,
                        offset: i * 4096,
                    })
                    .collect(),
                pool,
                budget: budgets.0,
                mutation,
                seen: seen2.clone(),
                attached: attached.clone(),
            };
            let subscriber = Subscriber {
                region,
                mine: sub_fds,
                theirs: pub_fds,
                ring: RecvEnd {
                    rx: RingReceiver::new(created, 0),
                    armed: false,
                    record: Vec::new(),
                },
                held: None,
                got: Vec::new(),
                expected: msgs.len(),
                budget: budgets.1,
                mutation,
                seen: seen2.clone(),
                attached,
                into: false,
                held_message: false,
            };
            let publisher = thread::spawn(move || publisher.run());
            let got = subscriber.run();
            publisher.join().expect("publisher");
            let sent: Vec<_> = msgs.iter().map(|m| m.describe()).collect();
            assert_eq!(got, sent, "handed on in the order published");
        });
        let executions = executions.load(Relaxed);
        eprintln!("{executions} executions");
        for path in paths {
            assert!(seen.has(path), "no execution took {path:?}");
        }
    }
}

// ---- (1) Messages: the subscriber pops, parks, re-checks and sleeps; the publisher waits for
// room. No lost wake, no endless sleep, every message handed on in order.

/// A binding on the socket, then two messages through a one-slot ring: a message waits for
/// the binding sent before it (held), the binding for nothing; the second message waits for
/// room; the subscriber's read budget is one record, so it also comes back through the wake
/// it leaves itself.
#[test]
fn messages_after_a_binding() {
    let mut link = Link::new(&[Msg::Binding, Msg::Inline(1), Msg::Inline(2)]);
    link.budgets = (64, 1);
    link.paths = vec![
        Path::RoomWait,
        Path::RingBehindSocket,
        Path::HeldIntoBuffer,
        Path::BudgetSpent,
        Path::ParkFoundMessage,
    ];
    link.check();
}

/// Three messages through a one-slot ring: the publisher waits for room twice, the subscriber
/// parks between messages.
#[test]
fn messages_wait_for_room() {
    let mut link = Link::new(&[Msg::Inline(1), Msg::Inline(2), Msg::Inline(3)]);
    link.paths = vec![Path::RoomWait, Path::ParkFoundMessage];
    link.check();
}

// ---- (2) Returns: the publisher with ranges out, or out of pool, waits for them and is
// always woken when one comes back.

/// A one-range pool. The first message is lent on the socket before the publisher has the
/// ring; its range comes back through the return ring, before the publisher takes the ring
/// or after. The second message needs that range, and goes through the ring; its range
/// comes back too.
#[test]
fn returns_of_ranges_lent_before_the_ring() {
    let mut link = Link::new(&[Msg::Pooled(1), Msg::Pooled(2)]);
    link.pool = 1;
    link.ring_first = false;
    link.paths = vec![Path::SleptWithRangesOut, Path::ReturnedBeforeAttach];
    link.check();
}

/// Two ranges, three messages, a one-slot ring with one return entry: the publisher waits for
/// room, for returns with room to spare, and finds returns where it looked for room; a
/// release that finds the return ring full goes on the socket. It is also (3): the publisher
/// reads (takes returns, goes idle) with a wake for room pending, which only the ring's event
/// may take.
#[test]
fn returns_with_room_and_without() {
    let mut link = Link::new(&[Msg::Pooled(1), Msg::Pooled(2), Msg::Pooled(3)]);
    link.pool = 2;
    link.preemptions = 2;
    link.paths = vec![
        Path::RoomWait,
        Path::ReturnsNotRoom,
        Path::SleptWithRangesOut,
        Path::ReleaseOnSocket,
        Path::PopLeftReturnsWait,
    ];
    link.check();
}

// ---- (3) The eventfd reset rule, and the mutants: each must fail.

/// The publisher resets its eventfd when idle: the wake for room the subscriber wrote after
/// the publisher's last check is swallowed, and the publisher sleeps with a message queued.
#[test]
#[should_panic(expected = "deadlock")]
fn publisher_resets_when_idle_mutant() {
    let mut link = Link::new(&[Msg::Inline(1), Msg::Inline(2), Msg::Inline(3)]);
    link.preemptions = 2;
    link.mutation = Mutation::PublisherResetsWhenIdle;
    link.check();
}

/// The subscriber resets its eventfd on the ring's event: after a spent budget its own wake
/// is gone while `armed` says it is there, and it sleeps with messages in the ring.
#[test]
#[should_panic(expected = "deadlock")]
fn subscriber_resets_on_wake_mutant() {
    let mut link = Link::new(&[Msg::Inline(1), Msg::Inline(2), Msg::Inline(3)]);
    link.capacity = 4;
    link.budgets = (64, 1);
    link.preemptions = 2;
    link.mutation = Mutation::SubscriberResetsOnWake;
    link.check();
}

/// The publisher does not count the range it lent on the socket before the ring: it never
/// says it waits for returns, and the one range never wakes it.
#[test]
#[should_panic(expected = "deadlock")]
fn lent_counts_ring_only_mutant() {
    let mut link = Link::new(&[Msg::Pooled(1), Msg::Pooled(2)]);
    link.pool = 1;
    link.ring_first = false;
    link.preemptions = 2;
    link.mutation = Mutation::LentCountsRingOnly;
    link.check();
}

/// The idle publisher with a range out waits for room or returns: a free slot makes it ready
/// at once, again and again. The range goes on the socket before the ring is there; the read
/// that takes the ring's offer ends idle with the range out (while the ring was there from the
/// start, such a read came after the subscriber's pop woke the publisher's wait for returns,
/// which a pop no longer does).
#[test]
#[should_panic(expected = "spins")]
fn idle_waits_for_room_mutant() {
    let mut link = Link::new(&[Msg::Pooled(1)]);
    link.pool = 1;
    link.capacity = 2;
    link.ring_first = false;
    link.preemptions = 2;
    link.mutation = Mutation::IdleWaitsForRoom;
    link.check();
}

/// More shapes, with preemption bound 2 unless `LOOM_MAX_PREEMPTIONS` says otherwise:
/// scripts of bindings, inline and pooled messages, over rings of 1 and 2 slots, 1 and 2
/// return entries, pools of 1 and 2 ranges, with the ring there from the start or taken
/// after the first publishes, read budgets of 1 and 64 on each side. About 5 minutes.
#[test]
#[ignore = "about 5 minutes; run with --ignored"]
fn sweep() {
    use Msg::{Binding, Inline, Pooled};
    let scripts: [&[Msg]; 6] = [
        &[Inline(1), Inline(2)],
        &[Binding, Inline(1), Inline(2)],
        &[Pooled(1), Pooled(2)],
        &[Binding, Pooled(1), Inline(2), Pooled(3)],
        &[Inline(1), Pooled(2), Pooled(3)],
        &[Pooled(1), Binding, Pooled(2)],
    ];
    for msgs in scripts {
        let pooled = msgs.iter().any(|m| matches!(m, Pooled(_)));
        let sizes: &[(u32, usize)] = if pooled {
            &[(1, 1), (1, 2), (2, 1), (2, 2)]
        } else {
            &[(1, 0)]
        };
        for capacity in [1, 2] {
            for &(returns, pool) in sizes {
                for ring_first in [true, false] {
                    for budgets in [(1, 1), (64, 1), (1, 64), (64, 64)] {
                        eprintln!(
                            "{msgs:?}: capacity {capacity}, returns {returns}, pool {pool}, \
                             ring first {ring_first}, budgets {budgets:?}"
                        );
                        let mut link = Link::new(msgs);
                        link.capacity = capacity;
                        link.returns = returns;
                        link.pool = pool;
                        link.ring_first = ring_first;
                        link.budgets = budgets;
                        link.preemptions = 2;
                        link.check();
                    }
                }
            }
        }
    }
}
