//! The node's I/O thread: the only thread that touches the machines and the sockets.
//!
//! One `epoll` set holds the eventfd waker (requests from application threads), the hub
//! address's listener while this node runs the hub, the node's data listener, and every link:
//! the spoke's link to the hub, and while this node runs the hub, each spoke's link to it
//! (this node's own spoke included, through the kernel like any other). Each wakeup reads the
//! clock once, feeds what is ready to the [`Spoke`] or the [`Hub`], drains their outputs,
//! flushes what the sockets accept, and sleeps until the next readiness or deadline.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ipc_proto::{
    CmdError, Hub, HubCmd, HubConfig, HubEvt, Input, NodeId, Output, PeerId, Spoke, SpokeCmd,
    SpokeEvt, Term, View,
};
use slab::Slab;
use tracing::{debug, info, trace, warn};

use crate::events::{NodeEvent, Sink};
use crate::sys::addr::AbstractAddr;
use crate::sys::poll::{Event, Events, Interest, Poller, Token, Waker};
use crate::sys::socket::{self, Recv, Sent};

const WAKER: Token = Token(u64::MAX);
const HUB_LISTENER: Token = Token(u64::MAX - 1);
const DATA_LISTENER: Token = Token(u64::MAX - 2);

/// Records read from one link per wakeup before the others get their turn.
const READ_BUDGET: usize = 64;

/// How long a link that is being closed may take to flush what is queued for it.
const CLOSE_FLUSH: Duration = Duration::from_millis(500);

/// How long a hub waits for its own node's goodbye before closing.
const HUB_GOODBYE: Duration = Duration::from_millis(500);

/// A request from an application thread.
pub(crate) enum Request {
    Cmd(SpokeCmd, SyncSender<Result<(), CmdError>>),
    Events(Sink),
    Leave(SyncSender<()>),
}

/// What application threads may read without asking the I/O thread.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) view: View,
    pub(crate) hub: Option<(NodeId, Term)>,
    pub(crate) is_hub: bool,
    /// Why the I/O thread stopped, once it has.
    pub(crate) stopped: Option<String>,
}

/// [`State`] and a condition to wait on its changes.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    pub(crate) changed: Condvar,
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Everything the I/O thread needs to run a node.
pub(crate) struct Setup {
    pub(crate) hub_addr: AbstractAddr,
    pub(crate) hub_config: HubConfig,
    pub(crate) spoke: Spoke,
    pub(crate) data_listener: Option<OwnedFd>,
    pub(crate) max_outbox: usize,
    pub(crate) max_frame: usize,
}

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Side {
    /// This node's spoke's link to the hub.
    ToHub,
    /// A spoke's link to this node's hub.
    FromSpoke,
}

#[derive(Debug)]
struct Link {
    fd: OwnedFd,
    side: Side,
    peer: PeerId,
    outbox: VecDeque<Vec<u8>>,
    outbox_bytes: usize,
    writable: bool,
    /// Closing: flush what is queued, then close, by this deadline.
    closing: Option<Instant>,
}

/// The I/O thread's state.
pub(crate) struct Reactor {
    hub_addr: AbstractAddr,
    hub_config: HubConfig,
    max_outbox: usize,
    poller: Poller,
    waker: Arc<Waker>,
    requests: Receiver<Request>,
    spoke: Spoke,
    hub: Option<Hub>,
    hub_listener: Option<OwnedFd>,
    data_listener: Option<OwnedFd>,
    links: Slab<Link>,
    generation: u32,
    sinks: Vec<Sink>,
    shared: Arc<Shared>,
    view_dirty: bool,
    buf: Vec<u8>,
    leaving: Option<Leaving>,
}

#[derive(Debug)]
struct Leaving {
    reply: Option<SyncSender<()>>,
    /// When to stop waiting for this node's goodbye to reach its own hub.
    hub_close_at: Instant,
    /// When to stop flushing and exit.
    exit_at: Instant,
}

impl Reactor {
    pub(crate) fn new(
        setup: Setup,
        waker: Arc<Waker>,
        requests: Receiver<Request>,
        shared: Arc<Shared>,
        sinks: Vec<Sink>,
    ) -> io::Result<Self> {
        let poller = Poller::new()?;
        poller.add(waker.as_fd(), WAKER, Interest::READABLE)?;
        if let Some(l) = &setup.data_listener {
            poller.add(l.as_fd(), DATA_LISTENER, Interest::READABLE)?;
        }
        Ok(Self {
            hub_addr: setup.hub_addr,
            hub_config: setup.hub_config,
            max_outbox: setup.max_outbox,
            poller,
            waker,
            requests,
            spoke: setup.spoke,
            hub: None,
            hub_listener: None,
            data_listener: setup.data_listener,
            links: Slab::new(),
            generation: 0,
            sinks,
            shared,
            view_dirty: false,
            // One frame, plus a byte to notice a record that is larger.
            buf: vec![0; setup.max_frame + 5],
            leaving: None,
        })
    }

    /// Runs until the node has left (or the I/O fails), then releases every socket.
    pub(crate) fn run(mut self) {
        let result = self.event_loop();
        let why = match &result {
            Ok(()) => "left the group".to_string(),
            Err(e) => {
                warn!(error = %e, "I/O thread stops");
                format!("I/O error: {e}")
            }
        };
        for sink in &self.sinks {
            sink.close();
        }
        {
            let mut s = self.shared.lock();
            s.stopped = Some(why);
            s.hub = None;
            s.is_hub = false;
        }
        self.shared.changed.notify_all();
        if let Some(mut l) = self.leaving.take()
            && let Some(reply) = l.reply.take()
        {
            let _ = reply.send(());
        }
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let mut ready = Events::with_capacity(64);
        // Start: the spoke was told to join before the thread started.
        self.pump(Instant::now())?;
        loop {
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            self.poller.wait(&mut ready, timeout)?;
            let now = Instant::now();
            for event in ready.iter() {
                self.on_ready(now, event)?;
            }
            self.on_deadlines(now)?;
            self.pump(now)?;
            self.publish();
            if self.finished(now) {
                return Ok(());
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let machines = [
            self.spoke.poll_timeout(),
            self.hub.as_ref().and_then(Hub::poll_timeout),
        ];
        let closing = self.links.iter().filter_map(|(_, l)| l.closing);
        let leaving = self
            .leaving
            .iter()
            .flat_map(|l| [l.hub_close_at, l.exit_at]);
        machines
            .into_iter()
            .flatten()
            .chain(closing)
            .chain(leaving)
            .min()
    }

    fn on_ready(&mut self, now: Instant, event: Event) -> io::Result<()> {
        match event.token() {
            WAKER => self.on_requests(now),
            HUB_LISTENER => self.accept_spokes(now),
            DATA_LISTENER => {
                // Payload links come with the payload layer; until then, refuse them politely.
                if let Some(l) = &self.data_listener {
                    while let Some((fd, _)) = socket::accept(l.as_fd())? {
                        drop(fd);
                    }
                }
                Ok(())
            }
            Token(key) => {
                let key = key as usize;
                if event.is_writable() {
                    self.flush(key);
                }
                if event.is_readable() || event.is_hangup() || event.is_error() {
                    self.read(now, key);
                }
                Ok(())
            }
        }
    }

    fn on_requests(&mut self, now: Instant) -> io::Result<()> {
        self.waker.reset()?;
        loop {
            match self.requests.try_recv() {
                Ok(Request::Cmd(cmd, reply)) => {
                    let r = self.spoke.handle(now, Input::Cmd(cmd));
                    let _ = reply.send(r);
                    self.pump(now)?;
                }
                Ok(Request::Events(sink)) => self.sinks.push(sink),
                Ok(Request::Leave(reply)) => self.start_leaving(now, reply),
                Err(TryRecvError::Empty) => return Ok(()),
                // The node's handle is gone without a goodbye (it always sends one): leave.
                Err(TryRecvError::Disconnected) => {
                    if self.leaving.is_none() {
                        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
                        self.start_leaving(now, tx);
                    }
                    return Ok(());
                }
            }
        }
    }

    fn start_leaving(&mut self, now: Instant, reply: SyncSender<()>) {
        if self.leaving.is_some() {
            let _ = reply.send(());
            return;
        }
        debug!("leaving the group");
        let _ = self.spoke.handle(now, Input::Cmd(SpokeCmd::Leave));
        self.leaving = Some(Leaving {
            reply: Some(reply),
            hub_close_at: now + HUB_GOODBYE,
            exit_at: now + HUB_GOODBYE + CLOSE_FLUSH,
        });
    }

    fn on_deadlines(&mut self, now: Instant) -> io::Result<()> {
        if self.spoke.poll_timeout().is_some_and(|t| t <= now) {
            self.spoke.handle_timeout(now);
        }
        if let Some(hub) = &mut self.hub
            && hub.poll_timeout().is_some_and(|t| t <= now)
        {
            hub.handle_timeout(now);
        }
        let overdue: Vec<usize> = self
            .links
            .iter()
            .filter(|(_, l)| l.closing.is_some_and(|at| at <= now))
            .map(|(k, _)| k)
            .collect();
        for key in overdue {
            debug!(peer = %self.links[key].peer, "closing link with unsent data");
            self.remove(key);
        }
        if self.leaving.as_ref().is_some_and(|l| l.hub_close_at <= now) {
            self.close_hub(now)?;
        }
        Ok(())
    }

    /// Whether the node has left and everything is flushed (or it is time to give up).
    fn finished(&self, now: Instant) -> bool {
        self.leaving
            .as_ref()
            .is_some_and(|l| (self.hub.is_none() && self.links.is_empty()) || l.exit_at <= now)
    }

    // ---- the machines' outputs ----

    /// Drains both machines until neither has anything left to say; acting on one output
    /// (a connection attempt, a bind) can make the other speak.
    fn pump(&mut self, now: Instant) -> io::Result<()> {
        loop {
            let mut quiet = true;
            while let Some(out) = self.spoke.poll_output() {
                quiet = false;
                match out {
                    Output::Transmit(t) => self.transmit(t.peer, t.bytes),
                    Output::Disconnect(peer) => self.disconnect(now, peer),
                    Output::Evt(evt) => self.on_spoke_evt(now, evt)?,
                }
            }
            while let Some(out) = self.hub.as_mut().and_then(Hub::poll_output) {
                quiet = false;
                match out {
                    Output::Transmit(t) => self.transmit(t.peer, t.bytes),
                    Output::Disconnect(peer) => self.disconnect(now, peer),
                    Output::Evt(evt) => self.on_hub_evt(now, evt)?,
                }
            }
            if quiet {
                return Ok(());
            }
        }
    }

    fn on_spoke_evt(&mut self, now: Instant, evt: SpokeEvt) -> io::Result<()> {
        let event = match evt {
            SpokeEvt::ConnectRequested => {
                self.connect(now);
                return Ok(());
            }
            SpokeEvt::BindRequested => return self.bind(now),
            SpokeEvt::Topology(e) => {
                self.view_dirty = true;
                NodeEvent::Topology(e)
            }
            SpokeEvt::Synced { hub, term } => {
                self.view_dirty = true;
                info!(%hub, %term, "synced with the hub");
                NodeEvent::Synced { hub, term }
            }
            SpokeEvt::HubLost => {
                self.view_dirty = true;
                NodeEvent::HubLost
            }
            SpokeEvt::HubUnresponsive => {
                warn!("the hub is unresponsive");
                NodeEvent::HubUnresponsive
            }
            SpokeEvt::HubResponsive => NodeEvent::HubResponsive,
            SpokeEvt::HubClosed(reason) => NodeEvent::HubClosed(reason),
            SpokeEvt::HubMisbehaved { reason } => {
                warn!(%reason, "the hub broke the protocol");
                return Ok(());
            }
            SpokeEvt::HubAbsent => NodeEvent::HubAbsent,
            SpokeEvt::Left => return Ok(()),
            other => {
                trace!(evt = other.name(), "spoke event");
                return Ok(());
            }
        };
        self.emit(&event);
        Ok(())
    }

    fn on_hub_evt(&mut self, _now: Instant, evt: HubEvt) -> io::Result<()> {
        match &evt {
            HubEvt::PeerRefused { peer, reason } => warn!(%peer, %reason, "refused a peer"),
            HubEvt::PeerMisbehaved { peer, reason } => {
                warn!(%peer, %reason, "disconnected a peer that broke the protocol");
            }
            HubEvt::PeerExpelled { peer, node } => {
                warn!(%peer, ?node, "expelled a silent peer");
            }
            HubEvt::PeerLeft {
                node: Some(node), ..
            } if *node == self.spoke.id() => {
                // Our own goodbye is sequenced: the hub may close now.
                if let Some(l) = &mut self.leaving {
                    l.hub_close_at = l.hub_close_at.min(_now);
                }
            }
            other => debug!(evt = other.name(), "hub event"),
        }
        Ok(())
    }

    fn emit(&mut self, event: &NodeEvent) {
        self.sinks.retain(|s| s.push(event));
    }

    /// Publishes the view for application threads once per wakeup, if it changed.
    fn publish(&mut self) {
        let hub = self.spoke.hub();
        let is_hub = self.hub.is_some();
        let mut s = self.shared.lock();
        let changed = self.view_dirty || s.hub != hub || s.is_hub != is_hub;
        if self.view_dirty {
            s.view = self.spoke.view().clone();
            self.view_dirty = false;
        }
        s.hub = hub;
        s.is_hub = is_hub;
        drop(s);
        if changed {
            self.shared.changed.notify_all();
        }
    }

    // ---- links ----

    fn connect(&mut self, now: Instant) {
        let input = match socket::connect(&self.hub_addr) {
            Ok(fd) => {
                let cred = socket::peer_credentials(fd.as_fd()).ok().map(convert_cred);
                match self.add_link(fd, Side::ToHub) {
                    Ok(peer) => Input::PeerUp { peer, cred },
                    Err(e) => {
                        warn!(error = %e, "cannot watch the hub link");
                        Input::ConnectFailed
                    }
                }
            }
            Err(e) => {
                trace!(error = %e, "no hub answered");
                Input::ConnectFailed
            }
        };
        let _ = self.spoke.handle(now, input);
    }

    fn bind(&mut self, now: Instant) -> io::Result<()> {
        let won = match socket::listen(&self.hub_addr) {
            Ok(listener) => {
                self.poller
                    .add(listener.as_fd(), HUB_LISTENER, Interest::READABLE)?;
                self.hub_listener = Some(listener);
                let mut cfg = self.hub_config.clone();
                cfg.rng_seed(random_seed());
                self.hub = Some(Hub::new(cfg, self.spoke.hub_seed(), now));
                info!(addr = %self.hub_addr, "this node is now the hub");
                self.emit(&NodeEvent::BecameHub);
                true
            }
            Err(e) => {
                trace!(error = %e, "lost the hub address");
                false
            }
        };
        let _ = self.spoke.handle(now, Input::BindOutcome { won });
        Ok(())
    }

    fn accept_spokes(&mut self, now: Instant) -> io::Result<()> {
        let mut accepted = Vec::new();
        if let Some(listener) = &self.hub_listener {
            while let Some(conn) = socket::accept(listener.as_fd())? {
                accepted.push(conn);
            }
        }
        for (fd, cred) in accepted {
            let peer = self.add_link(fd, Side::FromSpoke)?;
            let cred = Some(convert_cred(cred));
            if let Some(hub) = &mut self.hub {
                let _ = hub.handle(now, Input::PeerUp { peer, cred });
            }
        }
        Ok(())
    }

    fn add_link(&mut self, fd: OwnedFd, side: Side) -> io::Result<PeerId> {
        let entry = self.links.vacant_entry();
        let key = entry.key();
        self.generation = self.generation.wrapping_add(1);
        let peer = PeerId((u64::from(self.generation) << 32) | key as u64);
        self.poller
            .add(fd.as_fd(), Token(key as u64), Interest::READABLE)?;
        entry.insert(Link {
            fd,
            side,
            peer,
            outbox: VecDeque::new(),
            outbox_bytes: 0,
            writable: false,
            closing: None,
        });
        Ok(peer)
    }

    fn key_of(&self, peer: PeerId) -> Option<usize> {
        let key = (peer.0 & u64::from(u32::MAX)) as usize;
        self.links.get(key).filter(|l| l.peer == peer).map(|_| key)
    }

    fn transmit(&mut self, peer: PeerId, bytes: Vec<u8>) {
        let Some(key) = self.key_of(peer) else {
            trace!(%peer, "transmit to a closed link dropped");
            return;
        };
        let link = &mut self.links[key];
        if link.closing.is_some() {
            return;
        }
        link.outbox_bytes += bytes.len();
        link.outbox.push_back(bytes);
        if link.outbox_bytes > self.max_outbox {
            warn!(%peer, bytes = link.outbox_bytes, "peer does not keep up: closing its link");
            self.drop_link(key);
            return;
        }
        self.flush(key);
    }

    /// Sends what the socket accepts; watches for writability if it does not take it all.
    fn flush(&mut self, key: usize) {
        let Some(link) = self.links.get_mut(key) else {
            return;
        };
        while let Some(front) = link.outbox.front() {
            match socket::send_record(link.fd.as_fd(), front, &[]) {
                Ok(Sent::Complete) => {
                    link.outbox_bytes -= front.len();
                    link.outbox.pop_front();
                }
                Ok(Sent::WouldBlock) => break,
                Err(e) => {
                    debug!(peer = %link.peer, error = %e, "send failed: link is gone");
                    self.drop_link(key);
                    return;
                }
            }
        }
        let want = !link.outbox.is_empty();
        if want != link.writable {
            link.writable = want;
            let interest = if want {
                Interest::BOTH
            } else {
                Interest::READABLE
            };
            let _ = self
                .poller
                .modify(link.fd.as_fd(), Token(key as u64), interest);
        }
        if link.closing.is_some() && link.outbox.is_empty() {
            self.remove(key);
        }
    }

    fn read(&mut self, now: Instant, key: usize) {
        for _ in 0..READ_BUDGET {
            let Some(link) = self.links.get(key) else {
                return;
            };
            if link.closing.is_some() {
                // Closing on our side: what the peer still says no longer matters.
                return;
            }
            let mut fds = Vec::new();
            match socket::recv_record(link.fd.as_fd(), &mut self.buf, &mut fds, 0) {
                Ok(Recv::Data {
                    len,
                    truncated,
                    fds: n,
                    fds_truncated,
                    ..
                }) => {
                    if truncated || n > 0 || fds_truncated {
                        warn!(peer = %link.peer, truncated, fds = n, "malformed record: closing");
                        self.drop_link(key);
                        return;
                    }
                    let (peer, side) = (link.peer, link.side);
                    let data = &self.buf[..len];
                    match side {
                        Side::ToHub => {
                            let _ = self.spoke.handle(now, Input::Bytes { peer, data });
                        }
                        Side::FromSpoke => {
                            if let Some(hub) = &mut self.hub {
                                let _ = hub.handle(now, Input::Bytes { peer, data });
                            }
                        }
                    }
                }
                Ok(Recv::Closed) => {
                    self.drop_link(key);
                    return;
                }
                Ok(Recv::WouldBlock) => return,
                Err(e) => {
                    debug!(error = %e, "receive failed: link is gone");
                    self.drop_link(key);
                    return;
                }
            }
        }
    }

    /// A machine asked to close a link: flush what is queued, then close.
    fn disconnect(&mut self, now: Instant, peer: PeerId) {
        let Some(key) = self.key_of(peer) else { return };
        self.links[key].closing = Some(now + CLOSE_FLUSH);
        self.flush(key);
    }

    /// The link broke (or misbehaved at the socket level): close it and tell its machine.
    fn drop_link(&mut self, key: usize) {
        let Some(link) = self.links.get(key) else {
            return;
        };
        let (peer, side, closing) = (link.peer, link.side, link.closing.is_some());
        self.remove(key);
        if closing {
            return;
        }
        let now = Instant::now();
        match side {
            Side::ToHub => {
                let _ = self.spoke.handle(now, Input::PeerDown(peer));
            }
            Side::FromSpoke => {
                if let Some(hub) = &mut self.hub {
                    let _ = hub.handle(now, Input::PeerDown(peer));
                }
            }
        }
    }

    fn remove(&mut self, key: usize) {
        if let Some(link) = self.links.try_remove(key) {
            let _ = self.poller.delete(link.fd.as_fd());
            trace!(peer = %link.peer, "link closed");
        }
    }

    /// Closes this node's hub: goodbye to every spoke, then the address is free.
    fn close_hub(&mut self, now: Instant) -> io::Result<()> {
        if let Some(hub) = &mut self.hub {
            let _ = hub.handle(now, Input::Cmd(HubCmd::Close));
        }
        self.pump(now)?;
        self.hub = None;
        if let Some(listener) = self.hub_listener.take() {
            let _ = self.poller.delete(listener.as_fd());
        }
        if let Some(l) = &mut self.leaving {
            l.hub_close_at = l.exit_at;
        }
        Ok(())
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        // Whatever is still open closes with the fds; nothing else to release.
        self.links.clear();
    }
}

fn convert_cred(c: crate::sys::Credentials) -> ipc_proto::Credentials {
    ipc_proto::Credentials {
        pid: u32::try_from(c.pid).unwrap_or(0),
        uid: c.uid,
        gid: c.gid,
    }
}

/// A seed for a machine's generator, from the OS.
pub(crate) fn random_seed() -> u64 {
    getrandom::u64().expect("the OS random source is available on Linux")
}
