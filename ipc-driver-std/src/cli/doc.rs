//! `doc NAME get|patch|watch`: read, patch or follow one shared document of the group.
//!
//! Each joins the group as a node named `doc`, opens the document (creating it from
//! `--default` if the group does not have it), waits for the host's answer, does its work and
//! leaves. `get` prints the value as one line of JSON; `patch` prints the version the host
//! gave the patch, or the error (and exits 1); `watch` prints JSON lines: a `doc_state` line
//! with the value, then a `doc_patched` line per accepted patch with the value after it (and a
//! `doc_state` line again whenever a new host's state replaces the value), until SIGINT or
//! SIGTERM.

use std::io;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::{Args, Subcommand};
use ipc_proto::doc::ApplyContext;
use serde_json::Value;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::json::{self, Hex, Line};
use super::{CliError, Result, Timing};
use crate::cli::GroupArgs;
use crate::{Doc, DocEvent, Events, Node, NodeEvent};

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
    #[arg(long, global = true, value_name = "JSON", default_value = "{}", value_parser = parse_json)]
    pub(super) default: Value,

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
        #[arg(value_name = "UPDATE", value_parser = parse_json)]
        update: Value,
    },
    /// Print the value, then each accepted patch and the value after it, as JSON lines, until
    /// SIGINT or SIGTERM.
    Watch,
}

fn parse_json(s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("not JSON: {e}"))
}

/// Runs `doc`.
pub(super) fn run(group: &GroupArgs, args: &DocArgs) -> Result<()> {
    // Before anything else: a signal from now on is a request to leave.
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let node = args.timing.apply(group.builder("doc")).join()?;
    let events = node.events();
    let doc = node.open_doc(&args.name, args.default.clone())?;
    doc.wait_opened(OPEN_TIMEOUT)?;
    let result = match &args.action {
        DocAction::Get => {
            let line = serde_json::to_string(&*doc.snapshot().1).map_err(io::Error::from)?;
            println!("{line}");
            Ok(())
        }
        DocAction::Patch { update } => match doc.patch(update) {
            Ok(committed) => {
                println!("{}", committed.version);
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
        (None, Ok(())) => Err(CliError::Failed("the node stopped by itself".into())),
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
        let (version, value) = doc.snapshot();
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
        assert_eq!(a.default, json!({}));
        let a = parse(&["doc", "cfg", "patch", r#"{"$inc": {"n": 1}}"#]).expect("valid");
        let DocAction::Patch { update } = a.action else {
            panic!("not a patch")
        };
        assert_eq!(update, json!({"$inc": {"n": 1}}));
        let a = parse(&["doc", "cfg", "watch", "--default", r#"{"n": 0}"#]).expect("valid");
        assert!(matches!(a.action, DocAction::Watch));
        assert_eq!(a.default, json!({"n": 0}));
        assert!(parse(&["doc", "cfg", "patch", "{not json"]).is_err());
        assert!(parse(&["doc", "cfg", "patch"]).is_err(), "no update");
        assert!(parse(&["doc", "cfg"]).is_err(), "no action");
    }
}
