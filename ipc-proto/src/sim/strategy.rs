//! proptest strategies for seeds, faults and schedules. A failing case prints its
//! [`Schedule`]; [`Schedule::run`]'s error also says how to replay it.

use std::time::Duration;

use proptest::prelude::*;

use super::schedule::{Fault, Schedule};

/// The schedules the crate's own property test runs: one `u64` each, through
/// [`Schedule::from_seed`] (a failing case is a seed, and the seed replays it).
pub fn seeded() -> impl Strategy<Value = Schedule> {
    any::<u64>().prop_map(Schedule::from_seed)
}

/// A fault that loses or stalls members: crash (any member or the hub), a graceful leave,
/// a stall of 0.1 to 4 s (past the 2 s keepalive about half the time), a link loss, a join
/// storm of up to `storm` nodes, or a hub race.
pub fn fault(storm: usize) -> impl Strategy<Value = Fault> {
    let who = any::<usize>();
    prop_oneof![
        who.prop_map(Fault::Crash),
        Just(Fault::CrashHub),
        (who, 100..4_000u64).prop_map(|(w, ms)| Fault::Freeze(w, Duration::from_millis(ms))),
        who.prop_map(Fault::Leave),
        Just(Fault::LeaveHub),
        who.prop_map(Fault::LinkLoss),
        (1..=storm.max(1)).prop_map(Fault::JoinStorm),
        Just(Fault::HubRace),
    ]
}

/// Up to `max` faults from `fault` at random times in the first `within`, in time order.
pub fn faults(
    fault: impl Strategy<Value = Fault>,
    max: usize,
    within: Duration,
) -> impl Strategy<Value = Vec<(Duration, Fault)>> {
    let ms = within.as_millis().max(1) as u64;
    prop::collection::vec((0..ms, fault), 0..=max).prop_map(|mut v| {
        v.sort_by_key(|(at, _)| *at);
        v.into_iter()
            .map(|(at, f)| (Duration::from_millis(at), f))
            .collect()
    })
}

/// Schedules of `members` members with no topics and up to `max_faults` faults of
/// [`fault`] in the first three seconds; the seed and latency vary too. These shrink toward
/// fewer and earlier faults.
pub fn schedules(
    members: std::ops::RangeInclusive<usize>,
    max_faults: usize,
) -> impl Strategy<Value = Schedule> {
    (
        any::<u64>(),
        members,
        500..5_000u64,
        faults(fault(4), max_faults, Duration::from_secs(3)),
    )
        .prop_map(|(seed, n, max_us, faults)| Schedule {
            latency: (Duration::from_micros(20), Duration::from_micros(max_us)),
            faults,
            ..Schedule::new(seed, n)
        })
}

/// A death, confirmed or not, or a stall that is no death: a member or the hub killed with its
/// death confirmed (sometimes the hub's pid reused at once by a newcomer), a crash nobody
/// confirms, a node started in another pid namespace (its death unconfirmable), a stall of
/// 0.1 to 4 s, or a hub race.
pub fn death_fault() -> impl Strategy<Value = Fault> {
    let who = any::<usize>();
    prop_oneof![
        who.prop_map(Fault::Kill),
        Just(Fault::KillHub),
        Just(Fault::KillHubReusingPid),
        who.prop_map(Fault::Crash),
        Just(Fault::CrashHub),
        Just(Fault::SpawnHidden(crate::OwnTopics::default())),
        (who, 100..4_000u64).prop_map(|(w, ms)| Fault::Freeze(w, Duration::from_millis(ms))),
        Just(Fault::HubRace),
    ]
}

/// Schedules of `members` members with no topics and up to `max_faults` faults of
/// [`death_fault`] in the first three seconds: the mixture of confirmable and unconfirmable
/// deaths. These shrink toward fewer and earlier faults.
pub fn death_schedules(
    members: std::ops::RangeInclusive<usize>,
    max_faults: usize,
) -> impl Strategy<Value = Schedule> {
    (
        any::<u64>(),
        members,
        500..5_000u64,
        faults(death_fault(), max_faults, Duration::from_secs(3)),
    )
        .prop_map(|(seed, n, max_us, faults)| Schedule {
            latency: (Duration::from_micros(20), Duration::from_micros(max_us)),
            faults,
            ..Schedule::new(seed, n)
        })
}

/// A step of a data schedule: a subscription to one of `topics` (any policy, depth 1 to 8), a
/// burst of 1 to 20 inline messages on one, a stall of 0.1 to 4 s (past the keepalive about
/// half the time: expulsion and rejoin), a hub crash or a join.
pub fn data_step(topics: &'static [&'static str]) -> impl Strategy<Value = Fault> {
    use crate::data::Terms;
    use crate::wire::Policy;
    let who = any::<usize>();
    let topic = prop::sample::select(topics).prop_map(String::from);
    let policy = prop_oneof![
        Just(Policy::DropOldest),
        Just(Policy::DropNewest),
        (100..1_000u32).prop_map(|timeout_ms| Policy::Block { timeout_ms }),
    ];
    let terms = (policy, 1..=8u32).prop_map(|(policy, depth)| Terms {
        policy,
        depth,
        ..Terms::default()
    });
    prop_oneof![
        3 => (who, topic.clone(), terms).prop_map(|(w, t, terms)| Fault::Take(w, t, terms)),
        3 => (who, topic, 1..=20u64).prop_map(|(w, t, n)| Fault::Publish(w, t, n)),
        2 => (who, 100..4_000u64).prop_map(|(w, ms)| Fault::Freeze(w, Duration::from_millis(ms))),
        1 => Just(Fault::CrashHub),
        1 => Just(Fault::Spawn(crate::OwnTopics::default())),
    ]
}

/// Data schedules: `members` members with no topics and up to `max_steps` steps of
/// [`data_step`] on two topics in the first three seconds; the seed and latency vary too.
pub fn data_schedules(
    members: std::ops::RangeInclusive<usize>,
    max_steps: usize,
) -> impl Strategy<Value = Schedule> {
    (
        any::<u64>(),
        members,
        500..5_000u64,
        faults(data_step(&["d0", "d1"]), max_steps, Duration::from_secs(3)),
    )
        .prop_map(|(seed, n, max_us, faults)| Schedule {
            latency: (Duration::from_micros(20), Duration::from_micros(max_us)),
            faults,
            ..Schedule::new(seed, n)
        })
}
