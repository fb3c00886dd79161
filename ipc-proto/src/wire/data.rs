//! The frames of a data link: payloads from a publisher to one subscriber.
//!
//! A publisher node opens one data link to each subscriber node that takes at least one of its
//! topics, at that node's data address. Every socket record holds exactly one frame (so that a
//! file descriptor attached to the record belongs to that frame), laid out like topology frames:
//! `[length: u32 LE][tag: u8][body]`. A message's payload travels one of three ways:
//!
//! - [`DataFrame::Inline`]: the bytes follow the header in the frame itself (small payloads);
//! - [`DataFrame::Fresh`]: in a sealed memfd attached to the record, one per message;
//! - [`DataFrame::Pooled`]: at a range of a pool segment the link was given once with
//!   [`DataFrame::Segment`]; the subscriber gives the range back with [`DataFrame::Release`].

use serde::{Deserialize, Serialize};

use super::app::{AppCounter, check_app_counters};
use super::codec::{HEADER, body, native_into, native_into_slice, native_prefix, value, whole};
use crate::error::DecodeError;
use crate::ids::NodeId;

/// The data-link protocol version; a subscriber refuses a publisher that speaks another.
/// Version 2: the `Hello` says whether the publisher takes a ring. Version 3: the rings'
/// layout version 2 ([`ring::VERSION`](crate::ring::VERSION)).
pub const DATA_VERSION: u16 = 3;

/// What a subscriber does when a subscription's queue is full.
#[derive(Copy, Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Policy {
    /// Hold the publisher back, up to `timeout_ms` per message; after that the message is
    /// dropped for this subscriber only. Nothing is lost while the subscriber keeps up within
    /// the timeout.
    Block {
        /// How long a publisher may wait for room, in milliseconds.
        timeout_ms: u32,
    },
    /// Drop the oldest message not yet handed to the application.
    DropOldest,
    /// Drop the new message.
    DropNewest,
}

/// A message's place: its topic (an id bound on this link) and its number in the publisher's
/// sequence for that topic.
#[derive(Copy, Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct MessageHeader {
    /// The topic, as bound by [`DataFrame::Topic`].
    pub topic: u32,
    /// The publisher's sequence number for this topic, from 1, increasing by 1 per message
    /// published (a gap is a message dropped for this subscriber).
    pub seq: u64,
}

/// A range of a pool segment given back by the subscriber.
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct SlotRef {
    /// The segment, as given by [`DataFrame::Segment`].
    pub segment: u64,
    /// The start of the range.
    pub offset: u64,
}

/// A counter of one subscriber (or one subscription) of one topic.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct TopicStats {
    /// The topic.
    pub topic: String,
    /// The other end: the subscriber (for a publisher) or the publisher (for a subscriber).
    pub peer: Option<NodeId>,
    /// Messages sent (by a publisher) or delivered to this node's subscriptions (by a
    /// subscriber).
    pub messages: u64,
    /// Messages the subscriber's policy dropped: in the publisher's queue for it (publisher
    /// side), or in this node's own subscription queues (subscriber side).
    pub dropped: u64,
    /// Subscriber side: messages that never reached this node (dropped at the publisher, or
    /// lost with a link replaced or this node expelled), each reported to the subscriptions as
    /// a [`Loss`](crate::data::Loss). With `dropped`, every loss a subscription was told of.
    pub missed: u64,
    /// Messages sent but not yet given back (publisher side), or queued (subscriber side).
    pub in_flight: u64,
}

/// What a node reports about its data links, for `status`.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct DataStats {
    /// Per subscriber and topic, what this node published.
    pub published: Vec<TopicStats>,
    /// Per publisher and topic, what this node received.
    pub received: Vec<TopicStats>,
    /// Records refused as protocol violations (each closed its link).
    pub rejected: u64,
    /// What the node refused to protect itself from its peers.
    pub guard: GuardStats,
    /// The documents it keeps as a witness without having opened them.
    pub witness: WitnessStats,
    /// The application's own counters, as it last set them on its node (bounded: see
    /// [`check_app_counters`]).
    #[serde(deserialize_with = "super::app::deserialize")]
    pub app: Vec<AppCounter>,
}

/// What a node keeps as a document witness, for `status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct WitnessStats {
    /// Whether the node is a witness at all.
    pub on: bool,
    /// Documents held without having been opened.
    pub docs: u64,
    /// Their size, about (JSON text and the patches since).
    pub bytes: u64,
    /// Documents it refused to keep: its budget was full (each reported as
    /// [`DocEvt::NotWitnessed`](crate::doc::DocEvt::NotWitnessed)).
    pub not_kept: u64,
}

/// What a node refused to stay bounded against hostile or broken peers, for `status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct GuardStats {
    /// Times the node stopped accepting connections for a while because accepting failed
    /// (out of file descriptors: `EMFILE`, `ENFILE`).
    pub accept_paused: u64,
    /// Connections closed as soon as accepted: too many others had not sent their `Hello`
    /// yet ([`Limits::max_pending`](crate::Limits::max_pending)).
    pub pending_refused: u64,
    /// Connections closed because they sent no `Hello` within
    /// [`Limits::handshake_timeout`](crate::Limits::handshake_timeout).
    pub handshake_expired: u64,
    /// Fresh payloads and pool segments refused, before being mapped, for being larger than
    /// the subscription's [`max_payload`](crate::data::SubscriptionOptions::max_payload) (each
    /// closed its link, and is counted in [`DataStats::rejected`] too).
    pub oversized: u64,
}

impl GuardStats {
    /// Whether nothing was refused.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// One data-link frame.
#[derive(Clone, PartialEq, Eq, Debug)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum DataFrame {
    /// Tag 1, publisher to subscriber, first: who publishes on this link.
    Hello {
        /// The publishing node.
        publisher: NodeId,
        /// Whether its driver takes a shared-memory ring on this link
        /// ([`ring::link`](crate::ring::link)): the subscriber offers one only then, so that a
        /// driver without rings never receives an offer.
        rings: bool,
    },
    /// Tag 2, subscriber to publisher: how to treat the subscriber's queue of `topic`.
    Terms {
        /// The topic.
        topic: String,
        /// What to do when the queue is full.
        policy: Policy,
        /// How many messages the queue holds.
        depth: u32,
    },
    /// Tag 3, publisher to subscriber: `id` stands for `topic` on this link from now on. Each
    /// id and each topic is bound once per link (a second binding of either is a violation).
    Topic {
        /// The id.
        id: u32,
        /// The topic's name.
        topic: String,
    },
    /// Tag 4: a message whose payload is the rest of the frame.
    Inline(MessageHeader),
    /// Tag 5: a message whose payload is the first `len` bytes of the memfd attached to this
    /// record (sealed against writing, growing and shrinking).
    Fresh {
        /// Topic and sequence number.
        header: MessageHeader,
        /// The payload's length.
        len: u64,
    },
    /// Tag 6: the pool segment attached to this record (sealed against growing, shrinking and
    /// new writers), `size` bytes, known as `id` on this link.
    Segment {
        /// The segment's id.
        id: u64,
        /// Its size.
        size: u64,
    },
    /// Tag 7: a message at `offset..offset + len` of segment `segment`.
    Pooled {
        /// Topic and sequence number.
        header: MessageHeader,
        /// The segment.
        segment: u64,
        /// Where the payload starts.
        offset: u64,
        /// The payload's length.
        len: u64,
    },
    /// Tag 8, subscriber to publisher: these pooled payloads are no longer read.
    Release(Vec<SlotRef>),
    /// Tag 9, publisher to subscriber: segment `id` will not be used again.
    Retire {
        /// The segment.
        id: u64,
    },
    /// Tag 10: the sender closes the link.
    Goodbye,
    /// Tag 11, anyone to a node's data address, first and only: report your counters.
    StatsRequest,
    /// Tag 12: the reply to [`DataFrame::StatsRequest`].
    Stats(DataStats),
    /// Tag 13, publisher to subscriber: the last sequence number it published on the topic,
    /// sent right behind the topic's binding when it has published before, after messages it
    /// dropped for this subscriber once its queue drained, and before its
    /// [`DataFrame::Goodbye`]. What the subscriber did not get up to it is lost; a subscriber
    /// that had nothing of this publisher counts from it.
    Last(MessageHeader),
}

impl DataFrame {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "Hello",
            Self::Terms { .. } => "Terms",
            Self::Topic { .. } => "Topic",
            Self::Inline(_) => "Inline",
            Self::Fresh { .. } => "Fresh",
            Self::Segment { .. } => "Segment",
            Self::Pooled { .. } => "Pooled",
            Self::Release(_) => "Release",
            Self::Retire { .. } => "Retire",
            Self::Goodbye => "Goodbye",
            Self::StatsRequest => "StatsRequest",
            Self::Stats(_) => "Stats",
            Self::Last(_) => "Last",
        }
    }
}

const TAG_HELLO: u8 = 1;
const TAG_TERMS: u8 = 2;
const TAG_TOPIC: u8 = 3;
const TAG_INLINE: u8 = 4;
const TAG_FRESH: u8 = 5;
const TAG_SEGMENT: u8 = 6;
const TAG_POOLED: u8 = 7;
const TAG_RELEASE: u8 = 8;
const TAG_RETIRE: u8 = 9;
const TAG_GOODBYE: u8 = 10;
const TAG_STATS_REQUEST: u8 = 11;
const TAG_STATS: u8 = 12;
const TAG_LAST: u8 = 13;
/// Below the data plane: a subscriber's ring offer ([`encode_ring_offer`]).
const TAG_RING: u8 = 14;

/// Most bytes a header of an inline message takes (tag, two varints).
pub const INLINE_OVERHEAD: usize = HEADER + 1 + 5 + 9;

/// Encodes a frame; for [`DataFrame::Inline`], `payload` follows the header. One record.
pub fn encode_data(frame: &DataFrame, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INLINE_OVERHEAD + payload.len());
    encode_data_into(frame, payload, &mut out);
    out
}

/// [`encode_data`] into `out`, which is cleared first (its allocation is reused).
pub fn encode_data_into(frame: &DataFrame, payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0; HEADER]);
    match frame {
        DataFrame::Hello { publisher, rings } => {
            body(out, TAG_HELLO, &(DATA_VERSION, publisher, rings));
        }
        DataFrame::Terms {
            topic,
            policy,
            depth,
        } => body(out, TAG_TERMS, &(topic, policy, depth)),
        DataFrame::Topic { id, topic } => body(out, TAG_TOPIC, &(id, topic)),
        DataFrame::Inline(h) => {
            out.push(TAG_INLINE);
            header_into(*h, out);
            out.extend_from_slice(payload);
        }
        DataFrame::Fresh { header, len } => body(out, TAG_FRESH, &(header, len)),
        DataFrame::Segment { id, size } => body(out, TAG_SEGMENT, &(id, size)),
        DataFrame::Pooled {
            header,
            segment,
            offset,
            len,
        } => {
            body(out, TAG_POOLED, &(header, segment, offset, len));
        }
        DataFrame::Release(refs) => body(out, TAG_RELEASE, refs),
        DataFrame::Retire { id } => body(out, TAG_RETIRE, id),
        DataFrame::Goodbye => out.push(TAG_GOODBYE),
        DataFrame::StatsRequest => out.push(TAG_STATS_REQUEST),
        DataFrame::Stats(s) => body(out, TAG_STATS, s),
        DataFrame::Last(h) => body(out, TAG_LAST, h),
    }
    let len = u32::try_from(out.len() - HEADER).expect("data frames are far below 4 GiB");
    out[..HEADER].copy_from_slice(&len.to_le_bytes());
}

/// A message record, as a link's shared-memory ring carries it (`ring::link`): an inline
/// payload, or a pool range.
#[derive(Copy, Clone, PartialEq, Eq, Debug)]
pub enum MessageRef<'a> {
    /// [`DataFrame::Inline`] and its payload.
    Inline {
        /// Topic and sequence number.
        header: MessageHeader,
        /// The payload.
        payload: &'a [u8],
    },
    /// [`DataFrame::Pooled`].
    Pooled {
        /// Topic and sequence number.
        header: MessageHeader,
        /// The segment.
        segment: u64,
        /// Where the payload starts.
        offset: u64,
        /// The payload's length.
        len: u64,
    },
}

/// Appends a message header (every message has one) with bincode's own integer codec: the
/// bytes the serde path writes for a [`MessageHeader`], for less work.
fn header_into(h: MessageHeader, out: &mut Vec<u8>) {
    native_into((h.topic, h.seq), out);
}

/// Reads a message header at the start of `body` (see [`header_into`]); returns it and the
/// bytes it took.
fn header_prefix(body: &[u8]) -> Result<(MessageHeader, usize), DecodeError> {
    let ((topic, seq), used) = native_prefix::<(u32, u64)>(body)?;
    Ok((MessageHeader { topic, seq }, used))
}

/// Reads a [`DataFrame::Pooled`]'s body, all of it, with bincode's own integer codec: the
/// bytes the serde path writes for its fields (header, segment, offset, length), for less work.
fn pooled_body(body: &[u8]) -> Result<(MessageHeader, u64, u64, u64), DecodeError> {
    let ((topic, seq, segment, offset, len), used) =
        native_prefix::<(u32, u64, u64, u64, u64)>(body)?;
    if used != body.len() {
        return Err(DecodeError::TrailingBytes(body.len() - used));
    }
    Ok((MessageHeader { topic, seq }, segment, offset, len))
}

/// The start of the record of an inline message whose payload of `len` bytes follows it:
/// the record is `head[start..]`, then the payload, as [`encode_data`] writes it. For a
/// ring's consumer, which copies the payload once, straight behind the header.
///
/// # Panics
/// If `len` does not fit the record's `u32` length (a ring's payloads are far below).
pub fn inline_head(header: MessageHeader, len: usize) -> ([u8; INLINE_OVERHEAD], usize) {
    let mut body = [0; INLINE_OVERHEAD - HEADER];
    body[0] = TAG_INLINE;
    let used = 1 + native_into_slice((header.topic, header.seq), &mut body[1..]);
    let record_len = u32::try_from(used + len).expect("an inline payload below 4 GiB");
    let start = INLINE_OVERHEAD - HEADER - used;
    let mut head = [0; INLINE_OVERHEAD];
    head[start..start + HEADER].copy_from_slice(&record_len.to_le_bytes());
    head[start + HEADER..].copy_from_slice(&body[..used]);
    (head, start)
}

impl MessageRef<'_> {
    /// Whether `record`, one this crate encoded, is a pooled message: what [`Self::of`] says,
    /// from its tag alone (the publisher's driver asks it of every record it sends).
    pub fn is_pooled(record: &[u8]) -> bool {
        record.get(HEADER) == Some(&TAG_POOLED)
    }

    /// Reads a record this crate encoded, if it is an inline or pooled message. Anything else
    /// (another frame, a record that does not decode) is `None`. Reads what [`decode_data`]
    /// reads of such a record, without its general decoder: a ring's producer asks it of
    /// every message it sends.
    pub fn of(record: &[u8]) -> Option<MessageRef<'_>> {
        let (len, rest) = record.split_first_chunk::<HEADER>()?;
        if u32::from_le_bytes(*len) as usize != rest.len() {
            return None;
        }
        match rest.split_first()? {
            (&TAG_INLINE, body) => {
                let (header, used) = header_prefix(body).ok()?;
                Some(MessageRef::Inline {
                    header,
                    payload: body.get(used..)?,
                })
            }
            (&TAG_POOLED, body) => {
                let (header, segment, offset, len) = pooled_body(body).ok()?;
                Some(MessageRef::Pooled {
                    header,
                    segment,
                    offset,
                    len,
                })
            }
            _ => None,
        }
    }

    /// Encodes it as the record [`decode_data`] reads, into `out` (cleared first).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match *self {
            MessageRef::Inline { header, payload } => {
                encode_data_into(&DataFrame::Inline(header), payload, out);
            }
            MessageRef::Pooled {
                header,
                segment,
                offset,
                len,
            } => encode_data_into(
                &DataFrame::Pooled {
                    header,
                    segment,
                    offset,
                    len,
                },
                &[],
                out,
            ),
        }
    }
}

/// The record a subscriber sends to offer its link's shared-memory ring: the region's length;
/// three fds go with it (the region, the subscriber's eventfd, the publisher's eventfd). Not a
/// [`DataFrame`]: drivers handle it below the data plane (`ring::link`).
pub fn encode_ring_offer(region_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + 11);
    out.extend_from_slice(&[0; HEADER]);
    body(&mut out, TAG_RING, &(DATA_VERSION, region_len));
    let len = u32::try_from(out.len() - HEADER).expect("a few bytes");
    out[..HEADER].copy_from_slice(&len.to_le_bytes());
    out
}

/// Whether a record is a ring offer ([`encode_ring_offer`]), and if so the region's length
/// it states.
pub fn ring_offer(record: &[u8]) -> Option<Result<u64, DecodeError>> {
    if record.get(HEADER) != Some(&TAG_RING) {
        return None;
    }
    let len = u32::from_le_bytes(record.get(..HEADER)?.try_into().ok()?) as usize;
    if len != record.len() - HEADER {
        return Some(Err(DecodeError::Invalid(format!(
            "frame says {len} bytes, the record holds {}",
            record.len() - HEADER
        ))));
    }
    Some(
        whole::<(u16, u64)>(&record[HEADER + 1..]).and_then(|(version, len)| {
            if version == DATA_VERSION {
                Ok(len)
            } else {
                Err(DecodeError::UnsupportedVersion(version))
            }
        }),
    )
}

/// Whether a record is a publisher's [`DataFrame::Hello`] (the first record of a link) saying
/// that its driver takes a ring ([`encode_ring_offer`]).
pub fn hello_takes_rings(record: &[u8]) -> bool {
    record.get(HEADER) == Some(&TAG_HELLO)
        && matches!(
            decode_data(record, 0, 0),
            Ok((DataFrame::Hello { rings: true, .. }, _))
        )
}

/// Decodes one record holding one frame. For [`DataFrame::Inline`] the payload is
/// `record[start..]` where `start` is returned; otherwise `start` is the record's length.
///
/// `max_name` bounds topic names, `max_release` the entries of a release.
pub fn decode_data(
    record: &[u8],
    max_name: usize,
    max_release: usize,
) -> Result<(DataFrame, usize), DecodeError> {
    if record.len() < HEADER {
        return Err(DecodeError::UnexpectedEnd);
    }
    let len = u32::from_le_bytes(record[..HEADER].try_into().expect("HEADER bytes")) as usize;
    if len != record.len() - HEADER {
        return Err(DecodeError::Invalid(format!(
            "frame says {len} bytes, the record holds {}",
            record.len() - HEADER
        )));
    }
    let (&tag, rest) = record[HEADER..].split_first().ok_or(DecodeError::Empty)?;
    let end = record.len();
    let check_name = |what: &'static str, s: &str| {
        if s.is_empty() || s.len() > max_name {
            Err(DecodeError::FieldTooLong {
                what,
                len: s.len(),
                max: max_name,
            })
        } else {
            Ok(())
        }
    };
    let frame = match tag {
        TAG_HELLO => {
            let (version, used) = value::<u16>(rest, true)?;
            if version != DATA_VERSION {
                return Err(DecodeError::UnsupportedVersion(version));
            }
            let (publisher, rings) = whole(&rest[used..])?;
            DataFrame::Hello { publisher, rings }
        }
        TAG_TERMS => {
            let (topic, policy, depth): (String, Policy, u32) = whole(rest)?;
            check_name("topic name", &topic)?;
            DataFrame::Terms {
                topic,
                policy,
                depth,
            }
        }
        TAG_TOPIC => {
            let (id, topic): (u32, String) = whole(rest)?;
            check_name("topic name", &topic)?;
            DataFrame::Topic { id, topic }
        }
        TAG_INLINE => {
            let (h, used) = header_prefix(rest)?;
            return Ok((DataFrame::Inline(h), HEADER + 1 + used));
        }
        TAG_FRESH => {
            let (header, len) = whole(rest)?;
            DataFrame::Fresh { header, len }
        }
        TAG_SEGMENT => {
            let (id, size) = whole(rest)?;
            DataFrame::Segment { id, size }
        }
        TAG_POOLED => {
            let (header, segment, offset, len) = pooled_body(rest)?;
            DataFrame::Pooled {
                header,
                segment,
                offset,
                len,
            }
        }
        TAG_RELEASE => {
            let refs: Vec<SlotRef> = whole(rest)?;
            if refs.len() > max_release {
                return Err(DecodeError::FieldTooLong {
                    what: "release",
                    len: refs.len(),
                    max: max_release,
                });
            }
            DataFrame::Release(refs)
        }
        TAG_RETIRE => DataFrame::Retire { id: whole(rest)? },
        TAG_GOODBYE | TAG_STATS_REQUEST if !rest.is_empty() => {
            return Err(DecodeError::TrailingBytes(rest.len()));
        }
        TAG_GOODBYE => DataFrame::Goodbye,
        TAG_STATS_REQUEST => DataFrame::StatsRequest,
        TAG_STATS => {
            let stats: DataStats = whole(rest)?;
            check_app_counters(&stats.app)?;
            DataFrame::Stats(stats)
        }
        TAG_LAST => DataFrame::Last(whole(rest)?),
        other => return Err(DecodeError::UnknownTag(other)),
    };
    Ok((frame, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(f: DataFrame, payload: &[u8]) {
        let bytes = encode_data(&f, payload);
        let pooled = matches!(MessageRef::of(&bytes), Some(MessageRef::Pooled { .. }));
        assert_eq!(MessageRef::is_pooled(&bytes), pooled, "{f:?}");
        let (back, start) = decode_data(&bytes, 255, 1024).expect("decodes");
        assert_eq!(back, f);
        assert_eq!(
            &bytes[start..],
            if matches!(f, DataFrame::Inline(_)) {
                payload
            } else {
                &[]
            }
        );
    }

    #[test]
    fn a_header_is_the_same_bytes_through_serde_and_bincodes_own_codec() {
        let edges = [
            0,
            1,
            250,
            251,
            252,
            1 << 16,
            (1 << 16) - 1,
            1 << 32,
            u64::MAX,
        ];
        for topic in [0, 1, 250, 251, 1 << 16, u32::MAX] {
            for seq in edges {
                let h = MessageHeader { topic, seq };
                let mut native = Vec::new();
                header_into(h, &mut native);
                let serde =
                    bincode::serde::encode_to_vec(h, bincode::config::standard()).expect("encodes");
                assert_eq!(native, serde, "{h:?}");
                assert_eq!(header_prefix(&native), Ok((h, native.len())));
                assert_eq!(value::<MessageHeader>(&native, true), Ok((h, native.len())));
            }
        }
        assert_eq!(header_prefix(&[252, 1]), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn an_inline_head_is_the_encoded_records_start() {
        let headers = [(0, 0), (1, 250), (251, 1 << 16), (u32::MAX, u64::MAX)];
        for (topic, seq) in headers {
            for len in [0, 1, 4096] {
                let header = MessageHeader { topic, seq };
                let payload = vec![3; len];
                let (head, start) = inline_head(header, len);
                let mut record = head[start..].to_vec();
                record.extend_from_slice(&payload);
                assert_eq!(record, encode_data(&DataFrame::Inline(header), &payload));
            }
        }
    }

    #[test]
    fn every_data_frame_round_trips() {
        let h = MessageHeader {
            topic: 3,
            seq: u64::MAX,
        };
        let node = NodeId::new(9).expect("non-zero");
        let stats = DataStats {
            published: vec![TopicStats {
                topic: "t".into(),
                peer: Some(node),
                messages: 4,
                ..Default::default()
            }],
            received: vec![],
            rejected: 2,
            guard: GuardStats {
                accept_paused: 1,
                pending_refused: 2,
                handshake_expired: 3,
                oversized: 4,
            },
            witness: WitnessStats {
                on: true,
                docs: 5,
                bytes: 6,
                not_kept: 7,
            },
            app: vec![AppCounter::new("exported", 8)],
        };
        for (f, payload) in [
            (
                DataFrame::Hello {
                    publisher: node,
                    rings: false,
                },
                &b""[..],
            ),
            (
                DataFrame::Terms {
                    topic: "t".into(),
                    policy: Policy::Block { timeout_ms: 5 },
                    depth: 64,
                },
                b"",
            ),
            (
                DataFrame::Topic {
                    id: 1,
                    topic: "frames".into(),
                },
                b"",
            ),
            (DataFrame::Inline(h), b"payload bytes"),
            (DataFrame::Inline(h), b""),
            (
                DataFrame::Fresh {
                    header: h,
                    len: 1 << 40,
                },
                b"",
            ),
            (
                DataFrame::Segment {
                    id: 7,
                    size: 1 << 20,
                },
                b"",
            ),
            (
                DataFrame::Pooled {
                    header: h,
                    segment: 7,
                    offset: 4096,
                    len: 100,
                },
                b"",
            ),
            (
                DataFrame::Release(vec![SlotRef {
                    segment: 7,
                    offset: 0,
                }]),
                b"",
            ),
            (DataFrame::Retire { id: 7 }, b""),
            (DataFrame::Goodbye, b""),
            (DataFrame::Last(MessageHeader { topic: 3, seq: 9 }), b""),
            (DataFrame::StatsRequest, b""),
            (DataFrame::Stats(stats), b""),
        ] {
            roundtrip(f, payload);
        }
    }

    #[test]
    fn bad_records_are_typed_errors() {
        assert_eq!(
            decode_data(&[1, 0], 255, 8),
            Err(DecodeError::UnexpectedEnd)
        );
        assert!(matches!(
            decode_data(&[5, 0, 0, 0, 10], 255, 8),
            Err(DecodeError::Invalid(_))
        ));
        assert_eq!(
            decode_data(&[1, 0, 0, 0, 99], 255, 8),
            Err(DecodeError::UnknownTag(99))
        );
        let node = NodeId::new(1).expect("non-zero");
        let mut hello = encode_data(
            &DataFrame::Hello {
                publisher: node,
                rings: false,
            },
            b"",
        );
        hello[5] = 2;
        assert_eq!(
            decode_data(&hello, 255, 8),
            Err(DecodeError::UnsupportedVersion(2)),
            "the version before the rings' layout 2"
        );
        let long = encode_data(
            &DataFrame::Topic {
                id: 1,
                topic: "x".repeat(300),
            },
            b"",
        );
        assert!(matches!(
            decode_data(&long, 255, 8),
            Err(DecodeError::FieldTooLong { .. })
        ));
        let refs = vec![
            SlotRef {
                segment: 1,
                offset: 0
            };
            9
        ];
        let many = encode_data(&DataFrame::Release(refs), b"");
        assert!(matches!(
            decode_data(&many, 255, 8),
            Err(DecodeError::FieldTooLong { .. })
        ));
    }

    /// A message as the serde path reads it: its header, and its inline payload or its pool
    /// range (segment, offset, length).
    type Read<'a> = (MessageHeader, Result<&'a [u8], (u64, u64, u64)>);

    /// What [`MessageRef::of`] read before it had its own parse: the serde path, as
    /// [`decode_data`] read every field then.
    fn read_through_serde(record: &[u8]) -> Option<Read<'_>> {
        let len = u32::from_le_bytes(record.get(..HEADER)?.try_into().ok()?) as usize;
        if len != record.len() - HEADER {
            return None;
        }
        let (&tag, body) = record[HEADER..].split_first()?;
        if tag == TAG_INLINE {
            let (header, used) = value::<MessageHeader>(body, true).ok()?;
            return Some((header, Ok(&body[used..])));
        }
        let (header, segment, offset, len) = (tag == TAG_POOLED).then(|| whole(body).ok())??;
        Some((header, Err((segment, offset, len))))
    }

    /// [`MessageRef::of`]'s answer in [`read_through_serde`]'s terms.
    fn read(record: &[u8]) -> Option<Read<'_>> {
        Some(match MessageRef::of(record)? {
            MessageRef::Inline { header, payload } => (header, Ok(payload)),
            MessageRef::Pooled {
                header,
                segment,
                offset,
                len,
            } => (header, Err((segment, offset, len))),
        })
    }

    /// A message record, or one spoilt: cut short, a byte changed, bytes added (its length
    /// header fixed or not), or bytes from nowhere.
    fn records() -> impl Strategy<Value = Vec<u8>> {
        let edge = prop_oneof![
            Just(0u64),
            Just(250),
            Just(251),
            Just(1 << 16),
            Just(u64::MAX),
            any::<u64>()
        ];
        let header =
            (any::<u32>(), edge.clone()).prop_map(|(topic, seq)| MessageHeader { topic, seq });
        let message = prop_oneof![
            (header.clone(), prop::collection::vec(any::<u8>(), 0..40))
                .prop_map(|(h, payload)| encode_data(&DataFrame::Inline(h), &payload)),
            (header, edge.clone(), edge.clone(), edge).prop_map(
                |(header, segment, offset, len)| {
                    let frame = DataFrame::Pooled {
                        header,
                        segment,
                        offset,
                        len,
                    };
                    encode_data(&frame, &[])
                }
            ),
        ];
        let spoil = (
            0usize..6,
            any::<prop::sample::Index>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 1..4),
        );
        prop_oneof![
            3 => (message, spoil).prop_map(|(mut r, (how, at, byte, more))| {
                let i = at.index(r.len());
                match how {
                    0 => r.truncate(i),
                    1 => r[i] ^= byte | 1,
                    2 | 3 => {
                        r.extend_from_slice(&more);
                        if how == 3 {
                            let len = (r.len() - HEADER) as u32;
                            r[..HEADER].copy_from_slice(&len.to_le_bytes());
                        }
                    }
                    _ => {}
                }
                r
            }),
            1 => prop::collection::vec(any::<u8>(), 0..24),
        ]
    }

    proptest! {
        #[test]
        fn a_message_record_reads_as_the_frame_decoder_reads_it(record in records()) {
            let of = MessageRef::of(&record);
            prop_assert_eq!(read(&record), read_through_serde(&record));
            let decoded = decode_data(&record, 255, 8);
            match of {
                Some(MessageRef::Inline { header, payload }) => {
                    let (frame, start) = decoded.expect("decodes");
                    prop_assert_eq!(frame, DataFrame::Inline(header));
                    prop_assert_eq!(&record[start..], payload);
                }
                Some(MessageRef::Pooled { header, segment, offset, len }) => {
                    let frame = DataFrame::Pooled { header, segment, offset, len };
                    prop_assert_eq!(decoded, Ok((frame, record.len())));
                }
                None => {
                    let message = matches!(
                        decoded,
                        Ok((DataFrame::Inline(_) | DataFrame::Pooled { .. }, _))
                    );
                    prop_assert!(!message, "{:?}", decoded);
                }
            }
        }
    }
}
