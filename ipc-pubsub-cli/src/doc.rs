//! `doc NAME get|patch|watch`: read, patch or follow one shared document of the group.
//!
//! Each joins the running group as a node named `doc` that never runs the hub (with
//! `--create`, one that may: it starts the group if none runs), opens the document (creating
//! it from `--default` if the group does not have it), waits for the host's answer, does its
//! work and leaves. `get` prints the value as one line of JSON; `patch` prints the version the
//! host gave the patch, or the error (and exits 1); `watch` prints JSON lines: a `doc_state`
//! line with the value, then a `doc_patched` line per accepted patch with the value after it
//! (and a `doc_state` line again whenever a new host's state replaces the value), until SIGINT
//! or SIGTERM.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::{Args, Subcommand};
use ipc_proto::doc::{ApplyContext, Update};
use serde_json::Value;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::json::{self, Hex, Line};
use super::{CliError, Result, Timing};
use crate::GroupArgs;
use ipc_driver_std::{Doc, DocEvent, DocSnapshot, DriverError, Events, Node, NodeEvent};

/// How long the host may take to answer the opening.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of `doc`.
#[derive(Debug, Args)]
pub(super) struct DocArgs {
    /// The document's name.
    pub(super) name: String,

    /// What to do.
    #[command(subcommand)]
    pub(super) action: DocAction,

    /// The value to create the document with, should the group not have it yet (JSON).
    #[arg(long, global = true, value_name = "JSON", default_value = "{}")]
    pub(super) default: String,

    /// Start the group (and run its hub) if none is running, instead of failing.
    #[arg(long, global = true)]
    pub(super) create: bool,

    #[command(flatten)]
    pub(super) timing: Timing,
}

/// What `doc` does.
#[derive(Debug, Subcommand)]
pub(super) enum DocAction {
    /// Print the document's value as one line of JSON.
    Get,
    /// Apply one patch (MongoDB update operators) and print the version the host gave it;
    /// on a rejection or an invalid update, print the error and exit 1.
    Patch {
        /// The update, e.g. '{"$inc": {"count": 1}, "$set": {"a.b": "x"}}'.
        // Parsed by `run`: a bad update is a failure (exit 1), not a usage error.
        #[arg(value_name = "UPDATE")]
        update: String,
        /// Print `{"version":N,"witnesses":W}` instead of the version alone.
        #[arg(long)]
        json: bool,
        /// Exit 3 if no witness holds the patch when the host answers (it is applied, but
        /// lost if the hub dies before another member holds it).
        #[arg(long)]
        require_witness: bool,
    },
    /// Print the value, then each accepted patch and the value after it, as JSON lines, until
    /// SIGINT or SIGTERM.
    Watch,
}

fn parse_json(what: &str, s: &str) -> Result<Value> {
    serde_json::from_str(s).map_err(|e| CliError::Failed(format!("{what} is not JSON: {e}")))
}

/// The update of `patch`, checked before joining: JSON, valid, with at least one operator.
fn parse_update(s: &str) -> Result<Value> {
    let update = parse_json("the update", s)?;
    match Update::parse(&update) {
        Err(e) => Err(CliError::Failed(format!("invalid update: {e}"))),
        Ok(u) if u.paths().next().is_none() => Err(CliError::Failed(
            "invalid update: it changes nothing (give an operator, e.g. '{\"$set\": {\"a\": 1}}')"
                .into(),
        )),
        Ok(_) => Ok(update),
    }
}

/// Runs `doc`.
pub(super) fn run(group: &GroupArgs, args: &DocArgs) -> Result<()> {
    let default = parse_json("--default", &args.default)?;
    let update = match &args.action {
        DocAction::Patch { update, .. } => Some(parse_update(update)?),
        DocAction::Get | DocAction::Watch => None,
    };
    // Before anything else: a signal from now on is a request to leave.
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let builder = args.timing.apply(group.builder("doc"));
    // A one-shot client: its copy of the documents would be gone when needed.
    let builder = builder.witness(false);
    let node = match builder.join_existing(!args.create).join() {
        Err(DriverError::NoGroup { group }) => {
            return Err(CliError::Failed(format!(
                "no group named {group:?} is running (start a node, or pass --create)"
            )));
        }
        joined => joined?,
    };
    let events = node.events();
    let doc = node.open_doc(&args.name, default)?;
    doc.wait_opened(OPEN_TIMEOUT)?;
    let result = match &args.action {
        DocAction::Get => {
            let line = serde_json::to_string(&*doc.snapshot().value).map_err(io::Error::from)?;
            println!("{line}");
            Ok(())
        }
        DocAction::Patch {
            json,
            require_witness,
            ..
        } => match doc.patch(update.as_ref().expect("parsed above")) {
            Ok(committed) => {
                if *json {
                    let line = serde_json::json!({
                        "version": committed.version,
                        "witnesses": committed.witnesses,
                    });
                    println!("{line}");
                } else {
                    println!("{}", committed.version);
                }
                if committed.witnesses == 0 {
                    let why = format!(
                        "version {} is held by the hub alone (no other member keeps the \
                         group's documents): it is lost if the hub dies before one joins",
                        committed.version
                    );
                    if *require_witness {
                        node.leave()?;
                        return Err(CliError::Unwitnessed(why));
                    }
                    tracing::warn!("{why}");
                }
                Ok(())
            }
            Err(e) => Err(CliError::Failed(e.to_string())),
        },
        DocAction::Watch => return watch(node, doc, events, signals),
    };
    node.leave()?;
    result
}

/// Prints the document's lines on a thread of their own until a signal comes (or stdout
/// closes, or the node stops).
fn watch(node: Node, doc: Doc, events: Events, mut signals: Signals) -> Result<()> {
    let handle = signals.handle();
    let doc = Arc::new(doc);
    let printer = {
        let doc = Arc::clone(&doc);
        thread::Builder::new()
            .name("ipc-pubsub-doc".into())
            .spawn(move || {
                let r = follow(&doc, &events);
                handle.close();
                r
            })?
    };
    let signal = signals.forever().next();
    tracing::debug!(?signal, "leaving");
    // Stopped by itself because its hub is gone and nobody took over (see `join_existing`)?
    let gone = match node.wait_synced(Duration::ZERO) {
        Err(DriverError::NoGroup { group }) => Some(group),
        _ => None,
    };
    drop(doc);
    // Leaving ends the node's events, hence the printer (if it has not ended already).
    let left = node.leave();
    let printed = printer
        .join()
        .map_err(|_| CliError::Failed("the printer thread panicked".into()))?;
    left?;
    match (signal, printed) {
        (_, Err(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        (_, Err(e)) => Err(e.into()),
        (Some(_), Ok(())) => Ok(()),
        (None, Ok(())) => Err(CliError::Failed(match gone {
            Some(group) => format!(
                "no group named {group:?} is running any more (its hub is gone and no other \
                 node took over)"
            ),
            None => "the node stopped by itself".into(),
        })),
    }
}

/// The value as the lines say, and what the next line needs.
struct Follower {
    name: String,
    version: u64,
    value: Value,
    /// A state must be printed once the snapshot reaches this version.
    resync: Option<u64>,
}

impl Follower {
    fn state(&mut self, doc: &Doc, out: &mut impl io::Write) -> io::Result<bool> {
        let DocSnapshot { version, value } = doc.snapshot();
        let version = version.unwrap_or(0);
        if self.resync.is_some_and(|v| version < v) {
            return Ok(false);
        }
        self.resync = None;
        self.version = version;
        self.value = Value::clone(&value);
        let line = Line::DocState {
            doc: self.name.clone(),
            version,
            value: self.value.clone(),
        };
        json::write_line(out, &line)?;
        Ok(true)
    }
}

fn follow(doc: &Doc, events: &Events) -> io::Result<()> {
    let stdout = io::stdout();
    let mut f = Follower {
        name: doc.name().to_owned(),
        version: 0,
        value: Value::Null,
        resync: None,
    };
    f.state(doc, &mut stdout.lock())?;
    loop {
        let event = match events.recv_timeout(Duration::from_millis(100)) {
            Some(e) => Some(e),
            None if events.is_finished() => return Ok(()),
            None => None,
        };
        match event {
            Some(NodeEvent::Doc(DocEvent::Patched {
                doc: d,
                version,
                origin,
                wall_ms,
                update,
            })) if d == f.name && f.resync.is_none() => {
                if version <= f.version {
                    continue;
                }
                let ctx = ApplyContext {
                    now_unix_ms: wall_ms,
                };
                match update.applied(&f.value, &ctx) {
                    Ok(value) if version == f.version + 1 => {
                        f.version = version;
                        f.value = value;
                        let line = Line::DocPatched {
                            doc: f.name.clone(),
                            version,
                            origin: Hex(origin),
                            update: update.to_value(),
                            value: f.value.clone(),
                        };
                        json::write_line(&mut stdout.lock(), &line)?;
                    }
                    // A gap (this receiver lagged) or a value that disagrees: start again
                    // from the node's value.
                    _ => f.resync = Some(version),
                }
            }
            Some(NodeEvent::Doc(DocEvent::VersionsLost { doc: d, from, to })) if d == f.name => {
                let line = Line::DocVersionsLost { doc: d, from, to };
                json::write_line(&mut stdout.lock(), &line)?;
            }
            Some(NodeEvent::Doc(DocEvent::Resynced { doc: d, version })) if d == f.name => {
                f.resync = Some(version);
            }
            Some(NodeEvent::Lagged { .. }) => f.resync = Some(f.version + 1),
            _ => {}
        }
        if f.resync.is_some() {
            f.state(doc, &mut stdout.lock())?;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use serde_json::json;

    use super::super::{Cli, Command};
    use super::*;

    fn parse(args: &[&str]) -> Result<DocArgs, String> {
        let cli = Cli::try_parse_from(std::iter::once("ipc-pubsub").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        match cli.command {
            Command::Doc(a) => Ok(a),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn doc_takes_a_name_then_an_action() {
        let a = parse(&["doc", "cfg", "get"]).expect("valid");
        assert_eq!(a.name, "cfg");
        assert!(matches!(a.action, DocAction::Get));
        assert_eq!(a.default, "{}");
        assert!(!a.create);
        let a =
            parse(&["doc", "cfg", "patch", r#"{"$inc": {"n": 1}}"#, "--create"]).expect("valid");
        let DocAction::Patch { update, .. } = a.action else {
            panic!("not a patch")
        };
        assert_eq!(update, r#"{"$inc": {"n": 1}}"#);
        assert!(a.create);
        let a = parse(&["doc", "cfg", "watch", "--default", r#"{"n": 0}"#]).expect("valid");
        assert!(matches!(a.action, DocAction::Watch));
        assert_eq!(a.default, r#"{"n": 0}"#);
        // Checked by `run` (exit 1), not by the parser (exit 2).
        assert!(parse(&["doc", "cfg", "patch", "{not json"]).is_ok());
        assert!(parse(&["doc", "cfg", "patch"]).is_err(), "no update");
        assert!(parse(&["doc", "cfg"]).is_err(), "no action");
    }

    #[test]
    fn an_update_must_be_json_valid_and_change_something() {
        let ok = parse_update(r#"{"$inc": {"n": 1}}"#).expect("valid");
        assert_eq!(ok, json!({"$inc": {"n": 1}}));
        let msg = |s: &str| parse_update(s).expect_err(s).to_string();
        assert!(msg("{not json").starts_with("the update is not JSON: "));
        assert!(msg(r#"{"n": 1}"#).starts_with("invalid update: "));
        assert!(msg("{}").starts_with("invalid update: "), "{}", msg("{}"));
        assert!(msg(r#"{"$set": {}}"#).starts_with("invalid update: "));
        assert!(parse_json("--default", "[1,").is_err());
    }
}
