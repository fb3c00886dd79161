//! Shared-document messages ([`DocMsg`]), carried inside topology frames on a spoke's hub
//! link.
//!
//! Each message is `[tag: u8][body]`, the body in bincode 2 like every frame body, with JSON
//! values and updates as JSON text inside. A message never exceeds
//! [`DocLimits::max_chunk`](crate::doc::DocLimits::max_chunk): the values and states of
//! [`DocMsg::Open`] and [`DocMsg::State`] travel as a *body* of up to
//! [`DocLimits::max_body`](crate::doc::DocLimits::max_body) bytes, the first part in the
//! message itself and the rest in [`DocMsg::More`] messages that follow it on the same link,
//! with nothing in between.

use bincode::config::{Config, standard};
use bincode::error::DecodeError as BincodeError;
use serde::de::{Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use super::codec::{body, whole};
use crate::doc::path::Path;
use crate::doc::state::{DocState, Log, LogEntry, Mark, Marks};
use crate::doc::types::{DocLimits, MAX_DEPTH, Refusal, RejectReason, deeper_than};
use crate::doc::update::Update;
use crate::error::DecodeError;
use crate::ids::NodeId;

/// One shared-document message.
///
/// Replica to host: [`Open`](Self::Open), [`Patch`](Self::Patch), [`Resync`](Self::Resync),
/// [`Close`](Self::Close), [`Witness`](Self::Witness), [`Have`](Self::Have). Host to replica: [`State`](Self::State),
/// [`Patched`](Self::Patched), [`Rejected`](Self::Rejected), [`Ack`](Self::Ack),
/// [`Refused`](Self::Refused). Both: [`More`](Self::More).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DocMsg {
    /// Tag 1, replica to host: open `name`. A body of `len` bytes follows, `chunk` first: the
    /// replica's confirmed state at `version`, or its default value when `version` is `None`.
    Open {
        /// The document.
        name: String,
        /// The replica's number for this opening, echoed by the host's [`State`](Self::State)
        /// and [`Refused`](Self::Refused) so that answers to an earlier opening are told apart.
        open: u64,
        /// The version of the replica's confirmed state, if it has one.
        version: Option<u64>,
        /// The body's length.
        len: u32,
        /// Its first bytes.
        chunk: Vec<u8>,
    },
    /// Tag 2, replica to host: a patch of `name`.
    Patch {
        /// The document.
        name: String,
        /// The origin's number for it: 1, 2, 3... per document, in the order sent.
        seq: u64,
        /// The version it was made against.
        base: u64,
        /// The wall clock when it was made, in milliseconds since the Unix epoch
        /// (`$currentDate`).
        wall_ms: u64,
        /// The update.
        update: Update,
    },
    /// Tag 3, replica to host: send me your state of `name` (the replica found a gap).
    Resync {
        /// The document.
        name: String,
    },
    /// Tag 4, replica to host: this link no longer has `name` open.
    Close {
        /// The document.
        name: String,
    },
    /// Tag 5, both ways: the next bytes of the body in transfer.
    More(Vec<u8>),
    /// Tag 6, host to replica: the host's state of `name` at `version`; a body of `len` bytes
    /// follows, `chunk` first (value, marks and conflict log).
    State {
        /// The document.
        name: String,
        /// The replica's [`Open::open`](Self::Open) this answers.
        open: u64,
        /// The host's version.
        version: u64,
        /// The body's length.
        len: u32,
        /// Its first bytes.
        chunk: Vec<u8>,
    },
    /// Tag 7, host to every replica that has `name` open: a patch was accepted as `version`.
    Patched {
        /// The document.
        name: String,
        /// The version it made.
        version: u64,
        /// Its origin.
        origin: NodeId,
        /// The origin's number for it.
        seq: u64,
        /// When it was made ($currentDate).
        wall_ms: u64,
        /// The update.
        update: Update,
    },
    /// Tag 8, host to a patch's origin: the patch `seq` was rejected; the host is at `version`.
    Rejected {
        /// The document.
        name: String,
        /// The origin's number for it.
        seq: u64,
        /// The host's version, which the origin has reached (the link is FIFO).
        version: u64,
        /// Why.
        reason: RejectReason,
    },
    /// Tag 9, host to a patch's origin: the patch `seq`, broadcast as accepted (or sent again
    /// and found already applied), is held by `witnesses` members besides the host and the
    /// origin, and so survives the death of any one process (when `witnesses` is at least
    /// 1); the host is at `version`.
    Ack {
        /// The document.
        name: String,
        /// The origin's number for it.
        seq: u64,
        /// The host's version.
        version: u64,
        /// How many witnesses (members other than the host's and the origin) held it when
        /// the host answered.
        witnesses: u32,
    },
    /// Tag 10, host to replica: the opening `open` of `name` was refused.
    Refused {
        /// The document.
        name: String,
        /// The replica's number for the opening.
        open: u64,
        /// Why.
        reason: Refusal,
    },
    /// Tag 11, replica to host: this node is a witness; it keeps a copy of every document of
    /// the group, opened or not, and confirms what it holds with [`Have`](Self::Have). The
    /// host sends it every document's [`State`](Self::State) with opening number 0.
    Witness,
    /// Tag 12, replica to host: the replica holds `name` at `version` (a witness's receipt).
    Have {
        /// The document.
        name: String,
        /// The version it holds.
        version: u64,
    },
}

impl DocMsg {
    /// A short name for logs and transcripts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open { .. } => "Open",
            Self::Patch { .. } => "Patch",
            Self::Resync { .. } => "Resync",
            Self::Close { .. } => "Close",
            Self::More(_) => "More",
            Self::State { .. } => "State",
            Self::Patched { .. } => "Patched",
            Self::Rejected { .. } => "Rejected",
            Self::Ack { .. } => "Ack",
            Self::Refused { .. } => "Refused",
            Self::Witness => "Witness",
            Self::Have { .. } => "Have",
        }
    }

    /// The document the message is about (`None` for [`More`](Self::More)).
    pub fn doc(&self) -> Option<&str> {
        match self {
            Self::Open { name, .. }
            | Self::Patch { name, .. }
            | Self::Resync { name }
            | Self::Close { name }
            | Self::State { name, .. }
            | Self::Patched { name, .. }
            | Self::Rejected { name, .. }
            | Self::Ack { name, .. }
            | Self::Refused { name, .. }
            | Self::Have { name, .. } => Some(name),
            Self::More(_) | Self::Witness => None,
        }
    }
}

const TAG_OPEN: u8 = 1;
const TAG_PATCH: u8 = 2;
const TAG_RESYNC: u8 = 3;
const TAG_CLOSE: u8 = 4;
const TAG_MORE: u8 = 5;
const TAG_STATE: u8 = 6;
const TAG_PATCHED: u8 = 7;
const TAG_REJECTED: u8 = 8;
const TAG_ACK: u8 = 9;
const TAG_REFUSED: u8 = 10;
const TAG_WITNESS: u8 = 11;
const TAG_HAVE: u8 = 12;

/// Bytes serialized as one length-prefixed run (not element by element).
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// The owned counterpart of [`Raw`].
struct RawBuf(Vec<u8>);

impl<'de> Deserialize<'de> for RawBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<RawBuf, E> {
                Ok(RawBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<RawBuf, E> {
                Ok(RawBuf(v))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// An update as canonical JSON text.
fn update_text(update: &Update) -> String {
    serde_json::to_string(&update.to_value()).expect("a JSON value always serializes")
}

/// Encodes one message (no length header: the caller frames it).
pub fn encode_doc(msg: &DocMsg) -> Vec<u8> {
    let mut out = Vec::new();
    match msg {
        DocMsg::Open {
            name,
            open,
            version,
            len,
            chunk,
        } => body(&mut out, TAG_OPEN, &(name, open, version, len, Raw(chunk))),
        DocMsg::Patch {
            name,
            seq,
            base,
            wall_ms,
            update,
        } => body(
            &mut out,
            TAG_PATCH,
            &(name, seq, base, wall_ms, update_text(update)),
        ),
        DocMsg::Resync { name } => body(&mut out, TAG_RESYNC, name),
        DocMsg::Close { name } => body(&mut out, TAG_CLOSE, name),
        DocMsg::More(chunk) => body(&mut out, TAG_MORE, &Raw(chunk)),
        DocMsg::State {
            name,
            open,
            version,
            len,
            chunk,
        } => body(&mut out, TAG_STATE, &(name, open, version, len, Raw(chunk))),
        DocMsg::Patched {
            name,
            version,
            origin,
            seq,
            wall_ms,
            update,
        } => body(
            &mut out,
            TAG_PATCHED,
            &(name, version, origin, seq, wall_ms, update_text(update)),
        ),
        DocMsg::Rejected {
            name,
            seq,
            version,
            reason,
        } => body(&mut out, TAG_REJECTED, &(name, seq, version, reason)),
        DocMsg::Ack {
            name,
            seq,
            version,
            witnesses,
        } => body(&mut out, TAG_ACK, &(name, seq, version, witnesses)),
        DocMsg::Refused { name, open, reason } => {
            body(&mut out, TAG_REFUSED, &(name, open, reason));
        }
        DocMsg::Witness => body(&mut out, TAG_WITNESS, &()),
        DocMsg::Have { name, version } => body(&mut out, TAG_HAVE, &(name, version)),
    }
    out
}

/// Decodes one message and checks it against `limits`: its size, names, body lengths,
/// sequence numbers, and that an update is valid JSON and a valid [`Update`].
pub fn decode_doc(bytes: &[u8], limits: &DocLimits) -> Result<DocMsg, DecodeError> {
    if bytes.len() > limits.max_chunk {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: limits.max_chunk,
        });
    }
    let (&tag, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    let name = |name: String| -> Result<String, DecodeError> {
        limits.check_name(&name).map_err(DecodeError::Invalid)?;
        Ok(name)
    };
    let seq = |seq: u64| {
        if seq == 0 {
            Err(DecodeError::Invalid("origin_seq 0".into()))
        } else {
            Ok(seq)
        }
    };
    let body_len = |len: u32, chunk: &RawBuf| {
        let len = len as usize;
        if len > limits.max_body() {
            return Err(DecodeError::FieldTooLong {
                what: "document body",
                len,
                max: limits.max_body(),
            });
        }
        if chunk.0.len() > len {
            return Err(DecodeError::Invalid(format!(
                "a chunk of {} bytes of a body of {len}",
                chunk.0.len()
            )));
        }
        Ok(())
    };
    let msg = match tag {
        TAG_OPEN => {
            let (n, open, version, len, chunk): (String, u64, Option<u64>, u32, RawBuf) =
                whole(rest)?;
            body_len(len, &chunk)?;
            DocMsg::Open {
                name: name(n)?,
                open,
                version,
                len,
                chunk: chunk.0,
            }
        }
        TAG_PATCH => {
            if bytes.len() > limits.max_patch() {
                return Err(DecodeError::TooLong {
                    len: bytes.len(),
                    max: limits.max_patch(),
                });
            }
            let (n, s, base, wall_ms, text): (String, u64, u64, u64, String) = whole(rest)?;
            DocMsg::Patch {
                name: name(n)?,
                seq: seq(s)?,
                base,
                wall_ms,
                update: parse_update(&text)?,
            }
        }
        TAG_RESYNC => DocMsg::Resync {
            name: name(whole(rest)?)?,
        },
        TAG_CLOSE => DocMsg::Close {
            name: name(whole(rest)?)?,
        },
        TAG_MORE => {
            let chunk: RawBuf = whole(rest)?;
            if chunk.0.is_empty() {
                return Err(DecodeError::Invalid("an empty chunk".into()));
            }
            DocMsg::More(chunk.0)
        }
        TAG_STATE => {
            let (n, open, version, len, chunk): (String, u64, u64, u32, RawBuf) = whole(rest)?;
            body_len(len, &chunk)?;
            DocMsg::State {
                name: name(n)?,
                open,
                version,
                len,
                chunk: chunk.0,
            }
        }
        TAG_PATCHED => {
            let (n, version, origin, s, wall_ms, text): (String, u64, NodeId, u64, u64, String) =
                whole(rest)?;
            DocMsg::Patched {
                name: name(n)?,
                version,
                origin,
                seq: seq(s)?,
                wall_ms,
                update: parse_update(&text)?,
            }
        }
        TAG_REJECTED => {
            let (n, s, version, reason): (String, u64, u64, RejectReason) = whole(rest)?;
            DocMsg::Rejected {
                name: name(n)?,
                seq: seq(s)?,
                version,
                reason,
            }
        }
        TAG_ACK => {
            let (n, s, version, witnesses): (String, u64, u64, u32) = whole(rest)?;
            DocMsg::Ack {
                name: name(n)?,
                seq: seq(s)?,
                version,
                witnesses,
            }
        }
        TAG_REFUSED => {
            let (n, open, reason): (String, u64, Refusal) = whole(rest)?;
            DocMsg::Refused {
                name: name(n)?,
                open,
                reason,
            }
        }
        TAG_WITNESS => {
            let () = whole(rest)?;
            DocMsg::Witness
        }
        TAG_HAVE => {
            let (n, version): (String, u64) = whole(rest)?;
            DocMsg::Have {
                name: name(n)?,
                version,
            }
        }
        other => return Err(DecodeError::UnknownTag(other)),
    };
    Ok(msg)
}

/// The most bytes a [`DocMsg::Patch`] of `update` to `name` can take encoded, whatever its
/// `seq` and `base`.
pub(crate) fn patch_len(name: &str, wall_ms: u64, update: &Update) -> usize {
    let mut out = Vec::new();
    body(
        &mut out,
        TAG_PATCH,
        &(name, u64::MAX, u64::MAX, wall_ms, update_text(update)),
    );
    out.len()
}

fn parse_update(text: &str) -> Result<Update, DecodeError> {
    let spec: Value = serde_json::from_str(text)
        .map_err(|e| DecodeError::Invalid(format!("update is not JSON: {e}")))?;
    Update::parse(&spec).map_err(|e| DecodeError::Invalid(format!("invalid update: {e}")))
}

// ---- bodies ----

/// A mark on the wire: origin, last accepted seq, holes, version.
type WireMark = (NodeId, u64, u128, u64);
/// A log entry on the wire: version, origin, paths.
type WireEntry = (u64, NodeId, Vec<Path>);

/// Encodes the body of an [`DocMsg::Open`] or [`DocMsg::State`]: a document's marks, log and
/// value. A default value travels with no marks and no log.
pub(crate) fn encode_body(marks: &Marks, log: &Log, value: &Value) -> Vec<u8> {
    let marks: Vec<WireMark> = marks
        .by_origin
        .iter()
        .map(|(n, m)| (*n, m.seq, m.holes, m.version))
        .collect();
    let log: Vec<(u64, NodeId, &[Path])> = log
        .entries
        .iter()
        .map(|e| (e.version, e.origin, e.paths.as_slice()))
        .collect();
    let text = serde_json::to_string(value).expect("a JSON value always serializes");
    bincode::serde::encode_to_vec((marks, log, text), body_config())
        .expect("encoding into a Vec cannot fail")
}

/// A body decodes with this bincode limit; [`DocLimits::validated`] keeps `max_body` below it.
const BODY_CAP: usize = 64 << 20;

fn body_config() -> impl Config {
    standard().with_limit::<BODY_CAP>()
}

/// Decodes and checks a body: the state at `version`, or (`None`) a default value, which
/// comes with no marks and no log.
pub(crate) fn decode_body(
    bytes: &[u8],
    version: Option<u64>,
    limits: &DocLimits,
) -> Result<DocState, DecodeError> {
    if bytes.len() > limits.max_body() {
        return Err(DecodeError::TooLong {
            len: bytes.len(),
            max: limits.max_body(),
        });
    }
    let ((marks, log, text), used): ((Vec<WireMark>, Vec<WireEntry>, String), usize) =
        bincode::serde::decode_from_slice(bytes, body_config()).map_err(|e| match e {
            BincodeError::UnexpectedEnd { .. } => DecodeError::UnexpectedEnd,
            other => DecodeError::Invalid(other.to_string()),
        })?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - used));
    }
    let too_long = |what, len, max| Err(DecodeError::FieldTooLong { what, len, max });
    if marks.len() > limits.max_origins {
        return too_long("marks", marks.len(), limits.max_origins);
    }
    if log.len() > limits.log_window {
        return too_long("conflict log", log.len(), limits.log_window);
    }
    if text.len() > limits.max_value {
        return too_long("document value", text.len(), limits.max_value);
    }
    let version_or_default = version.unwrap_or(0);
    if version.is_none() && (!marks.is_empty() || !log.is_empty()) {
        return Err(DecodeError::Invalid(
            "a default value with marks or a log".into(),
        ));
    }
    let mut by_origin = std::collections::BTreeMap::new();
    for (origin, seq, holes, mark_version) in marks {
        if seq == 0 || mark_version == 0 || mark_version > version_or_default {
            return Err(DecodeError::Invalid(format!("invalid mark of {origin}")));
        }
        let mark = Mark {
            seq,
            holes,
            version: mark_version,
        };
        if by_origin.insert(origin, mark).is_some() {
            return Err(DecodeError::Invalid(format!("two marks of {origin}")));
        }
    }
    let entries: Vec<LogEntry> = log
        .into_iter()
        .map(|(version, origin, paths)| LogEntry {
            version,
            origin,
            paths,
        })
        .collect();
    let log = Log::from_entries(version_or_default, entries).ok_or_else(|| {
        DecodeError::Invalid("the conflict log does not end at the state's version".into())
    })?;
    if log.cost() > limits.max_log_bytes {
        return too_long("conflict log", log.cost(), limits.max_log_bytes);
    }
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| DecodeError::Invalid(format!("document value is not JSON: {e}")))?;
    if deeper_than(&value, MAX_DEPTH) {
        return Err(DecodeError::Invalid(format!(
            "document value nests deeper than {MAX_DEPTH} levels"
        )));
    }
    Ok(DocState {
        version: version_or_default,
        value,
        marks: Marks { by_origin },
        log,
    })
}

/// Cuts a body into a first message (made by `head` from the first bytes) and
/// [`DocMsg::More`]s, each at most `max_chunk` bytes encoded.
pub(crate) fn chunked(
    body: &[u8],
    max_chunk: usize,
    head: impl Fn(Vec<u8>) -> DocMsg,
) -> Vec<DocMsg> {
    // The head's size with an empty chunk, plus room for the chunk's length prefix to grow.
    let overhead = encode_doc(&head(Vec::new())).len() + 8;
    let first = max_chunk.saturating_sub(overhead).min(body.len());
    let more = max_chunk - 16;
    let mut out = vec![head(body[..first].to_vec())];
    out.extend(body[first..].chunks(more).map(|c| DocMsg::More(c.to_vec())));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc::{Operator, UpdateError, ValueKind};
    use serde_json::json;

    fn node(n: u64) -> NodeId {
        NodeId::new(n).expect("non-zero")
    }

    fn update(spec: Value) -> Update {
        Update::parse(&spec).expect("valid update")
    }

    fn every_message() -> Vec<DocMsg> {
        let name = "config".to_string();
        vec![
            DocMsg::Open {
                name: name.clone(),
                open: 7,
                version: Some(u64::MAX),
                len: 10,
                chunk: b"0123".to_vec(),
            },
            DocMsg::Open {
                name: name.clone(),
                open: 0,
                version: None,
                len: 0,
                chunk: vec![],
            },
            DocMsg::Patch {
                name: name.clone(),
                seq: 1,
                base: 3,
                wall_ms: 1_700_000_000_000,
                update: update(json!({"$inc": {"n": 1}, "$set": {"a.b": [1, {"c": null}]}})),
            },
            DocMsg::Resync { name: name.clone() },
            DocMsg::Close { name: name.clone() },
            DocMsg::More(vec![0, 255, 3]),
            DocMsg::State {
                name: name.clone(),
                open: 1,
                version: 9,
                len: 3,
                chunk: b"abc".to_vec(),
            },
            DocMsg::Patched {
                name: name.clone(),
                version: 10,
                origin: node(u64::MAX),
                seq: u64::MAX,
                wall_ms: 0,
                update: update(json!({"$currentDate": {"t": true}})),
            },
            DocMsg::Rejected {
                name: name.clone(),
                seq: 2,
                version: 10,
                reason: RejectReason::Conflict {
                    path: "a.b".parse().expect("path"),
                    version: 9,
                    origin: node(3),
                },
            },
            DocMsg::Rejected {
                name: name.clone(),
                seq: 2,
                version: 10,
                reason: RejectReason::Failed(UpdateError::WrongType {
                    op: Operator::Inc,
                    path: "n".parse().expect("path"),
                    found: ValueKind::String,
                }),
            },
            DocMsg::Ack {
                name: name.clone(),
                seq: 4,
                version: 11,
                witnesses: 1,
            },
            DocMsg::Refused {
                name: name.clone(),
                open: 3,
                reason: Refusal::TooManyDocs { max: 1 },
            },
            DocMsg::Witness,
            DocMsg::Have { name, version: 11 },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        let limits = DocLimits::default();
        for msg in every_message() {
            let bytes = encode_doc(&msg);
            assert_eq!(decode_doc(&bytes, &limits), Ok(msg));
            // Every proper prefix fails cleanly.
            for cut in 0..bytes.len() {
                assert!(decode_doc(&bytes[..cut], &limits).is_err());
            }
        }
    }

    #[test]
    fn bad_messages_are_typed_errors() {
        let limits = DocLimits {
            max_name: 4,
            ..DocLimits::default()
        };
        assert_eq!(decode_doc(&[], &limits), Err(DecodeError::Empty));
        assert_eq!(decode_doc(&[99], &limits), Err(DecodeError::UnknownTag(99)));
        let long = encode_doc(&DocMsg::Close {
            name: "toolong".into(),
        });
        assert!(matches!(
            decode_doc(&long, &limits),
            Err(DecodeError::Invalid(_))
        ));
        let empty = encode_doc(&DocMsg::Close {
            name: String::new(),
        });
        assert!(decode_doc(&empty, &limits).is_err());
        let mut trailing = encode_doc(&DocMsg::Close { name: "a".into() });
        trailing.push(0);
        assert_eq!(
            decode_doc(&trailing, &limits),
            Err(DecodeError::TrailingBytes(1))
        );
        // A body above max_body, a chunk longer than its body, an empty More.
        let open = |len, chunk: Vec<u8>| {
            encode_doc(&DocMsg::Open {
                name: "a".into(),
                open: 1,
                version: None,
                len,
                chunk,
            })
        };
        assert!(matches!(
            decode_doc(&open(u32::MAX, vec![]), &limits),
            Err(DecodeError::FieldTooLong { .. })
        ));
        assert!(decode_doc(&open(1, vec![1, 2]), &limits).is_err());
        assert!(decode_doc(&encode_doc(&DocMsg::More(vec![])), &limits).is_err());
        // Too large a message.
        let huge = encode_doc(&DocMsg::More(vec![0; limits.max_chunk]));
        assert!(matches!(
            decode_doc(&huge, &limits),
            Err(DecodeError::TooLong { .. })
        ));
        // An update that is not JSON, or not a valid update; a zero seq.
        let patch = |seq: u64, text: &str| {
            let mut out = Vec::new();
            body(&mut out, TAG_PATCH, &("a", seq, 0u64, 0u64, text));
            out
        };
        assert!(decode_doc(&patch(1, r#"{"$inc": {"n": 1}}"#), &limits).is_ok());
        assert!(decode_doc(&patch(1, "{"), &limits).is_err());
        assert!(decode_doc(&patch(1, r#"{"$nope": {"n": 1}}"#), &limits).is_err());
        assert!(decode_doc(&patch(1, r#"{"$inc": {"n": "x"}}"#), &limits).is_err());
        assert!(decode_doc(&patch(0, r#"{"$inc": {"n": 1}}"#), &limits).is_err());
        let deep = format!(
            r#"{{"$set": {{"n": {}{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(decode_doc(&patch(1, &deep), &limits).is_err());
        // A list claiming a huge length does not allocate it.
        let mut claim = vec![TAG_MORE, 0xFD];
        claim.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_doc(&claim, &limits).is_err());
    }

    #[test]
    fn bodies_round_trip_and_are_checked() {
        let limits = DocLimits::default();
        let mut doc = DocState::created(json!({"n": 0}));
        let none = std::collections::BTreeMap::new();
        for seq in 1..=3 {
            doc.advance(
                node(seq),
                seq,
                0,
                &update(json!({"$inc": {"n": 1}})),
                &limits,
                &none,
            )
            .expect("applies");
        }
        let bytes = encode_body(&doc.marks, &doc.log, &doc.value);
        assert_eq!(decode_body(&bytes, Some(3), &limits), Ok(doc.clone()));
        // The log must end at the version.
        assert!(decode_body(&bytes, Some(4), &limits).is_err());
        // A default carries no marks.
        assert!(decode_body(&bytes, None, &limits).is_err());
        let default = encode_body(&Marks::default(), &Log::empty(0), &json!([1]));
        assert_eq!(
            decode_body(&default, None, &limits).map(|d| d.value),
            Ok(json!([1]))
        );
        // Value limits.
        let small = DocLimits {
            max_value: 3,
            ..DocLimits::default()
        };
        assert!(decode_body(&default, None, &small).is_ok());
        let big = encode_body(&Marks::default(), &Log::empty(0), &json!([1, 2]));
        assert!(matches!(
            decode_body(&big, None, &small),
            Err(DecodeError::FieldTooLong { .. })
        ));
        let mut nested = json!(0);
        for _ in 0..MAX_DEPTH + 1 {
            nested = json!([nested]);
        }
        let deep = encode_body(&Marks::default(), &Log::empty(0), &nested);
        assert!(decode_body(&deep, None, &limits).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_body(&bytes[..cut], Some(3), &limits).is_err());
        }
    }

    #[test]
    fn chunks_fit_max_chunk_and_reassemble() {
        let limits = DocLimits::default().validated();
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let name = "n".repeat(limits.max_name);
        let msgs = chunked(&body, limits.max_chunk, |chunk| DocMsg::State {
            name: name.clone(),
            open: u64::MAX,
            version: u64::MAX,
            len: body.len() as u32,
            chunk,
        });
        let mut back = Vec::new();
        for m in &msgs {
            let bytes = encode_doc(m);
            assert!(bytes.len() <= limits.max_chunk, "{} bytes", bytes.len());
            match decode_doc(&bytes, &limits).expect("decodes") {
                DocMsg::State { chunk, .. } | DocMsg::More(chunk) => back.extend(chunk),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(back, body);
        assert_eq!(msgs.len(), 4);
        // A small body is one message.
        assert_eq!(chunked(b"xy", limits.max_chunk, DocMsg::More).len(), 1);
    }
}
