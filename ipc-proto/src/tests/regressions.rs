//! One regression test per known defect of the original C++ design that lives in the protocol
//! (the numbers below are those of our list of its defects). Defects of its threads,
//! sockets and locks belong to the drivers and are tested there.

use std::time::{Duration, Instant};

use crate::history::History;
use crate::hub::HubSeed;
use crate::sim::{Sim, SimConfig};
use crate::wire::{CloseReason, Deframer, Frame, Hello, Limits, OwnChange};
use crate::{
    AccessPolicy, Change, Credentials, Epoch, Event, Hub, HubConfig, HubEvt, Input, NodeId,
    NodeInfo, Output, OwnTopics, PeerId, Record, Seq, Spoke, SpokeCmd, SpokeConfig, SpokeEvt, Term,
    Uid,
};

const UID: u32 = 1000;

/// A hub driven by hand: frames in, frames and events out.
struct Probe {
    hub: Hub,
    now: Instant,
    deframers: std::collections::BTreeMap<PeerId, Deframer>,
    frames: Vec<(PeerId, Frame)>,
    evts: Vec<HubEvt>,
    disconnected: Vec<PeerId>,
}

impl Probe {
    fn new(seed: HubSeed) -> Self {
        #[allow(clippy::disallowed_methods)] // the test's epoch; only durations are added
        let now = Instant::now();
        let mut cfg = HubConfig::default();
        cfg.rng_seed(7).access(AccessPolicy::same_uid(UID));
        let mut p = Self {
            hub: Hub::new(cfg, seed, now),
            now,
            deframers: Default::default(),
            frames: Vec::new(),
            evts: Vec::new(),
            disconnected: Vec::new(),
        };
        p.drain();
        // An observer that sees every record the hub mints, as `Minted` frames.
        let watcher = p.up(0);
        let hello = Hello {
            member: None,
            term: Term(0),
            horizon: Default::default(),
            keepalive: Default::default(),
        };
        p.send(watcher, &Frame::Hello(hello));
        p.send(watcher, &Frame::IntroEnd);
        p
    }

    fn drain(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Transmit(t) => {
                    let d = self
                        .deframers
                        .entry(t.peer)
                        .or_insert_with(|| Deframer::new(Limits::default()));
                    d.push(&t.bytes);
                    while let Some(f) = d.next_frame() {
                        self.frames
                            .push((t.peer, f.expect("the hub sends valid frames")));
                    }
                }
                Output::Disconnect(peer) => self.disconnected.push(peer),
                Output::Evt(e) => self.evts.push(e),
            }
        }
    }

    fn input(&mut self, input: Input<'_, crate::HubCmd>) {
        self.hub
            .handle(self.now, input)
            .expect("peer inputs never fail");
        self.drain();
    }

    fn up(&mut self, peer: u64) -> PeerId {
        let cred = Credentials {
            pid: 100 + peer as u32,
            uid: UID,
            gid: UID,
        };
        self.input(Input::PeerUp {
            peer: PeerId(peer),
            cred: Some(cred),
        });
        PeerId(peer)
    }

    fn send(&mut self, peer: PeerId, frame: &Frame) {
        let bytes = crate::wire::encode(frame);
        self.input(Input::Bytes { peer, data: &bytes });
    }

    /// Connects a member that introduces itself with `history` and `own` topics.
    fn join(&mut self, peer: u64, node: u64, history: &[Record], own: &[OwnChange]) -> PeerId {
        let p = self.up(peer);
        let hello = Hello {
            member: Some(info(node)),
            term: Term(0),
            horizon: Default::default(),
            keepalive: Default::default(),
        };
        self.send(p, &Frame::Hello(hello));
        if !history.is_empty() {
            self.send(p, &Frame::History(history.to_vec()));
        }
        if !own.is_empty() {
            self.send(p, &Frame::Own(own.to_vec()));
        }
        self.send(p, &Frame::IntroEnd);
        p
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.hub.handle_timeout(self.now);
        self.drain();
    }

    /// Every record the hub minted since the watcher connected, in order.
    fn minted(&self) -> Vec<Record> {
        self.frames
            .iter()
            .filter(|(peer, _)| *peer == PeerId(0))
            .filter_map(|(_, f)| {
                if let Frame::Minted(rs) = f {
                    Some(rs.clone())
                } else {
                    None
                }
            })
            .flatten()
            .collect()
    }
}

fn id(n: u64) -> NodeId {
    NodeId::new(n).expect("non-zero")
}

fn info(n: u64) -> NodeInfo {
    NodeInfo {
        id: id(n),
        name: format!("n{n}"),
        data_addr: format!("@d{n}"),
        pid: 100 + n as u32,
        uid: UID,
    }
}

fn rec(term: u32, counter: u32, uid: u64, change: Change) -> Record {
    Record {
        seq: Seq::new(Epoch::new(term, 1), counter),
        uid: Uid::new(uid).expect("non-zero"),
        change,
    }
}

fn seed_with(records: &[Record]) -> HubSeed {
    let mut history = History::default();
    for r in records {
        history.apply(r.clone());
        history.observe(r.seq);
    }
    HubSeed {
        node: id(99),
        term: Term(1),
        history,
    }
}

/// §1.13.2: LEAVE records minted on disconnect and by the purge had uid 0.
#[test]
fn leave_records_get_a_fresh_uid_and_position() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    let a = p.join(1, 1, &[], &[]);
    p.join(2, 2, &[], &[]);
    p.input(Input::PeerDown(a));
    let minted = p.minted();
    let leave = minted
        .iter()
        .find(|r| r.change == Change::Leave(id(1)))
        .expect("a's leave");
    // A uid is non-zero by type; it must also be fresh: no other record shares it.
    assert_eq!(minted.iter().filter(|r| r.uid == leave.uid).count(), 1);
    assert!(
        minted.iter().all(|r| r.seq <= leave.seq),
        "the leave is the newest record"
    );
}

/// §1.13.3: the next position was set from the last record, so it could move backwards after
/// an old record was accepted or the tail pruned.
#[test]
fn positions_never_move_backwards() {
    // The inherited history's tail (term 5) was pruned: only its horizon remembers it.
    let mut seed = seed_with(&[rec(5, 1, 11, Change::Join(info(3)))]);
    seed.history.observe(Seq::new(Epoch::new(5, 1), 40));
    let mut p = Probe::new(seed);
    // A spoke brings an old record of term 2 that the hub accepts.
    p.join(1, 1, &[rec(2, 9, 12, Change::Join(info(4)))], &[]);
    let minted = p.minted();
    assert!(!minted.is_empty());
    for r in &minted {
        assert!(
            r.seq.epoch().term() > 5,
            "minted {r:?} at or below an inherited term"
        );
    }
    let seqs: Vec<_> = minted.iter().map(|r| r.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "minted in increasing order: {seqs:?}"
    );
}

/// §1.13.4: a connection that never identified itself produced a LEAVE for node 0.
#[test]
fn a_link_that_never_said_hello_leaves_no_record() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    p.join(1, 1, &[], &[]);
    let before = p.hub.history().len();
    let anon = p.up(2);
    p.input(Input::PeerDown(anon));
    assert_eq!(p.hub.history().len(), before);
    assert!(p.evts.contains(&HubEvt::PeerLeft {
        peer: anon,
        node: None
    }));
}

/// §1.13.1 and 1.6: topic records of departed nodes were never pruned (misplaced parenthesis),
/// so new joiners received them.
#[test]
fn a_new_joiner_gets_no_record_of_a_departed_node() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    let sub = |t: &str| OwnChange::Subscribe { topic: t.into() };
    let ann = |t: &str| OwnChange::Announce {
        topic: t.into(),
        mime: "m".into(),
    };
    let a = p.join(1, 7, &[], &[sub("x"), ann("y")]);
    p.input(Input::PeerDown(a));
    let c = p.join(3, 8, &[], &[]);
    let snapshot: Vec<_> = p
        .frames
        .iter()
        .filter(|(peer, _)| *peer == c)
        .filter_map(|(_, f)| {
            if let Frame::Snapshot(rs) = f {
                Some(rs.clone())
            } else {
                None
            }
        })
        .flatten()
        .collect();
    assert!(
        snapshot
            .iter()
            .all(|r| r.change.node() != id(7) || r.change == Change::Leave(id(7))),
        "only a's tombstone may remain: {snapshot:?}"
    );
}

/// §1.5.3: duplicates were detected per connection only, so a JOIN or SUBSCRIBE re-sent over
/// another connection was minted again.
#[test]
fn novel_changes_are_deduplicated_against_the_live_state() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    let own = [OwnChange::Subscribe { topic: "t".into() }];
    let a = p.join(1, 1, &[], &own);
    let minted_before = p.minted().len();
    // The same node reconnects on a new link with the same state: nothing new to sequence.
    p.input(Input::PeerDown(a));
    let leave = p.minted().len();
    assert_eq!(leave, minted_before + 1, "just the leave");
    p.join(2, 1, &[], &own);
    // A rejoin after a leave is a new stay: join and subscription are minted again, once.
    assert_eq!(p.minted().len(), leave + 2);
    // A subscribe for what is already live mints nothing, whatever link sends it.
    p.send(
        PeerId(2),
        &Frame::Change(OwnChange::Subscribe { topic: "t".into() }),
    );
    assert_eq!(p.minted().len(), leave + 2);
}

/// §1.13.13: the purge ran once, 200 ms after the hub started; nodes learned of later (from a
/// spoke's history) were never purged if they were gone.
#[test]
fn nodes_learned_after_the_grace_get_their_own_grace() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    p.join(1, 1, &[], &[]);
    p.advance(Duration::from_millis(500));
    // A late spoke knows of node 5, which never reconnects.
    p.join(2, 2, &[rec(1, 3, 55, Change::Join(info(5)))], &[]);
    assert!(p.hub.history().is_joined(id(5)));
    p.advance(Duration::from_millis(150));
    assert!(p.hub.history().is_joined(id(5)), "still within its grace");
    p.advance(Duration::from_millis(100));
    assert!(!p.hub.history().is_joined(id(5)), "purged after its grace");
    assert!(p.evts.contains(&HubEvt::NodePurged { node: id(5) }));
}

/// §1.5.4 and 1.13.11: a conflicting history was silently dropped and the spoke never told;
/// spokes never reconciled. Here two hubs of the same epoch minted different records at the
/// same positions: the hub's record wins and the spoke, resynced, reports the difference.
#[test]
fn a_conflicting_history_is_merged_the_hubs_way() {
    let hub_side = [
        rec(3, 1, 100, Change::Join(info(1))),
        rec(3, 2, 101, Change::Join(info(2))),
        rec(
            3,
            3,
            102,
            Change::Subscribe {
                node: id(2),
                topic: "hub-topic".into(),
            },
        ),
    ];
    let spoke_side = [
        rec(3, 1, 100, Change::Join(info(1))),
        rec(3, 2, 201, Change::Join(info(3))),
        rec(
            3,
            3,
            202,
            Change::Subscribe {
                node: id(3),
                topic: "lost".into(),
            },
        ),
    ];
    let mut p = Probe::new(seed_with(&hub_side));
    // The spoke (node 4) followed the other hub: its view shows node 3, not node 2.
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut spoke = Spoke::new(
        SpokeConfig::default()
            .node_id(id(4))
            .name("n4")
            .access(AccessPolicy::anyone())
            .clone(),
        now,
    );
    let mut own_history = History::default();
    for r in &spoke_side {
        own_history.apply(r.clone());
        own_history.observe(r.seq);
    }
    spoke.seed_history(own_history);
    spoke.handle(now, Input::Cmd(SpokeCmd::Join)).expect("join");
    while spoke.poll_output().is_some() {}
    spoke
        .handle(
            now,
            Input::PeerUp {
                peer: PeerId(1),
                cred: None,
            },
        )
        .expect("link");
    let hub_peer = p.up(40);
    let mut events = Vec::new();
    // Shuttle bytes both ways until both sides are quiet.
    for _ in 0..10 {
        while let Some(out) = spoke.poll_output() {
            match out {
                Output::Transmit(t) => p.input(Input::Bytes {
                    peer: hub_peer,
                    data: &t.bytes,
                }),
                Output::Evt(SpokeEvt::Topology(e)) => events.push(e),
                _ => {}
            }
        }
        let to_spoke: Vec<_> = std::mem::take(&mut p.frames);
        for (peer, f) in to_spoke {
            if peer == hub_peer {
                let bytes = crate::wire::encode(&f);
                spoke
                    .handle(
                        now,
                        Input::Bytes {
                            peer: PeerId(1),
                            data: &bytes,
                        },
                    )
                    .expect("bytes");
            }
        }
    }
    let merged = p.evts.iter().find_map(|e| match e {
        HubEvt::Introduced {
            node: Some(n),
            merged,
            ..
        } if *n == id(4) => Some(*merged),
        _ => None,
    });
    assert_eq!(
        merged.map(|m| (m.duplicates, m.conflicts)),
        Some((1, 2)),
        "{merged:?}"
    );
    let view = spoke.view();
    assert!(
        view.contains(id(2)) && !view.contains(id(3)),
        "the hub's version wins"
    );
    assert!((events.iter()).any(
        |e| matches!(e, Event::NodeLeft { node, info } if *node == id(3) && info.id == id(3))
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::NodeJoined { info, .. } if info.id == id(2)))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Subscribed { topic, .. } if topic == "hub-topic"))
    );
}

/// §1.8.9 and 1.13.8: the spoke's history was never pruned and replayed whole to a new hub,
/// which replayed departed nodes to everyone: JOIN, ANNOUNCE, SUBSCRIBE and LEAVE again for a
/// node long gone.
#[test]
fn no_ghosts_of_departed_nodes_after_a_hub_change() {
    let mut sim = Sim::new(11, SimConfig::default());
    let topics = OwnTopics {
        subscribes: ["t".to_string()].into(),
        ..OwnTopics::default()
    };
    let hub = sim.spawn("hub", &OwnTopics::default());
    sim.run_until(100_000, Sim::converged).expect("settled");
    let gone = sim.spawn("gone", &topics);
    let b = sim.spawn("b", &topics);
    let c = sim.spawn("c", &topics);
    sim.run_until(100_000, Sim::converged).expect("settled");
    sim.leave(gone);
    sim.run_until(100_000, Sim::converged).expect("settled");
    sim.run_for(Duration::from_secs(1));
    let events_before: Vec<usize> = [b, c]
        .iter()
        .map(|ix| sim.nodes[ix.0].events.len())
        .collect();
    sim.crash(hub);
    sim.run_until(100_000, Sim::converged).expect("a new hub");
    let late = sim.spawn("late", &OwnTopics::default());
    sim.run_until(100_000, Sim::converged).expect("settled");
    let gone_id = sim.nodes[gone.0].id();
    for (ix, before) in [b, c].iter().zip(events_before) {
        let after = &sim.nodes[ix.0].events[before..];
        assert!(
            after
                .iter()
                .all(|(_, e)| !matches!(e, Event::NodeJoined { info, .. } if info.id == gone_id)),
            "survivor saw the departed node again: {after:?}"
        );
    }
    let late_events = &sim.nodes[late.0].events;
    assert!(late_events.iter().all(|(_, e)| match e {
        Event::NodeJoined { info, .. } => info.id != gone_id,
        _ => true,
    }));
}

/// §1.13.12: the introduction reused one message object, so SUBSCRIBE records carried the
/// mime of the last publication. Here: what a node introduces is exactly its own state.
#[test]
fn an_introduction_carries_exactly_the_nodes_own_topics() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut spoke = Spoke::new(
        SpokeConfig::default()
            .node_id(id(4))
            .access(AccessPolicy::anyone())
            .clone(),
        now,
    );
    for cmd in [
        SpokeCmd::Announce {
            topic: "a".into(),
            mime: "m1".into(),
        },
        SpokeCmd::Announce {
            topic: "b".into(),
            mime: "m2".into(),
        },
        SpokeCmd::Subscribe { topic: "c".into() },
        SpokeCmd::Subscribe { topic: "d".into() },
        SpokeCmd::Unsubscribe { topic: "d".into() },
        SpokeCmd::Join,
    ] {
        spoke.handle(now, Input::Cmd(cmd)).expect("valid");
    }
    while spoke.poll_output().is_some() {}
    spoke
        .handle(
            now,
            Input::PeerUp {
                peer: PeerId(1),
                cred: None,
            },
        )
        .expect("link");
    let mut d = Deframer::new(Limits::default());
    let mut own = Vec::new();
    while let Some(out) = spoke.poll_output() {
        if let Output::Transmit(t) = out {
            d.push(&t.bytes);
            while let Some(f) = d.next_frame() {
                if let Frame::Own(o) = f.expect("valid") {
                    own.extend(o);
                }
            }
        }
    }
    assert_eq!(
        own,
        [
            OwnChange::Announce {
                topic: "a".into(),
                mime: "m1".into()
            },
            OwnChange::Announce {
                topic: "b".into(),
                mime: "m2".into()
            },
            OwnChange::Subscribe { topic: "c".into() },
        ]
    );
}

/// §1.13.16: the hub wrote a large history with several `write` calls, so one record could span
/// several socket records and be corrupted. Here histories travel in frames bounded by
/// `Limits::max_frame`, whatever their size, and arrive whole.
#[test]
fn a_history_larger_than_one_frame_arrives_in_bounded_frames() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    let own: Vec<_> = (0..500)
        .map(|i| OwnChange::Subscribe {
            topic: format!("topic-{i:05}"),
        })
        .collect();
    p.join(1, 1, &[], &own);
    let newcomer = p.join(5000, 5000, &[], &[]);
    let max = Limits::default().max_frame;
    let sizes: Vec<usize> = p
        .frames
        .iter()
        .filter(|(peer, f)| *peer == newcomer && matches!(f, Frame::Snapshot(_)))
        .map(|(_, f)| crate::wire::encode(f).len())
        .collect();
    assert!(
        sizes.len() > 1,
        "a 500-topic history needs several frames: {sizes:?}"
    );
    assert!(sizes.iter().all(|&s| s <= max + 4));
    let got: usize = p
        .frames
        .iter()
        .filter(|(peer, _)| *peer == newcomer)
        .filter_map(|(_, f)| {
            if let Frame::Snapshot(rs) = f {
                Some(rs.len())
            } else {
                None
            }
        })
        .sum();
    assert_eq!(got, p.hub.history().len());
}

/// A peer with another uid is refused with a clear reason and the hub carries on.
#[test]
fn a_peer_with_another_uid_is_refused() {
    let mut p = Probe::new(HubSeed::empty(id(99)));
    p.join(1, 1, &[], &[]);
    let cred = Credentials {
        pid: 5,
        uid: UID + 1,
        gid: UID + 1,
    };
    p.input(Input::PeerUp {
        peer: PeerId(9),
        cred: Some(cred),
    });
    let reason = CloseReason::NotAllowed {
        uid: UID + 1,
        gid: UID + 1,
    };
    assert!(p.evts.contains(&HubEvt::PeerRefused {
        peer: PeerId(9),
        reason: reason.clone()
    }));
    assert!(p.disconnected.contains(&PeerId(9)));
    assert!(p.frames.contains(&(PeerId(9), Frame::Goodbye(reason))));
    p.join(2, 2, &[], &[]);
    assert!(p.hub.history().is_joined(id(2)), "the hub carries on");
}
