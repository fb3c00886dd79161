//! Shared documents through whole members: random patch sequences from several nodes, with
//! the hub's node (which hosts the documents) dying up to three times, sometimes with another
//! node, and links lost.
//!
//! Each schedule comes from one seed: two to four nodes open one document that half the time
//! is larger than one message (12 KB of JSON; chunks of 4 KiB here), with a small conflict log
//! and few pending patches allowed ([`SimBuilder::doc_limits`]); then 20 to 60 random patches
//! from random running nodes (`$inc` of three counters, `$set`/`$unset` on overlapping paths,
//! `$push` of long strings, `$currentDate`, `$bit`), separated by random simulated time. At
//! random points the hub's node dies, half the time with a death the survivors' drivers
//! confirm ([`Sim::kill`]), else unconfirmed ([`Sim::crash`]); 30 % of the time another node
//! dies with it; a fresh node starts and opens the document after each. At other random
//! points one node loses every link ([`Sim::cut_links`]) and reconnects. After quiescence
//! ([`check::docs_quiet`]):
//!
//! - exactly one hub, and nobody saw a correct peer misbehave ([`check::one_hub`]);
//! - every running node's value, confirmed value and version equal the host's, and the host's
//!   value is the accepted patches (as the hosts broadcast them) applied in version order to
//!   the default ([`check::documents_equal`]);
//! - every patch a surviving node issued was answered exactly once, and the patches it was
//!   told were accepted are exactly its patches in that history, in order: no acknowledged
//!   version lost, none applied twice ([`check::no_acked_version_lost`]);
//! - each counter equals the sum of the `$inc`s on it in that history;
//! - no replica asked to resync: on FIFO links, a replica never misses a version.
//!
//! `cargo test` runs [`DEFAULT_SCHEDULES`]; set `IPC_DOC_SCHEDULES` for more. A failing seed
//! is printed and kept in `proptest-regressions/`; paste it into [`replay_seed`] (or set
//! `IPC_DOC_SEED`).
//!
//! [`SimBuilder::doc_limits`]: crate::sim::SimBuilder::doc_limits

use proptest::prelude::*;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde_json::{Value, json};

use crate::OwnTopics;
use crate::doc::{DocEvt, DocLimits, RejectReason};
use crate::sim::{NodeIx, Sim, SimConfig, check};

/// Schedules per `cargo test` run, and the test functions they are split over.
const SCHEDULES: super::Shards = super::Shards {
    var: "IPC_DOC_SCHEDULES",
    default: DEFAULT_SCHEDULES,
    shards: 4,
};
const DEFAULT_SCHEDULES: u32 = 520;
const MAX_STEPS: usize = 400_000;
const DOC: &str = "shared";

/// The counters: only ever `$inc`ed.
const COUNTERS: [&str; 3] = ["c.a", "c.b", "k"];

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
    others_died: usize,
    cuts: usize,
    chunks: usize,
    largest: usize,
    version: u64,
}

/// The seeded choices of a schedule.
struct Choices(ChaCha8Rng);

impl Choices {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    /// A random update.
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

    /// Kills `ix` with a confirmed death or crashes it (unconfirmed); `true` for a kill.
    fn die(&mut self, sim: &mut Sim, ix: NodeIx) -> bool {
        let kill = self.chance(50);
        if kill {
            sim.kill(ix);
        } else {
            sim.crash(ix);
        }
        kill
    }
}

/// Starts a node that opens the document.
fn spawn(sim: &mut Sim, default: &Value) {
    let ix = sim.spawn(&format!("n{}", sim.nodes().len()), &OwnTopics::default());
    sim.open_doc(ix, DOC, default.clone());
}

/// Whether every running node follows a serving host with nothing pending.
fn quiet(sim: &Sim) -> bool {
    check::docs_quiet(sim, DOC)
}

fn counter(value: &Value, path: &str) -> i64 {
    path.parse::<crate::doc::Path>()
        .ok()
        .and_then(|p| p.get(value).and_then(Value::as_i64))
        .unwrap_or(0)
}

fn run(seed: u64) -> Result<Outcome, String> {
    let mut c = Choices(ChaCha8Rng::seed_from_u64(seed));
    let limits = DocLimits {
        // Small chunks, so that states span several messages; a small log, so that stale
        // bases happen; few pending patches, so that the bound is hit.
        max_chunk: 0,
        log_window: c.pick(&[4, 16, 256]),
        max_pending: 2 + c.below(15) as usize,
        ..DocLimits::default()
    };
    let mut sim = Sim::builder(seed).doc_limits(limits).build();
    let mut outcome = Outcome::default();
    let default = default_value(c.chance(50));
    for _ in 0..2 + c.below(3) {
        spawn(&mut sim, &default);
    }
    let patches = 20 + c.below(41);
    let mut deaths_left = c.below(4);
    let mut cuts_left = c.below(3);
    for _ in 0..patches {
        let members: Vec<NodeIx> = sim.members().collect();
        let ix = c.pick(&members);
        let spec = c.spec();
        if let Some(Ok(_)) = sim.patch_doc(ix, DOC, &spec) {
            outcome.issued += 1;
        }
        sim.run_for(std::time::Duration::from_micros(c.below(3_000)));
        let hub = sim.hubs().next();
        if deaths_left > 0
            && c.chance(8)
            && let Some(hub) = hub
        {
            deaths_left -= 1;
            if c.die(&mut sim, hub) {
                outcome.kills += 1;
            } else {
                outcome.crashes += 1;
            }
            let alive: Vec<NodeIx> = sim.members().collect();
            if alive.len() > 1 && c.chance(30) {
                let victim = c.pick(&alive);
                c.die(&mut sim, victim);
                outcome.others_died += 1;
            }
            spawn(&mut sim, &default);
        }
        if cuts_left > 0 && c.chance(6) {
            cuts_left -= 1;
            outcome.cuts += 1;
            let members: Vec<NodeIx> = sim.members().collect();
            sim.cut_links(c.pick(&members));
        }
    }
    outcome.steps = sim
        .run_until(MAX_STEPS, quiet)
        .map_err(|e| format!("{e}\n{}", sim.describe()))?;

    let v = |e: check::Violation| e.to_string();
    check::one_hub(&sim).map_err(v)?;
    let value = check::documents_equal(&sim, DOC, &default).map_err(v)?;
    check::no_acked_version_lost(&sim, DOC).map_err(v)?;
    let version = sim
        .hubs()
        .next()
        .and_then(|h| sim.node(h).member().doc_host())
        .and_then(|h| h.version(DOC))
        .expect("quiet: a host serves the document");
    for name in COUNTERS {
        let want: i64 = (1..=version)
            .map(|v| &sim.doc_history[&(DOC.to_owned(), v)].update)
            .map(|u| u.to_value()["$inc"][name].as_i64().unwrap_or(0))
            .sum();
        let got = counter(&value, name);
        if got != want {
            return Err(format!(
                "counter {name} is {got}, the accepted $incs sum to {want}"
            ));
        }
    }
    let msgs = |name| sim.doc_msgs.get(name).copied().unwrap_or(0);
    if msgs("Resync") > 0 {
        return Err(format!(
            "{} resyncs: on FIFO links a replica never misses a version",
            msgs("Resync")
        ));
    }
    outcome.chunks = msgs("More");
    outcome.largest = value.to_string().len();
    outcome.version = version;
    for n in sim.nodes().iter().filter(|n| n.is_member()) {
        for e in n.doc_evts() {
            match e {
                DocEvt::Accepted { .. } => outcome.accepted += 1,
                DocEvt::Rejected { id, reason, .. } => {
                    outcome.rejected += 1;
                    match reason {
                        RejectReason::Conflict { .. } => outcome.conflicts += 1,
                        RejectReason::Stale { .. } => outcome.stale += 1,
                        RejectReason::Failed(_) => outcome.failed += 1,
                        RejectReason::Earlier => outcome.earlier += 1,
                        other => return Err(format!("{}: {id} rejected: {other}", n.name())),
                    }
                }
                _ => {}
            }
        }
    }
    Ok(outcome)
}

fn report(outcomes: &[Outcome]) {
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    println!(
        "document schedules {} | patches issued {} | answered to survivors: accepted {} \
         rejected {} (conflict {}, stale {}, failed {}, rejected by an earlier host {}) | hub \
         deaths confirmed {} unconfirmed {} | other nodes died with the hub {} | links cut {} \
         | continuation chunks {} | largest value {} B | highest version {} | most steps {}",
        outcomes.len(),
        sum(|o| o.issued),
        sum(|o| o.accepted),
        sum(|o| o.rejected),
        sum(|o| o.conflicts),
        sum(|o| o.stale),
        sum(|o| o.failed),
        sum(|o| o.earlier),
        sum(|o| o.kills),
        sum(|o| o.crashes),
        sum(|o| o.others_died),
        sum(|o| o.cuts),
        sum(|o| o.chunks),
        outcomes.iter().map(|o| o.largest).max().unwrap_or(0),
        outcomes.iter().map(|o| o.version).max().unwrap_or(0),
        outcomes.iter().map(|o| o.steps).max().unwrap_or(0),
    );
}

/// One shard of the schedules; the schedules must exercise what they claim to.
fn shard(shard: u32) {
    let outcomes = SCHEDULES.run(file!(), shard, run);
    report(&outcomes);
    if outcomes.len() >= 100 {
        let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
        assert!(sum(|o| o.kills) > 0, "no confirmed death of the hub");
        assert!(sum(|o| o.crashes) > 0, "no unconfirmed death of the hub");
        assert!(
            outcomes.iter().any(|o| o.kills + o.crashes >= 2),
            "no schedule lost the hub twice"
        );
        assert!(sum(|o| o.others_died) > 0, "no node died with the hub");
        assert!(sum(|o| o.cuts) > 0, "no link cut");
        assert!(sum(|o| o.conflicts) > 0, "no conflict");
        assert!(sum(|o| o.stale) > 0, "no stale base");
        assert!(sum(|o| o.chunks) > 0, "no state in chunks");
    }
}

super::shard_tests!(SCHEDULES, shard;
    doc_schedules_shard_0 = 0,
    doc_schedules_shard_1 = 1,
    doc_schedules_shard_2 = 2,
    doc_schedules_shard_3 = 3,
);

/// Replays one schedule: paste a failing seed into `SEED`, or set `IPC_DOC_SEED`;
/// `RUST_LOG=debug` logs every transition:
/// `IPC_DOC_SEED=.. RUST_LOG=debug cargo test -p ipc-proto --all-features tests::docs::replay_seed -- --nocapture`.
#[test]
fn replay_seed() {
    const SEED: u64 = 1;
    let seed = super::seed_to_replay("IPC_DOC_SEED", SEED);
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
