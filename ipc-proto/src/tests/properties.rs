//! Properties over random fault schedules.
//!
//! Each schedule is derived from one seed: a few nodes with random topics, then up to a dozen
//! faults in the first three simulated seconds (nodes started, crashed, frozen for up to four
//! seconds, leaving gracefully, the hub crashed or leaving, topic commands), then quiet. The
//! group must converge and stay converged, and every node's record of what it saw must hold up.
//!
//! `cargo test` runs [`DEFAULT_SCHEDULES`] schedules; set `IPC_SIM_SCHEDULES` for more. A failing
//! seed is printed, kept by proptest in `proptest-regressions/`, and can be pasted into
//! [`replay_seed`]; `IPC_SIM_EXPLAIN=1` prints every flap and ghost the audit finds, the hubs
//! started and the final state.

use crate::sim::{Outcome, Schedule};

/// Schedules per `cargo test` run, and the test functions they are split over.
const SCHEDULES: super::Shards = super::Shards {
    var: "IPC_SIM_SCHEDULES",
    default: DEFAULT_SCHEDULES,
    shards: 4,
};
const DEFAULT_SCHEDULES: u32 = 1_000;

/// Runs one shard of the schedules and reports what they measured.
fn shard(shard: u32) {
    report(&SCHEDULES.run(file!(), shard, |seed| {
        let schedule = Schedule::from_seed(seed);
        schedule.run().map_err(|e| format!("{e}\n{schedule:#?}"))
    }));
}

super::shard_tests!(SCHEDULES, shard;
    schedules_shard_0 = 0, schedules_shard_1 = 1, schedules_shard_2 = 2, schedules_shard_3 = 3);

fn report(outcomes: &[Outcome]) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "schedules {} | worst convergence {} steps | hubs started {} | flaps {} (all purged: \
         reconnected after the grace) | duplicates {} | ghost events from stale histories {} | \
         most records beyond live state {} (cap {})",
        outcomes.len(),
        outcomes
            .iter()
            .map(|o| o.steps_to_converge)
            .max()
            .unwrap_or(0),
        sum(|o| o.hub_changes),
        sum(|o| o.audit.spurious_removals),
        sum(|o| o.audit.duplicates),
        sum(|o| o.audit.late_ghosts),
        outcomes
            .iter()
            .map(|o| o.max_history_excess)
            .max()
            .unwrap_or(0),
        crate::DEFAULT_TOMBSTONES,
    );
}

/// Seeds the random search found breaking a property, replayed on every run. proptest's file
/// in `proptest-regressions/` keeps the failures it found itself (as its own rng seeds); a
/// seed reported from elsewhere goes here.
///
/// - 16187537116908072641 (2026-12-04): a newcomer took a snapshot from a hub started with a
///   stale history, which showed a node gone for 1.6 s as joined; the hub was then stopped
///   (SIGSTOP) for 2.47 s, 8 ms before its grace ran out, and declared the node gone the moment
///   it resumed. The audit counted the grace in wall time; it counts it in the hub's running
///   time now (see `check::audit`'s ghost deadline).
/// - 14191001027486424432 (2026-12-03, shard 3): "a late ghost outlives a grace period"; it
///   was an ignored test, not understood. It passes at the commit that added it here, where
///   its ghosts are purged by the next hub within its grace. The run a seed names depends
///   on much of the crate, which has changed since it was found, so whether it failed then as
///   the stopped-hub case above cannot be told from this tree.
const REGRESSION_SEEDS: [u64; 2] = [16_187_537_116_908_072_641, 14_191_001_027_486_424_432];

#[test]
fn regression_seeds() {
    for seed in REGRESSION_SEEDS {
        Schedule::from_seed(seed)
            .run()
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
}

/// Replays one schedule: paste a failing seed into `SEED`, or set `IPC_SIM_SEED`. With
/// `RUST_LOG=debug` the machines log every transition; with `IPC_SIM_EXPLAIN=1` the faults, the
/// hubs started, the final state and every flap or ghost the audit finds are printed:
/// `IPC_SIM_EXPLAIN=1 cargo test -p ipc-proto replay_seed -- --nocapture`.
#[test]
fn replay_seed() {
    const SEED: u64 = 13_113_493_696_621_984_838;
    let seed = super::seed_to_replay("IPC_SIM_SEED", SEED);
    let outcome = Schedule::from_seed(seed)
        .run()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    report(&[outcome]);
}
