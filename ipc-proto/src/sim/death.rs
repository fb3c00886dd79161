//! Deaths in the simulated group: which pid each node's peers see, kills whose exits the
//! survivors' drivers confirm (a pidfd per link), nodes in another pid namespace whose deaths
//! nobody can confirm, and a dead node's pid reused at once by a new node.

use std::time::{Duration, Instant};

use rand_chacha::rand_core::Rng as _;

use super::app::{NodeIx, cred};
use super::group::{Delivery, Sim, SimInput};
use crate::{Credentials, NodeId, OwnTopics, PeerId};

impl Sim {
    /// The credentials node `ix`'s peers read on its links.
    pub(crate) fn cred_of(&self, ix: NodeIx) -> Credentials {
        let mut c = cred(ix);
        if let Some(&pid) = self.deaths.pids.get(&ix) {
            c.pid = pid;
        }
        c
    }

    /// Starts a node in another pid namespace: its peers read pid 0 on its links, so its death
    /// is never confirmed (the grace applies to it).
    pub fn spawn_hidden(&mut self, name: &str, own: &OwnTopics) -> NodeIx {
        let ix = NodeIx(self.nodes.len());
        self.deaths.pids.insert(ix, 0);
        self.spawn(name, own)
    }

    /// Kills a node (`kill -9`), and the drivers of the nodes at the other end of its links
    /// report its exit ([`MemberInput::PeerExited`](crate::MemberInput::PeerExited)), unless
    /// its peers cannot see its pid ([`spawn_hidden`](Self::spawn_hidden)). Its links hang up
    /// as in [`crash`](Self::crash); each exit is reported usually after the hangup, sometimes
    /// in the same wakeup before it.
    pub fn kill(&mut self, ix: NodeIx) {
        if !self.nodes[ix.0].alive {
            return;
        }
        let pid = self.cred_of(ix).pid;
        let ends: Vec<(NodeIx, PeerId, Instant)> = self
            .links
            .values()
            .filter(|l| l.spoke != l.hub)
            .filter_map(|l| {
                if l.spoke == ix {
                    Some((l.hub, l.hub_peer, l.up_last))
                } else if l.hub == ix {
                    Some((l.spoke, l.spoke_peer, l.down_last))
                } else {
                    None
                }
            })
            .collect();
        self.crash(ix);
        if pid == 0 {
            return;
        }
        let now = self.now();
        let (lo, hi) = self.config.latency;
        for (node, peer, last) in ends {
            let r = self.rng.next_u64();
            let at = if r.is_multiple_of(4) {
                now + lo
            } else {
                now.max(last) + hi + Duration::from_micros(r % 200)
            };
            let input = SimInput::PeerExited(peer);
            self.schedule(at, Delivery { node, input });
        }
    }

    /// Kills a node as [`kill`](Self::kill) does and starts a new node that gets the dead
    /// one's pid at once (pid reuse): the new node's links must not be taken for the dead
    /// one's.
    pub fn kill_reusing_pid(&mut self, ix: NodeIx, name: &str, own: &OwnTopics) -> NodeIx {
        let pid = self.cred_of(ix).pid;
        self.kill(ix);
        let new = NodeIx(self.nodes.len());
        self.deaths.pids.insert(new, pid);
        self.spawn(name, own)
    }

    /// A hub on node `by` declared `node` dead on a confirmed exit: that must be true.
    pub(crate) fn exit_reported(&mut self, by: NodeIx, node: NodeId) {
        let now = self.now();
        self.deaths.reported.push((now, by, node));
        if let Some(ix) = self.ix_of(node)
            && self.nodes[ix.0].alive
        {
            let at = self.ms(now);
            let (by, dead) = (&self.nodes[by.0].name, &self.nodes[ix.0].name);
            self.violations.push(format!(
                "at {at:.1} ms {by}'s hub declared {dead} dead, but it runs"
            ));
        }
    }
}
