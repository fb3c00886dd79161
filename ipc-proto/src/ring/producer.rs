//! The producer's side: [`Producer`] pushes descriptors and takes pool ranges back.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use super::layout::{
    D_BINDING_FLAGS, D_LEN, D_OFFSET, D_SEGMENT, D_SENT_BEFORE, D_SEQ, DESC_WORDS, FLAG_POOL,
    RETURN_WORDS, W_CONSUMER_PARKED, W_HEAD, W_PRODUCER_WAITING, W_RETURN_HEAD, W_RETURN_TAIL,
    W_TAIL, W_WRITING, WAIT_RETURNS_ONLY, next_wait_epoch, word, words,
};
use super::{Body, Layout, Park, PoolRange, Push, RingError, Word, Writer, check_range};

/// The producing side of a ring: the publisher of a data link.
///
/// Keeps its own head, the last tail it saw and its wake bookkeeping; reads the consumer's
/// words only, and checks each of them. Every method takes the region: the driver keeps the
/// mapping, the producer only numbers.
#[derive(Debug, Clone)]
pub struct Producer {
    layout: Layout,
    /// Messages pushed so far (the head index, free-running).
    head: u64,
    /// The consumer's tail as last read: `tail <= head <= tail + capacity`.
    tail: u64,
    /// The last park epoch of the consumer this side woke it for.
    woken: u64,
    /// This side's own wait epoch (its `waiting` word is this, with [`WAIT_RETURNS_ONLY`]
    /// while it waits for returns only, or 0).
    epoch: u64,
    /// Return entries taken so far (the return tail).
    return_tail: u64,
    /// The consumer's return head as last read.
    return_head: u64,
    /// The `writing` hint this side stored last ([`Self::writing`]; 0: cleared).
    writing: u64,
}

impl Producer {
    /// The producer of a fresh ring with this layout (from [`super::init`] or
    /// [`super::attach`]).
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            head: 0,
            tail: 0,
            woken: 0,
            epoch: 0,
            return_tail: 0,
            return_head: 0,
            writing: 0,
        }
    }

    /// The ring's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Messages pushed so far.
    pub fn pushed(&self) -> u64 {
        self.head
    }

    /// Free slots as of the last read of the consumer's tail (no shared memory read): a
    /// lower bound of [`Self::free`].
    pub fn free_cached(&self) -> u64 {
        self.layout.capacity() - (self.head - self.tail)
    }

    /// Free slots now: the credit. Reads the consumer's tail.
    pub fn free<W: Word>(&mut self, region: &[W]) -> Result<u64, RingError> {
        self.layout.check_len(region)?;
        self.read_tail(region)?;
        Ok(self.free_cached())
    }

    /// Reads and checks the consumer's tail: it lies in `[last tail seen, head]`.
    fn read_tail<W: Word>(&mut self, region: &[W]) -> Result<(), RingError> {
        let found = word(region, W_TAIL)?.load(Acquire);
        if found.wrapping_sub(self.tail) > self.head - self.tail {
            return Err(RingError::Index {
                index: "tail",
                found,
                own: self.head,
                capacity: self.layout.capacity(),
            });
        }
        self.tail = found;
        Ok(())
    }

    /// Publishes one message, or says the ring is full (then nothing was written).
    ///
    /// On [`Push::Done`] with `wake`, the consumer was parked: write its eventfd. A local
    /// payload that cannot go in this ring is an `Err` ([`RingError::TooLong`],
    /// [`RingError::PoolRange`]) and changes nothing; any other `Err` is the consumer's fault.
    pub fn push<W: Word>(
        &mut self,
        region: &[W],
        binding: u32,
        seq: u64,
        body: Body<'_>,
    ) -> Result<Push, RingError> {
        self.push_after(region, binding, seq, 0, body)
    }

    /// [`Self::push`], telling the consumer that `sent_before` records went out on the link's
    /// socket before this message ([`Popped::sent_before`](super::Popped::sent_before)): what
    /// merges the two streams in order ([`link`](super::link)).
    pub fn push_after<W: Word>(
        &mut self,
        region: &[W],
        binding: u32,
        seq: u64,
        sent_before: u64,
        body: Body<'_>,
    ) -> Result<Push, RingError> {
        self.layout.check_len(region)?;
        let (flags, len, segment, offset) = match body {
            Body::Inline(bytes) => {
                let max = self.layout.inline_max();
                if bytes.len() > max {
                    return Err(RingError::TooLong {
                        len: bytes.len(),
                        max,
                    });
                }
                (0, bytes.len() as u64, 0, 0)
            }
            Body::Pool(range) => {
                check_range(&self.layout, range)?;
                (FLAG_POOL, range.len, range.segment, range.offset)
            }
        };
        if self.head - self.tail >= self.layout.capacity() {
            self.read_tail(region)?;
            if self.head - self.tail >= self.layout.capacity() {
                return Ok(Push::Full);
            }
        }
        let slot = words(
            region,
            self.layout.slot(self.head),
            self.layout.slot_words(),
        )?;
        let (desc, inline) = slot.split_at(DESC_WORDS);
        let w = |i: usize, v: u64| {
            if let Some(w) = desc.get(i) {
                w.store(v, Relaxed);
            }
        };
        w(
            D_BINDING_FLAGS,
            u64::from(binding) | (u64::from(flags) << 32),
        );
        w(D_SEQ, seq);
        w(D_LEN, len);
        w(D_SEGMENT, segment);
        w(D_OFFSET, offset);
        w(D_SENT_BEFORE, sent_before);
        if let Body::Inline(bytes) = body {
            W::store_bytes(inline, bytes);
        }
        if self.writing != 0 {
            self.writing = 0;
            word(region, W_WRITING)?.store(0, Relaxed);
        }
        self.head += 1;
        word(region, W_HEAD)?.store(self.head, Release);
        Ok(Push::Done {
            wake: self.wake_consumer(region)?,
        })
    }

    /// Tells the consumer that this side is writing a message for the ring (it holds a loan
    /// to fill in place), on CPU `cpu` if the caller knows it: the `writing` hint, which the
    /// next push clears. A consumer about to park may spin a little longer instead, unless it
    /// runs on that same CPU (see the module docs and [`Writer`]). Stores only when the hint
    /// changes.
    pub fn writing<W: Word>(&mut self, region: &[W], cpu: Option<u32>) -> Result<(), RingError> {
        self.layout.check_len(region)?;
        let hint = Writer::word(cpu);
        if self.writing != hint {
            self.writing = hint;
            word(region, W_WRITING)?.store(hint, Relaxed);
        }
        Ok(())
    }

    /// After publishing: a `SeqCst` fence, then whether the consumer parked since it was last
    /// woken (the eventcount's producer half).
    fn wake_consumer<W: Word>(&mut self, region: &[W]) -> Result<bool, RingError> {
        W::fence(SeqCst);
        let parked = word(region, W_CONSUMER_PARKED)?.load(Relaxed);
        if parked != 0 && parked != self.woken {
            self.woken = parked;
            return Ok(true);
        }
        Ok(false)
    }

    /// Before blocking for room (the `Block` policy, or for a pool range to come back):
    /// publishes "waiting", then checks again.
    ///
    /// [`Park::Ready`]: there is a free slot or a returned range; nothing to undo. [`Park::Sleep`]:
    /// block on the producer's eventfd (with the policy's timeout), then call
    /// [`Self::finish_wait`] and retry. A wakeup may be spurious.
    pub fn prepare_wait<W: Word>(&mut self, region: &[W]) -> Result<Park, RingError> {
        self.prepare(region, true)
    }

    /// Before blocking for returned ranges only, with room or without (a publisher with
    /// ranges out and nothing to send): as [`Self::prepare_wait`], but [`Park::Ready`] only
    /// when a range came back, so that an idle producer with free slots does not spin; and
    /// the consumer wakes it for a return only, not for the slot a pop frees (its `waiting`
    /// word carries bit 63), so that a stream of messages does not wake it once per message
    /// on top of once per return.
    pub fn prepare_wait_returns<W: Word>(&mut self, region: &[W]) -> Result<Park, RingError> {
        self.prepare(region, false)
    }

    fn prepare<W: Word>(&mut self, region: &[W], room: bool) -> Result<Park, RingError> {
        self.layout.check_header(region)?;
        self.epoch = next_wait_epoch(self.epoch);
        let waiting = word(region, W_PRODUCER_WAITING)?;
        let only_returns = if room { 0 } else { WAIT_RETURNS_ONLY };
        waiting.store(self.epoch | only_returns, Relaxed);
        W::fence(SeqCst);
        self.read_tail(region)?;
        let returned = self.read_return_head(region)?;
        if (room && self.free_cached() > 0) || returned > 0 {
            waiting.store(0, Relaxed);
            return Ok(Park::Ready);
        }
        Ok(Park::Sleep)
    }

    /// After sleeping on [`Park::Sleep`] (woken or timed out): no longer waiting.
    pub fn finish_wait<W: Word>(&mut self, region: &[W]) -> Result<(), RingError> {
        self.layout.check_len(region)?;
        word(region, W_PRODUCER_WAITING)?.store(0, Relaxed);
        Ok(())
    }

    /// Reads and checks the return ring's head; returns how many entries wait.
    fn read_return_head<W: Word>(&mut self, region: &[W]) -> Result<u64, RingError> {
        let found = word(region, W_RETURN_HEAD)?.load(Acquire);
        let cap = self.layout.return_capacity();
        let ahead = found.wrapping_sub(self.return_tail);
        if ahead > cap || ahead < self.return_head - self.return_tail {
            return Err(RingError::Index {
                index: "return head",
                found,
                own: self.return_tail,
                capacity: cap,
            });
        }
        self.return_head = found;
        Ok(ahead)
    }

    /// Takes the next pool range the consumer gave back, checked to lie within the pool length
    /// of this side's [`Layout`]. That length is the creator's word: when the consumer created
    /// the ring, it bounds nothing the producer owns. Whether the range lies in a real segment
    /// and was lent out is the data plane's business: a range it does not hold is a protocol
    /// violation there.
    pub fn pop_return<W: Word>(&mut self, region: &[W]) -> Result<Option<PoolRange>, RingError> {
        self.layout.check_len(region)?;
        if self.return_tail == self.return_head && self.read_return_head(region)? == 0 {
            return Ok(None);
        }
        let entry = words(
            region,
            self.layout.return_slot(self.return_tail),
            RETURN_WORDS,
        )?;
        let r = |i: usize| entry.get(i).map_or(0, |w| w.load(Relaxed));
        let range = PoolRange {
            segment: r(0),
            offset: r(1),
            len: r(2),
        };
        check_range(&self.layout, range)?;
        self.return_tail += 1;
        word(region, W_RETURN_TAIL)?.store(self.return_tail, Release);
        Ok(Some(range))
    }
}
