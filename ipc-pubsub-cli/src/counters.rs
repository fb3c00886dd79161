//! The data-link counters of `status`: asked of every node at its data address.
//!
//! An observer is on no data link, so it cannot see what publishers sent. It asks each node
//! instead: it connects to the node's data address, sends the one frame a stranger may send,
//! `StatsRequest`, and reads the `Stats` reply (bounded by the data plane's record limit),
//! after which the node closes the link. A node that does not answer within [`TIMEOUT`] (it
//! died, or is stopped) is reported as such; its rows are missing.
//!
//! Each row is one (publisher, topic, subscriber) link, joined from both ends: what the
//! publisher sent, dropped by the subscriber's policy and has in flight, and what the
//! subscriber received and found missing from the sequence. A node's reply also carries the
//! counters its application set (`Node::set_counters`, a bridge's for instance): a table per
//! node that set any.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use ipc_proto::data::DataLimits;
use ipc_proto::wire::{
    AppCounter, DataFrame, DataStats, GuardStats, WitnessStats, decode_data, encode_data,
};
use ipc_proto::{NodeId, View};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;

use super::json::Hex;
use ipc_os::rendezvous::GroupDir;
use ipc_os::socket::{self, Recv, Sent};

/// How long one node may take to answer.
pub(super) const TIMEOUT: Duration = Duration::from_secs(1);

/// One publisher-topic-subscriber link, as its two ends count it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct LinkRow {
    pub(super) publisher: Hex,
    pub(super) topic: String,
    pub(super) subscriber: Hex,
    /// Messages the publisher handed to this subscriber's link.
    pub(super) sent: u64,
    /// Messages the publisher dropped for it (its policy, its queue full).
    pub(super) dropped: u64,
    /// Sent and not yet taken (inline, fresh) or not yet given back (pooled).
    pub(super) in_flight: u64,
    /// Messages the subscriber received (`null`: it did not answer).
    pub(super) received: Option<u64>,
    /// Sequence numbers the subscriber never saw (`null`: it did not answer).
    pub(super) missed: Option<u64>,
    /// Messages the subscriber's own queues dropped (its policy, the application slow).
    pub(super) queue_dropped: Option<u64>,
    /// Messages its subscriptions were told lost: `missed` + `queue_dropped`, what `sub`'s
    /// `lost` lines add up to.
    pub(super) lost: Option<u64>,
}

/// A node whose counters could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct Unanswered {
    pub(super) node: Hex,
    pub(super) error: String,
}

/// What one node refused to stay bounded against its peers (listed when any is non-zero).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(super) struct GuardRow {
    pub(super) node: Hex,
    /// Records refused as protocol violations (oversized payloads included).
    pub(super) rejected: u64,
    #[serde(flatten)]
    pub(super) guard: GuardStats,
}

/// The nodes that refused anything, sorted.
pub(super) fn guard_rows(answers: &[(NodeId, DataStats)]) -> Vec<GuardRow> {
    let mut rows: Vec<GuardRow> = answers
        .iter()
        .filter(|(_, s)| s.rejected > 0 || !s.guard.is_empty())
        .map(|(id, s)| GuardRow {
            node: Hex(*id),
            rejected: s.rejected,
            guard: s.guard,
        })
        .collect();
    rows.sort_by_key(|r| r.node.0);
    rows
}

/// The human form of [`guard_rows`]: nothing when no node refused anything.
pub(super) fn guard_table(rows: &[GuardRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let mut cells = vec![[
        "NODE".to_string(),
        "REJECTED".into(),
        "OVERSIZED".into(),
        "PENDING-REFUSED".into(),
        "HANDSHAKE-EXPIRED".into(),
        "ACCEPT-PAUSED".into(),
    ]];
    for r in rows {
        cells.push([
            r.node.to_string(),
            r.rejected.to_string(),
            r.guard.oversized.to_string(),
            r.guard.pending_refused.to_string(),
            r.guard.handshake_expired.to_string(),
            r.guard.accept_paused.to_string(),
        ]);
    }
    let mut widths = [0; 6];
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    out.push_str("refused by nodes:\n");
    for row in &cells {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            let _ = if i == 0 {
                write!(line, "  {c:<w$}")
            } else {
                write!(line, "  {c:>w$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One node's document witness figures, for `status`.
#[derive(Debug, Serialize)]
pub(super) struct WitnessRow {
    pub(super) node: Hex,
    #[serde(flatten)]
    pub(super) witness: WitnessStats,
}

/// Every node that answered, with its witness figures, sorted.
pub(super) fn witness_rows(answers: &[(NodeId, DataStats)]) -> Vec<WitnessRow> {
    let mut rows: Vec<WitnessRow> = answers
        .iter()
        .map(|(id, s)| WitnessRow {
            node: Hex(*id),
            witness: s.witness,
        })
        .collect();
    rows.sort_by_key(|r| r.node.0);
    rows
}

/// The human form of [`witness_rows`]: one line, or a table when a witness is past its budget.
pub(super) fn witness_table(rows: &[WitnessRow]) -> String {
    let witnesses: Vec<&WitnessRow> = rows.iter().filter(|r| r.witness.on).collect();
    let full: Vec<&&WitnessRow> = witnesses
        .iter()
        .filter(|r| r.witness.not_kept > 0)
        .collect();
    let mut out = format!(
        "document witnesses: {} of {} nodes",
        witnesses.len(),
        rows.len()
    );
    if let Some(most) = witnesses.iter().max_by_key(|r| r.witness.bytes) {
        let _ = write!(
            out,
            " (most held: {} documents, {} bytes, by {})",
            most.witness.docs, most.witness.bytes, most.node
        );
    }
    out.push('\n');
    for r in full {
        let _ = writeln!(
            out,
            "  witness {} is full: {} documents not kept (it holds {} documents, {} bytes)",
            r.node, r.witness.not_kept, r.witness.docs, r.witness.bytes
        );
    }
    out
}

/// What `status` read from the nodes' data addresses.
#[derive(Debug, Default)]
pub(super) struct Collected {
    pub(super) links: Vec<LinkRow>,
    pub(super) guards: Vec<GuardRow>,
    pub(super) witnesses: Vec<WitnessRow>,
    /// Per node that set any, its application counters (`Node::set_counters`), as it set them.
    pub(super) app: BTreeMap<NodeId, Vec<AppCounter>>,
    pub(super) unanswered: Vec<Unanswered>,
}

/// Asks every node of `view` for its counters: the link rows, the nodes that refused
/// anything, the witnesses, the application counters, and the nodes that did not answer.
pub(super) fn collect(dir: &GroupDir, view: &View) -> Collected {
    let mut answers = Vec::new();
    let mut unanswered = Vec::new();
    for n in view.nodes().values() {
        match query(dir, &n.info.data_addr, TIMEOUT) {
            Ok(stats) => answers.push((n.info.id, stats)),
            Err(e) => unanswered.push(Unanswered {
                node: Hex(n.info.id),
                error: e.to_string(),
            }),
        }
    }
    Collected {
        links: rows(&answers),
        guards: guard_rows(&answers),
        witnesses: witness_rows(&answers),
        app: answers
            .iter()
            .filter(|(_, s)| !s.app.is_empty())
            .map(|(id, s)| (*id, s.app.clone()))
            .collect(),
        unanswered,
    }
}

/// The human form of the application counters: one table per node that set any, in the order
/// of `nodes` (its id and name), each counter in the order the node set them.
pub(super) fn app_tables<'a>(
    nodes: impl IntoIterator<Item = (NodeId, &'a str)>,
    app: &BTreeMap<NodeId, Vec<AppCounter>>,
) -> String {
    let mut out = String::new();
    for (id, name) in nodes {
        let Some(counters) = app.get(&id) else {
            continue;
        };
        let _ = writeln!(out, "application counters of {id} {name}:");
        let width = counters
            .iter()
            .map(|c| c.name.len())
            .chain(["COUNTER".len()])
            .max()
            .unwrap_or(0);
        let values: Vec<String> = counters.iter().map(|c| c.value.to_string()).collect();
        let vwidth = values
            .iter()
            .map(String::len)
            .chain(["VALUE".len()])
            .max()
            .unwrap_or(0);
        let _ = writeln!(out, "  {:<width$}  {:>vwidth$}", "COUNTER", "VALUE");
        for (c, v) in counters.iter().zip(&values) {
            let _ = writeln!(out, "  {:<width$}  {v:>vwidth$}", c.name);
        }
    }
    out
}

/// Joins the publishers' and the subscribers' counters into rows, sorted.
pub(super) fn rows(answers: &[(NodeId, DataStats)]) -> Vec<LinkRow> {
    let mut out: Vec<LinkRow> = Vec::new();
    for (publisher, stats) in answers {
        for p in &stats.published {
            let Some(subscriber) = p.peer else { continue };
            let received = answers
                .iter()
                .find(|(id, _)| *id == subscriber)
                .map(|(_, s)| {
                    s.received
                        .iter()
                        .filter(|r| r.topic == p.topic && r.peer == Some(*publisher))
                        .fold((0, 0, 0), |(m, x, d), r| {
                            (m + r.messages, x + r.missed, d + r.dropped)
                        })
                });
            out.push(LinkRow {
                publisher: Hex(*publisher),
                topic: p.topic.clone(),
                subscriber: Hex(subscriber),
                sent: p.messages,
                dropped: p.dropped,
                in_flight: p.in_flight,
                received: received.map(|r| r.0),
                missed: received.map(|r| r.1),
                queue_dropped: received.map(|r| r.2),
                lost: received.map(|r| r.1 + r.2),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.publisher.0, &a.topic, a.subscriber.0).cmp(&(b.publisher.0, &b.topic, b.subscriber.0))
    });
    out
}

/// The human form: an aligned table, then the nodes that did not answer.
pub(super) fn table(rows: &[LinkRow], unanswered: &[Unanswered]) -> String {
    let mut out = String::new();
    if !rows.is_empty() {
        let mut cells = vec![[
            "PUBLISHER".to_string(),
            "TOPIC".into(),
            "SUBSCRIBER".into(),
            "SENT".into(),
            "DROPPED".into(),
            "IN-FLIGHT".into(),
            "RECEIVED".into(),
            "MISSED".into(),
            "Q-DROPPED".into(),
            "LOST".into(),
        ]];
        let opt = |v: Option<u64>| v.map_or_else(|| "?".into(), |v| v.to_string());
        for r in rows {
            cells.push([
                r.publisher.to_string(),
                r.topic.clone(),
                r.subscriber.to_string(),
                r.sent.to_string(),
                r.dropped.to_string(),
                r.in_flight.to_string(),
                opt(r.received),
                opt(r.missed),
                opt(r.queue_dropped),
                opt(r.lost),
            ]);
        }
        let mut widths = [0; 10];
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        out.push_str("data links:\n");
        for row in &cells {
            let mut line = String::new();
            for (i, (c, w)) in row.iter().zip(widths).enumerate() {
                // Names left-aligned, counters right-aligned.
                let _ = if i < 3 {
                    write!(line, "  {c:<w$}")
                } else {
                    write!(line, "  {c:>w$}")
                };
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    for u in unanswered {
        let _ = writeln!(out, "counters of {} unavailable: {}", u.node, u.error);
    }
    out
}

/// Asks the node at data address `addr` of the group in `dir` for its counters.
pub(super) fn query(dir: &GroupDir, addr: &str, timeout: Duration) -> io::Result<DataStats> {
    let deadline = Instant::now() + timeout;
    let link = dir.connect_data(addr)?;
    let request = encode_data(&DataFrame::StatsRequest, &[]);
    while socket::send_record(link.as_fd(), &request, &[])? == Sent::WouldBlock {
        wait(link.as_fd(), PollFlags::POLLOUT, deadline)?;
    }
    let limits = DataLimits::default();
    let mut buf = vec![0u8; limits.max_record];
    let mut fds = Vec::new();
    loop {
        match socket::recv_record(link.as_fd(), &mut buf, &mut fds, 0)? {
            Recv::Data {
                len,
                truncated: false,
                ..
            } => {
                let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
                return match decode_data(&buf[..len], limits.max_name, limits.max_release) {
                    Ok((DataFrame::Stats(stats), _)) => Ok(stats),
                    Ok((other, _)) => Err(bad(format!("{} instead of Stats", other.name()))),
                    Err(e) => Err(bad(e.to_string())),
                };
            }
            Recv::Data { record_len, .. } => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a reply of {record_len} bytes"),
                ));
            }
            Recv::Closed => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed without an answer",
                ));
            }
            Recv::WouldBlock => wait(link.as_fd(), PollFlags::POLLIN, deadline)?,
        }
    }
}

/// Waits until `fd` has `events` (or an error or hangup), failing at `deadline`.
fn wait(fd: BorrowedFd<'_>, events: PollFlags, deadline: Instant) -> io::Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
        }
        let ms =
            PollTimeout::try_from(left.max(Duration::from_millis(1))).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(fd, events)], ms) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use ipc_proto::wire::TopicStats;

    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::new(n).expect("non-zero")
    }

    fn stats(topic: &str, peer: u64, messages: u64, dropped: u64, missed: u64) -> TopicStats {
        TopicStats {
            topic: topic.into(),
            peer: Some(id(peer)),
            messages,
            dropped,
            missed,
            in_flight: 0,
        }
    }

    #[test]
    fn rows_join_both_ends_of_each_link() {
        let publisher = DataStats {
            published: vec![stats("t", 2, 10, 3, 0), stats("t", 3, 13, 0, 0)],
            ..DataStats::default()
        };
        let sub = DataStats {
            received: vec![stats("t", 1, 10, 2, 3)],
            ..DataStats::default()
        };
        // Node 3 did not answer: its side is unknown.
        let rows = rows(&[(id(2), sub), (id(1), publisher)]);
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.subscriber.0.get(),
                    r.sent,
                    r.dropped,
                    r.received,
                    r.missed,
                    r.lost,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (2, 10, 3, Some(10), Some(3), Some(5)),
                (3, 13, 0, None, None, None)
            ]
        );
        let text = table(
            &rows,
            &[Unanswered {
                node: Hex(id(3)),
                error: "no answer in time".into(),
            }],
        );
        let want = "\
data links:
  PUBLISHER         TOPIC  SUBSCRIBER        SENT  DROPPED  IN-FLIGHT  RECEIVED  MISSED  Q-DROPPED  LOST
  0000000000000001  t      0000000000000002    10        3          0        10       3          2     5
  0000000000000001  t      0000000000000003    13        0          0         ?       ?          ?     ?
counters of 0000000000000003 unavailable: no answer in time
";
        assert_eq!(text, want, "\n{text}");
    }

    #[test]
    fn nodes_that_refused_something_are_listed() {
        let quiet = DataStats::default();
        let busy = DataStats {
            rejected: 3,
            guard: GuardStats {
                accept_paused: 4,
                pending_refused: 1998,
                handshake_expired: 64,
                oversized: 1,
            },
            ..DataStats::default()
        };
        let rows = guard_rows(&[(id(2), quiet), (id(1), busy)]);
        assert_eq!(rows.len(), 1);
        let want = "\
refused by nodes:
  NODE              REJECTED  OVERSIZED  PENDING-REFUSED  HANDSHAKE-EXPIRED  ACCEPT-PAUSED
  0000000000000001         3          1             1998                 64              4
";
        let text = guard_table(&rows);
        assert_eq!(text, want, "\n{text}");
        let json = serde_json::to_string(&rows[0]).expect("json");
        assert_eq!(
            json,
            r#"{"node":"0000000000000001","rejected":3,"accept_paused":4,"pending_refused":1998,"handshake_expired":64,"oversized":1}"#
        );
        assert_eq!(guard_table(&[]), "");
    }

    #[test]
    fn a_table_per_node_with_application_counters_in_node_order() {
        let app = BTreeMap::from([
            (
                id(1),
                vec![
                    AppCounter::new("exported", 1200),
                    AppCounter::new("export_dropped", 3),
                ],
            ),
            (id(3), vec![AppCounter::new("n", 7)]),
        ]);
        let nodes = [(id(3), "three"), (id(2), "two"), (id(1), "bridge")];
        let want = "\
application counters of 0000000000000003 three:
  COUNTER  VALUE
  n            7
application counters of 0000000000000001 bridge:
  COUNTER         VALUE
  exported         1200
  export_dropped      3
";
        let text = app_tables(nodes, &app);
        assert_eq!(text, want, "\n{text}");
        assert_eq!(app_tables(nodes, &BTreeMap::new()), "");
    }
}
