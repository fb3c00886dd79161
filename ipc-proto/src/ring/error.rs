//! [`RingError`]: what a side found wrong in a ring region, or in its own call.

/// Why a ring operation failed. Every variant but [`RingError::TooLong`],
/// [`RingError::BufferTooSmall`] and [`RingError::RegionSize`] means the peer wrote something
/// it must not have (or the region is not a ring): close the link and log the error. The ring
/// is not usable after that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// The region is not as long as its layout says (a driver bug, or a truncated mapping).
    #[error("ring region is {words} words, its layout needs {need}")]
    RegionSize {
        /// Words in the region handed in.
        words: usize,
        /// Words the layout needs.
        need: usize,
    },
    /// The first word is not [`MAGIC`](super::MAGIC).
    #[error("ring magic is {found:#x}")]
    Magic {
        /// The word found.
        found: u64,
    },
    /// The layout version is not [`VERSION`](super::VERSION).
    #[error("ring layout version {found} is not supported")]
    Version {
        /// The version found.
        found: u64,
    },
    /// A geometry value is out of range (or the region would be too large).
    #[error("ring {what} {value} is out of range")]
    Geometry {
        /// Which value.
        what: &'static str,
        /// The value found or asked for.
        value: u64,
    },
    /// A header word changed after both sides validated it.
    #[error("ring header word {word} changed to {found:#x}")]
    HeaderChanged {
        /// Index of the word.
        word: usize,
        /// What it holds now.
        found: u64,
    },
    /// A newly created region's indexes or flags are not zero.
    #[error("ring region is not fresh: word {word} is {found:#x}")]
    NotFresh {
        /// Index of the word.
        word: usize,
        /// What it holds.
        found: u64,
    },
    /// The peer's index moved backwards or further than the capacity allows.
    #[error("ring {index} index {found} is impossible: own index {own}, capacity {capacity}")]
    Index {
        /// Which index: `"head"`, `"tail"`, `"return head"` or `"return tail"`.
        index: &'static str,
        /// The peer's index as read.
        found: u64,
        /// This side's own index.
        own: u64,
        /// The ring's capacity.
        capacity: u64,
    },
    /// A descriptor has flags this version does not know.
    #[error("ring descriptor {seq} has unknown flags {flags:#x}")]
    Flags {
        /// The descriptor's seq word.
        seq: u64,
        /// Its flags.
        flags: u32,
    },
    /// An inline length beyond the slot.
    #[error("ring inline payload of {len} bytes exceeds the slot's {max}")]
    Length {
        /// The length read.
        len: u64,
        /// The slot's inline capacity.
        max: usize,
    },
    /// A pool range that does not end within the pool.
    #[error("ring pool range {offset}+{len} exceeds the pool of {pool} bytes")]
    PoolRange {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// The pool's length.
        pool: u64,
    },
    /// The local caller's inline payload does not fit a slot.
    #[error("inline payload of {len} bytes exceeds the ring's {max}")]
    TooLong {
        /// The payload's length.
        len: usize,
        /// The slot's inline capacity.
        max: usize,
    },
    /// The local caller's buffer is shorter than the inline payload waiting in the ring (it
    /// stays there, or held by the reader if it was already popped: the next look finds it).
    #[error("buffer of {buf} bytes is too small for a {len}-byte ring payload")]
    BufferTooSmall {
        /// The payload's length.
        len: usize,
        /// The buffer's length.
        buf: usize,
    },
}
