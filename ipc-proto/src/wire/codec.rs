//! Encoding and decoding of frames: the only module that knows the body encoding.

use bincode::config::{Config, standard};
use bincode::error::DecodeError as BincodeError;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::frame::{Frame, Hello, OwnChange, PROTOCOL_VERSION};
use super::limits::Limits;
use crate::error::DecodeError;
use crate::topology::{Change, Record};

/// A hard cap on what bincode may allocate while decoding one body, whatever the limits say.
const HARD_CAP: usize = 16 << 20;

/// Length of the frame header: the `u32` length.
pub(crate) const HEADER: usize = 4;

fn config() -> impl Config {
    standard().with_limit::<HARD_CAP>()
}

const TAG_HELLO: u8 = 1;
const TAG_HISTORY: u8 = 2;
const TAG_OWN: u8 = 3;
const TAG_INTRO_END: u8 = 4;
const TAG_CHANGE: u8 = 5;
const TAG_HEARTBEAT: u8 = 6;
const TAG_GOODBYE: u8 = 7;
const TAG_WELCOME: u8 = 8;
const TAG_SNAPSHOT: u8 = 9;
const TAG_SNAPSHOT_END: u8 = 10;
const TAG_MINTED: u8 = 11;
const TAG_RELAYED: u8 = 12;
const TAG_HORIZON: u8 = 13;
const TAG_DOC: u8 = 14;
const TAG_DOC_READY: u8 = 15;

/// Encodes one frame, with its length header.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(frame, &mut out);
    out
}

/// Appends one frame, with its length header, to `out`.
pub fn encode_into(frame: &Frame, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    match frame {
        Frame::Hello(h) => body(out, TAG_HELLO, &(PROTOCOL_VERSION, h)),
        Frame::History(r) => body(out, TAG_HISTORY, r),
        Frame::Own(o) => body(out, TAG_OWN, o),
        Frame::IntroEnd => out.push(TAG_INTRO_END),
        Frame::Change(c) => body(out, TAG_CHANGE, c),
        Frame::Heartbeat => out.push(TAG_HEARTBEAT),
        Frame::Goodbye(r) => body(out, TAG_GOODBYE, r),
        Frame::Welcome(w) => body(out, TAG_WELCOME, w),
        Frame::Snapshot(r) => body(out, TAG_SNAPSHOT, r),
        Frame::SnapshotEnd(h) => body(out, TAG_SNAPSHOT_END, h),
        Frame::Minted(r) => body(out, TAG_MINTED, r),
        Frame::Relayed(r) => body(out, TAG_RELAYED, r),
        Frame::Horizon(h) => body(out, TAG_HORIZON, h),
        Frame::Doc(d) => {
            // Raw: the document message is its own encoding.
            out.push(TAG_DOC);
            out.extend_from_slice(d);
        }
        Frame::DocReady => out.push(TAG_DOC_READY),
    }
    let len = u32::try_from(out.len() - start - HEADER).expect("frames are far below 4 GiB");
    out[start..start + HEADER].copy_from_slice(&len.to_le_bytes());
}

pub(super) fn body<T: Serialize>(out: &mut Vec<u8>, tag: u8, value: &T) {
    out.push(tag);
    bincode::serde::encode_into_std_write(value, out, config())
        .expect("encoding into a Vec cannot fail");
}

/// Appends `value` with bincode's own codec, not its serde path: the same bytes for the same
/// fields, without the serde machinery (for what every message carries).
pub(super) fn native_into<T: bincode::Encode>(value: T, out: &mut Vec<u8>) {
    bincode::encode_into_std_write(value, out, config()).expect("encoding into a Vec cannot fail");
}

/// [`native_into`] at the start of `dst`, which must hold it; returns the bytes written.
pub(super) fn native_into_slice<T: bincode::Encode>(value: T, dst: &mut [u8]) -> usize {
    bincode::encode_into_slice(value, dst, config()).expect("the caller sized `dst`")
}

/// Reads what [`native_into`] wrote at the start of `body`; returns it and the bytes it took.
pub(super) fn native_prefix<T: bincode::Decode<()>>(
    body: &[u8],
) -> Result<(T, usize), DecodeError> {
    bincode::decode_from_slice(body, config()).map_err(decode_error)
}

/// Decodes one frame from its tag and body (the bytes after the length header), and checks
/// every field against `limits`.
pub fn decode(frame: &[u8], limits: &Limits) -> Result<Frame, DecodeError> {
    let (&tag, body) = frame.split_first().ok_or(DecodeError::Empty)?;
    let frame = match tag {
        TAG_HELLO => {
            let (version, used) = value::<u16>(body, true)?;
            if version != PROTOCOL_VERSION {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            Frame::Hello(value::<Hello>(&body[used..], false)?.0)
        }
        TAG_HISTORY => Frame::History(whole(body)?),
        TAG_OWN => Frame::Own(whole(body)?),
        TAG_INTRO_END => unit(body, Frame::IntroEnd)?,
        TAG_CHANGE => Frame::Change(whole(body)?),
        TAG_HEARTBEAT => unit(body, Frame::Heartbeat)?,
        TAG_GOODBYE => Frame::Goodbye(whole(body)?),
        TAG_WELCOME => Frame::Welcome(whole(body)?),
        TAG_SNAPSHOT => Frame::Snapshot(whole(body)?),
        TAG_SNAPSHOT_END => Frame::SnapshotEnd(whole(body)?),
        TAG_MINTED => Frame::Minted(whole(body)?),
        TAG_RELAYED => Frame::Relayed(whole(body)?),
        TAG_HORIZON => Frame::Horizon(whole(body)?),
        // The frame's length was checked against `max_frame` before it was buffered.
        TAG_DOC => Frame::Doc(body.to_vec()),
        TAG_DOC_READY => unit(body, Frame::DocReady)?,
        other => return Err(DecodeError::UnknownTag(other)),
    };
    check(&frame, limits)?;
    Ok(frame)
}

fn unit(body: &[u8], frame: Frame) -> Result<Frame, DecodeError> {
    if body.is_empty() {
        Ok(frame)
    } else {
        Err(DecodeError::TrailingBytes(body.len()))
    }
}

pub(super) fn whole<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    Ok(value(body, false)?.0)
}

/// Decodes a value from the front of `body`; unless `prefix`, nothing may follow it.
pub(super) fn value<T: DeserializeOwned>(
    body: &[u8],
    prefix: bool,
) -> Result<(T, usize), DecodeError> {
    let (v, used) =
        bincode::serde::decode_from_slice::<T, _>(body, config()).map_err(|e| match e {
            BincodeError::LimitExceeded => DecodeError::TooLong {
                len: body.len(),
                max: HARD_CAP,
            },
            other => decode_error(other),
        })?;
    if !prefix && used != body.len() {
        return Err(DecodeError::TrailingBytes(body.len() - used));
    }
    Ok((v, used))
}

fn decode_error(e: BincodeError) -> DecodeError {
    match e {
        BincodeError::UnexpectedEnd { .. } => DecodeError::UnexpectedEnd,
        BincodeError::OtherString(msg) => DecodeError::Invalid(msg),
        other => DecodeError::Invalid(other.to_string()),
    }
}

/// Checks string lengths and topic names against the limits.
fn check(frame: &Frame, limits: &Limits) -> Result<(), DecodeError> {
    match frame {
        Frame::Hello(h) => {
            if let Some(info) = &h.member {
                limits.check_name("node name", &info.name)?;
                limits.check_name("data address", &info.data_addr)?;
            }
            Ok(())
        }
        Frame::History(r) | Frame::Snapshot(r) | Frame::Minted(r) | Frame::Relayed(r) => {
            r.iter().try_for_each(|r| check_record(r, limits))
        }
        Frame::Own(o) => o.iter().try_for_each(|c| check_own(c, limits)),
        Frame::Change(c) => check_own(c, limits),
        Frame::Goodbye(_)
        | Frame::Welcome(_)
        | Frame::SnapshotEnd(_)
        | Frame::Horizon(_)
        | Frame::IntroEnd
        | Frame::Heartbeat
        | Frame::Doc(_)
        | Frame::DocReady => Ok(()),
    }
}

fn check_topic(topic: &str, limits: &Limits) -> Result<(), DecodeError> {
    if topic.is_empty() {
        return Err(DecodeError::Invalid("empty topic name".into()));
    }
    limits.check_name("topic name", topic)
}

fn check_own(c: &OwnChange, limits: &Limits) -> Result<(), DecodeError> {
    check_topic(c.topic(), limits)?;
    if let OwnChange::Announce { mime, .. } = c {
        limits.check_name("type string", mime)?;
    }
    Ok(())
}

fn check_record(r: &Record, limits: &Limits) -> Result<(), DecodeError> {
    match &r.change {
        Change::Join(info) => {
            limits.check_name("node name", &info.name)?;
            limits.check_name("data address", &info.data_addr)
        }
        Change::Leave(_) => Ok(()),
        Change::Announce { topic, mime, .. } => {
            check_topic(topic, limits)?;
            limits.check_name("type string", mime)
        }
        Change::Retract { topic, .. }
        | Change::Subscribe { topic, .. }
        | Change::Unsubscribe { topic, .. } => check_topic(topic, limits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Horizon;
    use crate::ids::{Epoch, NodeId, Seq, Term, Uid};
    use crate::keepalive::Keepalive;
    use crate::topology::tests::info;
    use crate::wire::{CloseReason, Welcome};
    use std::time::Duration;

    fn roundtrip(f: Frame) {
        let bytes = encode(&f);
        let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
        assert_eq!(len, bytes.len() - 4);
        assert_eq!(decode(&bytes[4..], &Limits::default()), Ok(f));
    }

    #[test]
    fn every_frame_round_trips() {
        let mut hz = Horizon::default();
        hz.observe(Seq::new(Epoch::new(3, 9), 4));
        let rec = Record {
            seq: Seq::new(Epoch::new(1, 7), 2),
            uid: Uid::new(77).expect("non-zero"),
            change: Change::Join(info(5, "five")),
        };
        let id = NodeId::new(5).expect("non-zero");
        for f in [
            Frame::Hello(Hello {
                member: Some(info(1, "a")),
                term: Term(3),
                horizon: hz.clone(),
                keepalive: Keepalive::default(),
            }),
            Frame::Hello(Hello {
                member: None,
                term: Term(0),
                horizon: Horizon::default(),
                keepalive: Keepalive {
                    heartbeat: Duration::from_millis(30),
                    limit: Duration::from_secs(60),
                },
            }),
            Frame::History(vec![rec.clone(), rec.clone()]),
            Frame::Own(vec![
                OwnChange::Announce {
                    topic: "t".into(),
                    mime: "m".into(),
                },
                OwnChange::Subscribe { topic: "u".into() },
            ]),
            Frame::IntroEnd,
            Frame::Change(OwnChange::Unsubscribe { topic: "u".into() }),
            Frame::Heartbeat,
            Frame::Goodbye(CloseReason::VersionMismatch { theirs: 9, ours: 1 }),
            Frame::Goodbye(CloseReason::DuplicateNode(id)),
            Frame::Welcome(Welcome {
                hub: id,
                term: Term(4),
                keepalive: Keepalive::default(),
            }),
            Frame::Snapshot(vec![rec.clone()]),
            Frame::SnapshotEnd(hz.clone()),
            Frame::Minted(vec![rec.clone()]),
            Frame::Relayed(vec![]),
            Frame::Horizon(hz),
            Frame::Doc(vec![]),
            Frame::Doc(vec![7, 0, 255]),
            Frame::DocReady,
        ] {
            roundtrip(f);
        }
    }

    #[test]
    fn typed_errors() {
        let l = Limits::default();
        assert_eq!(decode(&[], &l), Err(DecodeError::Empty));
        assert_eq!(decode(&[200], &l), Err(DecodeError::UnknownTag(200)));
        assert_eq!(
            decode(&[TAG_HEARTBEAT, 0], &l),
            Err(DecodeError::TrailingBytes(1))
        );
        assert_eq!(decode(&[TAG_CHANGE], &l), Err(DecodeError::UnexpectedEnd));
        assert_eq!(
            decode(&[TAG_CHANGE, 9], &l),
            Err(DecodeError::Invalid(
                "invalid value: integer `9`, expected variant index 0 <= i < 4".into()
            ))
        );
        // Version 9 (varint 9) in a hello.
        assert_eq!(
            decode(&[TAG_HELLO, 9, 0, 0], &l),
            Err(DecodeError::UnsupportedVersion(9))
        );
        // A node id of zero is invalid.
        let mut bad = encode(&Frame::Welcome(Welcome {
            hub: NodeId::new(1).expect("1"),
            term: Term(1),
            keepalive: Keepalive::default(),
        }));
        bad[5] = 0;
        assert!(matches!(
            decode(&bad[4..], &l),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn field_limits_are_enforced() {
        let l = Limits {
            max_name: 4,
            ..Limits::default()
        };
        let f = Frame::Change(OwnChange::Subscribe {
            topic: "toolong".into(),
        });
        assert_eq!(
            decode(&encode(&f)[4..], &l),
            Err(DecodeError::FieldTooLong {
                what: "topic name",
                len: 7,
                max: 4
            })
        );
        let f = Frame::Change(OwnChange::Subscribe {
            topic: String::new(),
        });
        assert!(matches!(
            decode(&encode(&f)[4..], &l),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn a_list_claiming_a_huge_length_does_not_allocate_it() {
        // Tag, then a varint length of u64::MAX-ish: bincode must fail on the data, not abort.
        let mut f = vec![TAG_HISTORY, 0xFD];
        f.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode(&f, &Limits::default()).is_err());
    }

    #[test]
    fn a_full_chunk_of_worst_case_records_fits_a_frame() {
        let l = Limits::default();
        let long = "x".repeat(l.max_name);
        let rec = Record {
            seq: Seq::new(Epoch::new(u32::MAX, u32::MAX), u32::MAX),
            uid: Uid::new(u64::MAX).expect("non-zero"),
            change: Change::Join(crate::topology::NodeInfo {
                id: NodeId::new(u64::MAX).expect("non-zero"),
                name: long.clone(),
                data_addr: long,
                pid: u32::MAX,
                uid: u32::MAX,
            }),
        };
        let frame = Frame::Snapshot(vec![rec; l.records_per_frame()]);
        assert!(encode(&frame).len() <= l.max_frame + HEADER);
    }
}
