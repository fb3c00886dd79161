//! The data wire target: [`data_decode`](fn@super::data_decode) and its helpers.

use arbitrary::{Arbitrary, Unstructured};

use crate::data::DataLimits;
use crate::error::DecodeError;
use crate::wire::{DataFrame, decode_data, encode_data};

use super::common::{HEADER, POOL_BASE, fold};

/// The `data_decode` target: [`data_decode_bytes`], then [`data_frame_roundtrip`] on the same
/// bytes.
pub fn data_decode(data: &[u8]) {
    data_decode_bytes(data);
    data_frame_roundtrip(data);
}

/// Data-plane limits small enough that fuzzed frames and links hit them.
pub fn tiny_data_limits() -> DataLimits {
    DataLimits {
        max_name: 3,
        max_topics: 2,
        max_segments: 2,
        max_release: 2,
        max_record: 256,
        max_unverified: 2,
        max_unverified_bytes: 512,
    }
}

/// The bounds [`decode_data`] takes, `(max_name, max_release)`: the default limits' and
/// [`tiny_data_limits`]'.
fn data_bounds() -> [(usize, usize); 2] {
    [DataLimits::default(), tiny_data_limits()].map(|l| (l.max_name, l.max_release))
}

/// Raw bytes as one data-link record never panic [`decode_data`], under the default limits and
/// tiny ones.
///
/// Also: a record that decodes is within the limits, carries a payload only if it is an inline
/// message, and re-encodes (with that payload) to a record that decodes to the same frame and
/// payload. Needs nothing of `arbitrary`.
pub fn data_decode_bytes(data: &[u8]) {
    for (max_name, max_release) in data_bounds() {
        let Ok((frame, start)) = decode_data(data, max_name, max_release) else {
            continue;
        };
        assert!(
            (HEADER + 1..=data.len()).contains(&start),
            "{frame:?}: payload from {start} in a record of {} bytes",
            data.len()
        );
        if !matches!(frame, DataFrame::Inline(_)) {
            assert_eq!(start, data.len(), "{frame:?}: a payload after a frame");
        }
        assert_eq!(
            data_breach(&frame, max_name, max_release),
            None,
            "{frame:?} decodes but breaks the limits"
        );
        let payload = &data[start..];
        let again = encode_data(&frame, payload);
        let (back, at) = decode_data(&again, max_name, max_release)
            .unwrap_or_else(|e| panic!("{frame:?} re-encodes to a record that fails: {e}"));
        assert_eq!(back, frame, "a decoded frame re-encodes to itself");
        assert_eq!(&again[at..], payload, "and keeps its payload");
    }
}

/// An arbitrary [`DataFrame`], with the rest of the input as its payload, round-trips:
/// `decode_data(encode_data(frame, payload))` is `Ok((frame, start))` with `record[start..]`
/// the payload for [`DataFrame::Inline`] (and empty for any other frame) when the frame is
/// within the limits, and the typed error naming the field, its length and the limit when it
/// is not.
pub fn data_frame_roundtrip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(frame) = DataFrame::arbitrary(&mut u) else {
        return;
    };
    let payload = u.take_rest();
    let bytes = encode_data(&frame, payload);
    let announced = u32::from_le_bytes(bytes[..HEADER].try_into().expect("a 4-byte header"));
    assert_eq!(
        announced as usize,
        bytes.len() - HEADER,
        "the length header"
    );
    let carried: &[u8] = match frame {
        DataFrame::Inline(_) => payload,
        _ => &[],
    };
    for (max_name, max_release) in data_bounds() {
        let got = decode_data(&bytes, max_name, max_release);
        if let DataFrame::Stats(s) = &frame
            && counters_breach(&s.app)
        {
            assert!(
                matches!(
                    got,
                    Err(DecodeError::FieldTooLong { .. } | DecodeError::Invalid(_))
                ),
                "{frame:?} breaks the bounds of application counters: {got:?}"
            );
            continue;
        }
        if let Some((what, len, max)) = data_breach(&frame, max_name, max_release) {
            assert_eq!(
                got,
                Err(DecodeError::FieldTooLong { what, len, max }),
                "{frame:?} breaks the limits"
            );
            continue;
        }
        let (back, start) = got.unwrap_or_else(|e| panic!("{frame:?} does not decode: {e}"));
        assert_eq!(back, frame, "decode_data(encode_data(frame))");
        assert_eq!(&bytes[start..], carried, "the payload of {frame:?}");
    }
}

/// The limit `frame` breaks, as `(field, its length, the limit)`: an oracle written apart from
/// the codec's own check.
fn data_breach(
    frame: &DataFrame,
    max_name: usize,
    max_release: usize,
) -> Option<(&'static str, usize, usize)> {
    match frame {
        DataFrame::Terms { topic, .. } | DataFrame::Topic { topic, .. }
            if topic.is_empty() || topic.len() > max_name =>
        {
            Some(("topic name", topic.len(), max_name))
        }
        DataFrame::Release(refs) if refs.len() > max_release => {
            Some(("release", refs.len(), max_release))
        }
        _ => None,
    }
}

/// Whether application counters break their bounds (too many, a name empty, too long, not
/// printable ASCII or given twice): written apart from the codec's own check.
fn counters_breach(app: &[crate::wire::AppCounter]) -> bool {
    app.len() > crate::wire::MAX_APP_COUNTERS
        || app.iter().any(|c| {
            c.name.is_empty()
                || c.name.len() > crate::wire::MAX_COUNTER_NAME
                || c.name.chars().any(|ch| !(' '..='~').contains(&ch))
        })
        || app
            .iter()
            .enumerate()
            .any(|(i, c)| app[i + 1..].iter().any(|o| o.name == c.name))
}

/// Makes `frame` satisfy `limits` (topic names cut or named, releases cut) and folds its ids:
/// node ids into `1..=8`, topic ids into `0..4`, segment ids into `0..8`, so that the frames of
/// one input talk about the same few things. A release's segment ids fold into `1..=8`, where
/// the pool of [`data_ops`](crate::fuzzing::data_ops) numbers its segments.
pub fn sanitize_data(frame: &mut DataFrame, limits: &DataLimits) {
    let topic = |s: &mut String| {
        while s.len() > limits.max_name {
            s.pop();
        }
        if s.is_empty() {
            s.push('a');
        }
    };
    match frame {
        DataFrame::Hello { publisher, .. } => *publisher = fold(*publisher),
        DataFrame::Terms { topic: t, .. } => topic(t),
        DataFrame::Topic { id, topic: t } => {
            *id %= 4;
            topic(t);
        }
        DataFrame::Inline(header) | DataFrame::Fresh { header, .. } | DataFrame::Last(header) => {
            header.topic %= 4;
        }
        DataFrame::Pooled {
            header, segment, ..
        } => {
            header.topic %= 4;
            *segment %= 8;
        }
        DataFrame::Segment { id, .. } | DataFrame::Retire { id } => *id %= 8,
        DataFrame::Release(refs) => {
            refs.truncate(limits.max_release);
            for r in refs {
                r.segment = POOL_BASE + r.segment % 8;
            }
        }
        DataFrame::Goodbye | DataFrame::StatsRequest | DataFrame::Stats(_) => {}
    }
}
