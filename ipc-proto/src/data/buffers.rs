//! The byte buffers the data plane reuses: a message's record is encoded into one that a
//! sent record or an inline payload left, not into a new allocation, and a publisher's next
//! inline payload can be written into one ([`DataPlane::spare_buffer`]). On the receiving
//! side, an inline payload is copied into the buffer of one the application dropped
//! ([`Payloads`]).
//!
//! At 4 KiB a message's buffers cost more than the rest of its way through the machine:
//! allocating and zeroing the payload, allocating the record (both sizes above the
//! allocator's per-thread caches), and freeing both again.
//!
//! [`DataPlane::spare_buffer`]: super::DataPlane::spare_buffer

use std::collections::VecDeque;
use std::sync::Arc;

use super::options::DEFAULT_INLINE_MAX;
use crate::ring::link::LINK_INLINE_MAX;
use crate::wire::INLINE_OVERHEAD;

/// Buffers kept: a publish takes one per subscriber and gives an owned inline payload's back
/// (a borrowed one has none to give), and the driver gives each record back once sent.
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

/// Smallest inline payload whose buffer is always watched for reuse ([`Payloads`]). A smaller
/// one is watched only in a steady stream, when the small payload before it had its length:
/// a small buffer comes from the allocator's per-thread cache, and a stream of small payloads
/// of many lengths, which would find no buffer of its length to write again, would pay the
/// watch for nothing. A steady one saves its allocation, zeroing and freeing: the echo side
/// of a spinning 64 B round trip ran about 240 instructions fewer per message (of about
/// 5,300; callgrind), though its time did not move beyond the noise (faster in 23 of 44
/// alternated runs, medians within 1 %; AMD EPYC VM, 2026-12-07): the allocator's cache is
/// fast, and the watch's reference counts are atomic operations.
pub(super) const REUSE_MIN: usize = 512;

/// Fewest buffers [`Payloads`] watches: as many as a subscription of the default depth (64)
/// holds.
pub(super) const WATCHED: usize = 64;

/// Most buffers [`Payloads`] watches, however deep the subscriptions.
pub(super) const MAX_WATCHED: usize = 1024;

/// Buffers watched beyond what the subscriptions' queues hold: the messages the application
/// still holds or has not dropped yet.
pub(super) const WATCH_SLACK: usize = 16;

/// Bytes watched per buffer watched (and kept alive once the application has dropped them):
/// a ring's largest inline payload, [`LINK_INLINE_MAX`].
pub(super) const WATCHED_BYTES_EACH: usize = LINK_INLINE_MAX as usize;

/// The buffers of the inline payloads this node received (or delivered to itself), written
/// again once the application has dropped them: a subscriber of a steady stream allocates none per message.
///
/// Each inline message's payload is an `Arc<[u8]>` handed to the application; the last ones
/// of at least [`REUSE_MIN`] bytes (or of a steady stream of smaller ones of one length) are
/// watched, oldest first: as many as the subscriptions'
/// queues hold and [`WATCH_SLACK`] more ([`Self::expect`]), at least [`WATCHED`] and at most
/// [`MAX_WATCHED`], of at most [`WATCHED_BYTES_EACH`] bytes each on average. The next payload
/// of the oldest one's length is written into it if nothing else holds it any more
/// ([`Arc::get_mut`]: the application dropped its message); if the application still holds
/// it, a new buffer is allocated, as it was without this. Messages are mostly dropped in the
/// order they came, so the oldest is the one to look at.
///
/// Without it, a burst of 4 KiB messages read at once (a ring holds 64) and dropped by the
/// application after was allocated and freed again every time: glibc gives the top of its
/// heap back to the kernel once more than 128 KiB are free there, and the next burst faulted
/// the pages in again (inline 4 KiB stream: 1.84 M -> 1.96 M messages/s, no page faults
/// left; AMD EPYC VM, 2026-12-06). The watch follows the subscriptions' depth: with a fixed
/// 64, a subscription 256 deep held more buffers than were watched, and its stream of 4 KiB
/// messages faulted 26,000 pages in per 300,000 messages again (Intel Xeon VM, 2026-12-07:
/// 0.78 M messages/s; 0.93 M and 500 faults with the watch at its depth). The price: up to
/// [`WATCHED_BYTES_EACH`] per buffer watched (256 KiB at the fewest, 4 MiB at
/// [`MAX_WATCHED`]) stay allocated after a stream stops, until later payloads take their
/// place or the subscriptions go.
#[derive(Debug)]
pub(super) struct Payloads {
    watched: VecDeque<Arc<[u8]>>,
    bytes: usize,
    /// The bound [`Self::expect`] set, in buffers (their bytes: [`Self::max_bytes`]).
    max: usize,
    /// The length of the last payload under [`REUSE_MIN`] bytes (0: none yet): a small payload
    /// of the same length is watched (a steady stream), one of another length is not.
    last_small: usize,
}

impl Default for Payloads {
    fn default() -> Self {
        Self {
            watched: VecDeque::new(),
            bytes: 0,
            max: WATCHED,
            last_small: 0,
        }
    }
}

impl Payloads {
    /// The subscriptions' queues hold up to `held` messages in all: watch that many buffers
    /// and [`WATCH_SLACK`] more (within [`WATCHED`] and [`MAX_WATCHED`]). Fewer than are
    /// watched: the oldest are let go.
    pub(super) fn expect(&mut self, held: usize) {
        self.max = held.saturating_add(WATCH_SLACK).clamp(WATCHED, MAX_WATCHED);
        self.trim();
    }

    /// Most bytes in the buffers watched: [`WATCHED_BYTES_EACH`] per buffer watched.
    fn max_bytes(&self) -> usize {
        self.max * WATCHED_BYTES_EACH
    }

    /// A payload holding a copy of `bytes`: a watched buffer nothing else holds, or a new one.
    pub(super) fn copy_of(&mut self, bytes: &[u8]) -> Arc<[u8]> {
        let payload = match self.reclaim(bytes.len()) {
            Some(mut buf) => {
                Arc::get_mut(&mut buf)
                    .expect("nothing else holds a reclaimed buffer")
                    .copy_from_slice(bytes);
                buf
            }
            None => Arc::from(bytes),
        };
        self.keep(&payload);
        payload
    }

    /// A buffer of `len` bytes for a payload to be written in (see [`PayloadBuffer`]), nothing
    /// else holding it: the oldest watched one if it is free and that long (no longer
    /// watched: [`Self::keep`] watches it again once written), else a new one.
    ///
    /// [`PayloadBuffer`]: super::PayloadBuffer
    pub(super) fn buffer(&mut self, len: usize) -> Arc<[u8]> {
        self.reclaim(len)
            .unwrap_or_else(|| std::iter::repeat_n(0, len).collect())
    }

    /// The oldest watched buffer, out of the watch, if it is `len` bytes long (and at least
    /// [`REUSE_MIN`], or the length of a steady stream's small payloads) and nothing else
    /// holds it any more.
    fn reclaim(&mut self, len: usize) -> Option<Arc<[u8]>> {
        if len < REUSE_MIN && len != self.last_small {
            return None;
        }
        let oldest = self.watched.front_mut()?;
        if oldest.len() != len || Arc::get_mut(oldest).is_none() {
            return None;
        }
        self.bytes -= len;
        self.watched.pop_front()
    }

    /// A payload written into a [`Self::buffer`], handed on: watched as [`Self::copy_of`]
    /// watches the payloads it makes.
    pub(super) fn keep(&mut self, payload: &Arc<[u8]>) {
        let len = payload.len();
        if len >= REUSE_MIN || std::mem::replace(&mut self.last_small, len) == len {
            self.watch(Arc::clone(payload));
        }
    }

    fn watch(&mut self, payload: Arc<[u8]>) {
        if payload.len() > self.max_bytes() {
            return;
        }
        self.bytes += payload.len();
        self.watched.push_back(payload);
        self.trim();
    }

    /// Lets the oldest watched buffers go while over a bound.
    fn trim(&mut self) {
        while self.watched.len() > self.max || self.bytes > self.max_bytes() {
            let Some(dropped) = self.watched.pop_front() else {
                break;
            };
            self.bytes -= dropped.len();
        }
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

    #[test]
    fn a_payload_the_application_dropped_is_written_again() {
        let mut p = Payloads::default();
        let first = p.copy_of(&[1; REUSE_MIN]);
        let ptr = first.as_ptr();
        let held = p.copy_of(&[2; REUSE_MIN]);
        assert_ne!(held.as_ptr(), ptr);
        drop(first);
        // The oldest, dropped: written again, in place.
        let again = p.copy_of(&[3; REUSE_MIN]);
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(again[..], [3; REUSE_MIN]);
        // The oldest now is `held`, still held: a new buffer, and `held` keeps its bytes.
        let other = p.copy_of(&[4; REUSE_MIN]);
        assert_ne!(other.as_ptr(), held.as_ptr());
        assert_eq!(held[..], [2; REUSE_MIN]);
        // A copy of a message holds it too.
        let copy = Arc::clone(&again);
        drop(again);
        drop(held);
        let next = p.copy_of(&[5; REUSE_MIN]);
        assert_eq!(copy[..], [3; REUSE_MIN]);
        assert_ne!(next.as_ptr(), copy.as_ptr());
    }

    #[test]
    fn only_a_payload_of_the_same_length_is_written_again() {
        let mut p = Payloads::default();
        let ptr = p.copy_of(&[1; REUSE_MIN + 1]).as_ptr();
        let other = p.copy_of(&[2; REUSE_MIN]);
        assert_ne!(other.as_ptr(), ptr);
        assert_eq!(other[..], [2; REUSE_MIN]);
        // A small payload of a length not seen just before is not watched: the one above is
        // still the oldest.
        drop(p.copy_of(&[0; REUSE_MIN - 1]));
        assert_eq!(p.copy_of(&[3; REUSE_MIN + 1]).as_ptr(), ptr);
    }

    /// Small payloads: a steady stream of one length writes its buffers again, as large ones
    /// do; a stream of many lengths (none like the one before) watches none.
    #[test]
    fn a_steady_stream_of_small_payloads_writes_its_buffers_again() {
        let mut p = Payloads::default();
        drop(p.copy_of(&[0; 64]));
        assert!(p.watched.is_empty(), "no length before the first");
        drop(p.copy_of(&[1; 64]));
        assert_eq!(p.watched.len(), 1, "the length before it");
        // The watch holds it: a new allocation could not be at its address.
        let ptr = p.watched[0].as_ptr();
        for i in 2..100u8 {
            let msg = p.copy_of(&[i; 64]);
            assert_eq!(
                msg.as_ptr(),
                ptr,
                "written into the buffer dropped before it"
            );
            assert_eq!(msg[..], [i; 64]);
        }
        assert_eq!(p.watched.len(), 1);
        let mut p = Payloads::default();
        for len in (1..100).chain(1..100) {
            let msg = p.copy_of(&vec![7; len]);
            assert_eq!(msg.len(), len);
        }
        assert!(p.watched.is_empty(), "lengths that change watch nothing");
        // A steady stream that changes its length: the old length's buffers are let go as
        // the new length's come (the bound), none written with the wrong length.
        let mut p = Payloads::default();
        let held: Vec<_> = (0..2 * WATCHED).map(|_| p.copy_of(&[1; 32])).collect();
        drop(held);
        for _ in 0..2 * WATCHED {
            assert_eq!(p.copy_of(&[2; 48])[..], [2; 48]);
        }
        assert!(p.watched.iter().all(|b| b.len() == 48));
    }

    /// A subscription deeper than the default holds more payloads at once than the fewest
    /// watched: the watch follows the queues' depth, so that a steady stream of ring-sized
    /// messages, each dropped `depth` messages later, allocates no buffer once it runs.
    #[test]
    fn the_watch_follows_the_subscriptions_depth() {
        let depth = 256;
        let mut p = Payloads::default();
        p.expect(depth);
        let msg = [7u8; WATCHED_BYTES_EACH];
        let mut held: VecDeque<_> = (0..depth).map(|_| p.copy_of(&msg)).collect();
        let first: std::collections::BTreeSet<_> = held.iter().map(|b| b.as_ptr()).collect();
        for _ in 0..4 * depth {
            drop(held.pop_front());
            let next = p.copy_of(&msg);
            assert!(first.contains(&next.as_ptr()), "a new buffer");
            held.push_back(next);
        }
        // Back to the default depth: the oldest go, down to its depth and the slack.
        p.expect(64);
        assert_eq!(p.watched.len(), 64 + WATCH_SLACK);
        assert!(p.bytes <= p.max_bytes());
        p.expect(usize::MAX);
        assert_eq!(p.max, MAX_WATCHED);
    }

    #[test]
    fn watched_payloads_are_bounded_in_number_and_bytes() {
        let mut p = Payloads::default();
        // Held: each one a new buffer.
        let held: Vec<_> = (0..2 * WATCHED)
            .map(|_| p.copy_of(&[0; REUSE_MIN]))
            .collect();
        assert_eq!(p.watched.len(), WATCHED);
        let watched: Vec<_> = held[WATCHED..].iter().map(|b| b.as_ptr()).collect();
        drop(held);
        // Dropped: the watched ones are written again, oldest first, and nothing new is kept.
        for i in 0..3 * WATCHED {
            assert_eq!(p.copy_of(&[0; REUSE_MIN]).as_ptr(), watched[i % WATCHED]);
        }
        assert_eq!(p.watched.len(), WATCHED);
        let max_bytes = p.max_bytes();
        assert_eq!(max_bytes, 256 << 10, "64 messages of 4 KiB, a ring's worth");
        let big = max_bytes / 3;
        let held: Vec<_> = (0..4).map(|_| p.copy_of(&vec![1; big])).collect();
        assert!(p.bytes <= max_bytes, "{} bytes watched", p.bytes);
        assert_eq!(p.bytes, p.watched.iter().map(|b| b.len()).sum::<usize>());
        assert!(p.watched.len() <= 3);
        drop(held);
        // Larger than the bound: never watched.
        drop(p.copy_of(&vec![2; max_bytes + 1]));
        assert!(p.watched.iter().all(|b| b.len() <= big));
    }
}
