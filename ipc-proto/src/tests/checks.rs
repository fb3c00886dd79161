//! The simulator's checks catch what they claim to: each is run on a deliberately broken
//! group (a world that forgets who holds the hub address, tampered event logs, a tampered
//! document history) and must fail, after passing on the healthy one.

use std::time::Duration;

use serde_json::json;

use crate::sim::{Fault, NodeIx, Schedule, Sim, check};
use crate::{Event, Term};

const STEPS: usize = 200_000;

fn settled(members: usize) -> Sim {
    let mut sim = Sim::builder(3).members(members).build();
    sim.settle(STEPS).expect("settles");
    check::all(&sim).expect("a healthy group passes every check");
    sim
}

#[test]
fn one_hub_catches_two_hubs() {
    let mut sim = settled(2);
    // A broken world: the address is free although the hub still listens, so a newcomer
    // binds it too.
    sim.bind = None;
    sim.spawn("intruder", &crate::OwnTopics::default());
    sim.run_for(Duration::from_secs(2));
    let err = check::one_hub(&sim).expect_err("two hubs ran");
    assert!(
        err.0
            .contains("hubs [NodeIx(0)] ran, the address held by None"),
        "{err}"
    );
    let two = sim
        .violations
        .iter()
        .any(|v| v.contains("hubs [NodeIx(0), NodeIx(2)]"));
    assert!(two, "{:?}", sim.violations);
    assert!(check::converged(&sim).is_err());
}

#[test]
fn reported_once_catches_a_repeat_and_a_gap() {
    let mut sim = settled(3);
    let events = &mut sim.nodes[1].events;
    let repeat = events
        .iter()
        .rfind(|(_, e)| matches!(e, Event::NodeJoined { .. }));
    let repeat = repeat.expect("n1 saw joins").clone();
    events.push(repeat);
    let err = check::reported_once(&sim).expect_err("a join reported twice");
    assert!(err.0.contains("n1 reported NodeJoined"), "{err}");
    sim.nodes[1].events.pop();
    sim.nodes[1].events.pop();
    let err = check::reported_once(&sim).expect_err("a join never reported");
    assert!(err.0.contains("do not replay"), "{err}");
}

#[test]
fn terms_monotonic_catches_a_hub_below_a_known_term() {
    let mut sim = settled(2);
    let (at, ix, _) = sim.hubs_started[0];
    let early = at - Duration::from_millis(1);
    let known = Event::HubChanged {
        node: sim.nodes[1].id(),
        term: Term(7),
    };
    sim.nodes[ix.0].events.insert(0, (early, known));
    let err = check::terms_monotonic(&sim).expect_err("a hub below a known term");
    assert!(err.0.contains("knowing Some(Term(7))"), "{err}");
}

#[test]
fn no_flaps_catches_a_running_node_reported_gone() {
    let mut sim = settled(3);
    sim.run_for(Duration::from_secs(5));
    let node = sim.nodes[2].id();
    let now = sim.now();
    let info = (sim.nodes[0].events.iter())
        .find_map(|(_, e)| match e {
            Event::NodeJoined { info, .. } if info.id == node => Some(info.clone()),
            _ => None,
        })
        .expect("node 0 saw node 2 join");
    sim.nodes[0]
        .events
        .push((now, Event::NodeLeft { node, info }));
    let audit = check::audit(&sim);
    assert_eq!(audit.spurious_removals, 1, "{audit:?}");
    assert!(check::no_flaps_or_ghosts(&audit).is_err());
}

/// A hub stopped (SIGSTOP) within its grace purges nobody until it resumes: the audit counts
/// the grace in the hub's running time. Seed 16187537116908072641: n3 starts a hub from a
/// stale history that shows n0 (gone for 1.6 s) joined, newcomer n6 takes its snapshot, and
/// n3 is stopped 192 ms into its 200 ms grace, for 2.47 s; n6 hears n0 leave as n3 resumes.
/// With that stop taken out of the record, as if the hub had run all along, the same events
/// are a ghost that outlived the grace.
#[test]
fn no_ghosts_counts_the_grace_in_the_hubs_running_time() {
    let seed = 16_187_537_116_908_072_641;
    let mut sim = Schedule::from_seed(seed)
        .play()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    let audit = check::audit(&sim);
    assert_eq!(
        (audit.late_ghosts, audit.avoidable_ghosts),
        (3, 0),
        "{audit:?}"
    );
    let hub = &mut sim.nodes[3];
    assert_eq!(hub.name(), "n3");
    let (a, b) = hub.frozen_spans.pop().expect("n3 was stopped as the hub");
    assert!(b - a > Duration::from_secs(2), "{a:?}..{b:?}");
    let audit = check::audit(&sim);
    assert_eq!(audit.avoidable_ghosts, 1, "{audit:?}");
    assert!(check::no_flaps_or_ghosts(&audit).is_err());
}

#[test]
fn document_checks_catch_a_lost_version_and_a_diverging_replica() {
    let mut sim = settled(2);
    for ix in [NodeIx(0), NodeIx(1)] {
        sim.open_doc(ix, "d", json!({"n": 0}));
    }
    let n1 = NodeIx(1);
    sim.patch_doc(n1, "d", &json!({"$inc": {"n": 1}}))
        .expect("running")
        .expect("valid");
    sim.run_until(STEPS, |s| check::docs_quiet(s, "d"))
        .expect("quiet");
    let value = check::documents_equal(&sim, "d", &json!({"n": 0})).expect("equal");
    assert_eq!(value, json!({"n": 1}));
    check::no_acked_version_lost(&sim, "d").expect("answered");
    // Compared with another default, the accepted patches do not give the host's value.
    assert!(check::documents_equal(&sim, "d", &json!({"n": 5})).is_err());
    // An accepted patch the history does not hold as its origin's (lost, or given to another).
    let key = ("d".to_owned(), 1);
    let truth = sim.doc_history[&key].clone();
    sim.doc_history.get_mut(&key).expect("version 1").origin = sim.nodes[0].id();
    let err = check::no_acked_version_lost(&sim, "d").expect_err("n1's patch is not its own");
    assert!(err.0.contains("differ from those it was told"), "{err}");
    sim.doc_history.insert(key, truth);
    // A patch whose answer never came.
    let (name, id) = sim.nodes[1].patches[0].clone();
    sim.nodes[1].patches.push((name, id));
    sim.nodes[1]
        .doc_evts
        .retain(|e| !e.name().starts_with("Accepted"));
    let err = check::no_acked_version_lost(&sim, "d").expect_err("unanswered");
    assert!(err.0.contains("got None answers"), "{err}");
}

/// With a witness that never opens the document and a writer that is no witness: quiet and
/// equal once the witness keeps the host's version; the durability check fails on a patch
/// acknowledged with a witness that the history lost, and on one it holds more often than
/// it was issued.
#[test]
fn the_durability_check_catches_a_lost_witnessed_patch_and_one_applied_twice() {
    use crate::doc::DocEvt;
    use crate::sim::SpawnOptions;

    let mut sim = settled(2);
    let no_witness = SpawnOptions::default().witness(false).hub_eligible(false);
    let writer = sim.spawn_with("writer", &crate::OwnTopics::default(), &no_witness);
    sim.settle(STEPS).expect("settles");
    let hub = sim.hubs().next().expect("a hub");
    let other = [NodeIx(0), NodeIx(1)]
        .into_iter()
        .find(|&ix| ix != hub)
        .expect("two members");
    // The hub's node opens the document; `other` only keeps it, as a witness.
    sim.open_doc(hub, "d", json!({"n": 0}));
    sim.open_doc(writer, "d", json!({"n": 0}));
    sim.run_until(STEPS, |s| check::docs_quiet(s, "d"))
        .expect("quiet");
    sim.patch_doc(writer, "d", &json!({"$inc": {"n": 1}}))
        .expect("running")
        .expect("valid");
    sim.run_until(STEPS, |s| {
        !s.node(writer).doc_evts().is_empty() && check::docs_quiet(s, "d")
    })
    .expect("answered and quiet");
    assert!(!sim.node(other).member().docs().is_open("d"));
    let value = check::documents_equal(&sim, "d", &json!({"n": 0})).expect("equal");
    assert_eq!(value, json!({"n": 1}));
    assert!(
        sim.node(writer)
            .doc_evts()
            .iter()
            .any(|e| matches!(e, DocEvt::Accepted { witnesses: 1, .. })),
        "the witness holds it: {:?}",
        sim.node(writer).doc_evts()
    );
    assert_eq!(check::witnessed_patches_kept(&sim, "d"), Ok(0));
    // Lost: the history holds version 1 as some other process's.
    let key = ("d".to_owned(), 1);
    let truth = sim.doc_history[&key].clone();
    sim.doc_history.get_mut(&key).expect("version 1").origin =
        crate::NodeId::new(0xdead).expect("non-zero");
    let err = check::witnessed_patches_kept(&sim, "d").expect_err("lost");
    assert!(err.0.contains("accepted with a witness 1 times"), "{err}");
    sim.doc_history.insert(key, truth);
    // Applied more often than issued (as if issued never).
    sim.nodes[writer.0].patches.clear();
    let err = check::witnessed_patches_kept(&sim, "d").expect_err("applied twice");
    assert!(err.0.contains("issued 0 times"), "{err}");
}

#[test]
fn a_failure_says_how_to_replay_it() {
    let seeded = Schedule::from_seed(42);
    let f = seeded.failure("broken".into());
    assert_eq!(f.replay, "ipc_proto::sim::Schedule::from_seed(42).run()");
    assert!(
        f.to_string()
            .ends_with("replay: ipc_proto::sim::Schedule::from_seed(42).run()")
    );
    let custom = Schedule::new(1, 4).fault(Duration::from_millis(5), Fault::CrashHub);
    let f = custom.failure("broken".into());
    assert_eq!(
        f.replay,
        "Schedule { seed: 1, latency: (Duration::from_micros(20), Duration::from_micros(2000)), \
         initial: vec![OwnTopics::default(); 4], faults: vec![(Duration::from_micros(5000), \
         Fault::CrashHub)] }.run()"
    );
}

/// The property, as a scenario: crash the hub of four, the three survivors converge.
#[test]
fn survivors_of_a_hub_crash_converge() {
    let outcome = Schedule::new(9, 4)
        .fault(Duration::from_millis(700), Fault::CrashHub)
        .run()
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(outcome.hub_changes, 2);
}
