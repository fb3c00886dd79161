//! A subscription's queue, as a driver keeps it between the data plane and the application:
//! its policy, and the losses it reports in order with the messages.
//!
//! The [`DataPlane`](super::DataPlane) applies each subscription's policy at the publisher
//! (per link); a subscription's own queue applies it again when the application reads more
//! slowly than its socket fills. What that queue drops is a [`Loss`] too
//! ([`LossReason::Queue`]), and so is each [`DataOutput::Lost`](super::DataOutput::Lost) the
//! data plane reports: an [`Inbox`] hands them to the application in their place, each before
//! the publisher's next message and after its previous one.
//!
//! ```
//! use std::sync::Arc;
//! use ipc_proto::NodeId;
//! use ipc_proto::data::{Inbox, Incoming, LossReason, Sequenced};
//! use ipc_proto::wire::Policy;
//!
//! #[derive(Debug, PartialEq)]
//! struct Msg(u64);
//! impl Sequenced for Msg {
//!     fn publisher(&self) -> NodeId { NodeId::new(7).unwrap() }
//!     fn seq(&self) -> u64 { self.0 }
//! }
//!
//! let mut inbox = Inbox::new(Arc::from("t"), Policy::DropOldest, 2);
//! for seq in 1..=4 {
//!     inbox.offer(Msg(seq));
//! }
//! // 1 and 2 were dropped for 3 and 4: the loss comes first.
//! let Some(Incoming::Lost(loss)) = inbox.pop() else { panic!() };
//! assert_eq!((loss.first, loss.last, loss.count, loss.reason), (1, 2, 2, LossReason::Queue));
//! assert_eq!(inbox.pop(), Some(Incoming::Message(Msg(3))));
//! assert_eq!(inbox.pop(), Some(Incoming::Message(Msg(4))));
//! assert_eq!(inbox.pop(), None);
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use crate::ids::NodeId;
use crate::wire::Policy;

use super::loss::{Loss, LossReason, gather};

/// A message as an [`Inbox`] needs to know it.
pub trait Sequenced {
    /// The node that published it.
    fn publisher(&self) -> NodeId;
    /// Its number in the publisher's sequence for the topic.
    fn seq(&self) -> u64;
}

/// What an [`Inbox`] hands out: a message, or messages lost before the publisher's next.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Incoming<M> {
    /// A message.
    Message(M),
    /// Messages not delivered, in their place.
    Lost(Loss),
}

/// What became of a message [offered](Inbox::offer) to an [`Inbox`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Offered {
    /// Under `Block`, the queue holds `depth` messages or more now: stop reading the link it
    /// came on until the application has taken enough ([`Inbox::may_resume`]).
    pub full: bool,
    /// A message the policy dropped to make room (`DropOldest`) or instead of this one
    /// (`DropNewest`): whose, for the driver to count.
    pub dropped: Option<NodeId>,
}

/// The counters of an [`Inbox`].
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct InboxCounters {
    /// Messages queued (and so handed to the application, or still queued).
    pub received: u64,
    /// Messages this queue's policy dropped.
    pub dropped: u64,
    /// Messages reported lost, this queue's drops included.
    pub lost: u64,
    /// Messages queued now.
    pub queued: usize,
}

/// A queued message and the losses of its publisher just before it.
#[derive(Debug)]
struct Entry<M> {
    message: M,
    before: Vec<Loss>,
}

/// A subscription's queue of messages and losses (see the module docs).
///
/// Memory is bounded: `depth` messages (more only under `Block`, by what the driver read
/// before it paused the link), and a few losses per publisher, since losses of one publisher
/// and reason that meet in the same place are told as one.
#[derive(Debug)]
pub struct Inbox<M> {
    topic: Arc<str>,
    policy: Policy,
    depth: usize,
    messages: VecDeque<Entry<M>>,
    /// Losses older than every queued message (what `DropOldest` dropped): told first.
    head: Vec<Loss>,
    /// Losses newer than every queued message of their publisher: told before that
    /// publisher's next message, or once the queue is empty.
    tail: Vec<Loss>,
    counters: InboxCounters,
}

impl<M: Sequenced> Inbox<M> {
    /// An empty queue of `topic`'s messages holding `depth` of them (at least 1) under
    /// `policy`.
    pub fn new(topic: Arc<str>, policy: Policy, depth: u32) -> Self {
        Self {
            topic,
            policy,
            depth: depth.max(1) as usize,
            messages: VecDeque::new(),
            head: Vec::new(),
            tail: Vec::new(),
            counters: InboxCounters::default(),
        }
    }

    /// The topic.
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Adds a message, applying the policy if the queue is full.
    pub fn offer(&mut self, message: M) -> Offered {
        let publisher = message.publisher();
        let mut before = Vec::new();
        if !self.tail.is_empty() {
            self.tail.retain(|l| {
                let mine = l.publisher == publisher;
                if mine {
                    before.push(l.clone());
                }
                !mine
            });
        }
        let mut offered = Offered {
            full: false,
            dropped: None,
        };
        if self.messages.len() >= self.depth {
            match self.policy {
                // Only what the driver read before it paused the link can come here.
                Policy::Block { .. } => {}
                Policy::DropOldest => {
                    let e = self.messages.pop_front().expect("the queue is full");
                    offered.dropped = Some(e.message.publisher());
                    for l in e.before {
                        gather(&mut self.head, l);
                    }
                    let one = self.one(&e.message);
                    gather(&mut self.head, one);
                }
                Policy::DropNewest => {
                    for l in before {
                        gather(&mut self.tail, l);
                    }
                    let one = self.one(&message);
                    gather(&mut self.tail, one);
                    self.counters.dropped += 1;
                    self.counters.lost += 1;
                    return Offered {
                        full: false,
                        dropped: Some(publisher),
                    };
                }
            }
            if offered.dropped.is_some() {
                self.counters.dropped += 1;
                self.counters.lost += 1;
            }
        }
        self.messages.push_back(Entry { message, before });
        self.counters.received += 1;
        offered.full =
            matches!(self.policy, Policy::Block { .. }) && self.messages.len() >= self.depth;
        offered
    }

    /// [`Self::offer`], then [`Self::pop`] unless the offer filled a `Block` queue (the
    /// caller pauses the link and the application takes the item as usual), for a caller that
    /// hands the queue's next item on at once (a driver's thread polling for it). With
    /// nothing queued and room after it, the message is that item: counted and handed back
    /// without a trip through the queue (its push and its pop: about 160 instructions of a
    /// small message's path on the echo side of a spinning round trip, callgrind).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use ipc_proto::NodeId;
    /// # use ipc_proto::data::{Inbox, Incoming, Sequenced};
    /// # use ipc_proto::wire::Policy;
    /// # #[derive(Debug, PartialEq)]
    /// # struct Msg(u64);
    /// # impl Sequenced for Msg {
    /// #     fn publisher(&self) -> NodeId { NodeId::new(7).unwrap() }
    /// #     fn seq(&self) -> u64 { self.0 }
    /// # }
    /// let mut inbox = Inbox::new(Arc::from("t"), Policy::DropOldest, 4);
    /// let (offered, item) = inbox.offer_pop(Msg(1));
    /// assert!(!offered.full);
    /// assert_eq!(item, Some(Incoming::Message(Msg(1))));
    /// assert_eq!(inbox.counters().received, 1);
    /// // Something queued comes first.
    /// inbox.offer(Msg(2));
    /// assert_eq!(inbox.offer_pop(Msg(3)).1, Some(Incoming::Message(Msg(2))));
    /// assert_eq!(inbox.pop(), Some(Incoming::Message(Msg(3))));
    /// ```
    pub fn offer_pop(&mut self, message: M) -> (Offered, Option<Incoming<M>>) {
        let fills = matches!(self.policy, Policy::Block { .. }) && self.depth <= 1;
        if self.is_empty() && !fills {
            self.counters.received += 1;
            let offered = Offered {
                full: false,
                dropped: None,
            };
            return (offered, Some(Incoming::Message(message)));
        }
        let offered = self.offer(message);
        let item = if offered.full { None } else { self.pop() };
        (offered, item)
    }

    /// Messages the data plane reports lost: told before the publisher's next message.
    pub fn lost(&mut self, loss: Loss) {
        self.counters.lost += loss.count;
        gather(&mut self.tail, loss);
    }

    /// The next message or loss, in order.
    pub fn pop(&mut self) -> Option<Incoming<M>> {
        if !self.head.is_empty() {
            return Some(Incoming::Lost(self.head.remove(0)));
        }
        if let Some(e) = self.messages.front_mut() {
            if !e.before.is_empty() {
                return Some(Incoming::Lost(e.before.remove(0)));
            }
            let e = self.messages.pop_front().expect("front exists");
            return Some(Incoming::Message(e.message));
        }
        if !self.tail.is_empty() {
            return Some(Incoming::Lost(self.tail.remove(0)));
        }
        None
    }

    /// Whether nothing is queued: no message, no loss.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.head.is_empty() && self.tail.is_empty()
    }

    /// Whether a link paused by this full `Block` queue is read again: once the queue has
    /// drained to half its depth, so that reading resumes in batches (a link resumed at the
    /// first free place would pause again after one message, and pay a pause and a resume
    /// per message).
    pub fn may_resume(&self) -> bool {
        self.messages.len() <= self.depth / 2
    }

    /// The counters.
    pub fn counters(&self) -> InboxCounters {
        InboxCounters {
            queued: self.messages.len(),
            ..self.counters
        }
    }

    fn one(&self, m: &M) -> Loss {
        let topic = Arc::clone(&self.topic);
        Loss::single(topic, m.publisher(), m.seq(), LossReason::Queue)
    }
}
