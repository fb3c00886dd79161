//! When a receiving thread polls the rings before it sleeps, seen from the kernel's count of
//! its sleeps (voluntary context switches), not timed. Alone in its binary: the other tests'
//! threads, spinning or not, would share its CPUs and delay the thread between its receives.

use std::time::{Duration, Instant};

use ipc_driver_std::{Node, SubscriptionOptions};

#[path = "shared/threads.rs"]
mod threads;
use threads::{pin, sleeps, two_cpus};

const WAIT: Duration = Duration::from_secs(10);

/// How long the pinger waits after an answer before its next ping: well under the default
/// receive spin (`ipc_driver_core::RECV_SPIN`, 10 µs).
const PAUSE: Duration = Duration::from_micros(4);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
}

/// A subscription that never polls (`spin(Duration::ZERO)`) sleeps whenever it waits, even
/// where the default would poll: here its next message always comes 4 µs after its reply
/// (the pinger spins, then pauses), which keeps a default subscription polling. Measured on
/// the 2-vCPU VM, sleeps per 500 messages: never 499-500; the default 15-46; a spin of its
/// own 0. (Without the pause, the next message often comes before a receive can sleep: 50.)
#[test]
fn a_subscription_that_never_polls_sleeps_for_its_messages() {
    const N: u64 = 500;
    let g = group();
    let echo = Node::builder("echo").group(&g).join().expect("join");
    let pinger = Node::builder("pinger").group(&g).join().expect("join");
    let pings = echo
        .subscription(
            "ping",
            SubscriptionOptions::block(WAIT).spin(Duration::ZERO),
        )
        .expect("sub");
    let pongs = pinger
        .subscription("pong", SubscriptionOptions::block(WAIT).spin(WAIT))
        .expect("sub");
    let pong = echo.publisher("pong", "x").expect("publisher");
    let ping = pinger.publisher("ping", "x").expect("publisher");
    let (eid, pid) = (echo.id(), pinger.id());
    for (node, other) in [(&echo, pid), (&pinger, eid)] {
        node.wait_view(WAIT, |v| {
            v.node(other).is_some_and(|n| !n.subscribes.is_empty())
        })
        .expect("routed");
    }
    // On two CPUs (if it may use two), so that a polling echo would find its pings in time.
    let cpus = two_cpus();
    let echoer = std::thread::spawn(move || {
        let _pinned = cpus.map(|[cpu, _]| pin(cpu));
        let mut slept = 0;
        for n in 0..=N {
            let m = pings.recv_timeout(WAIT).expect("a ping");
            assert_eq!(m[..], n.to_le_bytes());
            // From the answer to the first ping to the last one's arrival.
            match n {
                0 => slept = sleeps(),
                N => slept = sleeps() - slept,
                _ => {}
            }
            pong.publish(&m).expect("answer");
        }
        slept
    });
    let pinned = cpus.map(|[_, cpu]| pin(cpu));
    for n in 0..=N {
        // The next ping comes a few microseconds after the answer: time enough for the echo
        // to sleep, too little for a polling echo to give up.
        let answered = Instant::now();
        while answered.elapsed() < PAUSE {
            std::hint::spin_loop();
        }
        ping.publish(&n.to_le_bytes()).expect("publish");
        let m = pongs.recv_timeout(WAIT).expect("an answer");
        assert_eq!(m[..], n.to_le_bytes());
    }
    drop(pinned);
    let slept = echoer.join().expect("the echo");
    // One sleep per message, but for the few that came before their receive could sleep.
    assert!(
        slept >= N / 2,
        "the echo slept {slept} times for {N} messages: it polled"
    );
}
