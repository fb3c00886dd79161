//! Requests from application threads to the node's I/O thread: what they are ([`Request`]),
//! what an application thread may read without asking ([`State`]), and the one way to send a
//! request and wait for its answer ([`Requester`]). A leaf: the handles (`node`, `pubsub`,
//! `doc`) and the I/O thread (`reactor`) import it, it imports none of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Duration;

use ipc_proto::data::DataCmd;
use ipc_proto::wire::DataStats;
use ipc_proto::{CmdError, SpokeCmd, View};

use crate::data::SubQueue;
use crate::doc::DocRequest;
use crate::events::Sink;
use ipc_driver_core::{DriverError, HubInfo};
use ipc_os::poll::Waker;

/// How long a call waits for the node's I/O thread before giving up; it answers in
/// microseconds unless the process is starved.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// A request from an application thread.
pub(crate) enum Request {
    Cmd(SpokeCmd, SyncSender<Result<(), CmdError>>),
    /// A receiver of events from now on; answered once it is registered.
    Events(Sink, SyncSender<()>),
    Leave(SyncSender<()>),
    /// A data-plane command that needs no answer (publish, advertise...).
    Data(DataCmd),
    /// A subscription's queue for `topic`, and its terms.
    Take(Arc<str>, Arc<SubQueue>),
    /// A subscription is gone.
    Drop(Arc<str>, Weak<SubQueue>),
    /// A publisher of the topic: announced with this payload type, then counted and
    /// advertised to the data plane, in one step (a drop of another publisher of the topic
    /// cannot come between); answered with the announcement's result.
    Publisher {
        topic: Arc<str>,
        mime: String,
        reply: SyncSender<Result<(), CmdError>>,
    },
    /// A publisher of the topic is gone: the last one withdraws and retracts it.
    Withdraw(Arc<str>),
    Stats(SyncSender<DataStats>),
    /// About a shared document.
    Doc(DocRequest),
}

/// The I/O thread's end of the request queue: what [`Requester`]s queued, with a flag that
/// says whether anything may have come since the last look, so that the look every publish
/// makes on its own thread (see [`Core::publish`](crate::reactor::Core::publish)) costs a load
/// when nothing did, not a channel's `try_recv` (about 80 instructions, a fair share of a
/// small message's cost).
pub(crate) struct Requests {
    queue: Receiver<Request>,
    news: Arc<AtomicBool>,
}

impl Requests {
    /// Whether requests may have come since the last look that started: a load, which
    /// changes nothing (see [`take`](Self::take)).
    pub(crate) fn has_news(&self) -> bool {
        self.news.load(Ordering::Acquire)
    }

    /// Starts a look at the queue: `false` if nothing was queued since the last look that
    /// started. Otherwise the caller takes with [`next`](Self::next) until it is empty. A
    /// request queued during that look is taken by it or leaves the flag set for the next.
    pub(crate) fn take(&self) -> bool {
        self.news.load(Ordering::Acquire) && self.news.swap(false, Ordering::Acquire)
    }

    /// The next queued request, or why there is none.
    pub(crate) fn next(&self) -> Result<Request, TryRecvError> {
        self.queue.try_recv()
    }
}

/// A [`Requester`]'s hold of the flag that says requests may have come.
#[derive(Clone)]
struct News(Arc<AtomicBool>);

impl News {
    fn set(&self) {
        self.0.store(true, Ordering::Release);
    }
}

impl Drop for News {
    fn drop(&mut self) {
        self.set();
    }
}

/// Why the I/O thread stopped when the node left as asked (its `leave`, or dropped).
pub(crate) const LEFT: &str = "left the group";

/// What application threads may read without asking the I/O thread.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) view: View,
    pub(crate) hub: Option<HubInfo>,
    pub(crate) is_hub: bool,
    /// The node stopped because no hub runs in the group and it may not start one
    /// ([`NodeBuilder::join_existing`](crate::NodeBuilder::join_existing)).
    pub(crate) no_group: bool,
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

/// What application threads hold of their node's I/O thread: its request queue, its wakeup,
/// and its [`Shared`] state (which says why it stopped, once it has).
#[derive(Clone)]
pub(crate) struct Requester {
    requests: Sender<Request>,
    /// Set after each request is queued (see [`Requests::take`]), and when this handle goes:
    /// declared after `requests`, it is dropped after it, so that the I/O thread's next look
    /// finds the queue disconnected once the last handle is gone.
    news: News,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
    group: Arc<str>,
}

impl Requester {
    /// The application's end of a new node's request queue, and the I/O thread's.
    pub(crate) fn new(waker: Arc<Waker>, shared: Arc<Shared>, group: &str) -> (Self, Requests) {
        let (requests, queue) = mpsc::channel();
        let news = Arc::new(AtomicBool::new(false));
        let requests_end = Requests {
            queue,
            news: Arc::clone(&news),
        };
        let requester = Self {
            requests,
            news: News(news),
            waker,
            shared,
            group: group.into(),
        };
        (requester, requests_end)
    }

    /// What the I/O thread publishes for application threads.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Queues `request` and wakes the I/O thread.
    pub(crate) fn send(&self, request: Request) -> Result<(), DriverError> {
        self.requests.send(request).map_err(|_| self.stopped())?;
        self.news.set();
        self.waker.wake()?;
        Ok(())
    }

    /// Sends the request `make` builds around a reply channel, and waits for the reply.
    pub(crate) fn call<T>(
        &self,
        make: impl FnOnce(SyncSender<T>) -> Request,
    ) -> Result<T, DriverError> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(make(reply))?;
        self.wait(&rx)
    }

    /// Waits up to [`REPLY_TIMEOUT`] for the reply to a request sent before.
    pub(crate) fn wait<T>(&self, rx: &Receiver<T>) -> Result<T, DriverError> {
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => {
                DriverError::Timeout(REPLY_TIMEOUT, "the I/O thread")
            }
            mpsc::RecvTimeoutError::Disconnected => self.stopped(),
        })
    }

    /// A topology command, answered by the I/O thread once the member has taken it.
    pub(crate) fn cmd(&self, cmd: SpokeCmd) -> Result<(), DriverError> {
        Ok(self.call(|reply| Request::Cmd(cmd, reply))??)
    }

    /// Why the I/O thread takes no more requests.
    pub(crate) fn stopped(&self) -> DriverError {
        let s = self.shared.lock();
        if s.no_group {
            return self.no_group();
        }
        let why = s.stopped.clone();
        DriverError::Stopped(why.unwrap_or_else(|| "the I/O thread is gone".into()))
    }

    /// The error of a node that may only join a running group, and found none.
    pub(crate) fn no_group(&self) -> DriverError {
        DriverError::NoGroup {
            group: self.group.to_string(),
        }
    }
}
