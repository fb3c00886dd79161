//! Random schedules of the durability promise through whole members: a patch acknowledged
//! with a witness survives the death of any one member, the host's included, whoever wrote it.
//!
//! Each schedule comes from one seed: the hub's node, then one to three more long-lived
//! **witnesses** (every one of them, the hub's node included, opens the document 30 % of the
//! time; the others keep it without opening it), two to six **transient writers** (members
//! that are no witnesses, as `ipc-pubsub doc patch` is, and here may not run the hub either:
//! each starts at a random moment, opens the document, sends one to three patches, at most
//! two unanswered, and is killed ([`Sim::kill`]) the moment its last one is answered), at most
//! one writer killed before its answers, and at most one **death**: the hub's node (with
//! everything in flight both ways; a surviving witness takes over and gathers the document
//! from the survivors), half the time confirmed ([`Sim::kill`]) and half the time not
//! ([`Sim::crash`]), or a witness that is not the hub's node (likewise). Each patch is `$inc`
//! of the counter `n` plus a `$set` of a key of its own. After quiescence
//! ([`check::docs_quiet`]):
//!
//! - every patch acknowledged with at least one witness is in the host's value (its key is
//!   there), and in the accepted history at the version it was told
//!   ([`check::witnessed_patches_kept`]);
//! - every patch acknowledged at all is there, unless the death was the hub's node's (a patch
//!   acknowledged with no witness is allowed to die with it, and is counted);
//! - a rejected patch is not there; `n` equals the number of keys, and no patch is in the
//!   history twice: none applied twice, whatever was resent;
//! - every patch was answered at most once, and no writer still waits for an answer;
//! - every live witness keeps the host's version (opened or not), and those that opened it
//!   hold its value, which is the accepted patches replayed ([`check::documents_equal`]);
//! - exactly one hub, nobody saw a correct peer misbehave ([`check::one_hub`]), no witness
//!   ran out of room, no document it did not open reported, and no replica had to resync.
//!
//! `cargo test` runs [`DEFAULT_SCHEDULES`]; set `IPC_WITNESS_SCHEDULES` for more. A failing
//! seed is printed and kept in `proptest-regressions/`; paste it into [`replay_seed`] (or set
//! `IPC_WITNESS_SEED`).

use std::collections::BTreeMap;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng};
use serde_json::{Value, json};

use crate::OwnTopics;
use crate::doc::{DocEvt, DocLimits, PatchId};
use crate::sim::{NodeIx, Sim, SpawnOptions, check};

/// Schedules per `cargo test` run, and the test functions they are split over.
const SCHEDULES: super::Shards = super::Shards {
    var: "IPC_WITNESS_SCHEDULES",
    default: DEFAULT_SCHEDULES,
    shards: 2,
};
const DEFAULT_SCHEDULES: u32 = 1200;
const MAX_STEPS: usize = 200_000;
const DOC: &str = "d";

/// What one schedule measured.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    steps: usize,
    issued: usize,
    witnessed: usize,
    unwitnessed: usize,
    lost_unwitnessed: usize,
    rejected: usize,
    host_kills: usize,
    host_crashes: usize,
    witness_deaths: usize,
    writer_kills: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Death {
    Host,
    Witness,
    None,
}

/// A transient writer.
struct Writer {
    ix: NodeIx,
    /// How many patches it sends.
    planned: usize,
    /// Its patches and their keys.
    keys: BTreeMap<PatchId, String>,
    /// The answers it got: `Ok(witnesses)`, or `Err` for a rejection.
    answers: BTreeMap<PatchId, Result<u32, ()>>,
    /// Killed (before or after its answers).
    gone: bool,
}

struct Dice(ChaCha8Rng);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn default_value() -> Value {
    json!({"n": 0, "p": {}})
}

/// Reads the answers `w` got; errs on a second answer to one patch.
fn read_answers(sim: &Sim, w: &mut Writer) -> Result<(), String> {
    let name = sim.node(w.ix).name().to_owned();
    for e in sim.node(w.ix).doc_evts() {
        let (id, answer) = match e {
            DocEvt::Accepted { id, witnesses, .. } => (*id, Ok(*witnesses)),
            DocEvt::Rejected { id, .. } => (*id, Err(())),
            _ => continue,
        };
        w.answers.insert(id, answer);
    }
    let answers = sim
        .node(w.ix)
        .doc_evts()
        .iter()
        .filter(|e| matches!(e, DocEvt::Accepted { .. } | DocEvt::Rejected { .. }))
        .count();
    if answers != w.answers.len() {
        return Err(format!("{name}: a patch answered twice"));
    }
    Ok(())
}

fn run(seed: u64) -> Result<Outcome, String> {
    let mut rng = Dice(ChaCha8Rng::seed_from_u64(seed));
    let witnesses = 1 + rng.below(3) as usize;
    let writers = 2 + rng.below(5) as usize;
    let limits = DocLimits {
        // Small chunks: states span several messages.
        max_chunk: 0,
        ..DocLimits::default()
    };
    // The simulator's own seed is drawn, so that its random stream is not the schedule's.
    let mut sim = Sim::builder(rng.0.next_u64()).doc_limits(limits).build();
    let own = OwnTopics::default();
    // The hub's node first, so that it is the hub; then the other witnesses.
    let mut long_lived = vec![sim.spawn("host", &own)];
    sim.run_until(MAX_STEPS, |s| s.hubs().next().is_some())?;
    for i in 0..witnesses {
        long_lived.push(sim.spawn(&format!("w{i}"), &own));
    }
    for &ix in &long_lived {
        if rng.chance(30) {
            sim.open_doc(ix, DOC, default_value());
        }
    }
    let mut death = match rng.below(100) {
        0..55 => Death::Host,
        55..85 => Death::Witness,
        _ => Death::None,
    };
    let died = death;
    let mut writer_kill_due = rng.chance(30);
    let one_shot = SpawnOptions::default().witness(false).hub_eligible(false);
    let mut ws: Vec<Writer> = Vec::new();
    let mut outcome = Outcome::default();

    loop {
        if sim.steps() > MAX_STEPS {
            return Err(format!("no quiescence after {MAX_STEPS} steps"));
        }
        let running: Vec<usize> = (0..ws.len()).filter(|&w| !ws[w].gone).collect();
        if ws.len() < writers && rng.chance(2) {
            let ix = sim.spawn_with(&format!("writer{}", ws.len()), &own, &one_shot);
            sim.open_doc(ix, DOC, default_value());
            ws.push(Writer {
                ix,
                planned: 1 + rng.below(3) as usize,
                keys: BTreeMap::new(),
                answers: BTreeMap::new(),
                gone: false,
            });
        }
        for &w in &running {
            let wr = &mut ws[w];
            let unanswered = wr.keys.len() - wr.answers.len();
            if wr.keys.len() < wr.planned && unanswered < 2 && rng.chance(5) {
                let k = format!("w{w}_{}", wr.keys.len());
                let spec = json!({"$inc": {"n": 1}, "$set": {format!("p.{k}"): true}});
                match sim.patch_doc(wr.ix, DOC, &spec) {
                    Some(Ok(id)) => {
                        wr.keys.insert(id, k);
                        outcome.issued += 1;
                    }
                    Some(Err(e)) => return Err(format!("writer {w}: {e}")),
                    None => return Err(format!("writer {w} is not running")),
                }
            }
        }
        if writer_kill_due && !running.is_empty() && rng.chance(1) {
            writer_kill_due = false;
            let w = running[rng.below(running.len() as u64) as usize];
            ws[w].gone = true;
            outcome.writer_kills += 1;
            sim.kill(ws[w].ix);
        }
        let all_done = ws.len() == writers && ws.iter().all(|wr| wr.gone);
        if death != Death::None && !ws.is_empty() && (all_done || rng.chance(1)) {
            let kill = rng.chance(50);
            let victim = match death {
                Death::Host => {
                    if kill {
                        outcome.host_kills += 1;
                    } else {
                        outcome.host_crashes += 1;
                    }
                    sim.hubs().next().expect("one hub until the one death")
                }
                Death::Witness => {
                    outcome.witness_deaths += 1;
                    let hub = sim.hubs().next();
                    let others: Vec<NodeIx> = long_lived
                        .iter()
                        .copied()
                        .filter(|&ix| Some(ix) != hub)
                        .collect();
                    others[rng.below(others.len() as u64) as usize]
                }
                Death::None => unreachable!("only while a death is due"),
            };
            if kill {
                sim.kill(victim);
            } else {
                sim.crash(victim);
            }
            death = Death::None;
        }
        if all_done && death == Death::None {
            break;
        }
        if !sim.step() {
            return Err("nothing left to do".into());
        }
        // Answers as they come; a writer whose patches are all answered dies at once.
        for wr in ws.iter_mut().filter(|wr| !wr.gone) {
            read_answers(&sim, wr)?;
            if wr.keys.len() == wr.planned && wr.answers.len() == wr.planned {
                wr.gone = true;
                sim.kill(wr.ix);
            }
        }
    }
    sim.run_until(MAX_STEPS, |s| check::docs_quiet(s, DOC))
        .map_err(|e| format!("{e}\n{}", sim.describe()))?;
    outcome.steps = sim.steps();

    // ---- the checks ----
    let v = |e: check::Violation| e.to_string();
    check::one_hub(&sim).map_err(v)?;
    let value = check::documents_equal(&sim, DOC, &default_value()).map_err(v)?;
    let lost = check::witnessed_patches_kept(&sim, DOC).map_err(v)?;
    if sim.doc_msgs.get("Resync").is_some_and(|n| *n > 0) {
        return Err("a resync: on FIFO links a replica never misses a version".into());
    }
    for &ix in &long_lived {
        let n = sim.node(ix);
        let opened = n.member().docs().is_open(DOC);
        for e in n.doc_evts() {
            match e {
                DocEvt::NotWitnessed { name, .. } => {
                    return Err(format!("{}: {name} not witnessed", n.name()));
                }
                DocEvt::Resynced { .. } if !opened => {
                    return Err(format!("{}: a document it did not open reported", n.name()));
                }
                _ => {}
            }
        }
    }
    let present = value["p"].as_object().cloned().unwrap_or_default();
    let mut lost_here = 0;
    for (w, wr) in ws.iter().enumerate() {
        if !wr.gone {
            return Err(format!("writer {w} still waits for answers at quiescence"));
        }
        for (id, k) in &wr.keys {
            match wr.answers.get(id) {
                Some(Ok(0)) => {
                    outcome.unwitnessed += 1;
                    if !present.contains_key(k) {
                        if died != Death::Host {
                            return Err(format!(
                                "writer {w}: {id} ({k}) acknowledged with no witness is lost, \
                                 and the hub's node did not die"
                            ));
                        }
                        lost_here += 1;
                    }
                }
                Some(Ok(n)) => {
                    outcome.witnessed += 1;
                    if !present.contains_key(k) {
                        return Err(format!(
                            "writer {w}: {id} ({k}) acknowledged with {n} witnesses is lost: \
                             {value}"
                        ));
                    }
                }
                Some(Err(())) => {
                    outcome.rejected += 1;
                    if present.contains_key(k) {
                        return Err(format!("writer {w}: {id} ({k}) rejected but applied"));
                    }
                }
                None => {} // killed before its answer: either way
            }
        }
    }
    if lost_here != lost {
        return Err(format!(
            "{lost_here} unwitnessed patches are missing from the value, {lost} from the history"
        ));
    }
    outcome.lost_unwitnessed = lost;
    let n = value["n"].as_u64().unwrap_or(0);
    if n != present.len() as u64 {
        return Err(format!(
            "n is {n} for {} distinct patches: applied twice: {value}",
            present.len()
        ));
    }
    Ok(outcome)
}

fn report(outcomes: &[Outcome]) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "witness schedules {} | patches issued {} acknowledged with witnesses {} without {} \
         (lost with the hub's node {}) rejected {} | hub's node killed {} crashed {} | witness \
         deaths {} | writers killed before their answers {} | most steps {}",
        outcomes.len(),
        sum(|o| o.issued),
        sum(|o| o.witnessed),
        sum(|o| o.unwitnessed),
        sum(|o| o.lost_unwitnessed),
        sum(|o| o.rejected),
        sum(|o| o.host_kills),
        sum(|o| o.host_crashes),
        sum(|o| o.witness_deaths),
        sum(|o| o.writer_kills),
        outcomes.iter().map(|o| o.steps).max().unwrap_or(0),
    );
}

/// One shard of the schedules; the schedules must exercise what they claim to.
fn shard(shard: u32) {
    let outcomes = SCHEDULES.run(file!(), shard, run);
    report(&outcomes);
    if outcomes.len() >= 100 {
        let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
        assert!(sum(|o| o.host_kills) > 0, "no confirmed death of the hub");
        assert!(
            sum(|o| o.host_crashes) > 0,
            "no unconfirmed death of the hub"
        );
        assert!(sum(|o| o.witness_deaths) > 0, "no witness died");
        assert!(
            sum(|o| o.writer_kills) > 0,
            "no writer killed before its answers"
        );
        assert!(
            sum(|o| o.witnessed) > 0,
            "no patch acknowledged with a witness"
        );
        assert!(
            sum(|o| o.unwitnessed) > 0,
            "no patch acknowledged without a witness"
        );
    }
}

super::shard_tests!(SCHEDULES, shard;
    witness_schedules_shard_0 = 0,
    witness_schedules_shard_1 = 1,
);

/// Replays one schedule: paste a failing seed into `SEED`, or set `IPC_WITNESS_SEED`;
/// `RUST_LOG=debug` logs every transition:
/// `IPC_WITNESS_SEED=.. RUST_LOG=debug cargo test -p ipc-proto --all-features tests::witness::replay_seed -- --nocapture`.
#[test]
fn replay_seed() {
    const SEED: u64 = 1;
    let seed = super::seed_to_replay("IPC_WITNESS_SEED", SEED);
    let outcome = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    report(&[outcome]);
}
