//! Loom models of the ring: the same `Producer` and `Consumer` code, on loom's atomics, with
//! loom's `Notify` standing in for each side's eventfd (a token that `wait` consumes, like an
//! eventfd's counter). A lost wakeup shows as a deadlock, which loom reports; a half-written
//! slot shows as a payload that does not match its seq. [`link`] models the link-level
//! protocol on top, as the drivers run it.
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target-loom \
//!     cargo test -p ipc-proto --release --lib ring::loom
//! ```
//!
//! Each model takes seconds (`returns_with_room_and_without` about 8); building takes minutes
//! on 2 cores (every dependency again, with `--cfg loom`, in release). `-- --ignored` adds
//! `link::sweep`, 288 more link models (about 5 minutes). `LOOM_MAX_PREEMPTIONS` overrides
//! each model's preemption bound (2 or 3).

use std::sync::atomic::Ordering;

use ::loom::sync::atomic::AtomicU64;
use ::loom::sync::{Arc, Notify};
use ::loom::thread;

use super::*;

mod link;

impl Word for AtomicU64 {
    fn load(&self, order: Ordering) -> u64 {
        Self::load(self, order)
    }
    fn store(&self, value: u64, order: Ordering) {
        Self::store(self, value, order);
    }
    fn fence(order: Ordering) {
        ::loom::sync::atomic::fence(order);
    }
}

/// A ring of `capacity` slots with 16 inline bytes, and its two ends.
fn ring(capacity: u32) -> (Arc<Vec<AtomicU64>>, Producer, Consumer) {
    let config = *RingConfig::default()
        .capacity(capacity)
        .inline_max(16)
        .return_capacity(1)
        .pool_len(64);
    let words = config.layout().expect("layout").region_words();
    let region: Arc<Vec<AtomicU64>> = Arc::new((0..words).map(|_| AtomicU64::new(0)).collect());
    let layout = init(&region[..], &config).expect("init");
    let attached = attach(&region[..]).expect("attach");
    (region, Producer::new(attached), Consumer::new(layout))
}

/// The payload of message `seq`: two words, both derived from it.
fn payload(seq: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&seq.to_le_bytes());
    b[8..].copy_from_slice(&(!seq).to_le_bytes());
    b
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = ::loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    builder.check(f);
}

/// Producer pushes 2 messages through a 1-slot ring, blocking on a full ring (the `Block`
/// policy); the consumer parks on an empty one. Neither wakeup is ever lost, and every
/// message arrives whole and in order.
#[test]
fn push_pop_park_wake() {
    const N: u64 = 2;
    model(|| {
        let (region, mut producer, mut consumer) = ring(1);
        let consumer_fd = Arc::new(Notify::new());
        let producer_fd = Arc::new(Notify::new());
        let (r2, cfd, pfd) = (region.clone(), consumer_fd.clone(), producer_fd.clone());
        let publisher = thread::spawn(move || {
            let r = &r2[..];
            for seq in 1..=N {
                loop {
                    match producer.push(r, 1, seq, Body::Inline(&payload(seq))) {
                        Ok(Push::Done { wake }) => {
                            if wake {
                                cfd.notify();
                            }
                            break;
                        }
                        Ok(Push::Full) => {
                            if producer.prepare_wait(r) == Ok(Park::Sleep) {
                                pfd.wait();
                                producer.finish_wait(r).expect("finish_wait");
                            }
                        }
                        Err(e) => panic!("push: {e}"),
                    }
                }
            }
        });
        let r = &region[..];
        let mut buf = [0u8; 16];
        let mut next = 1;
        while next <= N {
            match consumer.pop(r, &mut buf).expect("pop") {
                Some(m) => {
                    assert_eq!(m.seq, next);
                    assert_eq!(m.payload, RingPayload::Inline { len: 16 });
                    assert_eq!(buf, payload(next), "a whole slot");
                    if m.wake_producer {
                        producer_fd.notify();
                    }
                    next += 1;
                }
                None => {
                    if consumer.prepare_park(r).expect("park") == Park::Sleep {
                        consumer_fd.wait();
                        consumer.finish_park(r).expect("finish_park");
                    }
                }
            }
        }
        publisher.join().expect("publisher");
    });
}

/// Pooled messages with a one-range pool: the producer must get the range back through the
/// return ring before it can publish the next, and waits for it; the consumer returns each
/// range after reading the message. No wakeup is lost, every range comes back intact.
#[test]
fn return_ring_wakes_the_producer() {
    returns_wake(false);
}

/// [`return_ring_wakes_the_producer`], the producer waiting for returns only
/// ([`Producer::prepare_wait_returns`]): the consumer's pop does not wake it, its return does.
#[test]
fn return_ring_wakes_a_producer_waiting_for_returns_only() {
    returns_wake(true);
}

fn returns_wake(returns_only: bool) {
    const N: u64 = 2;
    model(move || {
        let (region, mut producer, mut consumer) = ring(2);
        let consumer_fd = Arc::new(Notify::new());
        let producer_fd = Arc::new(Notify::new());
        let (r2, cfd, pfd) = (region.clone(), consumer_fd.clone(), producer_fd.clone());
        let range = PoolRange {
            segment: 5,
            offset: 16,
            len: 48,
        };
        let publisher = thread::spawn(move || {
            let r = &r2[..];
            for seq in 1..=N {
                if seq > 1 {
                    // Wait for the one range to come back.
                    loop {
                        if let Some(back) = producer.pop_return(r).expect("pop_return") {
                            assert_eq!(back, range);
                            break;
                        }
                        let park = if returns_only {
                            producer.prepare_wait_returns(r)
                        } else {
                            producer.prepare_wait(r)
                        };
                        match park.expect("wait") {
                            Park::Sleep => {
                                pfd.wait();
                                producer.finish_wait(r).expect("finish_wait");
                            }
                            // Ready for a free slot, not for what we wait for: let the
                            // consumer run.
                            Park::Ready => thread::yield_now(),
                        }
                    }
                }
                match producer.push(r, 2, seq, Body::Pool(range)).expect("push") {
                    Push::Done { wake } => {
                        if wake {
                            cfd.notify();
                        }
                    }
                    Push::Full => panic!("2 slots, 1 range: never full"),
                }
            }
        });
        let r = &region[..];
        let mut next = 1;
        while next <= N {
            match consumer.pop(r, &mut []).expect("pop") {
                Some(m) => {
                    assert_eq!((m.seq, m.payload), (next, RingPayload::Pool(range)));
                    if returns_only {
                        assert!(!m.wake_producer, "a pop does not wake it");
                    }
                    match consumer.push_return(r, range).expect("push_return") {
                        Push::Done { wake } => {
                            if wake || m.wake_producer {
                                producer_fd.notify();
                            }
                        }
                        Push::Full => panic!("one range in flight: never full"),
                    }
                    next += 1;
                }
                None => {
                    if consumer.prepare_park(r).expect("park") == Park::Sleep {
                        consumer_fd.wait();
                        consumer.finish_park(r).expect("finish_park");
                    }
                }
            }
        }
        publisher.join().expect("publisher");
    });
}
