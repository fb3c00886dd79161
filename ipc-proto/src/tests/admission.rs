//! A member bounds the links it accepted until they complete their handshake, and pauses
//! accepting when the driver runs out of descriptors.

use std::time::{Duration, Instant};

use crate::data::OUTGOING;
use crate::wire::{DataFrame, Frame, Hello, encode, encode_data};
use crate::{
    Credentials, Limits, Listener, Member, MemberConfig, MemberEvt, MemberInput, MemberOutput,
    NodeId, NodeOptions, PeerId, Refusal,
};

const UID: u32 = 1000;

fn cred() -> Option<Credentials> {
    Some(Credentials {
        pid: 1,
        uid: UID,
        gid: UID,
    })
}

/// A member that runs the hub (it won the bind), with a data plane.
fn hub(limits: Limits, now: Instant) -> Member {
    hub_with(limits, now, |_| {})
}

/// [`hub`], its configuration changed by `tune` first.
fn hub_with(limits: Limits, now: Instant, tune: impl FnOnce(&mut MemberConfig)) -> Member {
    let mut options = NodeOptions::new("hub", UID);
    options.limits = limits;
    let id = NodeId::new(1).expect("non-zero");
    let mut config = options.member_config(id, Some("@d1".into()), 7);
    tune(&mut config);
    let mut m = Member::new(config, now);
    m.handle(
        now,
        MemberInput::Cmd(crate::MemberCmd::Spoke(crate::SpokeCmd::Join)),
    )
    .expect("join");
    let mut bind = false;
    for _ in 0..4 {
        for o in drain(&mut m) {
            bind |= o == MemberOutput::Bind;
            if let MemberOutput::ConnectHub { peer } = o {
                m.handle(now, MemberInput::ConnectFailed(peer))
                    .expect("no hub");
            }
        }
    }
    assert!(bind, "a member with no hub to reach binds");
    m.handle(now, MemberInput::Bound { won: true })
        .expect("bound");
    drain(&mut m);
    m
}

fn drain(m: &mut Member) -> Vec<MemberOutput> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn accept(m: &mut Member, now: Instant, peer: u64, listener: Listener) -> Vec<MemberOutput> {
    assert_eq!(peer & OUTGOING, 0);
    m.handle(
        now,
        MemberInput::Accepted {
            peer: PeerId(peer),
            listener,
            cred: cred(),
        },
    )
    .expect("accepted");
    drain(m)
}

fn record(peer: u64, data: &[u8]) -> MemberInput<'_> {
    MemberInput::Record {
        peer: PeerId(peer),
        data,
        segments: &[],
    }
}

fn refusals(out: &[MemberOutput]) -> Vec<(PeerId, Refusal)> {
    out.iter()
        .filter_map(|o| match o {
            MemberOutput::Evt(MemberEvt::LinkRefused { peer, reason, .. }) => {
                Some((*peer, reason.clone()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn links_without_a_handshake_are_capped_and_expire() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let t0 = Instant::now();
    let limits = Limits {
        max_pending: 4,
        handshake_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let mut m = hub(limits, t0);
    // Two silent links on each listener: all pending.
    for (peer, listener) in [
        (10, Listener::Data),
        (11, Listener::Data),
        (12, Listener::Hub),
        (13, Listener::Hub),
    ] {
        let out = accept(&mut m, t0, peer, listener);
        assert!(refusals(&out).is_empty(), "{peer}: {out:?}");
    }
    // The fifth is closed at once.
    let out = accept(&mut m, t0, 14, Listener::Data);
    assert!(
        out.contains(&MemberOutput::Disconnect(PeerId(14))),
        "{out:?}"
    );
    assert_eq!(
        refusals(&out),
        [(PeerId(14), Refusal::TooManyPending { max: 4 })]
    );
    // A stats request admits its data link (a publisher's Hello does too, once the view
    // vouches for it): room for one, at once.
    let stats = encode_data(&DataFrame::StatsRequest, &[]);
    m.handle(t0, record(10, &stats)).expect("stats request");
    drain(&mut m);
    let out = accept(&mut m, t0, 15, Listener::Data);
    assert!(refusals(&out).is_empty(), "15: {out:?}");
    // A spoke's Hello admits its own: room for one more.
    let spoke_hello = encode(&Frame::Hello(Hello {
        member: None,
        term: crate::Term(0),
        horizon: crate::Horizon::default(),
        keepalive: crate::Keepalive::default(),
    }));
    m.handle(t0, record(12, &spoke_hello)).expect("hello");
    drain(&mut m);
    let out = accept(&mut m, t0, 16, Listener::Data);
    assert!(refusals(&out).is_empty(), "16: {out:?}");
    assert!(!refusals(&accept(&mut m, t0, 17, Listener::Data)).is_empty());
    // One closes by itself before its time: it frees its slot.
    m.handle(t0, MemberInput::PeerDown(PeerId(16)))
        .expect("down");
    drain(&mut m);
    assert!(refusals(&accept(&mut m, t0, 18, Listener::Data)).is_empty());
    // The silent ones are closed at their deadline; the admitted ones stay.
    let due = m.poll_timeout().expect("deadlines");
    assert!(due <= t0 + Duration::from_millis(500), "{due:?}");
    m.handle_timeout(t0 + Duration::from_millis(500));
    let out = drain(&mut m);
    let mut expired: Vec<u64> = refusals(&out).iter().map(|(p, _)| p.0).collect();
    expired.sort_unstable();
    assert_eq!(expired, [11, 13, 15, 18], "{out:?}");
    for p in [11, 13, 15, 18] {
        assert!(out.contains(&MemberOutput::Disconnect(PeerId(p))), "{p}");
    }
    for p in [10, 12] {
        assert!(!out.contains(&MemberOutput::Disconnect(PeerId(p))), "{p}");
    }
    let guard = m.data().expect("a data plane").stats().guard;
    assert_eq!(guard.pending_refused, 2);
    assert_eq!(guard.handshake_expired, 4);
}

#[test]
fn a_failed_accept_pauses_the_listeners_for_the_backoff() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let t0 = Instant::now();
    let mut m = hub(Limits::default(), t0);
    assert!(m.is_accepting());
    m.handle(t0, MemberInput::AcceptFailed(Listener::Data))
        .expect("input");
    let out = drain(&mut m);
    assert_eq!(
        out,
        [
            MemberOutput::PauseAccepting,
            MemberOutput::Evt(MemberEvt::AcceptPaused)
        ]
    );
    assert!(!m.is_accepting());
    // The other listener failing in the same turn does not stack a second pause.
    m.handle(t0, MemberInput::AcceptFailed(Listener::Hub))
        .expect("input");
    assert!(drain(&mut m).is_empty());
    let resume = t0 + Limits::default().accept_backoff;
    assert!(m.poll_timeout().is_some_and(|t| t <= resume));
    m.handle_timeout(resume - Duration::from_millis(1));
    assert!(!drain(&mut m).contains(&MemberOutput::ResumeAccepting));
    m.handle_timeout(resume);
    assert!(drain(&mut m).contains(&MemberOutput::ResumeAccepting));
    assert!(m.is_accepting());
    assert_eq!(m.data().expect("data").stats().guard.accept_paused, 1);
}

/// A record on a data link keeps the deadline a publish computed, unless the data plane's
/// own comes sooner now: a publisher's `Hello` from a node the view does not show yet starts
/// the wait for the view to vouch for it (`DataConfig::verify_timeout`, made the soonest
/// timer here).
#[test]
fn a_data_record_keeps_the_publishs_deadline_or_brings_the_data_planes_sooner() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let t0 = Instant::now();
    let verify = Duration::from_millis(20);
    let limits = Limits {
        handshake_timeout: Duration::from_secs(3600),
        ..Limits::default()
    };
    let mut m = hub_with(limits, t0, |c| {
        c.data.as_mut().expect("a data plane").verify_timeout = verify;
    });
    accept(&mut m, t0, 10, Listener::Data);
    let advertise = crate::data::DataCmd::Advertise { topic: "t".into() };
    m.handle(t0, MemberInput::Cmd(crate::MemberCmd::Data(advertise)))
        .expect("advertise");
    let publish = |m: &mut Member, byte: u8| {
        let cmd = crate::data::DataCmd::Publish {
            topic: "t".into(),
            payload: crate::data::Payload::Inline(vec![byte]),
            expired: false,
        };
        m.handle(t0, MemberInput::Cmd(crate::MemberCmd::Data(cmd)))
            .expect("publish");
        drain(m);
    };
    publish(&mut m, 1);
    let kept = m.poll_timeout().expect("the hub's timers");
    assert!(kept > t0 + verify, "{:?}", kept - t0);
    // A record that changes no timer: the kept deadline.
    let stats = encode_data(&DataFrame::StatsRequest, &[]);
    m.handle(t0, record(10, &stats)).expect("stats request");
    drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(kept));
    // A publisher the view does not show: its records wait for the view, until `verify`.
    accept(&mut m, t0, 11, Listener::Data);
    publish(&mut m, 2);
    let stranger = NodeId::new(99).expect("non-zero");
    let hello = encode_data(
        &DataFrame::Hello {
            publisher: stranger,
            rings: false,
        },
        &[],
    );
    m.handle(t0, record(11, &hello)).expect("hello");
    drain(&mut m);
    assert_eq!(m.poll_timeout(), Some(t0 + verify));
}
