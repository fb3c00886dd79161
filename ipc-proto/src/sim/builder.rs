//! [`SimBuilder`]: the group and the network of a [`Sim`], knob by knob.

use std::time::Duration;

use super::group::{Sim, SimConfig};
use crate::OwnTopics;
use crate::doc::DocLimits;

/// Builds a [`Sim`]: its members and its network. Start from [`Sim::builder`].
#[derive(Clone, Debug)]
#[must_use]
pub struct SimBuilder {
    seed: u64,
    config: SimConfig,
    members: Vec<OwnTopics>,
}

impl Sim {
    /// A simulation driven by `seed`: with the same seed and the same calls, every run is
    /// the same. Defaults: no members, latency 20 µs to 2 ms, records split at random points,
    /// keepalive 2 s, grace 200 ms, default [`DocLimits`].
    pub fn builder(seed: u64) -> SimBuilder {
        SimBuilder {
            seed,
            config: SimConfig::default(),
            members: Vec::new(),
        }
    }
}

impl SimBuilder {
    /// Adds `n` members with no topics (named `n0`, `n1`, .. in order).
    pub fn members(mut self, n: usize) -> Self {
        self.members
            .extend(std::iter::repeat_n(OwnTopics::default(), n));
        self
    }

    /// Adds a member that announces and subscribes `own` before it joins.
    pub fn member(mut self, own: OwnTopics) -> Self {
        self.members.push(own);
        self
    }

    /// Each message takes between `min` and `max` (uniform, seeded); FIFO per link.
    pub fn latency(mut self, min: Duration, max: Duration) -> Self {
        self.config.latency = (min, max.max(min));
        self
    }

    /// Whether records are split into chunks at random points (exercises the deframers).
    pub fn split_records(mut self, split: bool) -> Self {
        self.config.chunking = split;
        self
    }

    /// The keepalive of every spoke and hub: a node silent this long is expelled.
    pub fn keepalive(mut self, keepalive: Duration) -> Self {
        self.config.keepalive = keepalive;
        self
    }

    /// How long a hub waits for a lost node to come back before purging it.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.config.grace = grace;
        self
    }

    /// The tombstones each history keeps.
    pub fn max_tombstones(mut self, max: usize) -> Self {
        self.config.max_tombstones = max;
        self
    }

    /// The bounds of every document host and replica (the same on every node, as in a real
    /// group). Small ones make states travel in several messages
    /// ([`max_chunk`](DocLimits::max_chunk)), patches on old bases rejected as stale
    /// ([`log_window`](DocLimits::log_window)) and replicas refuse patches
    /// ([`max_pending`](DocLimits::max_pending)).
    pub fn doc_limits(mut self, limits: DocLimits) -> Self {
        self.config.docs = limits;
        self
    }

    /// Starts the members (all at the start; they have not met yet: run the simulation).
    pub fn build(self) -> Sim {
        let mut sim = Sim::new(self.seed, self.config);
        for (i, own) in self.members.iter().enumerate() {
            sim.spawn(&format!("n{i}"), own);
        }
        sim
    }
}
