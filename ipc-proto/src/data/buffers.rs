//! The byte buffers the data plane reuses: a message's record is encoded into one that a
//! sent record or an inline payload left, not into a new allocation, and a publisher's next
//! inline payload can be written into one ([`DataPlane::spare_buffer`]).
//!
//! At 4 KiB a message's buffers cost more than the rest of its way through the machine:
//! allocating and zeroing the payload, allocating the record (both sizes above the
//! allocator's per-thread caches), and freeing both again.
//!
//! [`DataPlane::spare_buffer`]: super::DataPlane::spare_buffer

use super::options::DEFAULT_INLINE_MAX;
use crate::wire::INLINE_OVERHEAD;

/// Buffers kept: a publish takes one per subscriber and gives the payload's back, and the
/// driver gives each record back once sent.
pub(super) const KEEP: usize = 4;

/// The largest buffer kept: a default inline message's record. Larger ones are freed (a
/// node that sent one big record does not hold its memory).
pub(super) const MAX_KEPT: usize = DEFAULT_INLINE_MAX + INLINE_OVERHEAD;

/// At most [`KEEP`] buffers of at most [`MAX_KEPT`] bytes each, contents left as they were.
#[derive(Debug, Default)]
pub(super) struct Buffers {
    spare: Vec<Vec<u8>>,
}

impl Buffers {
    /// Keeps `buf` if there is room for it and it is not too large; else frees it.
    pub(super) fn put(&mut self, buf: Vec<u8>) {
        if self.spare.len() < KEEP && buf.capacity() > 0 && buf.capacity() <= MAX_KEPT {
            self.spare.push(buf);
        }
    }

    /// A kept buffer (its bytes are old), or none.
    pub(super) fn take(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// A kept buffer, or a new empty one.
    pub(super) fn take_or_new(&mut self) -> Vec<u8> {
        self.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_few_small_buffers_and_frees_the_rest() {
        let mut b = Buffers::default();
        b.put(Vec::new());
        assert!(b.take().is_none(), "an empty buffer is not worth keeping");
        b.put(Vec::with_capacity(MAX_KEPT + 1));
        assert!(b.take().is_none(), "a large buffer is freed");
        for i in 0..=KEEP {
            b.put(vec![u8::try_from(i).unwrap(); 64]);
        }
        let kept: Vec<u8> = std::iter::from_fn(|| b.take()).map(|v| v[0]).collect();
        assert_eq!(kept, [3, 2, 1, 0], "the first {KEEP}, last in first out");
        assert!(b.take_or_new().is_empty());
    }
}
