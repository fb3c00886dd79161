//! Fault schedules as values ([`Fault`], [`Schedule`]) and how one is played on a [`Sim`] and
//! checked: the group must converge after the last fault, stay converged, and pass every
//! topology check of [`check`].

use std::time::{Duration, Instant};

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};

use super::app::NodeIx;
use super::check::{self, Audit};
use super::group::{Sim, SimConfig};
use crate::data::Terms;
use crate::wire::Policy;
use crate::{OwnTopics, SpokeCmd};

/// Steps allowed to converge after the last fault.
const MAX_STEPS: usize = 400_000;

const TOPICS: [&str; 6] = ["alpha", "beta", "gamma", "delta", "eps", "zeta"];

/// The topics of the data schedules ([`Schedule::data_from_seed`]).
pub(crate) const DATA_TOPICS: [&str; 2] = ["d0", "d1"];

/// One fault. A `usize` picks a running, unfrozen member: the `n % count`-th, so any number
/// is valid; a fault with nobody to hit does nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// A new node starts with these topics and joins.
    Spawn(OwnTopics),
    /// `n` nodes with no topics start at the same instant (a join storm).
    JoinStorm(usize),
    /// A member crashes: its links hang up, the hub address is freed if it held it.
    Crash(usize),
    /// The hub's node crashes.
    CrashHub,
    /// The hub's node crashes and a new node starts at the same instant: survivors and the
    /// newcomer race for the hub address.
    HubRace,
    /// A member is stopped (SIGSTOP) for this long, then resumed; past the keepalive its hub
    /// expels it (a stall).
    Freeze(usize, Duration),
    /// A member leaves gracefully.
    Leave(usize),
    /// The hub's node leaves gracefully.
    LeaveHub,
    /// Every link of a member is lost (a connection reset); it keeps running.
    LinkLoss(usize),
    /// A member's application gives a command.
    Cmd(usize, SpokeCmd),
    /// A member's application subscribes to a topic on these terms ([`Sim::take`]).
    Take(usize, String, Terms),
    /// A member's application publishes this many inline messages on a topic
    /// ([`Sim::publish`]).
    Publish(usize, String, u64),
    /// A member is killed and the survivors' drivers confirm its death ([`Sim::kill`]; not
    /// for a member started by [`Fault::SpawnHidden`]). [`Fault::Crash`] is a death nobody
    /// confirms (drivers without pidfds).
    Kill(usize),
    /// The hub's node is killed, its death confirmed ([`Sim::kill`]).
    KillHub,
    /// The hub's node is killed, its death confirmed, and a new node that gets its pid starts
    /// at the same instant and races for the hub address ([`Sim::kill_reusing_pid`]).
    KillHubReusingPid,
    /// A new node starts in another pid namespace, with these topics: its death can never
    /// be confirmed ([`Sim::spawn_hidden`]).
    SpawnHidden(OwnTopics),
}

/// A whole run: the network, the members at the start, and faults at times from the start;
/// after the last fault the group is left alone to converge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// The simulation's seed (latencies, record splits, the members' own seeds).
    pub seed: u64,
    /// The range each message's latency is drawn from.
    pub latency: (Duration, Duration),
    /// The members at the start, with their topics.
    pub initial: Vec<OwnTopics>,
    /// Faults, each at a time from the start, in order.
    pub faults: Vec<(Duration, Fault)>,
}

fn topics(rng: &mut ChaCha8Rng) -> OwnTopics {
    let mut own = OwnTopics::default();
    for t in TOPICS {
        if rng.next_u64() % 10 < 3 {
            own.publishes
                .insert(t.into(), format!("mime/{}", rng.next_u64() % 2));
        }
        if rng.next_u64() % 10 < 3 {
            own.subscribes.insert(t.into());
        }
    }
    own
}

impl Schedule {
    /// `members` members with no topics, no faults, latency 20 µs to 2 ms.
    pub fn new(seed: u64, members: usize) -> Self {
        Self {
            seed,
            latency: (Duration::from_micros(20), Duration::from_millis(2)),
            initial: vec![OwnTopics::default(); members],
            faults: Vec::new(),
        }
    }

    /// Adds a fault at `at` from the start (kept in time order).
    pub fn fault(mut self, at: Duration, fault: Fault) -> Self {
        let i = self.faults.partition_point(|(t, _)| *t <= at);
        self.faults.insert(i, (at, fault));
        self
    }

    /// The schedule the crate's own property test derives from one seed: 2 to 6 members with
    /// random topics, latency up to 0.5–5 ms, then up to a dozen faults in the first three
    /// seconds (spawns, crashes, hub crashes, freezes of up to four seconds, leaves, commands).
    /// A seed names its schedule for good: `Schedule::from_seed(seed).run()` replays it.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut r = |n: u64| rng.next_u64() % n;
        let latency = (
            Duration::from_micros(20),
            Duration::from_micros(500 + r(4_500)),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let initial = (0..2 + rng.next_u64() % 5)
            .map(|_| topics(&mut rng))
            .collect();
        let faults: Vec<(Duration, Fault)> = (0..rng.next_u64() % 13)
            .map(|_| {
                let at = Duration::from_millis(rng.next_u64() % 3_000);
                let who = rng.next_u64() as usize;
                let fault = match rng.next_u64() % 20 {
                    0..=2 => Fault::Spawn(topics(&mut rng)),
                    3..=5 => Fault::Crash(who),
                    6..=8 => Fault::CrashHub,
                    9..=11 => {
                        Fault::Freeze(who, Duration::from_millis(100 + rng.next_u64() % 3_900))
                    }
                    12..=13 => Fault::Leave(who),
                    14 => Fault::LeaveHub,
                    _ => {
                        let topic = TOPICS[(rng.next_u64() % 6) as usize].to_string();
                        let cmd = match rng.next_u64() % 4 {
                            0 => SpokeCmd::Announce {
                                topic,
                                mime: "mime/x".into(),
                            },
                            1 => SpokeCmd::Retract { topic },
                            2 => SpokeCmd::Subscribe { topic },
                            _ => SpokeCmd::Unsubscribe { topic },
                        };
                        Fault::Cmd(who, cmd)
                    }
                };
                (at, fault)
            })
            .collect();
        Self::sorted(seed, latency, initial, faults)
    }

    /// A schedule of the data plane derived from one seed: 2 to 5 members, latency up to
    /// 0.5–5 ms, then 4 to 19 steps in the first three seconds: subscriptions to one of two
    /// topics (any policy, depth 1 to 8), bursts of 1 to 20 inline messages, freezes of 0.1 to
    /// 4 s (past the 2 s keepalive about half the time: expulsion and rejoin), hub crashes,
    /// crashes and joins. `Schedule::data_from_seed(seed).run()` replays it.
    pub fn data_from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xda7a);
        let mut r = |n: u64| rng.next_u64() % n;
        let latency = (
            Duration::from_micros(20),
            Duration::from_micros(500 + r(4_500)),
        );
        let members = 2 + r(4) as usize;
        let faults: Vec<(Duration, Fault)> = (0..4 + r(16))
            .map(|_| {
                let at = Duration::from_millis(r(3_000));
                let who = r(u64::MAX) as usize;
                let topic = DATA_TOPICS[r(2) as usize].to_string();
                let fault = match r(20) {
                    0..=5 => {
                        let policy = match r(3) {
                            0 => Policy::DropOldest,
                            1 => Policy::DropNewest,
                            _ => Policy::Block {
                                timeout_ms: 100 + r(900) as u32,
                            },
                        };
                        let terms = Terms {
                            policy,
                            depth: 1 + r(8) as u32,
                            ..Terms::default()
                        };
                        Fault::Take(who, topic, terms)
                    }
                    6..=12 => Fault::Publish(who, topic, 1 + r(20)),
                    13..=15 => Fault::Freeze(who, Duration::from_millis(100 + r(3_900))),
                    16 => Fault::CrashHub,
                    17 => Fault::Crash(who),
                    18 => Fault::Spawn(OwnTopics::default()),
                    _ => Fault::LinkLoss(who),
                };
                (at, fault)
            })
            .collect();
        Self::sorted(seed, latency, vec![OwnTopics::default(); members], faults)
    }

    /// A schedule of deaths derived from one seed: 2 to 6 members with random topics (and 0
    /// to 2 more in another pid namespace, whose deaths nobody can confirm), latency up to
    /// 0.5–5 ms, then up to a dozen faults in the first three seconds, mostly deaths:
    /// confirmed kills of members and of the hub (some with the hub's pid reused at once by a
    /// newcomer), unconfirmed crashes, freezes of up to four seconds (a stopped process is not
    /// dead), spawns (some hidden), leaves. `Schedule::deaths_from_seed(seed).run()` replays
    /// it.
    pub fn deaths_from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdead);
        let latency = (
            Duration::from_micros(20),
            Duration::from_micros(500 + rng.next_u64() % 4_500),
        );
        let initial = (0..2 + rng.next_u64() % 5)
            .map(|_| topics(&mut rng))
            .collect();
        let hidden = (0..rng.next_u64() % 3)
            .map(|_| (Duration::ZERO, Fault::SpawnHidden(OwnTopics::default())));
        let mut faults: Vec<(Duration, Fault)> = hidden.collect();
        for _ in 0..rng.next_u64() % 13 {
            let at = Duration::from_millis(rng.next_u64() % 3_000);
            let who = rng.next_u64() as usize;
            let fault = match rng.next_u64() % 20 {
                0..=4 => Fault::KillHub,
                5..=8 => Fault::Kill(who),
                9 => Fault::KillHubReusingPid,
                10 => Fault::CrashHub,
                11 => Fault::Crash(who),
                12..=13 => Fault::Freeze(who, Duration::from_millis(100 + rng.next_u64() % 3_900)),
                14..=15 => Fault::Spawn(topics(&mut rng)),
                16 => Fault::SpawnHidden(topics(&mut rng)),
                17 => Fault::Leave(who),
                18 => Fault::LeaveHub,
                _ => Fault::HubRace,
            };
            faults.push((at, fault));
        }
        Self::sorted(seed, latency, initial, faults)
    }

    /// A schedule of `faults` in time order.
    fn sorted(
        seed: u64,
        latency: (Duration, Duration),
        initial: Vec<OwnTopics>,
        mut faults: Vec<(Duration, Fault)>,
    ) -> Self {
        faults.sort_by_key(|(at, _)| *at);
        Self {
            seed,
            latency,
            initial,
            faults,
        }
    }

    /// Plays the schedule and leaves the group converged and quiet for five simulated seconds;
    /// fails if it does not converge or an invariant breaks on the way. The simulation is
    /// returned for further checks.
    pub fn play(&self) -> Result<Sim, Failure> {
        self.play_inner(&mut 0).map(|(sim, _)| sim)
    }

    /// Plays the schedule and runs every topology check of [`check`] (one hub,
    /// convergence, equal histories, events reported once and replaying to each view, terms
    /// monotonic, no ghosts, no flaps, bounded tombstones), then lets every application read
    /// its queues and checks what they got: in order, none twice, no hole untold
    /// ([`check::deliveries`]), and nothing silently missing at the
    /// end ([`check::deliveries_complete`]).
    pub fn run(&self) -> Result<Outcome, Failure> {
        let mut max_excess = 0;
        let (mut sim, steps_to_converge) = self.play_inner(&mut max_excess)?;
        let fail = |e: check::Violation| self.failure(e.to_string());
        check::quiet(&sim).map_err(fail)?;
        sim.read_inboxes();
        check::deliveries(&sim).map_err(fail)?;
        check::deliveries_complete(&sim).map_err(fail)?;
        if max_excess > sim.config.max_tombstones {
            return Err(self.failure(format!(
                "a history held {max_excess} records beyond the live state"
            )));
        }
        let audit = check::audit(&sim);
        check::no_flaps_or_ghosts(&audit).map_err(fail)?;
        Ok(Outcome {
            steps_to_converge,
            hub_changes: sim.hubs_started.len(),
            max_history_excess: max_excess,
            audit,
        })
    }

    /// A failure of this schedule, with how to replay it.
    pub(crate) fn failure(&self, why: String) -> Failure {
        let replay = if *self == Self::from_seed(self.seed) {
            format!("ipc_proto::sim::Schedule::from_seed({}).run()", self.seed)
        } else if *self == Self::deaths_from_seed(self.seed) {
            format!(
                "ipc_proto::sim::Schedule::deaths_from_seed({}).run()",
                self.seed
            )
        } else if *self == Self::data_from_seed(self.seed) {
            format!(
                "ipc_proto::sim::Schedule::data_from_seed({}).run()",
                self.seed
            )
        } else {
            format!("{}.run()", self.to_rust())
        };
        Failure { why, replay }
    }

    /// The schedule as a Rust expression (with `std::time::Duration` and `ipc_proto::sim::*`
    /// in scope); topics and commands are written in their `Debug` form.
    fn to_rust(&self) -> String {
        let us = |d: Duration| format!("Duration::from_micros({})", d.as_micros());
        let initial = if self.initial.iter().all(|o| *o == OwnTopics::default()) {
            format!("vec![OwnTopics::default(); {}]", self.initial.len())
        } else {
            format!("{:?}", self.initial)
        };
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(at, f)| {
                let f = match f {
                    Fault::Freeze(w, d) => format!("Fault::Freeze({w}, {})", us(*d)),
                    f => format!("Fault::{f:?}"),
                };
                format!("({}, {f})", us(*at))
            })
            .collect();
        format!(
            "Schedule {{ seed: {}, latency: ({}, {}), initial: {initial}, faults: vec![{}] }}",
            self.seed,
            us(self.latency.0),
            us(self.latency.1),
            faults.join(", ")
        )
    }

    fn play_inner(&self, max_excess: &mut usize) -> Result<(Sim, usize), Failure> {
        let config = SimConfig {
            latency: self.latency,
            ..SimConfig::default()
        };
        let mut sim = Sim::new(self.seed, config);
        for (i, own) in self.initial.iter().enumerate() {
            sim.spawn(&format!("n{i}"), own);
        }
        let start = sim.now();
        let mut resumes: Vec<(Instant, NodeIx)> = Vec::new();
        let explain = std::env::var("IPC_SIM_EXPLAIN").is_ok();
        for (at, fault) in &self.faults {
            run_to(&mut sim, start + *at, &mut resumes);
            *max_excess = (*max_excess).max(check::beyond_live(&sim));
            if explain {
                println!("FAULT {:.1} ms {fault:?}", sim.ms(sim.now()));
            }
            apply(&mut sim, fault, &mut resumes);
            if sim.members().count() == 0 {
                sim.spawn("last-resort", &OwnTopics::default());
            }
        }
        while let Some(&(at, _)) = resumes.iter().min_by_key(|(at, _)| *at) {
            run_to(&mut sim, at, &mut resumes);
        }
        let steps_before = sim.steps;
        // A node frozen near the keepalive limit may still be expelled after it resumed (its
        // silence began before the freeze): let every such verdict fall first.
        sim.run_for(sim.config.keepalive + Duration::from_millis(600));
        sim.settle(MAX_STEPS).map_err(|e| self.failure(e))?;
        let steps = sim.steps - steps_before;
        // Quiescent: nothing changes any more, through several keepalive periods.
        let converged_at = sim.now();
        sim.run_for(Duration::from_secs(5));
        if let Some(why) = sim.divergence() {
            let state = sim.describe();
            return Err(self.failure(format!("diverged after converging: {why}\n{state}")));
        }
        check::silent_since(&sim, converged_at).map_err(|e| self.failure(e.to_string()))?;
        *max_excess = (*max_excess).max(check::beyond_live(&sim));
        if explain {
            for (t, ix, term) in &sim.hubs_started {
                let name = &sim.nodes[ix.0].name;
                println!(
                    "hub started at {:.1} ms: {name} term {}",
                    sim.ms(*t),
                    term.0
                );
            }
            println!("{}", sim.describe());
        }
        Ok((sim, steps))
    }
}

/// Applies one fault now.
fn apply(sim: &mut Sim, fault: &Fault, resumes: &mut Vec<(Instant, NodeIx)>) {
    let pick = |sim: &Sim, who: usize| {
        let members: Vec<_> = sim.members().filter(|m| !sim.nodes[m.0].frozen).collect();
        (!members.is_empty()).then(|| members[who % members.len()])
    };
    let spawn = |sim: &mut Sim, own: &OwnTopics| {
        let name = format!("n{}", sim.nodes.len());
        sim.spawn(&name, own);
    };
    match fault {
        Fault::Spawn(own) => spawn(sim, own),
        Fault::JoinStorm(n) => (0..*n).for_each(|_| spawn(sim, &OwnTopics::default())),
        Fault::Crash(who) => {
            if let Some(ix) = pick(sim, *who) {
                sim.crash(ix);
            }
        }
        Fault::CrashHub | Fault::HubRace => {
            let hub = sim.hubs().next();
            if let Some(ix) = hub {
                sim.crash(ix);
            }
            if *fault == Fault::HubRace {
                spawn(sim, &OwnTopics::default());
            }
        }
        Fault::Freeze(who, d) => {
            if let Some(ix) = pick(sim, *who) {
                sim.freeze(ix);
                resumes.push((sim.now() + *d, ix));
            }
        }
        Fault::Leave(who) => {
            if let Some(ix) = pick(sim, *who) {
                sim.leave(ix);
            }
        }
        Fault::LeaveHub => {
            let hub = sim.hubs().next().filter(|ix| !sim.nodes[ix.0].frozen);
            if let Some(ix) = hub {
                sim.leave(ix);
            }
        }
        Fault::LinkLoss(who) => {
            if let Some(ix) = pick(sim, *who) {
                sim.cut_links(ix);
            }
        }
        Fault::Cmd(who, cmd) => {
            if let Some(ix) = pick(sim, *who) {
                sim.cmd(ix, cmd.clone());
            }
        }
        Fault::Take(who, topic, terms) => {
            if let Some(ix) = pick(sim, *who) {
                sim.take(ix, topic, *terms);
            }
        }
        Fault::Publish(who, topic, count) => {
            if let Some(ix) = pick(sim, *who) {
                sim.publish(ix, topic, *count);
            }
        }
        Fault::Kill(who) => {
            if let Some(ix) = pick(sim, *who) {
                sim.kill(ix);
            }
        }
        Fault::KillHub => {
            let hub = sim.hubs().next();
            if let Some(ix) = hub {
                sim.kill(ix);
            }
        }
        Fault::KillHubReusingPid => {
            let hub = sim.hubs().next();
            if let Some(ix) = hub {
                let name = format!("n{}", sim.nodes.len());
                sim.kill_reusing_pid(ix, &name, &OwnTopics::default());
            }
        }
        Fault::SpawnHidden(own) => {
            let name = format!("n{}", sim.nodes.len());
            sim.spawn_hidden(&name, own);
        }
    }
}

/// Runs to `until`, resuming frozen nodes on time.
fn run_to(sim: &mut Sim, until: Instant, resumes: &mut Vec<(Instant, NodeIx)>) {
    loop {
        let next = resumes
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at <= until)
            .min_by_key(|(_, (at, _))| *at);
        let Some((i, &(at, ix))) = next else { break };
        resumes.remove(i);
        if at > sim.now() {
            sim.run_for(at - sim.now());
        }
        sim.resume(ix);
    }
    if until > sim.now() {
        sim.run_for(until - sim.now());
    }
}

/// What a run of a schedule measured.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Outcome {
    /// Steps from the last fault (and keepalive verdicts) to convergence.
    pub steps_to_converge: usize,
    /// Hubs started.
    pub hub_changes: usize,
    /// The most records a history held beyond the live state (tombstones), at fault times and
    /// at the end; bounded by the tombstone cap.
    pub max_history_excess: usize,
    /// What the audit of every member's events found.
    pub audit: Audit,
}

/// A schedule that failed: why, and a Rust expression that replays it.
#[derive(Clone, Debug)]
pub struct Failure {
    /// What broke, with every node's state.
    pub why: String,
    /// An expression that replays the failing run, e.g.
    /// `ipc_proto::sim::Schedule::from_seed(42).run()`.
    pub replay: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\nreplay: {}", self.why, self.replay)
    }
}

impl std::error::Error for Failure {}
