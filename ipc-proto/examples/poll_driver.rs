//! A complete driver in one file: one node of a group on a plain `poll(2)` loop, with the
//! topology and the data plane, speaking the peer protocol of the conformance suite.
//!
//! ```text
//! cargo run -p ipc-proto --example poll_driver -- --group demo --name me
//!     [--keepalive-ms MS] [--heartbeat-ms MS] [--grace-ms MS] [--announce TOPIC]... [--subscribe TOPIC]...
//! ```
//!
//! It drives the same [`Member`] machine as `ipc-driver-std` and `ipc-driver-calloop`, so it
//! joins their groups, runs the hub when it wins the address, follows every hub change, and
//! publishes and receives payloads inline, in fresh memfds and in pool segments. Commands come
//! on stdin, one per line (`publisher T pooled`, `subscription T block 16`, `publish T SIZE
//! COUNT`, ...); events go to stdout as JSON lines. Both are the *peer protocol* of the guide
//! (`ipc_proto::guide`, "The peer protocol"), so the conformance suite can run this program as
//! an outside driver: `IPC_CONFORMANCE_DRIVER=<this executable> cargo test -p ipc-tests --test
//! conformance`. The end of stdin, or `leave`, makes the node leave. The guide explains every
//! step; its data-plane checklist (section 6) names the function here that does each duty,
//! and section 8 the pidfds that tell a peer's death (`watch`, `exited`, `end_watches`).
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_os::memfd::{self, Mapping, MappingMut, SealSet, Segment, VerifiedSegment};
use ipc_os::pidfd::{PeerProcess, PidFd};
use ipc_os::rendezvous::{DataSocket, GroupDir, HubSocket};
use ipc_os::socket::{self, Recv, Sent};
use ipc_proto::data::{
    DEFAULT_INLINE_MAX, DataCmd, Delivered, Delivery, Paths, Payload, Pool, PublisherOptions,
    ReceivedSegment, SegmentId, SendMode, SubscriptionOptions,
};
use ipc_proto::{
    Credentials, Event, Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput, NodeId,
    NodeOptions, PeerId, SpokeCmd,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use serde_json::{Value, json};

/// Bytes queued for one topology link before the peer counts as not keeping up and the link
/// is dropped. (Data links are bounded by the member: it stops publishing to a blocked link.)
const MAX_OUTBOX: usize = 8 << 20;
/// How long a link the member closed may take to flush what is queued for it.
const CLOSE_FLUSH: Duration = Duration::from_millis(500);
/// How long leaving may take in all (goodbyes sent, this node's hub closed, outboxes flushed).
const LEAVE_DEADLINE: Duration = Duration::from_millis(1500);
/// Records read from one link per wakeup before the others get their turn.
const READ_BUDGET: usize = 64;
/// Connections accepted from one listener per wakeup.
const ACCEPT_BUDGET: usize = 64;
/// Most fds one data record may carry: the protocol sends one; a second shows a violation.
const MAX_FDS: usize = 2;
/// The send buffer of a data link this node connects (its records carry payloads).
const DATA_SEND_BUFFER: usize = 1 << 20;
/// The most bytes of pool segments this node publishes from; beyond it, payloads go fresh.
const POOL_BYTES: u64 = 256 << 20;
/// A pool segment free for this long is destroyed, and its subscribers told to unmap it.
const POOL_IDLE: Duration = Duration::from_secs(1);
/// Segment ids: pool segments count from 1, fresh ones from here, received ones from
/// `RECEIVED`, so that a [`MemberOutput::Release`] names exactly one of them.
const FRESH: u64 = 1 << 48;
const RECEIVED: u64 = 1 << 56;
/// How long a `block` subscription lets publishers wait for room.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(30);
/// A publisher of mode `inline` sends payloads up to this size inline.
const INLINE_MODE_MAX: usize = 128 << 10;
/// How long the process of a closed hub link stays watched: the kernel hangs a dying
/// process's sockets up just before its pidfd becomes readable, so the exit comes just after.
const EXIT_WATCH_AFTER_CLOSE: Duration = Duration::from_secs(1);
const MIME: &str = "application/octet-stream";

/// One connected `SOCK_SEQPACKET` socket: a topology link (to the hub, or from a spoke to
/// this node's hub) or a data link (to a subscriber, or from a publisher).
struct Link {
    peer: PeerId,
    fd: OwnedFd,
    data: bool,
    /// Whole records the socket has not taken yet, each with the segment whose fd goes with it.
    outbox: VecDeque<(Vec<u8>, Option<SegmentId>)>,
    bytes: usize,
    /// The member was told `Blocked` for this data link, and not `Writable` since.
    blocked: bool,
    /// The member closed it: flush the outbox, then close, by this deadline.
    closing: Option<Instant>,
}

/// The process at the other end of a hub link, watched for its exit (guide, section 8).
struct Watch {
    peer: PeerId,
    /// Readable once the process has exited.
    pidfd: PidFd,
    /// The link is closed: the watch ends then.
    until: Option<Instant>,
}

/// What `poll` watches.
#[derive(Copy, Clone)]
enum Source {
    Stdin,
    Listener(Listener),
    Link(PeerId),
    /// The pidfd of a hub link's peer process.
    Exit(PeerId),
}

/// Payload memory: what this node publishes from, and the segments it received.
struct Memory {
    /// Which pool segment takes the next payload ([`Pool`] decides, the driver creates).
    pool: Pool,
    /// Pool segments: sealed against other writers, written through this node's mapping.
    pooled: HashMap<SegmentId, (Segment, MappingMut)>,
    /// Sealed fresh segments, until the member releases them (sent to every subscriber).
    fresh: HashMap<SegmentId, OwnedFd>,
    next_fresh: u64,
    /// Segments that came with records: verified, mapped on first delivery.
    received: HashMap<SegmentId, (VerifiedSegment, Option<Mapping>)>,
    next_received: u64,
}

/// A topic this node publishes (`publisher T MODE`).
struct Publishing {
    options: PublisherOptions,
    /// The index of the next message (the test payload's, see [`test_payload`]).
    next: u64,
    /// `publish` commands not done yet: (size, messages left, messages in all).
    pending: VecDeque<(usize, u64, u64)>,
    /// The wait for room of the next message ends here (then it goes out `expired`).
    wait_until: Option<Instant>,
}

struct Driver {
    member: Member,
    /// Where the group meets: its private directory, the hub's lock and socket in it.
    dir: GroupDir,
    /// The hub address, while this node holds it.
    listener: Option<HubSocket>,
    /// This node's data address, where publishers connect.
    data_listener: DataSocket,
    links: Vec<Link>,
    /// The peer processes of hub links (accepted or connected), where the kernel can say.
    watches: Vec<Watch>,
    /// Ids of accepted links: ours to choose, below `OUTGOING` (the member's own bit).
    next_peer: u64,
    /// One record plus a byte, to notice a larger one: topology frames are at most
    /// `max_frame` bytes after their length prefix, data records `max_record`.
    buf: Vec<u8>,
    max_topology: usize,
    max_data: usize,
    memory: Memory,
    /// Whether only this uid may join: large payloads then go pooled by default.
    private: bool,
    publishing: HashMap<String, Publishing>,
    /// A `Room` event came: publishers waiting for room may go on.
    room_changed: bool,
    /// Bytes of stdin not yet ending in a newline.
    stdin_buf: Vec<u8>,
    /// Leaving: stop by then at the latest.
    leave_by: Option<Instant>,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (options, group, announce, subscribe) = parse_args(&args).unwrap_or_else(|e| {
        eprintln!("poll_driver: {e}\nusage: poll_driver --group G --name N [--keepalive-ms MS] [--heartbeat-ms MS] [--grace-ms MS] [--announce T]... [--subscribe T]...");
        std::process::exit(2)
    });
    // This user's private group directory, created 0700 and checked (`ipc_proto::names` has
    // the rules, `ipc_os` the system calls both real drivers use).
    let dir = GroupDir::private(&group).map_err(io::Error::other)?;
    // The machine never draws OS randomness: the driver hands it a node id and a seed.
    let mut random = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    let [id, seed] = [0, 8].map(|i| u64::from_le_bytes(random[i..i + 8].try_into().expect("8")));
    let id = NodeId::new(id | 1).expect("odd, hence non-zero");
    // The node's data address: a socket in the group directory, published in its join.
    let data_listener = dir.listen_data(id.get())?;
    let config = options.member_config(id, Some(data_listener.addr().to_owned()), seed);
    let max_data = config.data.as_ref().map_or(0, |d| d.limits.max_record) + 1;
    let max_topology = options.limits.max_frame + 5;
    let private = options.is_private(rustix::process::getuid().as_raw());

    #[allow(clippy::disallowed_methods)] // the driver reads the clock
    let mut now = Instant::now();
    let mut d = Driver {
        member: Member::new(config, now),
        dir,
        listener: None,
        data_listener,
        links: Vec::new(),
        watches: Vec::new(),
        next_peer: 0,
        buf: vec![0; max_topology.max(max_data)],
        max_topology,
        max_data,
        memory: Memory {
            pool: Pool::new(POOL_BYTES, 1),
            pooled: HashMap::new(),
            fresh: HashMap::new(),
            next_fresh: FRESH,
            received: HashMap::new(),
            next_received: RECEIVED,
        },
        private,
        publishing: HashMap::new(),
        room_changed: false,
        stdin_buf: Vec::new(),
        leave_by: None,
    };
    emit(
        &json!({"event": "started", "node": id.to_string(), "name": options.name,
        "pid": std::process::id(), "group": group, "driver": "poll"}),
    );
    let cmds = (announce.into_iter())
        .map(|topic| SpokeCmd::Announce {
            topic,
            mime: MIME.into(),
        })
        .chain(
            subscribe
                .into_iter()
                .map(|topic| SpokeCmd::Subscribe { topic }),
        );
    for cmd in cmds.chain([SpokeCmd::Join]) {
        feed(&mut d.member, now, MemberInput::Cmd(MemberCmd::Spoke(cmd)));
    }

    let stdin = io::stdin();
    loop {
        // Act on everything the member asks; acting (a connect, a bind) can make it ask more.
        d.act(now);
        // Left, and everything said is sent: the data links' outboxes too (links that peers
        // keep open are no reason to stay, and no link left is not a sign of being done).
        let flushed = d.links.iter().all(|l| l.outbox.is_empty());
        if d.leave_by
            .is_some_and(|by| (d.member.is_left() && flushed) || by <= now)
        {
            break;
        }
        // Sleep until a socket (or stdin) is ready or the next deadline.
        let deadline = [
            d.member.poll_timeout(),
            d.leave_by,
            d.memory.pool.oldest_free().map(|t| t + POOL_IDLE),
        ]
        .into_iter()
        .flatten()
        .chain(d.links.iter().filter_map(|l| l.closing))
        .chain(d.watches.iter().filter_map(|w| w.until))
        .chain(d.publishing.values().filter_map(|p| p.wait_until))
        .min();
        let timeout =
            deadline.and_then(|t| Timespec::try_from(t.saturating_duration_since(now)).ok());
        let ready = d.wait(d.leave_by.is_none().then(|| stdin.as_fd()), timeout)?;
        #[allow(clippy::disallowed_methods)] // the driver reads the clock, once per wakeup
        {
            now = Instant::now();
        }
        for (source, flags) in ready {
            match source {
                Source::Stdin => d.read_stdin(now, stdin.as_fd()),
                Source::Listener(l) => d.accept(now, l),
                Source::Exit(peer) => d.exited(now, peer),
                Source::Link(peer) => {
                    if flags.intersects(PollFlags::OUT | PollFlags::HUP | PollFlags::ERR) {
                        d.flush(now, peer);
                    }
                    if flags.intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR) {
                        d.read(now, peer);
                    }
                }
            }
        }
        // Links that did not flush in time are closed (the member already forgot them).
        d.links.retain(|l| l.closing.is_none_or(|at| at > now));
        d.end_watches(now);
        if d.member.poll_timeout().is_some_and(|t| t <= now) {
            d.member.handle_timeout(now);
        }
        // Idle pool segments go, and the member tells the subscribers they were offered to.
        for segment in d.memory.pool.trim(now, POOL_IDLE) {
            d.memory.pooled.remove(&segment);
            let retire = DataCmd::Retire { segment };
            feed(
                &mut d.member,
                now,
                MemberInput::Cmd(MemberCmd::Data(retire)),
            );
        }
        d.publish_pending(now);
    }
    // The node's own sockets go first (their files with them); then the group's directory,
    // if this node was the last in it.
    let Driver {
        dir,
        listener,
        data_listener,
        ..
    } = d;
    drop((listener, data_listener));
    let _ = dir.remove_if_unused();
    emit(&json!({"event": "left"}));
    Ok(())
}

impl Driver {
    fn act(&mut self, now: Instant) {
        loop {
            while let Some(out) = self.member.poll_output() {
                match out {
                    MemberOutput::ConnectHub { peer } => self.connect(now, peer, None),
                    MemberOutput::ConnectData { peer, addr } => {
                        self.connect(now, peer, Some(&addr));
                    }
                    MemberOutput::Bind => self.bind(now),
                    // Dropping it removes the socket file, then releases the hub's lock.
                    MemberOutput::Unbind => self.listener = None,
                    MemberOutput::Transmit {
                        peer,
                        bytes,
                        attach,
                    } => self.transmit(now, peer, bytes, attach),
                    MemberOutput::Disconnect(peer) => {
                        if let Some(i) = self.find(peer) {
                            self.links[i].closing = Some(now + CLOSE_FLUSH);
                            self.flush(now, peer);
                        }
                    }
                    MemberOutput::Deliver(delivery) => self.deliver(now, delivery),
                    // Messages of a publisher that will not come, in their place.
                    MemberOutput::Lost(l) => emit(&json!({"event": "lost", "topic": &*l.topic,
                        "node": l.publisher.to_string(), "first": l.first, "last": l.last,
                        "lost": l.count, "reason": l.reason.name()})),
                    // The member refers to the segment no more: a pool segment is free again,
                    // a fresh one is closed, a received one unmapped and closed.
                    MemberOutput::Release(segment) => self.memory.release(segment, now),
                    // `wait` watches the listeners only while `is_accepting`.
                    MemberOutput::PauseAccepting | MemberOutput::ResumeAccepting => {}
                    // Room: the publishers waiting for it may go on, once the outputs are done.
                    MemberOutput::Evt(MemberEvt::Room { .. }) => self.room_changed = true,
                    MemberOutput::Evt(e) => report(&e),
                }
            }
            if !std::mem::take(&mut self.room_changed) {
                return;
            }
            self.publish_pending(now);
        }
    }

    /// Waits in `poll` for readiness or `timeout`; what is ready, by source.
    fn wait(
        &self,
        stdin: Option<BorrowedFd<'_>>,
        timeout: Option<Timespec>,
    ) -> io::Result<Vec<(Source, PollFlags)>> {
        let mut sources = Vec::new();
        let mut fds = Vec::new();
        if let Some(fd) = stdin {
            sources.push(Source::Stdin);
            fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
        }
        if self.member.is_accepting() {
            if let Some(l) = &self.listener {
                sources.push(Source::Listener(Listener::Hub));
                fds.push(PollFd::new(l, PollFlags::IN));
            }
            sources.push(Source::Listener(Listener::Data));
            fds.push(PollFd::new(&self.data_listener, PollFlags::IN));
        }
        for l in &self.links {
            let mut want = PollFlags::empty();
            want.set(PollFlags::IN, l.closing.is_none());
            want.set(PollFlags::OUT, !l.outbox.is_empty());
            sources.push(Source::Link(l.peer));
            fds.push(PollFd::new(&l.fd, want));
        }
        for w in &self.watches {
            sources.push(Source::Exit(w.peer));
            fds.push(PollFd::new(&w.pidfd, PollFlags::IN));
        }
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        let revents = fds.iter().map(PollFd::revents);
        Ok(sources
            .into_iter()
            .zip(revents)
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }

    fn find(&self, peer: PeerId) -> Option<usize> {
        self.links.iter().position(|l| l.peer == peer)
    }

    fn add_link(&mut self, peer: PeerId, fd: OwnedFd, data: bool) {
        self.links.push(Link {
            peer,
            fd,
            data,
            outbox: VecDeque::new(),
            bytes: 0,
            blocked: false,
            closing: None,
        });
    }

    /// Connects to the hub's socket, or (`addr`) to a subscriber's data socket; a Unix
    /// connect completes at once or fails. The kernel's credentials of the listening process
    /// go to the member, which decides whether to talk to it.
    fn connect(&mut self, now: Instant, peer: PeerId, addr: Option<&str>) {
        let connected = match addr {
            None => self.dir.connect_hub(),
            Some(addr) => self.dir.connect_data(addr).inspect(|fd| {
                let _ = socket::set_send_buffer(fd, DATA_SEND_BUFFER);
            }),
        };
        match connected {
            Ok(fd) => {
                let cred = credentials(&fd);
                // The hub's process, watched for its exit (data links are not).
                let process = addr.is_none().then(|| PidFd::open_peer(&fd));
                self.add_link(peer, fd, addr.is_some());
                feed(&mut self.member, now, MemberInput::Connected { peer, cred });
                if let Some(process) = process {
                    self.watch(now, peer, process);
                }
            }
            Err(_) => feed(&mut self.member, now, MemberInput::ConnectFailed(peer)),
        }
    }

    /// Tries to claim the hub: whoever holds the hub's lock runs the group's hub, and
    /// replaces whatever socket a dead hub left behind.
    fn bind(&mut self, now: Instant) {
        let claim = self.dir.claim_hub().unwrap_or_else(|e| {
            eprintln!("poll_driver: cannot claim the hub: {e}");
            None
        });
        let won = claim.is_some();
        self.listener = claim;
        feed(&mut self.member, now, MemberInput::Bound { won });
    }

    /// Accepts pending connections on a listener, with the kernel's word on who each is.
    fn accept(&mut self, now: Instant, listener: Listener) {
        for _ in 0..ACCEPT_BUDGET {
            let accepted = match (listener, &self.listener) {
                (Listener::Hub, None) => return,
                (Listener::Hub, Some(l)) => rustix::net::accept_with(l, flags()),
                (Listener::Data, _) => rustix::net::accept_with(&self.data_listener, flags()),
            };
            match accepted {
                Ok(fd) => {
                    self.next_peer += 1;
                    let (peer, cred) = (PeerId(self.next_peer), credentials(&fd));
                    // A spoke's process, watched for its exit (data links are not).
                    let process = (listener == Listener::Hub).then(|| PidFd::open_peer(&fd));
                    self.add_link(peer, fd, listener == Listener::Data);
                    let input = MemberInput::Accepted {
                        peer,
                        listener,
                        cred,
                    };
                    feed(&mut self.member, now, input);
                    if let Some(process) = process {
                        self.watch(now, peer, process);
                    }
                }
                Err(Errno::INTR | Errno::CONNABORTED) => {}
                Err(Errno::AGAIN) => return, // none left
                // Out of fds (EMFILE, ENFILE) or memory: the member pauses accepting a while.
                Err(_) => {
                    return feed(&mut self.member, now, MemberInput::AcceptFailed(listener));
                }
            }
        }
    }

    /// Watches the process at the other end of a new hub link (guide, section 8), reported
    /// after its `Connected`/`Accepted`. `ipc_os::pidfd` opens the pidfd without trusting a
    /// pid number that may have been reused, and honours `IPC_PUBSUB_NO_PIDFD=1`.
    fn watch(&mut self, now: Instant, peer: PeerId, process: PeerProcess) {
        match process {
            // This process itself (a hub's own spoke): its exit ends the watcher too.
            PeerProcess::Watch(pidfd) if pidfd.pid() == std::process::id() => {}
            PeerProcess::Watch(pidfd) => self.watches.push(Watch {
                peer,
                pidfd,
                until: None,
            }),
            // Dead already (between the connect and now): certain, so said at once.
            PeerProcess::AlreadyExited => {
                feed(&mut self.member, now, MemberInput::PeerExited(peer));
            }
            // Another pid namespace, no pidfds, switched off: never reported; the member
            // gives that peer the grace.
            PeerProcess::Unavailable(_) => {}
        }
    }

    /// A watched process exited (its pidfd is readable, and stays so): told once, and the
    /// pidfd closed.
    fn exited(&mut self, now: Instant, peer: PeerId) {
        if let Some(i) = self.watches.iter().position(|w| w.peer == peer) {
            self.watches.swap_remove(i);
            feed(&mut self.member, now, MemberInput::PeerExited(peer));
        }
    }

    /// Ends the watches of closed links: each stays for `EXIT_WATCH_AFTER_CLOSE` after its
    /// link is gone (the exit usually comes just after the hangup), then its pidfd is closed.
    fn end_watches(&mut self, now: Instant) {
        for w in &mut self.watches {
            if w.until.is_none() && !self.links.iter().any(|l| l.peer == w.peer) {
                w.until = Some(now + EXIT_WATCH_AFTER_CLOSE);
            }
        }
        self.watches.retain(|w| w.until.is_none_or(|at| at > now));
    }

    fn transmit(&mut self, now: Instant, peer: PeerId, bytes: Vec<u8>, attach: Option<SegmentId>) {
        // A link already gone: the member has been (or is about to be) told.
        let Some(i) = self.find(peer).filter(|&i| self.links[i].closing.is_none()) else {
            return;
        };
        let l = &mut self.links[i];
        l.bytes += bytes.len();
        l.outbox.push_back((bytes, attach));
        if !l.data && l.bytes > MAX_OUTBOX {
            eprintln!("poll_driver: {peer} does not keep up: closing its link");
            return self.drop_link(now, i);
        }
        self.flush(now, peer);
    }

    /// Sends what the socket takes, one whole record per `send` with its segment's fd, never
    /// blocking; tells the member when a data link fills up and drains.
    fn flush(&mut self, now: Instant, peer: PeerId) {
        let Some(i) = self.find(peer) else { return };
        let l = &mut self.links[i];
        while let Some((record, attach)) = l.outbox.front() {
            let len = record.len();
            // The fd is looked up when the record goes: a segment retired meanwhile drops it.
            let fd = attach.map(|s| self.memory.fd(s));
            if let Some(None) = fd {
                l.bytes -= len;
                l.outbox.pop_front();
                continue;
            }
            let fds: Vec<BorrowedFd<'_>> = fd.flatten().into_iter().collect();
            match socket::send_record(&l.fd, record, &fds) {
                Ok(Sent::Complete) => {
                    l.bytes -= len;
                    l.outbox.pop_front();
                }
                Ok(Sent::WouldBlock) => break, // `poll` says when there is room
                // The peer is gone; its last records may still be queued for us: reading
                // finds them, then the end of the link.
                Err(_) if l.closing.is_none() => {
                    l.outbox.clear();
                    l.bytes = 0;
                    return;
                }
                Err(_) => {
                    self.links.swap_remove(i);
                    return;
                }
            }
        }
        // Blocked/Writable: the member's flow control of data links. While blocked it holds
        // messages back (and counts them against the subscriber's depth).
        let full = !l.outbox.is_empty();
        if l.data && l.closing.is_none() && full != l.blocked {
            l.blocked = full;
            let input = if full {
                MemberInput::Blocked(peer)
            } else {
                MemberInput::Writable(peer)
            };
            feed(&mut self.member, now, input);
        }
        if self.links[i].closing.is_some() && !full {
            self.links.swap_remove(i);
        }
    }

    /// Reads records and feeds them to the member, one record per `recv`, at most
    /// `READ_BUDGET` per wakeup: `poll` is level-triggered, so what is left wakes it again.
    fn read(&mut self, now: Instant, peer: PeerId) {
        for _ in 0..READ_BUDGET {
            let Some(i) = self.find(peer).filter(|&i| self.links[i].closing.is_none()) else {
                return;
            };
            let data = self.links[i].data;
            let (limit, max_fds) = if data {
                (self.max_data, MAX_FDS)
            } else {
                (self.max_topology, 0)
            };
            let mut fds = Vec::new();
            let got =
                socket::recv_record(&self.links[i].fd, &mut self.buf[..limit], &mut fds, max_fds);
            match got {
                Ok(Recv::Data {
                    len,
                    record_len,
                    truncated,
                    fds_truncated,
                    ..
                }) => {
                    // Too large, or fds where none may be: the member closes the link.
                    if truncated || fds_truncated {
                        let reason = format!("a record of {record_len} bytes, or too many fds");
                        feed(
                            &mut self.member,
                            now,
                            MemberInput::Rejected { peer, reason },
                        );
                        return self.act(now);
                    }
                    // Every fd is checked before anything maps it: a memfd sealed against
                    // shrinking, whose size (read after the seal) bounds every range the
                    // member will accept in it.
                    let mut segments = Vec::with_capacity(fds.len());
                    for fd in fds {
                        match self.memory.receive(fd) {
                            Ok(s) => segments.push(s),
                            Err(e) => {
                                for s in &segments {
                                    self.memory.release(s.segment, now);
                                }
                                let reason = format!("a received fd is not a usable memfd: {e}");
                                feed(
                                    &mut self.member,
                                    now,
                                    MemberInput::Rejected { peer, reason },
                                );
                                return self.act(now);
                            }
                        }
                    }
                    let input = MemberInput::Record {
                        peer,
                        data: &self.buf[..len],
                        segments: &segments,
                    };
                    feed(&mut self.member, now, input);
                    // Deliveries map the segments this record carried at once.
                    self.act(now);
                }
                Ok(Recv::Closed) | Err(_) => return self.drop_link(now, i),
                Ok(Recv::WouldBlock) => return,
            }
        }
    }

    /// The link broke: close it, and tell the member unless it closed the link itself.
    fn drop_link(&mut self, now: Instant, i: usize) {
        let l = self.links.swap_remove(i);
        if l.closing.is_none() {
            feed(&mut self.member, now, MemberInput::PeerDown(l.peer));
        }
    }

    /// A message for this node: print it, and give a pooled range back once read.
    fn deliver(&mut self, now: Instant, d: Delivery) {
        let via = match d.payload {
            Delivered::Inline(_) => "inline",
            Delivered::Fresh { .. } => "fresh",
            Delivered::Pooled { .. } => "pooled",
        };
        let line = self.memory.read(&d.payload, |bytes| {
            json!({"event": "message", "topic": &*d.topic, "node": d.publisher.to_string(),
                "seq": d.seq, "len": bytes.len(), "fnv1a64": format!("{:016x}", fnv1a64(bytes)),
                "via": via, "index": bytes.get(..8).map_or(0, |h| u64::from_le_bytes(h.try_into().expect("8")))})
        });
        match line {
            Some(v) => emit(&v),
            None => eprintln!("poll_driver: a message of {} could not be mapped", d.topic),
        }
        // Fresh: the segment was ours from `Deliver` on, and `read` closed it. Pooled: the
        // range stays the publisher's, and goes back to it now.
        if let Delivered::Pooled { slot, .. } = d.payload {
            let release = DataCmd::Release {
                peer: d.peer,
                slots: vec![slot],
            };
            feed(
                &mut self.member,
                now,
                MemberInput::Cmd(MemberCmd::Data(release)),
            );
        }
    }

    /// Reads what stdin has; runs each whole line as a command. Its end means leave.
    fn read_stdin(&mut self, now: Instant, stdin: BorrowedFd<'_>) {
        let mut chunk = [0u8; 4096];
        match rustix::io::read(stdin, &mut chunk) {
            Ok(n) if n > 0 => self.stdin_buf.extend_from_slice(&chunk[..n]),
            Err(Errno::INTR | Errno::AGAIN) => return,
            _ => {
                let rest =
                    String::from_utf8_lossy(&std::mem::take(&mut self.stdin_buf)).into_owned();
                self.command(now, &rest);
                return self.leave(now);
            }
        }
        while let Some(end) = self.stdin_buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.stdin_buf.drain(..=end).collect();
            self.command(now, &String::from_utf8_lossy(&line));
        }
    }

    /// Runs one command line of the peer protocol; a `failed` line says why one did not run.
    fn command(&mut self, now: Instant, line: &str) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return;
        }
        if let Err(error) = self.execute(now, &words) {
            emit(&json!({"event": "failed", "command": line.trim(), "error": error}));
        }
    }

    fn execute(&mut self, now: Instant, w: &[&str]) -> Result<(), String> {
        let topic = w
            .get(1)
            .map(|t| (*t).to_string())
            .ok_or("a topic is missing");
        let number = |i: usize| -> Result<u64, String> {
            w.get(i)
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("word {i} is not a number"))
        };
        let spoke = |cmd| MemberCmd::Spoke(cmd);
        match w[0] {
            "announce" => self.cmd(
                now,
                spoke(SpokeCmd::Announce {
                    topic: topic?,
                    mime: MIME.into(),
                }),
            ),
            "retract" => self.cmd(now, spoke(SpokeCmd::Retract { topic: topic? })),
            "subscribe" => self.cmd(now, spoke(SpokeCmd::Subscribe { topic: topic? })),
            "unsubscribe" => self.cmd(now, spoke(SpokeCmd::Unsubscribe { topic: topic? })),
            "publisher" => {
                let mode = match w.get(2).copied() {
                    Some("inline") => SendMode::Inline,
                    Some("fresh") => SendMode::Fresh,
                    Some("pooled") => SendMode::Pooled,
                    Some("auto") | None => SendMode::Auto,
                    Some(m) => return Err(format!("unknown mode {m}")),
                };
                let topic = topic?;
                // Announce (the topology: subscribers learn of this publisher) and Advertise
                // (the data plane: links to the topic's subscribers) go together.
                let announce = SpokeCmd::Announce {
                    topic: topic.clone(),
                    mime: MIME.into(),
                };
                self.cmd(now, spoke(announce))?;
                self.cmd(
                    now,
                    MemberCmd::Data(DataCmd::Advertise {
                        topic: topic.clone(),
                    }),
                )?;
                let inline_max = if mode == SendMode::Inline {
                    INLINE_MODE_MAX
                } else {
                    DEFAULT_INLINE_MAX
                };
                let options = PublisherOptions {
                    mode,
                    inline_max,
                    ..PublisherOptions::default()
                };
                let p = self.publishing.entry(topic).or_insert(Publishing {
                    options: options.clone(),
                    next: 0,
                    pending: VecDeque::new(),
                    wait_until: None,
                });
                p.options = options;
                Ok(())
            }
            "subscription" => {
                let depth = u32::try_from(number(3)?).map_err(|e| e.to_string())?;
                let options = match w.get(2).copied() {
                    Some("block") => SubscriptionOptions {
                        depth,
                        ..SubscriptionOptions::block(BLOCK_TIMEOUT)
                    },
                    Some("oldest") => SubscriptionOptions::drop_oldest(depth),
                    Some("newest") => SubscriptionOptions::drop_newest(depth),
                    p => return Err(format!("unknown policy {p:?}")),
                };
                let topic = topic?;
                // Take (the data plane: this node's terms) and Subscribe (the topology:
                // publishers learn of this subscriber and connect) go together.
                let take = DataCmd::Take {
                    topic: topic.clone(),
                    terms: options.terms(),
                };
                self.cmd(now, MemberCmd::Data(take))?;
                self.cmd(now, spoke(SpokeCmd::Subscribe { topic }))
            }
            "publish" => {
                let (topic, size, count) = (topic?, number(2)?, number(3)?);
                let size = usize::try_from(size).map_err(|e| e.to_string())?;
                let p = self.publishing.get_mut(&topic).ok_or("no publisher")?;
                p.pending.push_back((size, count, count));
                self.publish_pending(now);
                Ok(())
            }
            "leave" => {
                self.leave(now);
                Ok(())
            }
            other => Err(format!("unknown command {other:?}")),
        }
    }

    fn cmd(&mut self, now: Instant, cmd: MemberCmd) -> Result<(), String> {
        (self.member.handle(now, MemberInput::Cmd(cmd))).map_err(|e| e.to_string())
    }

    /// Publishes what the `publish` commands still owe, as far as the topics' `Block`
    /// subscribers have room (the member's credits); a message that waited longer than they
    /// allow goes out `expired` (dropped for the subscribers still full).
    fn publish_pending(&mut self, now: Instant) {
        let topics: Vec<String> = (self.publishing.iter())
            .filter(|(_, p)| !p.pending.is_empty())
            .map(|(t, _)| t.clone())
            .collect();
        for topic in topics {
            loop {
                let room = self.member.data().and_then(|d| d.room(&topic));
                let p = self.publishing.get_mut(&topic).expect("listed above");
                let Some(&(size, left, count)) = p.pending.front() else {
                    break;
                };
                let expired = match room {
                    Some(r) if r.messages == 0 => {
                        let until = *p.wait_until.get_or_insert(now + r.timeout);
                        if until > now {
                            break; // until a `Room` event, or the deadline
                        }
                        true
                    }
                    _ => false,
                };
                p.wait_until = None;
                // This driver takes no rings: inline up to the publisher's threshold.
                let paths = Paths {
                    private: self.private,
                    rings: false,
                };
                let (index, mode) = (p.next, p.options.mode_for(size, paths));
                let inline_max = p.options.inline_max;
                let made = if mode == SendMode::Inline && size > inline_max {
                    Err(format!(
                        "{size} bytes is more than {inline_max}, the inline maximum"
                    ))
                } else {
                    self.memory
                        .payload(mode, &test_payload(index, size), now)
                        .map_err(|e| e.to_string())
                };
                let p = self.publishing.get_mut(&topic).expect("listed above");
                let payload = match made {
                    Ok(payload) => payload,
                    Err(error) => {
                        p.pending.pop_front();
                        let command = format!("publish {topic} {size} {count}");
                        emit(&json!({"event": "failed", "command": command, "error": error}));
                        continue;
                    }
                };
                p.next += 1;
                if left == 1 {
                    p.pending.pop_front();
                    emit(&json!({"event": "published", "topic": topic, "count": count}));
                } else {
                    p.pending.front_mut().expect("front").1 -= 1;
                }
                let publish = DataCmd::Publish {
                    topic: topic.as_str().into(),
                    payload,
                    expired,
                };
                feed(
                    &mut self.member,
                    now,
                    MemberInput::Cmd(MemberCmd::Data(publish)),
                );
            }
        }
    }

    /// Leaves: messages not yet published are dropped (said in `failed` lines); the member
    /// says goodbye, and the loop ends once it has left and every outbox is flushed.
    fn leave(&mut self, now: Instant) {
        if self.leave_by.is_some() {
            return;
        }
        self.leave_by = Some(now + LEAVE_DEADLINE);
        for (topic, p) in &mut self.publishing {
            for (size, left, count) in p.pending.drain(..) {
                let command = format!("publish {topic} {size} {count}");
                let error = format!("left with {left} messages unpublished");
                emit(&json!({"event": "failed", "command": command, "error": error}));
            }
        }
        feed(
            &mut self.member,
            now,
            MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Leave)),
        );
    }
}

impl Memory {
    /// The fd of one of this node's segments, to send with a record.
    fn fd(&self, id: SegmentId) -> Option<BorrowedFd<'_>> {
        match self.fresh.get(&id) {
            Some(fd) => Some(fd.as_fd()),
            None => self.pooled.get(&id).map(|(s, _)| s.as_fd()),
        }
    }

    /// Writes a payload where `mode` says: in the record, in a fresh sealed memfd, or in a
    /// pool segment (a fresh one when the pool is at its bound).
    fn payload(&mut self, mode: SendMode, bytes: &[u8], now: Instant) -> io::Result<Payload> {
        let len = bytes.len() as u64;
        if mode == SendMode::Inline {
            return Ok(Payload::Inline(bytes.to_vec()));
        }
        if mode == SendMode::Pooled
            && let Some(slot) = self.pool.alloc(len)
        {
            if slot.new {
                let created = (|| {
                    let segment = Segment::create(
                        "poll-pool",
                        usize::try_from(slot.size).map_err(io::Error::other)?,
                    )?;
                    let map = segment.map_rw()?;
                    // This node keeps its mapping; nobody may add one, grow or shrink it.
                    segment.seal(SealSet::POOLED)?;
                    Ok::<_, io::Error>((segment, map))
                })();
                match created {
                    Ok(s) => {
                        self.pooled.insert(slot.segment, s);
                    }
                    Err(e) => {
                        self.pool.free(slot.segment, now);
                        return Err(e);
                    }
                }
            }
            let (_, map) = self.pooled.get_mut(&slot.segment).expect("created above");
            map[..bytes.len()].copy_from_slice(bytes);
            return Ok(Payload::Pooled {
                segment: slot.segment,
                size: slot.size,
                offset: 0,
                len,
            });
        }
        // Fresh: written, unmapped, then sealed against any change; the subscribers check the
        // seals before they map it.
        let segment = Segment::create("poll-fresh", bytes.len())?;
        let mut map = segment.map_rw()?;
        map.copy_from_slice(bytes);
        drop(map);
        segment.seal(SealSet::FRESH)?;
        let id = SegmentId(self.next_fresh);
        self.next_fresh += 1;
        self.fresh.insert(id, segment.into_fd());
        Ok(Payload::Fresh { segment: id, len })
    }

    /// Checks a received fd and registers it for the member, with the size it may trust.
    fn receive(&mut self, fd: OwnedFd) -> Result<ReceivedSegment, memfd::SegmentError> {
        let v = memfd::verify(fd, SealSet::EMPTY, 0, 0)?;
        let segment = SegmentId(self.next_received);
        self.next_received += 1;
        let r = ReceivedSegment {
            segment,
            size: v.size(),
            seals: v.seals().into(),
        };
        self.received.insert(segment, (v, None));
        Ok(r)
    }

    /// `f` of a delivered payload's bytes. A fresh segment is the driver's from its delivery
    /// on: mapped here, closed when this returns. A pool segment is mapped whole once, and
    /// stays until the member releases it (its publisher retired it, or the link is gone).
    fn read<R>(&mut self, payload: &Delivered, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        match payload {
            Delivered::Inline(bytes) => Some(f(bytes)),
            Delivered::Fresh { segment, len } => {
                let (v, _) = self.received.remove(segment)?;
                Some(f(&v.map_ro(0, *len).ok()?))
            }
            Delivered::Pooled {
                segment,
                offset,
                len,
                ..
            } => {
                let (v, map) = self.received.get_mut(segment)?;
                if map.is_none() {
                    *map = Some(v.map_ro(0, v.size()).ok()?);
                }
                let start = usize::try_from(*offset).ok()?;
                let end = start.checked_add(usize::try_from(*len).ok()?)?;
                Some(f(map.as_ref()?.get(start..end)?))
            }
        }
    }

    /// The member lets go of a segment.
    fn release(&mut self, segment: SegmentId, now: Instant) {
        if segment.0 >= RECEIVED {
            self.received.remove(&segment);
        } else if segment.0 >= FRESH {
            self.fresh.remove(&segment);
        } else {
            self.pool.free(segment, now);
        }
    }
}

fn flags() -> SocketFlags {
    SocketFlags::NONBLOCK | SocketFlags::CLOEXEC
}

/// `SO_PEERCRED`: who is at the other end, from the kernel, never from the peer's bytes.
fn credentials(fd: &OwnedFd) -> Option<Credentials> {
    ipc_os::rendezvous::peer_credentials(fd.as_fd()).ok()
}

/// Feeds one input; an `Err` means an invalid command, never something a peer did.
fn feed(member: &mut Member, now: Instant, input: MemberInput<'_>) {
    if let Err(e) = member.handle(now, input) {
        eprintln!("poll_driver: refused: {e}");
    }
}

/// The payload of message `index` of a topic, `len` bytes (the peer protocol's): the index,
/// little-endian, in the first 8 bytes, then `index * 31 + position`, truncated to a byte.
fn test_payload(index: u64, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len)
        .map(|j| (index as usize).wrapping_mul(31).wrapping_add(j) as u8)
        .collect();
    let n = len.min(8);
    v[..n].copy_from_slice(&index.to_le_bytes()[..n]);
    v
}

/// 64-bit FNV-1a, as `ipc-pubsub sub` prints it.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn emit(v: &Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{v}").and_then(|()| out.flush());
}

fn report(e: &MemberEvt) {
    let simple = |name: &str| json!({ "event": name });
    let v = match e {
        MemberEvt::Topology(t) => topology_line(t),
        MemberEvt::Synced { hub, term } => {
            json!({"event": "synced", "hub": hub.to_string(), "term": term.0})
        }
        MemberEvt::BecameHub => simple("became_hub"),
        MemberEvt::HubLost => simple("hub_lost"),
        MemberEvt::HubUnresponsive => simple("hub_unresponsive"),
        MemberEvt::HubResponsive => simple("hub_responsive"),
        MemberEvt::HubClosed(r) => json!({"event": "hub_closed", "reason": r.to_string()}),
        MemberEvt::Hub(h) => return eprintln!("poll_driver: hub: {h:?}"),
        MemberEvt::PeerMisbehaved { peer, reason } => {
            return eprintln!("poll_driver: {peer} broke the protocol: {reason}");
        }
        MemberEvt::PeerRefused { peer, reason, .. } => {
            return eprintln!("poll_driver: {peer} refused: {reason}");
        }
        // `Left` is read through `is_left`; `HubAbsent` is an observer's; documents and the
        // rest are for logs.
        _ => return,
    };
    emit(&v);
}

/// A topology event as a line: the peer protocol's, which is `ipc-pubsub node`'s.
fn topology_line(e: &Event) -> Value {
    match e {
        Event::NodeJoined { info, seq } => json!({"event": "node_joined",
            "node": info.id.to_string(), "name": info.name, "pid": info.pid, "uid": info.uid,
            "seq": seq.to_string()}),
        Event::NodeLeft { node, .. } => json!({"event": "node_left", "node": node.to_string()}),
        Event::TopicAnnounced {
            node,
            topic,
            mime,
            seq,
        } => json!({"event": "topic_announced",
            "node": node.to_string(), "topic": topic, "mime": mime, "seq": seq.to_string()}),
        Event::TopicRetracted { node, topic } => {
            json!({"event": "topic_retracted", "node": node.to_string(), "topic": topic})
        }
        Event::Subscribed { node, topic, seq } => json!({"event": "subscribed",
            "node": node.to_string(), "topic": topic, "seq": seq.to_string()}),
        Event::Unsubscribed { node, topic } => {
            json!({"event": "unsubscribed", "node": node.to_string(), "topic": topic})
        }
        Event::HubChanged { node, term } => {
            json!({"event": "hub_changed", "node": node.to_string(), "term": term.0})
        }
    }
}

type Args = (NodeOptions, String, Vec<String>, Vec<String>);

fn parse_args(args: &[String]) -> Result<Args, String> {
    let uid = rustix::process::getuid().as_raw();
    let (mut options, mut group) = (NodeOptions::new("poll", uid), None);
    let (mut announce, mut subscribe) = (Vec::new(), Vec::new());
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().cloned().ok_or(format!("{flag} needs a value"))?;
        let ms = || {
            value
                .parse()
                .map(Duration::from_millis)
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--group" => group = Some(value),
            "--name" => options.name = value,
            "--keepalive-ms" => options.keepalive = ms()?,
            "--heartbeat-ms" => options.heartbeat = Some(ms()?),
            "--grace-ms" => options.grace = ms()?,
            "--announce" => announce.push(value),
            "--subscribe" => subscribe.push(value),
            f => return Err(format!("unknown argument {f}")),
        }
    }
    // The keepalive figures must fit together (a heartbeat at most half the limit).
    options.check().map_err(|e| e.to_string())?;
    Ok((
        options,
        group.ok_or("--group is required")?,
        announce,
        subscribe,
    ))
}
