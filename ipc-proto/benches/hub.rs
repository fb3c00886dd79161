//! The cost of one record: a hub sequencing a change and sending it to every spoke.
//!
//! One spoke toggles a subscription (each toggle mints a record that replaces the previous one,
//! so the history keeps its length) while `spokes` others follow. The claim under test: the
//! cost per record grows with the number of spokes, not with the history length.
//!
//! `cargo bench -p ipc-proto --bench hub`

use std::time::Instant;

use divan::Bencher;
use ipc_proto::wire::{Frame, Hello, OwnChange, encode};
use ipc_proto::{
    AccessPolicy, Credentials, Hub, HubCmd, HubConfig, HubSeed, Input, NodeId, NodeInfo, Output,
    PeerId, Term,
};

fn main() {
    divan::main();
}

const UID: u32 = 1000;

fn hub_with(spokes: usize, history: usize) -> (Hub, Instant) {
    #[allow(clippy::disallowed_methods)] // the benchmark's epoch
    let now = Instant::now();
    let mut cfg = HubConfig::default();
    cfg.rng_seed(1).access(AccessPolicy::same_uid(UID));
    cfg.limits.max_topics_per_node = history + 16;
    let mut hub = Hub::new(
        cfg,
        HubSeed::empty(NodeId::new(u64::MAX).expect("non-zero")),
        now,
    );
    let feed = |hub: &mut Hub, peer: u64, frame: &Frame| {
        let bytes = encode(frame);
        hub.handle(
            now,
            Input::Bytes {
                peer: PeerId(peer),
                data: &bytes,
            },
        )
        .expect("valid");
        while hub.poll_output().is_some() {}
    };
    // Node 1 toggles; nodes 2.. follow; node 0 holds the bulk of the history.
    for peer in 0..=spokes as u64 + 1 {
        let cred = Credentials {
            pid: peer as u32,
            uid: UID,
            gid: UID,
        };
        hub.handle(
            now,
            Input::PeerUp {
                peer: PeerId(peer),
                cred: Some(cred),
            },
        )
        .expect("up");
        let info = NodeInfo {
            id: NodeId::new(peer + 1).expect("non-zero"),
            name: format!("n{peer}"),
            data_addr: String::new(),
            pid: 0,
            uid: 0,
        };
        let hello = Hello {
            member: Some(info),
            term: Term(0),
            horizon: Default::default(),
            keepalive: Default::default(),
        };
        feed(&mut hub, peer, &Frame::Hello(hello));
        if peer == 0 {
            let own: Vec<_> = (0..history)
                .map(|i| OwnChange::Subscribe {
                    topic: format!("bulk-{i}"),
                })
                .collect();
            for chunk in own.chunks(512) {
                feed(&mut hub, peer, &Frame::Own(chunk.to_vec()));
            }
        }
        feed(&mut hub, peer, &Frame::IntroEnd);
    }
    assert!(hub.history().len() >= history);
    (hub, now)
}

/// One record sequenced and fanned out, per iteration.
#[divan::bench(consts = [100, 10_000], args = [10, 100, 1_000], sample_count = 200, sample_size = 20)]
fn record<const HISTORY: usize>(bencher: Bencher<'_, '_>, spokes: usize) {
    let (mut hub, now) = hub_with(spokes, HISTORY);
    let sub = encode(&Frame::Change(OwnChange::Subscribe {
        topic: "toggle".into(),
    }));
    let unsub = encode(&Frame::Change(OwnChange::Unsubscribe {
        topic: "toggle".into(),
    }));
    let mut on = false;
    let len = hub.history().len();
    bencher.bench_local(|| {
        on = !on;
        let data = if on { &sub } else { &unsub };
        hub.handle(
            now,
            Input::Bytes {
                peer: PeerId(1),
                data,
            },
        )
        .expect("valid");
        let mut sent = 0;
        while let Some(out) = hub.poll_output() {
            if let Output::Transmit(t) = out {
                sent += t.bytes.len();
            }
        }
        divan::black_box(sent)
    });
    assert!(
        hub.history().len() <= len + 1,
        "toggling keeps the history's length"
    );
    let _ = hub.handle(now, Input::Cmd(HubCmd::Close));
}
