//! The node as an application sees it from its callbacks: commands, state, and its builder.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use calloop::ping::Ping;
use ipc_driver_core::{LEAVE_DEADLINE, Links};
use ipc_proto::data::{
    Admit, DataCmd, DataPlane, HoldBack, HoldInput, HoldOutput, Outbound, Paths, Payload,
    PublisherOptions, Room, SegmentId, SendMode, SubscriptionOptions,
};
use ipc_proto::doc::{DocError, Observed, PatchId, Scope};
use ipc_proto::names::bus_topic;
use ipc_proto::wire::DataStats;
use ipc_proto::{Member, MemberCmd, MemberInput, NodeId, SpokeCmd, View};
use tracing::{debug, warn};

use crate::data::{self, Loan, LoanKind, Mailbox, Outgoing, PooledLoan};
use crate::{DocSnapshot, DriverError, HubInfo, NodeEvent, ObserverId, SegmentsInUse};
use ipc_driver_core::{fresh_loan, inline_buffer};

/// A command sent from any thread through a [`NodeHandle`].
#[derive(Debug)]
pub(crate) enum Request {
    Spoke(SpokeCmd),
    OpenPublisher {
        topic: String,
        mime: String,
        options: PublisherOptions,
    },
    ClosePublisher(String),
    OpenSubscription {
        topic: String,
        options: SubscriptionOptions,
    },
    CloseSubscription(String),
    Publish {
        topic: String,
        data: Vec<u8>,
    },
    Send(Loan),
    OpenDoc {
        name: String,
        default: serde_json::Value,
    },
    PatchDoc {
        name: String,
        update: serde_json::Value,
    },
    CloseDoc(String),
    Leave,
}

impl Request {
    fn name(&self) -> &'static str {
        match self {
            Self::Spoke(c) => c.name(),
            Self::OpenPublisher { .. } => "OpenPublisher",
            Self::ClosePublisher(_) => "ClosePublisher",
            Self::OpenSubscription { .. } => "OpenSubscription",
            Self::CloseSubscription(_) => "CloseSubscription",
            Self::Publish { .. } => "Publish",
            Self::Send(_) => "Send",
            Self::OpenDoc { .. } => "OpenDoc",
            Self::PatchDoc { .. } => "PatchDoc",
            Self::CloseDoc(_) => "CloseDoc",
            Self::Leave => "Leave",
        }
    }
}

/// Queues commands for a node's loop and pings it.
#[derive(Clone, Debug)]
pub(crate) struct RequestSender {
    tx: mpsc::Sender<Request>,
    ping: Ping,
}

impl RequestSender {
    pub(crate) fn new(tx: mpsc::Sender<Request>, ping: Ping) -> Self {
        Self { tx, ping }
    }

    /// `Err` once the node's source is gone.
    fn send(&self, r: Request) -> Result<(), mpsc::SendError<Request>> {
        self.tx.send(r)?;
        self.ping.ping();
        Ok(())
    }
}

/// Sends commands to a node from any thread (or from code that has no `&mut Node`): they
/// are carried out on the node's loop, in order; failures come back as
/// [`NodeEvent::Failed`]. Cheap to clone.
#[derive(Clone)]
pub struct NodeHandle {
    tx: RequestSender,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle").finish_non_exhaustive()
    }
}

impl NodeHandle {
    fn push(&self, r: Request) -> Result<(), DriverError> {
        self.tx.send(r).map_err(|_| DriverError::Left)
    }

    /// See [`Node::announce`].
    pub fn announce(&self, topic: &str, mime: &str) -> Result<(), DriverError> {
        self.push(Request::Spoke(SpokeCmd::Announce {
            topic: topic.into(),
            mime: mime.into(),
        }))
    }

    /// See [`Node::retract`].
    pub fn retract(&self, topic: &str) -> Result<(), DriverError> {
        self.push(Request::Spoke(SpokeCmd::Retract {
            topic: topic.into(),
        }))
    }

    /// See [`Node::subscribe`].
    pub fn subscribe(&self, topic: &str) -> Result<(), DriverError> {
        self.push(Request::Spoke(SpokeCmd::Subscribe {
            topic: topic.into(),
        }))
    }

    /// See [`Node::unsubscribe`].
    pub fn unsubscribe(&self, topic: &str) -> Result<(), DriverError> {
        self.push(Request::Spoke(SpokeCmd::Unsubscribe {
            topic: topic.into(),
        }))
    }

    /// See [`Node::open_publisher`].
    pub fn open_publisher(
        &self,
        topic: &str,
        mime: &str,
        options: PublisherOptions,
    ) -> Result<(), DriverError> {
        self.push(Request::OpenPublisher {
            topic: topic.into(),
            mime: mime.into(),
            options,
        })
    }

    /// See [`Node::close_publisher`].
    pub fn close_publisher(&self, topic: &str) -> Result<(), DriverError> {
        self.push(Request::ClosePublisher(topic.into()))
    }

    /// See [`Node::open_subscription`].
    pub fn open_subscription(
        &self,
        topic: &str,
        options: SubscriptionOptions,
    ) -> Result<(), DriverError> {
        self.push(Request::OpenSubscription {
            topic: topic.into(),
            options,
        })
    }

    /// See [`Node::close_subscription`].
    pub fn close_subscription(&self, topic: &str) -> Result<(), DriverError> {
        self.push(Request::CloseSubscription(topic.into()))
    }

    /// Publishes a copy of `data` on `topic` (see [`Node::publish`]).
    pub fn publish(&self, topic: &str, data: impl Into<Vec<u8>>) -> Result<(), DriverError> {
        self.push(Request::Publish {
            topic: topic.into(),
            data: data.into(),
        })
    }

    /// A writable buffer for a message of `len` bytes on `topic`, made on this thread: inline
    /// up to [`DEFAULT_INLINE_MAX`](crate::DEFAULT_INLINE_MAX) bytes, a fresh
    /// memfd above (the node's pool belongs to its loop; use [`Node::loan`] there).
    pub fn loan(&self, topic: &str, len: usize) -> Result<Loan, DriverError> {
        let kind = if len <= ipc_proto::data::DEFAULT_INLINE_MAX {
            LoanKind::Inline(vec![0; len])
        } else {
            fresh_loan(len)?
        };
        Ok(Loan {
            topic: topic.into(),
            len,
            kind,
        })
    }

    /// Sends a loan as the next message of its topic.
    pub fn send(&self, loan: Loan) -> Result<(), DriverError> {
        self.push(Request::Send(loan))
    }

    /// Opens the shared document `name` (see [`Node::open_doc`]);
    /// [`DocEvent::Opened`](crate::DocEvent::Opened) follows.
    pub fn open_doc(&self, name: &str, default: serde_json::Value) -> Result<(), DriverError> {
        self.push(Request::OpenDoc {
            name: name.into(),
            default,
        })
    }

    /// Patches the document `name` (see [`Node::patch_doc`]). The answer comes as
    /// [`DocEvent::Accepted`](crate::DocEvent::Accepted) or
    /// [`DocEvent::Rejected`](crate::DocEvent::Rejected) with the patch's ticket, which only
    /// the loop learns: call [`Node::patch_doc`] there to match answers to patches. An update
    /// refused locally comes back as [`NodeEvent::Failed`].
    pub fn patch_doc(&self, name: &str, update: serde_json::Value) -> Result<(), DriverError> {
        self.push(Request::PatchDoc {
            name: name.into(),
            update,
        })
    }

    /// Closes the document `name` (see [`Node::close_doc`]).
    pub fn close_doc(&self, name: &str) -> Result<(), DriverError> {
        self.push(Request::CloseDoc(name.into()))
    }

    /// Leaves the group (see [`Node::leave`]).
    pub fn leave(&self) -> Result<(), DriverError> {
        self.push(Request::Leave)
    }
}

/// One topic this node publishes.
#[derive(Debug)]
struct Publishing {
    /// The topic's name, shared with its loans and publish commands: a publish copies none.
    topic: Arc<str>,
    /// The payload type the topic was announced with.
    mime: String,
    options: PublisherOptions,
}

/// A node as its callback sees it: the group's state and every command. Commands take effect
/// at once locally and reach the sockets when the callback returns (or, from elsewhere,
/// before the loop sleeps); none of them blocks.
pub struct Node {
    pub(crate) member: Member,
    /// The node's sockets and rings: its own, so that a publish puts its inline messages
    /// straight into the rings ([`Member::publish_direct`]).
    pub(crate) io: Links<SegmentId>,
    pub(crate) group: String,
    pub(crate) name: String,
    pub(crate) outgoing: Outgoing,
    pub(crate) mailbox: Arc<Mailbox>,
    /// What this node publishes, by topic: looked up at each publish (a `BTreeMap`, whose
    /// lookup among a node's few topics costs a fraction of a SipHash of the name).
    publishing: BTreeMap<String, Publishing>,
    /// Which publishes go now, which wait for full `Block` subscribers (holding their payloads
    /// here) and which are refused: the protocol decides.
    hold: HoldBack<Payload>,
    /// Topics with held messages whose room event is owed once they are all out.
    owed_room: Vec<String>,
    /// Each open subscription's [`SubscriptionOptions::spin`], by topic.
    spins: HashMap<String, Option<Duration>>,
    /// What they add up to ([`Self::spin`]), kept as they open and close: a spinning loop
    /// asks for it after every message.
    spin: Option<Duration>,
    /// Document path observers, by id: the document and what the observer last saw.
    observers: BTreeMap<ObserverId, (String, Observed)>,
    next_observer: u64,
    /// Whether the group is open only to this uid and the links take rings: how
    /// `SendMode::Auto` sends a payload.
    paths: Paths,
    pub(crate) tx: RequestSender,
    /// Leaving, and when to give up flushing.
    pub(crate) leaving: Option<Instant>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id())
            .field("name", &self.name)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

#[allow(clippy::disallowed_methods)] // the driver reads the clock
fn now() -> Instant {
    Instant::now()
}

impl Node {
    #[allow(clippy::too_many_arguments)] // one call, in `NodeSource::start`
    pub(crate) fn new(
        member: Member,
        io: Links<SegmentId>,
        group: String,
        name: String,
        pool_bytes: u64,
        paths: Paths,
        mailbox: Arc<Mailbox>,
        tx: RequestSender,
    ) -> Self {
        Self {
            member,
            io,
            group,
            name,
            outgoing: Outgoing::new(pool_bytes),
            mailbox,
            publishing: BTreeMap::new(),
            hold: HoldBack::new(),
            owed_room: Vec::new(),
            spins: HashMap::new(),
            spin: None,
            observers: BTreeMap::new(),
            next_observer: 0,
            paths,
            tx,
            leaving: None,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.member.id()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The group as this node knows it.
    pub fn view(&self) -> &View {
        self.member.view()
    }

    /// The hub this node is synced with.
    pub fn hub(&self) -> Option<HubInfo> {
        HubInfo::of(&self.member)
    }

    /// Whether this node runs the group's hub.
    pub fn is_hub(&self) -> bool {
        self.member.is_hub()
    }

    /// Whether the node is leaving or has left.
    pub fn is_leaving(&self) -> bool {
        self.leaving.is_some()
    }

    /// A handle for sending commands from other threads.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            tx: self.tx.clone(),
        }
    }

    /// This node's data-link counters: per subscriber what it published, per publisher what it
    /// received.
    pub fn data_stats(&self) -> DataStats {
        self.member.data().map(|d| d.stats()).unwrap_or_default()
    }

    /// Replaces this node's application counters: named figures of the application's own
    /// (messages forwarded, dropped, bytes...) that `ipc-pubsub status` shows for this node,
    /// read from its data address like its data-link counters. They stay as set until the
    /// next call; an empty slice removes them. At most 32 counters, names of 1 to 64 bytes of
    /// printable ASCII; beyond that, or on an observer, the call fails with
    /// [`DriverError::Cmd`] and the counters set before stay.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ipc_driver_calloop::{NodeEvent, NodeSource};
    /// let mut event_loop: calloop::EventLoop<u64> = calloop::EventLoop::try_new()?;
    /// let mut source = NodeSource::builder("relay").group("demo").join()?;
    /// source.node().set_counters(&[("forwarded", 0)])?;
    /// event_loop.handle().insert_source(source, |event, node, forwarded| {
    ///     if let NodeEvent::Message(_) = event {
    ///         *forwarded += 1;
    ///         // `ipc-pubsub status --group demo` shows it for "relay".
    ///         let _ = node.set_counters(&[("forwarded", *forwarded)]);
    ///     }
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn set_counters(&mut self, counters: &[(&str, u64)]) -> Result<(), DriverError> {
        self.cmd(MemberCmd::Data(DataCmd::set_counters(counters)?))
    }

    /// Pool segments lent out (to loans or subscribers) and fresh segments not yet released:
    /// both return to 0 once every subscriber has dropped what it received, or has gone.
    pub fn segments_in_use(&self) -> SegmentsInUse {
        self.outgoing.in_use()
    }

    /// Bytes of pool segments this node has created.
    pub fn pool_bytes(&self) -> u64 {
        self.outgoing.pool_bytes()
    }

    // ---- shared documents ----

    /// Opens the shared document `name`: the group's value replaces `default` once the
    /// hub's document host answers ([`DocEvent::Opened`](crate::DocEvent::Opened)); a document the group does not have
    /// is created from `default`. Until then [`doc`](Self::doc) shows `default`.
    pub fn open_doc(&mut self, name: &str, default: serde_json::Value) -> Result<(), DriverError> {
        self.check_doc_cmd()?;
        Ok(self.member.open_doc(now(), name, default)?)
    }

    /// Applies `update` (MongoDB update operators) to the local value at once and sends it to
    /// the host; never blocks. The answer comes as
    /// [`DocEvent::Accepted`](crate::DocEvent::Accepted) or
    /// [`DocEvent::Rejected`](crate::DocEvent::Rejected) with the ticket returned. An invalid update is refused here, with an
    /// error naming the operator and the path.
    pub fn patch_doc(
        &mut self,
        name: &str,
        update: &serde_json::Value,
    ) -> Result<PatchId, DriverError> {
        self.check_doc_cmd()?;
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Ok(self.member.patch_doc(now(), name, update, wall_ms)?)
    }

    /// Closes the document `name`; its unanswered patches get no answer.
    pub fn close_doc(&mut self, name: &str) -> Result<(), DriverError> {
        Ok(self.member.close_doc(now(), name)?)
    }

    /// A document's snapshot: the host's version it builds on (`None` until the host
    /// answered) and the local value (with this node's unanswered patches applied); `None` if
    /// it is not open.
    pub fn doc(&self, name: &str) -> Option<DocSnapshot<&serde_json::Value>> {
        let docs = self.member.docs();
        Some(DocSnapshot {
            version: docs.version(name),
            value: docs.value(name)?,
        })
    }

    /// Observes `path` of the open document `name` (dotted, array indices included; `""` for
    /// the whole document): [`NodeEvent::DocObserved`] comes each time the value there
    /// changes, whether by a local patch, another node's, a rejection or a new host's state.
    pub fn observe_doc(&mut self, name: &str, path: &str) -> Result<ObserverId, DriverError> {
        let snapshot = self.doc(name).ok_or_else(|| DocError::NotOpen {
            name: name.to_string(),
        })?;
        let observed = Observed::new(path, snapshot.value)?;
        self.next_observer += 1;
        let id = ObserverId(self.next_observer);
        self.observers.insert(id, (name.to_string(), observed));
        Ok(id)
    }

    /// Stops an observer; whether it was there.
    pub fn unobserve_doc(&mut self, id: ObserverId) -> bool {
        self.observers.remove(&id).is_some()
    }

    /// The observers of `name` that a change of `scope` fired, with their values now.
    pub(crate) fn observed(&mut self, name: &str, scope: &Scope) -> Vec<NodeEvent> {
        let Some(value) = self.member.docs().value(name) else {
            return Vec::new();
        };
        (self.observers.iter_mut())
            .filter(|(_, (doc, _))| doc == name)
            .filter_map(|(&observer, (doc, o))| {
                let value = o.update(scope, value)?.cloned();
                Some(NodeEvent::DocObserved {
                    doc: doc.clone(),
                    observer,
                    value,
                })
            })
            .collect()
    }

    fn check_doc_cmd(&self) -> Result<(), DriverError> {
        if self.leaving.is_some() {
            return Err(DriverError::Left);
        }
        Ok(())
    }

    fn spoke(&mut self, cmd: SpokeCmd) -> Result<(), DriverError> {
        self.cmd(MemberCmd::Spoke(cmd))
    }

    fn cmd(&mut self, cmd: MemberCmd) -> Result<(), DriverError> {
        if self.leaving.is_some() {
            return Err(DriverError::Left);
        }
        Ok(self.member.handle(now(), MemberInput::Cmd(cmd))?)
    }

    /// Declares in the group's topology that this node publishes `topic`, with payload type
    /// `mime` (or changes its type). Topology only: it moves no data. To send messages, use
    /// [`open_publisher`](Self::open_publisher), which announces the topic itself.
    pub fn announce(&mut self, topic: &str, mime: &str) -> Result<(), DriverError> {
        self.spoke(SpokeCmd::Announce {
            topic: topic.into(),
            mime: mime.into(),
        })
    }

    /// Stops publishing `topic` in the topology.
    pub fn retract(&mut self, topic: &str) -> Result<(), DriverError> {
        self.spoke(SpokeCmd::Retract {
            topic: topic.into(),
        })
    }

    /// Declares in the group's topology that this node subscribes to `topic`. Topology only:
    /// no message reaches this node by it. To receive messages, use
    /// [`open_subscription`](Self::open_subscription), which subscribes itself.
    pub fn subscribe(&mut self, topic: &str) -> Result<(), DriverError> {
        self.spoke(SpokeCmd::Subscribe {
            topic: topic.into(),
        })
    }

    /// Unsubscribes from `topic` in the topology.
    pub fn unsubscribe(&mut self, topic: &str) -> Result<(), DriverError> {
        self.spoke(SpokeCmd::Unsubscribe {
            topic: topic.into(),
        })
    }

    /// Starts publishing messages on `topic` (announced with payload type `mime`). A node
    /// publishes a topic once: opening it again replaces its options and type, and one
    /// [`close_publisher`](Self::close_publisher) ends it.
    pub fn open_publisher(
        &mut self,
        topic: &str,
        mime: &str,
        options: PublisherOptions,
    ) -> Result<(), DriverError> {
        self.announce(topic, mime)?;
        self.cmd(MemberCmd::Data(DataCmd::Advertise {
            topic: topic.into(),
        }))?;
        self.publishing
            .entry(topic.into())
            .and_modify(|p| {
                p.options = options.clone();
                p.mime = mime.into();
            })
            .or_insert(Publishing {
                topic: topic.into(),
                mime: mime.into(),
                options,
            });
        Ok(())
    }

    /// The payload type this node opened its publisher of `topic` with, if it did.
    pub(crate) fn publishing_mime(&self, topic: &str) -> Option<&str> {
        self.publishing.get(topic).map(|p| p.mime.as_str())
    }

    /// Stops publishing messages on `topic`: messages still held for full subscribers go out
    /// now (dropped for those still full), then the topic is retracted.
    pub fn close_publisher(&mut self, topic: &str) -> Result<(), DriverError> {
        if self.publishing.remove(topic).is_none() {
            return Err(DriverError::NotPublishing(topic.into()));
        }
        self.hold.handle(now(), HoldInput::Forget { topic });
        self.drain_hold();
        self.cmd(MemberCmd::Data(DataCmd::Withdraw {
            topic: topic.into(),
        }))?;
        // No room to count any more: the hold-back forgets the topic.
        self.sync_room(now(), topic);
        self.retract(topic)
    }

    /// Receives the messages of `topic` (as [`NodeEvent::Message`]) on `options`' terms:
    /// its `depth` bounds the pooled messages this node holds at once, and with `Block` the
    /// publishers wait for room (up to its timeout) instead of dropping. Each publisher's
    /// messages come in order, and those that will not come are told in their place as
    /// [`NodeEvent::Lost`] (dropped by a policy, lost with a link or this node's expulsion).
    ///
    /// With [`SubscriptionOptions::spin`], after a turn of the loop that delivered messages,
    /// the node's source polls its rings for the next message for up to that long (the
    /// longest spin of the node's subscriptions) before it lets the loop sleep, and again
    /// after each message it finds: publishers push without waking the loop, and a message
    /// reaches the callback within a microsecond or so instead of a wakeup's tens. The cost is
    /// the loop's thread, busy for up to `spin` after each message. Meanwhile the node serves
    /// its sockets, timers and commands every few microseconds; the loop's other sources wait
    /// until the spin ends: after `spin` without a message, or at most `spin` or 1 ms in all
    /// per turn, whichever is longer.
    ///
    /// Without (`None`, the default), the same for up to 10 µs
    /// ([`RECV_SPIN`](ipc_driver_core::RECV_SPIN)) and only while that finds messages: after
    /// a spin in vain the loop sleeps after its turns, trying again once in 16 turns that
    /// delivered messages, so a sparse stream or an idle node costs no polling (at most one
    /// 10 µs spin per 16 messages); and on, up to 100 µs after the last message
    /// ([`WRITING_SPIN`](ipc_driver_core::WRITING_SPIN)), while a publisher says it fills a
    /// pooled message for this node, again only while that pays. `spin(Duration::ZERO)`
    /// never polls: the loop sleeps after every turn. The loop serves all the node's
    /// subscriptions and polls as long as the most eager of them asks.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use ipc_driver_calloop::{Node, SubscriptionOptions};
    /// # fn f(node: &mut Node) -> Result<(), ipc_driver_calloop::DriverError> {
    /// // Control messages at a high rate: poll for the next one for up to 50 µs.
    /// node.open_subscription(
    ///     "robot/joints",
    ///     SubscriptionOptions::default().spin(Duration::from_micros(50)),
    /// )?;
    /// # Ok(()) }
    /// ```
    pub fn open_subscription(
        &mut self,
        topic: &str,
        options: SubscriptionOptions,
    ) -> Result<(), DriverError> {
        self.cmd(MemberCmd::Data(DataCmd::Take {
            topic: topic.into(),
            terms: options.terms(),
        }))?;
        self.spins.insert(topic.into(), options.spin);
        self.spin = eagerest(self.spins.values().copied());
        self.subscribe(topic)
    }

    /// Stops receiving the messages of `topic`.
    pub fn close_subscription(&mut self, topic: &str) -> Result<(), DriverError> {
        self.cmd(MemberCmd::Data(DataCmd::Leave {
            topic: topic.into(),
        }))?;
        self.spins.remove(topic);
        self.spin = eagerest(self.spins.values().copied());
        self.unsubscribe(topic)
    }

    /// How long the source polls the rings for the next message before the loop sleeps, as
    /// the most eager of its subscriptions asks: the longest spin of their own; else `None`
    /// (the driver's choice, [`RECV_SPIN`](ipc_driver_core::RECV_SPIN) while it pays) if one
    /// leaves it to the driver or there is none; else zero (all said never). A spin of its
    /// own, however short, wins over the driver's choice, and with it the polling for a
    /// publisher's `writing` hint goes (a subscription that asks for a spin gets that one).
    pub(crate) fn spin(&self) -> Option<Duration> {
        self.spin
    }

    /// Joins bus channel `name`: every member's message reaches every other member, never the
    /// sender. Messages arrive as [`NodeEvent::Message`] on topic
    /// [`bus_topic(name)`](crate::bus_topic).
    pub fn join_bus(
        &mut self,
        name: &str,
        options: SubscriptionOptions,
    ) -> Result<(), DriverError> {
        let topic = bus_topic(name);
        self.open_subscription(&topic, options)?;
        self.open_publisher(
            &topic,
            "application/x-ipc-pubsub-bus",
            PublisherOptions::default(),
        )
    }

    /// Leaves bus channel `name`.
    pub fn leave_bus(&mut self, name: &str) -> Result<(), DriverError> {
        let topic = bus_topic(name);
        self.close_publisher(&topic)?;
        self.close_subscription(&topic)
    }

    /// Sends `data` to every other member of bus channel `name`.
    pub fn bus_send(&mut self, name: &str, data: &[u8]) -> Result<(), DriverError> {
        self.publish(&bus_topic(name), data)
    }

    /// Publishes a copy of `data` on `topic` (opened with [`open_publisher`]).
    ///
    /// Never blocks. When a `Block` subscriber is full, the message waits in this node until
    /// it has room or its timeout passes (then it is dropped for that subscriber only); when
    /// [`MAX_HELD`](crate::MAX_HELD) messages of the topic wait already, this fails with
    /// [`DriverError::Full`], and [`NodeEvent::Room`] says when to try again.
    ///
    /// [`open_publisher`]: Self::open_publisher
    pub fn publish(&mut self, topic: &str, data: &[u8]) -> Result<(), DriverError> {
        let (name, mode) = self.route(topic, data.len())?;
        // Refused before a pool slot or a memfd is taken and written.
        self.may_send(&name)?;
        if mode == SendMode::Inline {
            // Borrowed for the publish: copied straight into the rings and records that
            // carry it (or into a buffer of its own if it must wait for room).
            self.publish_payload(&name, Outbound::Inline(data));
            return Ok(());
        }
        let loan = self.loan_for(name, mode, data.len(), Some(data))?;
        self.send_checked(loan)
    }

    /// A writable buffer of `len` bytes for the next message of `topic`, sent without a copy
    /// by [`send`](Self::send): a pool segment (groups private to this uid), a fresh memfd
    /// (groups opened to others, or a full pool), or a plain buffer for small payloads, as the
    /// topic's [`PublisherOptions`] choose.
    pub fn loan(&mut self, topic: &str, len: usize) -> Result<Loan, DriverError> {
        self.loan_of(topic, len, None)
    }

    /// A loan of `len` bytes holding `data` (of that length) if given, else zeroes: an inline
    /// one is a copy of `data`, not zeroes written over.
    fn loan_of(
        &mut self,
        topic: &str,
        len: usize,
        data: Option<&[u8]>,
    ) -> Result<Loan, DriverError> {
        let (name, mode) = self.route(topic, len)?;
        self.loan_for(name, mode, len, data)
    }

    /// The name `topic` is published under, and how a payload of `len` bytes travels on it
    /// (refused: a topic not published, an inline payload over the topic's `inline_max`).
    fn route(&self, topic: &str, len: usize) -> Result<(Arc<str>, SendMode), DriverError> {
        let p =
            (self.publishing.get(topic)).ok_or_else(|| DriverError::NotPublishing(topic.into()))?;
        let mode = p.options.mode_for(len, self.paths);
        let max = p.options.inline_max;
        if mode == SendMode::Inline && len > max {
            return Err(DriverError::TooLarge { len, max });
        }
        Ok((Arc::clone(&p.topic), mode))
    }

    /// [`loan_of`](Self::loan_of) of a topic [`route`](Self::route) found.
    fn loan_for(
        &mut self,
        topic: Arc<str>,
        mode: SendMode,
        len: usize,
        data: Option<&[u8]>,
    ) -> Result<Loan, DriverError> {
        let kind = match mode {
            SendMode::Inline => {
                let bytes = inline_buffer(self.member.spare_buffer(), len, data);
                return Ok(Loan {
                    topic,
                    len,
                    kind: LoanKind::Inline(bytes),
                });
            }
            SendMode::Pooled => match self.outgoing.pool_loan(len, now())? {
                Some((segment, seg)) => {
                    // Its subscribers about to sleep poll a little longer: the message is on
                    // its way (the ring's `writing` hint, `ipc_driver_core::WRITING_SPIN`).
                    if let Some(data) = self.member.data() {
                        self.io
                            .writing(data.links_for(&topic), ipc_os::current_cpu());
                    }
                    LoanKind::Pooled(PooledLoan {
                        segment,
                        seg: Some(seg),
                        mailbox: Arc::clone(&self.mailbox),
                    })
                }
                // The pool is at its bound with nothing free: this one goes fresh.
                None => fresh_loan(len)?,
            },
            _ => fresh_loan(len)?,
        };
        let mut loan = Loan { topic, len, kind };
        if let Some(data) = data {
            loan.copy_from_slice(data);
        }
        Ok(loan)
    }

    /// Sends a loan as the next message of its topic (see [`publish`](Self::publish)).
    pub fn send(&mut self, loan: Loan) -> Result<(), DriverError> {
        // A leaving node says so first (`may_send`).
        if self.leaving.is_none() && !self.publishing.contains_key(&*loan.topic) {
            return Err(DriverError::NotPublishing(loan.topic.to_string()));
        }
        self.may_send(&loan.topic)?;
        self.send_checked(loan)
    }

    /// [`send`](Self::send) of a loan its topic's [`may_send`](Self::may_send) allowed.
    fn send_checked(&mut self, loan: Loan) -> Result<(), DriverError> {
        let Loan { topic, len, kind } = loan;
        let len = len as u64;
        let payload = match kind {
            LoanKind::Inline(bytes) => Payload::Inline(bytes),
            LoanKind::Pooled(mut pooled) => {
                let segment = pooled.segment;
                let seg = (pooled.seg.take()).expect("an unsent loan holds its segment");
                let size = seg_size(&seg);
                self.outgoing.give_back(segment, seg, false, now());
                Payload::Pooled {
                    segment,
                    size,
                    offset: 0,
                    len,
                }
            }
            LoanKind::Fresh { segment, map } => {
                // No writable mapping may exist when the write seal is added.
                drop(map);
                segment.seal(ipc_os::memfd::SealSet::FRESH)?;
                Payload::Fresh {
                    segment: self.outgoing.add_fresh(segment.into_fd()),
                    len,
                }
            }
        };
        self.publish_payload(&topic, payload.into());
        Ok(())
    }

    /// Whether a message of `topic` may be sent now: not while leaving, nor while
    /// [`MAX_HELD`](crate::MAX_HELD) of the topic wait for room.
    fn may_send(&self, topic: &str) -> Result<(), DriverError> {
        if self.leaving.is_some() {
            return Err(DriverError::Left);
        }
        if self.hold.is_full(topic) {
            return Err(DriverError::Full(topic.to_string()));
        }
        Ok(())
    }

    /// What the topic's `Block` subscribers can still take (`None`: no limit), as the data
    /// plane counts it now.
    fn room(&self, topic: &str) -> Option<Room> {
        self.member.data().and_then(|d| d.room(topic))
    }

    /// Publishes now if the topic's `Block` subscribers have room, else holds the message.
    ///
    /// A message that goes at once ([`HoldBack::go_with_room`]: nothing of its topic held,
    /// and room) needs no time before it is out: the data plane publishes it at its own latest
    /// time, and the clock is read after the push ([`Self::feed_publish`]). Measured (`vs_std
    /// --only calloop`, spinning 64 B round trip, 17 alternated pairs of runs on the AMD EPYC
    /// VM): the two clock reads before the push cost a tenth of the round trip or more
    /// (about 1.42 against 1.21 µs; faster without them in 15 pairs).
    fn publish_payload(&mut self, topic: &Arc<str>, payload: Outbound<'_>) {
        let room = self.room(topic);
        if let Some(clock) = self.member.data().map(DataPlane::clock)
            && self.hold.go_with_room(topic, room)
        {
            self.feed_publish(topic, payload, false, Some(clock));
            self.drain_hold();
            return;
        }
        let now = now();
        self.sync_room(now, topic);
        // Held, it is kept: a borrowed one is copied, into a buffer the data plane left.
        let payload = payload.into_owned_with(|| self.member.spare_buffer());
        match self.hold.publish(now, topic, payload) {
            Admit::Go(payload) => self.feed_publish(topic, payload.into(), false, None),
            Admit::Held { .. } => {}
            // `may_send` checked, and nothing was held since.
            Admit::Full(_) => unreachable!("checked by the caller"),
        }
        self.drain_hold();
    }

    /// Tells the hold-back the topic's room as the data plane counts it now.
    fn sync_room(&mut self, now: Instant, topic: &str) {
        let room = self.room(topic);
        self.hold.handle(now, HoldInput::Room { topic, room });
    }

    /// Hands a message to the data plane; the hold-back counts it taken in. At `clock` (the
    /// data plane's own latest time, for a message let go at once) with the clock read after
    /// the push, or else at the clock read now.
    fn feed_publish(
        &mut self,
        topic: &Arc<str>,
        payload: Outbound<'_>,
        expired: bool,
        clock: Option<Instant>,
    ) {
        let at = clock.unwrap_or_else(now);
        // Its inline messages go straight into the rings that take them now.
        let published = (self.member).publish_topic(at, topic, payload, expired, &mut self.io);
        if let Err(e) = published {
            warn!(%topic, error = %e, "publish refused");
        }
        let now = clock.map_or(at, |_| now());
        let room = self.room(topic);
        self.hold.handle(now, HoldInput::Accounted { topic, room });
    }

    /// Carries out what the hold-back decided: held messages go out, drained topics are owed a
    /// room event.
    fn drain_hold(&mut self) {
        while let Some(out) = self.hold.poll_output() {
            match out {
                // The name is copied here, for held messages only.
                HoldOutput::Publish {
                    topic,
                    item,
                    expired,
                } => self.feed_publish(&topic.into(), item.into(), expired, None),
                HoldOutput::Drained { topic } => self.owed_room.push(topic),
            }
        }
    }

    /// Sends held messages that have room, or whose wait ran out.
    pub(crate) fn release_held(&mut self, now: Instant) {
        // Nothing held (a stream with room): nothing to release or expire, and every call
        // that decided something drained its outputs. The loop calls this after every
        // message it hands on.
        if self.hold.poll_timeout().is_none() {
            return;
        }
        let topics: Vec<String> = (self.publishing.keys())
            .filter(|t| self.hold.held(t) > 0)
            .cloned()
            .collect();
        for topic in topics {
            self.sync_room(now, &topic);
        }
        self.hold.handle_timeout(now);
        self.drain_hold();
    }

    /// Room events owed to the application.
    pub(crate) fn take_owed_room(&mut self) -> Vec<String> {
        std::mem::take(&mut self.owed_room)
    }

    /// The earliest held message's deadline.
    pub(crate) fn next_held(&self) -> Option<Instant> {
        self.hold.poll_timeout()
    }

    /// Leaves the group gracefully: a goodbye to the hub (and, if this node runs the hub, from
    /// the hub to everyone), then what it published is flushed; [`NodeEvent::Left`] follows
    /// and the source removes itself from the loop.
    pub fn leave(&mut self) {
        if self.leaving.is_some() {
            return;
        }
        debug!("leaving the group");
        let now = now();
        self.leaving = Some(now + LEAVE_DEADLINE);
        let cmd = MemberInput::Cmd(MemberCmd::Spoke(SpokeCmd::Leave));
        if let Err(e) = self.member.handle(now, cmd) {
            warn!(error = %e, "leave refused");
        }
    }

    /// Carries out a command from a handle; what to report if it failed.
    pub(crate) fn request(&mut self, r: Request) -> Option<NodeEvent> {
        let name = r.name();
        let result = match r {
            Request::Spoke(c) => self.spoke(c),
            Request::OpenPublisher {
                topic,
                mime,
                options,
            } => self.open_publisher(&topic, &mime, options),
            Request::ClosePublisher(t) => self.close_publisher(&t),
            Request::OpenSubscription { topic, options } => self.open_subscription(&topic, options),
            Request::CloseSubscription(t) => self.close_subscription(&t),
            Request::Publish { topic, data } => self.publish(&topic, &data),
            Request::Send(loan) => self.send(loan),
            Request::OpenDoc { name, default } => self.open_doc(&name, default),
            Request::PatchDoc { name, update } => self.patch_doc(&name, &update).map(drop),
            Request::CloseDoc(name) => self.close_doc(&name),
            Request::Leave => {
                self.leave();
                Ok(())
            }
        };
        result.err().map(|e| NodeEvent::Failed {
            command: name,
            error: Arc::new(e),
        })
    }
}

fn seg_size(seg: &data::PoolSegment) -> u64 {
    seg.size() as u64
}

/// The spin of a loop serving subscriptions that asked for `spins` (see [`Node::spin`]): the
/// longest of their own; else `None` if one leaves it to the driver or there is none; else
/// zero (all said never).
fn eagerest(spins: impl Iterator<Item = Option<Duration>> + Clone) -> Option<Duration> {
    match spins.clone().flatten().max() {
        Some(own) if !own.is_zero() => Some(own),
        Some(_) if spins.clone().all(|s| s.is_some()) => Some(Duration::ZERO),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::eagerest;

    #[test]
    fn a_loop_spins_as_its_most_eager_subscription_asks() {
        let us = Duration::from_micros;
        let of = |s: &[Option<Duration>]| eagerest(s.iter().copied());
        assert_eq!(of(&[]), None, "no subscription: the driver's choice");
        assert_eq!(of(&[None]), None);
        assert_eq!(of(&[Some(us(0))]), Some(us(0)), "all never: never");
        assert_eq!(of(&[Some(us(0)), Some(us(0))]), Some(us(0)));
        assert_eq!(
            of(&[Some(us(0)), None]),
            None,
            "the driver's choice beats never"
        );
        assert_eq!(of(&[Some(us(0)), Some(us(5))]), Some(us(5)));
        assert_eq!(
            of(&[Some(us(5)), None]),
            Some(us(5)),
            "an own spin beats the driver's"
        );
        assert_eq!(
            of(&[Some(us(5)), Some(Duration::MAX), None]),
            Some(Duration::MAX)
        );
    }
}
