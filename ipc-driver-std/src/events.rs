//! What a node tells its application: events, as receivers and as callbacks.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::{self, JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use ipc_driver_core::{EventKinds, NodeEvent, later};

/// How many events a receiver holds before it starts dropping the oldest.
pub const EVENT_QUEUE_CAPACITY: usize = 65_536;

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking callback cannot leave these queues half-updated: recover the data.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Queue {
    events: VecDeque<NodeEvent>,
    missed: u64,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// The sending side of one receiver, and the kinds of event it takes; held by the node's I/O
/// thread.
#[derive(Debug)]
pub(crate) struct Sink(Weak<Shared>, EventKinds);

impl Sink {
    /// Queues an event, dropping the oldest if the receiver is full. Never blocks for long:
    /// the lock is only ever held to move an event in or out. Returns `false` once the
    /// receiver is gone.
    pub(crate) fn push(&self, event: &NodeEvent) -> bool {
        let Some(shared) = self.0.upgrade() else {
            return false;
        };
        if !event.is(self.1) {
            return true;
        }
        let mut q = lock(&shared.queue);
        if q.events.len() >= EVENT_QUEUE_CAPACITY {
            q.events.pop_front();
            q.missed += 1;
        }
        q.events.push_back(event.clone());
        drop(q);
        shared.ready.notify_one();
        true
    }

    /// Tells the receiver that no more events will come.
    pub(crate) fn close(&self) {
        if let Some(shared) = self.0.upgrade() {
            lock(&shared.queue).closed = true;
            shared.ready.notify_all();
        }
    }
}

/// A receiver of a node's events, in order: every kind ([`Node::events`](crate::Node::events))
/// or only some ([`Node::events_of`](crate::Node::events_of)). Bounded: a receiver that falls more than
/// [`EVENT_QUEUE_CAPACITY`] events behind loses the oldest and is told so with
/// [`NodeEvent::Lagged`].
///
/// Iterating blocks until the next event and ends when the node has left.
///
/// ```no_run
/// # fn main() -> Result<(), ipc_driver_std::DriverError> {
/// let node = ipc_driver_std::Node::builder("watcher").group("demo").join()?;
/// for event in node.events() {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Events(Arc<Shared>);

impl Events {
    pub(crate) fn new(kinds: EventKinds) -> (Self, Sink) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                events: VecDeque::new(),
                missed: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let sink = Sink(Arc::downgrade(&shared), kinds);
        (Self(shared), sink)
    }

    fn take(q: &mut Queue) -> Option<NodeEvent> {
        if q.missed > 0 {
            let missed = std::mem::take(&mut q.missed);
            return Some(NodeEvent::Lagged { missed });
        }
        q.events.pop_front()
    }

    /// Whether the node has stopped and every event has been read: nothing more will come.
    pub fn is_finished(&self) -> bool {
        let q = lock(&self.0.queue);
        q.closed && q.events.is_empty() && q.missed == 0
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<NodeEvent> {
        Self::take(&mut lock(&self.0.queue))
    }

    /// The next event, waiting for it; `None` once the node has left and all events are read.
    pub fn recv(&self) -> Option<NodeEvent> {
        let mut q = lock(&self.0.queue);
        loop {
            if let Some(e) = Self::take(&mut q) {
                return Some(e);
            }
            if q.closed {
                return None;
            }
            q = self.0.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// The next event, waiting at most `timeout`; `None` on timeout or once the node has left.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<NodeEvent> {
        let deadline = later(Instant::now(), timeout);
        let mut q = lock(&self.0.queue);
        loop {
            if let Some(e) = Self::take(&mut q) {
                return Some(e);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if q.closed || left.is_zero() {
                return None;
            }
            q = self
                .0
                .ready
                .wait_timeout(q, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until an event satisfies `pred` and returns it, discarding the others; `None` on
    /// timeout or once the node has left.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&NodeEvent) -> bool,
    ) -> Option<NodeEvent> {
        let deadline = later(Instant::now(), timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.recv_timeout(left)?;
            if pred(&e) {
                return Some(e);
            }
        }
    }
}

impl Iterator for Events {
    type Item = NodeEvent;

    fn next(&mut self) -> Option<NodeEvent> {
        self.recv()
    }
}

impl Iterator for &Events {
    type Item = NodeEvent;

    fn next(&mut self) -> Option<NodeEvent> {
        self.recv()
    }
}

/// Identifies a callback registered with [`Node::on_event`](crate::Node::on_event), to remove it.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug)]
pub struct CallbackId(u64);

type Callback = Arc<Mutex<dyn FnMut(&NodeEvent) + Send>>;

/// Callbacks and the thread that runs them.
///
/// Callbacks run on one dispatch thread per node, started with the first callback, never on
/// the I/O thread and with no lock of the node held: a callback may call any method of the
/// node, register or remove callbacks, or block.
pub(crate) struct Dispatcher {
    callbacks: Arc<Mutex<Vec<(CallbackId, Callback)>>>,
    next_id: Mutex<u64>,
    /// The dispatch thread, once started, and the sink that feeds it.
    thread: Mutex<Option<(JoinHandle<()>, ThreadId)>>,
    events: Mutex<Option<Events>>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = lock(&self.callbacks).len();
        f.debug_struct("Dispatcher")
            .field("callbacks", &n)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher fed by `events`, whose sink the I/O thread holds.
    pub(crate) fn new(events: Events) -> Self {
        Self {
            callbacks: Arc::default(),
            next_id: Mutex::new(0),
            thread: Mutex::new(None),
            events: Mutex::new(Some(events)),
        }
    }

    pub(crate) fn add(&self, name: &str, f: impl FnMut(&NodeEvent) + Send + 'static) -> CallbackId {
        let id = {
            let mut next = lock(&self.next_id);
            *next += 1;
            CallbackId(*next)
        };
        lock(&self.callbacks).push((id, Arc::new(Mutex::new(f))));
        self.start(name);
        id
    }

    pub(crate) fn remove(&self, id: CallbackId) -> bool {
        let mut cbs = lock(&self.callbacks);
        let before = cbs.len();
        cbs.retain(|(i, _)| *i != id);
        cbs.len() != before
    }

    fn start(&self, name: &str) {
        let Some(events) = lock(&self.events).take() else {
            return;
        };
        let callbacks = Arc::clone(&self.callbacks);
        let handle = thread::Builder::new()
            .name(format!("ipc-pubsub-cb:{name}"))
            .spawn(move || {
                for event in &events {
                    // Snapshot, then run with the registry unlocked: callbacks may register
                    // or remove callbacks.
                    let cbs: Vec<Callback> = lock(&callbacks)
                        .iter()
                        .map(|(_, c)| Arc::clone(c))
                        .collect();
                    for cb in cbs {
                        let mut f = lock(&cb);
                        (*f)(&event);
                    }
                }
            })
            .expect("spawning a thread only fails when the process is out of resources");
        let id = handle.thread().id();
        *lock(&self.thread) = Some((handle, id));
    }

    /// Waits for the dispatch thread to run the callbacks of every event queued before the
    /// node closed its sink. From inside a callback (the dispatch thread itself) it returns at
    /// once: the thread ends on its own after this callback returns.
    pub(crate) fn join(&self) {
        let taken = lock(&self.thread).take();
        if let Some((handle, id)) = taken {
            if id == thread::current().id() {
                return;
            }
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_receiver_drops_the_oldest_and_says_how_many() {
        let (events, sink) = Events::new(EventKinds::ALL);
        for i in 0..EVENT_QUEUE_CAPACITY + 3 {
            let e = NodeEvent::Lagged { missed: i as u64 };
            assert!(sink.push(&e));
        }
        assert!(matches!(
            events.try_recv(),
            Some(NodeEvent::Lagged { missed: 3 })
        ));
        assert!(
            matches!(events.try_recv(), Some(NodeEvent::Lagged { missed: 3 })),
            "the 4th event pushed"
        );
        sink.close();
        assert_eq!(events.into_iter().count(), EVENT_QUEUE_CAPACITY - 1);
    }

    #[test]
    fn a_dropped_receiver_stops_the_sink() {
        let (events, sink) = Events::new(EventKinds::ALL);
        drop(events);
        assert!(!sink.push(&NodeEvent::HubLost));
    }

    #[test]
    fn recv_timeout_returns_none_on_timeout_and_on_close() {
        let (events, sink) = Events::new(EventKinds::ALL);
        assert!(events.recv_timeout(Duration::from_millis(1)).is_none());
        sink.close();
        assert!(events.recv().is_none());
    }

    #[test]
    fn a_receiver_of_some_kinds_gets_only_those_and_its_own() {
        let (events, sink) = Events::new(EventKinds::GROUP);
        assert!(sink.push(&NodeEvent::Room { topic: "t".into() }));
        assert!(sink.push(&NodeEvent::HubLost));
        assert!(sink.push(&NodeEvent::Left));
        sink.close();
        let got: Vec<NodeEvent> = events.into_iter().collect();
        assert!(
            matches!(got[..], [NodeEvent::HubLost, NodeEvent::Left]),
            "{got:?}"
        );
    }
}
