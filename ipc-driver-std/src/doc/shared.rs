//! One document as the application's handle and the I/O thread both hold it, and the
//! requests a handle sends about it.

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ipc_proto::doc::{DocError, PatchId};
use serde_json::Value;

use ipc_driver_core::{Committed, PatchError, later};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the I/O thread publishes of one document.
#[derive(Debug)]
pub(super) struct DocState {
    pub(super) version: Option<u64>,
    pub(super) value: Arc<Value>,
    pub(super) opened: bool,
    /// Why the document is closed (refused, node stopped), once it is.
    pub(super) closed: Option<String>,
    /// Patches someone may wait for: `None` until answered.
    pub(super) answers: HashMap<PatchId, Option<Result<Committed, PatchError>>>,
}

/// One document, shared by its [`Doc`](crate::Doc) handle and the I/O thread.
#[derive(Debug)]
pub(crate) struct DocShared {
    pub(super) name: String,
    pub(super) state: Mutex<DocState>,
    pub(super) changed: Condvar,
}

impl DocShared {
    pub(super) fn new(name: &str, default: Value) -> Arc<Self> {
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

    pub(super) fn wait<T>(
        &self,
        timeout: Option<Duration>,
        mut f: impl FnMut(&mut DocState) -> Option<T>,
    ) -> Option<T> {
        let deadline = timeout.map(|t| later(Instant::now(), t));
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

/// A request about documents, from a [`Doc`](crate::Doc) to the I/O thread.
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

/// Closes a document for its waiters: unanswered patches fail.
pub(super) fn close(shared: &DocShared, why: &str) {
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
