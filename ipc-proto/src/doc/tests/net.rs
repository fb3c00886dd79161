//! A fixture for machine-level document tests, not a simulator: one bare [`DocHost`] (or
//! none, between a crash and the next), bare [`DocReplica`]s, and a FIFO queue of encoded
//! messages per link and direction, each step taken by the test's own hand. Every message
//! goes through [`encode_doc`] and [`decode_doc`] (as bytes), and is checked to fit
//! `max_chunk`.
//!
//! The scripted tests of [`super::failover`] and [`super::hostile`] and the scenarios of
//! [`super`] use it to hold a message back or forge one, which whole members cannot. Only those
//! scripted tests use it: no random schedule runs on it. The random schedules of documents
//! run on the public simulator (`crate::sim`, in `crate::tests::docs` and
//! `crate::tests::witness`).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::doc::{
    DocEvt, DocHost, DocLimits, DocReplica, HostConfig, HostEvt, HostInput, HostOutput,
    ReplicaConfig, ReplicaInput, ReplicaOutput, Update,
};
use crate::ids::{NodeId, PeerId};
use crate::wire::{DocMsg, decode_doc, encode_doc};

/// The test epoch.
pub(super) fn t0() -> Instant {
    #[allow(clippy::disallowed_methods)] // the test epoch, built once; only durations are added
    Instant::now()
}

/// The wall clock at the test epoch: 2026, give or take.
pub(super) const WALL_BASE: u64 = 1_780_000_000_000;

pub(super) fn node(n: u64) -> NodeId {
    NodeId::new(n).expect("non-zero")
}

/// A patch the host accepted, as broadcast.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Accepted {
    pub(super) origin: NodeId,
    pub(super) seq: u64,
    pub(super) wall_ms: u64,
    pub(super) update: Update,
}

/// One replica and its link.
pub(super) struct Rep {
    pub(super) node: NodeId,
    pub(super) m: DocReplica,
    /// The link to the current host, if connected.
    pub(super) peer: Option<PeerId>,
    /// Replica to host.
    pub(super) up: VecDeque<Vec<u8>>,
    /// Host to replica.
    pub(super) down: VecDeque<Vec<u8>>,
    pub(super) evts: Vec<DocEvt>,
    pub(super) alive: bool,
}

pub(super) struct Net {
    epoch: Instant,
    pub(super) now: Instant,
    pub(super) limits: DocLimits,
    pub(super) host: Option<DocHost>,
    pub(super) reps: Vec<Rep>,
    next_peer: u64,
    /// Events of every host, in order.
    pub(super) host_evts: Vec<HostEvt>,
    /// Per document, every accepted patch by version, as broadcast: the current host's
    /// history.
    pub(super) canonical: BTreeMap<String, BTreeMap<u64, Accepted>>,
    /// Messages sent, by name (for transcripts).
    pub(super) sent: Vec<&'static str>,
    /// Every message sent, encoded (a corpus for mutation).
    pub(super) wire: Vec<Vec<u8>>,
}

impl Net {
    /// A settled host and `n` replicas (nodes 1..=n) that are no witnesses, not connected
    /// yet: the open/patch protocol alone.
    pub(super) fn new(n: u64, limits: DocLimits) -> Self {
        let now = t0();
        let mut net = Self {
            epoch: now,
            now,
            limits: limits.validated(),
            host: None,
            reps: (1..=n)
                .map(|i| Rep {
                    node: node(i),
                    m: DocReplica::new(
                        ReplicaConfig::new(node(i))
                            .limits(limits.clone())
                            .witness(false)
                            .clone(),
                        now,
                    ),
                    peer: None,
                    up: VecDeque::new(),
                    down: VecDeque::new(),
                    evts: Vec::new(),
                    alive: true,
                })
                .collect(),
            next_peer: 1,
            host_evts: Vec::new(),
            canonical: BTreeMap::new(),
            sent: Vec::new(),
            wire: Vec::new(),
        };
        net.start_host();
        net.settle();
        net
    }

    /// Connects every replica.
    pub(super) fn connected(mut self) -> Self {
        for i in 0..self.reps.len() {
            self.connect(i);
        }
        self
    }

    pub(super) fn tick(&mut self) {
        self.now += Duration::from_millis(1);
    }

    pub(super) fn host(&self) -> &DocHost {
        self.host.as_ref().expect("a host runs")
    }

    /// A new host, gathering.
    pub(super) fn start_host(&mut self) {
        let config = HostConfig::default().limits(self.limits.clone()).clone();
        self.host = Some(DocHost::new(config, self.now));
    }

    pub(super) fn settle(&mut self) {
        self.host_input(HostInput::Settled);
    }

    /// The host dies with its links and what is in flight on them.
    pub(super) fn crash_host(&mut self) {
        self.host = None;
        for i in 0..self.reps.len() {
            if self.reps[i].peer.is_some() {
                self.drop_link(i);
            }
        }
    }

    /// Replica `i`'s link goes down (the host is told, if there is one).
    pub(super) fn drop_link(&mut self, i: usize) {
        let Some(peer) = self.reps[i].peer.take() else {
            return;
        };
        self.reps[i].up.clear();
        self.reps[i].down.clear();
        if self.host.is_some() {
            self.host_input(HostInput::PeerDown(peer));
        }
        self.rep_input(i, ReplicaInput::HubDown);
    }

    /// Replica `i` connects to the current host.
    pub(super) fn connect(&mut self, i: usize) {
        assert!(self.host.is_some() && self.reps[i].peer.is_none() && self.reps[i].alive);
        self.reps[i].peer = Some(PeerId(self.next_peer));
        self.next_peer += 1;
        self.rep_input(i, ReplicaInput::HubUp);
    }

    pub(super) fn open(&mut self, i: usize, name: &str, default: Value) {
        let now = self.now;
        self.reps[i]
            .m
            .open(now, name, default)
            .expect("test opening is valid");
        self.drain_rep(i);
    }

    pub(super) fn patch(
        &mut self,
        i: usize,
        name: &str,
        spec: Value,
    ) -> Result<crate::doc::PatchId, crate::doc::DocError> {
        let now = self.now;
        let wall = self.wall_ms();
        let r = self.reps[i].m.patch(now, name, &spec, wall);
        self.drain_rep(i);
        r
    }

    /// A wall clock: [`WALL_BASE`] plus the simulated time.
    pub(super) fn wall_ms(&self) -> u64 {
        WALL_BASE + (self.now - self.epoch).as_millis() as u64
    }

    /// Delivers replica `i`'s next message to the host.
    pub(super) fn deliver_up(&mut self, i: usize) -> bool {
        let Some(bytes) = self.reps[i].up.pop_front() else {
            return false;
        };
        let peer = self.reps[i].peer.expect("queued on a live link");
        let node = self.reps[i].node;
        self.host_input(HostInput::Bytes {
            peer,
            node,
            data: &bytes,
        });
        true
    }

    /// Delivers the host's next message to replica `i`.
    pub(super) fn deliver_down(&mut self, i: usize) -> bool {
        let Some(bytes) = self.reps[i].down.pop_front() else {
            return false;
        };
        self.rep_input(i, ReplicaInput::Bytes(&bytes));
        true
    }

    /// Delivers everything, round robin, until nothing moves.
    pub(super) fn run(&mut self) {
        for _ in 0..1_000_000 {
            let mut moved = false;
            for i in 0..self.reps.len() {
                moved |= self.deliver_up(i);
                moved |= self.deliver_down(i);
            }
            if !moved {
                return;
            }
        }
        panic!("the network did not quiesce");
    }

    pub(super) fn host_input(&mut self, input: HostInput<'_>) {
        let now = self.now;
        let Some(host) = self.host.as_mut() else {
            return;
        };
        host.handle(now, input).expect("never Err");
        self.drain_host();
    }

    pub(super) fn rep_input(&mut self, i: usize, input: ReplicaInput<'_>) {
        let now = self.now;
        self.reps[i].m.handle(now, input).expect("never Err");
        self.drain_rep(i);
    }

    fn encode(&mut self, msg: &DocMsg) -> Vec<u8> {
        let bytes = encode_doc(msg);
        assert!(
            bytes.len() <= self.limits.max_chunk,
            "{} of {} bytes",
            msg.name(),
            bytes.len()
        );
        assert_eq!(
            decode_doc(&bytes, &self.limits).as_ref(),
            Ok(msg),
            "round trip"
        );
        self.sent.push(msg.name());
        self.wire.push(bytes.clone());
        bytes
    }

    pub(super) fn drain_host(&mut self) {
        while let Some(out) = self.host.as_mut().and_then(DocHost::poll_output) {
            match out {
                HostOutput::Send { peer, msg } => {
                    if let DocMsg::Patched {
                        name,
                        version,
                        origin,
                        seq,
                        wall_ms,
                        update,
                        ..
                    } = &msg
                    {
                        let accepted = Accepted {
                            origin: *origin,
                            seq: *seq,
                            wall_ms: *wall_ms,
                            update: update.clone(),
                        };
                        let history = self.canonical.entry(name.clone()).or_default();
                        let prior = history.insert(*version, accepted.clone());
                        assert!(
                            prior.is_none() || prior == Some(accepted),
                            "version {version} of {name} broadcast twice, differently"
                        );
                        assert!(
                            *version == 1 || history.contains_key(&(version - 1)),
                            "version {version} of {name} skips one"
                        );
                    }
                    let bytes = self.encode(&msg);
                    if let Some(r) = self.reps.iter_mut().find(|r| r.peer == Some(peer)) {
                        r.down.push_back(bytes);
                    }
                }
                HostOutput::Disconnect(peer) => {
                    if let Some(i) = self.reps.iter().position(|r| r.peer == Some(peer)) {
                        self.reps[i].peer = None;
                        self.reps[i].up.clear();
                        self.reps[i].down.clear();
                        self.rep_input(i, ReplicaInput::HubDown);
                    }
                }
                HostOutput::Evt(e) => {
                    match &e {
                        HostEvt::Adopted { name, version, .. } => {
                            if let Some(history) = self.canonical.get_mut(name) {
                                history.retain(|v, _| v <= version);
                            }
                        }
                        HostEvt::Created { name, .. } => {
                            self.canonical.remove(name);
                        }
                        _ => {}
                    }
                    self.host_evts.push(e);
                }
            }
        }
    }

    pub(super) fn drain_rep(&mut self, i: usize) {
        while let Some(out) = self.reps[i].m.poll_output() {
            match out {
                ReplicaOutput::Send(msg) => {
                    let bytes = self.encode(&msg);
                    assert!(
                        self.reps[i].peer.is_some(),
                        "replica {i} sent {} with no link",
                        msg.name()
                    );
                    self.reps[i].up.push_back(bytes);
                }
                ReplicaOutput::Disconnect => {
                    if let Some(peer) = self.reps[i].peer.take() {
                        self.reps[i].up.clear();
                        self.reps[i].down.clear();
                        self.host_input(HostInput::PeerDown(peer));
                    }
                }
                ReplicaOutput::Evt(e) => self.reps[i].evts.push(e),
            }
        }
    }

    /// The names of replica `i`'s events since the last call.
    pub(super) fn take_evts(&mut self, i: usize) -> Vec<DocEvt> {
        std::mem::take(&mut self.reps[i].evts)
    }

    /// The host's events since the last call.
    pub(super) fn take_host_evts(&mut self) -> Vec<HostEvt> {
        std::mem::take(&mut self.host_evts)
    }
}

/// Event names, for transcripts.
pub(super) fn names(evts: &[DocEvt]) -> Vec<&'static str> {
    evts.iter().map(DocEvt::name).collect()
}

/// Host event names, for transcripts.
pub(super) fn host_names(evts: &[HostEvt]) -> Vec<&'static str> {
    evts.iter().map(HostEvt::name).collect()
}
