//! Confirmed and unconfirmed deaths (issue 17): a death the survivors' drivers confirm needs
//! no grace; one nobody can confirm (another pid namespace, no pidfd) still waits for it; a
//! stopped process is no death; a reused pid is no confirmation.
//!
//! The properties run [`DEFAULT_SCHEDULES`] schedules of [`Schedule::deaths_from_seed`] (set
//! `IPC_SIM_SCHEDULES` for more), every check of [`Schedule::run`] on each (no flaps: no live
//! member reported left; every dead member left once per survivor; views converge), and the
//! simulator's own check that every confirmed death a hub acted on was a real one.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::sim::{NodeIx, Outcome, Schedule, Sim, SimConfig, strategy};
use crate::{Event, NodeId, OwnTopics};

const STEPS: usize = 200_000;
const GRACE: Duration = Duration::from_millis(200);

/// Schedules per `cargo test` run, and the test functions they are split over.
const SCHEDULES: super::Shards = super::Shards {
    var: "IPC_SIM_SCHEDULES",
    default: DEFAULT_SCHEDULES,
    shards: 4,
};
const DEFAULT_SCHEDULES: u32 = 1_000;

fn settle(sim: &mut Sim) {
    if let Err(e) = sim.run_until(STEPS, Sim::converged) {
        panic!("{e}: {:?}\n{}", sim.divergence(), sim.describe());
    }
}

/// When `observer` reported `node` left, if it did.
fn left_at(sim: &Sim, observer: NodeIx, node: NodeId) -> Option<Instant> {
    sim.nodes[observer.0]
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::NodeLeft { node: n, .. } if *n == node))
        .map(|(t, _)| *t)
}

/// A group of `n` nodes whose first (the hub) is `hidden` or not; settled.
fn group(seed: u64, n: usize, hub_hidden: bool) -> (Sim, Vec<NodeIx>) {
    let mut sim = Sim::new(seed, SimConfig::default());
    let first = if hub_hidden {
        sim.spawn_hidden("hub", &OwnTopics::default())
    } else {
        sim.spawn("hub", &OwnTopics::default())
    };
    settle(&mut sim);
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(sim.spawn(&format!("n{i}"), &OwnTopics::default()));
    }
    settle(&mut sim);
    assert_eq!(sim.hubs().collect::<Vec<_>>(), [first]);
    (sim, nodes)
}

/// Kills (confirmed) or crashes (unconfirmed) the hub and returns, for each survivor, how long
/// after the death it reported the hub's node left.
fn hub_death(seed: u64, confirmed: bool) -> (Sim, Vec<Duration>) {
    let (mut sim, nodes) = group(seed, 5, !confirmed);
    let hub = nodes[0];
    let id = sim.nodes[hub.0].id();
    let t0 = sim.now();
    if confirmed {
        sim.kill(hub);
    } else {
        sim.crash(hub);
    }
    settle(&mut sim);
    crate::sim::check::all(&sim).unwrap_or_else(|e| panic!("{e}"));
    let after = nodes[1..]
        .iter()
        .map(|&ix| {
            let t = left_at(&sim, ix, id).expect("every survivor reports the hub left");
            t - t0
        })
        .collect();
    (sim, after)
}

#[test]
fn confirmed_hub_death_needs_no_grace() {
    let mut all = Vec::new();
    for seed in 0..20 {
        let (sim, after) = hub_death(seed, true);
        all.extend(after.iter().copied());
        let worst = after.iter().max().expect("survivors");
        assert!(
            *worst < GRACE / 4,
            "seed {seed}: the dead hub left after {after:?} (grace {GRACE:?})"
        );
        // The new hub declared it dead on its own link's exit report, not by the grace.
        let new_hub = sim.hubs().next().expect("a hub");
        let evts = &sim.nodes[new_hub.0].transcript;
        assert!(evts.contains(&"NodeExited"), "seed {seed}: {evts:?}");
        assert!(!evts.contains(&"NodePurged"), "seed {seed}: {evts:?}");
    }
    all.sort();
    println!(
        "confirmed hub death: node_left on {} survivors after median {:?}, max {:?} (grace {GRACE:?})",
        all.len(),
        all[all.len() / 2],
        all[all.len() - 1]
    );
}

#[test]
fn unconfirmed_hub_death_waits_the_grace() {
    let mut all = Vec::new();
    for seed in 0..20 {
        let (sim, after) = hub_death(seed, false);
        all.extend(after.iter().copied());
        let first = after.iter().min().expect("survivors");
        assert!(
            *first >= GRACE,
            "seed {seed}: a hub nobody could confirm dead left after {after:?} (grace {GRACE:?})"
        );
        let new_hub = sim.hubs().next().expect("a hub");
        assert!(
            sim.nodes[new_hub.0].transcript.contains(&"NodePurged"),
            "seed {seed}"
        );
    }
    all.sort();
    println!(
        "unconfirmed hub death: node_left on {} survivors after min {:?}, median {:?}",
        all.len(),
        all[0],
        all[all.len() / 2]
    );
}

/// The hub is killed and a newcomer gets its pid at once: the newcomer is never reported
/// left, whoever wins the address; the dead hub is.
#[test]
fn a_reused_pid_is_no_confirmation() {
    for seed in 0..20 {
        let (mut sim, nodes) = group(seed, 4, false);
        let hub = nodes[0];
        let newcomer = sim.kill_reusing_pid(hub, "reuser", &OwnTopics::default());
        settle(&mut sim);
        crate::sim::check::all(&sim).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let (dead, new) = (sim.nodes[hub.0].id(), sim.nodes[newcomer.0].id());
        for ix in sim.members() {
            assert_eq!(left_at(&sim, ix, new), None, "seed {seed}");
            if ix != newcomer {
                assert!(left_at(&sim, ix, dead).is_some(), "seed {seed}");
            }
        }
    }
}

/// Mixed: the hub is killed (confirmed) while a member in another pid namespace crashes at the
/// same instant: the hub leaves at once, the hidden member only after the grace.
#[test]
fn mixed_deaths_each_by_its_own_rule() {
    for seed in 0..20 {
        let (mut sim, nodes) = group(seed, 4, false);
        let hidden = sim.spawn_hidden("hidden", &OwnTopics::default());
        settle(&mut sim);
        let t0 = sim.now();
        sim.kill(nodes[0]);
        sim.crash(hidden);
        settle(&mut sim);
        crate::sim::check::all(&sim).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let (hub_id, hidden_id) = (sim.nodes[nodes[0].0].id(), sim.nodes[hidden.0].id());
        for &ix in &nodes[1..] {
            let hub_left = left_at(&sim, ix, hub_id).expect("hub left") - t0;
            let hidden_left = left_at(&sim, ix, hidden_id).expect("hidden left") - t0;
            assert!(hub_left < GRACE / 4, "seed {seed}: {hub_left:?}");
            assert!(hidden_left >= GRACE, "seed {seed}: {hidden_left:?}");
        }
    }
}

/// A stopped process is not dead: frozen past the keepalive it is expelled, never declared
/// dead on a confirmation, and it comes back.
#[test]
fn a_stopped_member_is_no_death() {
    let (mut sim, nodes) = group(7, 3, false);
    sim.freeze(nodes[2]);
    sim.run_for(Duration::from_secs(3));
    sim.resume(nodes[2]);
    settle(&mut sim);
    crate::sim::check::all(&sim).unwrap_or_else(|e| panic!("{e}"));
    for n in &sim.nodes {
        assert!(!n.transcript.contains(&"NodeExited"));
    }
}

/// A spoke killed while the hub runs leaves at once (its link hangs up); the exit report that
/// follows changes nothing.
#[test]
fn a_killed_spoke_leaves_once() {
    let (mut sim, nodes) = group(3, 4, false);
    let id = sim.nodes[nodes[3].0].id();
    let t0 = sim.now();
    sim.kill(nodes[3]);
    settle(&mut sim);
    sim.run_for(GRACE * 2);
    crate::sim::check::all(&sim).unwrap_or_else(|e| panic!("{e}"));
    for &ix in &nodes[..3] {
        let left = sim.nodes[ix.0]
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::NodeLeft { node, .. } if *node == id))
            .count();
        assert_eq!(left, 1);
        assert!(left_at(&sim, ix, id).expect("left") - t0 < GRACE / 4);
    }
}

fn shard(shard: u32) {
    report(&SCHEDULES.run(file!(), shard, |seed| {
        let schedule = Schedule::deaths_from_seed(seed);
        schedule.run().map_err(|e| format!("{e}\n{schedule:#?}"))
    }));
}

super::shard_tests!(SCHEDULES, shard;
    death_schedules_shard_0 = 0,
    death_schedules_shard_1 = 1,
    death_schedules_shard_2 = 2,
    death_schedules_shard_3 = 3,
);

fn report(outcomes: &[Outcome]) {
    println!(
        "death schedules {} | hubs started {} | flaps {} (all purged after the grace) | \
         worst convergence {} steps",
        outcomes.len(),
        outcomes.iter().map(|o| o.hub_changes).sum::<usize>(),
        outcomes
            .iter()
            .map(|o| o.audit.spurious_removals)
            .sum::<usize>(),
        outcomes
            .iter()
            .map(|o| o.steps_to_converge)
            .max()
            .unwrap_or(0),
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Shrinkable schedules of the death faults alone (the mixture of confirmable and
    /// unconfirmable deaths, stalls, pid reuse).
    #[test]
    fn death_faults_shrink(schedule in strategy::death_schedules(2..=6, 8)) {
        if let Err(e) = schedule.run() {
            prop_assert!(false, "{e}");
        }
    }
}

/// Replays one death schedule: `IPC_SIM_SEED=.. cargo test -p ipc-proto replay_death_seed`.
#[test]
fn replay_death_seed() {
    const SEED: u64 = 1;
    let seed = super::seed_to_replay("IPC_SIM_SEED", SEED);
    let outcome = Schedule::deaths_from_seed(seed)
        .run()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    report(&[outcome]);
}

/// The death schedules do confirm deaths (and still purge the unconfirmable after the grace):
/// the property above is not vacuous.
#[test]
fn death_schedules_exercise_both_rules() {
    let (mut exited, mut purged) = (0, 0);
    for seed in 0..200 {
        let sim = Schedule::deaths_from_seed(seed)
            .play()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for n in sim.nodes() {
            exited += n
                .transcript()
                .iter()
                .filter(|e| **e == "NodeExited")
                .count();
            purged += n
                .transcript()
                .iter()
                .filter(|e| **e == "NodePurged")
                .count();
        }
    }
    println!("200 death schedules: {exited} deaths confirmed, {purged} purged after the grace");
    assert!(
        exited > 50 && purged > 0,
        "{exited} confirmed, {purged} purged"
    );
}
