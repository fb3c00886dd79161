//! The simulated data plane: data links between members (opened by publishers at their
//! subscribers' data addresses, `@sim/<index>`), what the applications publish and take, and
//! what each subscribing application got, in order, through an [`Inbox`] per topic.
//!
//! A data link is simulated like a hub link: the connector is told `Connected` at once and the
//! acceptor `Accepted` after the latency (a listener accepts even while its process is
//! stopped); each direction is FIFO; records are delivered whole (SEQPACKET), never split; a
//! crash hangs every link up, a frozen node reads nothing until resumed. Payloads are inline
//! only: a record that carries a segment is a violation of the model.

use std::sync::Arc;

use rand_chacha::rand_core::Rng as _;

use super::app::{NodeIx, SimMessage};
use super::group::Sim;
use crate::data::{DataCmd, Delivered, Delivery, Inbox, Loss, Payload, Terms};
use crate::{Listener, MemberCmd, MemberInput, PeerId, SpokeCmd};

/// The mime type the simulated publishers announce.
const MIME: &str = "sim/data";

impl Sim {
    /// Node `ix`'s application subscribes to `topic` on `terms`: the data plane takes it
    /// (`DataCmd::Take`) and the topology says so (`SpokeCmd::Subscribe`), as a driver's
    /// `subscription` does; what arrives goes through an [`Inbox`] of these terms, which the
    /// application reads as the simulation runs ([`SimNode::received`](super::SimNode::received)).
    /// A topic taken already, or a node not running, does nothing.
    pub fn take(&mut self, ix: NodeIx, topic: &str, terms: Terms) {
        let now = self.now();
        let n = &mut self.nodes[ix.0];
        if !n.is_member() || n.frozen || n.data.inboxes.contains_key(topic) {
            return;
        }
        let take = DataCmd::Take {
            topic: topic.into(),
            terms,
        };
        n.member
            .handle(now, MemberInput::Cmd(MemberCmd::Data(take)))
            .expect("a member takes any valid topic");
        let inbox = Inbox::new(Arc::from(topic), terms.policy, terms.depth);
        n.data.inboxes.insert(topic.into(), inbox);
        self.cmd(
            ix,
            SpokeCmd::Subscribe {
                topic: topic.into(),
            },
        );
    }

    /// Node `ix`'s application publishes `count` inline messages on `topic`; the first time,
    /// it announces the topic (`SpokeCmd::Announce`) and advertises it (`DataCmd::Advertise`),
    /// as a driver's `publisher` does. Each payload is its sequence number (8 bytes, little
    /// endian), checked on delivery. A node not running does nothing.
    pub fn publish(&mut self, ix: NodeIx, topic: &str, count: u64) {
        let now = self.now();
        let n = &mut self.nodes[ix.0];
        if !n.is_member() || n.frozen {
            return;
        }
        if !n.data.published.contains_key(topic) {
            n.data.published.insert(topic.into(), 0);
            n.member
                .handle(
                    now,
                    MemberInput::Cmd(MemberCmd::Data(DataCmd::Advertise {
                        topic: topic.into(),
                    })),
                )
                .expect("a member advertises any valid topic");
            self.cmd(
                ix,
                SpokeCmd::Announce {
                    topic: topic.into(),
                    mime: MIME.into(),
                },
            );
        }
        for _ in 0..count {
            let n = &mut self.nodes[ix.0];
            let seq = n.data.published.get_mut(topic).expect("advertised above");
            *seq += 1;
            let publish = DataCmd::Publish {
                topic: topic.into(),
                payload: Payload::Inline(seq.to_le_bytes().to_vec()),
                expired: false,
            };
            n.member
                .handle(now, MemberInput::Cmd(MemberCmd::Data(publish)))
                .expect("an advertised topic takes inline messages");
            self.drain(ix);
        }
    }

    /// Every running application reads everything its queues hold (frozen ones cannot).
    pub fn read_inboxes(&mut self) {
        for ix in 0..self.nodes.len() {
            let n = &self.nodes[ix];
            if n.alive && !n.frozen {
                self.read(NodeIx(ix), usize::MAX);
            }
        }
    }

    /// The application of `ix` reads up to `budget` entries of each of its queues.
    pub(crate) fn read(&mut self, ix: NodeIx, budget: usize) {
        let d = &mut self.nodes[ix.0].data;
        for inbox in d.inboxes.values_mut() {
            for _ in 0..budget {
                let Some(got) = inbox.pop() else { break };
                d.received.push((Arc::clone(inbox.topic()), got));
            }
        }
    }

    /// After a node handled an input: its application reads a few entries (0 to 2 of each
    /// queue, seeded), so that queues fill and their policies drop now and then.
    pub(crate) fn read_some(&mut self, ix: NodeIx) {
        let n = &self.nodes[ix.0];
        if !n.alive || n.frozen || n.data.inboxes.values().all(Inbox::is_empty) {
            return;
        }
        let budget = (self.rng.next_u64() % 3) as usize;
        self.read(ix, budget);
    }

    /// A message for node `ix`'s subscription.
    pub(crate) fn on_deliver(&mut self, ix: NodeIx, d: Delivery) {
        let want = d.seq.to_le_bytes();
        let ok = matches!(&d.payload, Delivered::Inline(b) if b[..] == want[..]);
        if !ok {
            let why = format!(
                "{} got seq {} of {} on `{}` with payload {:?}",
                self.nodes[ix.0].name, d.seq, d.publisher, d.topic, d.payload
            );
            self.data_violations.push(why);
        }
        let data = &mut self.nodes[ix.0].data;
        match data.inboxes.get_mut(&*d.topic) {
            Some(inbox) => {
                let _ = inbox.offer(SimMessage {
                    publisher: d.publisher,
                    seq: d.seq,
                });
            }
            None => data.untaken += 1,
        }
    }

    /// Messages node `ix`'s subscription will not get.
    pub(crate) fn on_lost(&mut self, ix: NodeIx, loss: Loss) {
        let data = &mut self.nodes[ix.0].data;
        match data.inboxes.get_mut(&*loss.topic) {
            Some(inbox) => inbox.lost(loss),
            None => data.untaken += 1,
        }
    }

    /// A record for a data link that carries a segment: the simulation has none to pass.
    pub(crate) fn on_attach(&mut self, ix: NodeIx, peer: PeerId) {
        let why = format!(
            "{} attached a segment on {peer}: the simulation sends inline payloads only",
            self.nodes[ix.0].name
        );
        self.data_violations.push(why);
    }

    /// Evaluates a connection from `ix` (its link `peer`) to the data address `addr`: the
    /// node there accepts it if it runs (a stopped one too: its listener's backlog takes it).
    pub(crate) fn attempt_connect_data(&mut self, ix: NodeIx, peer: PeerId, addr: &str) {
        let target = addr
            .strip_prefix("@sim/")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|&i| i < self.nodes.len() && self.nodes[i].alive)
            .map(NodeIx);
        let Some(to) = target else {
            return self.connect_failed(ix, peer);
        };
        self.open_link(ix, peer, to, true);
    }

    /// A data link node `ix`'s listener accepted from node `from`.
    pub(crate) fn accepted_data(&mut self, ix: NodeIx, peer: PeerId, from: u32) {
        let now = self.now();
        let input = MemberInput::Accepted {
            peer,
            listener: Listener::Data,
            cred: Some(self.cred_of(NodeIx(from as usize))),
        };
        let n = &mut self.nodes[ix.0];
        n.member.handle(now, input).expect("peer inputs never fail");
        self.drain(ix);
    }

    /// A node that has left stops: its data links hang up (its hub link is closed already).
    pub(crate) fn hang_up_data(&mut self, ix: NodeIx) {
        for id in self.links_of(ix, true) {
            self.hang_up(id, ix);
        }
    }
}
