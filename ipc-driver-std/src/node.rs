//! The blocking API: a node of a group, and its builder.

use std::borrow::Cow;
use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_proto::data::{DataCmd, Paths};
use ipc_proto::wire::DataStats;
use ipc_proto::{NodeId, SpokeCmd, View};

use crate::data::{ActNow, Mailbox, Outgoing, PublisherOptions, SubQueue, SubscriptionOptions};
use crate::doc::{Doc, DocLink};
use crate::events::{CallbackId, Dispatcher, Events, Sink};
use crate::pubsub::{Bus, Handle, Publisher, Subscription};
use crate::reactor::{Core, Reactor, Setup};
use crate::request::{Request, Requester, Shared, State};
use crate::{DriverError, NodeEvent};
use ipc_driver_core::{EventKinds, HubInfo, NodeConfig, SegmentsInUse, TopicTypes, later, start};
use ipc_os::poll::Waker;
use ipc_proto::names::bus_topic;

/// Configures and starts a [`Node`].
///
/// ```no_run
/// use std::time::Duration;
/// use ipc_driver_std::Node;
///
/// # fn main() -> Result<(), ipc_driver_std::DriverError> {
/// let node = Node::builder("camera")
///     .group("robot")
///     // Declared gone after 1 s of silence (frozen, hung); a heartbeat every 100 ms.
///     .keepalive(Duration::from_secs(1))
///     .heartbeat(Duration::from_millis(100))
///     .join()?;
/// node.announce("frames", "image/x-raw")?;
/// node.subscribe("exposure")?;
/// println!("hub: {:?}, members: {}", node.hub(), node.view().nodes().len());
/// # Ok(()) }
/// ```
#[must_use]
pub struct NodeBuilder {
    config: NodeConfig,
    join_timeout: Option<Duration>,
    join_existing: bool,
    observer: bool,
    sinks: Vec<Sink>,
    dispatcher: Option<Arc<Dispatcher>>,
}

impl fmt::Debug for NodeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeBuilder")
            .field("config", &self.config)
            .field("join_existing", &self.join_existing)
            .field("observer", &self.observer)
            .finish_non_exhaustive()
    }
}

impl NodeBuilder {
    fn new(name: &str) -> Self {
        Self {
            config: NodeConfig::new(name),
            join_timeout: Some(Duration::from_secs(5)),
            join_existing: false,
            observer: false,
            sinks: Vec::new(),
            dispatcher: None,
        }
    }

    ipc_driver_core::node_builder_setters!();

    /// Joins only a group that is running, and never runs its hub (default no). For a
    /// client that reads or writes the group's state but must not keep the group alive by
    /// itself, nor start one by mistake:
    ///
    /// - [`join`](Self::join) fails with [`DriverError::NoGroup`] when no hub runs (nobody
    ///   holds the group's hub lock), instead of starting the group with this node as its
    ///   hub;
    /// - this node never claims the hub (as with [`hub_eligible(false)`](Self::hub_eligible));
    /// - when its hub is gone ([`NodeEvent::HubLost`]), it reconnects like any member and
    ///   waits for another member to take over; if it is not synced with a new hub within the
    ///   [`keepalive`](Self::keepalive) timeout, the node stops: its events end and its calls
    ///   (document patches included) fail with [`DriverError::NoGroup`].
    ///
    /// ```no_run
    /// # use ipc_driver_std::{DriverError, Node};
    /// match Node::builder("probe").group("robot").join_existing(true).join() {
    ///     Ok(node) => println!("the hub is {:?}", node.hub()),
    ///     Err(DriverError::NoGroup { group }) => eprintln!("no group named {group} is running"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<(), DriverError>(())
    /// ```
    pub fn join_existing(mut self, on: bool) -> Self {
        self.join_existing = on;
        self
    }

    /// How long [`join`](Self::join) waits for the group's history; `None` returns at once.
    /// Default 5 s.
    pub fn join_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.join_timeout = timeout;
        self
    }

    /// Calls `f` for every event from the very start; see [`Node::on_event`].
    pub fn on_event(mut self, f: impl FnMut(&NodeEvent) + Send + 'static) -> Self {
        let dispatcher = self.dispatcher.get_or_insert_with(|| {
            let (events, sink) = Events::new(EventKinds::ALL);
            self.sinks.push(sink);
            Arc::new(Dispatcher::new(events))
        });
        dispatcher.add(&self.config.options.name, f);
        self
    }

    /// Joins the group: starts the node's I/O thread, which finds the group's hub or becomes
    /// it, and waits (up to the join timeout) until the node holds the group's history.
    pub fn join(self) -> Result<Node, DriverError> {
        self.start(false)
    }

    /// Joins the group like [`join`](Self::join), with a receiver of the events of `kinds`
    /// from the very start, the node's own join included.
    ///
    /// ```no_run
    /// use ipc_driver_std::{EventKinds, Node, NodeEvent, NodeWithEvents};
    ///
    /// # fn main() -> Result<(), ipc_driver_std::DriverError> {
    /// let NodeWithEvents { node, events } = Node::builder("logger")
    ///     .group("robot")
    ///     .join_with_events(EventKinds::GROUP)?;
    /// for event in events {
    ///     if let NodeEvent::Topology(change) = event {
    ///         println!("{change:?} ({} nodes)", node.view().nodes().len());
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn join_with_events(self, kinds: EventKinds) -> Result<NodeWithEvents, DriverError> {
        self.start_with_events(kinds, false)
    }

    /// Observes the group like [`observe`](Self::observe), with a receiver of the events of
    /// `kinds` from the very start.
    pub fn observe_with_events(self, kinds: EventKinds) -> Result<NodeWithEvents, DriverError> {
        self.start_with_events(kinds, true)
    }

    fn start_with_events(
        mut self,
        kinds: EventKinds,
        observer: bool,
    ) -> Result<NodeWithEvents, DriverError> {
        let (events, sink) = Events::new(kinds);
        self.sinks.push(sink);
        let node = self.start(observer)?;
        Ok(NodeWithEvents { node, events })
    }

    /// Watches the group without joining it: no node record, no topics, never the hub. The
    /// observer appears in nobody's events and in no node list. With a join timeout, fails
    /// with [`DriverError::Timeout`] if no hub answers in time (no such group).
    pub fn observe(self) -> Result<Node, DriverError> {
        self.start(true)
    }

    fn start(mut self, observer: bool) -> Result<Node, DriverError> {
        self.observer = observer;
        let join_existing = self.join_existing && !observer;
        let NodeConfig {
            mut options,
            group,
            dir,
            max_outbox,
            pool_bytes,
        } = self.config;
        if join_existing {
            options.hub_eligible = false;
        }
        #[allow(clippy::disallowed_methods)] // the driver reads the clock
        let now = Instant::now();
        let started = start::<DriverError>(&options, &group, dir.as_deref(), observer, now)?;
        let id = started.id;
        let paths = Paths {
            private: started.private,
            rings: options.rings,
        };
        let waker = Arc::new(Waker::new()?);
        let shared = Arc::new(Shared::default());
        let outgoing = Arc::new(Outgoing::new(pool_bytes));
        let mailbox = Arc::new(Mailbox::new(Arc::clone(&waker)));
        let (requester, requests) = Requester::new(Arc::clone(&waker), Arc::clone(&shared), &group);
        let setup = Setup {
            dir: started.dir,
            member: started.member,
            data_listener: started.data_listener,
            outgoing: Arc::clone(&outgoing),
            mailbox: Arc::clone(&mailbox),
            max_outbox,
            max_frame: options.limits.max_frame,
            max_record: started.max_record,
            rings: options.rings,
            join_existing,
            keepalive: options.keepalive,
        };
        let reactor = Reactor::new(
            setup,
            Arc::clone(&waker),
            requests,
            Arc::clone(&shared),
            self.sinks,
        )?;
        let core = Arc::new(Core::new(reactor));
        let act_now: Arc<dyn ActNow> = core.clone();
        mailbox.act_with(Arc::downgrade(&act_now));
        let handle = Handle {
            requester: requester.clone(),
            core: Arc::clone(&core),
            outgoing,
            paths,
        };
        let thread = std::thread::Builder::new()
            .name(format!("ipc-pubsub-io:{}", options.name))
            .spawn(move || core.run())?;
        let node = Node {
            id,
            name: options.name,
            group,
            requester,
            thread: Some(thread),
            dispatcher: Arc::new(self.dispatcher.map(OnceLock::from).unwrap_or_default()),
            handle,
            mailbox,
        };
        if let Some(timeout) = self.join_timeout {
            node.wait_synced(timeout)?;
        }
        Ok(node)
    }
}

/// A node joined with a receiver of its events from the very start
/// ([`NodeBuilder::join_with_events`]).
#[derive(Debug)]
pub struct NodeWithEvents {
    /// The node.
    pub node: Node,
    /// Its events of the kinds asked for, its own join included.
    pub events: Events,
}

/// A member of a group (or an observer of one), with its own I/O thread.
///
/// Methods may be called from any thread, callbacks included. Commands take effect locally at
/// once and reach the group through the hub; when no hub is reachable they are kept and
/// carried by the node's next introduction, so nothing is lost across hub changes.
///
/// Dropping the node leaves the group gracefully: a goodbye to the hub (and, if this node
/// runs the hub, a goodbye from the hub to every spoke, after it has sequenced this node's
/// own leave), then its threads are joined. Nothing is left behind: no thread, fd or socket.
pub struct Node {
    id: NodeId,
    name: String,
    group: String,
    requester: Requester,
    thread: Option<JoinHandle<()>>,
    /// Shared with the node's documents, whose observers it runs.
    dispatcher: Arc<OnceLock<Arc<Dispatcher>>>,
    handle: Handle,
    mailbox: Arc<Mailbox>,
}

impl TopicTypes for Node {
    fn declared_type(&self, publisher: NodeId, topic: &str) -> Option<Cow<'_, str>> {
        Self::declared_type(self, publisher, topic).map(Cow::Owned)
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts configuring a node called `name` (names need not be unique).
    pub fn builder(name: &str) -> NodeBuilder {
        NodeBuilder::new(name)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group as this node sees it now.
    pub fn view(&self) -> View {
        self.requester.shared().lock().view.clone()
    }

    /// The mime `publisher` declared for `topic` in this node's view, without cloning the view
    /// (what [`Message::pod`](crate::Message::pod) and
    /// [`Message::decode`](crate::Message::decode) check).
    pub fn declared_type(&self, publisher: NodeId, topic: &str) -> Option<String> {
        let shared = self.requester.shared().lock();
        let declared = shared.view.declared_type(publisher, topic)?;
        Some(declared.into_owned())
    }

    /// The hub this node follows, while synced with one.
    pub fn hub(&self) -> Option<HubInfo> {
        self.requester.shared().lock().hub
    }

    /// Whether this node runs the group's hub.
    pub fn is_hub(&self) -> bool {
        self.requester.shared().lock().is_hub
    }

    /// Waits until the node holds a hub's history; returns that hub.
    pub fn wait_synced(&self, timeout: Duration) -> Result<HubInfo, DriverError> {
        self.wait_until(timeout, "the group's history", |s| s.hub)
    }

    /// Waits until `pred` holds for the node's view; returns the view.
    pub fn wait_view(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&View) -> bool,
    ) -> Result<View, DriverError> {
        self.wait_until(timeout, "a view", |s| pred(&s.view).then(|| s.view.clone()))
    }

    fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &'static str,
        mut f: impl FnMut(&State) -> Option<T>,
    ) -> Result<T, DriverError> {
        let deadline = later(Instant::now(), timeout);
        let mut s = self.requester.shared().lock();
        loop {
            if let Some(t) = f(&s) {
                return Ok(t);
            }
            if s.no_group {
                return Err(self.requester.no_group());
            }
            if let Some(why) = &s.stopped {
                return Err(DriverError::Stopped(why.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(DriverError::Timeout(timeout, what));
            }
            s = self
                .requester
                .shared()
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Declares in the group's topology that this node publishes `topic`, with payload type
    /// `mime` (or changes its type). Topology only: it moves no data. To send messages, use
    /// [`publisher`](Self::publisher), which announces the topic itself; `announce` alone
    /// suits a node that describes the group (a bridge, a test, a tool).
    pub fn announce(&self, topic: &str, mime: &str) -> Result<(), DriverError> {
        self.cmd(SpokeCmd::Announce {
            topic: topic.into(),
            mime: mime.into(),
        })
    }

    /// Withdraws this node's [`announce`](Self::announce) of `topic` from the topology.
    pub fn retract(&self, topic: &str) -> Result<(), DriverError> {
        self.cmd(SpokeCmd::Retract {
            topic: topic.into(),
        })
    }

    /// Declares in the group's topology that this node subscribes to `topic`. Topology only:
    /// no message reaches this node by it. To receive messages, use
    /// [`subscription`](Self::subscription), which subscribes itself.
    pub fn subscribe(&self, topic: &str) -> Result<(), DriverError> {
        self.cmd(SpokeCmd::Subscribe {
            topic: topic.into(),
        })
    }

    /// Withdraws this node's [`subscribe`](Self::subscribe) to `topic` from the topology.
    pub fn unsubscribe(&self, topic: &str) -> Result<(), DriverError> {
        self.cmd(SpokeCmd::Unsubscribe {
            topic: topic.into(),
        })
    }

    /// A receiver of every event of this node from now on. The current state is in
    /// [`view`](Self::view); for every event from the start use
    /// [`NodeBuilder::join_with_events`].
    pub fn events(&self) -> Events {
        self.events_of(EventKinds::ALL)
    }

    /// A receiver of the events of `kinds` from now on: `EventKinds::GROUP` for the group's
    /// changes alone, undisturbed by a busy document's patches.
    pub fn events_of(&self, kinds: EventKinds) -> Events {
        let (events, sink) = Events::new(kinds);
        // Registered before this returns: "from now on" holds for the next event.
        if self
            .requester
            .call(|reply| Request::Events(sink, reply))
            .is_err()
        {
            // The node has stopped: the receiver ends at once.
        }
        events
    }

    /// Calls `f` for every event from now on, on this node's dispatch thread (started with
    /// the first callback): never on its I/O thread, and with no lock of the node held, so `f`
    /// may call any method of the node (subscribe in a join callback, say) or block. A slow
    /// callback delays the other callbacks, never the node's I/O.
    pub fn on_event(&self, f: impl FnMut(&NodeEvent) + Send + 'static) -> CallbackId {
        let dispatcher = self.dispatcher.get_or_init(|| {
            let (events, sink) = Events::new(EventKinds::ALL);
            // Registered before this returns (see `events_of`).
            let _ = self.requester.call(|reply| Request::Events(sink, reply));
            Arc::new(Dispatcher::new(events))
        });
        dispatcher.add(&self.name, f)
    }

    /// Removes a callback; `false` if it was not registered.
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        self.dispatcher.get().is_some_and(|d| d.remove(id))
    }

    /// A data handle that sends messages on `topic`: it announces the topic (payload type
    /// `mime`) in the topology, and the node retracts it once its last publisher of the topic
    /// is dropped (several may send on one topic, each with its own options; the topic is
    /// announced with the type of the latest one made, which stays if that one goes first).
    /// Default options.
    pub fn publisher(&self, topic: &str, mime: &str) -> Result<Publisher, DriverError> {
        self.publisher_with(topic, mime, PublisherOptions::default())
    }

    /// A publisher of `topic` with `options`.
    pub fn publisher_with(
        &self,
        topic: &str,
        mime: &str,
        options: PublisherOptions,
    ) -> Result<Publisher, DriverError> {
        Publisher::new(self.handle.clone(), topic, mime, options)
    }

    /// A data handle that receives `topic`'s messages, queued as `options` say: it subscribes
    /// in the topology and unsubscribes when dropped.
    pub fn subscription(
        &self,
        topic: &str,
        options: SubscriptionOptions,
    ) -> Result<Subscription, DriverError> {
        let queue = SubQueue::new(topic, options, Arc::clone(&self.mailbox));
        Subscription::new(self.handle.clone(), topic, queue)
    }

    /// Joins bus channel `name`: every member's message reaches every other member, never the
    /// sender (see [`Bus`]).
    pub fn bus(&self, name: &str, options: SubscriptionOptions) -> Result<Bus, DriverError> {
        let topic = bus_topic(name);
        let subscription = self.subscription(&topic, options)?;
        let publisher = self.publisher(&topic, "application/x-ipc-pubsub-bus")?;
        Ok(Bus::new(publisher, subscription))
    }

    /// This node's data-link counters: per subscriber what it published, per publisher what it
    /// received.
    pub fn data_stats(&self) -> Result<DataStats, DriverError> {
        self.requester.call(Request::Stats)
    }

    /// Replaces this node's application counters: named figures of the application's own
    /// (a bridge's messages forwarded, dropped, bytes...) that `ipc-pubsub status` shows for
    /// this node, read from its data address like its data-link counters. They stay as set
    /// until the next call; an empty slice removes them. At most 32 counters, names of 1 to 64
    /// bytes of printable ASCII; beyond that the call fails with [`DriverError::Cmd`] and the
    /// counters set before stay. An observer has no counters to show: the call is ignored.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), ipc_driver_std::DriverError> {
    /// let node = ipc_driver_std::Node::builder("relay").group("demo").join()?;
    /// let (forwarded, dropped) = (1200, 3);
    /// node.set_counters(&[("forwarded", forwarded), ("dropped", dropped)])?;
    /// // `ipc-pubsub status --group demo` now lists forwarded 1200 and dropped 3 for "relay".
    /// # Ok(()) }
    /// ```
    pub fn set_counters(&self, counters: &[(&str, u64)]) -> Result<(), DriverError> {
        self.send(Request::Data(DataCmd::set_counters(counters)?))
    }

    /// This node's publishing memory in use: pool segments lent to subscribers (or loans) and
    /// not back yet, and fresh segments not sent yet. Both return to 0 once every subscriber
    /// has dropped what it received, or has gone.
    pub fn segments_in_use(&self) -> SegmentsInUse {
        self.handle.outgoing.in_use()
    }

    /// Bytes of pool segments this node has created (they are reused; the pool never shrinks
    /// below what it reached, and never grows past [`NodeBuilder::pool_bytes`]).
    pub fn pool_bytes(&self) -> u64 {
        self.handle.outgoing.pool_bytes()
    }

    /// Opens the shared document `name` of the group (see [`Doc`]): if the group has it, its
    /// value replaces `default` once the hub's document host answers
    /// ([`Doc::wait_opened`]); if not, the host creates it from `default`. A node may open
    /// several documents, each once at a time.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let node = ipc_driver_std::Node::builder("a").group("demo").join()?;
    /// let doc = node.open_doc("settings", serde_json::json!({"speed": 1}))?;
    /// doc.wait_opened(std::time::Duration::from_secs(5))?;
    /// println!("{}", doc.snapshot().value);
    /// # Ok(()) }
    /// ```
    pub fn open_doc(&self, name: &str, default: serde_json::Value) -> Result<Doc, DriverError> {
        let link = DocLink {
            node: self.name.clone(),
            requester: self.requester.clone(),
            dispatcher: Arc::clone(&self.dispatcher),
        };
        Doc::open(link, name, default)
    }

    /// Leaves the group gracefully and waits for the node's threads to finish. Dropping the
    /// node does the same.
    pub fn leave(mut self) -> Result<(), DriverError> {
        self.shutdown()
    }

    fn cmd(&self, cmd: SpokeCmd) -> Result<(), DriverError> {
        self.requester.cmd(cmd)
    }

    fn send(&self, request: Request) -> Result<(), DriverError> {
        self.requester.send(request)
    }

    fn shutdown(&mut self) -> Result<(), DriverError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let (reply, rx) = mpsc::sync_channel(1);
        let sent = self.send(Request::Leave(reply));
        if sent.is_ok() {
            let _ = self.requester.wait(&rx);
        }
        let joined = thread.join();
        if let Some(d) = self.dispatcher.get() {
            d.join();
        }
        if joined.is_err() {
            return Err(DriverError::Stopped("the I/O thread panicked".into()));
        }
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
