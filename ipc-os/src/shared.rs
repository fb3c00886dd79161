//! Shared regions: a sealed memfd both processes map read-write and see as `&[SharedWord]`,
//! the memory of an `ipc_proto::ring`.
//!
//! The creator makes the memfd at its final size, maps it and seals it with
//! [`SealSet::SHARED`] (`SHRINK | GROW | SEAL`) before sending it; the receiver
//! [`open`](SharedRegion::open)s it only if those seals are there and the size is exactly the
//! one it expects, so neither side's mapping can ever lose its backing (no `SIGBUS`, see
//! [`memfd`](crate::memfd)) and neither side can be made to map more than it agreed to. The
//! words are handed out as atomics only; what they mean, and what to do when the peer writes
//! nonsense into them, is `ipc_proto::ring`'s business.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::memfd::{SealSet, Segment, SegmentError, SharedWords, verify};
pub use crate::word::{STRING_COPY_MIN, SharedWord};

/// A shared region mapped read-write: the memfd and its words.
#[derive(Debug)]
pub struct SharedRegion {
    words: SharedWords,
    fd: OwnedFd,
}

impl SharedRegion {
    /// Creates a memfd called `name` of `len` bytes (a non-zero multiple of 8), maps it and
    /// seals it with [`SealSet::SHARED`]: ready to send with [`Self::as_fd`]. Zero-filled.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        let segment = Segment::create(name, len)?;
        let words = segment.map_words()?;
        segment.seal(SealSet::SHARED)?;
        Ok(Self {
            words,
            fd: segment.into_fd(),
        })
    }

    /// Maps a region another process created and sent: only a memfd sealed with at least
    /// [`SealSet::SHARED`] (and not write-sealed) of exactly `len` bytes. On failure the fd is
    /// closed; a [`SegmentError`] comes back as `ErrorKind::InvalidData` carrying it.
    pub fn open(fd: OwnedFd, len: u64) -> io::Result<Self> {
        let verified = verify(fd, SealSet::SHARED, 0, len)?;
        if verified.size() != len {
            return Err(SegmentError::WrongSize {
                size: verified.size(),
                need: len,
            }
            .into());
        }
        let words = verified.map_words()?;
        Ok(Self {
            words,
            fd: verified.into_fd(),
        })
    }

    /// The region's words.
    pub fn words(&self) -> &[SharedWord] {
        self.words.words()
    }

    /// The region's length in bytes.
    pub fn len(&self) -> usize {
        self.words().len() * 8
    }

    /// Whether the region is empty (never: creation refuses it).
    pub fn is_empty(&self) -> bool {
        self.words().is_empty()
    }
}

impl AsFd for SharedRegion {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use ipc_proto::ring::{self, Body, Consumer, Producer, Push, RingConfig, RingPayload};

    use super::*;
    use crate::testutil::{pass, shared};

    fn segment_error(e: &io::Error) -> Option<SegmentError> {
        e.get_ref()?.downcast_ref::<SegmentError>().copied()
    }

    #[test]
    fn a_ring_across_two_mappings() {
        let _g = shared();
        let mut config = RingConfig::default();
        config.capacity(8).inline_max(64);
        let len = config.region_bytes().expect("size");
        let mine = SharedRegion::create("ring", len as usize).expect("create");
        assert!(
            mine.as_fd().try_clone_to_owned().is_ok() && !mine.is_empty(),
            "an fd to pass"
        );
        let layout = ring::init(mine.words(), &config).expect("init");
        let theirs = SharedRegion::open(pass(mine.as_fd()), len).expect("open");
        assert_eq!(theirs.len() as u64, len);
        let mut producer = Producer::new(ring::attach(theirs.words()).expect("attach"));
        let mut consumer = Consumer::new(layout);
        for seq in 1..=20u64 {
            let msg = seq.to_le_bytes().repeat(seq as usize % 8);
            let push = producer.push(theirs.words(), 3, seq, Body::Inline(&msg));
            assert_eq!(push, Ok(Push::Done { wake: false }));
            let mut buf = [0u8; 64];
            let got = consumer
                .pop(mine.words(), &mut buf)
                .expect("pop")
                .expect("a message");
            assert_eq!((got.binding, got.seq), (3, seq));
            assert_eq!(got.payload, RingPayload::Inline { len: msg.len() });
            assert_eq!(&buf[..msg.len()], &msg[..]);
        }
        // The same memory: a word written on one side is read on the other.
        mine.words()[7].atomic().store(42, Relaxed);
        assert_eq!(theirs.words()[7].atomic().load(Relaxed), 42);
    }

    #[test]
    fn the_region_is_sealed_for_good() {
        let _g = shared();
        let region = SharedRegion::create("sealed", 4096).expect("create");
        let seals = rustix::fs::fcntl_get_seals(&region).expect("seals");
        assert!(SealSet::from_bits_retain(seals.bits()).contains(SealSet::SHARED));
        assert!(rustix::fs::ftruncate(&region, 100).is_err(), "no shrink");
        assert!(rustix::fs::ftruncate(&region, 8192).is_err(), "no grow");
        assert_eq!(
            SharedRegion::create("odd", 12)
                .map(drop)
                .expect_err("odd")
                .kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn unsealed_or_wrongly_sized_memfds_are_refused() {
        let _g = shared();
        // Unsealed.
        let plain = Segment::create("plain", 4096).expect("create");
        let err = SharedRegion::open(pass(plain.as_fd()), 4096).expect_err("unsealed");
        assert!(
            matches!(segment_error(&err), Some(SegmentError::MissingSeals { .. })),
            "{err}"
        );
        // Shrink-sealed only: could still grow.
        let shrink = Segment::create("shrink", 4096).expect("create");
        shrink.seal(SealSet::SHRINK).expect("seal");
        let err = SharedRegion::open(pass(shrink.as_fd()), 4096).expect_err("growable");
        assert!(matches!(
            segment_error(&err),
            Some(SegmentError::MissingSeals { .. })
        ));
        // Too small, too large.
        let region = SharedRegion::create("sized", 4096).expect("create");
        let err = SharedRegion::open(pass(region.as_fd()), 8192).expect_err("too small");
        assert!(matches!(
            segment_error(&err),
            Some(SegmentError::TooSmall { size: 4096, .. })
        ));
        let err = SharedRegion::open(pass(region.as_fd()), 1024).expect_err("too large");
        assert_eq!(
            segment_error(&err),
            Some(SegmentError::WrongSize {
                size: 4096,
                need: 1024
            })
        );
        // Write-sealed (a fresh payload segment): cannot be mapped writable.
        let fresh = Segment::create("fresh", 4096).expect("create");
        fresh.seal(SealSet::FRESH).expect("seal");
        let err = SharedRegion::open(pass(fresh.as_fd()), 4096).expect_err("write-sealed");
        assert_eq!(
            err.raw_os_error(),
            Some(rustix::io::Errno::PERM.raw_os_error())
        );
        SharedRegion::open(pass(region.as_fd()), 4096).expect("the right one");
    }
}
