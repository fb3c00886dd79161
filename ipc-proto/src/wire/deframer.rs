//! Cuts a byte stream, in any chunking, into frames.

use super::codec::{HEADER, decode};
use super::frame::Frame;
use super::limits::Limits;
use crate::error::DecodeError;

/// Reassembles frames from bytes that arrive in any chunking.
///
/// Holds at most one incomplete frame beyond what was pushed last; a frame's announced length
/// is checked against [`Limits::max_frame`] before its body is waited for. After an error the
/// stream cannot be trusted: the deframer stays failed and yields nothing more.
#[derive(Debug)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
    limits: Limits,
    failed: bool,
}

impl Deframer {
    /// A deframer enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            limits,
            failed: false,
        }
    }

    /// Adds bytes received from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// How many bytes wait for the rest of their frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, an error if the stream is broken, or `None` until more bytes
    /// arrive.
    pub fn next_frame(&mut self) -> Option<Result<Frame, DecodeError>> {
        if self.failed {
            return None;
        }
        let pending = &self.buf[self.start..];
        if pending.len() < HEADER {
            self.compact();
            return None;
        }
        let len = u32::from_le_bytes(pending[..HEADER].try_into().expect("HEADER bytes")) as usize;
        if len == 0 {
            return Some(self.fail(DecodeError::Empty));
        }
        if len > self.limits.max_frame {
            return Some(self.fail(DecodeError::TooLong {
                len,
                max: self.limits.max_frame,
            }));
        }
        if pending.len() < HEADER + len {
            self.compact();
            return None;
        }
        let result = decode(&pending[HEADER..HEADER + len], &self.limits);
        self.start += HEADER + len;
        if let Err(e) = result {
            return Some(self.fail(e));
        }
        Some(result)
    }

    fn fail(&mut self, e: DecodeError) -> Result<Frame, DecodeError> {
        self.failed = true;
        self.buf = Vec::new();
        self.start = 0;
        Err(e)
    }

    /// Moves an incomplete frame to the front so the buffer does not grow without bound.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::{OwnChange, encode_into};

    fn frames() -> Vec<Frame> {
        (0..20)
            .map(|i| match i % 3 {
                0 => Frame::Heartbeat,
                1 => Frame::Change(OwnChange::Subscribe {
                    topic: format!("topic-{i}"),
                }),
                _ => Frame::Own(vec![
                    OwnChange::Announce {
                        topic: "x".repeat(i),
                        mime: "m".into()
                    };
                    i
                ]),
            })
            .filter(|f| !matches!(f, Frame::Own(v) if v.is_empty()))
            .collect()
    }

    proptest! {
        #[test]
        fn any_chunking_yields_the_same_frames(cuts in prop::collection::vec(1usize..50, 1..40)) {
            let want = frames();
            let mut bytes = Vec::new();
            for f in &want {
                encode_into(f, &mut bytes);
            }
            let mut d = Deframer::new(Limits::default());
            let mut got = Vec::new();
            let mut rest = &bytes[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                d.push(&rest[..n]);
                rest = &rest[n..];
                i += 1;
                while let Some(f) = d.next_frame() {
                    got.push(f.expect("valid stream"));
                }
                prop_assert!(d.buffered() <= Limits::default().max_frame + HEADER);
            }
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn an_oversized_length_fails_before_buffering_the_body() {
        let mut d = Deframer::new(Limits {
            max_frame: 100,
            ..Limits::default()
        });
        d.push(&101u32.to_le_bytes());
        assert_eq!(
            d.next_frame(),
            Some(Err(DecodeError::TooLong { len: 101, max: 100 }))
        );
        d.push(&[0; 1000]);
        assert_eq!(d.next_frame(), None, "a failed stream yields nothing more");
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn a_zero_length_is_an_error() {
        let mut d = Deframer::new(Limits::default());
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Some(Err(DecodeError::Empty)));
    }
}
