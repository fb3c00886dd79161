//! Data links: credentials and identity of the process at the other end, and records held
//! until the view shows who sent them.

use super::*;

// ---- credentials and identity (issue 19) ----

/// A process of another uid.
fn stranger() -> Credentials {
    Credentials {
        pid: 6666,
        uid: 65534,
        gid: 65534,
    }
}

/// Feeds `frames` to `s` on link `peer`, with `segments` on the last; returns what came out.
pub(super) fn feed_s(
    s: &mut DataPlane,
    now: Instant,
    peer: PeerId,
    frames: &[(DataFrame, &[u8])],
    segments: &[ReceivedSegment],
) -> Vec<DataOutput> {
    for (i, (f, payload)) in frames.iter().enumerate() {
        let last = i + 1 == frames.len();
        let bytes = encode_data(f, payload);
        s.handle(
            now,
            DataInput::Record {
                peer,
                data: &bytes,
                segments: if last { segments } else { &[] },
            },
        )
        .expect("peer input is never an error");
    }
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// A subscriber of "t" whose view shows [`P`] announcing it.
pub(super) fn subscriber(now: Instant) -> DataPlane {
    let mut s = DataPlane::new(config(S), now);
    for cmd in [
        DataCmd::Take {
            topic: "t".into(),
            terms: Terms::default(),
        },
        DataCmd::Routes(Routes::from_view(&view("t", &[S]))),
    ] {
        s.handle(now, DataInput::Cmd(cmd)).expect("valid");
    }
    while s.poll_output().is_some() {}
    s
}

/// A publisher's first records: a Hello naming `publisher`, topic "t" bound as 1.
pub(super) fn hello(publisher: NodeId) -> Vec<(DataFrame, &'static [u8])> {
    vec![
        (
            DataFrame::Hello {
                publisher,
                rings: false,
            },
            b"",
        ),
        (
            DataFrame::Topic {
                id: 1,
                topic: "t".into(),
            },
            b"",
        ),
    ]
}

/// What a forger sends: a Hello naming `publisher`, topic "t" bound, three messages.
fn forged(publisher: NodeId) -> Vec<(DataFrame, &'static [u8])> {
    let h = |seq| MessageHeader { topic: 1, seq };
    let mut frames = hello(publisher);
    frames.extend([
        (DataFrame::Inline(h(1)), &b"root-only-password=hunter2"[..]),
        (DataFrame::Inline(h(2)), b"x"),
        (DataFrame::Inline(h(3)), b"y"),
    ]);
    frames
}

fn delivered(out: &[DataOutput]) -> usize {
    out.iter()
        .filter(|o| matches!(o, DataOutput::Deliver(_)))
        .count()
}

#[test]
fn a_data_link_from_another_uid_is_refused_before_a_byte_is_read_or_sent() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut s = subscriber(now);
    let intruder = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: intruder,
            cred: Some(stranger()),
        },
    )
    .expect("up");
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(out[0], DataOutput::Disconnect(intruder));
    assert!(
        matches!(&out[1], DataOutput::Evt(DataEvt::PeerRefused { peer, cred: Some(c), .. })
            if *peer == intruder && c.uid == 65534),
        "{out:?}"
    );
    assert_eq!(out.len(), 2, "nothing sent to it: {out:?}");
    assert_eq!(s.refused(), 1);
    // What it sends anyway (the driver may have read it already) is nobody's.
    let fd = ReceivedSegment {
        segment: SegmentId(5),
        size: 64,
        seals: Seals {
            shrink: true,
            grow: true,
            write: true,
            future_write: false,
        },
    };
    let mut frames = forged(id(P));
    frames.push((
        DataFrame::Fresh {
            header: MessageHeader { topic: 1, seq: 4 },
            len: 10,
        },
        b"",
    ));
    let out = feed_s(&mut s, now, intruder, &frames, &[fd]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(out.contains(&DataOutput::Release(SegmentId(5))), "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, DataOutput::Transmit { .. })),
        "{out:?}"
    );
    // Without credentials, refused too (the policy does not allow anyone).
    s.handle(
        now,
        DataInput::PeerUp {
            peer: PeerId(41),
            cred: None,
        },
    )
    .expect("up");
    assert_eq!(s.refused(), 2);
}

#[test]
fn a_stats_request_from_another_uid_gets_no_answer() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"x".to_vec()));
    let asker = PeerId(99);
    t.s.handle(
        t.now,
        DataInput::PeerUp {
            peer: asker,
            cred: Some(stranger()),
        },
    )
    .expect("up");
    let out = feed_s(
        &mut t.s,
        t.now,
        asker,
        &[(DataFrame::StatsRequest, b"")],
        &[],
    );
    assert!(
        !out.iter().any(|o| matches!(o, DataOutput::Transmit { .. })),
        "no stats for another uid: {out:?}"
    );
    assert!(out.contains(&DataOutput::Disconnect(asker)), "{out:?}");
}

#[test]
fn a_hello_claiming_another_nodes_process_delivers_nothing_and_is_a_violation() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    // The same uid (the policy lets it in), another process than the one the hub saw join
    // as node P; then a Hello claiming the subscriber's own id.
    let impostor = Credentials {
        pid: 7777,
        ..cred_of(P)
    };
    for (claimed, what) in [(id(P), "another process"), (id(S), "this node's id")] {
        let mut s = subscriber(now);
        let link = PeerId(40);
        s.handle(
            now,
            DataInput::PeerUp {
                peer: link,
                cred: Some(impostor),
            },
        )
        .expect("up");
        let out = feed_s(&mut s, now, link, &forged(claimed), &[]);
        assert_eq!(delivered(&out), 0, "{what}: {out:?}");
        assert!(
            out.contains(&DataOutput::Disconnect(link)),
            "{what}: {out:?}"
        );
        assert!(
            out.iter().any(|o| matches!(
                o,
                DataOutput::Evt(DataEvt::PeerMisbehaved { peer, .. }) if *peer == link
            )),
            "{what}: {out:?}"
        );
        assert_eq!(s.stats().rejected, 1, "{what}");
    }
    // A uid that differs from the view's is refused at the Hello even where the policy
    // allows it (a group opened to two uids).
    let mut s = DataPlane::new(
        {
            let mut c = config(S);
            c.access.allow_uid(65534);
            c
        },
        now,
    );
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Routes(Routes::from_view(&view("t", &[S])))),
    )
    .expect("routes");
    s.handle(
        now,
        DataInput::PeerUp {
            peer: PeerId(40),
            cred: Some(stranger()),
        },
    )
    .expect("up");
    let out = feed_s(&mut s, now, PeerId(40), &forged(id(P)), &[]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(out.contains(&DataOutput::Disconnect(PeerId(40))), "{out:?}");
}

#[test]
fn a_topic_its_node_never_announced_delivers_nothing_and_the_link_is_closed() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut s = subscriber(now);
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Take {
            topic: "secret".into(),
            terms: Terms::default(),
        }),
    )
    .expect("take");
    let link = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let fd = ReceivedSegment {
        segment: SegmentId(9),
        size: 64,
        seals: Seals {
            shrink: true,
            grow: true,
            write: true,
            future_write: false,
        },
    };
    let frames = [
        (
            DataFrame::Hello {
                publisher: id(P),
                rings: false,
            },
            &b""[..],
        ),
        (
            DataFrame::Topic {
                id: 1,
                topic: "secret".into(),
            },
            b"",
        ),
        (
            DataFrame::Inline(MessageHeader { topic: 1, seq: 1 }),
            b"forged",
        ),
        (
            DataFrame::Fresh {
                header: MessageHeader { topic: 1, seq: 2 },
                len: 10,
            },
            b"",
        ),
    ];
    let out = feed_s(&mut s, now, link, &frames, &[fd]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    // Held (the announcement may be on its way), within bounds and a deadline.
    let deadline = s.poll_timeout().expect("a verification deadline");
    assert_eq!(deadline, now + DataConfig::new(id(S)).verify_timeout);
    s.handle_timeout(deadline);
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(out.contains(&DataOutput::Disconnect(link)), "{out:?}");
    assert!(
        out.contains(&DataOutput::Release(SegmentId(9))),
        "the held fd is released: {out:?}"
    );
    assert!(
        out.iter().any(|o| matches!(
            o,
            DataOutput::Evt(DataEvt::PeerMisbehaved { reason, .. }) if reason.contains("secret")
        )),
        "{out:?}"
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn unverified_records_are_bounded() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut c = config(S);
    c.limits.max_unverified = 3;
    let mut s = DataPlane::new(c, now);
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Routes(Routes::from_view(&view("t", &[S])))),
    )
    .expect("routes");
    let link = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let mut frames = vec![
        (
            DataFrame::Hello {
                publisher: id(P),
                rings: false,
            },
            &b""[..],
        ),
        (
            DataFrame::Topic {
                id: 1,
                topic: "unannounced".into(),
            },
            b"",
        ),
    ];
    for seq in 1..=3 {
        frames.push((DataFrame::Inline(MessageHeader { topic: 1, seq }), b"m"));
    }
    let out = feed_s(&mut s, now, link, &frames, &[]);
    assert!(out.contains(&DataOutput::Disconnect(link)), "{out:?}");
    assert_eq!(s.stats().rejected, 1);
}

#[test]
fn records_that_overtake_the_view_wait_for_it_and_are_delivered_in_order() {
    // The subscriber's view shows neither the publisher nor its announcement yet: the
    // publisher learned of the subscriber from the hub, and its records overtook the hub's.
    let mut t = unvouched();
    t.publish("t", Payload::Inline(b"one".to_vec()));
    t.publish(
        "t",
        Payload::Fresh {
            segment: SegmentId(3),
            len: 4,
        },
    );
    assert!(t.delivered.is_empty(), "held until the view shows it");
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    // The publisher's join is in, not its announcement: still waiting.
    let routes = Routes::from_view(&view_with("t", &[S], false, true));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    assert!(t.delivered.is_empty());
    let deadline = t.s.poll_timeout().expect("a deadline");
    let routes = Routes::from_view(&view("t", &[S]));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    assert_eq!(t.s.poll_timeout(), None, "nothing waits any more");
    // Later messages go straight through.
    t.publish("t", Payload::Inline(b"three".to_vec()));
    assert_eq!(t.seqs(), [1, 2, 3]);
    t.s.handle_timeout(deadline);
    t.pump();
    assert!(t.misbehaved.is_empty());
}

#[test]
fn a_binding_waits_for_the_publishers_own_announcement() {
    // The publisher's view does not show its announcement yet (it is on its way to the hub):
    // the link is up and the Hello out, the binding and the messages behind it wait.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            p_announced: false,
            s_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", Payload::Inline(b"one".to_vec()));
    t.publish("t", Payload::Inline(b"two".to_vec()));
    assert!(t.delivered.is_empty());
    let routes = Routes::from_view(&view("t", &[S]));
    for dp in [&mut t.p, &mut t.s] {
        dp.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes.clone())))
            .expect("routes");
    }
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

#[test]
fn a_topic_withdrawn_before_its_announcement_is_in_still_sends_what_was_published() {
    // Published, then the publisher dropped (the CLI's `pub` does so before leaving): the
    // announcement reached the hub ahead of the retraction, so the subscriber's view shows it
    // and the messages are delivered; nothing waits on the link.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            p_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", pooled(4));
    assert!(t.delivered.is_empty(), "waits for the announcement");
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Withdraw { topic: "t".into() }),
    )
    .expect("withdraw");
    t.pump();
    assert_eq!(t.seqs(), [1]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

#[test]
fn a_subscriber_address_held_by_another_process_is_refused_and_retried() {
    for (held_by, what) in [
        (stranger(), "another uid"),
        (
            Credentials {
                pid: 7777,
                ..cred_of(S)
            },
            "another process of the uid",
        ),
    ] {
        let t = Pair::with(
            "t",
            Terms::default(),
            false,
            Setup {
                p_sees: Some(held_by),
                ..Setup::default()
            },
        );
        let mut t = t;
        t.publish("t", Payload::Inline(b"secret".to_vec()));
        assert!(t.delivered.is_empty(), "{what}");
        assert_eq!(t.refused.len(), 1, "{what}: {:?}", t.refused);
        let out = t.out.expect("asked for");
        assert!(t.disconnected.contains(&out), "{what}");
        assert_eq!(t.p.refused(), 1, "{what}");
        // Tried again later, as after a failed connection.
        assert!(t.p.poll_timeout().is_some(), "{what}: a retry");
        assert_eq!(t.p.stats().published.len(), 0, "{what}: nothing sent");
    }
}

#[test]
fn a_leaving_publisher_sends_what_waited_for_its_announcement() {
    // Published, then left at once: its announcement is on its way to the hub ahead of its
    // goodbye, so the subscriber will see it; the binding does not wait for it any more.
    let mut t = Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            p_announced: false,
            ..Setup::default()
        },
    );
    t.publish("t", Payload::Inline(b"last words".to_vec()));
    assert!(t.delivered.is_empty());
    let now = t.now;
    t.p.ungate(now);
    t.pump();
    assert_eq!(t.seqs(), [1]);
}

#[test]
fn records_of_a_publisher_that_just_left_the_view_are_still_checked_and_delivered() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"one".to_vec()));
    // The hub's word that the publisher left reaches the subscriber before the publisher's
    // last records (it published, then left at once).
    let gone = Routes::from_view(&view_with("t", &[S], false, false));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(gone.clone())))
        .expect("routes");
    // Its last records still check out against what the view showed of it.
    t.publish("t", Payload::Inline(b"two".to_vec()));
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    // Long after, it is forgotten: a link claiming it waits, then is closed.
    let later = t.now + DataConfig::new(id(S)).verify_timeout + Duration::from_millis(1);
    t.s.handle(later, DataInput::Cmd(DataCmd::Routes(gone)))
        .expect("routes");
    let link = PeerId(50);
    t.s.handle(
        later,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let out = feed_s(&mut t.s, later, link, &forged(id(P)), &[]);
    assert_eq!(delivered(&out), 0, "{out:?}");
    assert!(t.s.poll_timeout().is_some(), "waits for the view");
}

/// A subscriber of `t` whose link from P went down with P's records held: P published, left,
/// and its link closed before the subscriber's view showed its announcement. Returns the
/// subscriber, the time and the link.
fn hung_up_with_records_held() -> (DataPlane, Instant, PeerId) {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    let mut s = DataPlane::new(config(S), now);
    let unannounced = Routes::from_view(&view_with("t", &[S], false, true));
    for cmd in [
        DataCmd::Take {
            topic: "t".into(),
            terms: Terms::default(),
        },
        DataCmd::Routes(unannounced),
    ] {
        s.handle(now, DataInput::Cmd(cmd)).expect("valid");
    }
    let link = PeerId(40);
    s.handle(
        now,
        DataInput::PeerUp {
            peer: link,
            cred: Some(cred_of(P)),
        },
    )
    .expect("up");
    let out = feed_s(&mut s, now, link, &forged(id(P)), &[]);
    assert_eq!(delivered(&out), 0);
    assert!(s.is_unverified(link), "holds the records: {out:?}");
    s.handle(now, DataInput::PeerDown(link)).expect("down");
    (s, now, link)
}

#[test]
fn records_held_when_the_publisher_hangs_up_are_still_delivered() {
    // What it sent still counts once the view catches up.
    let (mut s, now, _) = hung_up_with_records_held();
    let routes = Routes::from_view(&view("t", &[S]));
    s.handle(now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert_eq!(delivered(&out), 3, "{out:?}");
    let received = s.stats().received;
    assert_eq!(
        received.iter().map(|r| r.messages).collect::<Vec<_>>(),
        [3],
        "the link is forgotten after, its publisher's counters stay: {received:?}"
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn nothing_goes_out_on_a_publisher_link_that_hung_up_with_records_held() {
    // The link is kept after its hang-up, for the records it holds (above); a subscription
    // taken meanwhile tells its terms to the publishers this node hears from, but not on it.
    let (mut s, now, link) = hung_up_with_records_held();
    s.handle(
        now,
        DataInput::Cmd(DataCmd::Take {
            topic: "u".into(),
            terms: Terms::default(),
        }),
    )
    .expect("valid");
    let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(
        !out.iter()
            .any(|o| matches!(o, DataOutput::Transmit { peer, .. } if *peer == link)),
        "a record on a link that is down: {out:?}"
    );
}

/// A pair whose subscriber's view shows neither the publisher nor its announcement yet: the
/// publisher learned of the subscriber from the hub, and its records overtake the hub's.
fn unvouched() -> Pair {
    Pair::with(
        "t",
        Terms::default(),
        false,
        Setup {
            s_knows_p: false,
            s_announced: false,
            ..Setup::default()
        },
    )
}

/// A pair whose subscriber takes inline messages as their parts (in its own buffers if
/// `buffers`), and whose view vouches for the publisher only after `payloads` were published:
/// they are held until then (checked), then delivered.
fn held_then_vouched(buffers: bool, payloads: &[Vec<u8>]) -> Pair {
    let mut t = unvouched();
    t.inline_parts = true;
    t.inline_buffers = buffers;
    for p in payloads {
        t.publish("t", Payload::Inline(p.clone()));
    }
    assert!(t.delivered.is_empty(), "held until the view shows it");
    let routes = Routes::from_view(&view("t", &[S]));
    t.s.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    t
}

/// Inline messages given to the subscriber as their parts (`receive_inline`) are what their
/// records are: held behind a publisher the view does not vouch for yet, then delivered in
/// order; straight through after; refused, closing the link, for a topic never bound.
#[test]
fn inline_messages_given_as_their_parts_are_taken_as_their_records() {
    let mut t = held_then_vouched(false, &[b"one".to_vec(), b"two".to_vec()]);
    t.publish("t", Payload::Inline(b"three".to_vec()));
    assert_eq!(t.seqs(), [1, 2, 3]);
    let payloads: Vec<&[u8]> = t
        .delivered
        .iter()
        .map(|d| match &d.payload {
            Delivered::Inline(b) => &b[..],
            other => panic!("not inline: {other:?}"),
        })
        .collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"three"]);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    let unbound = MessageHeader { topic: 99, seq: 4 };
    t.s.receive_inline(t.now, IN, unbound, b"x");
    t.pump();
    assert_eq!(t.misbehaved.len(), 1, "a message of a topic never bound");
    assert_eq!(t.seqs(), [1, 2, 3]);
}

/// Payloads written into the subscriber's own buffers are delivered in them, without a copy,
/// held as records are behind a publisher the view does not vouch for yet; the buffer of a
/// payload the application dropped takes a later one of its length.
#[test]
fn payloads_written_into_the_planes_buffers_are_delivered_in_them() {
    let big = |b: u8| vec![b; 1000];
    let mut t = held_then_vouched(true, &[big(1)]);
    t.publish("t", Payload::Inline(big(2)));
    assert_eq!(t.seqs(), [1, 2]);
    let at = |d: &Delivery| match &d.payload {
        Delivered::Inline(b) => (b.as_ptr() as usize, b[0], b.len()),
        other => panic!("not inline: {other:?}"),
    };
    let (second, byte, len) = at(&t.delivered[1]);
    assert_eq!((byte, len), (2, 1000));
    assert_eq!(
        second,
        *t.buffers.last().expect("a buffer"),
        "delivered in the buffer written"
    );
    // The application drops both; the next payload of that length reuses the oldest buffer.
    let first = at(&t.delivered[0]).0;
    t.delivered.clear();
    t.publish("t", Payload::Inline(big(3)));
    let (third, byte, _) = at(&t.delivered[0]);
    assert_eq!(byte, 3);
    assert_eq!(
        third, first,
        "the oldest buffer dropped takes the next payload"
    );
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

/// A subscription deeper than the fewest buffers watched (64) still has its payloads written
/// into buffers the application dropped: the watch follows the depth taken
/// (`Payloads::expect`), so a stream the application holds 256 deep, dropping its oldest
/// message as each new one comes, allocates no buffer once it runs (with the fixed 64 it
/// allocated one per message).
#[test]
fn a_deep_subscriptions_payloads_reuse_the_buffers_it_dropped() {
    let depth = 256;
    let terms = Terms {
        depth: depth as u32,
        ..Terms::default()
    };
    let mut t = Pair::with("t", terms, false, Setup::default());
    t.inline_parts = true;
    t.inline_buffers = true;
    let payload = |i: usize| vec![i as u8; 1000];
    for i in 0..depth {
        t.publish("t", Payload::Inline(payload(i)));
    }
    let first: std::collections::BTreeSet<usize> = t.buffers.iter().copied().collect();
    assert_eq!((first.len(), t.delivered.len()), (depth, depth));
    for i in 0..3 * depth {
        // The application drops its oldest message.
        t.delivered.remove(0);
        t.publish("t", Payload::Inline(payload(i)));
        let last = *t.buffers.last().expect("a buffer");
        assert!(first.contains(&last), "message {i}: a new buffer");
    }
    assert_eq!(t.delivered.len(), depth);
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

/// An inline message given as its parts before its publisher's `Hello` is refused as its
/// record is (the short way takes only a greeted publisher's messages): nothing delivered,
/// the link closed.
#[test]
fn inline_parts_before_hello_are_refused_as_their_record() {
    #[allow(clippy::disallowed_methods)] // the test's epoch
    let now = Instant::now();
    for buffer in [false, true] {
        let mut s = DataPlane::new(config(S), now);
        let routes = Routes::from_view(&view("t", &[S]));
        s.handle(now, DataInput::Cmd(DataCmd::Routes(routes)))
            .expect("routes");
        let take = DataCmd::Take {
            topic: "t".into(),
            terms: Terms::default(),
        };
        s.handle(now, DataInput::Cmd(take)).expect("take");
        let up = DataInput::PeerUp {
            peer: IN,
            cred: Some(cred_of(P)),
        };
        s.handle(now, up).expect("up");
        let header = MessageHeader { topic: 1, seq: 1 };
        if buffer {
            let buf = s.payload_buffer(3);
            s.receive_payload(now, IN, header, buf);
        } else {
            s.receive_inline(now, IN, header, b"abc");
        }
        let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
        let reasons: Vec<&str> = out
            .iter()
            .filter_map(|o| match o {
                DataOutput::Evt(DataEvt::PeerMisbehaved { reason, .. }) => Some(&reason[..]),
                _ => None,
            })
            .collect();
        assert_eq!(reasons, ["Inline before Hello"], "buffer {buffer}: {out:?}");
        assert!(out.contains(&DataOutput::Disconnect(IN)));
        assert!(!out.iter().any(|o| matches!(o, DataOutput::Deliver(_))));
    }
}

/// A message handed back for the driver to deliver at once
/// ([`DataPlane::receive_payload_direct`]) is the one `receive_payload` would queue, handed
/// back only when no output waits ahead of it: one after a gap follows its loss among the
/// outputs, and so does one read while an output is still to be polled; once they are
/// polled, the next is handed back again.
#[test]
fn a_message_handed_back_never_overtakes_an_output() {
    let mut t = Pair::new("t", Terms::default(), false);
    // The link greeted and the topic bound, as its first record does.
    t.publish("t", Payload::Inline(b"one".to_vec()));
    assert_eq!(t.seqs(), [1]);
    let direct = |t: &mut Pair, seq: u64, bytes: &[u8]| {
        let mut buf = t.s.payload_buffer(bytes.len());
        buf.as_mut().copy_from_slice(bytes);
        let header = MessageHeader { topic: 1, seq };
        t.s.receive_payload_direct(t.now, IN, header, buf)
    };
    let inline = |d: &Delivery| match &d.payload {
        Delivered::Inline(b) => b.to_vec(),
        other => panic!("not inline: {other:?}"),
    };
    let two = direct(&mut t, 2, b"two").expect("nothing waits: handed back");
    assert_eq!(
        (&*two.topic, two.seq, inline(&two)),
        ("t", 2, b"two".to_vec())
    );
    assert_eq!(t.s.poll_output(), None, "handed back, not queued too");
    // 3 is missing: its loss goes first, the message behind it.
    assert!(direct(&mut t, 4, b"four").is_none());
    // The loss and 4 wait to be polled: 5 goes behind them.
    assert!(direct(&mut t, 5, b"five").is_none());
    let out: Vec<_> = std::iter::from_fn(|| t.s.poll_output()).collect();
    match &out[..] {
        [
            DataOutput::Lost(l),
            DataOutput::Deliver(four),
            DataOutput::Deliver(five),
        ] => {
            assert_eq!((l.first, l.last), (3, 3));
            assert_eq!((four.seq, inline(four)), (4, b"four".to_vec()));
            assert_eq!((five.seq, inline(five)), (5, b"five".to_vec()));
        }
        other => panic!("not the loss, then 4 and 5: {other:?}"),
    }
    let six = direct(&mut t, 6, b"six").expect("polled: handed back again");
    assert_eq!((six.seq, inline(&six)), (6, b"six".to_vec()));
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}
