//! The document replica: a node's side of shared documents.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use serde_json::Value;
use tracing::{debug, trace, warn};

use super::path::Path;
use super::state::Seen;
use super::state::{DocState, Log, Marks};
use super::types::{
    DocError, DocLimits, MAX_DEPTH, PatchId, RejectReason, Scope, check_value, deeper_than,
    json_len,
};
use super::update::{ApplyContext, Update};
use crate::ids::NodeId;
use crate::wire::doc::{chunked, decode_body, encode_body, patch_len};
use crate::wire::{DocMsg, WitnessStats, decode_doc};

mod io;
mod packed;

pub use io::{DocEvt, ReplicaConfig, ReplicaInput, ReplicaOutput};
use packed::Packed;

/// What a replica's local value builds on.
#[derive(Debug)]
enum Base {
    /// The default given to `open`, until the host answers.
    Default(Value),
    /// The host's state, as last confirmed.
    Confirmed(DocState),
    /// A passive document's state, kept small.
    Packed(Packed),
}

impl Base {
    /// The value (`Null` for a packed state, which is never read as a value).
    fn value(&self) -> &Value {
        match self {
            Self::Default(v) => v,
            Self::Confirmed(s) => &s.value,
            Self::Packed(_) => &Value::Null,
        }
    }

    fn version(&self) -> u64 {
        match self {
            Self::Default(_) => 0,
            Self::Confirmed(s) => s.version,
            Self::Packed(p) => p.version,
        }
    }
}

/// A document's relation to the hub:
///
/// ```text
///            HubUp (Open sent)          State
///  Offline ─────────────────► Opening ─────────► Synced ◄──┐
///     ▲                          │                 │  gap  │ State
///     └──────── HubDown ─────────┴─────────────────┴──► Resyncing
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// No hub link.
    Offline,
    /// `Open` sent; waiting for the host's state. Messages about the document that arrive
    /// before it answer an earlier opening and are ignored.
    Opening,
    /// Following the host's broadcasts.
    Synced,
    /// A `Resync` is out; broadcasts that follow on are still applied.
    Resyncing,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Offline => "Offline",
            Self::Opening => "Opening",
            Self::Synced => "Synced",
            Self::Resyncing => "Resyncing",
        }
    }

    fn is_live(self) -> bool {
        matches!(self, Self::Synced | Self::Resyncing)
    }
}

/// One of this node's patches that the host has not answered yet.
#[derive(Debug)]
struct Pending {
    id: PatchId,
    /// The origin_seq, assigned when first sent and kept for every resend.
    seq: Option<u64>,
    /// The version it was made against; `None` if made before the host's first state (it then
    /// counts as made against that state).
    base: Option<u64>,
    wall_ms: u64,
    update: Update,
    /// Sent on the current link.
    in_flight: bool,
    /// Whether it applied in the current local value.
    local_ok: bool,
}

/// One of this node's patches in the host's history, whose acknowledgement waits for a
/// witness to hold it.
#[derive(Debug)]
struct Unacked {
    patch: Pending,
    /// The version that applied it.
    version: u64,
}

/// One document: open, or held as a witness (*passive*).
#[derive(Debug)]
struct Doc {
    /// This opening's number (new on each `open` and each `HubUp`; 0 for a document the
    /// host sent this witness unasked).
    open: u64,
    base: Base,
    phase: Phase,
    pending: VecDeque<Pending>,
    /// Patches applied by the host, not acknowledged yet.
    unacked: VecDeque<Unacked>,
    /// `base` with the pending patches applied (`Null` while passive).
    local: Value,
    /// The next origin_seq to assign.
    next_seq: u64,
    /// [`DocEvt::Opened`] was reported.
    announced: bool,
}

impl Doc {
    /// Held as a witness only (its state is [`Base::Packed`]): the application has not opened
    /// it, nothing is reported.
    fn is_passive(&self) -> bool {
        matches!(self.base, Base::Packed(_))
    }

    /// What a passive document takes, counted in the witness's budget (0 for an open one).
    fn packed_bytes(&self) -> usize {
        match &self.base {
            Base::Packed(p) => p.bytes(),
            Base::Default(_) | Base::Confirmed(_) => 0,
        }
    }

    fn set_phase(&mut self, name: &str, to: Phase) {
        if self.phase != to {
            debug!(%name, from = self.phase.name(), to = to.name(), "doc phase");
            self.phase = to;
        }
    }
}

/// A state arriving from the host.
#[derive(Debug)]
struct Incoming {
    name: String,
    open: u64,
    version: u64,
    len: usize,
    buf: Vec<u8>,
}

/// The document replica: one per node, every document the node opened.
///
/// Holds, per document, the host's confirmed state, this node's patches the host has not
/// answered (*pending*), and the local value: the confirmed value with the pending patches
/// applied, which is what the application reads. See the [module docs](super) for the
/// protocol.
///
/// Drive it like every machine of this crate: commands are methods ([`open`](Self::open),
/// [`patch`](Self::patch), [`close`](Self::close)), the rest goes through
/// [`handle`](Self::handle); after each call drain [`poll_output`](Self::poll_output) until
/// `None`. The replica keeps no deadlines ([`poll_timeout`](Self::poll_timeout) is always
/// `None`); `now` is taken for the machine shape. Nothing the host sends makes it fail or
/// panic: a protocol violation is reported ([`DocEvt::HubMisbehaved`]) and the link is closed
/// ([`ReplicaOutput::Disconnect`]).
#[derive(Debug)]
pub struct DocReplica {
    node: NodeId,
    limits: DocLimits,
    witness: bool,
    /// Documents whose version the host should hear (witnesses only).
    receipts: BTreeSet<String>,
    /// Documents refused for the budget ([`DocEvt::NotWitnessed`]).
    not_kept: u64,
    hub_up: bool,
    docs: BTreeMap<String, Doc>,
    next_open: u64,
    next_id: u64,
    incoming: Option<Incoming>,
    out: VecDeque<ReplicaOutput>,
}

impl DocReplica {
    /// A replica for `config.node`, with no documents and no hub link.
    pub fn new(config: ReplicaConfig, now: Instant) -> Self {
        let _ = now;
        Self {
            node: config.node,
            limits: config.limits.validated(),
            witness: config.witness,
            receipts: BTreeSet::new(),
            not_kept: 0,
            hub_up: false,
            docs: BTreeMap::new(),
            next_open: 1,
            next_id: 1,
            incoming: None,
            out: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// This node.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The limits in force.
    pub fn limits(&self) -> &DocLimits {
        &self.limits
    }

    /// Whether a hub link is up.
    pub fn is_hub_up(&self) -> bool {
        self.hub_up
    }

    /// Whether this node is a witness ([`ReplicaConfig::witness`]).
    pub fn is_witness(&self) -> bool {
        self.witness
    }

    /// The open documents.
    pub fn docs(&self) -> impl Iterator<Item = &str> + '_ {
        self.docs
            .iter()
            .filter(|(_, d)| !d.is_passive())
            .map(|(n, _)| n.as_str())
    }

    /// Whether `name` is open.
    pub fn is_open(&self, name: &str) -> bool {
        self.open_doc(name).is_some()
    }

    /// Whether `name` follows the host: its state arrived on the current link.
    pub fn is_synced(&self, name: &str) -> bool {
        self.open_doc(name).is_some_and(|d| d.phase.is_live())
    }

    /// The local value: the confirmed value with this node's pending patches applied (the
    /// default with them, until the host answers the opening).
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.open_doc(name).map(|d| &d.local)
    }

    /// The value the host last confirmed (`None` until it answered the opening).
    pub fn confirmed(&self, name: &str) -> Option<&Value> {
        match &self.open_doc(name)?.base {
            Base::Confirmed(s) => Some(&s.value),
            Base::Default(_) | Base::Packed(_) => None,
        }
    }

    /// The version the host last confirmed (`None` until it answered the opening).
    pub fn version(&self, name: &str) -> Option<u64> {
        match &self.open_doc(name)?.base {
            Base::Confirmed(s) => Some(s.version),
            Base::Default(_) | Base::Packed(_) => None,
        }
    }

    /// This node's patches of `name` that the host has not answered, oldest first: those
    /// not applied yet, then those applied and waiting for a witness.
    pub fn pending(&self, name: &str) -> impl Iterator<Item = PatchId> + '_ {
        self.open_doc(name).into_iter().flat_map(|d| {
            let unacked = d.unacked.iter().map(|u| u.patch.id);
            unacked.chain(d.pending.iter().map(|p| p.id))
        })
    }

    /// The documents this witness holds without the application having opened them, with
    /// the version of each copy.
    pub fn witnessed(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.docs
            .iter()
            .filter(|(_, d)| d.is_passive())
            .map(|(n, d)| (n.as_str(), d.base.version()))
    }

    /// How many bytes (their values' compact JSON when their states arrived) the
    /// [`witnessed`](Self::witnessed) documents take, against
    /// [`DocLimits::max_witness_bytes`].
    pub fn witnessed_bytes(&self) -> usize {
        self.docs.values().map(Doc::packed_bytes).sum()
    }

    /// The witness's figures, as `status` shows them.
    pub fn witness_stats(&self) -> WitnessStats {
        WitnessStats {
            on: self.witness,
            docs: self.docs.values().filter(|d| d.is_passive()).count() as u64,
            bytes: self.witnessed_bytes() as u64,
            not_kept: self.not_kept,
        }
    }

    fn open_doc(&self, name: &str) -> Option<&Doc> {
        self.docs.get(name).filter(|d| !d.is_passive())
    }

    // ---- inputs ----

    /// Feeds one input. Never `Err` today: nothing the hub or the link does is an error of
    /// the caller's (the `Result` keeps the machine shape).
    pub fn handle(&mut self, now: Instant, input: ReplicaInput<'_>) -> Result<(), DocError> {
        let _ = now;
        match input {
            ReplicaInput::HubUp => self.on_hub_up(),
            ReplicaInput::HubDown => self.on_hub_down(),
            ReplicaInput::Msg(msg) => self.on_msg(msg),
            ReplicaInput::Bytes(data) => match decode_doc(data, &self.limits) {
                Ok(msg) => self.on_msg(msg),
                Err(e) => self.misbehaved(format!("undecodable document message: {e}")),
            },
        }
        Ok(())
    }

    /// Does nothing: the replica keeps no deadlines.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
    }

    // ---- commands ----

    /// Opens `name`: if the host has it, its value replaces `default` when the host answers
    /// ([`DocEvt::Opened`]); if not, the host creates it from `default`. Until then the local
    /// value is `default`, and patches may already be made on it (they count as made against
    /// the host's state).
    pub fn open(&mut self, now: Instant, name: &str, default: Value) -> Result<(), DocError> {
        let _ = now;
        self.limits
            .check_name(name)
            .map_err(|reason| DocError::InvalidName { reason })?;
        if self.is_open(name) {
            return Err(DocError::AlreadyOpen { name: name.into() });
        }
        if self.docs().count() >= self.limits.max_docs {
            return Err(DocError::TooManyDocs {
                max: self.limits.max_docs,
            });
        }
        check_local(&default, "default value", &self.limits)?;
        if let Some(mut doc) = self.docs.remove(name) {
            // Held as a witness: it is the host's already.
            let Base::Packed(packed) = &doc.base else {
                unreachable!("only a passive document is held unopened")
            };
            let state = match packed.state(&self.limits) {
                Ok(state) => state,
                Err(e) => {
                    // Open it anew: the host's state replaces the broken copy.
                    warn!(%name, %e, "the witness's copy is unusable");
                    if self.hub_up && doc.phase != Phase::Offline {
                        self.send(DocMsg::Close { name: name.into() });
                    }
                    return self.open(now, name, default);
                }
            };
            doc.next_seq = doc.next_seq.max(state.marks.last(self.node) + 1);
            doc.local = state.value.clone();
            doc.base = Base::Confirmed(state);
            self.docs.insert(name.to_owned(), doc);
            let doc = self.docs.get_mut(name).expect("inserted above");
            debug!(%name, "opened locally, from the witness's copy");
            if doc.phase.is_live() {
                doc.announced = true;
                let version = doc.base.version();
                let changed = doc.local != default;
                self.emit(DocEvt::Opened {
                    name: name.to_owned(),
                    version,
                });
                if changed {
                    self.emit(DocEvt::Changed {
                        name: name.to_owned(),
                        version,
                        scope: Scope::Root,
                    });
                }
            }
            return Ok(());
        }
        let open = self.next_open();
        let mut doc = Doc {
            open,
            base: Base::Default(default.clone()),
            phase: Phase::Offline,
            pending: VecDeque::new(),
            unacked: VecDeque::new(),
            local: default,
            next_seq: 1,
            announced: false,
        };
        debug!(%name, "opened locally");
        if self.hub_up {
            self.send_open(name, &mut doc);
        }
        self.docs.insert(name.to_owned(), doc);
        Ok(())
    }

    /// Applies `update` to the local value of `name` at once and sends it to the host, which
    /// answers it later ([`DocEvt::Accepted`] or [`DocEvt::Rejected`] with the id returned).
    ///
    /// `wall_ms` is the wall clock in milliseconds since the Unix epoch: `$currentDate`
    /// writes it, on every replica alike. Errors change nothing: an invalid update, or one
    /// that fails on the local value, names the operator and the path.
    pub fn patch(
        &mut self,
        now: Instant,
        name: &str,
        update: &Value,
        wall_ms: u64,
    ) -> Result<PatchId, DocError> {
        let _ = now;
        let limits = &self.limits;
        let doc = self
            .docs
            .get_mut(name)
            .filter(|d| !d.is_passive())
            .ok_or_else(|| DocError::NotOpen { name: name.into() })?;
        if doc.pending.len() + doc.unacked.len() >= limits.max_pending {
            return Err(DocError::PendingFull {
                name: name.into(),
                max: limits.max_pending,
            });
        }
        // {"$op": {"path": value}}: the value may nest MAX_DEPTH levels.
        if deeper_than(update, MAX_DEPTH + 2) {
            return Err(DocError::TooDeep {
                what: "update",
                max: MAX_DEPTH + 2,
            });
        }
        let update = Update::parse(update)?;
        let len = patch_len(name, wall_ms, &update);
        if len > limits.max_patch() {
            return Err(DocError::TooLarge {
                what: "patch",
                len,
                max: limits.max_patch(),
            });
        }
        let local = update.applied(
            &doc.local,
            &ApplyContext {
                now_unix_ms: wall_ms,
            },
        )?;
        check_local(&local, "document", limits)?;
        let id = PatchId(self.next_id);
        self.next_id += 1;
        let paths: Vec<Path> = update.paths().cloned().collect();
        let base = match &doc.base {
            Base::Confirmed(s) => Some(s.version),
            Base::Default(_) | Base::Packed(_) => None,
        };
        doc.pending.push_back(Pending {
            id,
            seq: None,
            base,
            wall_ms,
            update,
            in_flight: false,
            local_ok: true,
        });
        let before = std::mem::replace(&mut doc.local, local);
        trace!(%name, %id, "patched locally");
        self.changed(name, &before, paths);
        if self.docs[name].phase.is_live() {
            self.send_pending(name);
        }
        Ok(id)
    }

    /// Closes `name`. Its pending patches are abandoned: they may still be applied by the
    /// host, but get no answer. A witness keeps holding the host's state of it.
    pub fn close(&mut self, now: Instant, name: &str) -> Result<(), DocError> {
        let _ = now;
        if !self.is_open(name) {
            return Err(DocError::NotOpen { name: name.into() });
        }
        let mut doc = self.docs.remove(name).expect("checked above");
        debug!(%name, pending = doc.pending.len() + doc.unacked.len(), "closed");
        if self.witness
            && let Base::Confirmed(state) = &doc.base
        {
            let packed = Packed::from_state(state);
            if self.fits(packed.bytes()) {
                doc.base = Base::Packed(packed);
                doc.announced = false;
                doc.pending.clear();
                doc.unacked.clear();
                doc.local = Value::Null;
                self.docs.insert(name.to_owned(), doc);
                return Ok(());
            }
        }
        if self.hub_up && doc.phase != Phase::Offline {
            self.send(DocMsg::Close { name: name.into() });
        }
        Ok(())
    }

    /// Whether one more passive document of `bytes` fits the witness's budget.
    fn fits(&self, bytes: usize) -> bool {
        let passive = self.docs.values().filter(|d| d.is_passive()).count();
        passive < self.limits.max_docs
            && self.witnessed_bytes().saturating_add(bytes) <= self.limits.max_witness_bytes
    }

    // ---- poll ----

    /// The next thing for the driver to do; drain until `None`.
    ///
    /// A witness's receipts go last, one per document for everything it received since the
    /// last drain.
    pub fn poll_output(&mut self) -> Option<ReplicaOutput> {
        if self.out.is_empty() && !self.receipts.is_empty() {
            for name in std::mem::take(&mut self.receipts) {
                if let Some(doc) = self.docs.get(&name).filter(|d| d.phase.is_live()) {
                    let version = doc.base.version();
                    self.send(DocMsg::Have { name, version });
                }
            }
        }
        self.out.pop_front()
    }

    /// Always `None`: the replica keeps no deadlines.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    // ---- the hub link ----

    fn on_hub_up(&mut self) {
        if self.hub_up {
            self.on_hub_down();
        }
        debug!(docs = self.docs.len(), "hub up: opening documents");
        self.hub_up = true;
        if self.witness {
            self.send(DocMsg::Witness);
        }
        let names: Vec<String> = self.docs.keys().cloned().collect();
        for name in names {
            let mut doc = self.docs.remove(&name).expect("listed above");
            doc.open = self.next_open();
            self.send_open(&name, &mut doc);
            self.docs.insert(name, doc);
        }
    }

    fn on_hub_down(&mut self) {
        if !self.hub_up {
            return;
        }
        debug!("hub down");
        self.hub_up = false;
        self.incoming = None;
        self.receipts.clear();
        for (name, doc) in &mut self.docs {
            doc.set_phase(name, Phase::Offline);
            for p in &mut doc.pending {
                p.in_flight = false;
            }
            for u in &mut doc.unacked {
                u.patch.in_flight = false;
            }
        }
    }

    fn next_open(&mut self) -> u64 {
        let open = self.next_open;
        self.next_open += 1;
        open
    }

    fn send_open(&mut self, name: &str, doc: &mut Doc) {
        let (version, body) = match &mut doc.base {
            Base::Default(v) => (None, encode_body(&Marks::default(), &Log::empty(0), v)),
            Base::Confirmed(s) => (Some(s.version), encode_body(&s.marks, &s.log, &s.value)),
            Base::Packed(p) => {
                if let Err(e) = p.compact(&self.limits) {
                    // The body itself is a state the host gave: offer that one.
                    warn!(%name, %e, "the witness's patches are unusable");
                    p.patches.clear();
                    p.patch_bytes = 0;
                    p.version = p.body_version;
                }
                (Some(p.version), p.body.clone())
            }
        };
        let len =
            u32::try_from(body.len()).expect("bodies are bounded by max_body, far below 4 GiB");
        let msgs = chunked(&body, self.limits.max_chunk, |chunk| DocMsg::Open {
            name: name.to_owned(),
            open: doc.open,
            version,
            len,
            chunk,
        });
        for msg in msgs {
            self.send(msg);
        }
        doc.set_phase(name, Phase::Opening);
    }

    // ---- messages ----

    fn on_msg(&mut self, msg: DocMsg) {
        if !self.hub_up {
            trace!(msg = msg.name(), "message with no hub link: dropped");
            return;
        }
        trace!(msg = msg.name(), doc = msg.doc(), "doc message from host");
        if let Some(incoming) = &mut self.incoming {
            let DocMsg::More(chunk) = msg else {
                let what = msg.name();
                return self.misbehaved(format!("a {what} message inside a body"));
            };
            if incoming.buf.len() + chunk.len() > incoming.len {
                return self.misbehaved("a chunk beyond the body's length".into());
            }
            incoming.buf.extend_from_slice(&chunk);
            if incoming.buf.len() == incoming.len {
                let incoming = self.incoming.take().expect("matched above");
                self.on_state(incoming);
            }
            return;
        }
        match msg {
            DocMsg::State {
                name,
                open,
                version,
                len,
                chunk,
            } => {
                let incoming = Incoming {
                    name,
                    open,
                    version,
                    len: len as usize,
                    buf: chunk,
                };
                if incoming.buf.len() == incoming.len {
                    self.on_state(incoming);
                } else {
                    self.incoming = Some(incoming);
                }
            }
            DocMsg::Patched {
                name,
                version,
                origin,
                seq,
                wall_ms,
                update,
            } => self.on_patched(&name, version, origin, seq, wall_ms, update),
            DocMsg::Rejected {
                name,
                seq,
                version,
                reason,
            } => self.on_answer(&name, seq, version, Err(reason)),
            DocMsg::Ack {
                name,
                seq,
                version,
                witnesses,
            } => self.on_answer(&name, seq, version, Ok(witnesses)),
            DocMsg::Refused { name, open, reason } => {
                if self.docs.get(&name).is_some_and(|d| d.open == open) {
                    warn!(%name, %reason, "opening refused");
                    self.docs.remove(&name);
                    self.emit(DocEvt::Refused { name, reason });
                }
            }
            DocMsg::More(_) => self.misbehaved("a chunk with no body in transfer".into()),
            other => self.misbehaved(format!("a replica's message: {}", other.name())),
        }
    }

    /// The host's state arrived in full.
    fn on_state(&mut self, incoming: Incoming) {
        let Incoming {
            name,
            open,
            version,
            buf,
            ..
        } = incoming;
        let state = match decode_body(&buf, Some(version), &self.limits) {
            Ok(state) => state,
            Err(e) => return self.misbehaved(format!("an invalid state of `{name}`: {e}")),
        };
        if open == 0 && !self.docs.contains_key(&name) {
            drop(state);
            return self.witness_state(name, version, buf);
        }
        let Some(doc) = self.docs.get_mut(&name).filter(|d| d.open == open) else {
            trace!(%name, open, "a state for an earlier opening: dropped");
            return;
        };
        if doc.phase == Phase::Offline {
            return;
        }
        if self.witness {
            self.receipts.insert(name.clone());
        }
        if doc.is_passive() {
            drop(state);
            doc.base = Base::Packed(Packed::new(version, buf));
            doc.set_phase(&name, Phase::Synced);
            return;
        }
        let first = !doc.announced;
        doc.announced = true;
        let held = match &doc.base {
            Base::Confirmed(s) => Some(s.version),
            Base::Default(_) | Base::Packed(_) => None,
        };
        if let Some(from) = held.filter(|held| *held > version) {
            warn!(%name, from, to = version, "the host's state is older: versions were lost");
            self.out.push_back(ReplicaOutput::Evt(DocEvt::VersionsLost {
                name: name.clone(),
                from,
                to: version,
            }));
        }
        let Some(doc) = self.docs.get_mut(&name) else {
            unreachable!("present above")
        };
        // Applied patches that a host must acknowledge again (this one did not yet): its
        // marks say whether they are still in the history.
        while let Some(at) = doc.unacked.iter().rposition(|u| !u.patch.in_flight) {
            let u = doc.unacked.remove(at).expect("found above");
            doc.pending.push_front(u.patch);
        }
        // Patches made before the first state count as made against it; a state older than
        // what a patch was made against means versions were lost in a failover: check the
        // patch against everything since the state.
        for p in &mut doc.pending {
            p.base = Some(p.base.map_or(version, |b| b.min(version)));
        }
        doc.next_seq = doc.next_seq.max(state.marks.last(self.node) + 1);
        doc.base = Base::Confirmed(state);
        doc.set_phase(&name, Phase::Synced);
        self.emit(if first {
            DocEvt::Opened {
                name: name.clone(),
                version,
            }
        } else {
            DocEvt::Resynced {
                name: name.clone(),
                version,
            }
        });
        self.cover(&name);
        let doc = self.docs.get_mut(&name).expect("present above");
        let before = rebuild(doc, &self.limits);
        if before != doc.local {
            self.emit(DocEvt::Changed {
                name: name.clone(),
                version,
                scope: Scope::Root,
            });
        }
        self.send_pending(&name);
    }

    /// A state the host sent this witness unasked: kept as a passive document if the budget
    /// allows.
    fn witness_state(&mut self, name: String, version: u64, body: Vec<u8>) {
        if !self.witness {
            return self.misbehaved(format!("a state of `{name}`, which this node did not open"));
        }
        let packed = Packed::new(version, body);
        if !self.fits(packed.bytes()) {
            let docs = self.docs.values().filter(|d| d.is_passive()).count();
            let bytes = self.witnessed_bytes();
            warn!(%name, docs, bytes, "witness budget full: no copy kept");
            self.send(DocMsg::Close { name: name.clone() });
            self.not_kept += 1;
            return self.emit(DocEvt::NotWitnessed { name, docs, bytes });
        }
        trace!(%name, version, "witnessing");
        self.receipts.insert(name.clone());
        let doc = Doc {
            open: 0,
            next_seq: 1,
            base: Base::Packed(packed),
            phase: Phase::Synced,
            pending: VecDeque::new(),
            unacked: VecDeque::new(),
            local: Value::Null,
            announced: false,
        };
        self.docs.insert(name, doc);
    }

    fn on_patched(
        &mut self,
        name: &str,
        version: u64,
        origin: NodeId,
        seq: u64,
        wall_ms: u64,
        update: Update,
    ) {
        let node = self.node;
        let Some(doc) = self.docs.get_mut(name).filter(|d| d.phase.is_live()) else {
            trace!(%name, version, "a broadcast for no live document: dropped");
            return;
        };
        if let Base::Packed(packed) = &mut doc.base {
            if version <= packed.version {
                trace!(%name, version, "an old broadcast: dropped");
                return;
            }
            let pushed = if version == packed.version + 1 {
                packed.push(version, origin, seq, wall_ms, &update, &self.limits)
            } else {
                Err(format!("version {version} after {}", packed.version))
            };
            if let Err(e) = pushed {
                warn!(%name, version, %e, "a broadcast to a witness does not apply");
                return self.resync(name);
            }
            self.receipts.insert(name.to_owned());
            return;
        }
        let Base::Confirmed(state) = &mut doc.base else {
            unreachable!("a live document has a confirmed state")
        };
        if version <= state.version {
            trace!(%name, version, "an old broadcast: dropped");
            return;
        }
        if version != state.version + 1 || state.marks.seen(origin, seq) != Seen::New {
            debug!(%name, version, ours = state.version, "a broadcast out of sequence");
            return self.resync(name);
        }
        let limits = &self.limits;
        if let Err(e) = state.advance(origin, seq, wall_ms, &update, limits, &BTreeMap::new()) {
            warn!(%name, version, %e, "a broadcast does not apply");
            return self.resync(name);
        }
        if self.witness {
            self.receipts.insert(name.to_owned());
        }
        // This node's oldest pending patch, applied locally in the same place: the local
        // value already is what it becomes.
        let own_head = origin == node
            && doc
                .pending
                .front()
                .is_some_and(|p| p.in_flight && p.seq == Some(seq) && p.local_ok);
        let mut paths: Vec<Path> = update.paths().cloned().collect();
        self.emit(DocEvt::Patched {
            name: name.into(),
            version,
            origin,
            wall_ms,
            update,
        });
        self.cover(name);
        if !own_head {
            let doc = self.docs.get_mut(name).expect("present above");
            paths.extend(doc.pending.iter().flat_map(|p| p.update.paths().cloned()));
            let before = rebuild(doc, &self.limits);
            self.changed(name, &before, paths);
        }
    }

    /// A rejection, or an acknowledgement of a resend.
    fn on_answer(&mut self, name: &str, seq: u64, version: u64, answer: Result<u32, RejectReason>) {
        let node = self.node;
        let Some(doc) = self
            .docs
            .get_mut(name)
            .filter(|d| d.phase.is_live() && !d.is_passive())
        else {
            trace!(%name, seq, "an answer for no live document: dropped");
            return;
        };
        if let Ok(witnesses) = answer
            && let Some(at) = doc
                .unacked
                .iter()
                .position(|u| u.patch.in_flight && u.patch.seq == Some(seq))
        {
            // Applied before, now held by a witness (or by nobody else there is).
            let u = doc.unacked.remove(at).expect("found above");
            return self.emit(DocEvt::Accepted {
                name: name.into(),
                id: u.patch.id,
                version: u.version,
                witnesses,
            });
        }
        let Some(at) = doc
            .pending
            .iter()
            .position(|p| p.in_flight && p.seq == Some(seq))
        else {
            trace!(%name, seq, "an answer to no pending patch: dropped");
            return;
        };
        let p = doc.pending.remove(at).expect("found above");
        let confirmed = doc.base.version();
        let consistent = match (&answer, &doc.base) {
            (Ok(_), Base::Confirmed(s)) => s.marks.seen(node, seq) == Seen::Accepted,
            _ => confirmed == version,
        };
        let mut paths: Vec<Path> = p.update.paths().cloned().collect();
        paths.extend(doc.pending.iter().flat_map(|p| p.update.paths().cloned()));
        let before = rebuild(doc, &self.limits);
        self.emit(match answer {
            Ok(witnesses) => DocEvt::Accepted {
                name: name.into(),
                id: p.id,
                version,
                witnesses,
            },
            Err(reason) => DocEvt::Rejected {
                name: name.into(),
                id: p.id,
                reason,
            },
        });
        self.changed(name, &before, paths);
        if !consistent {
            debug!(%name, version, confirmed, "an answer from another version");
            self.resync(name);
        }
    }

    /// Moves the pending patches that the confirmed marks show as applied to the unacked
    /// ones (their answer waits for the host's [`DocMsg::Ack`]), and answers those they show
    /// as rejected.
    fn cover(&mut self, name: &str) {
        let node = self.node;
        let Some(doc) = self.docs.get_mut(name) else {
            return;
        };
        let Base::Confirmed(state) = &doc.base else {
            return;
        };
        let version = state.version;
        let mut rejected = Vec::new();
        while let Some(seq) = doc.pending.front().and_then(|p| p.seq) {
            let seen = state.marks.seen(node, seq);
            if seen == Seen::New {
                break;
            }
            let p = doc.pending.pop_front().expect("front exists");
            match seen {
                Seen::Rejected => rejected.push((p.id, RejectReason::Earlier)),
                Seen::Unknown => rejected.push((p.id, RejectReason::Unknown)),
                Seen::Accepted | Seen::New => doc.unacked.push_back(Unacked { patch: p, version }),
            }
        }
        for (id, reason) in rejected {
            self.emit(DocEvt::Rejected {
                name: name.into(),
                id,
                reason,
            });
        }
    }

    /// Sends the pending patches not sent on this link yet, in order.
    fn send_pending(&mut self, name: &str) {
        let Some(doc) = self.docs.get_mut(name) else {
            return;
        };
        let version = doc.base.version();
        let mut msgs = Vec::new();
        // Applied but not acknowledged first (they have their seq): sent again, the host
        // answers once a witness holds them.
        let unacked = doc.unacked.iter_mut().map(|u| &mut u.patch);
        for p in unacked.chain(doc.pending.iter_mut()) {
            if p.in_flight {
                continue;
            }
            let seq = *p.seq.get_or_insert_with(|| {
                let seq = doc.next_seq;
                doc.next_seq += 1;
                seq
            });
            p.in_flight = true;
            msgs.push(DocMsg::Patch {
                name: name.into(),
                seq,
                base: p.base.unwrap_or(version),
                wall_ms: p.wall_ms,
                update: p.update.clone(),
            });
        }
        for msg in msgs {
            self.send(msg);
        }
    }

    fn resync(&mut self, name: &str) {
        let Some(doc) = self.docs.get_mut(name) else {
            return;
        };
        if doc.phase == Phase::Synced {
            doc.set_phase(name, Phase::Resyncing);
            self.send(DocMsg::Resync { name: name.into() });
        }
    }

    /// Reports a change of the local value at those of `paths` where it differs from
    /// `before`.
    fn changed(&mut self, name: &str, before: &Value, mut paths: Vec<Path>) {
        let Some(doc) = self.docs.get(name) else {
            return;
        };
        paths.sort();
        paths.dedup();
        paths.retain(|p| p.get(before) != p.get(&doc.local));
        if paths.is_empty() {
            return;
        }
        let version = doc.base.version();
        self.emit(DocEvt::Changed {
            name: name.into(),
            version,
            scope: Scope::Paths(paths),
        });
    }

    fn misbehaved(&mut self, reason: String) {
        warn!(%reason, "hub misbehaved");
        self.on_hub_down();
        self.emit(DocEvt::HubMisbehaved { reason });
        self.out.push_back(ReplicaOutput::Disconnect);
    }

    fn send(&mut self, msg: DocMsg) {
        self.out.push_back(ReplicaOutput::Send(msg));
    }

    fn emit(&mut self, evt: DocEvt) {
        self.out.push_back(ReplicaOutput::Evt(evt));
    }
}

/// Recomputes the local value (base plus pending patches, skipping those that no longer
/// apply); returns the previous one.
fn rebuild(doc: &mut Doc, limits: &DocLimits) -> Value {
    let mut value = doc.base.value().clone();
    for p in &mut doc.pending {
        let ctx = ApplyContext {
            now_unix_ms: p.wall_ms,
        };
        match p.update.applied(&value, &ctx) {
            Ok(next) if check_value(&next, limits.max_value).is_ok() => {
                value = next;
                p.local_ok = true;
            }
            _ => p.local_ok = false,
        }
    }
    std::mem::replace(&mut doc.local, value)
}

/// Checks a value the application gives or makes.
fn check_local(value: &Value, what: &'static str, limits: &DocLimits) -> Result<(), DocError> {
    if deeper_than(value, MAX_DEPTH) {
        return Err(DocError::TooDeep {
            what,
            max: MAX_DEPTH,
        });
    }
    let len = json_len(value);
    if len > limits.max_value {
        return Err(DocError::TooLarge {
            what,
            len,
            max: limits.max_value,
        });
    }
    Ok(())
}
