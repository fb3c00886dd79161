//! `bench`: measurements with real processes, each a child of this executable.
//!
//! | subcommand | module | children |
//! |---|---|---|
//! | `bench topology` | [`topology`] | `ipc-pubsub node` processes, through [`Fleet`](super::children::Fleet) |
//! | `bench payload` | [`payload`] | `ipc-pubsub bench-child ROLE` processes, through [`harness`] |
//! | `bench doc` | [`doc`] | none: nodes of this process, each with its own I/O thread |
//!
//! `bench payload` prints ratios of the pub/sub data path against raw baselines measured in
//! the same run. Its pieces, each importing only those below it:
//! - [`payload`]: the registry of measured series (baselines and pub/sub), the ratios between
//!   them with their targets, and the run.
//! - [`report`]: what the run reports: the rows and ratios of the JSON document, and the table.
//! - [`baselines`]: the raw measurements (SEQPACKET ping-pong, UDS stream copy, memcpy, fresh
//!   memfd per message, reused segment pool), following `BENCH.md` (its *raw baselines and goals*).
//! - [`pubsub`]: our own series, the std driver's data path between the same processes.
//! - [`series`]: the vocabulary the three above share: what a series is, the ids reserved for
//!   ours, the message sizes, the checks of the children's reports.
//! - [`harness`]: starts a sender and its receivers as pinned child processes of this very
//!   executable (the hidden `bench-child` subcommand), wires them with socketpairs, collects
//!   what they report, kills and reaps them on every path.
//! - [`measure`]: payloads and their checksums, CPU load samples, and the statistics over
//!   repetitions.
//!
//! Nothing outside `bench` reaches into these modules: the command line calls [`run`] and
//! [`child`].

#![deny(clippy::undocumented_unsafe_blocks)]

mod baselines;
mod doc;
mod harness;
mod measure;
mod payload;
mod pubsub;
mod report;
mod series;
mod topology;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::Result;
use crate::GroupArgs;

pub(super) use harness::ChildArgs;
#[cfg(test)]
pub(super) use harness::Placement;
#[cfg(test)]
pub(super) use topology::PidfdSetting;

/// Options of `bench`.
#[derive(Debug, Args)]
pub(super) struct BenchArgs {
    #[command(subcommand)]
    pub(super) kind: Kind,
}

/// Which benchmark.
#[derive(Debug, Subcommand)]
pub(super) enum Kind {
    /// Failover time (16 nodes, SIGKILL of the hub, then of a spoke, with and without pidfds,
    /// flaps counted), convergence of 64 nodes started at once, idle CPU of 16 nodes.
    Topology(topology::TopologyArgs),
    /// The payload data path against raw baselines measured in the same run: round trip,
    /// one-way throughput at 4 KiB to 16 MiB, fan-out to 4 receivers; key rows also with
    /// shared-memory rings off (`.no_rings`), for what the rings buy.
    ///
    /// Every figure comes from child processes pinned to CPUs (sender on the first allowed
    /// CPU, receivers on the second), after a warm-up, over several repetitions, each with
    /// fresh processes and sockets. Takes a few minutes (`--quick`: well under a minute).
    Payload(payload::PayloadArgs),
    /// Shared-document patches through the host: patches per second with 1 and 4 writers,
    /// and patch-to-ack latency.
    Doc(doc::DocBenchArgs),
}

/// Runs `bench`.
pub(super) fn run(args: &BenchArgs) -> Result<()> {
    match &args.kind {
        Kind::Topology(t) => topology::run(t),
        Kind::Payload(p) => payload::run(p),
        Kind::Doc(d) => doc::run(d),
    }
}

/// Runs `bench-child`: one process of a `bench payload` measurement.
pub(super) fn child(group: &GroupArgs, args: &ChildArgs) -> Result<()> {
    harness::child_main(group.name(), args, payload::role)
}

/// The machine a benchmark ran on.
#[derive(Debug, Clone, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    kernel: String,
}

/// The machine: CPU model from `/proc/cpuinfo`, usable cores, and the kernel as `uname -srm`
/// prints it (read from `/proc/sys/kernel`, which holds the same strings).
fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Hardware" | "cpu model")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let arch = Some(read("arch"))
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| std::env::consts::ARCH.into());
    Machine {
        cpu,
        cores,
        kernel: format!("{} {} {arch}", read("ostype"), read("osrelease")),
    }
}

/// `"debug"` or `"release"`: how this executable was built.
fn build() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// A progress line on stderr.
fn progress(text: &str) {
    eprintln!("bench: {text}");
}
