//! Our children: `ipc-driver-std` nodes in a fresh group per repetition, publishers with the
//! default options (`SendMode::Auto`: inline up to 16 KiB, pooled above it in a group open
//! only to this uid) and lossless subscriptions (`Block`, depth `window`).
//!
//! Blocking mode receives with `Subscription::recv` (the default way). Spin mode calls
//! `Subscription::try_recv` in a loop: there is no spin subscription yet (issue 13 adds one),
//! so the node's I/O thread still receives every record from the socket and hands it over,
//! and only the application thread spins; both share the process's one pinned CPU.

use std::time::{Duration, Instant};

use ipc_driver_std::{Message, Node, Publisher, RecvError, Subscription, SubscriptionOptions};

use crate::common::{Case, Control, Payload, Report, Res, checksum, err};

const SETUP: Duration = Duration::from_secs(30);
/// How long a lossless publisher may wait for room, and a receiver for a message.
const WAIT: Duration = Duration::from_secs(60);
const MIME: &str = "application/octet-stream";

fn join(case: &Case, name: &str) -> Res<Node> {
    Node::builder(name).group(case.name.as_str()).join().map_err(err("join"))
}

fn lossless(node: &Node, topic: &str, case: &Case) -> Res<Subscription> {
    let options = SubscriptionOptions {
        depth: case.window as u32,
        ..SubscriptionOptions::block(WAIT)
    };
    node.subscription(topic, options).map_err(err("subscription"))
}

fn publisher(node: &Node, topic: &str) -> Res<Publisher> {
    node.publisher(topic, MIME).map_err(err("publisher"))
}

/// Waits until another node subscribes to `topic`.
fn wait_subscriber(node: &Node, topic: &str) -> Res<()> {
    let me = node.id();
    node.wait_view(SETUP, |v| {
        v.nodes()
            .values()
            .any(|n| n.info.id != me && n.subscribes.contains_key(topic))
    })
    .map(|_| ())
    .map_err(err("waiting for the subscriber"))
}

/// The next message: `recv` (blocking) or `try_recv` in a loop (spin).
fn next(sub: &Subscription, blocking: bool) -> Res<Message> {
    if blocking {
        return sub.recv_timeout(WAIT).map_err(err("recv"));
    }
    let deadline = Instant::now() + WAIT;
    let mut spins = 0u32;
    loop {
        match sub.try_recv() {
            Ok(m) => return Ok(m),
            Err(RecvError::Empty) => {
                std::hint::spin_loop();
                spins = spins.wrapping_add(1);
                if spins % 4096 == 0 && Instant::now() > deadline {
                    return Err("try_recv: nothing within 60 s".into());
                }
            }
            Err(e) => return Err(format!("try_recv: {e}")),
        }
    }
}

/// Round trip, initiator: publishes on `ping`, waits for the echo on `pong`.
pub fn ping(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = join(case, "peers-ping")?;
    let back = lossless(&node, "pong", case)?;
    let to = publisher(&node, "ping")?;
    wait_subscriber(&node, "ping")?;
    let payload = Payload::new(case.size);
    let mut msg = vec![0u8; case.size];
    let mut report = Report::default();
    let mut samples = Vec::with_capacity(case.msgs as usize);
    for seq in 0..case.all() {
        let t = Instant::now();
        payload.write_to(&mut msg, seq);
        to.publish(&msg).map_err(err("publish"))?;
        let m = next(&back, blocking)?;
        let sum = checksum(&m);
        report.count_via(m.via().name());
        drop(m);
        let dt = t.elapsed();
        if sum != payload.sum(seq) {
            return Err(format!("ours: echo {seq} differs"));
        }
        if seq >= case.warmup {
            samples.push(dt.as_nanos() as u64);
        }
        report.checksum = report.checksum.wrapping_add(sum);
        report.msgs += 1;
    }
    report.samples = samples;
    ctl.ack()?;
    Ok(report)
}

/// Round trip, echo: every message on `ping` back on `pong`.
pub fn echo(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = join(case, "peers-echo")?;
    let from = lossless(&node, "ping", case)?;
    let to = publisher(&node, "pong")?;
    wait_subscriber(&node, "pong")?;
    let mut report = Report::default();
    while report.msgs < case.all() {
        let m = next(&from, blocking)?;
        to.publish(&m).map_err(err("publish"))?;
        drop(m);
        report.msgs += 1;
    }
    // Leaving before the initiator has the last echo could lose it.
    ctl.wait_ack()?;
    Ok(report)
}

/// One-way, publisher: per message a loan (the buffer for inline, the pool segment for
/// pooled), the payload written into it in place, `send`.
pub fn send(case: &Case, ctl: &mut Control, _blocking: bool) -> Res<Report> {
    let node = join(case, "peers-pub")?;
    let to = publisher(&node, "bench")?;
    wait_subscriber(&node, "bench")?;
    let payload = Payload::new(case.size);
    let mut report = Report::default();
    let one = |seq: u64, report: &mut Report| -> Res<()> {
        let mut loan = to.loan(case.size).map_err(err("loan"))?;
        payload.write_to(&mut loan, seq);
        to.send(loan).map_err(err("send"))?;
        report.checksum = report.checksum.wrapping_add(payload.sum(seq));
        report.msgs += 1;
        Ok(())
    };
    for seq in 0..case.warmup {
        one(seq, &mut report)?;
    }
    ctl.wait_ack()?;
    let t = Instant::now();
    for seq in case.warmup..case.all() {
        one(seq, &mut report)?;
    }
    ctl.wait_ack()?;
    report.secs = Some(t.elapsed().as_secs_f64());
    Ok(report)
}

/// One-way, subscriber: checks the length and checksums every byte of every message in place
/// (in the mapping for pooled ones, no copy), then drops it (a pooled range goes back).
pub fn recv(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = join(case, "peers-sub")?;
    let from = lossless(&node, "bench", case)?;
    let mut report = Report::default();
    if case.warmup == 0 {
        ctl.ack()?;
    }
    while report.msgs < case.all() {
        let m = next(&from, blocking)?;
        if m.len() != case.size {
            return Err(format!("ours: message of {} B, expected {}", m.len(), case.size));
        }
        report.checksum = report.checksum.wrapping_add(checksum(&m));
        report.count_via(m.via().name());
        drop(m);
        report.msgs += 1;
        if report.msgs == case.warmup || report.msgs == case.all() {
            ctl.ack()?;
        }
    }
    ctl.until_closed()?;
    Ok(report)
}
