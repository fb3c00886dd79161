//! The documents' gathering on a new hub ends by the hub's own rule (issue 17): as soon as
//! every survivor is back with its documents' states and the dead are confirmed dead; only a
//! death nobody can confirm costs the reconnection grace.

use std::time::Duration;

use serde_json::json;

use crate::OwnTopics;
use crate::doc::DocEvt;
use crate::sim::{Sim, SimConfig, check};

const STEPS: usize = 400_000;
const DOC: &str = "d";
/// Long, so that "answered before the grace" cannot be luck.
const GRACE: Duration = Duration::from_secs(3);

/// Four nodes share a document; the hub's node dies (`kill -9`, confirmed by the survivors'
/// drivers, or an unconfirmable crash) and a survivor patches the document at once. Returns
/// how long after the death the patch was answered, after checking that every survivor ends
/// with the same value and nothing was lost.
fn answer_after_hub_death(seed: u64, confirmed: bool) -> Duration {
    let config = SimConfig {
        grace: GRACE,
        ..SimConfig::default()
    };
    let mut sim = Sim::new(seed, config);
    let nodes: Vec<_> = (0..4)
        .map(|i| {
            let ix = sim.spawn(&format!("n{i}"), &OwnTopics::default());
            sim.run_until(STEPS, Sim::converged).expect("converged");
            ix
        })
        .collect();
    for &ix in &nodes {
        sim.open_doc(ix, DOC, json!({"n": 0}));
    }
    let writer = nodes[1];
    sim.patch_doc(writer, DOC, &json!({"$inc": {"n": 1}}))
        .expect("running")
        .expect("valid");
    sim.run_until(STEPS, |s| check::docs_quiet(s, DOC))
        .expect("quiet before the death");
    let hub = sim.hubs().next().expect("a hub");
    assert_eq!(hub, nodes[0], "the first node runs the hub");

    let died = sim.now();
    if confirmed {
        sim.kill(hub);
    } else {
        sim.crash(hub);
    }
    let id = sim
        .patch_doc(writer, DOC, &json!({"$inc": {"n": 1}}))
        .expect("running")
        .expect("valid");
    let answered = |s: &Sim| {
        s.nodes[writer.0]
            .doc_evts
            .iter()
            .any(|e| matches!(e, DocEvt::Accepted { id: i, .. } if *i == id))
    };
    sim.run_until(STEPS, answered)
        .unwrap_or_else(|e| panic!("seed {seed}: the patch is never answered: {e}"));
    let took = sim.now() - died;
    sim.run_until(STEPS, |s| check::docs_quiet(s, DOC))
        .unwrap_or_else(|e| panic!("seed {seed}: not quiet after the death: {e}"));
    for &ix in &nodes[1..] {
        assert_eq!(
            sim.nodes[ix.0].member.docs().value(DOC),
            Some(&json!({"n": 2})),
            "seed {seed}: survivor {ix:?} holds both increments"
        );
    }
    took
}

#[test]
fn a_patch_after_a_killed_hub_is_answered_without_waiting_for_the_grace() {
    for seed in 0..16 {
        let took = answer_after_hub_death(seed, true);
        assert!(
            took < GRACE / 10,
            "seed {seed}: answered {took:?} after a confirmed death (grace {GRACE:?})"
        );
    }
}

#[test]
fn a_patch_after_an_unconfirmed_hub_death_waits_for_the_grace() {
    for seed in 0..16 {
        let took = answer_after_hub_death(seed, false);
        assert!(
            took >= GRACE,
            "seed {seed}: answered {took:?} after a death nobody confirmed (grace {GRACE:?})"
        );
    }
}
