//! The application's side of a document: [`Doc`] and [`Ticket`].

use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipc_proto::doc::{Observed, PatchId, PathError};
use serde_json::Value;

use super::shared::{DocRequest, DocShared, lock};
use crate::events::{CallbackId, Dispatcher};
use crate::request::{Request, Requester};
use ipc_driver_core::DriverError;
use ipc_driver_core::NodeEvent;
use ipc_driver_core::{Committed, DocEvent, DocSnapshot, PatchError};

/// What a [`Doc`] needs of its node.
#[derive(Clone)]
pub(crate) struct DocLink {
    pub(crate) node: String,
    pub(crate) requester: Requester,
    pub(crate) dispatcher: Arc<OnceLock<Arc<Dispatcher>>>,
}

impl DocLink {
    fn send(&self, request: DocRequest) -> Result<(), DriverError> {
        self.requester.send(Request::Doc(request))
    }

    fn dispatcher(&self) -> &Arc<Dispatcher> {
        self.dispatcher.get_or_init(|| {
            let (events, sink) = crate::events::Events::new(ipc_driver_core::EventKinds::ALL);
            // Registered before the first callback is added (see `Node::events_of`).
            let _ = self.requester.call(|reply| Request::Events(sink, reply));
            Arc::new(Dispatcher::new(events))
        })
    }
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
        link.requester.wait(&rx)??;
        Ok(Self { shared, link })
    }

    /// The document's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The version the value builds on (0 for a new document; `None` until the host
    /// answered the opening) and the local value: the host's, with this node's patches that
    /// the host has not answered yet applied. Cheap: the value is shared, not copied.
    pub fn snapshot(&self) -> DocSnapshot<Arc<Value>> {
        let s = lock(&self.shared.state);
        DocSnapshot {
            version: s.version,
            value: Arc::clone(&s.value),
        }
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
        let id = self.link.requester.wait(&rx).map_err(stopped)??;
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
        let mut observed = Observed::new(path, &self.snapshot().value)?;
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
