//! Shared documents: a JSON value per name, replicated on every node that opens it, patched
//! with MongoDB update operators, hosted by the group's hub (see [`ipc_proto::doc`]).
//!
//! [`Node::open_doc`](crate::Node::open_doc) opens one; a node may open several, and a
//! process may run several nodes. The I/O thread owns the document machines; a [`Doc`] reads
//! the value the I/O thread last published ([`Doc::snapshot`]) and asks it for patches.
//!
//! ```no_run
//! use std::time::Duration;
//! use ipc_driver_std::{DocEvent, Node, NodeEvent};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder("counter").group("robot").join()?;
//! let events = node.events();
//! let doc = node.open_doc("config", json!({"retries": 3, "motors": {"left": 0}}))?;
//! doc.wait_opened(Duration::from_secs(5))?;
//! // Fired on the node's dispatch thread when `motors` or anything under it changes.
//! doc.observe("motors", |value| println!("motors now {value:?}"))?;
//! // Blocks until the host accepted it and a witness holds it, or rejected it (a typed
//! // error).
//! let version = doc.patch(&json!({"$inc": {"retries": 1}}))?.version;
//! let (at, value) = doc.snapshot();
//! assert!(at >= Some(version) && value["retries"].is_i64());
//! // Or without blocking: a ticket to wait on later.
//! let ticket = doc.patch_nowait(&json!({"$set": {"motors.left": 40}}))?;
//! match ticket.wait() {
//!     Ok(c) => println!("accepted as version {}, {} witnesses", c.version, c.witnesses),
//!     Err(e) => println!("rejected: {e}"),
//! }
//! for event in (&events).take(3) {
//!     if let NodeEvent::Doc(DocEvent::Patched { doc, version, update, .. }) = event {
//!         println!("{doc} v{version}: {}", update.to_value());
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::mpsc::{self, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipc_proto::doc::{
    DocError, DocEvt, Observed, PatchId, PathError, Refusal, RejectReason, Scope, Update,
};
use ipc_proto::{Member, NodeId};
use serde_json::Value;
use tracing::debug;

use crate::error::DriverError;
use crate::events::{CallbackId, Dispatcher, NodeEvent, Sink};
use crate::node::REPLY_TIMEOUT;
use crate::reactor::Request;
use ipc_os::poll::Waker;

/// The host's acknowledgement of a patch: the version that applied it, and how many
/// witnesses held it when the host answered.
///
/// The host answers once a **witness** (a member other than the host's and this node that
/// keeps a copy of the group's documents, see [`NodeBuilder::witness`](crate::NodeBuilder::witness))
/// holds the patch, or at once when the group has no witness for it. With `witnesses` at
/// least 1, the patch survives the death of any one process, the hub's and this one's
/// included, even if this process exits right away. With 0 (a group of the hub and this
/// node alone, say), it is lost if the hub dies before another member holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Committed {
    /// The version that applied the patch (or, after a hub change, the new host's version
    /// that includes it).
    pub version: u64,
    /// How many members other than the host and this node held it.
    pub witnesses: u32,
}

/// Something about a shared document ([`NodeEvent::Doc`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocEvent {
    /// The host answered the opening: the document is live at `version` (once per opening).
    Opened {
        /// The document.
        doc: String,
        /// The host's version.
        version: u64,
    },
    /// The host accepted a patch, this node's or another's, as `version` (once per version
    /// received; a state from the host skips the versions it covers, see
    /// [`Resynced`](Self::Resynced)). Applying `update` (with `wall_ms` for `$currentDate`)
    /// to version `version - 1` gives this version.
    Patched {
        /// The document.
        doc: String,
        /// The version it made.
        version: u64,
        /// Its origin.
        origin: NodeId,
        /// When it was made, in milliseconds since the Unix epoch.
        wall_ms: u64,
        /// The update.
        update: Update,
    },
    /// The host accepted this node's patch `ticket` as `version`, and a witness holds it
    /// (see [`Committed`]).
    Accepted {
        /// The document.
        doc: String,
        /// The patch.
        ticket: u64,
        /// The version that applied it (or, after a hub change, the new host's version that
        /// includes it).
        version: u64,
        /// How many members other than the host and this node held it when the host
        /// answered ([`Committed::witnesses`]).
        witnesses: u32,
    },
    /// The host rejected this node's patch `ticket`; the local value no longer includes it.
    Rejected {
        /// The document.
        doc: String,
        /// The patch.
        ticket: u64,
        /// Why.
        reason: RejectReason,
    },
    /// The host's state replaced the document's value: after a hub change (a new host
    /// settled), or after this node asked for it. The versions it skips have no
    /// [`Patched`](Self::Patched).
    Resynced {
        /// The document.
        doc: String,
        /// The host's version.
        version: u64,
    },
    /// The host's state is older than the one this node held: versions after `to` up to
    /// `from` were lost with a hub (nobody that held them survived it), and the document
    /// goes on from `to`, counting again from there. A [`Resynced`](Self::Resynced) follows.
    VersionsLost {
        /// The document.
        doc: String,
        /// The version this node held.
        from: u64,
        /// The host's version.
        to: u64,
    },
    /// The host refused to open the document; it is closed (its patches fail).
    Refused {
        /// The document.
        doc: String,
        /// Why.
        reason: Refusal,
    },
    /// The local value changed (at most once per document per wakeup of the I/O thread, after
    /// [`Doc::snapshot`] shows the change), somewhere `scope` says.
    Changed {
        /// The document.
        doc: String,
        /// The host's version the value builds on (`None` until the host answered).
        version: Option<u64>,
        /// Where it changed.
        scope: Scope,
    },
}

impl DocEvent {
    /// A short name, in snake case, for logs and JSON lines.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "opened",
            Self::Patched { .. } => "patched",
            Self::Accepted { .. } => "accepted",
            Self::Rejected { .. } => "rejected",
            Self::Resynced { .. } => "resynced",
            Self::VersionsLost { .. } => "versions_lost",
            Self::Refused { .. } => "refused",
            Self::Changed { .. } => "changed",
        }
    }

    /// The document it is about.
    pub fn doc(&self) -> &str {
        match self {
            Self::Opened { doc, .. }
            | Self::Patched { doc, .. }
            | Self::Accepted { doc, .. }
            | Self::Rejected { doc, .. }
            | Self::Resynced { doc, .. }
            | Self::VersionsLost { doc, .. }
            | Self::Refused { doc, .. }
            | Self::Changed { doc, .. } => doc,
        }
    }

    /// The version it is about, if any.
    pub fn version(&self) -> Option<u64> {
        match self {
            Self::Opened { version, .. }
            | Self::Patched { version, .. }
            | Self::Accepted { version, .. }
            | Self::Resynced { version, .. } => Some(*version),
            Self::VersionsLost { to, .. } => Some(*to),
            Self::Changed { version, .. } => *version,
            Self::Rejected { .. } | Self::Refused { .. } => None,
        }
    }
}

/// Why a patch did not make it into the document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// Refused locally, nothing sent: an invalid update (the error names the operator and the
    /// path), one that fails on the local value, too large, too many patches waiting...
    #[error(transparent)]
    Invalid(#[from] DocError),
    /// The host rejected it: a conflict with another node's patch on an overlapping path
    /// (the path, version and origin are named), or a failure on the host's value.
    #[error("rejected by the host: {0}")]
    Rejected(RejectReason),
    /// No answer will come: the document was closed or refused, or the node stopped.
    #[error("no answer: {0}")]
    Unanswered(String),
    /// Waited too long; the patch may still be accepted or rejected later.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the I/O thread publishes of one document.
#[derive(Debug)]
struct DocState {
    version: Option<u64>,
    value: Arc<Value>,
    opened: bool,
    /// Why the document is closed (refused, node stopped), once it is.
    closed: Option<String>,
    /// Patches someone may wait for: `None` until answered.
    answers: HashMap<PatchId, Option<Result<Committed, PatchError>>>,
}

/// One document, shared by its [`Doc`] handle and the I/O thread.
#[derive(Debug)]
pub(crate) struct DocShared {
    name: String,
    state: Mutex<DocState>,
    changed: Condvar,
}

impl DocShared {
    fn new(name: &str, default: Value) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            state: Mutex::new(DocState {
                version: None,
                value: Arc::new(default),
                opened: false,
                closed: None,
                answers: HashMap::new(),
            }),
            changed: Condvar::new(),
        })
    }

    fn wait<T>(
        &self,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut DocState) -> Option<T>,
    ) -> Option<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = lock(&self.state);
        loop {
            if let Some(t) = f(&mut s) {
                return Some(t);
            }
            s = match deadline {
                None => self.changed.wait(s).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(s, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

/// A request about documents, from a [`Doc`] to the I/O thread.
pub(crate) enum DocRequest {
    Open {
        shared: Arc<DocShared>,
        default: Value,
        reply: SyncSender<Result<(), DocError>>,
    },
    Patch {
        name: String,
        update: Value,
        wall_ms: u64,
        reply: SyncSender<Result<PatchId, DocError>>,
    },
    Close(String),
}

/// The I/O thread's side: every open document, and what to publish at the end of a wakeup.
#[derive(Debug, Default)]
pub(crate) struct DocRegistry {
    docs: BTreeMap<String, Arc<DocShared>>,
    /// Documents whose value or version changed since the last publication, and where the
    /// value did (`Paths([])`: only the version).
    dirty: BTreeMap<String, Scope>,
    /// Answers to publish with the values.
    answers: Vec<(String, PatchId, Result<Committed, PatchError>)>,
    opened: Vec<String>,
}

impl DocRegistry {
    /// Runs a request on the member (the caller pumps the member's outputs after).
    pub(crate) fn handle(&mut self, member: &mut Member, now: Instant, request: DocRequest) {
        match request {
            DocRequest::Open {
                shared,
                default,
                reply,
            } => {
                let r = member.open_doc(now, &shared.name, default);
                if r.is_ok() {
                    self.docs.insert(shared.name.clone(), shared);
                }
                let _ = reply.send(r);
            }
            DocRequest::Patch {
                name,
                update,
                wall_ms,
                reply,
            } => {
                let r = member.patch_doc(now, &name, &update, wall_ms);
                if let (Ok(id), Some(shared)) = (&r, self.docs.get(&name)) {
                    // Registered before anyone can see the id: the answer cannot be missed.
                    lock(&shared.state).answers.insert(*id, None);
                }
                let _ = reply.send(r);
            }
            DocRequest::Close(name) => {
                if let Some(shared) = self.docs.remove(&name) {
                    let _ = member.close_doc(now, &name);
                    close(&shared, "the document was closed");
                }
                self.dirty.remove(&name);
            }
        }
    }

    /// Takes one event of the member's replica; returns what to tell the application now.
    pub(crate) fn on_evt(&mut self, evt: DocEvt) -> Option<NodeEvent> {
        if let Some(name) = match &evt {
            DocEvt::Patched { name, .. }
            | DocEvt::Resynced { name, .. }
            | DocEvt::Accepted { name, .. } => Some(name),
            _ => None,
        } && !self.dirty.contains_key(name)
        {
            // The version moved, perhaps not the value (a patch of this node, applied
            // locally already).
            self.dirty.insert(name.clone(), Scope::Paths(Vec::new()));
        }
        let event = match evt {
            DocEvt::Opened { name, version } => {
                self.opened.push(name.clone());
                self.dirty.entry(name.clone()).or_insert(Scope::Root);
                DocEvent::Opened { doc: name, version }
            }
            DocEvt::Changed { name, scope, .. } => {
                match self.dirty.get_mut(&name) {
                    None => {
                        self.dirty.insert(name, scope);
                    }
                    Some(d) => merge_scope(d, scope),
                }
                return None;
            }
            DocEvt::Patched {
                name,
                version,
                origin,
                wall_ms,
                update,
            } => DocEvent::Patched {
                doc: name,
                version,
                origin,
                wall_ms,
                update,
            },
            DocEvt::Accepted {
                name,
                id,
                version,
                witnesses,
            } => {
                let committed = Committed { version, witnesses };
                self.answers.push((name.clone(), id, Ok(committed)));
                DocEvent::Accepted {
                    doc: name,
                    ticket: id.0,
                    version,
                    witnesses,
                }
            }
            DocEvt::Rejected { name, id, reason } => {
                let e = PatchError::Rejected(reason.clone());
                self.answers.push((name.clone(), id, Err(e)));
                DocEvent::Rejected {
                    doc: name,
                    ticket: id.0,
                    reason,
                }
            }
            DocEvt::Resynced { name, version } => DocEvent::Resynced { doc: name, version },
            DocEvt::VersionsLost { name, from, to } => DocEvent::VersionsLost {
                doc: name,
                from,
                to,
            },
            DocEvt::Refused { name, reason } => {
                if let Some(shared) = self.docs.remove(&name) {
                    close(&shared, &format!("the host refused to open it: {reason}"));
                }
                DocEvent::Refused { doc: name, reason }
            }
            other => {
                debug!(evt = other.name(), "document event");
                return None;
            }
        };
        Some(NodeEvent::Doc(event))
    }

    /// Publishes, once per wakeup, the values that changed and then the answers (so that a
    /// patch's caller sees its patch in [`Doc::snapshot`]); returns the change events.
    pub(crate) fn publish(&mut self, member: &Member) -> Vec<NodeEvent> {
        let mut events = Vec::new();
        for (name, scope) in std::mem::take(&mut self.dirty) {
            let Some(shared) = self.docs.get(&name) else {
                continue;
            };
            let replica = member.docs();
            let Some(value) = replica.value(&name) else {
                continue;
            };
            let version = replica.version(&name);
            let moved = scope != Scope::Paths(Vec::new());
            {
                let mut s = lock(&shared.state);
                if moved {
                    // One copy per document per wakeup, whatever the number of patches.
                    s.value = Arc::new(value.clone());
                }
                s.version = version;
            }
            if moved {
                events.push(NodeEvent::Doc(DocEvent::Changed {
                    doc: name,
                    version,
                    scope,
                }));
            }
        }
        for name in std::mem::take(&mut self.opened) {
            if let Some(shared) = self.docs.get(&name) {
                lock(&shared.state).opened = true;
            }
        }
        for (name, id, answer) in std::mem::take(&mut self.answers) {
            if let Some(shared) = self.docs.get(&name)
                && let Some(slot) = lock(&shared.state).answers.get_mut(&id)
            {
                *slot = Some(answer);
            }
        }
        for shared in self.docs.values() {
            shared.changed.notify_all();
        }
        events
    }

    /// The node stopped: every waiter is told.
    pub(crate) fn stop(&mut self, why: &str) {
        for shared in std::mem::take(&mut self.docs).into_values() {
            close(&shared, &format!("the node has stopped: {why}"));
        }
    }
}

fn merge_scope(into: &mut Scope, scope: Scope) {
    match (&mut *into, scope) {
        (Scope::Root, _) => {}
        (_, Scope::Root) => *into = Scope::Root,
        (Scope::Paths(a), Scope::Paths(b)) => {
            for p in b {
                if !a.contains(&p) {
                    a.push(p);
                }
            }
        }
    }
}

/// Closes a document for its waiters: unanswered patches fail.
fn close(shared: &DocShared, why: &str) {
    let mut s = lock(&shared.state);
    s.closed = Some(why.to_owned());
    for slot in s.answers.values_mut() {
        if slot.is_none() {
            *slot = Some(Err(PatchError::Unanswered(why.to_owned())));
        }
    }
    drop(s);
    shared.changed.notify_all();
}

/// What a [`Doc`] needs of its node.
#[derive(Clone)]
pub(crate) struct DocLink {
    pub(crate) node: String,
    pub(crate) requests: Sender<Request>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) dispatcher: Arc<OnceLock<Arc<Dispatcher>>>,
}

impl DocLink {
    fn send(&self, request: DocRequest) -> Result<(), DriverError> {
        self.requests
            .send(Request::Doc(request))
            .map_err(|_| DriverError::Stopped("the I/O thread is gone".into()))?;
        self.waker.wake()?;
        Ok(())
    }

    fn dispatcher(&self) -> &Arc<Dispatcher> {
        self.dispatcher.get_or_init(|| {
            let (events, sink) = crate::events::Events::new();
            let _ = self.requests.send(Request::Events(sink));
            let _ = self.waker.wake();
            Arc::new(Dispatcher::new(events))
        })
    }
}

fn recv<T>(rx: &mpsc::Receiver<T>) -> Result<T, DriverError> {
    rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => DriverError::Timeout(REPLY_TIMEOUT, "the I/O thread"),
        mpsc::RecvTimeoutError::Disconnected => {
            DriverError::Stopped("the I/O thread is gone".into())
        }
    })
}

/// One shared document, opened by [`Node::open_doc`](crate::Node::open_doc). Closed when
/// dropped (its unanswered patches then get no answer, though the host may still apply them).
///
/// All methods may be called from any thread.
pub struct Doc {
    shared: Arc<DocShared>,
    link: DocLink,
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doc")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl Doc {
    pub(crate) fn open(link: DocLink, name: &str, default: Value) -> Result<Self, DriverError> {
        let shared = DocShared::new(name, default.clone());
        let (reply, rx) = mpsc::sync_channel(1);
        link.send(DocRequest::Open {
            shared: Arc::clone(&shared),
            default,
            reply,
        })?;
        recv(&rx)??;
        Ok(Self { shared, link })
    }

    /// The document's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The version the value builds on (0 for a new document; `None` until the host
    /// answered the opening) and the local value: the host's, with this node's patches that
    /// the host has not answered yet applied. Cheap: the value is shared, not copied.
    pub fn snapshot(&self) -> (Option<u64>, Arc<Value>) {
        let s = lock(&self.shared.state);
        (s.version, Arc::clone(&s.value))
    }

    /// Whether the host has answered the opening (the value is the group's).
    pub fn is_opened(&self) -> bool {
        lock(&self.shared.state).opened
    }

    /// Waits until the host has answered the opening; returns the version then.
    pub fn wait_opened(&self, timeout: Duration) -> Result<u64, DriverError> {
        let r = self.shared.wait(Some(timeout), |s| {
            if let Some(why) = &s.closed {
                return Some(Err(DriverError::Stopped(why.clone())));
            }
            (s.opened).then(|| Ok(s.version.unwrap_or(0)))
        });
        r.unwrap_or(Err(DriverError::Timeout(timeout, "the document host")))
    }

    /// Applies `update` (`{"$set": {"a.b": 1}, "$inc": {"n": 2}}`...) and waits until the
    /// host accepted it and a witness holds it ([`Committed`]), or rejected it. Across hub
    /// changes the patch is sent again to the new host, so this may wait for a failover.
    pub fn patch(&self, update: &Value) -> Result<Committed, PatchError> {
        self.patch_nowait(update)?.wait()
    }

    /// Applies `update` to the local value at once and sends it; the returned ticket tells
    /// the host's answer.
    pub fn patch_nowait(&self, update: &Value) -> Result<Ticket, PatchError> {
        let wall_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (reply, rx) = mpsc::sync_channel(1);
        let request = DocRequest::Patch {
            name: self.shared.name.clone(),
            update: update.clone(),
            wall_ms,
            reply,
        };
        let stopped = |e: DriverError| PatchError::Unanswered(e.to_string());
        self.link.send(request).map_err(stopped)?;
        let id = recv(&rx).map_err(stopped)??;
        Ok(Ticket {
            id,
            shared: Arc::clone(&self.shared),
        })
    }

    /// Calls `f` with the value at `path` (`None`: absent) whenever it changes: when a patch,
    /// a rejection or a state from the host changes that path or anything under it. `""` is
    /// the whole document. `f` runs on the node's dispatch thread with no lock held, like
    /// [`Node::on_event`](crate::Node::on_event) callbacks; remove it with
    /// [`Node::remove_callback`](crate::Node::remove_callback).
    pub fn observe(
        &self,
        path: &str,
        mut f: impl FnMut(Option<&Value>) + Send + 'static,
    ) -> Result<CallbackId, PathError> {
        let mut observed = Observed::new(path, &self.snapshot().1)?;
        let shared = Arc::clone(&self.shared);
        let name = self.shared.name.clone();
        Ok(self.link.dispatcher().add(&self.link.node, move |event| {
            let NodeEvent::Doc(DocEvent::Changed { doc, scope, .. }) = event else {
                return;
            };
            if *doc != name {
                return;
            }
            let value = Arc::clone(&lock(&shared.state).value);
            if let Some(now) = observed.update(scope, &value) {
                f(now);
            }
        }))
    }
}

impl Drop for Doc {
    fn drop(&mut self) {
        let _ = self.link.send(DocRequest::Close(self.shared.name.clone()));
    }
}

/// A patch sent by [`Doc::patch_nowait`], waiting for the host's answer.
#[derive(Debug)]
pub struct Ticket {
    id: PatchId,
    shared: Arc<DocShared>,
}

impl Ticket {
    /// This node's number for the patch (as in [`DocEvent::Accepted`] and
    /// [`DocEvent::Rejected`]).
    pub fn id(&self) -> u64 {
        self.id.0
    }

    /// Whether the host has answered.
    pub fn is_answered(&self) -> bool {
        lock(&self.shared.state)
            .answers
            .get(&self.id)
            .is_none_or(Option::is_some)
    }

    /// Waits for the host's answer: the version that applied the patch and its witnesses, or
    /// why not.
    pub fn wait(self) -> Result<Committed, PatchError> {
        self.take(None)
            .expect("waiting without a deadline returns an answer")
    }

    /// Like [`wait`](Self::wait), at most `timeout`; the ticket is kept on timeout.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Committed, PatchError> {
        self.take(Some(timeout))
            .unwrap_or(Err(PatchError::Timeout(timeout)))
    }

    fn take(&self, timeout: Option<Duration>) -> Option<Result<Committed, PatchError>> {
        let id = self.id;
        self.shared.wait(timeout, |s| match s.answers.get(&id) {
            Some(Some(_)) => s.answers.remove(&id).flatten(),
            Some(None) => None,
            // Gone: answered and taken already, or the document closed.
            None => Some(Err(PatchError::Unanswered(
                s.closed.clone().unwrap_or_else(|| "already taken".into()),
            ))),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.shared.state).answers.remove(&self.id);
    }
}

/// Converts a sink push helper for the reactor: pushes `events` to every live sink.
pub(crate) fn push_all(sinks: &mut Vec<Sink>, events: &[NodeEvent]) {
    for e in events {
        sinks.retain(|s| s.push(e));
    }
}
