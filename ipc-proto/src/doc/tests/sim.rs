//! Random schedules: replicas patching one document through a host that crashes.
//!
//! Each schedule comes from one seed: two to four replicas, a document that half the time is
//! larger than one message (5 KiB here), up to 60 random patches (`$inc` on three counters,
//! `$set`/`$unset` on overlapping paths, `$push` of long strings, `$currentDate`, `$bit`),
//! a small conflict log and few pending patches allowed, up to three hub crashes
//! (each dropping the host and everything in flight both ways, sometimes killing a replica
//! with it; a new host gathers, replicas reconnect one by one, and `Settled` comes at a random
//! point after every survivor's opening arrived), a few single links dropped and reconnected,
//! and random delivery order across links (FIFO within each). After quiescence:
//!
//! - every surviving replica's value, confirmed value and version equal the host's, and
//!   nothing is pending;
//! - the host's value is the accepted patches (as broadcast) applied in version order to the
//!   default;
//! - every patch a surviving replica issued was answered exactly once, and the patches it was
//!   told were accepted are exactly its patches in the host's history, in order;
//! - each counter equals the sum of the accepted `$inc`s on it (survivors' as they were told,
//!   the dead ones' as the history has them): nothing lost, nothing applied twice;
//! - nobody misbehaved.
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
use crate::doc::{ApplyContext, DocEvt, DocLimits, HostEvt, PatchId, RejectReason, Update};

/// Schedules per `cargo test` run.
const DEFAULT_SCHEDULES: u32 = 400;

/// Test functions the schedules are split over, so that they run in parallel.
const SHARDS: u32 = 2;

/// The counters: only ever `$inc`ed.
const COUNTERS: [&str; 3] = ["c.a", "c.b", "k"];

const DOC: &str = "d";

/// The document's default; with `blob`, larger than one message, so that every opening and
/// every state travels in chunks.
fn default_value(blob: bool) -> Value {
    let blob = if blob {
        "b".repeat(12_000)
    } else {
        String::new()
    };
    json!({"c": {"a": 0, "b": 0}, "k": 0, "s": {}, "list": [], "blob": blob})
}

/// What one schedule measured.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    steps: usize,
    issued: usize,
    accepted: usize,
    rejected: usize,
    conflicts: usize,
    stale: usize,
    failed: usize,
    earlier: usize,
    crashes: usize,
    kills: usize,
    chunks: usize,
    resyncs: usize,
    largest: usize,
    max_version: u64,
}

struct Schedule {
    rng: ChaCha8Rng,
    patches_left: u32,
    crashes_left: u32,
    drops_left: u32,
}

impl Schedule {
    fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

    fn spec(&mut self) -> Value {
        match self.below(100) {
            0..45 => {
                let c = self.pick(&COUNTERS);
                json!({"$inc": {c: self.below(13) as i64 - 3}})
            }
            45..55 => json!({"$inc": {"c.a": self.below(5), "k": self.below(5)}}),
            55..70 => {
                let path = self.pick(&["s", "s.x", "s.y", "s.x.z"]);
                let value = if self.chance(20) {
                    json!("str")
                } else {
                    json!(self.below(100))
                };
                json!({"$set": {path: value}})
            }
            70..82 => {
                let len = self.below(1500) as usize;
                json!({"$push": {"list": {"$each": ["x".repeat(len)], "$slice": -24}}})
            }
            82..88 => json!({"$currentDate": {"t": true}}),
            88..94 => json!({"$bit": {"bits": {"xor": self.below(256)}}}),
            _ => json!({"$unset": {self.pick(&["s.x", "s.y", "t"]): ""}}),
        }
    }
}

/// The `$inc` amount an update adds to `counter`.
fn inc_of(update: &Update, counter: &str) -> i64 {
    update.to_value()["$inc"][counter].as_i64().unwrap_or(0)
}

fn counter(value: &Value, path: &str) -> i64 {
    path.parse::<crate::doc::Path>()
        .ok()
        .and_then(|p| p.get(value).and_then(Value::as_i64))
        .unwrap_or(0)
}

fn run(seed: u64) -> Result<Outcome, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = 2 + rng.next_u64() % 3;
    let limits = DocLimits {
        // Small chunks, so that states span several messages; a small log, so that stale
        // bases happen; few pending patches, so that the bound is hit.
        max_chunk: 0,
        log_window: [4, 16, 256][(rng.next_u64() % 3) as usize],
        max_pending: 2 + (rng.next_u64() % 15) as usize,
        ..DocLimits::default()
    };
    let mut s = Schedule {
        patches_left: 20 + (rng.next_u64() % 41) as u32,
        crashes_left: (rng.next_u64() % 4) as u32,
        drops_left: (rng.next_u64() % 3) as u32,
        rng,
    };
    let blob = s.chance(50);
    // Some replicas are witnesses: answers then wait for one of them to hold the patch.
    let witnesses = s.below(n + 1);
    let mut net = Net::witnessed(n, witnesses, limits);
    for i in 0..net.reps.len() {
        net.open(i, DOC, default_value(blob));
    }
    // Per replica: what it issued, and the answers it got.
    let mut issued: Vec<BTreeMap<PatchId, Update>> = vec![BTreeMap::new(); n as usize];
    let mut answers: Vec<BTreeMap<PatchId, Vec<Result<u64, RejectReason>>>> =
        vec![BTreeMap::new(); n as usize];
    let mut outcome = Outcome::default();

    #[derive(Clone, Copy, Debug)]
    enum Action {
        Up(usize),
        Down(usize),
        Patch(usize),
        Connect(usize),
        Drop(usize),
        Crash,
        Settle,
    }
    for step in 0.. {
        if step > 200_000 {
            return Err("no quiescence after 200,000 steps".into());
        }
        net.tick();
        let mut actions: Vec<(u64, Action)> = Vec::new();
        let host_up = net.host.is_some();
        let gathering = net.host.as_ref().is_some_and(|h| h.is_gathering());
        let mut all_opened = true;
        for (i, r) in net.reps.iter().enumerate().filter(|(_, r)| r.alive) {
            if !r.up.is_empty() {
                actions.push((10, Action::Up(i)));
            }
            if !r.down.is_empty() {
                actions.push((10, Action::Down(i)));
            }
            if s.patches_left > 0 {
                actions.push((3, Action::Patch(i)));
            }
            if r.peer.is_none() && host_up {
                actions.push((4, Action::Connect(i)));
            }
            if r.peer.is_some() && s.drops_left > 0 && !gathering {
                actions.push((1, Action::Drop(i)));
            }
            all_opened &= r.peer.is_some() && r.up.is_empty();
        }
        if s.crashes_left > 0 && host_up {
            actions.push((1, Action::Crash));
        }
        if gathering && all_opened {
            actions.push((2, Action::Settle));
        }
        let total: u64 = actions.iter().map(|(w, _)| w).sum();
        if total == 0 {
            outcome.steps = step;
            break;
        }
        let action = weighted(&actions, s.below(total));
        match action {
            Action::Up(i) => {
                net.deliver_up(i);
            }
            Action::Down(i) => {
                net.deliver_down(i);
            }
            Action::Patch(i) => {
                s.patches_left -= 1;
                let spec = s.spec();
                if let Ok(id) = net.patch(i, DOC, spec.clone()) {
                    let update = Update::parse(&spec).expect("accepted locally, so valid");
                    issued[i].insert(id, update);
                    outcome.issued += 1;
                }
            }
            Action::Connect(i) => net.connect(i),
            Action::Drop(i) => {
                s.drops_left -= 1;
                net.drop_link(i);
            }
            Action::Crash => {
                s.crashes_left -= 1;
                outcome.crashes += 1;
                net.crash_host();
                let alive: Vec<usize> =
                    (0..net.reps.len()).filter(|&i| net.reps[i].alive).collect();
                if alive.len() > 1 && s.chance(30) {
                    let victim = alive[s.below(alive.len() as u64) as usize];
                    net.kill(victim);
                    outcome.kills += 1;
                }
                net.start_host();
            }
            Action::Settle => net.settle(),
        }
        // Collect answers as they come.
        for (i, r) in net.reps.iter_mut().enumerate() {
            for e in r.evts.drain(..) {
                match e {
                    DocEvt::Accepted { id, version, .. } => {
                        answers[i].entry(id).or_default().push(Ok(version));
                    }
                    DocEvt::Rejected { id, reason, .. } => {
                        answers[i].entry(id).or_default().push(Err(reason));
                    }
                    DocEvt::HubMisbehaved { reason } => {
                        return Err(format!("replica {i}: the hub misbehaved: {reason}"));
                    }
                    _ => {}
                }
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
    outcome.chunks = net.sent.iter().filter(|m| **m == "More").count();
    outcome.resyncs = net.sent.iter().filter(|m| **m == "Resync").count();
    if outcome.resyncs > 0 {
        return Err(format!(
            "{} resyncs: on FIFO links a replica never misses a version",
            outcome.resyncs
        ));
    }
    let host = net.host();
    let host_value = host.value(DOC).ok_or("the host has no document")?.clone();
    let version = host.version(DOC).unwrap_or(0);
    outcome.max_version = version;
    outcome.largest = crate::doc::types::json_len(&host_value);
    let empty = BTreeMap::new();
    let history = net.canonical.get(DOC).unwrap_or(&empty);
    if history.keys().copied().ne(1..=version) {
        return Err(format!(
            "the history is not versions 1..={version}: {:?}",
            history.keys().collect::<Vec<_>>()
        ));
    }
    let mut replay = default_value(blob);
    for (v, a) in history {
        a.update
            .apply(
                &mut replay,
                &ApplyContext {
                    now_unix_ms: a.wall_ms,
                },
            )
            .map_err(|e| format!("version {v} does not replay: {e}"))?;
    }
    if replay != host_value {
        return Err(format!(
            "the host's value is not its history replayed:\n host   {host_value}\n replay {replay}"
        ));
    }
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, r) in net.reps.iter().enumerate() {
        if !r.alive {
            for a in history.values().filter(|a| a.origin == r.node) {
                for c in COUNTERS {
                    *expected.entry(c).or_default() += inc_of(&a.update, c);
                }
            }
            continue;
        }
        let m = &r.m;
        if m.value(DOC) != Some(&host_value)
            || m.confirmed(DOC) != Some(&host_value)
            || m.version(DOC) != Some(version)
        {
            return Err(format!(
                "replica {i} diverges: version {:?} vs {version}\n local     {:?}\n confirmed {:?}\n host      {host_value}",
                m.version(DOC),
                m.value(DOC),
                m.confirmed(DOC)
            ));
        }
        if m.pending(DOC).count() != 0 || !m.is_synced(DOC) {
            return Err(format!("replica {i} is not quiet"));
        }
        let mut told_accepted = Vec::new();
        for (id, update) in &issued[i] {
            match answers[i].get(id).map(Vec::as_slice) {
                Some([Ok(_)]) => {
                    outcome.accepted += 1;
                    told_accepted.push(update);
                    for c in COUNTERS {
                        *expected.entry(c).or_default() += inc_of(update, c);
                    }
                }
                Some([Err(reason)]) => {
                    outcome.rejected += 1;
                    match reason {
                        RejectReason::Conflict { .. } => outcome.conflicts += 1,
                        RejectReason::Stale { .. } => outcome.stale += 1,
                        RejectReason::Failed(_) => outcome.failed += 1,
                        RejectReason::Earlier => outcome.earlier += 1,
                        other => return Err(format!("replica {i}: {id} rejected: {other}")),
                    }
                }
                other => return Err(format!("replica {i}: {id} answered {other:?}")),
            }
        }
        if let Some(extra) = answers[i].keys().find(|id| !issued[i].contains_key(id)) {
            return Err(format!("replica {i}: an answer to {extra}, never issued"));
        }
        let in_history: Vec<&Update> = history
            .values()
            .filter(|a| a.origin == r.node)
            .map(|a| &a.update)
            .collect();
        if in_history != told_accepted {
            return Err(format!(
                "replica {i}: its patches in the history differ from those it was told were \
                 accepted:\n history {in_history:?}\n told    {told_accepted:?}"
            ));
        }
    }
    for c in COUNTERS {
        let got = counter(&host_value, c);
        let want = expected.get(c).copied().unwrap_or(0);
        if got != want {
            return Err(format!(
                "counter {c} is {got}, the accepted $incs sum to {want}"
            ));
        }
    }
    Ok(outcome)
}

fn schedules() -> u32 {
    std::env::var("IPC_DOC_SCHEDULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SCHEDULES)
}

fn shard(shard: u32) -> Vec<Outcome> {
    crate::tests::run_seeds(file!(), schedules().div_ceil(SHARDS), shard, run)
}

fn report(outcomes: &[Outcome]) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "schedules {} | patches issued {} accepted {} rejected {} (conflict {}, stale {}, \
         failed {}, rejected by an earlier host {}) | hub crashes {} replicas killed {} | \
         continuation chunks {} | largest value {} B | highest version {} | most steps {}",
        outcomes.len(),
        sum(|o| o.issued),
        sum(|o| o.accepted),
        sum(|o| o.rejected),
        sum(|o| o.conflicts),
        sum(|o| o.stale),
        sum(|o| o.failed),
        sum(|o| o.earlier),
        sum(|o| o.crashes),
        sum(|o| o.kills),
        sum(|o| o.chunks),
        outcomes.iter().map(|o| o.largest).max().unwrap_or(0),
        outcomes.iter().map(|o| o.max_version).max().unwrap_or(0),
        outcomes.iter().map(|o| o.steps).max().unwrap_or(0),
    );
}

#[test]
fn schedules_shard_0() {
    report(&shard(0));
}

#[test]
fn schedules_shard_1() {
    report(&shard(1));
}

/// Replays one schedule: paste a failing seed into `SEED`, or set `IPC_DOC_SEED`; with
/// `RUST_LOG=debug` the machines log every transition:
/// `IPC_DOC_SEED=.. RUST_LOG=debug cargo test -p ipc-proto doc::tests::sim::replay_seed -- --nocapture`.
#[test]
fn replay_seed() {
    const SEED: u64 = 1;
    let seed = crate::tests::seed_to_replay("IPC_DOC_SEED", SEED);
    let outcome = run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    report(&[outcome]);
}
