//! Delivery: a message the data plane hands on goes to the local subscriptions of its topic,
//! its payload mapped if it came in a segment.

use std::sync::Arc;
use std::time::Instant;

use ipc_driver_core::map_own;
use ipc_os::memfd::Mapping;
use ipc_proto::data::{
    DataCmd, Delivered, Delivery, LOCAL, Loss, LossReason, Mode, Pool, SegmentId,
};
use ipc_proto::{MemberCmd, MemberInput};
use smallvec::SmallVec;
use tracing::warn;

use super::Reactor;
use crate::data::{Message, ReleaseGuard, SubQueue};

impl Reactor {
    /// Hands a message to the local subscriptions of its topic.
    pub(super) fn deliver(&mut self, now: Instant, d: Delivery) {
        // The data plane delivers only what the member's view vouches for (the publisher and
        // its announcement, with the topic's declared type): an application reading the
        // message must see that view too, not the one of the last wakeup.
        self.sync_view();
        // Held apart from `self.subs`, which a dropped message's accounting below may change;
        // inline for the usual few subscriptions of a topic: no allocation per message.
        let queues: SmallVec<[Arc<SubQueue>; 4]> = self
            .subs
            .get(&d.topic)
            .map_or_else(SmallVec::new, |l| l.iter().cloned().collect());
        // The data plane refused larger payloads already; a second check costs nothing and
        // stands between a peer and this process's memory.
        let max = queues.iter().map(|q| q.options.max_payload).max();
        let msg = match d.payload {
            Delivered::Inline(bytes) => Some(Message::inline(
                Arc::clone(&d.topic),
                d.publisher,
                d.seq,
                bytes,
            )),
            Delivered::Fresh { segment, len } => {
                self.map_fresh(segment, len, max).and_then(|map| {
                    Message::mapped(
                        Arc::clone(&d.topic),
                        d.publisher,
                        d.seq,
                        Mode::Fresh,
                        map,
                        (0, usize::try_from(len).ok()?),
                        None,
                    )
                })
            }
            Delivered::Pooled {
                segment,
                offset,
                len,
                slot,
            } => self.map_pooled(segment, max).and_then(|map| {
                let range = (usize::try_from(offset).ok()?, usize::try_from(len).ok()?);
                let release = ReleaseGuard::new(d.peer, slot, Arc::clone(&self.mailbox));
                Message::mapped(
                    Arc::clone(&d.topic),
                    d.publisher,
                    d.seq,
                    Mode::Pooled,
                    map,
                    range,
                    Some(Box::new(release)),
                )
            }),
        };
        let Some(msg) = msg else {
            warn!(topic = %d.topic, "could not map a received payload: message dropped");
            let loss = Loss::single(d.topic, d.publisher, d.seq, LossReason::Unmapped);
            for q in &queues {
                q.lost(loss.clone());
            }
            let cmd = DataCmd::QueueDropped {
                topic: loss.topic,
                publisher: d.publisher,
                count: 1,
            };
            self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
            return;
        };
        let mut pause = false;
        // The last queue takes the message itself (`repeat_n` yields the original last): a
        // clone costs two reference counts (atomic, each a fair share of a small message's
        // cost) and the drop of the original.
        let copies = std::iter::repeat_n(msg, queues.len());
        for (q, m) in queues.into_iter().zip(copies) {
            let offered = q.offer(m, d.peer);
            pause |= offered.full;
            if let Some(publisher) = offered.dropped {
                // Counted for `status`; the queue tells its subscription.
                let topic = Arc::clone(&d.topic);
                let cmd = DataCmd::QueueDropped {
                    topic,
                    publisher,
                    count: 1,
                };
                self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
            }
        }
        if pause && d.peer != LOCAL {
            self.io.set_paused(d.peer, true);
        }
    }

    fn map_fresh(
        &mut self,
        segment: SegmentId,
        len: u64,
        max: Option<u64>,
    ) -> Option<Arc<Mapping>> {
        self.io.received().map_fresh(segment, len, max)
    }

    fn map_pooled(&mut self, segment: SegmentId, max: Option<u64>) -> Option<Arc<Mapping>> {
        if let Some(own) = self.outgoing.segment(segment) {
            // Our own pool segment, delivered to ourselves: map it read-only like anyone else.
            return map_own(own.fd());
        }
        self.io.received().map_pooled(segment, max.map(Pool::class))
    }
}
