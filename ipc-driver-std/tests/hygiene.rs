//! A million messages of mixed sizes and modes leave the process's fds and mappings where they
//! started. Alone in its binary: nothing else in the process opens fds or maps memory.

use std::time::{Duration, Instant};

use ipc_driver_std::{Node, PublisherOptions, SegmentsInUse, SendMode, SubscriptionOptions};

#[path = "shared/wait.rs"]
mod wait;

const WAIT: Duration = Duration::from_secs(30);

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

/// Mappings of memfds: the segments this driver maps and the data links' rings. Other
/// mappings are left out because glibc may add an allocator arena (an anonymous mapping it
/// keeps for good) whenever threads contend, which a loaded machine makes likely during the
/// long run.
fn mappings() -> usize {
    memfd_mappings(|_| true)
}

/// Of those, the segments: the rings stay mapped as long as their links.
fn segment_mappings() -> usize {
    memfd_mappings(|name| !name.starts_with("ipc-pubsub-ring"))
}

fn memfd_mappings(keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .expect("procfs")
        .lines()
        .filter_map(|l| l.split_once("/memfd:").map(|(_, name)| name))
        .filter(|name| keep(name))
        .count()
}

#[test]
fn a_million_messages_leave_fds_and_mappings_as_they_were() {
    let total: u64 = std::env::var("IPC_HYGIENE_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let g = format!("t-{:016x}", getrandom::u64().expect("OS randomness"));
    let p = Node::builder("pub").group(&g).join().expect("join");
    let s = Node::builder("sub").group(&g).join().expect("join");
    // Warm up allocators and thread stacks before the baseline.
    let modes = [SendMode::Inline, SendMode::Pooled, SendMode::Fresh];
    let publishers: Vec<_> = modes
        .iter()
        .map(|&mode| {
            let options = PublisherOptions {
                mode,
                ..PublisherOptions::default()
            };
            p.publisher_with(&format!("t-{mode:?}"), "x", options)
                .expect("publisher")
        })
        .collect();
    let subs: Vec<_> = modes
        .iter()
        .map(|mode| {
            s.subscription(&format!("t-{mode:?}"), SubscriptionOptions::block(WAIT))
                .expect("sub")
        })
        .collect();
    let sid = s.id();
    p.wait_view(WAIT, |v| {
        v.node(sid).is_some_and(|n| n.subscribes.len() == 3)
    })
    .expect("routed");
    let subs = std::sync::Arc::new(subs);
    // A short run first: thread stacks, allocator arenas and pools reach their steady state
    // (glibc keeps a thread's arena after the thread ends), then idle pools are trimmed.
    run(&publishers, &subs, 20_000);
    // The subscriber unmaps the trimmed segments after the publisher retires them: a baseline
    // taken before it has would count its mappings (and the end never get back to them).
    settle(&p, None);
    settle_mappings(0);
    let before = (fds(), mappings());
    let started = Instant::now();
    let (sent, sent_bytes) = run(&publishers, &subs, total);
    let took = started.elapsed();
    settle(&p, Some(before));
    eprintln!("{total} messages ({sent:?} inline/pooled/fresh, {sent_bytes} bytes) in {took:?}");
}

/// Publishes `total` messages, mostly small inline ones, every 10th pooled (64 KiB), every
/// 100th fresh (200 KB), while a reader thread drops each as it comes; returns what was sent.
fn run(
    publishers: &[ipc_driver_std::Publisher],
    subs: &std::sync::Arc<Vec<ipc_driver_std::Subscription>>,
    total: u64,
) -> ([u64; 3], u64) {
    let reader_subs = std::sync::Arc::clone(subs);
    let reader = std::thread::spawn(move || {
        let mut got = [0u64; 3];
        let mut bytes = 0u64;
        while got.iter().sum::<u64>() < total {
            let mut idle = true;
            for (i, sub) in reader_subs.iter().enumerate() {
                while let Ok(m) = sub.try_recv() {
                    got[i] += 1;
                    bytes += m.len() as u64;
                    idle = false;
                }
            }
            if idle && let Ok(m) = reader_subs[0].recv_timeout(Duration::from_millis(1)) {
                got[0] += 1;
                bytes += m.len() as u64;
            }
        }
        (got, bytes)
    });
    let (mut sent, mut sent_bytes) = ([0u64; 3], 0u64);
    for n in 0..total {
        let (i, len) = match n {
            n if n % 100 == 0 => (2, 200_000),
            n if n % 10 == 0 => (1, 65_536),
            n => (0, 16 + (n % 200) as usize),
        };
        let mut loan = publishers[i].loan(len).expect("loan");
        loan[0] = n as u8;
        publishers[i].send(loan).expect("send");
        sent[i] += 1;
        sent_bytes += len as u64;
    }
    let received = reader.join().expect("reader");
    assert_eq!(received, (sent, sent_bytes), "every message arrived");
    (sent, sent_bytes)
}

/// Waits until every segment is back and idle pools are trimmed, and, if given, until fds and
/// mappings are back to `baseline`.
fn settle(p: &Node, baseline: Option<(usize, usize)>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let idle = p.segments_in_use() == SegmentsInUse::default() && p.pool_bytes() == 0;
        if idle && baseline.is_none_or(|b| (fds(), mappings()) == b) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "in use {:?}, pool {} bytes; fds and mappings {:?}, before {baseline:?}",
            p.segments_in_use(),
            p.pool_bytes(),
            (fds(), mappings())
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until this process maps `n` memfd segments.
fn settle_mappings(n: usize) {
    wait::wait_count(n, WAIT, "memfd segment mappings", segment_mappings);
}
