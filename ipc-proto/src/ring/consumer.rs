//! The consumer's side: [`Consumer`] pops descriptors and gives pool ranges back.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use super::layout::{
    D_BINDING_FLAGS, D_LEN, D_OFFSET, D_SEGMENT, D_SENT_BEFORE, D_SEQ, DESC_WORDS, FLAG_POOL,
    RETURN_WORDS, W_CONSUMER_PARKED, W_HEAD, W_PRODUCER_WAITING, W_RETURN_HEAD, W_RETURN_TAIL,
    W_TAIL, W_WRITING, WAIT_RETURNS_ONLY, next_epoch, word, words,
};
use super::{
    Layout, Park, PoolRange, Popped, Push, RingError, RingPayload, Word, Writer, check_range,
};

/// The consuming side of a ring: the subscriber of a data link.
///
/// Keeps its own tail, the last head it saw and its wake bookkeeping; reads the producer's
/// words only, and checks each of them and every descriptor before use.
#[derive(Debug, Clone)]
pub struct Consumer {
    layout: Layout,
    /// Messages popped so far (the tail index, free-running).
    tail: u64,
    /// The producer's head as last read: `tail <= head <= tail + capacity`.
    head: u64,
    /// The last wait epoch of the producer this side woke it for.
    woken: u64,
    /// This side's own park epoch (its `parked` word is this or 0).
    epoch: u64,
    /// Return entries given so far (the return head).
    return_head: u64,
    /// The producer's return tail as last read.
    return_tail: u64,
    /// Returns given while the producer waited for returns only, and not woken for yet
    /// (see [`Self::wake_producer`]), with the wait they were for.
    returns_owed: u64,
    owed_wait: u64,
}

impl Consumer {
    /// The consumer of a fresh ring with this layout (from [`super::init`] or
    /// [`super::attach`]).
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            tail: 0,
            head: 0,
            woken: 0,
            epoch: 0,
            return_head: 0,
            return_tail: 0,
            returns_owed: 0,
            owed_wait: 0,
        }
    }

    /// The ring's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Messages known to wait, from the head as last read (no read of the producer's words).
    pub fn pending_cached(&self) -> u64 {
        self.head - self.tail
    }

    /// Messages popped so far.
    pub fn popped(&self) -> u64 {
        self.tail
    }

    /// Reads and checks the producer's head: it lies in `[last head seen, tail + capacity]`.
    /// Returns how many messages wait.
    fn read_head<W: Word>(&mut self, region: &[W]) -> Result<u64, RingError> {
        let found = word(region, W_HEAD)?.load(Acquire);
        let ahead = found.wrapping_sub(self.tail);
        if ahead > self.layout.capacity() || ahead < self.head - self.tail {
            return Err(RingError::Index {
                index: "head",
                found,
                own: self.tail,
                capacity: self.layout.capacity(),
            });
        }
        self.head = found;
        Ok(ahead)
    }

    /// Messages waiting in the ring now. Reads the producer's head.
    pub fn pending<W: Word>(&mut self, region: &[W]) -> Result<u64, RingError> {
        self.layout.check_len(region)?;
        self.read_head(region)
    }

    /// Takes the next message: its descriptor, with an inline payload copied into
    /// `buf[..len]`. `Ok(None)`: the ring is empty.
    ///
    /// `buf` should hold [`Layout::inline_max`] bytes; a shorter one that cannot take the
    /// next payload is [`RingError::BufferTooSmall`] and leaves it in the ring. Any other
    /// `Err` is the producer's fault. [`Popped::wake_producer`]: the producer waits for room;
    /// write its eventfd.
    pub fn pop<W: Word>(
        &mut self,
        region: &[W],
        buf: &mut [u8],
    ) -> Result<Option<Popped>, RingError> {
        Ok(self.pop_into(region, |_| buf)?.map(|(popped, _)| popped))
    }

    /// [`Self::pop`], an inline payload copied into the buffer `dst` gives for its length
    /// (checked against the slot first), which comes back with the descriptor: for a reader
    /// that hands each payload on in a buffer of its own, without a second copy. `dst` is
    /// called only for an inline payload; a buffer shorter than the payload is
    /// [`RingError::BufferTooSmall`] and leaves the message in the ring.
    pub fn pop_into<W: Word, B: AsMut<[u8]>>(
        &mut self,
        region: &[W],
        dst: impl FnOnce(usize) -> B,
    ) -> Result<Option<(Popped, Option<B>)>, RingError> {
        self.layout.check_len(region)?;
        if self.tail == self.head && self.read_head(region)? == 0 {
            return Ok(None);
        }
        let slot = words(
            region,
            self.layout.slot(self.tail),
            self.layout.slot_words(),
        )?;
        let (desc, inline) = slot.split_at(DESC_WORDS);
        let r = |i: usize| desc.get(i).map_or(0, |w| w.load(Relaxed));
        let binding_flags = r(D_BINDING_FLAGS);
        let seq = r(D_SEQ);
        let len = r(D_LEN);
        let sent_before = r(D_SENT_BEFORE);
        let binding = binding_flags as u32;
        let flags = (binding_flags >> 32) as u32;
        let (payload, buf) = match flags {
            0 => {
                let max = self.layout.inline_max();
                let n = usize::try_from(len)
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or(RingError::Length { len, max })?;
                let mut buf = dst(n);
                let bytes = buf.as_mut();
                let buf_len = bytes.len();
                let out = bytes.get_mut(..n).ok_or(RingError::BufferTooSmall {
                    len: n,
                    buf: buf_len,
                })?;
                W::load_bytes(inline, out);
                (RingPayload::Inline { len: n }, Some(buf))
            }
            FLAG_POOL => {
                let range = PoolRange {
                    segment: r(D_SEGMENT),
                    offset: r(D_OFFSET),
                    len,
                };
                check_range(&self.layout, range)?;
                (RingPayload::Pool(range), None)
            }
            flags => return Err(RingError::Flags { seq, flags }),
        };
        self.tail += 1;
        word(region, W_TAIL)?.store(self.tail, Release);
        let popped = Popped {
            binding,
            seq,
            sent_before,
            payload,
            wake_producer: self.wake_producer(region, false)?,
        };
        Ok(Some((popped, buf)))
    }

    /// After freeing a slot (`returned`: false) or returning a range (true): a `SeqCst`
    /// fence, then whether the producer started waiting for it since it was last woken. A
    /// producer waiting for returns only ([`WAIT_RETURNS_ONLY`]) is not woken for a slot, and
    /// stays owed the wake of the next return.
    ///
    /// A producer waiting for room is woken once half the ring is free, not at the first
    /// free slot: a faster producer would fill that one and wait again, a wakeup per
    /// message. It is owed the wake until then, and gets it at the latest when the ring is
    /// empty, which every consumer reads it to before parking.
    ///
    /// A producer waiting for returns only (it has ranges out, and says so after each
    /// message it sends) is woken by a return at once only if this side has no message
    /// left to pop, or once half the return ring is given since. While messages wait, this
    /// side pops them soon, and the wake is owed until the pop that leaves the ring empty:
    /// else a stream of pooled messages, which the consumer gives back one by one while
    /// more wait, wakes the producer about once per message. (A consumer that stops popping
    /// with messages left, a subscription's full queue under `Block`, pops again once its
    /// application takes messages; until then the producer has what it needs to send
    /// anyway: room, or the pool, which that application holds.)
    fn wake_producer<W: Word>(&mut self, region: &[W], returned: bool) -> Result<bool, RingError> {
        W::fence(SeqCst);
        let waiting = word(region, W_PRODUCER_WAITING)?.load(Relaxed);
        if waiting == 0 || waiting == self.woken {
            return Ok(false);
        }
        if waiting & WAIT_RETURNS_ONLY != 0 {
            if self.owed_wait != waiting {
                self.owed_wait = waiting;
                self.returns_owed = 0;
            }
            if returned {
                self.returns_owed += 1;
                let half = self.layout.return_capacity().div_ceil(2);
                if self.pending_cached() > 0 && self.returns_owed < half {
                    return Ok(false);
                }
            } else if self.returns_owed == 0
                || self.pending_cached() > 0
                || self.read_head(region)? > 0
            {
                // A pop: no wake for its slot, nor for the returns owed while more wait.
                return Ok(false);
            }
        } else if !returned && self.read_head(region)? > self.layout.capacity() / 2 {
            return Ok(false);
        }
        self.woken = waiting;
        self.returns_owed = 0;
        Ok(true)
    }

    /// Whether the producer says it is writing a message for the ring, and on which CPU (the
    /// `writing` hint, see the module docs): then a consumer about to park may spin a little
    /// longer ([`Writer::worth_polling_from`]). The peer's word, so only a hint: the caller
    /// bounds that spin.
    pub fn producer_writing<W: Word>(&self, region: &[W]) -> Result<Writer, RingError> {
        self.layout.check_len(region)?;
        Ok(Writer::of(word(region, W_WRITING)?.load(Relaxed)))
    }

    /// Before sleeping on an empty ring: publishes "parked", then checks again (the
    /// eventcount's consumer half).
    ///
    /// [`Park::Ready`]: a message arrived meanwhile; nothing to undo, pop it.
    /// [`Park::Sleep`]: block on the consumer's eventfd (any wake written from now on is
    /// seen), then call [`Self::finish_park`] and pop again. A wakeup may be spurious.
    pub fn prepare_park<W: Word>(&mut self, region: &[W]) -> Result<Park, RingError> {
        self.layout.check_header(region)?;
        self.epoch = next_epoch(self.epoch);
        let parked = word(region, W_CONSUMER_PARKED)?;
        parked.store(self.epoch, Relaxed);
        W::fence(SeqCst);
        if self.read_head(region)? > 0 {
            parked.store(0, Relaxed);
            return Ok(Park::Ready);
        }
        Ok(Park::Sleep)
    }

    /// After sleeping on [`Park::Sleep`]: no longer parked.
    pub fn finish_park<W: Word>(&mut self, region: &[W]) -> Result<(), RingError> {
        self.layout.check_len(region)?;
        word(region, W_CONSUMER_PARKED)?.store(0, Relaxed);
        Ok(())
    }

    /// Reads and checks the producer's return tail: it lies in `[last seen, return head]`.
    fn read_return_tail<W: Word>(&mut self, region: &[W]) -> Result<(), RingError> {
        let found = word(region, W_RETURN_TAIL)?.load(Acquire);
        if found.wrapping_sub(self.return_tail) > self.return_head - self.return_tail {
            return Err(RingError::Index {
                index: "return tail",
                found,
                own: self.return_head,
                capacity: self.layout.return_capacity(),
            });
        }
        self.return_tail = found;
        Ok(())
    }

    /// Gives a pool range back to the producer, or says the return ring is full (then send
    /// the release over the socket, or retry after the next pop).
    ///
    /// [`Push::Done`] with `wake`: the producer waits; write its eventfd. A range outside the
    /// pool is [`RingError::PoolRange`] and changes nothing.
    pub fn push_return<W: Word>(
        &mut self,
        region: &[W],
        range: PoolRange,
    ) -> Result<Push, RingError> {
        self.layout.check_len(region)?;
        check_range(&self.layout, range)?;
        let cap = self.layout.return_capacity();
        if self.return_head - self.return_tail >= cap {
            self.read_return_tail(region)?;
            if self.return_head - self.return_tail >= cap {
                return Ok(Push::Full);
            }
        }
        let entry = words(
            region,
            self.layout.return_slot(self.return_head),
            RETURN_WORDS,
        )?;
        for (w, v) in entry.iter().zip([range.segment, range.offset, range.len]) {
            w.store(v, Relaxed);
        }
        self.return_head += 1;
        word(region, W_RETURN_HEAD)?.store(self.return_head, Release);
        Ok(Push::Done {
            wake: self.wake_producer(region, true)?,
        })
    }
}
