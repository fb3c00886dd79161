//! Unit tests and the hostile-memory property test of the ring.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use proptest::prelude::*;

use super::layout::{
    D_BINDING_FLAGS, D_LEN, D_OFFSET, SLOTS_START, W_CONSUMER_PARKED, W_HEAD, W_PRODUCER_WAITING,
    W_RETURN_HEAD, W_RETURN_TAIL, W_TAIL, W_WRITING, WAIT_RETURNS_ONLY, next_wait_epoch,
};
use super::*;

fn region(config: &RingConfig) -> Vec<AtomicU64> {
    let words = config.layout().expect("layout").region_words();
    (0..words).map(|_| AtomicU64::new(0xdead_beef)).collect()
}

fn config(capacity: u32, inline_max: u32) -> RingConfig {
    *RingConfig::default()
        .capacity(capacity)
        .inline_max(inline_max)
        .return_capacity(4)
        .pool_len(1 << 20)
}

/// A ring with both ends: the creator made it as consumer, the other side attached.
fn pair(config: &RingConfig) -> (Vec<AtomicU64>, Producer, Consumer) {
    let r = region(config);
    let layout = init(&r, config).expect("init");
    let attached = attach(&r).expect("attach");
    assert_eq!(attached, layout);
    (r, Producer::new(attached), Consumer::new(layout))
}

fn push(p: &mut Producer, r: &[AtomicU64], seq: u64, bytes: &[u8]) -> Push {
    p.push(r, 7, seq, Body::Inline(bytes)).expect("push")
}

fn pop(c: &mut Consumer, r: &[AtomicU64]) -> Option<(u64, Vec<u8>, bool)> {
    let mut buf = vec![0u8; c.layout().inline_max()];
    let got = c.pop(r, &mut buf).expect("pop")?;
    assert_eq!(got.binding, 7);
    let RingPayload::Inline { len } = got.payload else {
        panic!("not inline: {got:?}");
    };
    Some((got.seq, buf[..len].to_vec(), got.wake_producer))
}

/// Every word one side writes often, and every flag the other reads at each message, has a
/// line of its own (two 64-byte cache lines): a push or a pop reads the other side's flag
/// from its own cache unless that side just parked or started waiting.
#[test]
fn hot_words_have_lines_of_their_own() {
    let hot = [
        W_HEAD,
        W_TAIL,
        W_RETURN_HEAD,
        W_RETURN_TAIL,
        W_PRODUCER_WAITING,
        W_CONSUMER_PARKED,
    ];
    let mut lines: Vec<usize> = hot.iter().map(|w| w / LINE_WORDS).collect();
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), hot.len(), "one line each: {hot:?}");
    assert!(lines[0] > 0, "none on the header's line");
    assert!(
        hot.iter().all(|w| w % LINE_WORDS == 0 && *w < SLOTS_START),
        "each at its line's start, before the slots"
    );
}

#[test]
fn config_layout_and_limits() {
    let layout = config(4, 13).layout().expect("layout");
    assert_eq!(
        layout.inline_max(),
        64,
        "rounded up to a multiple of 8 words"
    );
    assert_eq!(
        layout.region_words(),
        SLOTS_START + 4 * 16 + 4 * RETURN_WORDS
    );
    for bad in [0, 3, MAX_CAPACITY * 2] {
        assert!(matches!(
            config(bad, 8).layout(),
            Err(RingError::Geometry {
                what: "capacity",
                ..
            })
        ));
    }
    assert!(config(4, MAX_INLINE + 1).layout().is_err());
    assert!(
        config(MAX_CAPACITY, MAX_INLINE).layout().is_err(),
        "beyond 1 GiB"
    );
    let r = region(&config(4, 8));
    assert!(matches!(
        init(&r[1..], &config(4, 8)),
        Err(RingError::RegionSize { .. })
    ));
}

#[test]
fn attach_checks_the_header() {
    let c = config(4, 8);
    let r = region(&c);
    assert!(matches!(attach(&r), Err(RingError::Magic { .. })));
    init(&r, &c).expect("init");
    assert!(attach(&r[..r.len() - 1]).is_err());
    type Expect = fn(&RingError) -> bool;
    let cases: [(usize, u64, Expect); 5] = [
        (1, 1, |e| matches!(e, RingError::Version { found: 1 })),
        (2, 3, |e| matches!(e, RingError::Geometry { .. })),
        (3, 9, |e| matches!(e, RingError::Geometry { .. })),
        (6, 1, |e| matches!(e, RingError::Geometry { .. })),
        (
            W_TAIL,
            1,
            |e| matches!(e, RingError::NotFresh { word, .. } if *word == W_TAIL),
        ),
    ];
    for (word, value, expect) in cases {
        let old = r[word].swap(value, Relaxed);
        let err = attach(&r).expect_err("corrupt header");
        assert!(expect(&err), "word {word}: {err:?}");
        r[word].store(old, Relaxed);
    }
    // A consumer that parked on the empty ring before the producer came is no corruption.
    r[W_CONSUMER_PARKED].store(1, Relaxed);
    attach(&r).expect("a parked consumer");
    r[W_CONSUMER_PARKED].store(0, Relaxed);
    // Pool length 5 means a different region size only if words change: a changed pool
    // length is a changed header once attached.
    let layout = attach(&r).expect("attach");
    r[5].store(5, Relaxed);
    assert_eq!(
        layout.check_header(&r),
        Err(RingError::HeaderChanged { word: 5, found: 5 })
    );
}

#[test]
fn ranges_given_back_before_the_producer_attaches_reach_it() {
    // A subscriber creates the ring and may release ranges lent over the socket before the
    // publisher has attached (the cause of links refused as "not fresh").
    let c = config(4, 8);
    let r = region(&c);
    let layout = init(&r, &c).expect("init");
    let mut consumer = Consumer::new(layout);
    for offset in [0, 64] {
        let range = PoolRange {
            segment: 7,
            offset,
            len: 0,
        };
        assert!(matches!(
            consumer.push_return(&r, range),
            Ok(Push::Done { wake: false })
        ));
    }
    let mut producer = Producer::new(attach(&r).expect("two returns are no corruption"));
    let back: Vec<u64> = std::iter::from_fn(|| producer.pop_return(&r).expect("valid"))
        .map(|range| range.offset)
        .collect();
    assert_eq!(back, [0, 64]);
    // More returns than the return ring holds is corruption.
    let r = region(&c);
    let layout = init(&r, &c).expect("init");
    r[W_RETURN_HEAD].store(layout.return_capacity() + 1, Relaxed);
    assert!(matches!(
        attach(&r),
        Err(RingError::NotFresh { word, .. }) if word == W_RETURN_HEAD
    ));
}

#[test]
fn fifo_with_wraparound_full_and_empty() {
    let (r, mut p, mut c) = pair(&config(4, 24));
    assert_eq!(pop(&mut c, &r), None);
    let mut next_pop = 1u64;
    let mut seq = 1u64;
    for round in 0..10 {
        // Fill it up.
        while let Push::Done { .. } =
            push(&mut p, &r, seq, &seq.to_le_bytes()[..(seq % 9) as usize])
        {
            seq += 1;
        }
        assert_eq!(seq - next_pop, 4, "round {round}: full at capacity");
        assert_eq!(p.free(&r), Ok(0));
        // Take 3, leaving one behind so the indexes wrap at different places.
        for _ in 0..3 {
            let (s, bytes, _) = pop(&mut c, &r).expect("a message");
            assert_eq!(s, next_pop);
            assert_eq!(bytes, s.to_le_bytes()[..(s % 9) as usize]);
            next_pop += 1;
        }
        assert_eq!(p.free(&r), Ok(3));
    }
    while let Some((s, _, _)) = pop(&mut c, &r) {
        assert_eq!(s, next_pop);
        next_pop += 1;
    }
    assert_eq!(next_pop, seq);
    assert_eq!(c.pending(&r), Ok(0));
    assert_eq!(p.pushed(), c.popped());
}

#[test]
fn inline_sizes_round_trip() {
    let (r, mut p, mut c) = pair(&config(2, 4096));
    for len in [0usize, 1, 7, 8, 9, 63, 64, 65, 4095, 4096] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
        assert_eq!(
            push(&mut p, &r, len as u64, &bytes),
            Push::Done { wake: false }
        );
        let (_, got, _) = pop(&mut c, &r).expect("a message");
        assert!(got == bytes, "len {len}");
    }
    assert_eq!(
        p.push(&r, 1, 1, Body::Inline(&[0; 4097])),
        Err(RingError::TooLong {
            len: 4097,
            max: 4096
        })
    );
    let _ = push(&mut p, &r, 1, &[1; 100]);
    let mut small = [0u8; 99];
    assert_eq!(
        c.pop(&r, &mut small),
        Err(RingError::BufferTooSmall { len: 100, buf: 99 })
    );
    assert_eq!(pop(&mut c, &r).map(|m| m.1.len()), Some(100), "it stayed");
}

#[test]
fn pool_descriptors() {
    let (r, mut p, mut c) = pair(&config(2, 8));
    let range = PoolRange {
        segment: 9,
        offset: 4096,
        len: 100,
    };
    assert_eq!(
        p.push(&r, 3, 5, Body::Pool(range)),
        Ok(Push::Done { wake: false })
    );
    let got = c.pop(&r, &mut []).expect("pop").expect("a message");
    assert_eq!(
        (got.binding, got.seq, got.payload),
        (3, 5, RingPayload::Pool(range))
    );
    let beyond = PoolRange {
        segment: 9,
        offset: (1 << 20) - 10,
        len: 11,
    };
    assert!(matches!(
        p.push(&r, 3, 6, Body::Pool(beyond)),
        Err(RingError::PoolRange { .. })
    ));
    let overflow = PoolRange {
        segment: 9,
        offset: u64::MAX,
        len: 2,
    };
    assert!(matches!(
        p.push(&r, 3, 6, Body::Pool(overflow)),
        Err(RingError::PoolRange { .. })
    ));
}

#[test]
fn park_and_wake_decisions() {
    let (r, mut p, mut c) = pair(&config(2, 8));
    // Nobody parked: no wake.
    assert_eq!(push(&mut p, &r, 1, b"a"), Push::Done { wake: false });
    // A message is there: parking is refused.
    assert_eq!(c.prepare_park(&r), Ok(Park::Ready));
    assert_eq!(r[W_CONSUMER_PARKED].load(Relaxed), 0);
    pop(&mut c, &r).expect("a message");
    // Empty: sleep; the next push wakes, the one after does not (same park).
    assert_eq!(c.prepare_park(&r), Ok(Park::Sleep));
    assert_eq!(push(&mut p, &r, 2, b"b"), Push::Done { wake: true });
    assert_eq!(push(&mut p, &r, 3, b"c"), Push::Done { wake: false });
    c.finish_park(&r).expect("finish");
    assert_eq!(r[W_CONSUMER_PARKED].load(Relaxed), 0);
    // The ring is full: the producer waits, a pop wakes it once.
    assert_eq!(push(&mut p, &r, 4, b"d"), Push::Full);
    assert_eq!(p.prepare_wait(&r), Ok(Park::Sleep));
    assert!(
        pop(&mut c, &r).expect("b").2,
        "first pop wakes the producer"
    );
    assert!(!pop(&mut c, &r).expect("c").2, "once per wait");
    p.finish_wait(&r).expect("finish");
    assert_eq!(r[W_PRODUCER_WAITING].load(Relaxed), 0);
    // A new park is a new epoch: woken again.
    assert_eq!(c.prepare_park(&r), Ok(Park::Sleep));
    assert_eq!(push(&mut p, &r, 4, b"d"), Push::Done { wake: true });
    c.finish_park(&r).expect("finish");
    // Waiting with room is refused.
    assert_eq!(p.prepare_wait(&r), Ok(Park::Ready));
}

#[test]
fn a_producer_waiting_for_room_is_woken_once_half_the_ring_is_free() {
    let (r, mut p, mut c) = pair(&config(8, 8));
    for seq in 0..8 {
        assert_eq!(push(&mut p, &r, seq, b"x"), Push::Done { wake: false });
    }
    assert_eq!(push(&mut p, &r, 8, b"x"), Push::Full);
    assert_eq!(p.prepare_wait(&r), Ok(Park::Sleep));
    // Woken at the first free slot, it would fill it and wait again: a wake per message.
    for seq in 0..3 {
        let (got, _, wake) = pop(&mut c, &r).expect("a message");
        assert_eq!(got, seq);
        assert!(!wake, "pop {seq}: more than half the ring still full");
    }
    assert!(pop(&mut c, &r).expect("the fourth").2, "half free: woken");
    assert!(!pop(&mut c, &r).expect("the fifth").2, "once per wait");
    p.finish_wait(&r).expect("finish");
    // The next wait, the same: the pops between do not count towards it.
    for seq in 8..13 {
        assert_eq!(push(&mut p, &r, seq, b"x"), Push::Done { wake: false });
    }
    assert_eq!(p.prepare_wait(&r), Ok(Park::Sleep), "full again");
    let woke: Vec<bool> = std::iter::from_fn(|| pop(&mut c, &r).map(|m| m.2)).collect();
    assert_eq!(
        woke,
        [false, false, false, true, false, false, false, false]
    );
}

#[test]
fn return_ring() {
    let (r, mut p, mut c) = pair(&config(2, 8));
    assert_eq!(p.pop_return(&r), Ok(None));
    let range = |i: u64| PoolRange {
        segment: 1,
        offset: i * 64,
        len: 64,
    };
    for round in 0..3u64 {
        for i in 0..4 {
            assert_eq!(
                c.push_return(&r, range(round * 4 + i)),
                Ok(Push::Done { wake: false })
            );
        }
        assert_eq!(c.push_return(&r, range(99)), Ok(Push::Full));
        for i in 0..4 {
            assert_eq!(p.pop_return(&r), Ok(Some(range(round * 4 + i))));
        }
        assert_eq!(p.pop_return(&r), Ok(None));
    }
    // A producer waiting for a range is woken by a return, and a waiting return is Ready.
    assert_eq!(push(&mut p, &r, 1, b""), Push::Done { wake: false });
    assert_eq!(push(&mut p, &r, 2, b""), Push::Done { wake: false });
    assert_eq!(p.prepare_wait(&r), Ok(Park::Sleep));
    assert_eq!(c.push_return(&r, range(0)), Ok(Push::Done { wake: true }));
    p.finish_wait(&r).expect("finish");
    assert_eq!(p.prepare_wait(&r), Ok(Park::Ready));
    assert!(matches!(
        c.push_return(
            &r,
            PoolRange {
                segment: 1,
                offset: 1 << 20,
                len: 1
            }
        ),
        Err(RingError::PoolRange { .. })
    ));
}

#[test]
fn a_wait_for_returns_only_is_woken_by_a_return_not_a_pop() {
    let (r, mut p, mut c) = pair(&config(2, 8));
    let range = PoolRange {
        segment: 1,
        offset: 0,
        len: 64,
    };
    assert_eq!(push(&mut p, &r, 1, b""), Push::Done { wake: false });
    assert_eq!(p.prepare_wait_returns(&r), Ok(Park::Sleep));
    let waiting = r[W_PRODUCER_WAITING].load(Relaxed);
    assert_ne!(waiting & WAIT_RETURNS_ONLY, 0, "flagged");
    assert!(
        !pop(&mut c, &r).expect("a message").2,
        "a pop does not wake"
    );
    // The pop took nothing of the wake: the return still owes it.
    assert_eq!(c.push_return(&r, range), Ok(Push::Done { wake: true }));
    assert_eq!(c.push_return(&r, range), Ok(Push::Done { wake: false }));
    p.finish_wait(&r).expect("finish");
    assert_eq!(p.prepare_wait_returns(&r), Ok(Park::Ready), "returns wait");
    // A wait for room is not flagged, and a pop wakes it.
    assert_eq!(push(&mut p, &r, 2, b""), Push::Done { wake: false });
    assert_eq!(push(&mut p, &r, 3, b""), Push::Done { wake: false });
    while p.pop_return(&r).expect("returns").is_some() {}
    assert_eq!(p.prepare_wait(&r), Ok(Park::Sleep));
    assert_eq!(r[W_PRODUCER_WAITING].load(Relaxed) & WAIT_RETURNS_ONLY, 0);
    assert!(pop(&mut c, &r).expect("a message").2, "a pop wakes");
    // Wait epochs never collide with the flag, nor are 0.
    assert_eq!(next_wait_epoch(WAIT_RETURNS_ONLY - 1), 1);
    assert_eq!(next_wait_epoch(u64::MAX), 1);
    assert_eq!(next_wait_epoch(5), 6);
}

/// A return while messages wait to be popped owes the wait for returns its wake until the
/// pop that leaves the ring empty, or until half the return ring is given: a stream of
/// pooled messages wakes its producer per batch, not per message.
#[test]
fn returns_while_messages_wait_wake_the_producer_once_the_ring_is_empty_or_half_returned() {
    let (r, mut p, mut c) = pair(&config(4, 8));
    let range = PoolRange {
        segment: 1,
        offset: 0,
        len: 64,
    };
    for seq in 1..=3 {
        assert_eq!(push(&mut p, &r, seq, b""), Push::Done { wake: false });
    }
    assert_eq!(p.prepare_wait_returns(&r), Ok(Park::Sleep));
    assert!(
        !pop(&mut c, &r).expect("message 1").2,
        "a pop does not wake"
    );
    assert_eq!(
        c.push_return(&r, range),
        Ok(Push::Done { wake: false }),
        "two messages wait: the wake is owed"
    );
    assert!(!pop(&mut c, &r).expect("message 2").2, "one waits still");
    assert!(
        pop(&mut c, &r).expect("message 3").2,
        "the ring is empty: owed"
    );
    assert_eq!(c.push_return(&r, range), Ok(Push::Done { wake: false }));
    assert!(pop(&mut c, &r).is_none());

    // A new wait, with more messages: the second return (half of 4) wakes it.
    while p.pop_return(&r).expect("returns").is_some() {}
    p.finish_wait(&r).expect("finish");
    for seq in 4..=6 {
        assert_eq!(push(&mut p, &r, seq, b""), Push::Done { wake: false });
    }
    assert_eq!(p.prepare_wait_returns(&r), Ok(Park::Sleep));
    assert!(!pop(&mut c, &r).expect("message 4").2);
    assert_eq!(c.push_return(&r, range), Ok(Push::Done { wake: false }));
    assert_eq!(
        c.push_return(&r, range),
        Ok(Push::Done { wake: true }),
        "half"
    );
    assert!(!pop(&mut c, &r).expect("message 5").2, "woken already");
    assert!(!pop(&mut c, &r).expect("message 6").2);

    // With no message waiting, a return wakes at once.
    while p.pop_return(&r).expect("returns").is_some() {}
    p.finish_wait(&r).expect("finish");
    assert_eq!(p.prepare_wait_returns(&r), Ok(Park::Sleep));
    assert_eq!(c.push_return(&r, range), Ok(Push::Done { wake: true }));

    // A message that came after the last pop read the head keeps the wake owed: the pop
    // that empties the ring reads the head again.
    while p.pop_return(&r).expect("returns").is_some() {}
    p.finish_wait(&r).expect("finish");
    assert_eq!(push(&mut p, &r, 7, b""), Push::Done { wake: false });
    assert_eq!(push(&mut p, &r, 8, b""), Push::Done { wake: false });
    assert_eq!(p.prepare_wait_returns(&r), Ok(Park::Sleep));
    assert!(!pop(&mut c, &r).expect("message 7").2);
    assert_eq!(c.push_return(&r, range), Ok(Push::Done { wake: false }));
    assert_eq!(push(&mut p, &r, 9, b""), Push::Done { wake: false });
    assert!(!pop(&mut c, &r).expect("message 8").2, "message 9 came");
    assert!(pop(&mut c, &r).expect("message 9").2, "now empty");
}

#[test]
fn hostile_indexes_and_descriptors() {
    let c = config(4, 16);
    let check = |setup: &dyn Fn(&[AtomicU64], &mut Producer, &mut Consumer), expect: &str| {
        let (r, mut p, mut cons) = pair(&c);
        let _ = push(&mut p, &r, 1, b"x");
        setup(&r, &mut p, &mut cons);
        let mut buf = [0u8; 64];
        let got = cons.pop(&r, &mut buf).and_then(|_| cons.pop(&r, &mut buf));
        let err = got.expect_err(expect);
        assert!(format!("{err:?}").starts_with(expect), "{expect}: {err:?}");
    };
    // Head beyond tail + capacity, or behind what was seen.
    check(&|r, _, _| r[W_HEAD].store(5, Relaxed), "Index");
    check(&|r, _, _| r[W_HEAD].store(u64::MAX, Relaxed), "Index");
    check(
        &|r, _, c| {
            assert_eq!(c.pending(r), Ok(1));
            r[W_HEAD].store(0, Relaxed);
            let _ = c.pop(r, &mut [0; 16]);
        },
        "Index",
    );
    // Descriptor: flags, inline length, pool range.
    let slot = SLOTS_START;
    check(
        &|r, _, _| r[slot + D_BINDING_FLAGS].store(7 | 4 << 32, Relaxed),
        "Flags",
    );
    check(&|r, _, _| r[slot + D_LEN].store(65, Relaxed), "Length");
    check(
        &|r, _, _| r[slot + D_LEN].store(u64::MAX, Relaxed),
        "Length",
    );
    check(
        &|r, _, _| {
            r[slot + D_BINDING_FLAGS].store(7 | 1 << 32, Relaxed);
            r[slot + D_OFFSET].store(u64::MAX, Relaxed);
        },
        "PoolRange",
    );

    // The producer's view of a hostile consumer.
    let (r, mut p, _) = pair(&c);
    for _ in 0..4 {
        let _ = push(&mut p, &r, 1, b"x");
    }
    r[W_TAIL].store(5, Relaxed);
    assert!(matches!(
        p.free(&r),
        Err(RingError::Index { index: "tail", .. })
    ));
    r[W_TAIL].store(2, Relaxed);
    assert_eq!(p.free(&r), Ok(2));
    r[W_TAIL].store(1, Relaxed);
    assert!(
        matches!(p.free(&r), Err(RingError::Index { index: "tail", .. })),
        "backwards"
    );
    r[W_TAIL].store(2, Relaxed);
    r[W_RETURN_HEAD].store(5, Relaxed);
    assert!(matches!(
        p.pop_return(&r),
        Err(RingError::Index {
            index: "return head",
            ..
        })
    ));
    let (r, _, mut cons) = pair(&c);
    for _ in 0..4 {
        let _ = cons
            .push_return(
                &r,
                PoolRange {
                    segment: 0,
                    offset: 0,
                    len: 0,
                },
            )
            .expect("return");
    }
    r[W_RETURN_TAIL].store(5, Relaxed);
    assert!(matches!(
        cons.push_return(
            &r,
            PoolRange {
                segment: 0,
                offset: 0,
                len: 0
            }
        ),
        Err(RingError::Index {
            index: "return tail",
            ..
        })
    ));
    // A changed header is seen before sleeping.
    r[2].store(8, Relaxed);
    assert!(matches!(
        cons.prepare_park(&r),
        Err(RingError::HeaderChanged { word: 2, .. })
    ));
    // A region of the wrong length is refused, not indexed.
    assert!(matches!(
        cons.pop(&r[1..], &mut []),
        Err(RingError::RegionSize { .. })
    ));
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Op {
    Push(u16),
    PushPool(u64, u64),
    Pop,
    Park,
    Wait,
    Return(u64, u64),
    TakeReturn,
    /// Write any value at any word: the peer misbehaving.
    Corrupt(usize, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u16>().prop_map(|n| Op::Push(n % 80)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(o, l)| Op::PushPool(o % 2048, l % 2048)),
        4 => Just(Op::Pop),
        1 => Just(Op::Park),
        1 => Just(Op::Wait),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(o, l)| Op::Return(o % 2048, l % 2048)),
        1 => Just(Op::TakeReturn),
        1 => (any::<usize>(), prop_oneof![any::<u64>(), 0..8u64]).prop_map(|(w, v)| Op::Corrupt(w, v)),
    ]
}

proptest! {
    /// Whatever the peer writes between operations, both sides only ever return values or
    /// `RingError`s (never panic), and without corruption the ring is a FIFO.
    #[test]
    fn hostile_writes_never_panic(ops in proptest::collection::vec(op(), 0..200)) {
        let mut cfg = config(4, 64);
        cfg.pool_len(1024);
        let (r, mut p, mut c) = pair(&cfg);
        let mut corrupted = false;
        let mut model = std::collections::VecDeque::new();
        let mut seq = 0u64;
        let mut buf = [0u8; 64];
        for op in ops {
            match op {
                Op::Push(n) => {
                    seq += 1;
                    let bytes = vec![seq as u8; usize::from(n)];
                    match p.push(&r, 7, seq, Body::Inline(&bytes)) {
                        Ok(Push::Done { .. }) => model.push_back(bytes),
                        Ok(Push::Full) => prop_assert!(corrupted || model.len() == 4),
                        Err(RingError::TooLong { .. }) => prop_assert!(n > 64),
                        Err(e) => prop_assert!(corrupted, "{e}"),
                    }
                }
                Op::PushPool(offset, len) => {
                    let range = PoolRange { segment: 1, offset, len };
                    let _ = p.push(&r, 7, 0, Body::Pool(range));
                    corrupted |= model.len() < 4; // the model tracks inline messages only
                }
                Op::Pop => match c.pop(&r, &mut buf) {
                    Ok(Some(m)) => {
                        if !corrupted {
                            let RingPayload::Inline { len } = m.payload else {
                                return Err(TestCaseError::fail("pool payload"));
                            };
                            prop_assert_eq!(Some(buf[..len].to_vec()), model.pop_front());
                        }
                    }
                    Ok(None) => prop_assert!(corrupted || model.is_empty()),
                    Err(e) => prop_assert!(corrupted, "{e}"),
                },
                Op::Park => {
                    if let Ok(Park::Sleep) = c.prepare_park(&r) {
                        prop_assert!(corrupted || model.is_empty());
                        let _ = c.finish_park(&r);
                    }
                }
                Op::Wait => {
                    if let Ok(Park::Sleep) = p.prepare_wait(&r) {
                        let _ = p.finish_wait(&r);
                    }
                }
                Op::Return(offset, len) => {
                    let _ = c.push_return(&r, PoolRange { segment: 2, offset, len });
                }
                Op::TakeReturn => {
                    if let Ok(Some(range)) = p.pop_return(&r) {
                        prop_assert!(range.offset.checked_add(range.len).is_some_and(|e| e <= 1024));
                    }
                }
                Op::Corrupt(w, v) => {
                    if let Some(word) = r.get(w % r.len()) {
                        word.store(v, Relaxed);
                        corrupted = true;
                    }
                }
            }
        }
    }
}

/// The `writing` hint: set by the producer, seen by the consumer with the producer's CPU if it
/// gave one, cleared by the next push, and beside the head on the producer's line (the
/// consumer reads it with the head).
#[test]
fn the_writing_hint_lasts_until_the_next_push() {
    let (r, mut p, mut c) = pair(&config(4, 8));
    let seen = |c: &Consumer, r: &[AtomicU64]| c.producer_writing(r).expect("read");
    assert_eq!(seen(&c, &r), Writer::Idle, "a fresh ring");
    p.writing(&r, None).expect("writing");
    p.writing(&r, None).expect("twice is once");
    assert_eq!(seen(&c, &r), Writer::Writing);
    p.writing(&r, Some(0)).expect("on CPU 0");
    assert_eq!(seen(&c, &r), Writer::WritingOn(0), "the CPU, once known");
    assert_eq!(pop(&mut c, &r), None, "a hint is no message");
    assert!(matches!(push(&mut p, &r, 1, b"m"), Push::Done { .. }));
    assert_eq!(seen(&c, &r), Writer::Idle, "the push cleared it");
    assert_eq!(pop(&mut c, &r).map(|m| m.0), Some(1));
    p.writing(&r, Some(7)).expect("on CPU 7");
    assert_eq!(seen(&c, &r), Writer::WritingOn(7), "set again after a push");
    assert_eq!(
        W_WRITING / LINE_WORDS,
        W_HEAD / LINE_WORDS,
        "on the head's line"
    );
    // Worth polling for from another CPU, or from one unknown; not from the writer's own.
    let on7 = Writer::WritingOn(7);
    assert!(on7.worth_polling_from(Some(1)) && on7.worth_polling_from(None));
    assert!(!on7.worth_polling_from(Some(7)));
    assert!(Writer::Writing.worth_polling_from(Some(7)));
    assert!(!Writer::Idle.worth_polling_from(None));
    // The peer's word: any value is only a hint, never an error (an older producer stores 1).
    for (word, writer) in [
        (1, Writer::Writing),
        (2, Writer::WritingOn(0)),
        (u64::from(u32::MAX) + 2, Writer::WritingOn(u32::MAX)),
        (u64::from(u32::MAX) + 3, Writer::Writing),
        (u64::MAX, Writer::Writing),
    ] {
        r[W_WRITING].store(word, Relaxed);
        assert_eq!(seen(&c, &r), writer, "{word}");
    }
    assert!(matches!(
        c.producer_writing(&r[..SLOTS_START - 1]),
        Err(RingError::RegionSize { .. })
    ));
}
