//! The ring target: [`ring_consume`] feeds arbitrary region contents and operation sequences
//! to both ends of an [`ipc_proto::ring`](crate::ring).

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use arbitrary::{Arbitrary, Unstructured};

use crate::ring::{
    self, Body, Consumer, Layout, Park, PoolRange, Producer, Push, RingConfig, RingError,
    RingPayload, Writer,
};

/// One input of [`ring_consume`]: a geometry, optionally foreign words laid over the fresh
/// region before the other side attaches, then operations.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct RingCase {
    /// log2 of the slot count (taken modulo 5: 1 to 16 slots).
    pub capacity_log2: u8,
    /// Inline bytes per slot (modulo 200).
    pub inline_max: u8,
    /// log2 of the return entries (modulo 4).
    pub return_log2: u8,
    /// The pool's length.
    pub pool_len: u16,
    /// Words written over the region's start after `init`, before `attach`: a peer that
    /// lies in its header.
    pub header: Vec<(u8, u64)>,
    /// What happens then.
    pub ops: Vec<RingOp>,
}

/// One operation of a [`RingCase`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum RingOp {
    /// The producer pushes `len` inline bytes (modulo 256).
    Push {
        /// The binding.
        binding: u32,
        /// Payload length.
        len: u8,
    },
    /// The producer pushes a pool range.
    PushPool(PoolRange),
    /// The consumer pops into a buffer of `buf` bytes (modulo 256).
    Pop {
        /// Buffer length.
        buf: u8,
    },
    /// The consumer parks (and, on `Sleep`, finishes parking).
    Park,
    /// The producer waits for room (and, on `Sleep`, finishes waiting).
    Wait,
    /// The consumer gives a range back.
    Return(PoolRange),
    /// The producer takes a range back.
    TakeReturn,
    /// The producer reads its credit.
    Free,
    /// The peer writes a word (index modulo the region's length).
    Write {
        /// Which word.
        word: u16,
        /// What it writes.
        value: u64,
    },
    /// The peer writes a run of words.
    Fill {
        /// The first word.
        start: u16,
        /// What it writes.
        words: Vec<u64>,
    },
    /// The producer sets its `writing` hint; the consumer reads it.
    Writing,
}

/// A ring's region for a case's geometry (log2 of the slots modulo 5, inline bytes modulo
/// 200, log2 of the return entries modulo 4, the pool's length), made by the consumer's
/// side, `header`'s words written over it, and the layouts the two sides see: the one it
/// created and the one the producer read; `None` if the producer refuses to attach, which
/// only a `header` may make it do.
pub(super) fn ring_region(
    (capacity_log2, inline_max, return_log2, pool_len): (u8, u8, u8, u16),
    header: &[(u8, u64)],
) -> Option<(Vec<AtomicU64>, Layout, Layout)> {
    let mut config = RingConfig::default();
    config
        .capacity(1 << (capacity_log2 % 5))
        .inline_max(u32::from(inline_max % 200))
        .return_capacity(1 << (return_log2 % 4))
        .pool_len(u64::from(pool_len));
    let layout = config.layout().expect("a small geometry is valid");
    let region: Vec<AtomicU64> = (0..layout.region_words())
        .map(|_| AtomicU64::new(0))
        .collect();
    let created = ring::init(&region, &config).expect("init on the right length");
    for (i, v) in header {
        if let Some(w) = region.get(usize::from(*i)) {
            w.store(*v, Relaxed);
        }
    }
    match ring::attach(&region) {
        Ok(attached) => Some((region, created, attached)),
        Err(_) => {
            assert!(!header.is_empty(), "a fresh ring attaches");
            None
        }
    }
}

/// The `ring_consume` target: [`run_ring`] on the input read as a [`RingCase`].
pub fn ring_consume(data: &[u8]) {
    if let Ok(case) = RingCase::arbitrary_take_rest(Unstructured::new(data)) {
        run_ring(&case);
    }
}

/// Runs one case. Panics (a fuzzer crash) if either end panics, returns something other than
/// a value or a [`RingError`], reads a payload it could not have been given, or, while no
/// word was written behind the ends' backs, if the ring is not a FIFO of what was pushed.
pub fn run_ring(case: &RingCase) {
    let geometry = (
        case.capacity_log2,
        case.inline_max,
        case.return_log2,
        case.pool_len,
    );
    let Some((region, created, attached)) = ring_region(geometry, &case.header) else {
        return;
    };
    let mut clean = case.header.is_empty();
    let mut producer = Producer::new(attached);
    let mut consumer = Consumer::new(created);
    let mut model = VecDeque::new();
    let mut seq = 0u64;
    let mut buf = [0u8; 256];
    // The producer's `writing` hint as it last set it (a push clears it).
    let mut writing = false;
    // Each end checks against its own validated copy of the geometry: the consumer's is what
    // it created, the producer's what it read, which a lying header may have changed.
    let within =
        |r: PoolRange, pool: u64| r.offset.checked_add(r.len).is_some_and(|end| end <= pool);
    let consumer_pool = |r| within(r, created.pool_len());
    let producer_pool = |r| within(r, attached.pool_len());
    for op in &case.ops {
        match op {
            RingOp::Push { binding, len } => {
                seq += 1;
                let bytes = [seq as u8; 255];
                let bytes = &bytes[..usize::from(*len)];
                match producer.push(&region, *binding, seq, Body::Inline(bytes)) {
                    Ok(Push::Done { .. }) => {
                        writing = false;
                        model.push_back((*binding, seq, bytes.to_vec()));
                    }
                    Ok(Push::Full) => assert!(!clean || model.len() as u64 == created.capacity()),
                    Err(RingError::TooLong { .. }) => assert!(bytes.len() > attached.inline_max()),
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            RingOp::PushPool(range) => {
                seq += 1;
                match producer.push(&region, 0, seq, Body::Pool(*range)) {
                    Ok(Push::Done { .. }) => {
                        writing = false;
                        model.push_back((0, seq, Vec::new()));
                    }
                    Ok(Push::Full) => {}
                    Err(RingError::PoolRange { .. }) => assert!(!producer_pool(*range)),
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            RingOp::Pop { buf: n } => {
                let b = &mut buf[..usize::from(*n)];
                match consumer.pop(&region, b) {
                    Ok(Some(m)) => {
                        match m.payload {
                            RingPayload::Inline { len } => {
                                assert!(len <= created.inline_max().min(b.len()))
                            }
                            RingPayload::Pool(r) => assert!(consumer_pool(r)),
                        }
                        if clean {
                            let (binding, s, bytes) = model.pop_front().expect("pushed");
                            assert_eq!((m.binding, m.seq), (binding, s));
                            if let RingPayload::Inline { len } = m.payload {
                                assert_eq!(b.get(..len), Some(&bytes[..]));
                            }
                        }
                    }
                    Ok(None) => assert!(!clean || model.is_empty()),
                    Err(RingError::BufferTooSmall { len, buf }) => assert!(len > buf),
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            RingOp::Park => match consumer.prepare_park(&region) {
                Ok(Park::Sleep) => {
                    assert!(!clean || model.is_empty());
                    let _ = consumer.finish_park(&region);
                }
                Ok(Park::Ready) => assert!(!clean || !model.is_empty()),
                Err(e) => assert!(!clean, "{e}"),
            },
            RingOp::Writing => {
                if producer.writing(&region, Some(3)).is_ok() {
                    writing = true;
                }
                let expected = if writing {
                    Writer::WritingOn(3)
                } else {
                    Writer::Idle
                };
                match consumer.producer_writing(&region) {
                    Ok(seen) => assert!(!clean || seen == expected),
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            RingOp::Wait => {
                if let Ok(Park::Sleep) = producer.prepare_wait(&region) {
                    assert!(!clean || model.len() as u64 == created.capacity());
                    let _ = producer.finish_wait(&region);
                }
            }
            RingOp::Return(range) => match consumer.push_return(&region, *range) {
                Ok(_) => assert!(consumer_pool(*range)),
                Err(RingError::PoolRange { .. }) => assert!(!consumer_pool(*range)),
                Err(e) => assert!(!clean, "{e}"),
            },
            RingOp::TakeReturn => {
                if let Ok(Some(range)) = producer.pop_return(&region) {
                    assert!(producer_pool(range));
                }
            }
            RingOp::Free => match producer.free(&region) {
                Ok(free) => {
                    assert!(free <= attached.capacity());
                    if clean {
                        assert_eq!(free, created.capacity() - model.len() as u64);
                    }
                }
                Err(e) => assert!(!clean, "{e}"),
            },
            RingOp::Write { word, value } => {
                let i = usize::from(*word) % region.len();
                if let Some(w) = region.get(i) {
                    w.store(*value, Relaxed);
                }
                clean = false;
            }
            RingOp::Fill { start, words } => {
                let start = usize::from(*start) % region.len();
                for (w, v) in region.iter().skip(start).zip(words) {
                    w.store(*v, Relaxed);
                }
                clean = false;
            }
        }
    }
}
