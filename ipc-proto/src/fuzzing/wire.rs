//! The topology wire targets: [`decode`] and its helpers.

use arbitrary::{Arbitrary, Unstructured};

use crate::error::DecodeError;
use crate::topology::{Change, Record};
use crate::wire::{self, Deframer, Frame, Limits, OwnChange};

use super::common::{HEADER, fold};

/// The `decode` target: [`decode_bytes`], then [`frame_roundtrip`] on the same bytes.
pub fn decode(data: &[u8]) {
    decode_bytes(data);
    frame_roundtrip(data);
}

/// Raw bytes never panic the codec: [`wire::decode`] of the bytes, and a [`Deframer`] fed them
/// whole, byte by byte and in chunks of other sizes, under the default limits and tiny ones.
///
/// Also: a frame that decodes re-encodes to bytes that decode to it; every chunking yields the
/// same frames and the same error; the deframer yields nothing after an error and never holds
/// more than one frame once drained. Needs nothing of `arbitrary`.
pub fn decode_bytes(data: &[u8]) {
    for limits in [Limits::default(), tiny_limits()] {
        if let Ok(frame) = wire::decode(data, &limits) {
            let again = wire::encode(&frame);
            assert_eq!(
                wire::decode(&again[HEADER..], &limits),
                Ok(frame),
                "a decoded frame re-encodes to itself"
            );
        }
        let whole = deframe(data, &limits, &mut std::iter::once(data.len().max(1)));
        let bytewise = deframe(data, &limits, &mut std::iter::repeat(1));
        assert_eq!(whole, bytewise, "byte-by-byte chunking");
        let mut cuts = data.iter().map(|&b| 1 + usize::from(b % 13)).cycle();
        let chunked = deframe(data, &limits, &mut cuts);
        assert_eq!(whole, chunked, "chunking by the input's own bytes");
    }
}

/// An arbitrary [`Frame`] round-trips: `decode(encode(frame)) == Ok(frame)` when the frame is
/// within the limits, and a field error (too long, empty topic) when it is not; a stream of it,
/// in chunks, yields it.
pub fn frame_roundtrip(data: &[u8]) {
    let Ok(frame) = Frame::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let bytes = wire::encode(&frame);
    let announced = u32::from_le_bytes(bytes[..HEADER].try_into().expect("a 4-byte header"));
    assert_eq!(
        announced as usize,
        bytes.len() - HEADER,
        "the length header"
    );
    for limits in [Limits::default(), tiny_limits()] {
        let got = wire::decode(&bytes[HEADER..], &limits);
        if !within_limits(&frame, &limits) {
            match got {
                Err(DecodeError::FieldTooLong { .. }) => {}
                Err(DecodeError::Invalid(msg)) if msg == "empty topic name" => {}
                other => panic!("{frame:?} breaks the limits but decodes as {other:?}"),
            }
            continue;
        }
        assert_eq!(got.as_ref(), Ok(&frame), "decode(encode(frame))");
        if bytes.len() - HEADER <= limits.max_frame {
            let stream = [&bytes[..], &bytes[..]].concat();
            let mut cuts = data.iter().map(|&b| 1 + usize::from(b % 7)).cycle();
            let frames = deframe(&stream, &limits, &mut cuts);
            assert_eq!(
                frames,
                [Ok(frame.clone()), Ok(frame.clone())],
                "a stream of it"
            );
        }
    }
}

/// Limits small enough that fuzzed frames hit them.
fn tiny_limits() -> Limits {
    Limits {
        max_frame: 64,
        max_name: 3,
        max_topics_per_node: 4,
        max_history: 8,
        ..Limits::default()
    }
}

/// Feeds `data` to a deframer in chunks of the sizes `cuts` gives, draining after each, and
/// checks the deframer's own guarantees on the way.
fn deframe(
    data: &[u8],
    limits: &Limits,
    cuts: &mut dyn Iterator<Item = usize>,
) -> Vec<Result<Frame, DecodeError>> {
    let mut d = Deframer::new(limits.clone());
    let mut got = Vec::new();
    let mut rest = data;
    loop {
        while let Some(r) = d.next_frame() {
            assert!(
                got.last().is_none_or(Result::is_ok),
                "a failed deframer yields nothing more"
            );
            got.push(r);
        }
        if got.last().is_some_and(Result::is_err) {
            assert_eq!(d.buffered(), 0, "a failed deframer holds nothing");
        }
        assert!(
            d.buffered() < limits.max_frame + HEADER,
            "a drained deframer holds less than one frame"
        );
        if rest.is_empty() {
            return got;
        }
        let n = cuts.next().unwrap_or(rest.len()).clamp(1, rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
    }
}

/// Whether `frame` satisfies `limits`: an oracle written apart from the codec's own check.
fn within_limits(frame: &Frame, limits: &Limits) -> bool {
    let name = |s: &str| s.len() <= limits.max_name;
    let topic = |s: &str| !s.is_empty() && name(s);
    let own = |c: &OwnChange| match c {
        OwnChange::Announce { topic: t, mime } => topic(t) && name(mime),
        other => topic(other.topic()),
    };
    let record = |r: &Record| match &r.change {
        Change::Join(info) => name(&info.name) && name(&info.data_addr),
        Change::Leave(_) => true,
        Change::Announce { topic: t, mime, .. } => topic(t) && name(mime),
        Change::Retract { topic: t, .. }
        | Change::Subscribe { topic: t, .. }
        | Change::Unsubscribe { topic: t, .. } => topic(t),
    };
    match frame {
        Frame::Hello(h) => h
            .member
            .as_ref()
            .is_none_or(|i| name(&i.name) && name(&i.data_addr)),
        Frame::History(rs) | Frame::Snapshot(rs) | Frame::Minted(rs) | Frame::Relayed(rs) => {
            rs.iter().all(record)
        }
        Frame::Own(cs) => cs.iter().all(own),
        Frame::Change(c) => own(c),
        Frame::IntroEnd
        | Frame::Heartbeat
        | Frame::Goodbye(_)
        | Frame::Welcome(_)
        | Frame::SnapshotEnd(_)
        | Frame::Horizon(_)
        // Its contents are the document machines' to check; its size, the deframer's.
        | Frame::DocReady
        | Frame::Doc(_) => true,
    }
}

/// Makes `frame` satisfy `limits` (long strings cut, empty topics named) and folds its node ids
/// into `1..=8`, so that the frames of one input talk about the same few nodes.
pub fn sanitize(frame: &mut Frame, limits: &Limits) {
    let max = limits.max_name;
    let fit = |s: &mut String| {
        while s.len() > max {
            s.pop();
        }
    };
    let topic = |s: &mut String| {
        fit(s);
        if s.is_empty() {
            s.push('t');
        }
    };
    let own = |c: &mut OwnChange| match c {
        OwnChange::Announce { topic: t, mime } => {
            topic(t);
            fit(mime);
        }
        OwnChange::Retract { topic: t }
        | OwnChange::Subscribe { topic: t }
        | OwnChange::Unsubscribe { topic: t } => topic(t),
    };
    let record = |r: &mut Record| match &mut r.change {
        Change::Join(info) => {
            info.id = fold(info.id);
            fit(&mut info.name);
            fit(&mut info.data_addr);
        }
        Change::Leave(node) => *node = fold(*node),
        Change::Announce {
            node,
            topic: t,
            mime,
        } => {
            *node = fold(*node);
            topic(t);
            fit(mime);
        }
        Change::Retract { node, topic: t }
        | Change::Subscribe { node, topic: t }
        | Change::Unsubscribe { node, topic: t } => {
            *node = fold(*node);
            topic(t);
        }
    };
    match frame {
        Frame::Hello(h) => {
            if let Some(info) = &mut h.member {
                info.id = fold(info.id);
                fit(&mut info.name);
                fit(&mut info.data_addr);
            }
        }
        Frame::History(rs) | Frame::Snapshot(rs) | Frame::Minted(rs) | Frame::Relayed(rs) => {
            rs.iter_mut().for_each(record);
        }
        Frame::Own(cs) => cs.iter_mut().for_each(own),
        Frame::Change(c) => own(c),
        Frame::Welcome(w) => w.hub = fold(w.hub),
        Frame::Doc(d) => d.truncate(limits.max_frame.saturating_sub(1)),
        Frame::IntroEnd
        | Frame::Heartbeat
        | Frame::Goodbye(_)
        | Frame::SnapshotEnd(_)
        | Frame::Horizon(_)
        | Frame::DocReady => {}
    }
}

/// The encoded `frame`, after [`sanitize`].
pub(super) fn valid_bytes(mut frame: Frame, limits: &Limits) -> Vec<u8> {
    sanitize(&mut frame, limits);
    wire::encode(&frame)
}
