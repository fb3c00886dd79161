//! A member of a group: its spoke, the hub it runs when it holds the address, and its data
//! plane, as one machine.
//!
//! Every driver needs the same orchestration around the three machines: route each link's
//! input to the machine it belongs to, start a [`Hub`] from the spoke's history when the bind is
//! won, feed topology changes to the [`DataPlane`], and leave in order (the hub closes once it
//! has sequenced this node's own goodbye). [`Member`] does it once, so a driver only moves
//! bytes, fds, memory and time: it opens the sockets the member asks for, reports what happens
//! on them, and acts on [`MemberOutput`]s.
//!
//! # Shared documents
//! The member owns a [`DocReplica`] always and a [`DocHost`] while it runs the hub, and wires
//! them as the [`doc`](crate::doc) module's docs say: their messages travel in
//! [`Frame::Doc`](crate::wire::Frame::Doc) frames on the spoke's hub link; the replica is told
//! [`ReplicaInput::HubUp`] when the spoke is synced (and then the spoke sends
//! [`Frame::DocReady`](crate::wire::Frame::DocReady) after the openings) and
//! [`ReplicaInput::HubDown`] when it loses the hub; the host is told
//! [`HostInput::NodeGone`] for every LEAVE its hub mints, [`HostInput::PeerDown`] when a
//! spoke's link goes, and [`HostInput::Settled`] as soon as every node its history shows as
//! joined has sent `DocReady` on its link (its documents' states are in). That is the hub's
//! own gathering rule ([`Hub::is_gathering`]): a node leaves that set when it is confirmed
//! dead ([`MemberInput::PeerExited`], at once) or when it has not reconnected within the
//! reconnection grace ([`HubConfig::grace`]); the grace is waited for only for deaths nobody
//! can confirm. A hub with no inherited history (no live node in it) waits for the grace in
//! any case: a node that has just started can win the hub address from the survivors of a
//! dead hub, and learns of them (and their documents) only from their introductions. Commands are methods
//! ([`Member::open_doc`], [`Member::patch_doc`], [`Member::close_doc`]), as on the replica;
//! what the replica reports comes out as [`MemberEvt::Doc`].
//!
//! # Link ids
//! Links the member asks for ([`MemberOutput::ConnectHub`], [`MemberOutput::ConnectData`])
//! carry ids it chose, with the [`OUTGOING`] bit set. Links the driver accepts on the hub
//! address or the node's data address get ids the driver chooses, below that bit.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use tracing::{debug, trace, warn};

use crate::admission::Admission;
use crate::data::{DataCmd, DataEvt, DataInput, DataOutput, DataPlane, OUTGOING, Routes};
use crate::doc::{
    DocError, DocHost, DocReplica, HostConfig, HostInput, HostOutput, PatchId, ReplicaConfig,
    ReplicaInput, ReplicaOutput,
};
use crate::error::CmdError;
use crate::exits::Exited;
use crate::hub::{Hub, HubCmd, HubConfig, HubEvt};
use crate::ids::{NodeId, PeerId, Term};
use crate::machine::{Input, Output};
use crate::rng::Rng;
use crate::spoke::{Spoke, SpokeCmd, SpokeEvt};
use crate::timer::Timer;
use crate::topology::View;
use crate::wire::{GuardStats, encode_doc};

mod direct;
mod io;

pub use io::{
    Listener, MemberCmd, MemberConfig, MemberEvt, MemberInput, MemberOutput, NodeOptions, Refusal,
};

/// Room for the topology frame around a document message ([`Frame::Doc`]'s tag), with some
/// to spare.
///
/// [`Frame::Doc`]: crate::wire::Frame::Doc
const DOC_FRAME_OVERHEAD: usize = 16;

/// How many closed links' nodes a member remembers, for exits reported after the hangup
/// ([`MemberInput::PeerExited`]).
const CLOSED_LINKS_KEPT: usize = 256;

/// How long a hub waits for its own node's goodbye before closing anyway.
const HUB_GOODBYE: Duration = Duration::from_millis(500);

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Kind {
    /// The spoke's link to the hub (pending until connected).
    ToHub,
    /// A spoke's link to this node's hub.
    FromSpoke,
    /// A data link, either way.
    Data,
}

#[derive(Debug)]
struct Leaving {
    /// When the hub closes even if this node's goodbye has not reached it.
    hub_close_at: Instant,
    spoke_left: bool,
}

/// A member of a group (see the module docs).
///
/// Drive it like its parts: [`handle`](Self::handle), [`handle_timeout`](Self::handle_timeout),
/// drain [`poll_output`](Self::poll_output) until `None`, sleep until
/// [`poll_timeout`](Self::poll_timeout). Time never moves backwards.
#[derive(Debug)]
pub struct Member {
    hub_config: HubConfig,
    rng: Rng,
    spoke: Spoke,
    hub: Option<Hub>,
    data: Option<DataPlane>,
    replica: DocReplica,
    /// The document host, while this node runs the hub.
    host: Option<DocHost>,
    /// While the document host gathers: when it may settle at the earliest (`None` once
    /// passed, or for a hub that inherited live nodes), and the nodes whose documents' states
    /// are in (they sent `DocReady`).
    doc_gather: Option<(Option<Instant>, BTreeSet<NodeId>)>,
    links: BTreeMap<PeerId, Kind>,
    /// The node reached through each link (the hub's on the hub link, the spoke's on a link
    /// to this node's hub), for open links and the last [`CLOSED_LINKS_KEPT`] closed ones.
    link_nodes: BTreeMap<PeerId, NodeId>,
    /// Nodes confirmed dead ([`MemberInput::PeerExited`]), for the hub this node may run.
    exited: Exited,
    /// Accepted links before their handshake, and the accept pause.
    admission: Admission,
    next_peer: u64,
    leaving: Option<Leaving>,
    left: bool,
    view_dirty: bool,
    /// [`poll_timeout`](Self::poll_timeout) as a publish computed it, kept until an input
    /// that may make it sooner. A publish or a record on a data link feeds the data plane
    /// alone: the kept deadline stays, made sooner by any timer the data plane armed
    /// meanwhile ([`DataPlane::take_armed`]). So a stream of publishes walks the timers
    /// once, not once per message (a tenth of a small publish), and so does a request and
    /// its answer (a receive then a publish). A deadline kept earlier than the truth (a
    /// timer dropped meanwhile) costs one `handle_timeout` that finds nothing due.
    timeout: Option<Option<Instant>>,
    out: VecDeque<MemberOutput>,
}

impl Member {
    /// A member that has not joined yet (send [`SpokeCmd::Join`]).
    pub fn new(config: MemberConfig, now: Instant) -> Self {
        let mut rng = Rng::new(config.spoke.rng_seed ^ 0x6d65_6d62_6572);
        let _ = rng.next_u64();
        // A document message and its frame (tag, length) must fit the hub link's frames.
        let mut docs = config.docs;
        docs.max_chunk = docs.max_chunk.min(
            config
                .spoke
                .limits
                .max_frame
                .saturating_sub(DOC_FRAME_OVERHEAD),
        );
        let admission = Admission::new(&config.spoke.limits);
        let spoke = Spoke::new(config.spoke, now);
        let mut replica = ReplicaConfig::new(spoke.id());
        replica
            .limits(docs)
            .witness(config.witness && !spoke.is_observer());
        Self {
            hub_config: config.hub,
            rng,
            spoke,
            hub: None,
            data: config.data.map(|d| DataPlane::new(d, now)),
            replica: DocReplica::new(replica, now),
            host: None,
            doc_gather: None,
            links: BTreeMap::new(),
            link_nodes: BTreeMap::new(),
            exited: Exited::default(),
            admission,
            next_peer: 0,
            leaving: None,
            left: false,
            view_dirty: false,
            timeout: None,
            out: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.spoke.id()
    }

    /// The group as this node sees it.
    pub fn view(&self) -> &View {
        self.spoke.view()
    }

    /// The hub this node follows, while synced.
    pub fn hub(&self) -> Option<(NodeId, Term)> {
        self.spoke.hub()
    }

    /// Whether this node runs the group's hub.
    pub fn is_hub(&self) -> bool {
        self.hub.is_some()
    }

    /// The spoke.
    pub fn spoke(&self) -> &Spoke {
        &self.spoke
    }

    /// The hub, while this node runs it.
    pub fn hub_machine(&self) -> Option<&Hub> {
        self.hub.as_ref()
    }

    /// The data plane (`None` for an observer).
    pub fn data(&self) -> Option<&DataPlane> {
        self.data.as_ref()
    }

    /// Gives back a buffer the driver is done with, such as a [`MemberOutput::Transmit`]'s
    /// bytes once sent, for the next records (see [`DataPlane::recycle`]). Optional.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if let Some(d) = &mut self.data {
            d.recycle(buf);
        }
    }

    /// A spare buffer for the next inline payload (see [`DataPlane::spare_buffer`]).
    pub fn spare_buffer(&mut self) -> Option<Vec<u8>> {
        self.data.as_mut().and_then(DataPlane::spare_buffer)
    }

    /// The document replica: documents open on this node, their values and versions.
    pub fn docs(&self) -> &DocReplica {
        &self.replica
    }

    /// The document host, while this node runs the hub.
    pub fn doc_host(&self) -> Option<&DocHost> {
        self.host.as_ref()
    }

    /// Whether the driver should watch its listeners for connections: `false` between
    /// [`MemberOutput::PauseAccepting`] and [`MemberOutput::ResumeAccepting`] (a listener
    /// bound meanwhile is watched from the resumption on).
    pub fn is_accepting(&self) -> bool {
        !self.admission.is_paused()
    }

    /// Whether the node has left (after [`MemberEvt::Left`]).
    pub fn is_left(&self) -> bool {
        self.left
    }

    /// Which timer [`poll_timeout`](Self::poll_timeout) reports, for logs and tests.
    pub fn next_timer(&self) -> Option<Timer> {
        let at = self.next_deadline();
        let docs = [
            self.host.as_ref().and_then(DocHost::poll_timeout),
            self.doc_gather.as_ref().and_then(|(t, _)| *t),
        ];
        if at.is_some() && self.spoke.poll_timeout() != at && docs.contains(&at) {
            return Some(Timer::DocGather);
        }
        self.spoke
            .next_timer()
            .or_else(|| self.hub.as_ref().and_then(Hub::next_timer))
    }

    // ---- inputs ----

    /// Feeds one input. `Err` only for an invalid command.
    pub fn handle(&mut self, now: Instant, input: MemberInput<'_>) -> Result<(), CmdError> {
        let publish = matches!(
            input,
            MemberInput::Cmd(MemberCmd::Data(DataCmd::Publish { .. }))
        );
        let data_record = matches!(
            input,
            MemberInput::Record { peer, .. } if self.links.get(&peer) == Some(&Kind::Data)
        );
        let message = publish || data_record;
        if !message {
            self.timeout = None;
        }
        self.on_input(now, input)?;
        if message {
            self.take_data_outputs();
        } else {
            self.pump(now);
        }
        self.after_input(publish, message);
        Ok(())
    }

    /// What follows every input: the pending links are swept, and the deadline is kept across
    /// a message's input (`publish`: a command to publish; `message`: that or a data link's
    /// record) by what the data plane armed.
    fn after_input(&mut self, publish: bool, message: bool) {
        self.sweep_pending();
        // What the data plane armed meanwhile: sooner than a deadline kept, or counted in the
        // one computed.
        let armed = self.data.as_mut().and_then(DataPlane::take_armed);
        if publish && self.timeout.is_none() {
            self.timeout = Some(self.next_deadline());
        }
        if message && let Some(kept) = self.timeout {
            self.timeout = Some([kept, armed].into_iter().flatten().min());
        }
    }

    /// After a message's input (a publish, or a record on a data link), which only the data
    /// plane took: its outputs, and no other machine polled. No input of the data plane's
    /// reaches another machine (its outputs feed none, see [`Self::on_data_output`]), and
    /// every other input ends with a [`Self::pump`] that leaves them all quiet. (The one pass
    /// of the pump that depends on the time alone, the document host's gathering, has its
    /// own deadline in [`Self::next_deadline`].) The pending links are swept after either,
    /// as a record may end a link's handshake (a publisher's `Hello`).
    ///
    /// A pass of the pump polls every machine: the echo side of a spinning 64 B round trip
    /// (a message in, its reply out) ran 7,755 instructions with it, 7,537 without
    /// (callgrind).
    fn take_data_outputs(&mut self) {
        while let Some(out) = self.data.as_mut().and_then(DataPlane::poll_output) {
            self.on_data_output(out);
        }
    }

    /// [`handle`](Self::handle) without the kept deadline and the pump that follows.
    fn on_input(&mut self, now: Instant, input: MemberInput<'_>) -> Result<(), CmdError> {
        match input {
            MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Leave)) => self.leave(now),
            MemberInput::Cmd(MemberCmd::Spoke(cmd)) => self.spoke.handle(now, Input::Cmd(cmd))?,
            MemberInput::Cmd(MemberCmd::Data(cmd)) => match &mut self.data {
                Some(d) => d.handle(now, DataInput::Cmd(cmd))?,
                None => return Err(CmdError::Observer),
            },
            MemberInput::Connected { peer, cred } => match self.links.get(&peer) {
                Some(Kind::ToHub) => self.spoke.handle(now, Input::PeerUp { peer, cred })?,
                Some(Kind::Data) => self.feed_data(now, DataInput::PeerUp { peer, cred }),
                _ => {
                    trace!(%peer, "connected a link nobody wants: closing it");
                    self.out.push_back(MemberOutput::Disconnect(peer));
                }
            },
            MemberInput::ConnectFailed(peer) => match self.links.remove(&peer) {
                Some(Kind::ToHub) => self.spoke.handle(now, Input::ConnectFailed)?,
                Some(Kind::Data) => self.feed_data(now, DataInput::PeerDown(peer)),
                _ => {}
            },
            MemberInput::Bound { won } => self.on_bound(now, won)?,
            MemberInput::Accepted {
                peer,
                listener,
                cred,
            } => {
                debug_assert!(peer.0 & OUTGOING == 0, "accepted links have driver ids");
                let served = match listener {
                    Listener::Hub => self.hub.is_some(),
                    Listener::Data => self.data.is_some(),
                };
                if served && !self.admission.admit(now, peer) {
                    self.count(|g| g.pending_refused += 1);
                    self.out.push_back(MemberOutput::Disconnect(peer));
                    let max = self.admission.max_pending();
                    self.out
                        .push_back(MemberOutput::Evt(MemberEvt::LinkRefused {
                            peer,
                            listener,
                            reason: Refusal::TooManyPending { max },
                        }));
                    return Ok(());
                }
                match listener {
                    Listener::Hub => match &mut self.hub {
                        Some(hub) => {
                            self.links.insert(peer, Kind::FromSpoke);
                            hub.handle(now, Input::PeerUp { peer, cred })?;
                        }
                        None => self.out.push_back(MemberOutput::Disconnect(peer)),
                    },
                    Listener::Data => match &self.data {
                        Some(_) => {
                            self.links.insert(peer, Kind::Data);
                            self.feed_data(now, DataInput::PeerUp { peer, cred });
                        }
                        None => self.out.push_back(MemberOutput::Disconnect(peer)),
                    },
                }
            }
            MemberInput::Record {
                peer,
                data,
                segments,
            } => match self.links.get(&peer) {
                Some(Kind::Data) => self.feed_data(
                    now,
                    DataInput::Record {
                        peer,
                        data,
                        segments,
                    },
                ),
                Some(kind) if !segments.is_empty() => {
                    // Topology links carry no fds: the records are refused with their link.
                    debug!(%peer, ?kind, "file descriptors on a topology link: closing it");
                    for s in segments {
                        self.out.push_back(MemberOutput::Release(s.segment));
                    }
                    self.close_topology_link(now, peer)?;
                    let reason = "file descriptors on a topology link".to_string();
                    self.out
                        .push_back(MemberOutput::Evt(MemberEvt::PeerMisbehaved {
                            peer,
                            reason,
                        }));
                }
                Some(Kind::ToHub) => self.spoke.handle(now, Input::Bytes { peer, data })?,
                Some(Kind::FromSpoke) => {
                    if let Some(hub) = &mut self.hub {
                        hub.handle(now, Input::Bytes { peer, data })?;
                    }
                }
                None => {
                    for s in segments {
                        self.out.push_back(MemberOutput::Release(s.segment));
                    }
                }
            },
            MemberInput::PeerDown(peer) => match self.links.remove(&peer) {
                Some(Kind::ToHub) => self.spoke.handle(now, Input::PeerDown(peer))?,
                Some(Kind::FromSpoke) => {
                    if let Some(hub) = &mut self.hub {
                        hub.handle(now, Input::PeerDown(peer))?;
                    }
                    self.feed_host(now, HostInput::PeerDown(peer));
                }
                Some(Kind::Data) => self.feed_data(now, DataInput::PeerDown(peer)),
                None => {}
            },
            MemberInput::PeerExited(peer) => self.on_peer_exited(peer),
            MemberInput::Blocked(peer) => self.feed_data(now, DataInput::Blocked(peer)),
            MemberInput::Writable(peer) => self.feed_data(now, DataInput::Writable(peer)),
            MemberInput::Rejected { peer, reason } => match self.links.get(&peer) {
                Some(Kind::Data) => self.feed_data(now, DataInput::Rejected { peer, reason }),
                Some(_) => {
                    debug!(%peer, %reason, "refused record on a topology link: closing it");
                    self.close_topology_link(now, peer)?;
                    self.out
                        .push_back(MemberOutput::Evt(MemberEvt::PeerMisbehaved {
                            peer,
                            reason,
                        }));
                }
                None => {}
            },
            MemberInput::AcceptFailed(listener) => {
                if self.admission.pause(now) {
                    debug!(?listener, "accepting failed: pausing the listeners");
                    self.count(|g| g.accept_paused += 1);
                    self.out.push_back(MemberOutput::PauseAccepting);
                    self.out
                        .push_back(MemberOutput::Evt(MemberEvt::AcceptPaused));
                }
            }
        }
        Ok(())
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.timeout = None;
        if let Some(d) = &mut self.data {
            // Counted in the deadline computed next.
            d.take_armed();
        }
        if self.spoke.poll_timeout().is_some_and(|t| t <= now) {
            self.spoke.handle_timeout(now);
        }
        if let Some(hub) = &mut self.hub
            && hub.poll_timeout().is_some_and(|t| t <= now)
        {
            hub.handle_timeout(now);
        }
        if let Some(d) = &mut self.data
            && d.poll_timeout().is_some_and(|t| t <= now)
        {
            d.handle_timeout(now);
        }
        if let Some(host) = &mut self.host
            && host.poll_timeout().is_some_and(|t| t <= now)
        {
            host.handle_timeout(now);
        }
        if self.leaving.as_ref().is_some_and(|l| l.hub_close_at <= now) {
            self.close_hub(now);
        }
        // Links the machines closed just now (a hub expelling a silent peer) are not pending.
        self.pump(now);
        self.sweep_pending();
        self.admit_timeouts(now);
        self.pump(now);
        self.sweep_pending();
    }

    // ---- shared documents ----

    /// Opens the document `name` (see [`DocReplica::open`]): the host's value replaces `default`
    /// once it answers ([`DocEvt::Opened`](crate::doc::DocEvt::Opened)), or the host creates it
    /// from `default`.
    pub fn open_doc(
        &mut self,
        now: Instant,
        name: &str,
        default: serde_json::Value,
    ) -> Result<(), DocError> {
        self.timeout = None;
        self.check_docs()?;
        self.replica.open(now, name, default)?;
        self.sync_witness_stats();
        self.pump(now);
        Ok(())
    }

    /// Applies `update` to the local value of `name` and sends it to the host (see
    /// [`DocReplica::patch`]); the answer comes as
    /// [`DocEvt::Accepted`](crate::doc::DocEvt::Accepted) or
    /// [`DocEvt::Rejected`](crate::doc::DocEvt::Rejected) with the id returned. `wall_ms`: the
    /// wall clock, in milliseconds since the Unix epoch (`$currentDate`).
    pub fn patch_doc(
        &mut self,
        now: Instant,
        name: &str,
        update: &serde_json::Value,
        wall_ms: u64,
    ) -> Result<PatchId, DocError> {
        self.timeout = None;
        self.check_docs()?;
        let id = self.replica.patch(now, name, update, wall_ms)?;
        self.pump(now);
        Ok(id)
    }

    /// Closes the document `name` (see [`DocReplica::close`]).
    pub fn close_doc(&mut self, now: Instant, name: &str) -> Result<(), DocError> {
        self.timeout = None;
        self.replica.close(now, name)?;
        self.sync_witness_stats();
        self.pump(now);
        Ok(())
    }

    fn check_docs(&self) -> Result<(), DocError> {
        if self.spoke.is_observer() {
            Err(DocError::Observer)
        } else if self.left || self.leaving.is_some() {
            Err(DocError::Left)
        } else {
            Ok(())
        }
    }

    /// The next thing for the driver to do; drain until `None`.
    pub fn poll_output(&mut self) -> Option<MemberOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called. Pure, and cheap
    /// after a publish: publishes keep the deadline the first of them computed (they set no
    /// timer), so it may be earlier than needed if one dropped a deadline on its way (a
    /// document gathering whose wait was over); `handle_timeout` then finds nothing due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let Some(kept) = self.timeout else {
            return self.next_deadline();
        };
        // Every test drives this: a kept deadline is never later than the machines' own.
        #[cfg(debug_assertions)]
        if let Some(due) = self.next_deadline() {
            assert!(
                kept.is_some_and(|k| k <= due),
                "kept deadline {kept:?} later than the machines' {due:?}"
            );
        }
        kept
    }

    /// The machines' earliest deadline.
    fn next_deadline(&self) -> Option<Instant> {
        [
            self.spoke.poll_timeout(),
            self.hub.as_ref().and_then(Hub::poll_timeout),
            self.data.as_ref().and_then(DataPlane::poll_timeout),
            self.host.as_ref().and_then(DocHost::poll_timeout),
            self.doc_gather.as_ref().and_then(|(at, _)| *at),
            self.replica.poll_timeout(),
            self.admission.poll_timeout(),
            self.leaving
                .as_ref()
                .filter(|_| self.hub.is_some())
                .map(|l| l.hub_close_at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals ----

    /// Counts something refused (in the data plane's counters, which `status` reads).
    fn count(&mut self, f: impl FnOnce(&mut GuardStats)) {
        if let Some(d) = &mut self.data {
            f(&mut d.guard);
        }
    }

    /// Forgets the pending links that completed their handshake or are gone.
    fn sweep_pending(&mut self) {
        if self.admission.pending() == 0 {
            return;
        }
        // At most `max_pending` of them, whatever the number of links.
        for p in self.admission.pending_peers() {
            if !self.links.contains_key(&p) {
                // Closed meanwhile: it would hold a slot until its deadline otherwise.
                trace!(peer = %p, "a pending link is gone");
                self.admission.forget(p);
            } else if self.is_greeted(p) {
                self.admission.forget(p);
            }
        }
    }

    /// Whether an accepted link is past its handshake.
    fn is_greeted(&self, peer: PeerId) -> bool {
        match self.links.get(&peer) {
            Some(Kind::FromSpoke) => self.hub.as_ref().is_none_or(|h| h.is_greeted(peer)),
            Some(Kind::Data) => self.data.as_ref().is_none_or(|d| d.is_greeted(peer)),
            _ => true,
        }
    }

    /// Closes the pending links whose time is up, and resumes accepting after a pause.
    fn admit_timeouts(&mut self, now: Instant) {
        if self.admission.take_resume(now) {
            debug!("accepting again");
            self.out.push_back(MemberOutput::ResumeAccepting);
        }
        for peer in self.admission.take_expired(now) {
            let listener = match self.links.get(&peer) {
                Some(Kind::FromSpoke) => Listener::Hub,
                Some(Kind::Data) => Listener::Data,
                _ => continue,
            };
            debug!(%peer, ?listener, "no handshake in time: closing the link");
            if listener == Listener::Hub {
                // Only the hub's own record of the link goes: no node joined on it.
                let _ = self.close_topology_link(now, peer);
            } else {
                self.links.remove(&peer);
                self.feed_data(now, DataInput::PeerDown(peer));
                self.out.push_back(MemberOutput::Disconnect(peer));
            }
            self.count(|g| g.handshake_expired += 1);
            let timeout = self.admission.handshake_timeout();
            self.out
                .push_back(MemberOutput::Evt(MemberEvt::LinkRefused {
                    peer,
                    listener,
                    reason: Refusal::HandshakeTimeout(timeout),
                }));
        }
    }

    /// The process behind `peer` exited: the node reached through it is dead.
    fn on_peer_exited(&mut self, peer: PeerId) {
        let Some(&node) = self.link_nodes.get(&peer) else {
            trace!(%peer, "exit reported for a link that led to no known node");
            return;
        };
        if node == self.spoke.id() {
            return;
        }
        debug!(%peer, %node, "the process of a node exited");
        self.exited.insert(node);
        if let Some(hub) = &mut self.hub {
            hub.confirm_exited(node);
        }
    }

    /// Remembers that `peer` leads to `node`, and forgets the oldest closed links beyond
    /// [`CLOSED_LINKS_KEPT`] (link ids only grow, so the smallest closed ones are the oldest).
    fn note_link_node(&mut self, peer: PeerId, node: NodeId) {
        self.link_nodes.insert(peer, node);
        let closed = self.link_nodes.len().saturating_sub(self.links.len());
        if closed > 2 * CLOSED_LINKS_KEPT {
            let links = &self.links;
            let mut excess = closed - CLOSED_LINKS_KEPT;
            self.link_nodes.retain(|p, _| {
                if excess > 0 && !links.contains_key(p) {
                    excess -= 1;
                    return false;
                }
                true
            });
        }
    }

    fn feed_data(&mut self, now: Instant, input: DataInput<'_>) {
        if let Some(d) = &mut self.data
            && let Err(e) = d.handle(now, input)
        {
            warn!(error = %e, "data plane refused an input");
        }
    }

    fn new_peer(&mut self) -> PeerId {
        self.next_peer += 1;
        PeerId(OUTGOING | (1 << 62) | self.next_peer)
    }

    fn on_bound(&mut self, now: Instant, won: bool) -> Result<(), CmdError> {
        if won {
            let mut cfg = self.hub_config.clone();
            cfg.rng_seed(self.rng.next_u64());
            let seed = self.spoke.hub_seed();
            // The document host waits for every node's states (see the module docs), at most
            // until the grace and a keepalive are over (a node that reconnected then stalled
            // is expelled by then). A hub that inherited nobody cannot know who is out there:
            // it waits for the grace too.
            let inherited = seed.history.live_nodes().next().is_some();
            let not_before = (!inherited).then(|| now + self.hub_config.grace);
            self.doc_gather = Some((not_before, BTreeSet::new()));
            let mut host = HostConfig::default();
            host.limits(self.replica.limits().clone())
                .gather_timeout(self.hub_config.grace + self.hub_config.keepalive)
                .node(self.spoke.id());
            self.host = Some(DocHost::new(host, now));
            let mut hub = Hub::new(cfg, seed, now);
            // Deaths confirmed while this node was a spoke (its hub's, above all) end the
            // gathering for those nodes at once.
            for node in self.exited.iter() {
                hub.confirm_exited(node);
            }
            self.hub = Some(hub);
            debug!(node = %self.spoke.id(), "this node runs the hub");
            self.out.push_back(MemberOutput::Evt(MemberEvt::BecameHub));
        }
        self.spoke.handle(now, Input::BindOutcome { won })
    }

    fn leave(&mut self, now: Instant) {
        if self.leaving.is_some() || self.left {
            return;
        }
        debug!(node = %self.spoke.id(), "leaving");
        // The announcements are on their way to the hub ahead of the goodbye: what waits for
        // them goes now, while the driver still flushes the data links.
        if let Some(d) = &mut self.data {
            d.ungate(now);
        }
        let _ = self.spoke.handle(now, Input::Cmd(SpokeCmd::Leave));
        self.leaving = Some(Leaving {
            hub_close_at: now + HUB_GOODBYE,
            spoke_left: false,
        });
    }

    fn close_topology_link(&mut self, now: Instant, peer: PeerId) -> Result<(), CmdError> {
        self.out.push_back(MemberOutput::Disconnect(peer));
        match self.links.remove(&peer) {
            Some(Kind::ToHub) => self.spoke.handle(now, Input::PeerDown(peer))?,
            Some(Kind::FromSpoke) => {
                if let Some(hub) = &mut self.hub {
                    hub.handle(now, Input::PeerDown(peer))?;
                }
                self.feed_host(now, HostInput::PeerDown(peer));
            }
            _ => {}
        }
        Ok(())
    }

    /// Closes this node's hub: goodbye to every spoke, the listener closes.
    fn close_hub(&mut self, now: Instant) {
        if let Some(mut hub) = self.hub.take() {
            let _ = hub.handle(now, Input::Cmd(HubCmd::Close));
            while let Some(out) = hub.poll_output() {
                self.on_hub_output(now, out);
            }
            self.out.push_back(MemberOutput::Unbind);
        }
        self.host = None;
        self.doc_gather = None;
        self.check_left();
    }

    fn check_left(&mut self) {
        if self.left || self.hub.is_some() {
            return;
        }
        if self.leaving.as_ref().is_some_and(|l| l.spoke_left) {
            self.left = true;
            self.leaving = None;
            self.out.push_back(MemberOutput::Evt(MemberEvt::Left));
        }
    }

    /// Drains the machines until none has anything left to say.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut quiet = true;
            while let Some(out) = self.spoke.poll_output() {
                quiet = false;
                self.on_spoke_output(now, out);
            }
            while let Some(out) = self.hub.as_mut().and_then(Hub::poll_output) {
                quiet = false;
                self.on_hub_output(now, out);
            }
            if let Some(hub) = &mut self.hub {
                for node in hub.take_gone() {
                    quiet = false;
                    self.feed_host(now, HostInput::NodeGone(node));
                }
            }
            self.settle_docs_if_ready(now);
            while let Some(out) = self.replica.poll_output() {
                quiet = false;
                self.on_replica_output(now, out);
            }
            while let Some(out) = self.host.as_mut().and_then(DocHost::poll_output) {
                quiet = false;
                self.on_host_output(out);
            }
            if std::mem::take(&mut self.view_dirty) {
                let routes = Routes::from_view(self.spoke.view());
                self.feed_data(now, DataInput::Cmd(DataCmd::Routes(routes)));
            }
            // The data plane's outputs feed no machine (see `on_data_output`), so they call
            // for no other pass: a message costs one pass, not two.
            while let Some(out) = self.data.as_mut().and_then(DataPlane::poll_output) {
                self.on_data_output(out);
            }
            if quiet {
                return;
            }
        }
    }

    fn on_spoke_output(&mut self, now: Instant, out: Output<SpokeEvt>) {
        match out {
            Output::Transmit(t) => {
                self.out.push_back(MemberOutput::Transmit {
                    peer: t.peer,
                    bytes: t.bytes,
                    attach: None,
                });
            }
            Output::Disconnect(peer) => {
                self.links.remove(&peer);
                self.out.push_back(MemberOutput::Disconnect(peer));
            }
            Output::Evt(evt) => {
                let e = match evt {
                    SpokeEvt::ConnectRequested => {
                        let peer = self.new_peer();
                        self.links.insert(peer, Kind::ToHub);
                        self.out.push_back(MemberOutput::ConnectHub { peer });
                        return;
                    }
                    SpokeEvt::BindRequested => {
                        self.out.push_back(MemberOutput::Bind);
                        return;
                    }
                    SpokeEvt::Topology(e) => {
                        self.view_dirty = true;
                        MemberEvt::Topology(e)
                    }
                    SpokeEvt::Synced { hub, term } => {
                        self.view_dirty = true;
                        if let Some(peer) = self.spoke.hub_peer()
                            && hub != self.spoke.id()
                        {
                            self.note_link_node(peer, hub);
                        }
                        self.out
                            .push_back(MemberOutput::Evt(MemberEvt::Synced { hub, term }));
                        // The openings first, then DocReady behind them on the link.
                        if !self.spoke.is_observer() {
                            self.feed_replica(now, ReplicaInput::HubUp);
                            while let Some(out) = self.replica.poll_output() {
                                self.on_replica_output(now, out);
                            }
                            self.spoke.send_doc_ready();
                        }
                        return;
                    }
                    SpokeEvt::Doc(data) => {
                        self.feed_replica(now, ReplicaInput::Bytes(&data));
                        return;
                    }
                    SpokeEvt::HubLost => {
                        self.feed_replica(now, ReplicaInput::HubDown);
                        MemberEvt::HubLost
                    }
                    SpokeEvt::HubUnresponsive => MemberEvt::HubUnresponsive,
                    SpokeEvt::HubResponsive => MemberEvt::HubResponsive,
                    SpokeEvt::HubClosed(r) => {
                        if r == crate::CloseReason::Expelled
                            && let Some(d) = &mut self.data
                        {
                            // What publishers sent meanwhile is lost: say why when it shows.
                            d.expelled();
                        }
                        MemberEvt::HubClosed(r)
                    }
                    SpokeEvt::HubAbsent => MemberEvt::HubAbsent,
                    SpokeEvt::HubRefused { cred } => MemberEvt::HubRefused { cred },
                    SpokeEvt::HubMisbehaved { reason } => {
                        // HubLost follows only if the spoke was synced; HubDown is idempotent.
                        self.feed_replica(now, ReplicaInput::HubDown);
                        MemberEvt::PeerMisbehaved {
                            peer: PeerId(0),
                            reason,
                        }
                    }
                    SpokeEvt::Left => {
                        if let Some(l) = &mut self.leaving {
                            l.spoke_left = true;
                            // Without a hub of our own, nothing else to wait for.
                            if self.hub.is_none() {
                                self.check_left();
                            }
                        }
                        return;
                    }
                };
                let _ = now;
                self.out.push_back(MemberOutput::Evt(e));
            }
        }
    }

    fn on_hub_output(&mut self, now: Instant, out: Output<HubEvt>) {
        match out {
            Output::Transmit(t) => {
                self.out.push_back(MemberOutput::Transmit {
                    peer: t.peer,
                    bytes: t.bytes,
                    attach: None,
                });
            }
            Output::Disconnect(peer) => {
                self.links.remove(&peer);
                self.out.push_back(MemberOutput::Disconnect(peer));
                self.feed_host(now, HostInput::PeerDown(peer));
            }
            Output::Evt(HubEvt::Doc { peer, node, data }) => {
                self.feed_host(
                    now,
                    HostInput::Bytes {
                        peer,
                        node,
                        data: &data,
                    },
                );
            }
            Output::Evt(HubEvt::DocReady { node, .. }) => {
                if let Some((_, ready)) = &mut self.doc_gather {
                    ready.insert(node);
                }
            }
            Output::Evt(evt) => {
                if let HubEvt::Introduced {
                    peer,
                    node: Some(node),
                    ..
                } = &evt
                {
                    self.note_link_node(*peer, *node);
                }
                if let HubEvt::PeerLeft {
                    node: Some(node), ..
                } = &evt
                    && *node == self.spoke.id()
                    && let Some(l) = &mut self.leaving
                {
                    // Our own goodbye is sequenced: the hub may close now.
                    l.hub_close_at = l.hub_close_at.min(now);
                }
                self.out.push_back(MemberOutput::Evt(MemberEvt::Hub(evt)));
            }
        }
    }

    fn feed_replica(&mut self, now: Instant, input: ReplicaInput<'_>) {
        if let Err(e) = self.replica.handle(now, input) {
            warn!(error = %e, "document replica refused an input");
        }
        self.sync_witness_stats();
    }

    /// Keeps the data plane's copy of the witness's figures (for `status`) current.
    fn sync_witness_stats(&mut self) {
        if let Some(d) = &mut self.data {
            d.witness = self.replica.witness_stats();
        }
    }

    fn feed_host(&mut self, now: Instant, input: HostInput<'_>) {
        if let Some(host) = &mut self.host
            && let Err(e) = host.handle(now, input)
        {
            warn!(error = %e, "document host refused an input");
        }
    }

    /// Tells the host the gathering is over once every node the hub's history shows as
    /// joined has sent its documents' states (and, for a hub that inherited nobody, the
    /// grace has passed).
    fn settle_docs_if_ready(&mut self, now: Instant) {
        let Some((not_before, ready)) = &mut self.doc_gather else {
            return;
        };
        let (Some(hub), Some(host)) = (&self.hub, &self.host) else {
            return;
        };
        if !host.is_gathering() {
            self.doc_gather = None;
            return;
        }
        if not_before.is_some_and(|t| now < t) {
            return;
        }
        *not_before = None;
        if !hub.history().live_nodes().all(|n| ready.contains(&n.id)) {
            return;
        }
        debug!(
            nodes = ready.len(),
            "every node's documents are in: the document host settles"
        );
        self.doc_gather = None;
        self.feed_host(now, HostInput::Settled);
    }

    fn on_replica_output(&mut self, now: Instant, out: ReplicaOutput) {
        match out {
            ReplicaOutput::Send(msg) => self.spoke.send_doc(encode_doc(&msg)),
            ReplicaOutput::Disconnect => {
                self.spoke
                    .doc_violation(now, "broke the shared-document protocol");
            }
            ReplicaOutput::Evt(e) => self.out.push_back(MemberOutput::Evt(MemberEvt::Doc(e))),
        }
    }

    fn on_host_output(&mut self, out: HostOutput) {
        match out {
            HostOutput::Send { peer, msg } => {
                if let Some(hub) = &mut self.hub {
                    hub.send_doc(peer, encode_doc(&msg));
                }
            }
            HostOutput::Disconnect(peer) => {
                if let Some(hub) = &mut self.hub {
                    hub.expel_misbehaved(peer, "broke the shared-document protocol".into());
                }
            }
            HostOutput::Evt(e) => self.out.push_back(MemberOutput::Evt(MemberEvt::DocHost(e))),
        }
    }

    /// Hands on what the data plane asks. It feeds no machine: `pump` counts on that.
    fn on_data_output(&mut self, out: DataOutput) {
        let o = match out {
            DataOutput::Connect { peer, addr } => {
                self.links.insert(peer, Kind::Data);
                MemberOutput::ConnectData { peer, addr }
            }
            DataOutput::Transmit {
                peer,
                bytes,
                attach,
            } => MemberOutput::Transmit {
                peer,
                bytes,
                attach,
            },
            DataOutput::Disconnect(peer) => {
                self.links.remove(&peer);
                MemberOutput::Disconnect(peer)
            }
            DataOutput::Deliver(d) => MemberOutput::Deliver(d),
            DataOutput::Lost(l) => MemberOutput::Lost(l),
            DataOutput::Release(s) => MemberOutput::Release(s),
            DataOutput::Evt(DataEvt::Room { topic, room }) => {
                MemberOutput::Evt(MemberEvt::Room { topic, room })
            }
            DataOutput::Evt(DataEvt::PeerMisbehaved { peer, reason }) => {
                MemberOutput::Evt(MemberEvt::PeerMisbehaved { peer, reason })
            }
            DataOutput::Evt(DataEvt::PeerRefused { peer, cred, reason }) => {
                MemberOutput::Evt(MemberEvt::PeerRefused { peer, cred, reason })
            }
            DataOutput::Evt(other) => {
                debug!(evt = ?other, "data event");
                return;
            }
        };
        self.out.push_back(o);
    }
}
