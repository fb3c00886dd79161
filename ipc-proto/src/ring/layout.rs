//! Where every word of a ring region lives, the geometry a creator chooses ([`RingConfig`]),
//! and the checked copy of it each side keeps ([`Layout`]).

use std::sync::atomic::Ordering;

use super::RingError;

/// One shared 64-bit word of a ring region, as the OS layer hands it out.
///
/// Implemented for [`std::sync::atomic::AtomicU64`], for the OS layer's own word type
/// (`ipc_os::shared::SharedWord`, which copies inline payloads faster) and, in this crate's
/// loom tests, for loom's `AtomicU64`, so the model checker runs the very code drivers run.
pub trait Word: Sync + Sized {
    /// Atomically reads the word.
    fn load(&self, order: Ordering) -> u64;
    /// Atomically writes the word.
    fn store(&self, value: u64, order: Ordering);
    /// A memory fence of the same atomics family ([`std::sync::atomic::fence`]).
    fn fence(order: Ordering);

    /// Stores `bytes` into the first words of `dst`, little-endian, the last word zero-padded,
    /// as many as `dst` holds: a message's inline payload, which the producer publishes after
    /// (a `Release` store of the head). Provided as [`store_words`]: a relaxed store per word.
    ///
    /// An implementation may copy faster, provided that every byte is written as a relaxed
    /// atomic store would write it (the peer may read or write the words meanwhile, and no
    /// value it sees or writes may cause undefined behaviour), in an order a `Release` store
    /// made after the copy still publishes.
    #[inline]
    fn store_bytes(dst: &[Self], bytes: &[u8]) {
        store_words(dst, bytes);
    }

    /// Loads the first words of `src` into `out`, little-endian, as many as `src` holds (see
    /// [`Self::store_bytes`]): a message's inline payload, after an `Acquire` load of the
    /// head. Provided as [`load_words`]: a relaxed load per word. An implementation may copy
    /// faster, provided that every byte is read as a relaxed atomic load would read it: the
    /// peer may be writing the words (the bytes are then any bytes, never undefined
    /// behaviour).
    #[inline]
    fn load_bytes(src: &[Self], out: &mut [u8]) {
        load_words(src, out);
    }
}

impl Word for std::sync::atomic::AtomicU64 {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        Self::load(self, order)
    }
    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        Self::store(self, value, order);
    }
    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order);
    }
}

/// `b"IPCRING\x01"` read as a little-endian word: the first word of every ring region.
pub const MAGIC: u64 = u64::from_le_bytes(*b"IPCRING\x01");
/// The layout version this crate writes and accepts.
///
/// 2: the producer's `waiting` and the consumer's `parked` words have lines of their own, away
/// from the head and the tail that each side writes at every message: each push and pop reads
/// the other side's flag, which then stays in its cache instead of crossing cores every time.
pub const VERSION: u64 = 2;
/// Words per cache line as the layout counts them: 128 bytes, two 64-byte lines, so that the
/// adjacent-line prefetcher does not pair the producer's and the consumer's lines either.
pub const LINE_WORDS: usize = 16;
/// Words of a slot's descriptor, before its inline bytes.
pub const DESC_WORDS: usize = 8;
/// Words of one return-ring entry (segment, offset, length, reserved).
pub const RETURN_WORDS: usize = 4;
/// Most descriptor slots (and most return entries) a ring may have.
pub const MAX_CAPACITY: u32 = 1 << 16;
/// Largest inline payload a ring may be created for.
pub const MAX_INLINE: u32 = 1 << 20;
/// Largest region a side accepts: 1 GiB.
pub const MAX_REGION_BYTES: u64 = 1 << 30;

// Header (line 0), written once by the creator.
pub(crate) const W_MAGIC: usize = 0;
pub(crate) const W_VERSION: usize = 1;
pub(crate) const W_CAPACITY: usize = 2;
pub(crate) const W_SLOT_WORDS: usize = 3;
pub(crate) const W_RETURN_CAPACITY: usize = 4;
pub(crate) const W_POOL_LEN: usize = 5;
pub(crate) const W_REGION_WORDS: usize = 6;
/// Header words checked by [`Layout::check_header`]: every one the creator wrote.
const HEADER_WORDS: usize = 7;
// Line 1: the producer's head, written at every push.
pub(crate) const W_HEAD: usize = LINE_WORDS;
// Line 1 too: the producer's `writing` hint, beside the head it clears at a push (so the
// consumer that reads the head for free reads the hint with it). Layouts before the hint left
// it zero: a side that does not know it neither writes nor reads it.
pub(crate) const W_WRITING: usize = LINE_WORDS + 1;
// Line 2: the consumer's tail, written at every pop.
pub(crate) const W_TAIL: usize = 2 * LINE_WORDS;
// Line 3: the return ring's head (written by the consumer, which produces returns).
pub(crate) const W_RETURN_HEAD: usize = 3 * LINE_WORDS;
// Line 4: the return ring's tail (written by the producer).
pub(crate) const W_RETURN_TAIL: usize = 4 * LINE_WORDS;
// Line 5: the producer's `waiting`, written only when it starts or stops waiting, read by
// every pop: alone on its line, so that a pop finds it in its own cache (see [`VERSION`]).
pub(crate) const W_PRODUCER_WAITING: usize = 5 * LINE_WORDS;
// Line 6: the consumer's `parked`, written only when it parks, read by every push: alone.
pub(crate) const W_CONSUMER_PARKED: usize = 6 * LINE_WORDS;
/// First word of slot 0.
pub(crate) const SLOTS_START: usize = 7 * LINE_WORDS;

// Descriptor words, from a slot's start.
pub(crate) const D_BINDING_FLAGS: usize = 0;
pub(crate) const D_SEQ: usize = 1;
pub(crate) const D_LEN: usize = 2;
pub(crate) const D_SEGMENT: usize = 3;
pub(crate) const D_OFFSET: usize = 4;
pub(crate) const D_SENT_BEFORE: usize = 5;

/// Descriptor flag: the payload is a pool range, not inline bytes.
pub(crate) const FLAG_POOL: u32 = 1;

/// The geometry a ring's creator chooses; [`super::init`] writes it into the header.
///
/// ```
/// use ipc_proto::ring::RingConfig;
/// let mut config = RingConfig::default();
/// config.capacity(1024).inline_max(64).return_capacity(64).pool_len(1 << 20);
/// assert_eq!(config.region_bytes(), Ok(896 + 1024 * 128 + 64 * 32));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingConfig {
    capacity: u32,
    inline_max: u32,
    return_capacity: u32,
    pool_len: u64,
}

impl Default for RingConfig {
    /// 256 slots of 4 KiB inline (1 MiB and a bit), 256 return entries, no pool.
    fn default() -> Self {
        Self {
            capacity: 256,
            inline_max: 4096,
            return_capacity: 256,
            pool_len: 0,
        }
    }
}

impl RingConfig {
    /// Number of descriptor slots: a power of two, 1 to [`MAX_CAPACITY`]. The credit: at most
    /// this many messages are in the ring at once.
    pub fn capacity(&mut self, slots: u32) -> &mut Self {
        self.capacity = slots;
        self
    }

    /// Largest inline payload in bytes, at most [`MAX_INLINE`]; rounded up to whole words.
    pub fn inline_max(&mut self, bytes: u32) -> &mut Self {
        self.inline_max = bytes;
        self
    }

    /// Number of return-ring entries: a power of two, 1 to [`MAX_CAPACITY`].
    pub fn return_capacity(&mut self, entries: u32) -> &mut Self {
        self.return_capacity = entries;
        self
    }

    /// Size of the largest pool segment in bytes: a pool range must end within it. 0: no
    /// pooled messages on this ring.
    pub fn pool_len(&mut self, bytes: u64) -> &mut Self {
        self.pool_len = bytes;
        self
    }

    /// The [`Layout`] of a region made with this configuration, or why there is none.
    pub fn layout(&self) -> Result<Layout, RingError> {
        let slot_words = (self.inline_max as usize)
            .div_ceil(8)
            .checked_add(DESC_WORDS)
            .map(|w| w.next_multiple_of(DESC_WORDS))
            .ok_or(RingError::Geometry {
                what: "inline_max",
                value: u64::from(self.inline_max),
            })?;
        if self.inline_max > MAX_INLINE {
            return Err(RingError::Geometry {
                what: "inline_max",
                value: u64::from(self.inline_max),
            });
        }
        Layout::new(
            u64::from(self.capacity),
            slot_words as u64,
            u64::from(self.return_capacity),
            self.pool_len,
        )
    }

    /// Bytes of the region this configuration needs.
    pub fn region_bytes(&self) -> Result<u64, RingError> {
        Ok(self.layout()?.region_bytes())
    }
}

/// A ring's geometry, validated: each side keeps its own copy and never re-reads it from
/// shared memory for indexing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    capacity: u64,
    slot_words: usize,
    return_capacity: u64,
    pool_len: u64,
    return_start: usize,
    region_words: usize,
}

impl Layout {
    /// Checks a geometry read from a header or asked for by a creator; all arithmetic checked.
    fn new(
        capacity: u64,
        slot_words: u64,
        return_capacity: u64,
        pool_len: u64,
    ) -> Result<Self, RingError> {
        let pow2 = |what, v: u64| {
            if v.is_power_of_two() && v <= u64::from(MAX_CAPACITY) {
                Ok(v)
            } else {
                Err(RingError::Geometry { what, value: v })
            }
        };
        let capacity = pow2("capacity", capacity)?;
        let return_capacity = pow2("return_capacity", return_capacity)?;
        let max_slot = (u64::from(MAX_INLINE) / 8) + DESC_WORDS as u64;
        if slot_words < DESC_WORDS as u64
            || slot_words > max_slot
            || !slot_words.is_multiple_of(DESC_WORDS as u64)
        {
            return Err(RingError::Geometry {
                what: "slot_words",
                value: slot_words,
            });
        }
        let too_big = RingError::Geometry {
            what: "region_bytes",
            value: u64::MAX,
        };
        // Every factor is bounded above, but check anyway: this runs on peer-written numbers.
        let return_start = capacity
            .checked_mul(slot_words)
            .and_then(|w| w.checked_add(SLOTS_START as u64))
            .ok_or(too_big.clone())?;
        let region_words = return_capacity
            .checked_mul(RETURN_WORDS as u64)
            .and_then(|w| w.checked_add(return_start))
            .ok_or(too_big.clone())?;
        let bytes = region_words.checked_mul(8).ok_or(too_big)?;
        if bytes > MAX_REGION_BYTES {
            return Err(RingError::Geometry {
                what: "region_bytes",
                value: bytes,
            });
        }
        // Both fit in usize: bounded by MAX_REGION_BYTES / 8.
        let usize_of = |v: u64| {
            usize::try_from(v).map_err(|_| RingError::Geometry {
                what: "region_bytes",
                value: bytes,
            })
        };
        Ok(Self {
            capacity,
            slot_words: usize_of(slot_words)?,
            return_capacity,
            pool_len,
            return_start: usize_of(return_start)?,
            region_words: usize_of(region_words)?,
        })
    }

    /// Number of descriptor slots.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Largest inline payload in bytes.
    pub fn inline_max(&self) -> usize {
        (self.slot_words - DESC_WORDS) * 8
    }

    /// Number of return-ring entries.
    pub fn return_capacity(&self) -> u64 {
        self.return_capacity
    }

    /// Size of the largest pool segment: every pool range ends within it.
    pub fn pool_len(&self) -> u64 {
        self.pool_len
    }

    /// Length of the region in words.
    pub fn region_words(&self) -> usize {
        self.region_words
    }

    /// Length of the region in bytes.
    pub fn region_bytes(&self) -> u64 {
        self.region_words as u64 * 8
    }

    /// The header words this layout writes, in order.
    fn header(&self) -> [u64; HEADER_WORDS] {
        [
            MAGIC,
            VERSION,
            self.capacity,
            self.slot_words as u64,
            self.return_capacity,
            self.pool_len,
            self.region_words as u64,
        ]
    }

    /// Reads and checks a header written by the other side.
    pub(crate) fn read<W: Word>(region: &[W]) -> Result<Self, RingError> {
        let mut h = [0u64; HEADER_WORDS];
        for (i, v) in h.iter_mut().enumerate() {
            *v = region
                .get(i)
                .ok_or(RingError::RegionSize {
                    words: region.len(),
                    need: SLOTS_START,
                })?
                .load(Ordering::Acquire);
        }
        if h[W_MAGIC] != MAGIC {
            return Err(RingError::Magic { found: h[W_MAGIC] });
        }
        if h[W_VERSION] != VERSION {
            return Err(RingError::Version {
                found: h[W_VERSION],
            });
        }
        let layout = Self::new(
            h[W_CAPACITY],
            h[W_SLOT_WORDS],
            h[W_RETURN_CAPACITY],
            h[W_POOL_LEN],
        )?;
        if h[W_REGION_WORDS] != layout.region_words as u64 {
            return Err(RingError::Geometry {
                what: "region_words",
                value: h[W_REGION_WORDS],
            });
        }
        layout.check_len(region)?;
        Ok(layout)
    }

    /// Writes the header (the magic last, with `Release`).
    pub(crate) fn write<W: Word>(&self, region: &[W]) -> Result<(), RingError> {
        self.check_len(region)?;
        for w in &region[..self.region_words] {
            w.store(0, Ordering::Relaxed);
        }
        let header = self.header();
        for (i, v) in header.iter().enumerate().skip(1) {
            region[i].store(*v, Ordering::Relaxed);
        }
        region[W_MAGIC].store(MAGIC, Ordering::Release);
        Ok(())
    }

    /// Whether `region` is exactly this layout's length.
    #[inline]
    pub(crate) fn check_len<W>(&self, region: &[W]) -> Result<(), RingError> {
        if region.len() == self.region_words {
            Ok(())
        } else {
            Err(RingError::RegionSize {
                words: region.len(),
                need: self.region_words,
            })
        }
    }

    /// Whether the header still says what it said when this side validated it.
    pub fn check_header<W: Word>(&self, region: &[W]) -> Result<(), RingError> {
        self.check_len(region)?;
        for (i, v) in self.header().iter().enumerate() {
            let found = region[i].load(Ordering::Relaxed);
            if found != *v {
                return Err(RingError::HeaderChanged { word: i, found });
            }
        }
        Ok(())
    }

    /// First word of descriptor slot `index` (a free-running counter).
    #[inline]
    pub(crate) fn slot(&self, index: u64) -> usize {
        // capacity is a power of two <= MAX_CAPACITY, so the masked index fits and the product
        // stays below return_start (checked in `new`).
        SLOTS_START + (index & (self.capacity - 1)) as usize * self.slot_words
    }

    /// First word of return entry `index` (a free-running counter).
    #[inline]
    pub(crate) fn return_slot(&self, index: u64) -> usize {
        self.return_start + (index & (self.return_capacity - 1)) as usize * RETURN_WORDS
    }

    /// Words of a slot.
    #[inline]
    pub(crate) fn slot_words(&self) -> usize {
        self.slot_words
    }
}

/// Word `i` of `region`; a region of the wrong length is an error, never a panic.
#[inline]
pub(crate) fn word<W>(region: &[W], i: usize) -> Result<&W, RingError> {
    region.get(i).ok_or(RingError::RegionSize {
        words: region.len(),
        need: i + 1,
    })
}

/// Words `start..start + n` of `region`.
#[inline]
pub(crate) fn words<W>(region: &[W], start: usize, n: usize) -> Result<&[W], RingError> {
    let end = start.checked_add(n);
    end.and_then(|end| region.get(start..end))
        .ok_or(RingError::RegionSize {
            words: region.len(),
            need: end.unwrap_or(usize::MAX),
        })
}

/// Stores `bytes` into the first words of `dst`, little-endian, the last word zero-padded, as
/// many as `dst` holds: one relaxed store per word ([`Word::store_bytes`]'s provided copy, and
/// the one an implementation falls back to).
///
/// The whole words go through one `zip` of two slices' iterators, which the compiler turns
/// into a loop with a single counter (a `by_ref` zip checks both ends at every word: about
/// twice the instructions per word).
#[inline]
pub fn store_words<W: Word>(dst: &[W], bytes: &[u8]) {
    let whole = bytes.len() / 8;
    let (head, rest) = bytes.split_at(whole * 8);
    for (chunk, w) in head.chunks_exact(8).zip(dst) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
    if !rest.is_empty()
        && let Some(w) = dst.get(whole)
    {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        w.store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

/// Loads the first words of `src` into `out`, little-endian, as many as `src` holds: one
/// relaxed load per word ([`Word::load_bytes`]'s provided copy, see [`store_words`]).
#[inline]
pub fn load_words<W: Word>(src: &[W], out: &mut [u8]) {
    let whole = out.len() / 8;
    let (head, rest) = out.split_at_mut(whole * 8);
    for (chunk, w) in head.chunks_exact_mut(8).zip(src) {
        chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    if !rest.is_empty()
        && let Some(w) = src.get(whole)
    {
        let b = w.load(Ordering::Relaxed).to_le_bytes();
        rest.copy_from_slice(&b[..rest.len()]);
    }
}

/// The next park epoch after `epoch`: never 0, which means "not parked".
#[inline]
pub(crate) fn next_epoch(epoch: u64) -> u64 {
    match epoch.wrapping_add(1) {
        0 => 1,
        e => e,
    }
}

/// In the producer's `waiting` word, beside its wait epoch: it waits for returned ranges
/// only, so a pop does not wake it (a return does).
pub(crate) const WAIT_RETURNS_ONLY: u64 = 1 << 63;

/// The next wait epoch of the producer after `epoch`: never 0 ("not waiting") and clear of
/// [`WAIT_RETURNS_ONLY`].
#[inline]
pub(crate) fn next_wait_epoch(epoch: u64) -> u64 {
    match epoch.wrapping_add(1) & !WAIT_RETURNS_ONLY {
        0 => 1,
        e => e,
    }
}
