//! `status`: the group's state, read by an observer that does not join.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::time::Duration;

use clap::Args;
use ipc_proto::{NodeView, View};
use serde::Serialize;

use super::counters::{self, GuardRow, LinkRow, Unanswered, WitnessRow};
use super::json::Hex;
use super::{CliError, GroupArgs, Result};
use ipc_driver_std::{DriverError, HubInfo, Keepalive};

/// How long `status` waits for a hub before concluding that no such group runs.
pub(super) const TIMEOUT: Duration = Duration::from_millis(1500);

/// Options of `status`.
#[derive(Debug, Args)]
pub(super) struct StatusArgs {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(args_group: &GroupArgs, args: &StatusArgs) -> Result<()> {
    let (view, hub) = observe_with_hub(args_group)?;
    let keepalive = hub.map(|h| h.keepalive);
    let dir = args_group.dir()?;
    let group = args_group.name();
    let collected = counters::collect(&dir, &view);
    let mut out = io::stdout().lock();
    if args.json {
        let mut status = Status::new(group, &view, keepalive);
        for n in &mut status.nodes {
            n.counters = collected.app.get(&n.node.0).map(|app| {
                app.iter()
                    .map(|c| (c.name.as_str(), c.value))
                    .collect::<Vec<_>>()
            });
        }
        status.links = collected.links;
        status.guards = collected.guards;
        status.witnesses = collected.witnesses;
        status.unanswered = collected.unanswered;
        serde_json::to_writer_pretty(&mut out, &status).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(table(group, &view, keepalive).as_bytes())?;
        out.write_all(counters::table(&collected.links, &collected.unanswered).as_bytes())?;
        out.write_all(counters::guard_table(&collected.guards).as_bytes())?;
        out.write_all(counters::witness_table(&collected.witnesses).as_bytes())?;
        let nodes = by_join_order(&view)
            .into_iter()
            .map(|n| (n.info.id, n.info.name.as_str()));
        out.write_all(counters::app_tables(nodes, &collected.app).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// The group's view, from an observer that waits up to [`TIMEOUT`] for the hub's history and
/// then leaves.
pub(super) fn observe(group: &GroupArgs) -> Result<View> {
    Ok(observe_with_hub(group)?.0)
}

/// The group's view and the hub the observer synced with (its keepalive figures included).
fn observe_with_hub(group: &GroupArgs) -> Result<(View, Option<HubInfo>)> {
    let observer = group
        .builder("status")
        .join_timeout(Some(TIMEOUT))
        .observe();
    match observer {
        Ok(node) => Ok((node.view(), node.hub())),
        Err(DriverError::Timeout(..)) => Err(CliError::NoGroup(group.name().into())),
        Err(e) => Err(e.into()),
    }
}

/// The nodes in the order they joined.
fn by_join_order(view: &View) -> Vec<&NodeView> {
    let mut nodes: Vec<_> = view.nodes().values().collect();
    nodes.sort_by_key(|n| (n.joined, n.info.id));
    nodes
}

/// The human form: a header line, the hub's keepalive figures, then an aligned table with the
/// hub marked `*`.
pub(super) fn table(group: &str, view: &View, keepalive: Option<Keepalive>) -> String {
    let mut out = String::new();
    let hub = view.hub();
    let _ = write!(out, "group {group}: {} node(s)", view.nodes().len());
    match hub {
        Some((id, term)) => {
            let who = view.node(id).map_or_else(
                || "a node that has left".to_string(),
                |n| format!("{} (pid {})", n.info.name, n.info.pid),
            );
            let _ = writeln!(out, ", hub {id} {who}, term {term}");
        }
        None => {
            let _ = writeln!(out, ", no hub");
        }
    }
    if let Some(k) = keepalive {
        // The hub expels a member silent for its limit; it heartbeats each member at the
        // shorter of its interval and the member's.
        let _ = writeln!(
            out,
            "keepalive (the hub's): a heartbeat every {} ms, a member silent for {} ms is expelled",
            k.heartbeat.as_millis(),
            k.limit.as_millis()
        );
    }
    let mut rows = vec![[
        String::new(),
        "NODE".to_string(),
        "NAME".to_string(),
        "PID".to_string(),
        "ANNOUNCES".to_string(),
        "SUBSCRIBES".to_string(),
    ]];
    for n in by_join_order(view) {
        let is_hub = hub.is_some_and(|(id, _)| id == n.info.id);
        let announces: Vec<_> = n
            .publishes
            .iter()
            .map(|(topic, (mime, _))| format!("{topic}={mime}"))
            .collect();
        let subscribes: Vec<_> = n.subscribes.keys().map(String::as_str).collect();
        rows.push([
            if is_hub { "*" } else { "" }.to_string(),
            n.info.id.to_string(),
            n.info.name.clone(),
            n.info.pid.to_string(),
            or_dash(announces.join(", ")),
            or_dash(subscribes.join(", ")),
        ]);
    }
    let mut widths = [0; 6];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            // PID is right-aligned, the rest left-aligned.
            let _ = if i == 3 {
                write!(line, "{sep}{cell:>w$}")
            } else {
                write!(line, "{sep}{cell:<w$}")
            };
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: String) -> String {
    if s.is_empty() { "-".into() } else { s }
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Status<'a> {
    group: &'a str,
    hub: Option<HubJson>,
    nodes: Vec<NodeJson<'a>>,
    /// Per publisher, topic and subscriber: the counters of both ends.
    links: Vec<LinkRow>,
    /// Nodes that refused peers or payloads to stay bounded (see `GuardStats`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    guards: Vec<GuardRow>,
    /// Per node that answered: whether it is a document witness, the documents it holds
    /// without having opened them, their size, and how many it refused for its budget.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    witnesses: Vec<WitnessRow>,
    /// Nodes whose counters could not be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    unanswered: Vec<Unanswered>,
}

#[derive(Debug, Serialize)]
struct HubJson {
    node: Hex,
    /// `null` if the hub's node is not (or no longer) in the view.
    pid: Option<u32>,
    term: u64,
    /// The hub's heartbeat interval and keepalive limit (`null`: not told).
    heartbeat_ms: Option<u128>,
    keepalive_ms: Option<u128>,
}

#[derive(Debug, Serialize)]
struct NodeJson<'a> {
    node: Hex,
    name: &'a str,
    pid: u32,
    uid: u32,
    joined: String,
    hub: bool,
    announces: Vec<TopicJson<'a>>,
    subscribes: Vec<&'a str>,
    /// The counters its application set (`Node::set_counters`), by name in the order set;
    /// absent when it set none or did not answer.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "counters_object"
    )]
    counters: Option<Vec<(&'a str, u64)>>,
}

/// Application counters as one JSON object, in the order the node set them (their names are
/// unique: the codec refuses a reply naming one twice).
fn counters_object<S: serde::Serializer>(
    counters: &Option<Vec<(&str, u64)>>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(counters.iter().flatten().map(|(k, v)| (*k, *v)))
}

#[derive(Debug, Serialize)]
struct TopicJson<'a> {
    topic: &'a str,
    mime: &'a str,
}

impl<'a> Status<'a> {
    fn new(group: &'a str, view: &'a View, keepalive: Option<Keepalive>) -> Self {
        let hub = view.hub().map(|(id, term)| HubJson {
            node: Hex(id),
            pid: view.node(id).map(|n| n.info.pid),
            term: term.0,
            heartbeat_ms: keepalive.map(|k| k.heartbeat.as_millis()),
            keepalive_ms: keepalive.map(|k| k.limit.as_millis()),
        });
        let nodes = by_join_order(view)
            .into_iter()
            .map(|n| NodeJson {
                node: Hex(n.info.id),
                name: &n.info.name,
                pid: n.info.pid,
                uid: n.info.uid,
                joined: n.joined.to_string(),
                hub: view.hub().is_some_and(|(id, _)| id == n.info.id),
                announces: n
                    .publishes
                    .iter()
                    .map(|(topic, (mime, _))| TopicJson { topic, mime })
                    .collect(),
                subscribes: n.subscribes.keys().map(String::as_str).collect(),
                counters: None,
            })
            .collect();
        Self {
            group,
            hub,
            nodes,
            links: Vec::new(),
            guards: Vec::new(),
            witnesses: Vec::new(),
            unanswered: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ipc_proto::{Epoch, Event, NodeId, NodeInfo, Seq, Term};

    use super::*;

    fn sample() -> View {
        let mut v = View::default();
        let seq = |c| Seq::new(Epoch::new(1, 7), c);
        let join = |id: u64, name: &str, pid: u32, c| Event::NodeJoined {
            info: NodeInfo {
                id: NodeId::new(id).expect("non-zero"),
                name: name.into(),
                data_addr: String::new(),
                pid,
                uid: 1000,
            },
            seq: seq(c),
        };
        let (cam, det) = (NodeId::new(0xc0).expect("c"), NodeId::new(0x0d).expect("d"));
        for e in [
            Event::HubChanged {
                node: cam,
                term: Term(1),
            },
            join(0xc0, "camera", 4242, 1),
            join(0x0d, "detector", 77, 3),
            Event::TopicAnnounced {
                node: cam,
                topic: "frames".into(),
                mime: "image/x-raw".into(),
                seq: seq(2),
            },
            Event::Subscribed {
                node: det,
                topic: "frames".into(),
                seq: seq(4),
            },
            Event::Subscribed {
                node: det,
                topic: "alerts".into(),
                seq: seq(5),
            },
        ] {
            assert!(v.apply(&e));
        }
        v
    }

    #[test]
    fn the_table_lists_nodes_in_join_order_with_the_hub_marked() {
        let text = table("robot", &sample(), Some(Keepalive::default()));
        let want = "\
group robot: 2 node(s), hub 00000000000000c0 camera (pid 4242), term 1
keepalive (the hub's): a heartbeat every 500 ms, a member silent for 2000 ms is expelled
   NODE              NAME       PID  ANNOUNCES           SUBSCRIBES
*  00000000000000c0  camera    4242  frames=image/x-raw  -
   000000000000000d  detector    77  -                   alerts, frames
";
        assert_eq!(text, want, "\n{text}");
    }

    #[test]
    fn the_json_document_has_the_hub_and_every_node() {
        let view = sample();
        let k = Keepalive {
            heartbeat: Duration::from_millis(100),
            limit: Duration::from_secs(1),
        };
        let status = Status::new("robot", &view, Some(k));
        let doc = serde_json::to_string(&status).expect("serializes");
        assert_eq!(
            doc,
            concat!(
                r#"{"group":"robot","hub":{"node":"00000000000000c0","pid":4242,"term":1,"#,
                r#""heartbeat_ms":100,"keepalive_ms":1000},"nodes":["#,
                r#"{"node":"00000000000000c0","name":"camera","pid":4242,"uid":1000,"joined":"1.1","hub":true,"#,
                r#""announces":[{"topic":"frames","mime":"image/x-raw"}],"subscribes":[]},"#,
                r#"{"node":"000000000000000d","name":"detector","pid":77,"uid":1000,"joined":"1.3","hub":false,"#,
                r#""announces":[],"subscribes":["alerts","frames"]}],"links":[]}"#
            )
        );
    }
}
