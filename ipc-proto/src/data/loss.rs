//! Messages a subscription did not get, reported to it in order with the messages it did get.
//!
//! Every message a publisher sends to a subscriber carries the publisher's sequence number for
//! its topic (from 1, one per message published, never reused in the publisher's life). The
//! subscriber's [`DataPlane`](super::DataPlane) delivers each publisher's messages in
//! increasing order and turns every hole in that sequence into a [`Loss`], and a subscription's
//! [`Inbox`](super::Inbox) does the same for what its own policy drops; so for every
//! subscription and publisher, messages delivered plus messages reported lost equal the
//! messages published since the subscription began (less those still on their way).

use std::fmt;
use std::sync::Arc;

use crate::ids::NodeId;

/// Why messages did not reach a subscription.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum LossReason {
    /// The publisher dropped them for this subscriber: its queue to this node was full under
    /// the subscription's `DropOldest` or `DropNewest`, or a `Block` timeout passed.
    Publisher,
    /// This subscription's own queue was full and its policy dropped them.
    Queue,
    /// This node was expelled from the group (it was stopped or hung past the keepalive):
    /// what the publisher sent meanwhile, and what was queued on the link it closed.
    Expelled,
    /// The publisher's data link to this node was replaced (it broke, or the publisher lost
    /// track of this node for a while): what was queued on the old link.
    Relinked,
    /// The message reached this node but its payload's segment could not be mapped (out of
    /// address space or memory): the driver dropped it.
    Unmapped,
}

impl LossReason {
    /// `publisher`, `queue`, `expelled`, `relinked` or `unmapped`: the name `ipc-pubsub sub`
    /// prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Publisher => "publisher",
            Self::Queue => "queue",
            Self::Expelled => "expelled",
            Self::Relinked => "relinked",
            Self::Unmapped => "unmapped",
        }
    }
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Messages of one publisher on one topic that a subscription did not get, and why.
///
/// Its sequence numbers lie between the publisher's messages delivered before it and after
/// it. A `Loss` may gather several holes of the same publisher (a queue that dropped now and
/// then while full), so `count` can be less than `last - first + 1`; no message between
/// `first` and `last` was delivered.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Loss {
    /// The topic.
    pub topic: Arc<str>,
    /// The publisher.
    pub publisher: NodeId,
    /// The first sequence number missing.
    pub first: u64,
    /// The last sequence number missing.
    pub last: u64,
    /// How many messages are missing.
    pub count: u64,
    /// Why.
    pub reason: LossReason,
}

impl Loss {
    /// The messages `first..=last` of `publisher` on `topic`.
    pub fn range(
        topic: Arc<str>,
        publisher: NodeId,
        first: u64,
        last: u64,
        reason: LossReason,
    ) -> Self {
        debug_assert!(first <= last);
        Self {
            topic,
            publisher,
            first,
            last,
            count: last - first + 1,
            reason,
        }
    }

    /// Message `seq` of `publisher` on `topic`, alone.
    pub fn single(topic: Arc<str>, publisher: NodeId, seq: u64, reason: LossReason) -> Self {
        Self::range(topic, publisher, seq, seq, reason)
    }

    /// Whether `other` can be told as part of this one: same topic, publisher and reason.
    pub fn joins(&self, other: &Self) -> bool {
        self.publisher == other.publisher
            && self.reason == other.reason
            && self.topic == other.topic
    }

    /// Adds `other`, a later loss of the same publisher and topic, under this one's reason
    /// (which `other` [joins](Self::joins), unless too many were kept apart).
    pub fn absorb(&mut self, other: &Self) {
        debug_assert!(self.publisher == other.publisher && self.topic == other.topic);
        self.first = self.first.min(other.first);
        self.last = self.last.max(other.last);
        self.count += other.count;
    }
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} message(s) of {} on `{}` lost ({}), seq {}..={}",
            self.count, self.publisher, self.topic, self.reason, self.first, self.last
        )
    }
}

/// How many losses of one publisher a queue keeps apart (alternating reasons); beyond, a loss
/// joins the publisher's last one under that one's reason: counts stay exact, memory bounded.
pub(super) const MAX_APART: usize = 8;

/// Adds `loss` to `set` after the losses of its publisher there, joining the last of them if
/// it [joins](Loss::joins) it (or if [`MAX_APART`] of them are kept apart already).
pub(super) fn gather(set: &mut Vec<Loss>, loss: Loss) {
    let mut theirs = set
        .iter_mut()
        .filter(|l| l.publisher == loss.publisher && l.topic == loss.topic);
    let mut n = 0;
    let mut last = None;
    for l in theirs.by_ref() {
        n += 1;
        last = Some(l);
    }
    match last {
        Some(l) if l.joins(&loss) || n >= MAX_APART => l.absorb(&loss),
        _ => set.push(loss),
    }
}
