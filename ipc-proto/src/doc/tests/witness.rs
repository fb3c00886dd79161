//! Random schedules of the durability promise: a patch acknowledged with a witness survives
//! the death of any one member, the host's included, whoever wrote it.
//!
//! Each schedule comes from one seed: one to three **witnesses** (long-lived members; some
//! open the document, most never do), two to six **transient writers** (members that are no
//! witnesses, as `ipc-pubsub doc patch` is: each starts at a random moment, opens the
//! document, sends one to three patches, and dies the moment its last one is answered), at
//! most one writer killed before its answers, and at most one **death**: the host crashing
//! (with everything in flight both ways; a new host gathers from the survivors and settles
//! once every survivor's openings arrived) or a witness dying. Delivery order across links is
//! random (FIFO within each). Each patch is `$inc` of the counter `n` plus a `$set` of a key
//! of its own. After quiescence:
//!
//! - every patch acknowledged with at least one witness is in the host's value (its key is
//!   there);
//! - every patch acknowledged at all is there, unless the death was the host's (a patch
//!   acknowledged with no witness is allowed to die with it, and is counted);
//! - `n` equals the number of keys: no patch was applied twice, whatever was resent;
//! - every live witness holds the host's version (opened or not), and those that opened it
//!   hold its value;
//! - nobody misbehaved, and no replica had to resync.
//!
//! `cargo test` runs [`DEFAULT_SCHEDULES`]; set `IPC_DOC_SCHEDULES` for more. A failing seed is
//! printed and kept in `proptest-regressions/`; paste it into [`replay_seed`] (or set
//! `IPC_DOC_SEED`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};

use super::net::{Net, weighted};
use crate::doc::{DocEvt, DocLimits, HostEvt, PatchId};

/// Schedules per `cargo test` run, and the test functions they are split over.
const SCHEDULES: crate::tests::Shards = crate::tests::Shards {
    var: "IPC_DOC_SCHEDULES",
    default: DEFAULT_SCHEDULES,
    shards: 2,
};
const DEFAULT_SCHEDULES: u32 = 1200;

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
    host_deaths: usize,
    witness_deaths: usize,
    writer_kills: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Death {
    Host,
    Witness,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Writer {
    Waiting,
    Running,
    Gone,
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

fn key(writer: usize, k: u32) -> String {
    format!("w{writer}_{k}")
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
    let mut net = Net::witnessed((witnesses + writers) as u64, witnesses as u64, limits);
    let mut death = match rng.below(100) {
        0..55 => Death::Host,
        55..85 => Death::Witness,
        _ => Death::None,
    };
    let died = death;
    let mut writer_kills = u32::from(rng.chance(30));
    for i in 0..witnesses {
        net.connect(i);
        if rng.chance(30) {
            net.open(i, DOC, json!({"n": 0, "p": {}}));
        }
    }
    let mut state = vec![Writer::Waiting; writers];
    let mut planned: Vec<u32> = (0..writers).map(|_| 1 + rng.below(3) as u32).collect();
    // Per writer: its patches, and the answers (Ok(witnesses) or rejected).
    let mut keys: Vec<BTreeMap<PatchId, String>> = vec![BTreeMap::new(); writers];
    let mut answers: Vec<BTreeMap<PatchId, Result<u32, String>>> = vec![BTreeMap::new(); writers];
    let mut outcome = Outcome::default();

    #[derive(Clone, Copy, Debug)]
    enum Action {
        Up(usize),
        Down(usize),
        Connect(usize),
        Start(usize),
        Patch(usize),
        KillWriter(usize),
        Die,
        Settle,
    }
    for step in 0.. {
        if step > 200_000 {
            return Err("no quiescence after 200,000 steps".into());
        }
        net.tick();
        let host_up = net.host.is_some();
        let gathering = net.host.as_ref().is_some_and(|h| h.is_gathering());
        let mut actions: Vec<(u64, Action)> = Vec::new();
        let mut all_opened = true;
        for (i, r) in net.reps.iter().enumerate().filter(|(_, r)| r.alive) {
            let writer = i.checked_sub(witnesses);
            if writer.is_some_and(|w| state[w] == Writer::Waiting) {
                if host_up {
                    actions.push((2, Action::Start(i)));
                }
                continue;
            }
            if !r.up.is_empty() {
                actions.push((10, Action::Up(i)));
            }
            if !r.down.is_empty() {
                actions.push((10, Action::Down(i)));
            }
            if r.peer.is_none() && host_up {
                actions.push((4, Action::Connect(i)));
            }
            if let Some(w) = writer {
                let unanswered = keys[w].len() - answers[w].len();
                if (keys[w].len() as u32) < planned[w] && unanswered < 2 {
                    actions.push((3, Action::Patch(i)));
                }
                if writer_kills > 0 {
                    actions.push((1, Action::KillWriter(i)));
                }
            }
            all_opened &= r.peer.is_some() && r.up.is_empty();
        }
        let started = state.iter().any(|s| *s != Writer::Waiting);
        if death != Death::None && host_up && started {
            actions.push((1, Action::Die));
        }
        if gathering && all_opened {
            actions.push((2, Action::Settle));
        }
        let total: u64 = actions.iter().map(|(w, _)| w).sum();
        if total == 0 {
            outcome.steps = step;
            break;
        }
        let action = weighted(&actions, rng.below(total));
        match action {
            Action::Up(i) => {
                net.deliver_up(i);
            }
            Action::Down(i) => {
                net.deliver_down(i);
            }
            Action::Connect(i) => net.connect(i),
            Action::Start(i) => {
                state[i - witnesses] = Writer::Running;
                net.connect(i);
                net.open(i, DOC, json!({"n": 0, "p": {}}));
            }
            Action::Patch(i) => {
                let w = i - witnesses;
                let k = key(w, keys[w].len() as u32);
                let spec = json!({"$inc": {"n": 1}, "$set": {format!("p.{k}"): true}});
                let id = net
                    .patch(i, DOC, spec)
                    .map_err(|e| format!("writer {w}: {e}"))?;
                keys[w].insert(id, k);
                outcome.issued += 1;
            }
            Action::KillWriter(i) => {
                writer_kills -= 1;
                outcome.writer_kills += 1;
                state[i - witnesses] = Writer::Gone;
                planned[i - witnesses] = 0;
                net.kill(i);
            }
            Action::Die => {
                match death {
                    Death::Host => {
                        outcome.host_deaths += 1;
                        net.crash_host();
                        net.start_host();
                    }
                    Death::Witness => {
                        outcome.witness_deaths += 1;
                        let victim = rng.below(witnesses as u64) as usize;
                        net.kill(victim);
                    }
                    Death::None => unreachable!("offered only while a death is due"),
                }
                death = Death::None;
            }
            Action::Settle => net.settle(),
        }
        // Answers as they come; a writer whose patches are all answered leaves at once.
        for i in 0..net.reps.len() {
            let evts: Vec<DocEvt> = net.reps[i].evts.drain(..).collect();
            for e in evts {
                let writer = i.checked_sub(witnesses);
                match (e, writer) {
                    (DocEvt::Accepted { id, witnesses, .. }, Some(w))
                        if answers[w].insert(id, Ok(witnesses)).is_some() =>
                    {
                        return Err(format!("writer {w}: {id} answered twice"));
                    }
                    (DocEvt::Rejected { id, reason, .. }, Some(w))
                        if answers[w].insert(id, Err(reason.to_string())).is_some() =>
                    {
                        return Err(format!("writer {w}: {id} answered twice"));
                    }
                    (DocEvt::HubMisbehaved { reason }, _) => {
                        return Err(format!("replica {i}: the hub misbehaved: {reason}"));
                    }
                    (DocEvt::NotWitnessed { name, .. }, _) => {
                        return Err(format!("replica {i}: {name} not witnessed"));
                    }
                    (DocEvt::Resynced { .. }, _) if !net.reps[i].m.is_open(DOC) => {
                        return Err(format!("replica {i}: a passive document reported"));
                    }
                    _ => {}
                }
            }
            if let Some(w) = i.checked_sub(witnesses)
                && state[w] == Writer::Running
                && keys[w].len() as u32 == planned[w]
                && answers[w].len() == keys[w].len()
            {
                state[w] = Writer::Gone;
                net.kill(i);
            }
        }
        if let Some(e) = net
            .host_evts
            .iter()
            .find(|e| matches!(e, HostEvt::PeerMisbehaved { .. }))
        {
            return Err(format!("{e:?}"));
        }
    }

    // ---- the checks ----
    if net.sent.contains(&"Resync") {
        return Err("a resync: on FIFO links a replica never misses a version".into());
    }
    let host = net.host();
    let value = host.value(DOC).cloned().unwrap_or(Value::Null);
    let version = host.version(DOC).unwrap_or(0);
    let present = value["p"].as_object().cloned().unwrap_or_default();
    for w in 0..writers {
        if state[w] == Writer::Running {
            return Err(format!("writer {w} still waits for answers at quiescence"));
        }
        for (id, k) in &keys[w] {
            match answers[w].get(id) {
                Some(Ok(0)) => {
                    outcome.unwitnessed += 1;
                    if !present.contains_key(k) {
                        if died != Death::Host {
                            return Err(format!(
                                "writer {w}: {id} ({k}) acknowledged with no witness is lost, \
                                 and the host did not die"
                            ));
                        }
                        outcome.lost_unwitnessed += 1;
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
                Some(Err(_)) => {
                    outcome.rejected += 1;
                    if present.contains_key(k) {
                        return Err(format!("writer {w}: {id} ({k}) rejected but applied"));
                    }
                }
                None => {} // killed before its answer: either way
            }
        }
    }
    let n = value["n"].as_u64().unwrap_or(0);
    if n != present.len() as u64 {
        return Err(format!(
            "n is {n} for {} distinct patches: applied twice: {value}",
            present.len()
        ));
    }
    for i in 0..witnesses {
        let m = &net.reps[i].m;
        if !net.reps[i].alive {
            continue;
        }
        if m.is_open(DOC) {
            if m.value(DOC) != Some(&value) || m.version(DOC) != Some(version) {
                return Err(format!("witness {i} diverges: {:?}", m.value(DOC)));
            }
        } else if outcome.issued > 0 && m.witnessed().collect::<Vec<_>>() != [(DOC, version)] {
            return Err(format!(
                "witness {i} holds {:?}, the host is at {version}",
                m.witnessed().collect::<Vec<_>>()
            ));
        }
    }
    Ok(outcome)
}

fn shard(shard: u32) {
    report(&SCHEDULES.run(file!(), shard, run));
}

crate::tests::shard_tests!(SCHEDULES, shard;
    witness_schedules_shard_0 = 0,
    witness_schedules_shard_1 = 1,
);

fn report(outcomes: &[Outcome]) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "schedules {} | patches issued {} acknowledged with witnesses {} without {} (lost with \
         the host {}) rejected {} | host deaths {} witness deaths {} writers killed {} | most \
         steps {}",
        outcomes.len(),
        sum(|o| o.issued),
        sum(|o| o.witnessed),
        sum(|o| o.unwitnessed),
        sum(|o| o.lost_unwitnessed),
        sum(|o| o.rejected),
        sum(|o| o.host_deaths),
        sum(|o| o.witness_deaths),
        sum(|o| o.writer_kills),
        outcomes.iter().map(|o| o.steps).max().unwrap_or(0),
    );
}

/// Replays one schedule: paste a failing seed into `SEED`, or set `IPC_DOC_SEED`; with
/// `RUST_LOG=debug` the machines log every transition:
/// `IPC_DOC_SEED=.. RUST_LOG=debug cargo test -p ipc-proto doc::tests::witness::replay_seed -- --nocapture`.
#[test]
fn replay_seed() {
    const SEED: u64 = 1;
    let seed = crate::tests::seed_to_replay("IPC_DOC_SEED", SEED);
    let outcome = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    report(&[outcome]);
}
