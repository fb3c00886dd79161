//! The document host: the hub's side of shared documents, the source of truth.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{debug, trace, warn};

use super::state::DocState;
use super::state::Seen;
use super::types::{DocError, DocLimits, Refusal, RejectReason};
use crate::ids::{NodeId, PeerId};
use crate::wire::doc::{chunked, decode_body, encode_body};
use crate::wire::{DocMsg, decode_doc};

/// How a [`DocHost`] behaves; `Default` plus chained setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// Bounds (brought into range by [`DocLimits::validated`]).
    pub limits: DocLimits,
    /// The longest the host gathers replicas' states before it settles on its own, should
    /// [`HostInput::Settled`] never come. Default 2 s.
    pub gather_timeout: Duration,
    /// The node running this host, if it has a replica of its own: that replica dies with
    /// the host, so it never counts as a witness. Default `None`.
    pub node: Option<NodeId>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            limits: DocLimits::default(),
            gather_timeout: Duration::from_secs(2),
            node: None,
        }
    }
}

impl HostConfig {
    /// Sets [`limits`](Self::limits).
    pub fn limits(&mut self, limits: DocLimits) -> &mut Self {
        self.limits = limits;
        self
    }

    /// Sets [`gather_timeout`](Self::gather_timeout).
    pub fn gather_timeout(&mut self, timeout: Duration) -> &mut Self {
        self.gather_timeout = timeout;
        self
    }

    /// Sets [`node`](Self::node).
    pub fn node(&mut self, node: NodeId) -> &mut Self {
        self.node = Some(node);
        self
    }
}

/// An input to a [`DocHost`].
#[derive(Debug)]
pub enum HostInput<'a> {
    /// A message from the replica at the other end of `peer`, a hub link whose spoke is
    /// `node` (the patches' origin).
    Msg {
        /// The link.
        peer: PeerId,
        /// The node at its other end.
        node: NodeId,
        /// The message.
        msg: DocMsg,
    },
    /// Like [`Msg`](Self::Msg), still encoded: the host decodes it with its limits, and an
    /// undecodable message is a protocol violation.
    Bytes {
        /// The link.
        peer: PeerId,
        /// The node at its other end.
        node: NodeId,
        /// One encoded [`DocMsg`].
        data: &'a [u8],
    },
    /// The link went down: it has no document open any more.
    PeerDown(PeerId),
    /// The node left the group for good (the hub declared it gone): its marks may be evicted
    /// first once a document's marks are full.
    NodeGone(NodeId),
    /// The reconnection grace is over (or, for a brand-new group, there is nothing to wait
    /// for): stop gathering, settle each document on the best state received, answer every
    /// opener. Ignored once settled.
    Settled,
}

/// What a [`DocHost`] asks of its driver; drain with [`DocHost::poll_output`].
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum HostOutput {
    /// Send `msg` on the link `peer` (encode it with [`encode_doc`](crate::wire::encode_doc)).
    Send {
        /// The link.
        peer: PeerId,
        /// The message.
        msg: DocMsg,
    },
    /// Close the link: its replica broke the protocol. The host has forgotten it; deliver
    /// nothing more from it.
    Disconnect(PeerId),
    /// Something to report.
    Evt(HostEvt),
}

impl HostOutput {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Send { .. } => "Send",
            Self::Disconnect(_) => "Disconnect",
            Self::Evt(e) => e.name(),
        }
    }
}

/// What a [`DocHost`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostEvt {
    /// A document that did not exist was created from its first opener's default value, at
    /// version 0 (edge).
    Created {
        /// The document.
        name: String,
        /// The opener.
        node: NodeId,
    },
    /// A document was taken over from a replica's state: when gathering ends, the highest
    /// version received; after that, the state of an opener of a document this host did not
    /// have (edge).
    Adopted {
        /// The document.
        name: String,
        /// The adopted version.
        version: u64,
        /// The replica it came from.
        node: NodeId,
    },
    /// Gathering is over; every opener has been sent the host's state (edge, once).
    Settled {
        /// How many documents the host holds.
        docs: usize,
        /// Whether [`HostConfig::gather_timeout`] ended it rather than
        /// [`HostInput::Settled`].
        timed_out: bool,
    },
    /// A patch was accepted as `version` and broadcast to every opener (edge, once per
    /// version).
    Accepted {
        /// The document.
        name: String,
        /// The version it made.
        version: u64,
        /// Its origin.
        origin: NodeId,
        /// The origin's number for it.
        seq: u64,
    },
    /// A patch was rejected; its origin was told (edge).
    Rejected {
        /// The document.
        name: String,
        /// Its origin.
        origin: NodeId,
        /// The origin's number for it.
        seq: u64,
        /// Why.
        reason: RejectReason,
    },
    /// An opening was refused; the replica was told (edge).
    Refused {
        /// The document.
        name: String,
        /// The link.
        peer: PeerId,
        /// Why.
        reason: Refusal,
    },
    /// A replica opened a document with a state newer than the host's: the versions after
    /// the host's were accepted by an earlier host but reached no replica that took part in
    /// the gathering, and are lost. The replica gets the host's state (edge).
    NewerStateIgnored {
        /// The document.
        name: String,
        /// The replica's node.
        node: NodeId,
        /// The replica's version.
        version: u64,
        /// The host's version.
        host_version: u64,
    },
    /// A replica broke the protocol; its link is closed ([`HostOutput::Disconnect`]) (edge).
    PeerMisbehaved {
        /// The link.
        peer: PeerId,
        /// What it did.
        reason: String,
    },
}

impl HostEvt {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "Created",
            Self::Adopted { .. } => "Adopted",
            Self::Settled { .. } => "Settled",
            Self::Accepted { .. } => "Accepted",
            Self::Rejected { .. } => "Rejected",
            Self::Refused { .. } => "Refused",
            Self::NewerStateIgnored { .. } => "NewerStateIgnored",
            Self::PeerMisbehaved { .. } => "PeerMisbehaved",
        }
    }
}

/// Where the host stands:
///
/// ```text
///  new ──► Gathering ──Settled / gather_timeout──► Serving
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting replicas' states; nobody is answered yet.
    Gathering { deadline: Instant },
    /// Answering opens and patches.
    Serving,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Gathering { .. } => "Gathering",
            Self::Serving => "Serving",
        }
    }
}

/// A hosted document and the links that have it open.
#[derive(Debug)]
struct HostDoc {
    state: DocState,
    /// Link -> the replica's opening number.
    openers: BTreeMap<PeerId, u64>,
}

/// An opening whose body is still arriving.
#[derive(Debug)]
struct Incoming {
    name: String,
    open: u64,
    version: Option<u64>,
    len: usize,
    buf: Vec<u8>,
}

/// One hub link that spoke the document protocol.
#[derive(Debug)]
struct Link {
    node: NodeId,
    /// Whether its replica is a witness: it is sent every document, and its receipts count.
    witness: bool,
    /// Documents this link has open (answered), with the opening number (0: sent to a
    /// witness unasked).
    open: BTreeMap<String, u64>,
    /// The version of each document this witness said it holds.
    have: BTreeMap<String, u64>,
    /// How many of its patches wait for a witness ([`AckWait`]).
    acks: usize,
    /// Openings received while gathering, answered when the host settles.
    waiting: BTreeMap<String, u64>,
    incoming: Option<Incoming>,
}

/// A patch accepted (or found applied on a resend) whose origin is not answered yet: the
/// answer waits until a witness holds `version`.
#[derive(Debug)]
struct AckWait {
    peer: PeerId,
    origin: NodeId,
    name: String,
    seq: u64,
    version: u64,
}

/// What gathering collected for one document.
#[derive(Debug, Default)]
struct Candidate {
    /// The state with the highest version, and who sent it.
    best: Option<(DocState, NodeId)>,
    /// The first default value, and who sent it.
    default: Option<(Value, NodeId)>,
}

/// The document host: one per hub, every document of the group.
///
/// Drive it like every machine of this crate: feed [`handle`](Self::handle) and
/// [`handle_timeout`](Self::handle_timeout), drain [`poll_output`](Self::poll_output) until
/// `None`, and call `handle_timeout` again at [`poll_timeout`](Self::poll_timeout). Time
/// passed in never moves backwards: an earlier `now` counts as the latest one seen.
///
/// A new host starts **gathering** (see the [module docs](super)): it collects the states
/// replicas open their documents with and answers nobody until [`HostInput::Settled`] (or
/// [`HostConfig::gather_timeout`]). Then it serves: answers opens with its state, and takes
/// patches one at a time, accepting (and broadcasting) or rejecting each. Nothing a replica
/// sends makes it fail or panic: a protocol violation closes that replica's link
/// ([`HostEvt::PeerMisbehaved`], [`HostOutput::Disconnect`]) and the others are served on.
#[derive(Debug)]
pub struct DocHost {
    limits: DocLimits,
    last_now: Instant,
    phase: Phase,
    docs: BTreeMap<String, HostDoc>,
    links: BTreeMap<PeerId, Link>,
    candidates: BTreeMap<String, Candidate>,
    /// Openings to answer when gathering ends, in arrival order.
    waiting: Vec<(PeerId, String, u64)>,
    /// Nodes declared gone, with when (a counter): their marks are evicted first.
    gone: BTreeMap<NodeId, u64>,
    gone_clock: u64,
    /// The node running this host: never a witness.
    node: Option<NodeId>,
    /// Answers waiting for a witness, in the order the patches came.
    acks: VecDeque<AckWait>,
    out: VecDeque<HostOutput>,
}

impl DocHost {
    /// A host that starts gathering; it settles on [`HostInput::Settled`], or on its own at
    /// `now +` [`HostConfig::gather_timeout`].
    pub fn new(config: HostConfig, now: Instant) -> Self {
        debug!("doc host starts gathering");
        Self {
            limits: config.limits.validated(),
            last_now: now,
            phase: Phase::Gathering {
                deadline: now + config.gather_timeout,
            },
            docs: BTreeMap::new(),
            links: BTreeMap::new(),
            candidates: BTreeMap::new(),
            waiting: Vec::new(),
            gone: BTreeMap::new(),
            gone_clock: 0,
            node: config.node,
            acks: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// Whether the host is still gathering replicas' states.
    pub fn is_gathering(&self) -> bool {
        matches!(self.phase, Phase::Gathering { .. })
    }

    /// The documents the host holds (none while gathering).
    pub fn docs(&self) -> impl Iterator<Item = &str> + '_ {
        self.docs.keys().map(String::as_str)
    }

    /// A document's value.
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.docs.get(name).map(|d| &d.state.value)
    }

    /// A document's version.
    pub fn version(&self, name: &str) -> Option<u64> {
        self.docs.get(name).map(|d| d.state.version)
    }

    /// The links that have a document open.
    pub fn openers(&self, name: &str) -> impl Iterator<Item = PeerId> + '_ {
        self.docs
            .get(name)
            .into_iter()
            .flat_map(|d| d.openers.keys().copied())
    }

    /// The limits in force.
    pub fn limits(&self) -> &DocLimits {
        &self.limits
    }

    // ---- inputs ----

    /// Feeds one input. Never `Err` today: nothing a replica or a link does is an error of
    /// the caller's (the `Result` keeps the machine shape).
    pub fn handle(&mut self, now: Instant, input: HostInput<'_>) -> Result<(), DocError> {
        let now = self.advance(now);
        match input {
            HostInput::Msg { peer, node, msg } => self.on_msg(peer, node, msg),
            HostInput::Bytes { peer, node, data } => match decode_doc(data, &self.limits) {
                Ok(msg) => self.on_msg(peer, node, msg),
                Err(e) => self.misbehaved(peer, format!("undecodable document message: {e}")),
            },
            HostInput::PeerDown(peer) => self.forget(peer),
            HostInput::NodeGone(node) => self.on_node_gone(node),
            HostInput::Settled => self.settle(now, false),
        }
        Ok(())
    }

    /// Settles if gathering has run out of time; early or spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        if let Phase::Gathering { deadline } = self.phase
            && deadline <= now
        {
            self.settle(now, true);
        }
    }

    /// The next thing for the driver to do; drain until `None`.
    pub fn poll_output(&mut self) -> Option<HostOutput> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called: the end of
    /// gathering, if it is still on.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Gathering { deadline } => Some(deadline),
            Phase::Serving => None,
        }
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    // ---- messages ----

    fn on_msg(&mut self, peer: PeerId, node: NodeId, msg: DocMsg) {
        trace!(%peer, msg = msg.name(), doc = msg.doc(), "doc message from replica");
        let link = self.links.entry(peer).or_insert_with(|| Link {
            node,
            witness: false,
            open: BTreeMap::new(),
            have: BTreeMap::new(),
            acks: 0,
            waiting: BTreeMap::new(),
            incoming: None,
        });
        if let Some(incoming) = &mut link.incoming {
            let DocMsg::More(chunk) = msg else {
                let what = msg.name();
                return self.misbehaved(peer, format!("a {what} message inside a body"));
            };
            if incoming.buf.len() + chunk.len() > incoming.len {
                return self.misbehaved(peer, "a chunk beyond the body's length".into());
            }
            incoming.buf.extend_from_slice(&chunk);
            if incoming.buf.len() == incoming.len {
                let incoming = link.incoming.take().expect("matched above");
                self.on_opened(peer, incoming);
            }
            return;
        }
        match msg {
            DocMsg::Open {
                name,
                open,
                version,
                len,
                chunk,
            } => {
                if open == 0 {
                    return self.misbehaved(peer, format!("opened `{name}` as number 0"));
                }
                if link.open.get(&name).is_some_and(|o| *o != 0) || link.waiting.contains_key(&name)
                {
                    return self.misbehaved(peer, format!("opened `{name}` twice"));
                }
                // Sent to this witness unasked: the replica's own opening replaces that.
                if link.open.remove(&name).is_some()
                    && let Some(doc) = self.docs.get_mut(&name)
                {
                    doc.openers.remove(&peer);
                }
                let incoming = Incoming {
                    name,
                    open,
                    version,
                    len: len as usize,
                    buf: chunk,
                };
                if incoming.buf.len() == incoming.len {
                    self.on_opened(peer, incoming);
                } else {
                    link.incoming = Some(incoming);
                }
            }
            DocMsg::Patch {
                name,
                seq,
                base,
                wall_ms,
                update,
            } => {
                if !link.open.contains_key(&name) {
                    return self.misbehaved(peer, format!("a patch of `{name}` before its state"));
                }
                let origin = link.node;
                self.on_patch(peer, origin, &name, seq, base, wall_ms, update);
            }
            DocMsg::Resync { name } => {
                if let Some(&open) = link.open.get(&name) {
                    self.send_state(peer, &name, open);
                } else if link.waiting.contains_key(&name) {
                    trace!(%peer, %name, "resync while gathering: the state follows anyway");
                } else {
                    self.misbehaved(peer, format!("a resync of `{name}`, which it has not open"));
                }
            }
            DocMsg::Close { name } => {
                link.waiting.remove(&name);
                link.have.remove(&name);
                if link.open.remove(&name).is_some()
                    && let Some(doc) = self.docs.get_mut(&name)
                {
                    doc.openers.remove(&peer);
                }
                trace!(%peer, %name, "closed");
                self.try_acks();
            }
            DocMsg::Witness => {
                if link.witness {
                    return self.misbehaved(peer, "a second witness message".into());
                }
                link.witness = true;
                debug!(%peer, node = %link.node, "a witness");
                if !self.is_gathering() {
                    self.enroll(peer);
                }
            }
            DocMsg::Have { name, version } => {
                if !link.witness {
                    return self.misbehaved(peer, "a receipt from no witness".into());
                }
                let host_version = self.docs.get(&name).map(|d| d.state.version);
                if !link.open.contains_key(&name) || host_version.is_none_or(|v| version > v) {
                    // After a close, or a lie that would only weaken its own group.
                    trace!(%peer, %name, version, "a receipt for no document held: ignored");
                    return;
                }
                let have = link.have.entry(name).or_insert(0);
                *have = (*have).max(version);
                self.try_acks();
            }
            DocMsg::More(_) => self.misbehaved(peer, "a chunk with no body in transfer".into()),
            other => self.misbehaved(peer, format!("a host's message: {}", other.name())),
        }
    }

    /// An opening is complete: its body has arrived.
    fn on_opened(&mut self, peer: PeerId, incoming: Incoming) {
        let Incoming {
            name,
            open,
            version,
            buf,
            ..
        } = incoming;
        let state = match decode_body(&buf, version, &self.limits) {
            Ok(state) => state,
            Err(e) => return self.misbehaved(peer, format!("an invalid body for `{name}`: {e}")),
        };
        let gathering = self.is_gathering();
        let link = self.links.get_mut(&peer).expect("the caller's link exists");
        let node = link.node;
        if gathering {
            let known = self.candidates.contains_key(&name);
            if !known && self.candidates.len() >= self.limits.max_docs {
                return self.refuse(peer, name, open);
            }
            link.waiting.insert(name.clone(), open);
            self.waiting.push((peer, name.clone(), open));
            let candidate = self.candidates.entry(name.clone()).or_default();
            if version.is_some() {
                let better = candidate
                    .best
                    .as_ref()
                    .is_none_or(|(best, _)| state.version > best.version);
                if better {
                    debug!(%name, version = state.version, %node, "best state so far");
                    candidate.best = Some((state, node));
                }
            } else if candidate.default.is_none() {
                candidate.default = Some((state.value, node));
            }
            return;
        }
        if let Some(doc) = self.docs.get(&name) {
            if let Some(theirs) = version
                && theirs > doc.state.version
            {
                warn!(%name, %node, theirs, ours = doc.state.version, "a replica is ahead of the host: versions were lost");
                self.emit(HostEvt::NewerStateIgnored {
                    name: name.clone(),
                    node,
                    version: theirs,
                    host_version: doc.state.version,
                });
            }
        } else {
            if self.docs.len() >= self.limits.max_docs {
                return self.refuse(peer, name, open);
            }
            let evt = match version {
                Some(version) => HostEvt::Adopted {
                    name: name.clone(),
                    version,
                    node,
                },
                None => HostEvt::Created {
                    name: name.clone(),
                    node,
                },
            };
            debug!(%name, evt = evt.name(), "document appears");
            self.docs.insert(
                name.clone(),
                HostDoc {
                    state,
                    openers: BTreeMap::new(),
                },
            );
            self.emit(evt);
        }
        self.register(peer, &name, open);
        self.send_state(peer, &name, open);
        // A new document: every witness gets it.
        let witnesses: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(p, l)| **p != peer && l.witness && !l.open.contains_key(&name))
            .map(|(p, _)| *p)
            .collect();
        for w in witnesses {
            self.register(w, &name, 0);
            self.send_state(w, &name, 0);
        }
    }

    /// Sends a new witness every document it does not have open.
    fn enroll(&mut self, peer: PeerId) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        let names: Vec<String> = self
            .docs
            .keys()
            .filter(|n| !link.open.contains_key(*n) && !link.waiting.contains_key(*n))
            .cloned()
            .collect();
        for name in names {
            self.register(peer, &name, 0);
            self.send_state(peer, &name, 0);
        }
    }

    fn refuse(&mut self, peer: PeerId, name: String, open: u64) {
        let reason = Refusal::TooManyDocs {
            max: self.limits.max_docs,
        };
        debug!(%peer, %name, "opening refused");
        self.send(
            peer,
            DocMsg::Refused {
                name: name.clone(),
                open,
                reason: reason.clone(),
            },
        );
        self.emit(HostEvt::Refused { name, peer, reason });
    }

    fn register(&mut self, peer: PeerId, name: &str, open: u64) {
        if let Some(link) = self.links.get_mut(&peer) {
            link.open.insert(name.to_owned(), open);
        }
        if let Some(doc) = self.docs.get_mut(name) {
            doc.openers.insert(peer, open);
        }
    }

    fn send_state(&mut self, peer: PeerId, name: &str, open: u64) {
        let Some(doc) = self.docs.get(name) else {
            return;
        };
        let body = encode_body(&doc.state.marks, &doc.state.log, &doc.state.value);
        self.send_body(peer, name, open, doc.state.version, &body);
    }

    fn send_body(&mut self, peer: PeerId, name: &str, open: u64, version: u64, body: &[u8]) {
        let len =
            u32::try_from(body.len()).expect("bodies are bounded by max_body, far below 4 GiB");
        let msgs = chunked(body, self.limits.max_chunk, |chunk| DocMsg::State {
            name: name.to_owned(),
            open,
            version,
            len,
            chunk,
        });
        for msg in msgs {
            self.send(peer, msg);
        }
    }

    #[allow(clippy::too_many_arguments)] // the fields of one patch
    fn on_patch(
        &mut self,
        peer: PeerId,
        origin: NodeId,
        name: &str,
        seq: u64,
        base: u64,
        wall_ms: u64,
        update: super::update::Update,
    ) {
        let doc = self
            .docs
            .get_mut(name)
            .expect("a link has open only documents the host holds");
        let verdict = match doc.state.marks.seen(origin, seq) {
            Seen::Accepted => {
                trace!(%name, %origin, seq, "a resend of an applied patch");
                let version = doc.state.version;
                return self.wait_ack(peer, origin, name, seq, version);
            }
            Seen::Rejected => Err(RejectReason::Earlier),
            Seen::Unknown => Err(RejectReason::Unknown),
            Seen::New => doc
                .state
                .log
                .check(doc.state.version, base, origin, &update)
                .and_then(|()| {
                    doc.state
                        .advance(origin, seq, wall_ms, &update, &self.limits, &self.gone)
                }),
        };
        let version = doc.state.version;
        match verdict {
            Ok(()) => {
                trace!(%name, version, %origin, seq, "accepted");
                // The origin last: a driver writing in this order has the patch on its way to
                // the other replicas before the origin learns it was accepted, which narrows
                // the window in which a hub crash loses an acknowledged patch.
                let openers: Vec<PeerId> = doc
                    .openers
                    .keys()
                    .copied()
                    .filter(|p| *p != peer)
                    .chain(doc.openers.contains_key(&peer).then_some(peer))
                    .collect();
                for p in openers {
                    self.send(
                        p,
                        DocMsg::Patched {
                            name: name.to_owned(),
                            version,
                            origin,
                            seq,
                            wall_ms,
                            update: update.clone(),
                        },
                    );
                }
                self.emit(HostEvt::Accepted {
                    name: name.to_owned(),
                    version,
                    origin,
                    seq,
                });
                self.wait_ack(peer, origin, name, seq, version);
            }
            Err(reason) => {
                debug!(%name, %origin, seq, %reason, "rejected");
                self.send(
                    peer,
                    DocMsg::Rejected {
                        name: name.to_owned(),
                        seq,
                        version,
                        reason: reason.clone(),
                    },
                );
                self.emit(HostEvt::Rejected {
                    name: name.to_owned(),
                    origin,
                    seq,
                    reason,
                });
            }
        }
    }

    // ---- acknowledgements ----

    /// Answers `origin`'s patch `seq` once a witness holds `version` (at once if the group has
    /// no witness for it).
    fn wait_ack(&mut self, peer: PeerId, origin: NodeId, name: &str, seq: u64, version: u64) {
        let max = self.limits.max_pending;
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        // A replica never has more than max_pending patches of a document unanswered.
        if link.acks >= max * link.open.len().max(1) {
            return self.misbehaved(
                peer,
                "more unanswered patches than a replica may have".into(),
            );
        }
        link.acks += 1;
        self.acks.push_back(AckWait {
            peer,
            origin,
            name: name.to_owned(),
            seq,
            version,
        });
        self.try_acks();
    }

    /// Witnesses of `name` for a patch of `origin` (links other than the host's node and the
    /// origin's), and how many of them hold `version`.
    fn witnesses(&self, name: &str, origin: NodeId, version: u64) -> (u32, u32) {
        let (mut eligible, mut holders) = (0, 0);
        for link in self.links.values() {
            if !link.witness
                || link.node == origin
                || Some(link.node) == self.node
                || !link.open.contains_key(name)
            {
                continue;
            }
            eligible += 1;
            if link.have.get(name).is_some_and(|v| *v >= version) {
                holders += 1;
            }
        }
        (eligible, holders)
    }

    /// Sends every answer whose patch a witness now holds, or that has no witness left to
    /// wait for; an origin's answers for a document go in order.
    fn try_acks(&mut self) {
        let mut blocked: BTreeSet<(PeerId, String)> = BTreeSet::new();
        let mut keep = VecDeque::new();
        for w in std::mem::take(&mut self.acks) {
            if !self.links.contains_key(&w.peer) {
                continue;
            }
            let key = (w.peer, w.name);
            if blocked.contains(&key) {
                keep.push_back(AckWait { name: key.1, ..w });
                continue;
            }
            let (peer, name) = key;
            let (eligible, holders) = self.witnesses(&name, w.origin, w.version);
            let Some(version) = self.version(&name).filter(|_| holders > 0 || eligible == 0) else {
                blocked.insert((peer, name.clone()));
                keep.push_back(AckWait { name, ..w });
                continue;
            };
            trace!(%name, origin = %w.origin, seq = w.seq, witnesses = holders, "acknowledged");
            if let Some(link) = self.links.get_mut(&peer) {
                link.acks = link.acks.saturating_sub(1);
            }
            self.send(
                peer,
                DocMsg::Ack {
                    name,
                    seq: w.seq,
                    version,
                    witnesses: holders,
                },
            );
        }
        self.acks = keep;
    }

    // ---- gathering ----

    fn settle(&mut self, now: Instant, timed_out: bool) {
        if !self.is_gathering() {
            return;
        }
        debug!(
            from = self.phase.name(),
            to = "Serving",
            timed_out,
            "doc host settles"
        );
        let _ = now;
        self.phase = Phase::Serving;
        for (name, candidate) in std::mem::take(&mut self.candidates) {
            let (state, evt) = match candidate {
                Candidate {
                    best: Some((state, node)),
                    ..
                } => {
                    let evt = HostEvt::Adopted {
                        name: name.clone(),
                        version: state.version,
                        node,
                    };
                    (state, evt)
                }
                Candidate {
                    default: Some((value, node)),
                    ..
                } => (
                    DocState::created(value),
                    HostEvt::Created {
                        name: name.clone(),
                        node,
                    },
                ),
                Candidate { .. } => continue,
            };
            self.docs.insert(
                name,
                HostDoc {
                    state,
                    openers: BTreeMap::new(),
                },
            );
            self.emit(evt);
        }
        // Each document's body is encoded once, however many openers it has.
        let mut bodies: BTreeMap<String, (u64, Vec<u8>)> = BTreeMap::new();
        for (peer, name, open) in std::mem::take(&mut self.waiting) {
            // Still waiting with this opening (not closed, or closed and opened again).
            let still = match self.links.get_mut(&peer) {
                Some(l) if l.waiting.get(&name) == Some(&open) => {
                    l.waiting.remove(&name);
                    true
                }
                _ => false,
            };
            let Some(doc) = self.docs.get(&name).filter(|_| still) else {
                continue;
            };
            if !bodies.contains_key(&name) {
                let s = &doc.state;
                let body = encode_body(&s.marks, &s.log, &s.value);
                bodies.insert(name.clone(), (s.version, body));
            }
            self.register(peer, &name, open);
            let (version, body) = &bodies[&name];
            self.send_body(peer, &name, open, *version, body);
        }
        let witnesses: Vec<PeerId> = self
            .links
            .iter()
            .filter(|(_, l)| l.witness)
            .map(|(p, _)| *p)
            .collect();
        for w in witnesses {
            self.enroll(w);
        }
        self.emit(HostEvt::Settled {
            docs: self.docs.len(),
            timed_out,
        });
    }

    // ---- links and nodes ----

    fn on_node_gone(&mut self, node: NodeId) {
        self.gone_clock += 1;
        self.gone.insert(node, self.gone_clock);
        // Bounded: forget the longest-gone beyond max_origins (they are evicted first anyway).
        while self.gone.len() > self.limits.max_origins {
            let Some((&oldest, _)) = self.gone.iter().min_by_key(|(_, at)| **at) else {
                break;
            };
            self.gone.remove(&oldest);
        }
        trace!(%node, "node gone");
    }

    fn forget(&mut self, peer: PeerId) {
        let Some(link) = self.links.remove(&peer) else {
            return;
        };
        for name in link.open.keys() {
            if let Some(doc) = self.docs.get_mut(name) {
                doc.openers.remove(&peer);
            }
        }
        trace!(%peer, "link forgotten");
        if link.witness {
            // Answers that waited for it may have no witness left.
            self.try_acks();
        }
    }

    fn misbehaved(&mut self, peer: PeerId, reason: String) {
        // The hub expels the peer and the driver logs that, rate-limited.
        debug!(%peer, %reason, "replica misbehaved");
        self.forget(peer);
        self.emit(HostEvt::PeerMisbehaved { peer, reason });
        self.out.push_back(HostOutput::Disconnect(peer));
    }

    fn send(&mut self, peer: PeerId, msg: DocMsg) {
        self.out.push_back(HostOutput::Send { peer, msg });
    }

    fn emit(&mut self, evt: HostEvt) {
        self.out.push_back(HostOutput::Evt(evt));
    }
}
