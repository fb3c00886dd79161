//! Shared documents through whole members: random patch sequences from several nodes, with
//! the hub's node crashed up to three times (and a fresh node started after each crash).
//!
//! Each schedule comes from one seed: three or four nodes open one document; up to 80 random
//! patches from random running nodes (`$inc` of the node's own counter `c.<i>`, half of them
//! also `$inc` of the shared counter `n`; `$set` on overlapping paths), separated by random
//! simulated time, and the hub's node crashed at random points. After quiescence (one hub,
//! its document host serving, every running node's replica synced with nothing pending):
//!
//! - every running node's value and version equal the host's;
//! - the host's value is the accepted patches, as the hosts broadcast them (the last host to
//!   broadcast a version wins), applied in version order to the default;
//! - `n` equals the number of accepted patches that `$inc` it, and each `c.<i>` the sum of
//!   node `i`'s accepted `$inc`s on it: nothing lost, nothing applied twice;
//! - every patch a surviving node issued was answered exactly once, and the sum of the ones
//!   it was told were accepted is its counter.
//!
//! `cargo test` runs [`DEFAULT_SCHEDULES`]; set `IPC_DOC_SIM_SCHEDULES` for more. A failing
//! seed is printed and kept in `proptest-regressions/`; paste it into [`replay_seed`].

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};

use crate::OwnTopics;
use crate::doc::{DocEvt, PatchId};
use crate::sim::{NodeIx, Sim, SimConfig, check};

const DEFAULT_SCHEDULES: u32 = 120;
const MAX_STEPS: usize = 400_000;
const DOC: &str = "shared";

fn default_value() -> Value {
    json!({"n": 0, "c": {}, "s": {"x": 0}})
}

#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    issued: usize,
    accepted: usize,
    rejected: usize,
    crashes: usize,
    version: u64,
}

/// What a node issued: the update, and the answers it got.
#[derive(Default)]
struct Issued {
    updates: BTreeMap<PatchId, Value>,
}

fn counter(value: &Value, path: &[&str]) -> i64 {
    let mut v = value;
    for p in path {
        v = &v[*p];
    }
    v.as_i64().unwrap_or(0)
}

fn update_for(rng: &mut ChaCha8Rng, i: usize) -> Value {
    let key = format!("c.{i}");
    let k = 1 + rng.next_u64() % 3;
    match rng.next_u64() % 10 {
        0..5 => json!({"$inc": {key: k, "n": 1}}),
        5..8 => json!({"$inc": {key: k}}),
        8 => json!({"$set": {"s.x": rng.next_u64() % 100}}),
        _ => json!({"$set": {"s": {"x": rng.next_u64() % 100}}}),
    }
}

/// Whether every running node follows a serving host with nothing pending.
fn quiet(sim: &Sim) -> bool {
    check::docs_quiet(sim, DOC)
}

fn run(seed: u64) -> Result<Outcome, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sim = Sim::new(seed, SimConfig::default());
    let mut outcome = Outcome::default();
    let n = 3 + (rng.next_u64() % 2) as usize;
    let mut issued: Vec<Issued> = Vec::new();
    let spawn = |sim: &mut Sim, issued: &mut Vec<Issued>| {
        let ix = sim.spawn(&format!("n{}", sim.nodes.len()), &OwnTopics::default());
        sim.open_doc(ix, DOC, default_value());
        issued.push(Issued::default());
    };
    for _ in 0..n {
        spawn(&mut sim, &mut issued);
    }
    let patches = 20 + rng.next_u64() % 61;
    let mut crashes_left = rng.next_u64() % 4;
    for _ in 0..patches {
        let members: Vec<NodeIx> = sim.members().collect();
        let ix = members[(rng.next_u64() % members.len() as u64) as usize];
        let update = update_for(&mut rng, ix.0);
        if let Some(Ok(id)) = sim.patch_doc(ix, DOC, &update) {
            issued[ix.0].updates.insert(id, update);
            outcome.issued += 1;
        }
        sim.run_for(Duration::from_micros(rng.next_u64() % 3_000));
        if crashes_left > 0 && rng.next_u64() % 12 == 0 {
            let hub = sim.hubs().next();
            if let Some(hub) = hub {
                crashes_left -= 1;
                outcome.crashes += 1;
                sim.crash(hub);
                spawn(&mut sim, &mut issued);
            }
        }
    }
    sim.run_until(MAX_STEPS, quiet)
        .map_err(|e| format!("{e}\n{}", sim.describe()))?;

    let hub = sim.hubs().next().expect("quiet: one hub");
    let host = sim.nodes[hub.0].member.doc_host().expect("quiet: a host");
    let host_value = host.value(DOC).expect("quiet: the document").clone();
    let version = host.version(DOC).expect("quiet: the document");
    outcome.version = version;

    // Every running node holds the host's value, which is the accepted patches in version
    // order; every surviving node's patches were answered once.
    check::documents_equal(&sim, DOC, &default_value()).map_err(|e| e.to_string())?;
    check::no_acked_version_lost(&sim, DOC).map_err(|e| e.to_string())?;
    let mut shared = 0;
    let mut per_origin: BTreeMap<usize, i64> = BTreeMap::new();
    for v in 1..=version {
        let (origin, update) = &sim.doc_history[&(DOC.to_owned(), v)];
        let spec = update.to_value();
        let ix = sim.ix_of(*origin).expect("origins are simulated nodes");
        if let Some(k) = spec["$inc"][format!("c.{}", ix.0)].as_i64() {
            *per_origin.entry(ix.0).or_default() += k;
        }
        shared += spec["$inc"]["n"].as_i64().unwrap_or(0);
    }
    if counter(&host_value, &["n"]) != shared {
        return Err(format!(
            "n is {}, {shared} accepted patches increment it",
            counter(&host_value, &["n"])
        ));
    }
    for (i, node) in sim.nodes.iter().enumerate() {
        let value = counter(&host_value, &["c", &i.to_string()]);
        let accepted = per_origin.get(&i).copied().unwrap_or(0);
        if value != accepted {
            return Err(format!(
                "c.{i} is {value}, its accepted $inc add {accepted}"
            ));
        }
        if !node.is_member() {
            continue;
        }
        // A survivor: each patch answered once, its accepted ones are its counter.
        let mut answers: BTreeMap<PatchId, usize> = BTreeMap::new();
        let mut told = 0;
        for e in &node.doc_evts {
            match e {
                DocEvt::Accepted { id, .. } => {
                    *answers.entry(*id).or_default() += 1;
                    outcome.accepted += 1;
                    let u = &issued[i].updates[id];
                    told += u["$inc"][format!("c.{i}")].as_i64().unwrap_or(0);
                }
                DocEvt::Rejected { id, .. } => {
                    *answers.entry(*id).or_default() += 1;
                    outcome.rejected += 1;
                }
                _ => {}
            }
        }
        for id in issued[i].updates.keys() {
            if answers.get(id) != Some(&1) {
                return Err(format!(
                    "{} got {:?} answers to {id}",
                    node.name,
                    answers.get(id)
                ));
            }
        }
        if told != value {
            return Err(format!(
                "{} was told {told} of its increments were accepted, c.{i} is {value}",
                node.name
            ));
        }
    }
    Ok(outcome)
}

fn schedules() -> u32 {
    std::env::var("IPC_DOC_SIM_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SCHEDULES)
}

fn report(outcomes: &[Outcome]) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "schedules {} | patches issued {} | accepted (survivors) {} | rejected {} | hub \
         crashes {} | highest version {}",
        outcomes.len(),
        sum(|o| o.issued),
        sum(|o| o.accepted),
        sum(|o| o.rejected),
        sum(|o| o.crashes),
        outcomes.iter().map(|o| o.version).max().unwrap_or(0),
    );
}

#[test]
fn member_doc_schedules() {
    let outcomes = super::run_seeds(file!(), schedules(), 0, run);
    // The schedules must exercise what they claim to.
    assert!(
        outcomes.iter().any(|o| o.crashes >= 2),
        "no schedule crashed the hub twice"
    );
    assert!(
        outcomes.iter().map(|o| o.rejected).sum::<usize>() > 0,
        "no conflict ever"
    );
    report(&outcomes);
}

/// Replays one schedule: paste a failing seed into `SEED`, or set `IPC_DOC_SIM_SEED`;
/// `RUST_LOG=debug` logs every transition.
#[test]
fn replay_seed() {
    const SEED: u64 = 1;
    let seed = super::seed_to_replay("IPC_DOC_SIM_SEED", SEED);
    let outcome = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    report(&[outcome]);
}

/// A spoke that may not run the hub never asks to bind: it backs off and connects again.
#[test]
fn a_spoke_not_eligible_for_the_hub_never_binds() {
    use crate::{Input, Output, Spoke, SpokeCmd, SpokeConfig, SpokeEvt};
    #[allow(clippy::disallowed_methods)] // the test's epoch; only durations are added
    let mut now = std::time::Instant::now();
    for eligible in [true, false] {
        let mut cfg = SpokeConfig::default();
        cfg.hub_eligible(eligible);
        let mut spoke = Spoke::new(cfg, now);
        spoke
            .handle(now, Input::Cmd(SpokeCmd::Join))
            .expect("joins");
        let mut names = Vec::new();
        for _ in 0..3 {
            while let Some(out) = spoke.poll_output() {
                if let Output::Evt(e) = out {
                    if e == SpokeEvt::ConnectRequested {
                        spoke.handle(now, Input::ConnectFailed).expect("report");
                    }
                    if e == SpokeEvt::BindRequested {
                        spoke
                            .handle(now, Input::BindOutcome { won: false })
                            .expect("report");
                    }
                    names.push(e.name());
                }
            }
            now = spoke.poll_timeout().expect("a backoff");
            spoke.handle_timeout(now);
        }
        assert_eq!(
            names.contains(&"BindRequested"),
            eligible,
            "eligible {eligible}: {names:?}"
        );
        assert!(names.iter().filter(|n| **n == "ConnectRequested").count() >= 3);
    }
}

/// With hub-link frames of 8 KiB, a document of 40 KiB still travels (in chunks that fit) to
/// a node that opens it late, and patches reach every node, through a hub crash too.
#[test]
fn documents_fit_small_frames() {
    let config = SimConfig {
        limits: crate::Limits {
            max_frame: 8 * 1024,
            ..crate::Limits::default()
        },
        ..SimConfig::default()
    };
    let mut sim = Sim::new(5, config);
    let big = json!({"blob": "b".repeat(40 * 1024), "n": 0});
    let a = sim.spawn("a", &OwnTopics::default());
    let b = sim.spawn("b", &OwnTopics::default());
    sim.open_doc(a, DOC, big.clone());
    sim.open_doc(b, DOC, json!({}));
    sim.run_until(MAX_STEPS, quiet).expect("quiet");
    let id = sim
        .patch_doc(b, DOC, &json!({"$inc": {"n": 1}}))
        .expect("running")
        .expect("valid");
    let hub = sim.hubs().next().expect("a hub");
    sim.crash(hub);
    let c = sim.spawn("c", &OwnTopics::default());
    sim.open_doc(c, DOC, json!({}));
    sim.run_until(MAX_STEPS, quiet)
        .expect("quiet after the crash");
    let mut want = big;
    want["n"] = json!(1);
    for ix in sim.members() {
        assert_eq!(sim.nodes[ix.0].member.docs().value(DOC), Some(&want));
    }
    let survivor = if hub == a { b } else { a };
    if survivor == b {
        assert!(
            sim.nodes[b.0]
                .doc_evts
                .iter()
                .any(|e| matches!(e, DocEvt::Accepted { id: i, .. } if *i == id)),
            "b's patch answered"
        );
    }
}
