//! The JSON lines that `node` and `watch` print, one event per line.
//!
//! [`Line`] is the one place where a [`NodeEvent`] becomes JSON ([`Line::from_event`]), and
//! [`write_line`] the one place where any JSON line is printed, with its `ts` (the wall clock,
//! Unix microseconds) added as the last key. [`Line`] parses the lines back (ignoring `ts`),
//! which `demo` and `bench` do when they read their children.
//! Serde writes the `event` tag first and the other keys in declaration order, so the key order
//! documented in `CLI.md` is the order of the fields below.

use std::fmt;
use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use ipc_proto::{Event, NodeId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use ipc_driver_std::NodeEvent;

/// A node id in JSON: 16 lowercase hex digits, as [`NodeId`]'s `Display` prints it.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct Hex(pub(crate) NodeId);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let s = String::deserialize(d)?;
        let hex = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let raw = hex
            .then(|| u64::from_str_radix(&s, 16).ok())
            .flatten()
            .ok_or_else(|| {
                D::Error::custom(format!("not a node id (16 lowercase hex digits): {s:?}"))
            })?;
        NodeId::new(raw)
            .map(Self)
            .ok_or_else(|| D::Error::custom("node id 0"))
    }
}

/// One line of output. The variant is the `event` key, in snake case.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Line {
    /// `node` only, first line: who this process is.
    Started {
        node: Hex,
        name: String,
        pid: u32,
        group: String,
    },
    NodeJoined {
        node: Hex,
        name: String,
        pid: u32,
        uid: u32,
        /// `Seq`'s `Display`: `term.counter`.
        seq: String,
    },
    NodeLeft {
        node: Hex,
    },
    TopicAnnounced {
        node: Hex,
        topic: String,
        mime: String,
        seq: String,
    },
    TopicRetracted {
        node: Hex,
        topic: String,
    },
    Subscribed {
        node: Hex,
        topic: String,
        seq: String,
    },
    Unsubscribed {
        node: Hex,
        topic: String,
    },
    HubChanged {
        node: Hex,
        term: u64,
    },
    Synced {
        hub: Hex,
        term: u64,
    },
    BecameHub,
    HubLost,
    HubUnresponsive,
    HubResponsive,
    HubClosed {
        reason: String,
    },
    /// Observers (`watch`) only: no hub answered.
    HubAbsent,
    Lagged {
        missed: u64,
    },
    /// An event of a shared document (nodes that open documents only): its name in snake
    /// case, and the version it is about.
    Doc {
        doc: String,
        what: String,
        version: Option<u64>,
    },
    /// An event of a newer `ipc-driver-std` that this command line has no line for yet: its
    /// `Debug` text.
    Other {
        debug: String,
    },
    /// `doc NAME watch`: the document's value at `version` (first line, and after a hub
    /// change or a resync replaced it).
    DocState {
        doc: String,
        version: u64,
        value: serde_json::Value,
    },
    /// `doc NAME watch`: a patch the host accepted as `version`, and the value after it.
    DocPatched {
        doc: String,
        version: u64,
        origin: Hex,
        update: serde_json::Value,
        value: serde_json::Value,
    },
    /// `doc NAME watch`: the new host's state is older than the one held; versions `to + 1`
    /// to `from` are lost.
    DocVersionsLost {
        doc: String,
        from: u64,
        to: u64,
    },
}

impl Line {
    /// The line for an event. `NodeEvent` is non-exhaustive: a variant added to the driver
    /// prints as [`Line::Other`] until it has a line of its own here.
    pub(crate) fn from_event(event: &NodeEvent) -> Self {
        match event {
            NodeEvent::Topology(e) => match e {
                Event::NodeJoined { info, seq } => Self::NodeJoined {
                    node: Hex(info.id),
                    name: info.name.clone(),
                    pid: info.pid,
                    uid: info.uid,
                    seq: seq.to_string(),
                },
                Event::NodeLeft { node, .. } => Self::NodeLeft { node: Hex(*node) },
                Event::TopicAnnounced {
                    node,
                    topic,
                    mime,
                    seq,
                } => Self::TopicAnnounced {
                    node: Hex(*node),
                    topic: topic.clone(),
                    mime: mime.clone(),
                    seq: seq.to_string(),
                },
                Event::TopicRetracted { node, topic } => Self::TopicRetracted {
                    node: Hex(*node),
                    topic: topic.clone(),
                },
                Event::Subscribed { node, topic, seq } => Self::Subscribed {
                    node: Hex(*node),
                    topic: topic.clone(),
                    seq: seq.to_string(),
                },
                Event::Unsubscribed { node, topic } => Self::Unsubscribed {
                    node: Hex(*node),
                    topic: topic.clone(),
                },
                Event::HubChanged { node, term } => Self::HubChanged {
                    node: Hex(*node),
                    term: term.0,
                },
            },
            NodeEvent::Synced { hub, term } => Self::Synced {
                hub: Hex(*hub),
                term: term.0,
            },
            NodeEvent::BecameHub => Self::BecameHub,
            NodeEvent::HubLost => Self::HubLost,
            NodeEvent::HubUnresponsive => Self::HubUnresponsive,
            NodeEvent::HubResponsive => Self::HubResponsive,
            NodeEvent::HubClosed(reason) => Self::HubClosed {
                reason: reason.to_string(),
            },
            NodeEvent::HubAbsent => Self::HubAbsent,
            NodeEvent::Lagged { missed } => Self::Lagged { missed: *missed },
            NodeEvent::Doc(e) => Self::Doc {
                doc: e.doc().to_owned(),
                what: e.name().to_owned(),
                version: e.version(),
            },
            other => Self::Other {
                debug: format!("{other:?}"),
            },
        }
    }

    /// Parses one line.
    pub(crate) fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// A line as printed: its own keys, then `ts`, the wall-clock time it was written at.
#[derive(Serialize)]
struct Stamped<'a, T> {
    #[serde(flatten)]
    line: &'a T,
    /// Unix time in microseconds.
    ts: u64,
}

/// The wall clock as Unix time in microseconds (0 before 1970, which a clock can be set to).
pub(crate) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Writes `line`, a `ts` key (the wall clock now, in Unix microseconds) and a newline to
/// `out` and flushes at once, so a reader sees every event the moment it happens and can
/// tell when it happened. Every JSON line the command line prints goes through here; `line`
/// must serialize as a map (a struct, an internally tagged enum, a JSON object).
pub(crate) fn write_line(out: &mut impl Write, line: &impl Serialize) -> io::Result<()> {
    write_line_at(out, line, now_micros())
}

/// [`write_line`] with a given `ts`.
fn write_line_at(out: &mut impl Write, line: &impl Serialize, ts: u64) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &Stamped { line, ts }).map_err(io::Error::from)?;
    out.write_all(b"\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use ipc_proto::{CloseReason, Epoch, NodeInfo, Seq, Term};

    use super::*;

    fn id(raw: u64) -> NodeId {
        NodeId::new(raw).expect("non-zero")
    }

    fn seq(term: u32, counter: u32) -> Seq {
        Seq::new(Epoch::new(term, 0xdead_beef), counter)
    }

    /// The line as `write_line` writes it, without its `ts` (checked: the last key, a
    /// plausible time) and the newline.
    fn text(line: &Line) -> String {
        let before = now_micros();
        let mut out = Vec::new();
        write_line(&mut out, line).expect("to memory");
        let after = now_micros();
        let out = String::from_utf8(out).expect("utf-8");
        let out = out.strip_suffix("}\n").expect("an object and a newline");
        let (rest, ts) = out.rsplit_once(",\"ts\":").expect("ts last");
        let ts: u64 = ts.parse().expect("ts is an integer");
        assert!(
            (before..=after).contains(&ts),
            "{before} <= {ts} <= {after}"
        );
        format!("{rest}}}")
    }

    fn json(event: NodeEvent) -> String {
        text(&Line::from_event(&event))
    }

    #[test]
    fn every_event_maps_to_its_documented_line() {
        let n = id(0x1a2b_3c4d_5e6f_7081);
        let h = "1a2b3c4d5e6f7081";
        let info = NodeInfo {
            id: n,
            name: "camera".into(),
            data_addr: "@x".into(),
            pid: 123,
            uid: 1000,
        };
        let topo = NodeEvent::Topology;
        let cases = [
            (
                topo(Event::NodeJoined {
                    info: info.clone(),
                    seq: seq(3, 17),
                }),
                format!(
                    r#"{{"event":"node_joined","node":"{h}","name":"camera","pid":123,"uid":1000,"seq":"3.17"}}"#
                ),
            ),
            (
                topo(Event::NodeLeft { node: n, info }),
                format!(r#"{{"event":"node_left","node":"{h}"}}"#),
            ),
            (
                topo(Event::TopicAnnounced {
                    node: n,
                    topic: "frames".into(),
                    mime: "image/x-raw".into(),
                    seq: seq(3, 18),
                }),
                format!(
                    r#"{{"event":"topic_announced","node":"{h}","topic":"frames","mime":"image/x-raw","seq":"3.18"}}"#
                ),
            ),
            (
                topo(Event::TopicRetracted {
                    node: n,
                    topic: "frames".into(),
                }),
                format!(r#"{{"event":"topic_retracted","node":"{h}","topic":"frames"}}"#),
            ),
            (
                topo(Event::Subscribed {
                    node: n,
                    topic: "t".into(),
                    seq: seq(3, 19),
                }),
                format!(r#"{{"event":"subscribed","node":"{h}","topic":"t","seq":"3.19"}}"#),
            ),
            (
                topo(Event::Unsubscribed {
                    node: n,
                    topic: "t".into(),
                }),
                format!(r#"{{"event":"unsubscribed","node":"{h}","topic":"t"}}"#),
            ),
            (
                topo(Event::HubChanged {
                    node: n,
                    term: Term(4),
                }),
                format!(r#"{{"event":"hub_changed","node":"{h}","term":4}}"#),
            ),
            (
                NodeEvent::Synced {
                    hub: n,
                    term: Term(4),
                },
                format!(r#"{{"event":"synced","hub":"{h}","term":4}}"#),
            ),
            (NodeEvent::BecameHub, r#"{"event":"became_hub"}"#.into()),
            (NodeEvent::HubLost, r#"{"event":"hub_lost"}"#.into()),
            (
                NodeEvent::HubUnresponsive,
                r#"{"event":"hub_unresponsive"}"#.into(),
            ),
            (
                NodeEvent::HubResponsive,
                r#"{"event":"hub_responsive"}"#.into(),
            ),
            (
                NodeEvent::HubClosed(CloseReason::NotAllowed { uid: 7, gid: 8 }),
                r#"{"event":"hub_closed","reason":"uid 7 / gid 8 is not allowed in this group"}"#
                    .into(),
            ),
            (NodeEvent::HubAbsent, r#"{"event":"hub_absent"}"#.into()),
            (
                NodeEvent::Lagged { missed: 12 },
                r#"{"event":"lagged","missed":12}"#.into(),
            ),
        ];
        for (event, want) in cases {
            let got = json(event.clone());
            assert_eq!(got, want, "{event:?}");
            assert_eq!(
                Line::parse(&got).expect("parses back"),
                Line::from_event(&event),
                "round trip of {got}"
            );
        }
    }

    #[test]
    fn started_line_has_its_keys_in_order() {
        let line = Line::Started {
            node: Hex(id(0xab)),
            name: "n".into(),
            pid: 9,
            group: "g".into(),
        };
        assert_eq!(
            text(&line),
            r#"{"event":"started","node":"00000000000000ab","name":"n","pid":9,"group":"g"}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        let line = Line::HubClosed {
            reason: "a \"quoted\"\nreason".into(),
        };
        let text = text(&line);
        assert!(!text.contains('\n'), "one event, one line: {text}");
        assert_eq!(Line::parse(&text).expect("parses"), line);
    }

    #[test]
    fn bad_node_ids_are_rejected() {
        for bad in [
            "0000000000000000",
            "ab",
            "00000000000000zz",
            "000000000000000ab",
            "+00000000000000a",
            "00000000000000AB",
        ] {
            let text = format!(r#"{{"event":"node_left","node":"{bad}"}}"#);
            assert!(Line::parse(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn write_line_ends_each_line_with_a_newline() {
        let mut out = Vec::new();
        write_line_at(&mut out, &Line::BecameHub, 1).expect("to memory");
        write_line_at(&mut out, &Line::HubLost, 1_764_765_000_123_456).expect("to memory");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"event\":\"became_hub\",\"ts\":1}\n{\"event\":\"hub_lost\",\"ts\":1764765000123456}\n"
        );
    }

    #[test]
    fn lines_with_a_timestamp_parse() {
        for line in [
            Line::BecameHub,
            Line::NodeLeft { node: Hex(id(7)) },
            Line::Doc {
                doc: "d".into(),
                what: "opened".into(),
                version: None,
            },
        ] {
            let mut out = Vec::new();
            write_line(&mut out, &line).expect("to memory");
            let text = String::from_utf8(out).expect("utf-8");
            assert_eq!(
                Line::parse(text.trim_end()).expect("parses"),
                line,
                "{text}"
            );
        }
    }

    #[test]
    fn any_object_gets_a_timestamp() {
        let mut out = Vec::new();
        let line = serde_json::json!({"event": "doc_versions_lost", "from": 7, "to": 5});
        write_line_at(&mut out, &line, 42).expect("to memory");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"event\":\"doc_versions_lost\",\"from\":7,\"to\":5,\"ts\":42}\n"
        );
    }
}
