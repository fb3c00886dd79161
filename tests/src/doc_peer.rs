//! `ipc-test-node doc-peer`: one std node with one shared document, driven through stdin, for
//! the multi-process document tests (`tests/docs.rs`).
//!
//! ```text
//! ipc-test-node doc-peer --group G --name N --doc D [--default JSON] [--no-hub]
//! ```
//!
//! Prints `{"event":"started","node":..}`, then `{"event":"opened","version":V}` once the
//! host answered. Then, per stdin line:
//!
//! - `inc COUNT`: `$inc` of `n` by 1, COUNT times, each waited for and sent again while the
//!   host rejects it (a conflict); prints `{"event":"progress","accepted":K}` every 100 and
//!   `{"event":"done","accepted":COUNT,"rejected":R}` at the end;
//! - `send UPDATE`: sends one patch without waiting; prints `{"event":"sent"}`;
//! - `wait`: waits for the answers of what `send` sent, one line each:
//!   `{"event":"answer","version":V}` or `{"event":"answer","error":..,"conflict":PATH}`;
//! - `get`: prints `{"event":"value","version":V,"value":..}`.
//!
//! At the end of stdin it leaves and exits.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use ipc_driver_std::{Committed, DocSnapshot, Node, PatchError, Ticket};
use ipc_proto::doc::RejectReason;
use serde_json::{Value, json};

use crate::peer::emit;

struct Args {
    group: String,
    name: String,
    doc: String,
    default: Value,
    hub_eligible: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        group: String::new(),
        name: "doc-peer".into(),
        doc: String::new(),
        default: json!({}),
        hub_eligible: true,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--group" => a.group = value()?,
            "--name" => a.name = value()?,
            "--doc" => a.doc = value()?,
            "--default" => {
                a.default = serde_json::from_str(&value()?).map_err(|e| e.to_string())?;
            }
            "--no-hub" => a.hub_eligible = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.group.is_empty() || a.doc.is_empty() {
        return Err("--group and --doc are required".into());
    }
    Ok(a)
}

/// Runs the role; see the module docs.
pub fn main(args: &[String]) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match parse_args(args)
        .map_err(|e| (2, e))
        .and_then(|a| run(&a).map_err(|e| (1, e)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, e)) => {
            eprintln!("ipc-test-node doc-peer: {e}");
            ExitCode::from(code)
        }
    }
}

fn answer(r: Result<Committed, PatchError>) -> Value {
    match r {
        Ok(c) => json!({"event": "answer", "version": c.version, "witnesses": c.witnesses}),
        Err(e) => {
            let conflict = match &e {
                PatchError::Rejected(RejectReason::Conflict { path, .. }) => Some(path.to_string()),
                _ => None,
            };
            json!({"event": "answer", "error": e.to_string(), "conflict": conflict})
        }
    }
}

fn run(a: &Args) -> Result<(), String> {
    let node = Node::builder(&a.name)
        .group(&a.group)
        .hub_eligible(a.hub_eligible)
        .join()
        .map_err(|e| e.to_string())?;
    emit(&json!({"event": "started", "node": node.id().to_string(), "pid": std::process::id()}));
    let doc = node
        .open_doc(&a.doc, a.default.clone())
        .map_err(|e| e.to_string())?;
    let version = doc
        .wait_opened(Duration::from_secs(20))
        .map_err(|e| e.to_string())?;
    emit(&json!({"event": "opened", "version": version}));
    let mut tickets: Vec<Ticket> = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| e.to_string())?;
        let (cmd, rest) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match cmd {
            "inc" => {
                let count: u64 = rest.parse().map_err(|_| format!("inc {rest:?}"))?;
                let update = json!({"$inc": {"n": 1}});
                let (mut accepted, mut rejected) = (0, 0);
                while accepted < count {
                    match doc.patch(&update) {
                        Ok(_) => {
                            accepted += 1;
                            if accepted % 100 == 0 {
                                emit(&json!({"event": "progress", "accepted": accepted}));
                            }
                        }
                        Err(PatchError::Rejected(_)) => rejected += 1,
                        Err(e) => return Err(format!("patch {accepted}: {e}")),
                    }
                }
                emit(&json!({"event": "done", "accepted": accepted, "rejected": rejected}));
            }
            "send" => {
                let update: Value = serde_json::from_str(rest).map_err(|e| e.to_string())?;
                tickets.push(doc.patch_nowait(&update).map_err(|e| e.to_string())?);
                emit(&json!({"event": "sent"}));
            }
            "wait" => {
                for t in tickets.drain(..) {
                    emit(&answer(t.wait()));
                }
            }
            "get" => {
                let DocSnapshot { version, value } = doc.snapshot();
                emit(&json!({"event": "value", "version": version, "value": *value}));
            }
            other => return Err(format!("unknown command {other:?}")),
        }
    }
    drop(doc);
    node.leave().map_err(|e| e.to_string())
}
