//! The shared-memory ring between two threads: push on one, pop on the other, 64 B and 4 KiB
//! inline messages. Both sides spin (no eventfd here: ipc-proto does no I/O), so this is the
//! ring's own ceiling, not a driver's; divan prints it as items (messages) per second.
//!
//! `cargo bench -p ipc-proto --bench ring`

use std::sync::atomic::AtomicU64;

use divan::Bencher;
use divan::counter::ItemsCount;
use ipc_proto::ring::{self, Body, Consumer, Producer, Push, RingConfig};

fn main() {
    divan::main();
}

/// Messages per iteration.
const N: u64 = 20_000;

#[divan::bench(args = [64, 4096], sample_count = 10, sample_size = 1)]
fn push_pop_two_threads(bencher: Bencher<'_, '_>, size: usize) {
    let mut config = RingConfig::default();
    config.capacity(256).inline_max(4096);
    let layout = config.layout().expect("layout");
    let region: Vec<AtomicU64> = (0..layout.region_words())
        .map(|_| AtomicU64::new(0))
        .collect();
    let payload = vec![0x5a_u8; size];
    bencher.counter(ItemsCount::new(N)).bench_local(|| {
        let layout = ring::init(&region, &config).expect("init");
        let mut producer = Producer::new(layout);
        let mut consumer = Consumer::new(layout);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut buf = vec![0u8; 4096];
                let mut got = 0;
                while got < N {
                    match consumer.pop(&region, &mut buf).expect("pop") {
                        Some(m) => {
                            divan::black_box(&m);
                            got += 1;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
            });
            for seq in 1..=N {
                while producer
                    .push(&region, 1, seq, Body::Inline(&payload))
                    .expect("push")
                    == Push::Full
                {
                    std::hint::spin_loop();
                }
            }
        });
    });
}
