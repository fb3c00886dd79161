//! `node` and `watch`: print a node's events as JSON lines until SIGINT or SIGTERM.
//!
//! The main thread waits for a signal; a printer thread writes the events. On a signal the
//! main thread leaves the group, which ends the node's event receiver, so the printer writes
//! what is left and stops. If the node stops by itself, a `node` is not synced with a hub
//! within [`JOIN_TIMEOUT`], or stdout goes away, the printer ends the wait instead.

use std::io;
use std::thread;
use std::time::{Duration, Instant};

use clap::Args;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::json::{self, Hex, Line};
use super::{CliError, Result, Timing};
use crate::GroupArgs;
use ipc_driver_std::{DriverError, EventKinds, Events, Node, NodeEvent, NodeWithEvents};

/// The payload type of a topic announced without one.
pub(super) const DEFAULT_MIME: &str = "application/octet-stream";

/// Options of `node`.
#[derive(Debug, Args)]
pub(super) struct NodeArgs {
    /// The node's name, as others see it (names need not be unique).
    #[arg(long, value_name = "NAME")]
    pub(super) name: String,

    /// Publish TOPIC, whose payloads have type MIME [default MIME: application/octet-stream].
    /// Repeat for more topics.
    #[arg(long, value_name = "TOPIC[=MIME]", value_parser = parse_announce)]
    pub(super) announce: Vec<Announce>,

    /// Subscribe to TOPIC. Repeat for more topics.
    #[arg(long, value_name = "TOPIC")]
    pub(super) subscribe: Vec<String>,

    #[command(flatten)]
    pub(super) timing: Timing,
}

/// Options of `watch`.
#[derive(Debug, Args)]
pub(super) struct WatchArgs {
    #[command(flatten)]
    timing: Timing,
}

/// One `--announce TOPIC[=MIME]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Announce {
    pub(super) topic: String,
    pub(super) mime: String,
}

/// Splits at the first `=`: topic names cannot contain one, MIME types can
/// (`text/plain; charset=utf-8`).
fn parse_announce(s: &str) -> Result<Announce, String> {
    let (topic, mime) = match s.split_once('=') {
        Some((topic, mime)) => (topic, mime),
        None => (s, DEFAULT_MIME),
    };
    if topic.is_empty() {
        return Err("the topic name is empty".into());
    }
    if mime.is_empty() {
        return Err(format!("the MIME type after '{topic}=' is empty"));
    }
    Ok(Announce {
        topic: topic.into(),
        mime: mime.into(),
    })
}

/// How long `node` waits for the group's history before giving up (as [`Node`] does by
/// default).
const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `node`: join, announce and subscribe, print events until a signal, leave.
pub(super) fn node(group: &GroupArgs, args: &NodeArgs) -> Result<()> {
    // Before anything else: a signal from now on is a request to leave, never a sudden death.
    let signals = Signals::new([SIGINT, SIGTERM])?;
    // `join` returns at once: the id is known for the `started` line, and the events of the
    // join itself (a refusal, say) are printed as they happen. The printer enforces the
    // join timeout.
    let NodeWithEvents { node, events } = (args.timing.apply(group.builder(&args.name)))
        .join_timeout(None)
        .join_with_events(EventKinds::ALL)?;
    let sync_by = Instant::now() + JOIN_TIMEOUT;
    // Commands are kept until a hub is reached, and carried by the node's introduction.
    for a in &args.announce {
        node.announce(&a.topic, &a.mime)?;
    }
    for topic in &args.subscribe {
        node.subscribe(topic)?;
    }
    let started = Line::Started {
        node: Hex(node.id()),
        name: args.name.clone(),
        pid: std::process::id(),
        group: group.name().to_string(),
    };
    json::write_line(&mut io::stdout().lock(), &started)?;
    print_until_signal(node, events, signals, Some(sync_by), |_| true)
}

/// `watch`: observe, print events until a signal.
pub(super) fn watch(group: &GroupArgs, args: &WatchArgs) -> Result<()> {
    let signals = Signals::new([SIGINT, SIGTERM])?;
    let NodeWithEvents { node, events } = (args.timing.apply(group.builder("watch")))
        .join_timeout(None)
        .observe_with_events(EventKinds::ALL)?;
    // An observer retries every half second or so while no hub answers: say so once.
    let mut absent = false;
    print_until_signal(node, events, signals, None, move |e| {
        let repeat = absent && matches!(e, NodeEvent::HubAbsent);
        absent = matches!(e, NodeEvent::HubAbsent);
        !repeat
    })
}

/// Why the printer stopped.
enum Printed {
    /// The node's events ended: it has left (or stopped by itself).
    Ended,
    /// No `synced` came by the deadline.
    NotSynced,
    /// Writing failed.
    Io(io::Error),
}

/// Prints `events` (those `keep` accepts) on a thread of their own until a signal arrives, the
/// node stops, it is not synced by `sync_by`, or stdout closes; then leaves.
fn print_until_signal(
    node: Node,
    events: Events,
    mut signals: Signals,
    sync_by: Option<Instant>,
    mut keep: impl FnMut(&NodeEvent) -> bool + Send + 'static,
) -> Result<()> {
    let handle = signals.handle();
    let printer = thread::Builder::new()
        .name("ipc-pubsub-print".into())
        .spawn(move || {
            let printed = print_events(&events, sync_by, &mut keep);
            // Ends the main thread's wait, if it is still waiting.
            handle.close();
            printed
        })?;
    let signal = signals.forever().next();
    tracing::debug!(?signal, "leaving");
    let left = node.leave();
    let printed = printer
        .join()
        .map_err(|_| CliError::Failed("the printer thread panicked".into()))?;
    left?;
    match (signal, printed) {
        // Whoever reads our output has gone (`| head`): nothing more to say.
        (_, Printed::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        (_, Printed::Io(e)) => Err(e.into()),
        // A signal: the normal end.
        (Some(_), _) => Ok(()),
        (None, Printed::NotSynced) => {
            Err(DriverError::Timeout(JOIN_TIMEOUT, "the group's history").into())
        }
        (None, Printed::Ended) => Err(CliError::Failed(
            "the node stopped by itself (see the log above)".into(),
        )),
    }
}

/// Writes every event until the receiver ends (the node has left or stopped), or until
/// `sync_by` if no `synced` came by then.
fn print_events(
    events: &Events,
    mut sync_by: Option<Instant>,
    keep: &mut impl FnMut(&NodeEvent) -> bool,
) -> Printed {
    let stdout = io::stdout();
    loop {
        let event = match sync_by {
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                match events.recv_timeout(left) {
                    Some(e) => e,
                    None if events.is_finished() => return Printed::Ended,
                    None => return Printed::NotSynced,
                }
            }
            None => match events.recv() {
                Some(e) => e,
                None => return Printed::Ended,
            },
        };
        if matches!(event, NodeEvent::Synced { .. }) {
            sync_by = None;
        }
        if !keep(&event) {
            continue;
        }
        if let Err(e) = json::write_line(&mut stdout.lock(), &Line::from_event(&event)) {
            return Printed::Io(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_defaults_the_mime_type() {
        assert_eq!(
            parse_announce("frames"),
            Ok(Announce {
                topic: "frames".into(),
                mime: DEFAULT_MIME.into()
            })
        );
    }

    #[test]
    fn announce_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_announce("frames=image/x-raw"),
            Ok(Announce {
                topic: "frames".into(),
                mime: "image/x-raw".into()
            })
        );
        assert_eq!(
            parse_announce("log=text/plain; charset=utf-8"),
            Ok(Announce {
                topic: "log".into(),
                mime: "text/plain; charset=utf-8".into()
            })
        );
    }

    #[test]
    fn announce_rejects_empty_parts() {
        assert!(parse_announce("").is_err());
        assert!(parse_announce("=text/plain").is_err());
        assert!(parse_announce("frames=").is_err());
    }
}
