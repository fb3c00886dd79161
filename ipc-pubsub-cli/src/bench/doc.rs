//! `bench doc`: shared-document patches through the host, with 1 and 4 writers, with and
//! without witnesses.
//!
//! One hub node and N writer nodes (that may not run the hub) of a fresh group, in this
//! process: each node has its own I/O thread and sockets, as nodes in separate processes do.
//! With witnesses, one more node joins that never opens the document (a witness: the host
//! answers a patch once it holds it) and every node is a witness; without, no node is one and
//! the host answers at once. The two series of each writer count run in the same run, one
//! after the other.
//! Each writer, on a thread of its own, issues `$inc` patches on a path of its own (disjoint
//! paths never conflict, so every patch is accepted: this measures the host, not conflict
//! retries), one at a time, waiting for each answer ([`Doc::patch`](ipc_driver_std::Doc::patch)),
//! for `--seconds`. Reported: accepted patches per second (all writers together), and the
//! patch-to-ack latency (the call's duration: local apply, to the host, its broadcast back,
//! and with witnesses a witness's receipt),
//! median and 99th percentile (nearest-rank).

use std::io::{self, Write};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;
use serde_json::json;

use super::measure::nearest_rank;
use super::{Machine, build, machine, progress};
use crate::children::TempGroup;
use crate::{CliError, Result};
use ipc_driver_std::{DriverError, Node};

/// How long the host may take to answer an opening.
const OPEN: Duration = Duration::from_secs(10);

/// Options of `bench doc`.
#[derive(Debug, Args)]
pub(crate) struct DocBenchArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,

    /// How long each series runs.
    #[arg(long, default_value_t = 2, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=600))]
    seconds: u64,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    build: &'static str,
    seconds: u64,
    series: Vec<Series>,
}

#[derive(Debug, Serialize)]
struct Series {
    writers: usize,
    witnesses: bool,
    patches: usize,
    patches_per_s: f64,
    ack_median_us: f64,
    ack_p99_us: f64,
}

/// Runs `bench doc`.
pub(crate) fn run(args: &DocBenchArgs) -> Result<()> {
    let mut series = Vec::new();
    for writers in [1, 4] {
        for witnesses in [false, true] {
            let with = if witnesses { "with" } else { "without" };
            progress(&format!(
                "{writers} writer(s) {with} witnesses, {} s",
                args.seconds
            ));
            series.push(measure(
                writers,
                witnesses,
                Duration::from_secs(args.seconds),
            )?);
        }
    }
    let report = Report {
        machine: machine(),
        build: build(),
        seconds: args.seconds,
        series,
    };
    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "shared documents: {} ({} cores), {} build, {} s per series",
            report.machine.cpu, report.machine.cores, report.build, report.seconds
        )?;
        writeln!(
            out,
            "| writers | witnesses | patches/s | ack median | ack p99 | patches/s vs without |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|")?;
        for s in &report.series {
            let without = report
                .series
                .iter()
                .find(|o| o.writers == s.writers && !o.witnesses)
                .map_or(f64::NAN, |o| o.patches_per_s);
            writeln!(
                out,
                "| {} | {} | {:.0} | {:.0} µs | {:.0} µs | {:.2}x |",
                s.writers,
                if s.witnesses { "yes" } else { "no" },
                s.patches_per_s,
                s.ack_median_us,
                s.ack_p99_us,
                s.patches_per_s / without
            )?;
        }
    }
    Ok(())
}

/// One series: `writers` nodes patching for `span`, with or without witnesses.
fn measure(writers: usize, witnesses: bool, span: Duration) -> Result<Series> {
    let group = TempGroup::new("bench-doc")?;
    let hub = Node::builder("bench-hub")
        .group(group.name())
        .witness(witnesses)
        .join()?;
    // A member that never opens the document: the witness of every patch.
    let witness = witnesses
        .then(|| {
            Node::builder("bench-witness")
                .group(group.name())
                .hub_eligible(false)
                .join()
        })
        .transpose()?;
    let barrier = Arc::new(Barrier::new(writers));
    let threads: Vec<_> = (0..writers)
        .map(|i| {
            let group = group.name().to_string();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<Vec<u32>> {
                let node = Node::builder(&format!("bench-w{i}"))
                    .group(&group)
                    .hub_eligible(false)
                    .witness(witnesses)
                    .join()?;
                let doc = node.open_doc("bench", json!({}))?;
                doc.wait_opened(OPEN)?;
                let update = json!({"$inc": {format!("w{i}"): 1}});
                barrier.wait();
                let start = Instant::now();
                let mut acks = Vec::new();
                while start.elapsed() < span {
                    let t = Instant::now();
                    let committed = doc
                        .patch(&update)
                        .map_err(|e| CliError::Failed(format!("writer {i}: {e}")))?;
                    let us = t.elapsed().as_micros();
                    if witnesses && committed.witnesses == 0 {
                        return Err(CliError::Failed(format!(
                            "writer {i}: version {} answered with no witness in a group that \
                             has one",
                            committed.version
                        )));
                    }
                    acks.push(u32::try_from(us).unwrap_or(u32::MAX));
                }
                drop(doc);
                node.leave()?;
                Ok(acks)
            })
        })
        .collect();
    let mut acks = Vec::new();
    for t in threads {
        let r = t
            .join()
            .map_err(|_| CliError::Failed("a writer thread panicked".into()))?;
        acks.extend(r?);
    }
    if let Some(w) = witness {
        w.leave()?;
    }
    hub.leave().map_err(|e: DriverError| CliError::Driver(e))?;
    acks.sort_unstable();
    let patches = acks.len();
    Ok(Series {
        writers,
        witnesses,
        patches,
        patches_per_s: patches as f64 / span.as_secs_f64(),
        ack_median_us: nearest_rank(&acks, 50.0),
        ack_p99_us: nearest_rank(&acks, 99.0),
    })
}
