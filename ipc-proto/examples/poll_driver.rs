//! A minimal driver: one node of a group on a plain `poll(2)` loop, topology only.
//!
//! ```text
//! cargo run -p ipc-proto --example poll_driver -- --group demo --name me
//!     [--keepalive-ms MS] [--grace-ms MS] [--announce TOPIC]... [--subscribe TOPIC]...
//! ```
//!
//! It drives the same [`Member`] machine as `ipc-driver-std` and `ipc-driver-calloop`, so it
//! joins their groups, runs the hub when it wins the address and follows every hub change.
//! It has no data plane: it is a member with no data address, and it neither sends nor
//! receives payloads. Events go to stdout as JSON lines (the vocabulary of the conformance
//! suite's peers); the end of stdin makes the node leave. The guide, `ipc_proto::guide`,
//! explains every step.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ipc_os::rendezvous::{GroupDir, HubSocket};
use ipc_proto::{
    Credentials, Event, Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput, NodeId,
    NodeOptions, PeerId, SpokeCmd,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags, SocketFlags};
use serde_json::{Value, json};

/// Bytes queued for one link before the peer counts as not keeping up and the link is dropped.
const MAX_OUTBOX: usize = 8 << 20;
/// How long a link the member closed may take to flush what is queued for it.
const CLOSE_FLUSH: Duration = Duration::from_millis(500);
/// How long leaving may take in all (goodbyes sent, this node's hub closed).
const LEAVE_DEADLINE: Duration = Duration::from_millis(1500);
/// Records read from one link per wakeup before the others get their turn.
const READ_BUDGET: usize = 64;

/// One connected `SOCK_SEQPACKET` socket: to the hub, or from a spoke to this node's hub.
struct Link {
    peer: PeerId,
    fd: OwnedFd,
    /// Whole records the socket has not taken yet (never a blocking send).
    outbox: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The member closed it: flush the outbox, then close, by this deadline.
    closing: Option<Instant>,
}

/// What `poll` watches.
#[derive(Copy, Clone)]
enum Source {
    Stdin,
    Listener,
    Link(PeerId),
}

struct Driver {
    member: Member,
    /// Where the group meets: its private directory, the hub's lock and socket in it.
    dir: GroupDir,
    /// The hub address, while this node holds it.
    listener: Option<HubSocket>,
    links: Vec<Link>,
    /// Ids of accepted links: ours to choose, below `OUTGOING` (the member's own bit).
    next_peer: u64,
    /// One frame plus a byte, to notice a larger record.
    buf: Vec<u8>,
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (options, group, announce, subscribe) = parse_args(&args).unwrap_or_else(|e| {
        eprintln!("poll_driver: {e}\nusage: poll_driver --group G --name N [--keepalive-ms MS] [--grace-ms MS] [--announce T]... [--subscribe T]...");
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
    // `member_config` with no data address makes an observer; this node is a member (it
    // joins, announces, subscribes, may run the hub) that has no data plane: `data` is `None`
    // and its published data address is empty.
    let mut config = options.member_config(id, None, seed);
    config.spoke.observer(false);

    #[allow(clippy::disallowed_methods)] // the driver reads the clock
    let mut now = Instant::now();
    let mut d = Driver {
        member: Member::new(config, now),
        dir,
        listener: None,
        links: Vec::new(),
        next_peer: 0,
        buf: vec![0; options.limits.max_frame + 5],
    };
    let pid = std::process::id();
    emit(
        &json!({"event": "started", "node": id.to_string(), "name": options.name,
        "pid": pid, "group": group, "driver": "poll"}),
    );
    let mime = "application/octet-stream".to_string();
    let cmds = (announce.into_iter())
        .map(|topic| SpokeCmd::Announce {
            topic,
            mime: mime.clone(),
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
    let mut leave_by: Option<Instant> = None;
    loop {
        // Act on everything the member asks; acting (a connect, a bind) can make it ask more.
        d.act(now);
        if leave_by.is_some_and(|by| (d.member.is_left() && d.links.is_empty()) || by <= now) {
            break;
        }
        // Sleep until a socket (or stdin) is ready or the next deadline.
        let closing = d.links.iter().filter_map(|l| l.closing);
        let deadline = [d.member.poll_timeout(), leave_by]
            .into_iter()
            .flatten()
            .chain(closing)
            .min();
        let timeout =
            deadline.and_then(|t| Timespec::try_from(t.saturating_duration_since(now)).ok());
        let ready = d.wait(leave_by.is_none().then(|| stdin.as_fd()), timeout)?;
        #[allow(clippy::disallowed_methods)] // the driver reads the clock, once per wakeup
        {
            now = Instant::now();
        }
        for (source, flags) in ready {
            match source {
                Source::Stdin => {
                    // Lines are ignored; the end of stdin (or an error on it) means leave.
                    let mut line = [0u8; 4096];
                    match rustix::io::read(stdin.as_fd(), &mut line) {
                        Ok(n) if n > 0 => {}
                        Err(Errno::INTR | Errno::AGAIN) => {}
                        _ => {
                            leave_by = Some(now + LEAVE_DEADLINE);
                            feed(
                                &mut d.member,
                                now,
                                MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Leave)),
                            );
                        }
                    }
                }
                Source::Listener => d.accept(now),
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
        if d.member.poll_timeout().is_some_and(|t| t <= now) {
            d.member.handle_timeout(now);
        }
    }
    emit(&json!({"event": "left"}));
    Ok(())
}

impl Driver {
    fn act(&mut self, now: Instant) {
        while let Some(out) = self.member.poll_output() {
            match out {
                MemberOutput::ConnectHub { peer } => self.connect(now, peer),
                MemberOutput::Bind => self.bind(now),
                // Dropping it removes the socket file, then releases the hub's lock.
                MemberOutput::Unbind => self.listener = None,
                // `attach` is only ever set on data links, and this node has none.
                MemberOutput::Transmit { peer, bytes, .. } => self.transmit(now, peer, bytes),
                MemberOutput::Disconnect(peer) => {
                    if let Some(i) = self.find(peer) {
                        self.links[i].closing = Some(now + CLOSE_FLUSH);
                        self.flush(now, peer);
                    }
                }
                // Without a data plane the member opens no data link, delivers no message and
                // releases no segment; were it to ask for a data link, it would not come up.
                MemberOutput::ConnectData { peer, .. } => {
                    feed(&mut self.member, now, MemberInput::ConnectFailed(peer));
                }
                MemberOutput::Deliver(_) | MemberOutput::Release(_) => {}
                // `wait` watches the listener only while `is_accepting`.
                MemberOutput::PauseAccepting | MemberOutput::ResumeAccepting => {}
                MemberOutput::Evt(e) => report(&e),
            }
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
        if let Some(l) = self
            .listener
            .as_ref()
            .filter(|_| self.member.is_accepting())
        {
            sources.push(Source::Listener);
            fds.push(PollFd::new(l, PollFlags::IN));
        }
        for l in &self.links {
            let mut want = PollFlags::empty();
            want.set(PollFlags::IN, l.closing.is_none());
            want.set(PollFlags::OUT, !l.outbox.is_empty());
            sources.push(Source::Link(l.peer));
            fds.push(PollFd::new(&l.fd, want));
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

    fn add_link(&mut self, peer: PeerId, fd: OwnedFd) {
        let outbox = VecDeque::new();
        self.links.push(Link {
            peer,
            fd,
            outbox,
            bytes: 0,
            closing: None,
        });
    }

    /// Connects to the hub's socket; a Unix connect completes at once or fails.
    fn connect(&mut self, now: Instant, peer: PeerId) {
        let input = match self.dir.connect_hub() {
            Ok(fd) => {
                let cred = credentials(&fd);
                self.add_link(peer, fd);
                MemberInput::Connected { peer, cred }
            }
            Err(_) => MemberInput::ConnectFailed(peer),
        };
        feed(&mut self.member, now, input);
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

    /// Accepts every pending spoke, with the kernel's word on who it is.
    fn accept(&mut self, now: Instant) {
        while let Some(l) = &self.listener {
            match rustix::net::accept_with(l, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    self.next_peer += 1;
                    let (peer, cred) = (PeerId(self.next_peer), credentials(&fd));
                    self.add_link(peer, fd);
                    let input = MemberInput::Accepted {
                        peer,
                        listener: Listener::Hub,
                        cred,
                    };
                    feed(&mut self.member, now, input);
                }
                Err(Errno::INTR | Errno::CONNABORTED) => {}
                Err(Errno::AGAIN) => return, // none left
                // Out of fds (EMFILE, ENFILE) or memory: the member pauses accepting a while.
                Err(_) => {
                    feed(
                        &mut self.member,
                        now,
                        MemberInput::AcceptFailed(Listener::Hub),
                    );
                    return;
                }
            }
        }
    }

    fn transmit(&mut self, now: Instant, peer: PeerId, bytes: Vec<u8>) {
        // A link already gone: the member has been (or is about to be) told.
        let Some(i) = self.find(peer).filter(|&i| self.links[i].closing.is_none()) else {
            return;
        };
        let l = &mut self.links[i];
        l.bytes += bytes.len();
        l.outbox.push_back(bytes);
        if l.bytes > MAX_OUTBOX {
            eprintln!("poll_driver: {peer} does not keep up: closing its link");
            return self.drop_link(now, i);
        }
        self.flush(now, peer);
    }

    /// Sends what the socket takes, one whole record per `send`, never blocking.
    fn flush(&mut self, now: Instant, peer: PeerId) {
        let Some(i) = self.find(peer) else { return };
        let l = &mut self.links[i];
        while let Some(record) = l.outbox.front() {
            match rustix::net::send(&l.fd, record, SendFlags::DONTWAIT | SendFlags::NOSIGNAL) {
                Ok(_) => {
                    l.bytes -= record.len();
                    l.outbox.pop_front();
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => return, // `poll` says when there is room
                Err(_) => return self.drop_link(now, i),
            }
        }
        if l.closing.is_some() {
            self.links.swap_remove(i);
        }
    }

    /// Reads records and feeds them to the member, one record per `recv`.
    fn read(&mut self, now: Instant, peer: PeerId) {
        let mut reset_seen = false;
        for _ in 0..READ_BUDGET {
            let Some(i) = self.find(peer).filter(|&i| self.links[i].closing.is_none()) else {
                return;
            };
            let flags = RecvFlags::DONTWAIT | RecvFlags::TRUNC; // TRUNC: the record's real length
            match rustix::net::recv(&self.links[i].fd, &mut self.buf[..], flags) {
                // Records are never empty: zero bytes is the end of the stream.
                Ok((_, 0)) => return self.drop_link(now, i),
                Ok((_, n)) if n > self.buf.len() => {
                    let reason = format!("a record of {n} bytes");
                    return feed(
                        &mut self.member,
                        now,
                        MemberInput::Rejected { peer, reason },
                    );
                }
                // Topology links carry no fds (a plain `recv` makes the kernel close any).
                Ok((len, _)) => {
                    let input = MemberInput::Record {
                        peer,
                        data: &self.buf[..len],
                        segments: &[],
                    };
                    feed(&mut self.member, now, input);
                }
                Err(Errno::INTR) => {}
                // The peer closed with our records unread; its last records (a goodbye, say)
                // may still be queued behind the error.
                Err(Errno::CONNRESET) if !reset_seen => reset_seen = true,
                Err(Errno::AGAIN) => return,
                Err(_) => return self.drop_link(now, i),
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
        // `Left` is read through `is_left`; `Room` is the data plane's; `HubAbsent` an
        // observer's.
        _ => return,
    };
    emit(&v);
}

/// A topology event as a line, with the field names of `ipc-test-node peer`.
fn topology_line(e: &Event) -> Value {
    match e {
        Event::NodeJoined { info, seq } => json!({"event": "node_joined",
            "node": info.id.to_string(), "name": info.name, "pid": info.pid, "uid": info.uid,
            "seq": seq.to_string()}),
        Event::NodeLeft { node, .. } => json!({"event": "node_left", "node": node.to_string()}),
        Event::TopicAnnounced {
            node, topic, mime, ..
        } => json!({"event": "topic_announced",
            "node": node.to_string(), "topic": topic, "mime": mime}),
        Event::TopicRetracted { node, topic } => {
            json!({"event": "topic_retracted", "node": node.to_string(), "topic": topic})
        }
        Event::Subscribed { node, topic, .. } => {
            json!({"event": "subscribed", "node": node.to_string(), "topic": topic})
        }
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
            "--grace-ms" => options.grace = ms()?,
            "--announce" => announce.push(value),
            "--subscribe" => subscribe.push(value),
            f => return Err(format!("unknown argument {f}")),
        }
    }
    Ok((
        options,
        group.ok_or("--group is required")?,
        announce,
        subscribe,
    ))
}
