//! Delivery: a message the data plane hands on goes to the local subscriptions of its topic,
//! its payload mapped if it came in a segment.

use std::sync::Arc;
use std::time::Instant;

use ipc_driver_core::map_own;
use ipc_proto::data::{DataCmd, Delivered, Delivery, LOCAL, Loss, LossReason, Mode, Pool};
use ipc_proto::{MemberCmd, MemberInput, NodeId};
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
        // The topic's subscriptions, borrowed (nothing below changes `self.subs` until the
        // member hears of the messages they dropped): no queue's count is touched, and an
        // inline message takes the delivery's topic itself. Each clone or drop of an `Arc` is
        // an atomic operation, a few nanoseconds of a small message's path.
        let (key, queues) = match self.subs.get_key_value(&d.topic) {
            Some((key, list)) => (Some(key), list.as_slice()),
            None => (None, &[][..]),
        };
        // The data plane refused larger payloads already; a second check costs nothing and
        // stands between a peer and this process's memory.
        let max = queues.iter().map(|q| q.options.max_payload).max();
        let Delivery {
            topic,
            publisher,
            seq,
            peer,
            payload,
        } = d;
        // A mapped payload's message may fail to be made: its topic is then kept for the loss.
        let msg = match payload {
            Delivered::Inline(bytes) => Ok(Message::inline(topic, publisher, seq, bytes)),
            Delivered::Fresh { segment, len } => {
                let map = self.io.received().map_fresh(segment, len, max);
                map.and_then(|map| {
                    let range = (0, usize::try_from(len).ok()?);
                    let topic = Arc::clone(&topic);
                    Message::mapped(topic, publisher, seq, Mode::Fresh, map, range, None)
                })
                .ok_or(topic)
            }
            Delivered::Pooled {
                segment,
                offset,
                len,
                slot,
            } => {
                let map = match self.outgoing.segment(segment) {
                    // Our own pool segment, delivered to ourselves: mapped read-only like
                    // anyone else's.
                    Some(own) => map_own(own.fd()),
                    None => (self.io.received()).map_pooled(segment, max.map(Pool::class)),
                };
                map.and_then(|map| {
                    let range = (usize::try_from(offset).ok()?, usize::try_from(len).ok()?);
                    let release = ReleaseGuard::new(peer, slot, Arc::clone(&self.mailbox));
                    Message::mapped(
                        Arc::clone(&topic),
                        publisher,
                        seq,
                        Mode::Pooled,
                        map,
                        range,
                        Some(Box::new(release)),
                    )
                })
                .ok_or(topic)
            }
        };
        let msg = match msg {
            Ok(msg) => msg,
            Err(topic) => {
                warn!(%topic, "could not map a received payload: message dropped");
                let loss = Loss::single(topic, publisher, seq, LossReason::Unmapped);
                for q in queues {
                    q.lost(loss.clone());
                }
                let cmd = DataCmd::QueueDropped {
                    topic: loss.topic,
                    publisher,
                    count: 1,
                };
                self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
                return;
            }
        };
        let mut pause = false;
        let mut dropped: SmallVec<[NodeId; 2]> = SmallVec::new();
        let (taking, taken) = (self.taking, &mut self.taken);
        let mut offer = |q: &Arc<SubQueue>, m: Message| {
            // The polling thread's own queue: its first item goes to it at once.
            let offered = if taking == Arc::as_ptr(q).addr() && taken.is_none() {
                let (offered, item) = q.offer_take(m, peer);
                *taken = item;
                offered
            } else {
                q.offer(m, peer)
            };
            pause |= offered.full;
            if let Some(publisher) = offered.dropped {
                dropped.push(publisher);
            }
        };
        // The last queue takes the message itself: a clone costs two reference counts and
        // the drop of the original (and a topic one subscription takes, the usual case,
        // walks nothing else).
        if let Some((last, others)) = queues.split_last() {
            for q in others {
                offer(q, msg.clone());
            }
            offer(last, msg);
        }
        // Counted for `status`; the queue tells its subscription.
        if let Some(topic) = key.filter(|_| !dropped.is_empty()).cloned() {
            for publisher in dropped {
                let cmd = DataCmd::QueueDropped {
                    topic: Arc::clone(&topic),
                    publisher,
                    count: 1,
                };
                self.feed(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
            }
        }
        if pause && peer != LOCAL {
            self.io.set_paused(peer, true);
        }
    }
}
