//! The iceoryx2 children: publish-subscribe over `ipc::Service`, `[u8]` slices.
//!
//! Every service is configured so that nothing is lost silently: no safe overflow, a
//! subscriber buffer of `window` samples, and publishers that retry until the sample is
//! delivered (`BackpressureStrategy::RetryUntilDelivered`). Slices are sized for the case's
//! payload (`initial_max_slice_len`). In blocking mode each publish is followed by a notify on
//! an event service of the same name, and the receiver waits on its `Listener` whenever its
//! subscriber is empty (the "publish + notify" pattern); in spin mode there are no event
//! services and the receiver calls `receive()` in a loop.

use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::port::update_connections::UpdateConnections;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;
use iceoryx2::service::port_factory::event::PortFactory as EventFactory;
use iceoryx2::service::port_factory::publish_subscribe::PortFactory as PubSubFactory;

use crate::common::{Case, Control, Payload, Report, Res, checksum, err, stamp};

/// How long setup may take before a child gives up.
const SETUP: Duration = Duration::from_secs(30);

type Svc = ipc::Service;

/// One direction's sending half: the publisher and, in blocking mode, its notifier.
struct Out {
    _svc: PubSubFactory<Svc, [u8], ()>,
    _ev: Option<EventFactory<Svc>>,
    publisher: Publisher<Svc, [u8], ()>,
    notifier: Option<Notifier<Svc>>,
}

/// One direction's receiving half: the subscriber and, in blocking mode, its listener.
struct In {
    _svc: PubSubFactory<Svc, [u8], ()>,
    _ev: Option<EventFactory<Svc>>,
    subscriber: Subscriber<Svc, [u8], ()>,
    listener: Option<Listener<Svc>>,
}

pub fn node() -> Res<Node<Svc>> {
    set_log_level(LogLevel::Error);
    NodeBuilder::new().create::<Svc>().map_err(err("iceoryx2 node"))
}

/// Opens (or creates) the publish-subscribe service `name`, with the same settings on both
/// sides. Both children may race to create it: retry while the other one is creating it.
fn pubsub(node: &Node<Svc>, name: &str, case: &Case) -> Res<PubSubFactory<Svc, [u8], ()>> {
    let sname = ServiceName::new(name).map_err(err("service name"))?;
    let deadline = Instant::now() + SETUP;
    loop {
        let r = node
            .service_builder(&sname)
            .publish_subscribe::<[u8]>()
            .enable_safe_overflow(false)
            .subscriber_max_buffer_size(case.window)
            .subscriber_max_borrowed_samples(2)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1)
            .max_nodes(2)
            .open_or_create();
        match r {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("service {name}: {e:?}")),
        }
    }
}

fn event(node: &Node<Svc>, name: &str) -> Res<EventFactory<Svc>> {
    let sname = ServiceName::new(name).map_err(err("event name"))?;
    let deadline = Instant::now() + SETUP;
    loop {
        let r = node
            .service_builder(&sname)
            .event()
            .max_notifiers(1)
            .max_listeners(1)
            .max_nodes(2)
            .open_or_create();
        match r {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("event service {name}: {e:?}")),
        }
    }
}

fn out(node: &Node<Svc>, name: &str, case: &Case, blocking: bool) -> Res<Out> {
    let svc = pubsub(node, name, case)?;
    let publisher = svc
        .publisher_builder()
        .initial_max_slice_len(case.size)
        .max_loaned_samples(2)
        .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
        .create()
        .map_err(err("publisher"))?;
    let (ev, notifier) = if blocking {
        let ev = event(node, &format!("{name}.ev"))?;
        let n = ev.notifier_builder().create().map_err(err("notifier"))?;
        (Some(ev), Some(n))
    } else {
        (None, None)
    };
    Ok(Out { _svc: svc, _ev: ev, publisher, notifier })
}

fn inp(node: &Node<Svc>, name: &str, case: &Case, blocking: bool) -> Res<In> {
    let svc = pubsub(node, name, case)?;
    let subscriber = svc
        .subscriber_builder()
        .buffer_size(case.window)
        .create()
        .map_err(err("subscriber"))?;
    let (ev, listener) = if blocking {
        let ev = event(node, &format!("{name}.ev"))?;
        let l = ev.listener_builder().create().map_err(err("listener"))?;
        (Some(ev), Some(l))
    } else {
        (None, None)
    };
    Ok(In { _svc: svc, _ev: ev, subscriber, listener })
}

impl Out {
    /// Waits until the other side's subscriber (and listener) exist, so nothing sent is lost
    /// to a connection not made yet.
    fn wait_peer(&self) -> Res<()> {
        let deadline = Instant::now() + SETUP;
        loop {
            let subs = self._svc.dynamic_config().number_of_subscribers();
            let listeners = self._ev.as_ref().map_or(1, |e| e.dynamic_config().number_of_listeners());
            if subs >= 1 && listeners >= 1 {
                // Connect now (send would do it too), not while the first samples go out.
                self.publisher.update_connections().map_err(err("publisher connections"))?;
                if let Some(n) = &self.notifier {
                    n.update_connections().map_err(err("notifier connections"))?;
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err("iceoryx2: the peer's subscriber never came".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Loans a slice as long as `src`, copies `src` into it (one copy, as our publisher's
    /// loan is written), puts `seq` in its first 8 bytes, sends it and, in blocking mode,
    /// notifies the listener.
    fn send(&self, src: &[u8], seq: Option<u64>) -> Res<()> {
        let sample = loop {
            match self.publisher.loan_slice_uninit(src.len()) {
                Ok(s) => break s,
                // Every loanable sample is out (held by the subscriber): try again.
                Err(iceoryx2::port::LoanError::OutOfMemory) => std::hint::spin_loop(),
                Err(e) => return Err(format!("loan: {e:?}")),
            }
        };
        let mut sample = sample.write_from_slice(src);
        if let Some(seq) = seq {
            stamp(sample.payload_mut(), seq);
        }
        sample.send().map_err(err("send"))?;
        if let Some(n) = &self.notifier
            && n.notify().map_err(err("notify"))? == 0
        {
            return Err("iceoryx2: notify reached no listener".into());
        }
        Ok(())
    }
}

impl In {
    /// Waits until the other side's publisher exists and connects to it.
    fn wait_peer(&self) -> Res<()> {
        let deadline = Instant::now() + SETUP;
        while self._svc.dynamic_config().number_of_publishers() < 1 {
            if Instant::now() > deadline {
                return Err("iceoryx2: the peer's publisher never came".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.subscriber.update_connections().map_err(err("subscriber connections"))
    }

    /// The next sample: waits on the listener (blocking mode) or spins on `receive()`.
    ///
    /// The listener wait is bounded (1 s) only to diagnose: a sample found after a wait that
    /// timed out without a notification is a lost wakeup, and fails the run rather than
    /// hide it.
    fn next(&self) -> Res<Sample<Svc, [u8], ()>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.subscriber.receive().map_err(err("receive"))? {
                return Ok(s);
            }
            match &self.listener {
                Some(l) => {
                    let t = Instant::now();
                    let mut events = 0u32;
                    l.timed_wait(|_| events += 1, Duration::from_secs(1))
                        .map_err(err("listener wait"))?;
                    if events == 0 && t.elapsed() >= Duration::from_millis(900) {
                        if self.subscriber.has_samples().map_err(err("has_samples"))? {
                            return Err("iceoryx2: a sample was waiting, but no notification came within 1 s (lost wakeup)".into());
                        }
                        if Instant::now() > deadline {
                            return Err("iceoryx2: no sample and no notification within 60 s".into());
                        }
                    }
                }
                None => std::hint::spin_loop(),
            }
        }
    }
}

/// Round trip, initiator: publishes on `a`, waits for the echo on `b`.
pub fn ping(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = node()?;
    let back = inp(&node, &format!("{}/b", case.name), case, blocking)?;
    let to = out(&node, &format!("{}/a", case.name), case, blocking)?;
    to.wait_peer()?;
    back.wait_peer()?;
    let payload = Payload::new(case.size);
    let mut report = Report::default();
    let mut samples = Vec::with_capacity(case.msgs as usize);
    for seq in 0..case.all() {
        let t = Instant::now();
        to.send(&payload.bytes, Some(seq))?;
        let s = back.next()?;
        let sum = checksum(s.payload());
        drop(s);
        let dt = t.elapsed();
        if sum != payload.sum(seq) {
            return Err(format!("iceoryx2: echo {seq} differs"));
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

/// Round trip, echo: every sample on `a` back on `b`.
pub fn echo(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = node()?;
    let from = inp(&node, &format!("{}/a", case.name), case, blocking)?;
    let to = out(&node, &format!("{}/b", case.name), case, blocking)?;
    to.wait_peer()?;
    from.wait_peer()?;
    let mut report = Report::default();
    while report.msgs < case.all() {
        let s = from.next()?;
        let p = s.payload();
        to.send(p, None)?;
        drop(s);
        report.msgs += 1;
    }
    // Leaving before the initiator has the last echo could take it away.
    ctl.wait_ack()?;
    Ok(report)
}

/// One-way, publisher: a loan per message, written in place, sent (and notified).
pub fn send(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = node()?;
    let to = out(&node, &format!("{}/a", case.name), case, blocking)?;
    to.wait_peer()?;
    // The subscriber has connected to this publisher (see `recv`).
    ctl.wait_ack()?;
    let payload = Payload::new(case.size);
    let mut report = Report::default();
    let one = |seq: u64, report: &mut Report| -> Res<()> {
        to.send(&payload.bytes, Some(seq))?;
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

/// One-way, subscriber: checks the length and checksums every byte of every sample in place.
pub fn recv(case: &Case, ctl: &mut Control, blocking: bool) -> Res<Report> {
    let node = node()?;
    let from = inp(&node, &format!("{}/a", case.name), case, blocking)?;
    from.wait_peer()?;
    ctl.ack()?;
    let mut report = Report::default();
    if case.warmup == 0 {
        ctl.ack()?;
    }
    while report.msgs < case.all() {
        let s = from.next()?;
        let p = s.payload();
        if p.len() != case.size {
            return Err(format!("iceoryx2: sample of {} B, expected {}", p.len(), case.size));
        }
        report.checksum = report.checksum.wrapping_add(checksum(p));
        drop(s);
        report.msgs += 1;
        if report.msgs == case.warmup || report.msgs == case.all() {
            ctl.ack()?;
        }
    }
    report.count_via("shm");
    ctl.until_closed()?;
    Ok(report)
}
