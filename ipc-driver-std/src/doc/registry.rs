//! The I/O thread's side of documents: every open one, fed by the member's events, and what
//! to publish to the handles and the event sinks at the end of a wakeup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use ipc_proto::Member;
use ipc_proto::doc::{DocEvt, PatchId, Scope};
use tracing::debug;

use super::shared::{DocRequest, DocShared, close, lock};
use crate::events::Sink;
use ipc_driver_core::NodeEvent;
use ipc_driver_core::{Committed, DocEvent, PatchError};

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
        match &evt {
            DocEvt::Opened { name, .. } => {
                self.opened.push(name.clone());
                self.dirty.entry(name.clone()).or_insert(Scope::Root);
            }
            DocEvt::Changed { name, scope, .. } => {
                match self.dirty.get_mut(name) {
                    None => {
                        self.dirty.insert(name.clone(), scope.clone());
                    }
                    Some(d) => d.merge(scope.clone()),
                }
                // Reported once per wakeup, by `publish`.
                return None;
            }
            DocEvt::Accepted {
                name,
                id,
                version,
                witnesses,
            } => {
                let committed = Committed {
                    version: *version,
                    witnesses: *witnesses,
                };
                self.answers.push((name.clone(), *id, Ok(committed)));
            }
            DocEvt::Rejected { name, id, reason } => {
                let e = PatchError::Rejected(reason.clone());
                self.answers.push((name.clone(), *id, Err(e)));
            }
            DocEvt::Refused { name, reason } => {
                if let Some(shared) = self.docs.remove(name) {
                    close(&shared, &format!("the host refused to open it: {reason}"));
                }
            }
            _ => {}
        }
        let name = evt.name();
        let Some(event) = DocEvent::from_replica(evt, |_| None) else {
            debug!(evt = name, "document event");
            return None;
        };
        Some(NodeEvent::Doc(event))
    }

    /// Publishes, once per wakeup, the values that changed and then the answers (so that a
    /// patch's caller sees its patch in [`Doc::snapshot`]); returns the change events.
    ///
    /// [`Doc::snapshot`]: crate::Doc::snapshot
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

/// Converts a sink push helper for the reactor: pushes `events` to every live sink.
pub(crate) fn push_all(sinks: &mut Vec<Sink>, events: &[NodeEvent]) {
    for e in events {
        sinks.retain(|s| s.push(e));
    }
}
