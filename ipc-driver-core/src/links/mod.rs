//! The link table: a node's `epoll` set, its group directory, its listeners and every link
//! (a topology or data socket to one peer) with its bounded outbox.
//!
//! Its methods take the [`Member`] where they feed it: [`MemberInput::Connected`],
//! [`MemberInput::Accepted`], [`MemberInput::Blocked`]/[`MemberInput::Writable`],
//! [`MemberInput::PeerDown`] and the records read from links. A link the member asks to
//! close flushes what is queued for it for up to [`CLOSE_FLUSH`], then
//! closes.
//!
//! Every hub link's peer process is watched with a pidfd ([`PidFd::open_peer`]) where the
//! kernel allows: its exit is [`MemberInput::PeerExited`], so a new hub need not wait the
//! grace for a member known to be dead. A closed link's process stays watched for
//! [`EXIT_WATCH_AFTER_CLOSE`] (the kernel hangs a dying process's sockets up just before its
//! pidfd becomes readable); a peer whose process cannot be watched (another pid namespace, a
//! kernel without pidfds, `IPC_PUBSUB_NO_PIDFD=1`) is never reported dead.
//!
//! A data link may also have a shared-memory ring ([`ipc_proto::ring::link`]): the
//! subscriber offers one when its publisher's `Hello` arrives, and from then on the
//! publisher's message records go into the ring rather than the socket, and the subscriber's
//! releases into its return ring; each side's eventfd is in the node's `epoll` set
//! ([`Ready::Ring`]), or in the rings' own set for a driver whose application threads wait on
//! the rings ([`Links::use_ring_set`]). The records the member reads are the same either way,
//! in the same order.
//!
//! A record may carry one segment's fd. What is queued with a record is a driver's attachment
//! `A`, turned into an fd only when the record is sent, by the driver's [`Attachments`]: the
//! std driver queues an fd owner (resolved by [`Owned`]), the calloop driver a segment id it
//! looks up in its outgoing segments. A record that has to wait in the outbox with an
//! attachment that does not keep its fd open ([`Attachments::keeps_fd`]) holds a duplicate of
//! the fd until it is sent: the data plane lets go of a fresh segment as soon as it has handed
//! over its records, and the driver then closes it. An attachment gone before its record was
//! queued drops the record.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_os::memfd::{self, SealSet};
use ipc_os::pidfd::{PeerProcess, PidFd};
use ipc_os::poll::{Interest, Poller, Token};
use ipc_os::rendezvous::{DataSocket, GroupDir, HubSocket};
use ipc_os::socket::{self, Recv, Sent};
use ipc_proto::data::{Delivery, ReceivedSegment};
use ipc_proto::ring::link::Lent;
use ipc_proto::wire::{DataFrame, decode_data, encode_data, hello_takes_rings, ring_offer};
use ipc_proto::{Listener, Member, MemberInput, MemberOutput, PeerId};
use slab::Slab;
use tracing::{debug, trace, warn};

use crate::log::PeerLog;
use crate::received::ReceivedSegments;
use crate::ring::{Found, RingLink};
use crate::{CLOSE_FLUSH, DATA_SEND_BUFFER, MAX_FDS};

/// The token a driver registers its own fd under (a waker, a timer) in the table's set.
pub const OWN_TOKEN: Token = Token(u64::MAX);
const HUB_LISTENER: Token = Token(u64::MAX - 1);
const DATA_LISTENER: Token = Token(u64::MAX - 2);
/// The token of the rings' own set ([`Links::use_ring_set`]) in the node's set.
const RING_SET: Token = Token(u64::MAX - 3);
/// The bit that marks a pidfd's token (the rest is its key in [`Links`]' watches).
const EXIT_TAG: u64 = 1 << 62;
/// The bit that marks a ring's eventfd's token (the rest is its link's key).
const RING_TAG: u64 = 1 << 61;
/// Most ranges taken back from a return ring into one release record.
const MAX_RETURNS: usize = 256;

/// How long the process of a closed link stays watched: the kernel closes a dying process's
/// sockets (the hangup) before its pidfd becomes readable, so the exit comes just after.
pub const EXIT_WATCH_AFTER_CLOSE: Duration = Duration::from_secs(1);

/// What a readiness report of the node's set is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    /// The driver's own fd ([`OWN_TOKEN`]).
    Own,
    /// A listener has connections to accept.
    Listener(Listener),
    /// A link, by its key.
    Link(usize),
    /// The process at the other end of a link exited (its pidfd is readable), by the watch's
    /// key: hand it to [`Links::exited`].
    Exited(usize),
    /// A link's ring has news (messages, room or returns), by the link's key: call
    /// [`Links::ring_woken`], then flush and read the link as for [`Ready::Link`].
    Ring(usize),
    /// The rings' own set has news ([`Links::use_ring_set`]): wait on it with no timeout
    /// and handle what it reports.
    RingSet,
}

impl Ready {
    /// What a readiness report's token is about.
    pub fn of(token: Token) -> Self {
        match token {
            OWN_TOKEN => Self::Own,
            HUB_LISTENER => Self::Listener(Listener::Hub),
            DATA_LISTENER => Self::Listener(Listener::Data),
            RING_SET => Self::RingSet,
            Token(t) if t & EXIT_TAG != 0 => Self::Exited((t & !EXIT_TAG) as usize),
            Token(t) if t & RING_TAG != 0 => Self::Ring((t & !RING_TAG) as usize),
            Token(key) => Self::Link(key as usize),
        }
    }
}

/// Turns a queued record's attachment into the fd to send with it.
pub trait Attachments<A> {
    /// The fd to send, or `None` if the attachment is gone (the record is dropped).
    fn fd<'a>(&'a self, attachment: &'a A) -> Option<BorrowedFd<'a>>;

    /// Whether an attachment keeps its fd open by itself until its record is sent. If not
    /// (an id the driver looks up, and closes when the data plane releases it), a record that
    /// has to wait in the outbox holds a duplicate of the fd. Default: no.
    fn keeps_fd(&self) -> bool {
        false
    }
}

/// Attachments that own their fd.
#[derive(Debug, Clone, Copy, Default)]
pub struct Owned;

impl<A: AsFd> Attachments<A> for Owned {
    fn fd<'a>(&'a self, attachment: &'a A) -> Option<BorrowedFd<'a>> {
        Some(attachment.as_fd())
    }

    fn keeps_fd(&self) -> bool {
        true
    }
}

/// What a queued record sends with it.
#[derive(Debug)]
enum Attached<A> {
    /// The driver's attachment, turned into an fd when the record is sent.
    Driver(A),
    /// A duplicate of the attachment's fd, taken when the record had to wait.
    Held(OwnedFd),
}

/// What [`Links::read_record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A record went to the member: act on what it asks before reading on (deliveries map
    /// the segments it carried; a full subscription pauses the link).
    Record,
    /// The record broke the rules at the socket level (too large, too many fds, an fd that is
    /// not a usable memfd): the member was told. Act on what it asks; the link is read no
    /// more ([`Links::read_on`]).
    Rejected,
    /// Nothing more to read now (or the link closed, and the member was told).
    Done,
}

/// What [`Links::read_record`] may read of a link, after what woke the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Everything: the socket was readable, or the link resumed.
    All,
    /// Only what costs no system call: the ring's messages, and socket records already read
    /// and held behind them. After a ring's wake, or to read the rings to their end: the
    /// socket reports its own readiness, so its records are read then, and a message the
    /// ring holds behind them with them. This saves a `recvmsg` that finds nothing for
    /// every wake of a busy ring.
    Ring,
}

/// One link to a peer.
#[derive(Debug)]
struct Link<A> {
    fd: OwnedFd,
    /// A data link (records may carry fds; the member applies flow control).
    data: bool,
    peer: PeerId,
    outbox: VecDeque<(Vec<u8>, Option<Attached<A>>)>,
    outbox_bytes: usize,
    /// Watching for writability.
    writable: bool,
    /// Reading stopped: a subscription's queue is full under `Block`, or the member rejected
    /// what the peer sent.
    paused: bool,
    /// What the socket is registered for in the set now, and whether the ring's eventfd is
    /// registered for reading. A pause leaves reading interest in place, and a resume by a
    /// reader puts it back only when its read drains the link (see
    /// [`Links::update_interest`]), so these may say more or less than the link waits for.
    registered: Interest,
    ring_registered: bool,
    /// The member was told the socket is full.
    told_blocked: bool,
    /// Closing: flush what is queued, then close, by this deadline.
    closing: Option<Instant>,
    /// A send failed (the peer has closed its end): nothing more is written, but what the peer
    /// sent before closing is still read, up to the end of the stream, which closes the link.
    write_failed: bool,
    /// A data link accepted on this node's data address: a publisher's (or a stats request).
    accepted: bool,
    /// The link's shared-memory ring, once offered and taken.
    ring: Option<RingLink>,
    /// The front of the outbox waits for room in the ring (not in the socket).
    ring_full: bool,
    /// A socket record read but not handed on yet: ring messages sent before it go first.
    held: Option<(Vec<u8>, Vec<ReceivedSegment>)>,
    /// Pool ranges this side lent on the link and not given back yet: a publisher with
    /// ranges out watches the return ring ([`RingLink::idle_sender`]).
    lent: Lent,
    /// Records sent on the socket, and handed on from it, since the link opened: where a ring
    /// taken later starts counting.
    sent: u64,
    read: u64,
}

impl<A> Link<A> {
    /// Whether this node reads the link's ring: the subscriber's side of a ring link.
    fn reads_ring(&self) -> bool {
        self.ring.as_ref().is_some_and(|r| !r.is_sender())
    }
}

/// A link's peer process, watched for its exit.
#[derive(Debug)]
struct Watch {
    peer: PeerId,
    pidfd: PidFd,
    /// The link is closed: the watch ends then.
    until: Option<Instant>,
}

/// What a link is watched for.
fn interest(read: bool, write: bool) -> Interest {
    match (read, write) {
        (true, true) => Interest::BOTH,
        (true, false) => Interest::READABLE,
        (false, true) => Interest::WRITABLE,
        (false, false) => Interest::NONE,
    }
}

fn feed(member: &mut Member, now: Instant, input: MemberInput<'_>) {
    if let Err(e) = member.handle(now, input) {
        warn!(error = %e, "the node refused an input");
    }
}

/// The sockets of a node: its `epoll` set, listeners and links, and the segments it received.
#[derive(Debug)]
pub struct Links<A> {
    poller: Poller,
    dir: GroupDir,
    hub_listener: Option<HubSocket>,
    data_listener: Option<DataSocket>,
    links: Slab<Link<A>>,
    /// Each link's key by its peer id (a few links: a small tree's lookup beats hashing the
    /// id, on every message).
    peers: BTreeMap<PeerId, usize>,
    next_peer: u64,
    /// One topology frame, plus a byte to notice a record that is larger.
    buf: Vec<u8>,
    /// One data record, plus a byte.
    data_buf: Vec<u8>,
    max_outbox: usize,
    received: ReceivedSegments,
    /// What peers did wrong, logged rate-limited: a hostile peer chooses how often.
    peer_log: PeerLog,
    /// The processes at the other end of hub links, watched for their exits.
    watches: Slab<Watch>,
    watched: BTreeMap<PeerId, usize>,
    /// Data links use shared-memory rings ([`Links::set_rings`]).
    rings: bool,
    /// The keys of the links whose ring this node reads ([`Link::reads_ring`]), kept as
    /// rings come and go ([`Links::update_readers`]): a polling thread looks at them at every
    /// look, and a walk over every link was a fair share of a small message's path.
    readers: Vec<usize>,
    /// Threads polling the rings ([`Links::spin_start`]).
    spinners: usize,
    /// When the rings park again, after the last spinning thread stopped
    /// ([`Links::spin_stop`]).
    spin_linger: Option<Instant>,
    /// The rings' own set, if the driver asked for one ([`Links::use_ring_set`]).
    ring_set: Option<ring_set::RingSet>,
    return_wakes: returns::ReturnWakes,
    /// Lingers for a publisher's `writing` hint since a message was last read from a ring
    /// ([`Links::linger_for_writers`]).
    writing_lingers: u32,
}

impl<A> Links<A> {
    /// A table over `poller` (the driver registers its own fd under [`OWN_TOKEN`]); watches the
    /// data listener. Topology frames are at most `max_frame` bytes, data records `max_record`;
    /// a topology link with more than `max_outbox` bytes queued is closed.
    pub fn new(
        poller: Poller,
        dir: GroupDir,
        data_listener: Option<DataSocket>,
        max_outbox: usize,
        max_frame: usize,
        max_record: usize,
    ) -> io::Result<Self> {
        if let Some(l) = &data_listener {
            poller.add(l.as_fd(), DATA_LISTENER, Interest::READABLE)?;
        }
        Ok(Self {
            poller,
            dir,
            hub_listener: None,
            data_listener,
            links: Slab::new(),
            peers: BTreeMap::new(),
            next_peer: 1,
            // A frame's 5-byte header, plus a byte to notice a record that is larger.
            buf: vec![0; max_frame + 5],
            data_buf: vec![0; max_record + 1],
            max_outbox,
            received: ReceivedSegments::default(),
            peer_log: PeerLog::default(),
            watches: Slab::new(),
            watched: BTreeMap::new(),
            rings: false,
            readers: Vec::new(),
            spinners: 0,
            spin_linger: None,
            ring_set: None,
            return_wakes: Default::default(),
            writing_lingers: 0,
        })
    }

    /// Whether data links use shared-memory rings ([`NodeOptions::rings`]): this node offers
    /// them as a subscriber (to publishers whose `Hello` says they take one) and takes them
    /// as a publisher. Default no.
    ///
    /// [`NodeOptions::rings`]: ipc_proto::NodeOptions::rings
    pub fn set_rings(&mut self, on: bool) {
        self.rings = on;
    }

    // ---- getters ----

    /// The node's `epoll` set.
    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    /// The group's directory.
    pub fn dir(&self) -> &GroupDir {
        &self.dir
    }

    /// The node's data listener (none for an observer).
    pub fn data_listener(&self) -> Option<&DataSocket> {
        self.data_listener.as_ref()
    }

    /// Whether a link is there and reading from it goes on.
    fn is_reading(&self, key: usize) -> bool {
        self.links
            .get(key)
            .is_some_and(|l| l.closing.is_none() && !l.paused)
    }

    /// Whether every link is a data link with nothing queued (a leaving node is done).
    pub fn is_flushed(&self) -> bool {
        self.links
            .iter()
            .all(|(_, l)| l.data && l.outbox.is_empty())
    }

    /// The next deadline of the table: a closing link's, a closed link's watch's end, or the
    /// peer log's summary.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let closing = self.links.iter().filter_map(|(_, l)| l.closing);
        let watches = self.watches.iter().filter_map(|(_, w)| w.until);
        closing
            .chain(watches)
            .chain(self.peer_log.poll_timeout())
            .chain(self.spin_linger.filter(|_| self.spinners == 0))
            .chain(self.return_wakes.due())
            .min()
    }

    /// The segments received from publishers.
    pub fn received(&mut self) -> &mut ReceivedSegments {
        &mut self.received
    }

    /// The rate limit of log lines about peers.
    pub fn peer_log(&mut self) -> &mut PeerLog {
        &mut self.peer_log
    }

    // ---- the member's requests ----

    /// Acts on what the member asks of the sockets alone (connect to a data address, bind,
    /// unbind, disconnect, pause or resume accepting), and returns the rest for the driver:
    /// [`MemberOutput::ConnectHub`], [`MemberOutput::Transmit`], [`MemberOutput::Deliver`],
    /// [`MemberOutput::Release`] and [`MemberOutput::Evt`].
    pub fn act<R: Attachments<A>>(
        &mut self,
        member: &mut Member,
        attachments: &R,
        now: Instant,
        out: MemberOutput,
    ) -> io::Result<Option<MemberOutput>> {
        match out {
            MemberOutput::ConnectData { peer, addr } => {
                self.connect_data(member, now, peer, &addr);
            }
            MemberOutput::Bind => self.bind(member, now)?,
            MemberOutput::Unbind => self.unbind(),
            MemberOutput::Disconnect(peer) => self.disconnect(member, attachments, now, peer),
            MemberOutput::PauseAccepting | MemberOutput::ResumeAccepting => {
                self.watch_listeners(member.is_accepting());
            }
            other => return Ok(Some(other)),
        }
        Ok(None)
    }

    /// Connects to the group's hub for the member; `false` if that failed (the member was
    /// told).
    pub fn connect_hub(&mut self, member: &mut Member, now: Instant, peer: PeerId) -> bool {
        let linked = self.dir.connect_hub();
        self.connect(member, now, peer, linked, false)
    }

    /// Connects to a member's data address for the member.
    pub fn connect_data(&mut self, member: &mut Member, now: Instant, peer: PeerId, addr: &str) {
        let linked = self.dir.connect_data(addr);
        self.connect(member, now, peer, linked, true);
    }

    fn connect(
        &mut self,
        member: &mut Member,
        now: Instant,
        peer: PeerId,
        linked: io::Result<OwnedFd>,
        data: bool,
    ) -> bool {
        let linked = linked.and_then(|fd| {
            if data {
                socket::set_send_buffer(fd.as_fd(), DATA_SEND_BUFFER)?;
            }
            let cred = socket::peer_credentials(fd.as_fd()).ok();
            let process = (!data).then(|| PidFd::open_peer(fd.as_fd()));
            self.add_link(fd, data, false, peer)?;
            Ok((cred, process))
        });
        match linked {
            Ok((cred, process)) => {
                feed(member, now, MemberInput::Connected { peer, cred });
                if let Some(process) = process {
                    self.watch(member, now, peer, process);
                }
                true
            }
            Err(e) => {
                trace!(%peer, error = %e, "connection failed");
                feed(member, now, MemberInput::ConnectFailed(peer));
                false
            }
        }
    }

    /// Watches the process at the other end of a new link (see the module docs); one that has
    /// exited already is reported at once. This process itself is not watched (a hub's own
    /// spoke, nodes of one process): its exit ends the watcher too.
    fn watch(&mut self, member: &mut Member, now: Instant, peer: PeerId, process: PeerProcess) {
        let pidfd = match process {
            PeerProcess::Watch(p) if p.pid() == std::process::id() => return,
            PeerProcess::Watch(p) => p,
            PeerProcess::AlreadyExited => {
                debug!(%peer, "the peer's process has exited already");
                return feed(member, now, MemberInput::PeerExited(peer));
            }
            PeerProcess::Unavailable(why) => {
                debug!(%peer, %why, "the peer's process cannot be watched: its death waits for the grace");
                return;
            }
        };
        let entry = self.watches.vacant_entry();
        let key = entry.key();
        let token = Token(EXIT_TAG | key as u64);
        if let Err(e) = self.poller.add(pidfd.as_fd(), token, Interest::READABLE) {
            debug!(%peer, error = %e, "could not watch the peer's process");
            return;
        }
        trace!(%peer, pid = pidfd.pid(), "watching the peer's process");
        entry.insert(Watch {
            peer,
            pidfd,
            until: None,
        });
        self.watched.insert(peer, key);
    }

    /// A watched process exited ([`Ready::Exited`]): the member is told, and the watch ends.
    pub fn exited(&mut self, member: &mut Member, now: Instant, key: usize) {
        let Some(w) = self.watches.try_remove(key) else {
            return;
        };
        let _ = self.poller.delete(w.pidfd.as_fd());
        self.watched.remove(&w.peer);
        debug!(peer = %w.peer, pid = w.pidfd.pid(), "the peer's process exited");
        feed(member, now, MemberInput::PeerExited(w.peer));
    }

    fn add_link(
        &mut self,
        fd: OwnedFd,
        data: bool,
        accepted: bool,
        peer: PeerId,
    ) -> io::Result<()> {
        let entry = self.links.vacant_entry();
        let key = entry.key();
        self.poller
            .add(fd.as_fd(), Token(key as u64), Interest::READABLE)?;
        entry.insert(Link {
            fd,
            data,
            peer,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            writable: false,
            paused: false,
            registered: Interest::READABLE,
            ring_registered: true,
            told_blocked: false,
            closing: None,
            write_failed: false,
            accepted,
            ring: None,
            ring_full: false,
            held: None,
            sent: 0,
            lent: Lent::default(),
            read: 0,
        });
        self.peers.insert(peer, key);
        Ok(())
    }

    /// Queues a record for a peer and sends what the socket takes. A topology link with more
    /// than `max_outbox` bytes queued is closed (the member bounds its data links).
    pub fn transmit<R: Attachments<A>>(
        &mut self,
        member: &mut Member,
        attachments: &R,
        now: Instant,
        peer: PeerId,
        bytes: Vec<u8>,
        attach: Option<A>,
    ) {
        let Some(&key) = self.peers.get(&peer) else {
            trace!(%peer, "transmit to a closed link dropped");
            return;
        };
        let link = &mut self.links[key];
        if link.closing.is_some() || link.write_failed {
            return;
        }
        let mut bytes = bytes;
        if attach.is_none()
            && let Some(ring) = &mut link.ring
            && !ring.is_sender()
            && let Ok((DataFrame::Release(slots), _)) = decode_data(&bytes, 0, usize::MAX)
        {
            match ring.give_back(&slots) {
                Ok(given) if given == slots.len() => return,
                // The return ring is full: the rest goes on the socket.
                Ok(given) => bytes = encode_data(&DataFrame::Release(slots[given..].to_vec()), &[]),
                Err(e) => return self.ring_broken(member, now, key, &e),
            }
        }
        let link = &mut self.links[key];
        link.outbox_bytes += bytes.len();
        link.outbox.push_back((bytes, attach.map(Attached::Driver)));
        if !link.data && link.outbox_bytes > self.max_outbox {
            let bytes = link.outbox_bytes;
            if self.peer_log.allow(now) {
                warn!(%peer, bytes, "peer does not keep up: closing its link");
            }
            self.drop_link(member, now, key);
            return;
        }
        self.flush(member, attachments, now, key);
        if !attachments.keeps_fd() {
            self.hold_last(attachments, key);
        }
    }

    /// If the record just queued on a link waits (the socket or the ring is full), it holds a
    /// duplicate of its attachment's fd from now on: the driver may close the fd once the data
    /// plane releases the segment, which it does right after handing the record over.
    fn hold_last<R: Attachments<A>>(&mut self, attachments: &R, key: usize) {
        // The outbox is sent from its front: if anything is left, the last record queued is.
        let Some((_, Some(last))) = self.links.get_mut(key).and_then(|l| l.outbox.back_mut())
        else {
            return;
        };
        let Attached::Driver(a) = last else {
            return;
        };
        // Gone already: the flush drops the record.
        let Some(fd) = attachments.fd(a) else {
            return;
        };
        match fd.try_clone_to_owned() {
            Ok(fd) => *last = Attached::Held(fd),
            // Out of fds: the record goes if the segment is still there when it is sent.
            Err(e) => debug!(error = %e, "cannot hold a queued record's fd"),
        }
    }

    /// Sends what the socket accepts; watches for writability if it does not take it all,
    /// and tells the member when a data link blocks or drains.
    pub fn flush<R: Attachments<A>>(
        &mut self,
        member: &mut Member,
        attachments: &R,
        now: Instant,
        key: usize,
    ) {
        if self.return_wakes.is_deferred() {
            self.take_returns_now(member, now, key);
        }
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        if let Some(e) = link.ring.as_mut().and_then(RingLink::take_failure) {
            return self.ring_broken(member, now, key, &e);
        }
        link.ring_full = false;
        while let Some((bytes, attach)) = link.outbox.front() {
            if attach.is_none()
                && let Some(ring) = &mut link.ring
            {
                let lent = link.lent.after(bytes);
                match ring.send(bytes, lent, self.return_wakes.ask(lent)) {
                    Ok(true) => {
                        link.lent.set(lent);
                        link.outbox_bytes -= bytes.len();
                        if let Some((bytes, _)) = link.outbox.pop_front() {
                            member.recycle(bytes);
                        }
                        continue;
                    }
                    Ok(false) => {}
                    Err(None) => {
                        link.ring_full = true;
                        break;
                    }
                    Err(Some(e)) => return self.ring_broken(member, now, key, &e),
                }
            }
            let fd = attach.as_ref().map(|a| match a {
                Attached::Driver(a) => attachments.fd(a),
                Attached::Held(fd) => Some(fd.as_fd()),
            });
            if let Some(None) = fd {
                // Gone before the record was held: it would refer to nothing.
                debug!(peer = %link.peer, "a queued record's segment is gone: dropped");
                link.outbox_bytes -= bytes.len();
                link.outbox.pop_front();
                continue;
            }
            let fds: Vec<_> = fd.flatten().into_iter().collect();
            match socket::send_record(link.fd.as_fd(), bytes, &fds) {
                Ok(Sent::Complete) => {
                    link.outbox_bytes -= bytes.len();
                    link.lent.sent(bytes);
                    if let Some((bytes, _)) = link.outbox.pop_front() {
                        member.recycle(bytes);
                    }
                    link.sent += 1;
                    if let Some(ring) = &mut link.ring {
                        ring.record_sent();
                    }
                }
                Ok(Sent::WouldBlock) => break,
                Err(e) if link.closing.is_none() => {
                    // The peer closed its end, maybe with records for us still queued (a
                    // publisher that sent its last messages and left): read them all; the end
                    // of the stream then closes the link.
                    debug!(peer = %link.peer, error = %e, "send failed: reading what is left");
                    link.write_failed = true;
                    link.outbox.clear();
                    link.outbox_bytes = 0;
                }
                Err(e) => {
                    debug!(peer = %link.peer, error = %e, "send failed: link is gone");
                    self.drop_link(member, now, key);
                    return;
                }
            }
        }
        let full = !link.outbox.is_empty();
        // Waiting for room in the ring is waiting for its eventfd, not for the socket.
        let socket_full = full && !link.ring_full;
        if socket_full != link.writable {
            link.writable = socket_full;
            self.update_interest(key, false);
        }
        let link = &mut self.links[key];
        if link.data && link.closing.is_none() && full != link.told_blocked {
            link.told_blocked = full;
            let peer = link.peer;
            let input = if full {
                MemberInput::Blocked(peer)
            } else {
                MemberInput::Writable(peer)
            };
            feed(member, now, input);
        }
        if self
            .links
            .get(key)
            .is_some_and(|l| l.closing.is_some() && l.outbox.is_empty())
        {
            self.remove(now, key);
        }
    }

    /// Brings the set in line with what a link waits for. Reading interest is taken away
    /// lazily: pausing a link (a full queue under `Block`, resumed at half its depth) leaves
    /// it registered, so a pause and its resume cost no `epoll_ctl` when nothing arrives
    /// meanwhile. A paused link that reports readiness is read as [`Read::Done`], which
    /// `settle`s its interest: level-triggered readiness would otherwise wake the driver
    /// again and again. And it comes back lazily: a link resumed by a thread that reads it at
    /// once ([`Links::resume_reading`]) is registered again only when that read finds it
    /// drained ([`Links::read_record`]) or stops on its budget ([`Links::budget_spent`]).
    fn update_interest(&mut self, key: usize, settle: bool) {
        let (poller, ring_set) = (&self.poller, &self.ring_set);
        let link = &mut self.links[key];
        let keep = |want: bool, registered: bool| want || (registered && !settle);
        let read = keep(!link.paused, link.registered.is_readable());
        let want = interest(read, link.writable);
        if want != link.registered {
            let _ = poller.modify(link.fd.as_fd(), Token(key as u64), want);
            link.registered = want;
        }
        if let Some(ring) = &link.ring {
            // A publisher's ring wakes it for room and returns whatever it reads; a
            // subscriber's is read only while its socket is.
            let read = keep(ring.is_sender() || !link.paused, link.ring_registered);
            if read != link.ring_registered {
                let token = Token(RING_TAG | key as u64);
                let _ = ring_set::rings_in(poller, ring_set).modify(
                    ring.fd(),
                    token,
                    interest(read, false),
                );
                link.ring_registered = read;
            }
        }
    }

    /// Resumes reading a peer's link paused by a full queue, for a caller that reads it at
    /// once ([`Links::read_record`] until [`Read::Done`], or [`Links::budget_spent`]): unlike
    /// [`Links::set_paused`], its ring is not woken to come back to, and its reading interest
    /// comes back only if that read drains it. A stream its subscriber cannot keep up with
    /// refills the queue in that read and pauses again: registering the link in between would
    /// only wake the I/O thread (the waiting records make it ready at once) to take the
    /// interest away again, two `epoll_ctl` each way and a wakeup for every pause. The link's
    /// key, if it was paused.
    pub fn resume_reading(&mut self, peer: PeerId) -> Option<usize> {
        let &key = self.peers.get(&peer)?;
        let link = &mut self.links[key];
        if !link.paused {
            return None;
        }
        trace!(%peer, "reading resumed");
        link.paused = false;
        Some(key)
    }

    /// Pauses or resumes reading from a peer's link (a subscription's queue is full).
    pub fn set_paused(&mut self, peer: PeerId, paused: bool) {
        let Some(&key) = self.peers.get(&peer) else {
            return;
        };
        let link = &mut self.links[key];
        if link.paused != paused {
            trace!(%peer, paused, "reading paused by a full subscription");
            link.paused = paused;
            if !paused && let Some(ring) = &mut link.ring {
                // Messages may wait in the ring with no wake to come: come back for them.
                ring.rearm();
            }
            self.update_interest(key, false);
        }
    }

    /// A paused link was asked to be read, as on readiness: its reading interest goes now (see
    /// [`Links::update_interest`]).
    fn settle_paused(&mut self, key: usize) {
        if self.links.get(key).is_some_and(|l| l.paused) {
            self.update_interest(key, true);
        }
    }

    /// Stops reading from a link for good (it sent what the driver rejected).
    fn stop_reading(&mut self, key: usize) {
        if let Some(link) = self.links.get_mut(key) {
            link.paused = true;
            self.update_interest(key, true);
        }
    }

    /// The member asked to close a link: flush what is queued, then close.
    pub fn disconnect<R: Attachments<A>>(
        &mut self,
        member: &mut Member,
        attachments: &R,
        now: Instant,
        peer: PeerId,
    ) {
        let Some(&key) = self.peers.get(&peer) else {
            return;
        };
        self.links[key].closing = Some(now + CLOSE_FLUSH);
        self.flush(member, attachments, now, key);
    }

    /// Closes the links whose flushing time is over, ends the watches of closed links' processes
    /// that are over, and logs the peer log's summary if due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.peer_log.summary(now);
        for key in keys_where(&self.watches, |w| w.until.is_some_and(|at| at <= now)) {
            let w = self.watches.remove(key);
            let _ = self.poller.delete(w.pidfd.as_fd());
            self.watched.remove(&w.peer);
        }
        for key in keys_where(&self.links, |l| l.closing.is_some_and(|at| at <= now)) {
            debug!(peer = %self.links[key].peer, "closing link with unsent data");
            self.remove(now, key);
        }
    }

    /// The link broke (or misbehaved at the socket level): close it and tell the member.
    fn drop_link(&mut self, member: &mut Member, now: Instant, key: usize) {
        let Some(link) = self.links.get(key) else {
            return;
        };
        let (peer, closing) = (link.peer, link.closing.is_some());
        self.remove(now, key);
        if !closing {
            feed(member, now, MemberInput::PeerDown(peer));
        }
    }

    fn remove(&mut self, now: Instant, key: usize) {
        if let Some(link) = self.links.try_remove(key) {
            let _ = self.poller.delete(link.fd.as_fd());
            if let Some(ring) = &link.ring {
                let _ = self.ring_poller().delete(ring.fd());
                self.update_readers();
            }
            self.peers.remove(&link.peer);
            if let Some(&w) = self.watched.get(&link.peer) {
                self.watches[w].until = Some(now + EXIT_WATCH_AFTER_CLOSE);
            }
            trace!(peer = %link.peer, "link closed");
        }
    }

    // ---- receiving ----

    /// Reads one record of a link and hands it to the member, with the segments it carried
    /// (verified and registered in [`Links::received`]). [`Read::Done`] for a link that is
    /// gone, closing or paused.
    ///
    /// On a link with a ring, the record may come from the ring: a publisher's returned ranges
    /// (as a release), a subscriber's messages, in the order the publisher sent them (see
    /// [`ipc_proto::ring::link`]). With nothing left to read, the ring's side parks.
    ///
    /// A driver's read loop: up to [`READ_BUDGET`](crate::READ_BUDGET) times, read a record,
    /// act on what the member asks unless [`Read::Done`], and go on while
    /// [`Links::read_on`] says so; if the budget runs out, call [`Links::budget_spent`].
    /// `reading` says whether the socket is read too ([`Reading`]).
    pub fn read_record(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        reading: Reading,
    ) -> Read {
        self.read_record_with(member, now, key, reading, None)
    }

    /// [`Links::read_record`], a ring's inline message put in `took` rather than queued among
    /// the member's outputs when nothing waits ahead of it
    /// ([`Member::receive_payload_direct`]): the driver delivers it, then acts on what the
    /// member asks, as after any record. Saves the message's moves through the output
    /// queues. `took` is left as it was otherwise (`None`, as the caller passes it): so it is
    /// for a ring's message read behind a socket record (queued among the outputs, after the
    /// record's).
    pub fn read_record_direct(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        reading: Reading,
        took: &mut Option<Delivery>,
    ) -> Read {
        self.read_record_with(member, now, key, reading, Some(took))
    }

    fn read_record_with(
        &mut self,
        member: &mut Member,
        now: Instant,
        key: usize,
        reading: Reading,
        mut took: Option<&mut Option<Delivery>>,
    ) -> Read {
        loop {
            if !self.is_reading(key) {
                self.settle_paused(key);
                return Read::Done;
            }
            if let Some(read) = self.ring_record(member, now, key, took.as_deref_mut()) {
                return read;
            }
            let link = &mut self.links[key];
            let peer = link.peer;
            if let Some((bytes, segments)) = link.held.take() {
                link.read += 1;
                if let Some(ring) = &mut link.ring {
                    ring.record_read();
                }
                Self::hand_on(member, now, peer, &bytes, &segments);
                return Read::Record;
            }
            let socket = match reading {
                Reading::All => self.read_socket(member, now, key),
                Reading::Ring => None,
            };
            match socket {
                Some(read) => return read,
                None => {
                    // Nothing more on the socket (or not read): it waits in the set again if
                    // a resume left it out, and the ring's side parks, unless something came
                    // meanwhile.
                    self.update_interest(key, false);
                    let polled = self.is_polled();
                    let Some(link) = self.links.get_mut(key) else {
                        return Read::Done;
                    };
                    let lent = link.lent.get();
                    let Some(ring) = link.ring.as_mut() else {
                        return Read::Done;
                    };
                    let again = if ring.is_sender() {
                        if self.return_wakes.ask(lent) {
                            ring.idle_sender(lent)
                        } else {
                            // Deferred (see `defer_return_wakes`): the driver looks by a deadline.
                            Ok(false)
                        }
                    } else if polled {
                        // A spinning thread reads it: no wakes asked of the publisher.
                        return Read::Done;
                    } else {
                        ring.park()
                    };
                    match again {
                        Ok(true) => continue,
                        Ok(false) => return Read::Done,
                        Err(e) => {
                            self.ring_broken(member, now, key, &e);
                            return Read::Done;
                        }
                    }
                }
            }
        }
    }

    fn hand_on(
        member: &mut Member,
        now: Instant,
        peer: PeerId,
        data: &[u8],
        segments: &[ReceivedSegment],
    ) {
        let input = MemberInput::Record {
            peer,
            data,
            segments,
        };
        if let Err(e) = member.handle(now, input) {
            warn!(error = %e, "record refused");
        }
    }

    /// Reads one socket record and hands it on (or holds it behind ring messages sent before
    /// it). `None`: the socket has nothing now.
    fn read_socket(&mut self, member: &mut Member, now: Instant, key: usize) -> Option<Read> {
        let link = &self.links[key];
        let (peer, data) = (link.peer, link.data);
        let buf = if data {
            &mut self.data_buf
        } else {
            &mut self.buf
        };
        let mut fds = Vec::new();
        let max_fds = if data { MAX_FDS } else { 0 };
        match socket::recv_record(link.fd.as_fd(), buf, &mut fds, max_fds) {
            Ok(Recv::Data {
                len,
                record_len,
                truncated,
                fds_truncated,
                ..
            }) => {
                if truncated || fds_truncated || (!data && !fds.is_empty()) {
                    let reason = format!("record of {record_len} bytes, or too many fds");
                    return Some(Self::reject(member, now, peer, reason));
                }
                if data && let Some(offer) = ring_offer(&self.data_buf[..len]) {
                    return Some(self.take_ring(member, now, key, offer, fds));
                }
                let mut segments: Vec<ReceivedSegment> = Vec::with_capacity(fds.len());
                for fd in fds {
                    match memfd::verify(fd, SealSet::EMPTY, 0, 0) {
                        Ok(v) => segments.push(self.received.register(v)),
                        Err(e) => {
                            for s in segments {
                                self.received.release(s.segment);
                            }
                            let reason = format!("a received fd is not a usable memfd: {e}");
                            return Some(Self::reject(member, now, peer, reason));
                        }
                    }
                }
                let buf = if data { &self.data_buf } else { &self.buf };
                let link = &mut self.links[key];
                if let Some(ring) = &mut link.ring {
                    // Ring messages pushed before this record was sent go first.
                    match ring.next(member) {
                        Ok(Found::Nothing) => ring.record_read(),
                        Ok(found) => {
                            link.held = Some((buf[..len].to_vec(), segments));
                            Self::hand_on_found(member, now, peer, ring, found, None);
                            return Some(Read::Record);
                        }
                        Err(e) => {
                            for s in segments {
                                self.received.release(s.segment);
                            }
                            self.ring_broken(member, now, key, &e);
                            return Some(Read::Done);
                        }
                    }
                }
                link.read += 1;
                if data && !link.accepted {
                    link.lent.read(&buf[..len]);
                }
                let hello = data && link.accepted && self.rings && hello_takes_rings(&buf[..len]);
                Self::hand_on(member, now, peer, &buf[..len], &segments);
                if hello {
                    self.offer_ring(key);
                }
                Some(Read::Record)
            }
            Ok(Recv::Closed) => {
                self.drop_link(member, now, key);
                Some(Read::Done)
            }
            Ok(Recv::WouldBlock) => None,
            Err(e) => {
                debug!(%peer, error = %e, "receive failed: link is gone");
                self.drop_link(member, now, key);
                Some(Read::Done)
            }
        }
    }

    /// A driver's read loop for a link ended with its budget spent: records may wait. The
    /// socket says so again by itself (its readiness is level-triggered); a ring's messages
    /// may have come with no wake (the subscriber was not parked), so its side wakes itself
    /// to come back for them.
    pub fn budget_spent(&mut self, key: usize) {
        if self.is_reading(key) {
            self.update_interest(key, false);
        }
        if let Some(link) = self.links.get_mut(key)
            && !link.paused
            && let Some(ring) = &mut link.ring
        {
            ring.rearm();
        }
    }

    /// Whether to read on from a link after `read` (and after acting on it): a rejected link
    /// is read no more, whatever the member decided, and a link that the record paused (its
    /// subscription's queue filled) is left as it is. Reading it once more would take its
    /// reading interest away ([`Links::read_record`] on a paused link), only for the resume
    /// to put it back: four `epoll_ctl` per pause where a busy `Block` stream pauses every
    /// few messages. Left registered, it costs nothing unless it reports readiness while
    /// paused (see `Links::update_interest`).
    ///
    /// A record read with [`Reading::Ring`] while the rings are polled (a thread spins on
    /// them, or they linger): read on only if the link may hold more, its ring's head showing
    /// more or a socket record held behind the ring's messages being due. The read that
    /// would find it empty then does nothing else (it reads no socket, and leaves the ring
    /// unparked) and costs about 235 instructions on the echo side of a spinning 64 B round
    /// trip, after every message before the polling thread got it back (callgrind); the next
    /// look reads the link anyway. Not polled, that read is the ring's park, and it is made.
    pub fn read_on(&mut self, key: usize, read: Read, reading: Reading) -> bool {
        match read {
            Read::Record => {
                self.is_reading(key)
                    && (reading == Reading::All || !self.is_polled() || self.may_hold(key))
            }
            Read::Rejected => {
                self.stop_reading(key);
                false
            }
            Read::Done => false,
        }
    }

    /// Whether a read of the link with [`Reading::Ring`] may find something now: a socket
    /// record held behind the ring's messages, or what the ring's head shows
    /// (`RingLink::may_hold`).
    fn may_hold(&mut self, key: usize) -> bool {
        (self.links.get_mut(key))
            .is_some_and(|l| l.held.is_some() || l.ring.as_mut().is_some_and(RingLink::may_hold))
    }

    /// The driver refused what a link sent: the member closes it as a violation.
    fn reject(member: &mut Member, now: Instant, peer: PeerId, reason: String) -> Read {
        feed(member, now, MemberInput::Rejected { peer, reason });
        Read::Rejected
    }
}

/// The keys of `slab`'s entries that are `due`, collected only if one is: a calloop loop
/// looks after every message it hands on, and mostly finds none (a look is a few
/// instructions an entry, an empty collect some hundred).
fn keys_where<T>(slab: &Slab<T>, due: impl Fn(&T) -> bool) -> Vec<usize> {
    if !slab.iter().any(|(_, v)| due(v)) {
        return Vec::new();
    }
    slab.iter()
        .filter(|(_, v)| due(v))
        .map(|(k, _)| k)
        .collect()
}

mod listeners;
mod returns;
mod ring_link;
mod ring_set;
mod spin;

#[cfg(test)]
mod tests;
