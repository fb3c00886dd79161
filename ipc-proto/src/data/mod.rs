//! The data plane: messages from publishers to subscribers, point to point, never through the
//! hub.
//!
//! A node's [`DataPlane`] opens one data link to each node that subscribes to a topic this node
//! publishes (at that node's data address, from the topology), and accepts the links of the
//! publishers of the topics it subscribes to. Over a link the publisher binds topic ids, offers
//! pool segments once, and sends messages whose payload is inline, in a fresh sealed memfd, or
//! at a range of a pool segment ([`wire::DataFrame`](crate::wire::DataFrame)); the subscriber
//! states its terms per topic (policy and queue depth) and gives pooled ranges back.
//!
//! Like the topology machines, this one touches no memory segment, fd or socket: the driver
//! creates and maps segments and names them by [`SegmentId`]; the machine decides what to send
//! where, what to drop, and what to deliver, and tells the driver when a segment is no longer
//! referenced ([`DataOutput::Release`]).
//!
//! # Flow control
//! Per subscriber and topic, a message is *in flight* from the moment it is published until the
//! subscriber has it: for inline and fresh payloads, until it is handed to the driver's socket;
//! for pooled payloads, until the subscriber releases the range. When `depth` messages are in
//! flight the subscriber's [`Policy`] applies: `DropNewest` drops the new message for it,
//! `DropOldest` drops its oldest message still queued here (or the new one when none is
//! queued), and `Block` holds the publisher back: the machine reports each topic's room, the
//! fewest messages any of its `Block` subscribers can still take ([`DataEvt::Room`]). What to do
//! with a publish then is decided once, for both drivers, by a [`HoldBack`]: it counts the
//! messages let go against the room until the data plane has taken them in, and holds a publish
//! while there is no room, in order behind the ones held before it, until room comes back or the
//! subscribers' timeout passes: then it goes with [`DataCmd::Publish`]'s `expired` set, which
//! drops the message for the subscribers still full. Beyond [`MAX_HELD`] held messages of a
//! topic, a publish is refused. A driver that publishes from its loop holds the payloads there; a
//! driver whose publishing threads block holds one ticket per waiting thread.
//! The subscriber applies its policy again to its own queues ([`Inbox`]); with `Block` it stops
//! reading the link while the queue is full, which fills the socket, then the publisher's queue.
//!
//! # Order and loss
//! Each publisher numbers its messages per topic, and a subscriber's data plane delivers them
//! in increasing order across every link from that publisher (an old link's backlog read after
//! a newer link's first message is discarded: it falls in a loss already reported). Every hole
//! in the sequence is reported as a [`Loss`] ([`DataOutput::Lost`]) before the publisher's next
//! message, and an [`Inbox`] reports its own drops the same way. A publisher tells each
//! topic's last seq ([`DataFrame::Last`](crate::wire::DataFrame::Last)) when it binds the topic
//! on a new link, when its queue for a subscriber drained after drops, and before it closes a
//! link, so a tail dropped at the end, or published while a subscriber was expelled and
//! rejoining, is told even if no message follows: per subscription and publisher, messages
//! delivered plus messages reported lost equal messages published since it subscribed (up to
//! the last one that reached it, for a publisher that crashed).
//!
//! [`Policy`]: crate::wire::Policy

mod buffers;
mod holdback;
mod inbox;
mod io;
mod links;
mod loss;
mod options;
mod payload;
mod plane;
mod pool;
mod publisher;
mod rooms;
mod routes;
mod subscriber;
mod topic;

pub use holdback::{Admit, HoldBack, HoldInput, HoldOutput, MAX_HELD};
pub use inbox::{Inbox, InboxCounters, Incoming, Offered, Sequenced};
#[cfg(any(test, feature = "arbitrary"))]
pub(crate) use io::TakingDirect;
pub use io::{DataCmd, DataConfig, DataEvt, DataInput, DataLimits, DataOutput, DirectSend, Room};
pub use loss::{Loss, LossReason};
pub use options::{
    DEFAULT_INLINE_MAX, DEFAULT_MAX_PAYLOAD, Paths, PublisherOptions, SendMode,
    SubscriptionOptions, Terms,
};
pub use payload::{
    Delivered, Delivery, LOCAL, Mode, OUTGOING, Outbound, Payload, PayloadBuffer, ReceivedSegment,
    Seals, SegmentId,
};
pub use plane::DataPlane;
pub use pool::{MAX_ROTATION, MIN_SEGMENT, Pool, PoolSlot, ROTATION_BYTES};
pub use routes::Routes;

#[cfg(test)]
mod tests;
