//! The publisher side: delivery in order, pool offers, flow control by policy, routing,
//! retries, releases and stats.

use super::*;
use std::sync::Arc;

use crate::error::CmdError;
use crate::wire::AppCounter;

#[test]
fn inline_fresh_and_pooled_messages_arrive_in_order() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"hello".to_vec()));
    t.publish("t", Payload::Inline(Vec::new()));
    t.publish(
        "t",
        Payload::Fresh {
            segment: SegmentId(1),
            len: 1 << 20,
        },
    );
    t.publish("t", pooled(50));
    assert_eq!(t.seqs(), [1, 2, 3, 4]);
    assert_eq!(
        t.delivered[0].payload,
        Delivered::Inline(Arc::from(&b"hello"[..]))
    );
    assert_eq!(
        t.delivered[1].payload,
        Delivered::Inline(Arc::from(&[][..])),
        "empty payloads are delivered"
    );
    assert!(matches!(t.delivered[2].payload, Delivered::Fresh { len, .. } if len == 1 << 20));
    assert!(
        t.delivered
            .iter()
            .all(|d| d.publisher == id(P) && &*d.topic == "t")
    );
    // The fresh segment is released as soon as it is sent; the pooled one once given back.
    assert_eq!(t.released_p, [SegmentId(1)]);
    t.release_all();
    assert_eq!(t.released_p, [SegmentId(1), SegmentId(50)]);
    assert_eq!(t.p.segment_refs(), 0);
}

#[test]
fn a_pool_segment_is_offered_once_per_link() {
    let mut t = Pair::new("t", Terms::default(), false);
    for _ in 0..3 {
        t.publish("t", pooled(50));
        t.release_all();
    }
    // One fd went over the link for three messages.
    assert_eq!(t.recv.len(), 1);
    assert_eq!(t.p.segment_refs(), 0);
}

#[test]
fn drop_newest_and_drop_oldest_bound_what_is_in_flight() {
    for (policy, kept) in [
        (Policy::DropNewest, [1, 2, 3]),
        (Policy::DropOldest, [1, 4, 5]),
    ] {
        let mut t = Pair::new(
            "t",
            Terms {
                policy,
                depth: 2,
                ..Terms::default()
            },
            false,
        );
        t.publish("t", Payload::Inline(vec![1]));
        t.hold_s = true;
        // The socket is full: the publisher's queue holds what it cannot send.
        t.p.handle(t.now, DataInput::Blocked(t.out.expect("linked")))
            .expect("blocked");
        for n in 2..=5 {
            t.publish("t", Payload::Inline(vec![n]));
        }
        t.hold_s = false;
        let held = std::mem::take(&mut t.held);
        for (b, a) in held {
            t.deliver_to_s(&b, a);
        }
        t.p.handle(t.now, DataInput::Writable(t.out.expect("linked")))
            .expect("writable");
        t.pump();
        assert_eq!(t.seqs(), kept, "{policy:?}");
        let stats = t.p.stats();
        assert_eq!(
            (stats.published[0].messages, stats.published[0].dropped),
            (3, 2),
            "{policy:?}: sent, dropped"
        );
        // DropOldest: the hole shows before the next message; DropNewest: the dropped tail
        // is told by the topic's last seq once the queue drained.
        assert_eq!(
            t.s.stats().received[0].missed,
            2,
            "{policy:?}: the subscriber is told the gap"
        );
        assert_eq!(t.lost.iter().map(|l| l.count).sum::<u64>(), 2, "{policy:?}");
    }
}

/// A pair whose subscriber takes `t` with `Block` terms: depth 2, 250 ms.
fn block_of_two() -> Pair {
    Pair::new(
        "t",
        Terms {
            policy: Policy::Block { timeout_ms: 250 },
            depth: 2,
            ..Terms::default()
        },
        false,
    )
}

#[test]
fn block_holds_publishers_back_until_the_subscriber_releases() {
    let mut t = block_of_two();
    let room = |messages| {
        Some(Some(Room {
            messages,
            timeout: Duration::from_millis(250),
        }))
    };
    assert_eq!(
        t.room.get("t").copied(),
        room(2),
        "terms stated: room for two"
    );
    t.publish("t", pooled(1));
    assert_eq!(t.room.get("t").copied(), room(1));
    t.publish("t", pooled(2));
    assert_eq!(t.room.get("t").copied(), room(0), "two held: full");
    assert_eq!(t.p.room("t").map(|r| r.messages), Some(0));
    // A publisher that waited its full timeout publishes with `expired`: dropped for the full
    // subscriber, and the pool segment is free at once.
    t.publish_with("t", pooled(3), true);
    assert_eq!(t.seqs(), [1, 2]);
    assert!(t.released_p.contains(&SegmentId(3)));
    t.release_all();
    assert_eq!(t.room.get("t").copied(), room(2), "room again");
    t.publish("t", pooled(4));
    assert_eq!(t.seqs(), [4]);
    assert_eq!(t.s.stats().received[0].missed, 1, "seq 3 never came");
}

/// Ranges of one pool segment, as a publisher's pool lends them: after the first message
/// (which offers the segment), nothing is queued ahead of the next ones, and each goes out at
/// once. They count as the queued ones do: held (in flight, in the room) until given back,
/// the segment referenced until its last range is back, and each one counted as sent.
#[test]
fn messages_sent_at_once_count_as_queued_ones_do() {
    let mut t = block_of_two();
    let range = |offset| Payload::Pooled {
        segment: SegmentId(7),
        size: 4096,
        offset,
        len: 100,
    };
    let room = |t: &Pair| t.room.get("t").copied().flatten().map(|r| r.messages);
    let published = |t: &Pair| {
        let s = t.p.stats();
        let p = &s.published[0];
        (p.messages, p.in_flight)
    };
    t.publish("t", range(0));
    assert_eq!((room(&t), published(&t)), (Some(1), (1, 1)));
    t.publish("t", range(1024));
    assert_eq!(room(&t), Some(0), "two held: full");
    assert_eq!(published(&t), (2, 2));
    assert!(t.released_p.is_empty(), "both ranges are held");
    // The first range (sent behind the segment's offer) back: the second one holds it still.
    let first = t.delivered.remove(0);
    let Delivered::Pooled { slot, .. } = first.payload else {
        panic!("{first:?}")
    };
    t.release(vec![slot]);
    assert!(t.released_p.is_empty(), "the second range is held");
    assert_eq!((room(&t), published(&t)), (Some(1), (2, 1)));
    t.release_all();
    assert_eq!((room(&t), published(&t)), (Some(2), (2, 0)));
    assert_eq!(
        t.released_p,
        [SegmentId(7)],
        "free once its last range is back"
    );
    t.publish("t", range(2048));
    t.publish("t", Payload::Inline(vec![1]));
    assert_eq!(
        published(&t),
        (4, 1),
        "an inline one is in flight only while queued"
    );
    assert_eq!(t.seqs(), [3, 4]);
}

#[test]
fn block_room_comes_back_when_a_full_socket_drains() {
    // Inline payloads are in flight until the socket takes them: a full socket fills the
    // publisher's queue up to the depth, and its draining must give the room back, or `Block`
    // publishers would wait out their whole timeout although nothing is queued.
    let mut t = Pair::new(
        "t",
        Terms {
            policy: Policy::Block { timeout_ms: 60_000 },
            depth: 2,
            ..Terms::default()
        },
        false,
    );
    let messages = |t: &Pair| t.room.get("t").copied().flatten().map(|r| r.messages);
    t.hold_s = true;
    t.p.handle(t.now, DataInput::Blocked(t.out.expect("linked")))
        .expect("blocked");
    t.publish("t", Payload::Inline(vec![1]));
    t.publish("t", Payload::Inline(vec![2]));
    assert_eq!(messages(&t), Some(0), "two queued behind a full socket");
    t.p.handle(t.now, DataInput::Writable(t.out.expect("linked")))
        .expect("writable");
    t.pump();
    assert_eq!(messages(&t), Some(2), "the socket took both: room again");
    assert_eq!(t.p.room("t").map(|r| r.messages), Some(2));
    t.hold_s = false;
    for (b, a) in std::mem::take(&mut t.held) {
        t.deliver_to_s(&b, a);
    }
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
}

/// A full `Block` subscriber whose link closes holds nobody back any more: its room goes
/// at once, not at the next publish (a publisher waiting for room has none to publish).
#[test]
fn block_room_goes_with_a_full_subscribers_link() {
    for how in ["misbehaved", "goodbye"] {
        let mut t = block_of_two();
        t.publish("t", pooled(1));
        t.publish("t", pooled(2));
        let full = Some(Some(Room {
            messages: 0,
            timeout: Duration::from_millis(250),
        }));
        assert_eq!(t.room.get("t").copied(), full, "{how}: two held: full");
        let out = t.out.expect("linked");
        let bytes = match how {
            // A frame only a publisher sends.
            "misbehaved" => encode_data(
                &DataFrame::Hello {
                    publisher: id(9),
                    rings: false,
                },
                &[],
            ),
            _ => encode_data(&DataFrame::Goodbye, &[]),
        };
        t.p.handle(
            t.now,
            DataInput::Record {
                peer: out,
                data: &bytes,
                segments: &[],
            },
        )
        .expect("record");
        t.pump();
        assert_eq!(
            t.misbehaved.len(),
            usize::from(how == "misbehaved"),
            "{how}: {:?}",
            t.misbehaved
        );
        assert_eq!(
            t.p.room("t"),
            t.room.get("t").copied().flatten(),
            "{how}: the last Room event is the room"
        );
        assert_ne!(
            t.p.room("t").map(|r| r.messages),
            Some(0),
            "{how}: the closed link holds nobody back"
        );
    }
}

/// A subscriber's goodbye arms its link's retry, which the member learns of with the record
/// (it keeps its deadline across messages and asks `take_armed`, not `poll_timeout`).
#[test]
fn a_subscribers_goodbye_arms_its_links_retry() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(1));
    assert_eq!(t.p.take_armed(), None, "a publish arms nothing");
    let out = t.out.expect("linked");
    t.record_to_p(out, &encode_data(&DataFrame::Goodbye, &[]));
    let retry = t.now + Duration::from_secs(1);
    assert_eq!(t.p.poll_timeout(), Some(retry));
    assert_eq!(t.p.take_armed(), Some(retry));
    assert_eq!(t.p.take_armed(), None, "taken");
}

/// A stream of publishes on one topic names it with one allocation, which the data plane
/// remembers: the topic's room reads the same by that name as by any other, and once the
/// topic is withdrawn the remembered name publishes nothing.
#[test]
fn the_last_published_name_is_remembered_until_the_topic_is_withdrawn() {
    let mut t = block_of_two();
    let name: Arc<str> = Arc::from("t");
    let publish = |t: &mut Pair, name: &Arc<str>, seg: u64| {
        t.segs.insert(SegmentId(seg), (4096, false));
        let cmd = DataCmd::Publish {
            topic: Arc::clone(name),
            payload: pooled(seg),
            expired: false,
        };
        t.p.handle(t.now, DataInput::Cmd(cmd))
    };
    publish(&mut t, &name, 1).expect("advertised");
    // A publish on a topic never advertised is refused, and leaves the remembered one be.
    let other: Arc<str> = Arc::from("u");
    let refused = publish(&mut t, &other, 9);
    assert!(
        matches!(refused, Err(CmdError::Invalid { what: "topic", .. })),
        "{refused:?}"
    );
    let remembered = t.p.last_published.as_ref();
    assert!(remembered.is_some_and(|l| Arc::ptr_eq(&l.named, &name)));
    publish(&mut t, &name, 2).expect("advertised, remembered");
    t.pump();
    assert_eq!(t.seqs(), [1, 2]);
    assert_eq!(t.p.room(&name), t.p.room("t"));
    assert_eq!(
        t.p.room(&name).map(|r| r.messages),
        Some(0),
        "two held: full"
    );
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Withdraw {
            topic: "t".to_string(),
        }),
    )
    .expect("withdraw");
    t.pump();
    let refused = publish(&mut t, &name, 3);
    assert!(
        matches!(refused, Err(CmdError::Invalid { what: "topic", .. })),
        "{refused:?}"
    );
}

/// A stream of publishes on one topic (one name, as a publisher's handle passes it) keeps
/// the links its messages go out on, and finds them again when the routes change: none once
/// the subscriber is gone (its link closed), the new link once it is back, none once that
/// link is closed for a broken protocol.
#[test]
fn a_stream_of_publishes_follows_its_subscribers_as_they_go_and_come_back() {
    let mut t = Pair::new("t", Terms::default(), false);
    let name: Arc<str> = Arc::from("t");
    let publish = |t: &mut Pair, name: &Arc<str>| {
        let cmd = DataCmd::Publish {
            topic: Arc::clone(name),
            payload: Payload::Inline(vec![1; 8]),
            expired: false,
        };
        t.p.handle(t.now, DataInput::Cmd(cmd)).expect("advertised");
        t.pump();
    };
    let routes = |t: &mut Pair, subscribers: &[u64]| {
        let routes = Routes::from_view(&view("t", subscribers));
        t.p.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
            .expect("routes");
        t.pump();
    };
    publish(&mut t, &name);
    publish(&mut t, &name);
    assert_eq!(t.seqs(), [1, 2]);
    let first = t.out.expect("linked");

    routes(&mut t, &[]);
    assert!(t.disconnected.contains(&first), "the link closes");
    assert_eq!(t.p.subscribers().count(), 0);
    // The subscriber's side sees its socket close.
    t.s.handle(t.now, DataInput::PeerDown(IN)).expect("down");
    t.pump();
    publish(&mut t, &name);
    assert_eq!(t.seqs(), [1, 2], "nobody to send the third to");

    routes(&mut t, &[S]);
    let second = t.out.expect("linked again");
    assert_ne!(second, first, "a new link");
    publish(&mut t, &name);
    assert_eq!(t.seqs(), [1, 2, 4], "the fourth goes out on the new link");

    // A subscriber that breaks the protocol loses its link, the routes unchanged.
    t.record_to_p(second, &forged_release());
    assert_eq!(t.misbehaved.len(), 1);
    assert!(t.disconnected.contains(&second), "the link closes");
    publish(&mut t, &name);
    assert_eq!(t.seqs(), [1, 2, 4], "nobody to send the fifth to");
}

#[test]
fn a_publishers_goodbye_closes_its_link_without_a_complaint() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(1));
    assert_eq!(t.seqs(), [1]);
    t.deliver_to_s(&encode_data(&DataFrame::Goodbye, &[]), None);
    t.pump();
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    assert_eq!(t.s.stats().rejected, 0);
    let received = t.s.stats().received;
    assert_eq!(
        received.iter().map(|r| r.messages).collect::<Vec<_>>(),
        [1],
        "the link is gone, its publisher's counters stay: {received:?}"
    );
    assert_eq!(t.released_s.len(), 1, "its segment is unmapped");
}

#[test]
fn a_retired_segment_is_unmapped_by_the_subscribers_it_was_offered_to() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(8));
    t.release_all();
    assert_eq!(t.released_p, [SegmentId(8)], "free again");
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Retire {
            segment: SegmentId(8),
        }),
    )
    .expect("retire");
    t.pump();
    let received: Vec<SegmentId> = t.recv.keys().copied().collect();
    assert_eq!(
        t.released_s, received,
        "the subscriber lets go of its handle"
    );
    // Used again later, it is offered again.
    t.publish("t", pooled(8));
    assert_eq!(t.recv.len(), 2);
}

#[test]
fn self_delivery_is_an_option_off_by_default() {
    let mut off = Pair::new("t", Terms::default(), false);
    off.publish("t", Payload::Inline(b"x".to_vec()));
    assert!(off.delivered.iter().all(|d| d.peer == IN));
    let mut on = Pair::new("t", Terms::default(), true);
    on.publish("t", pooled(9));
    let local: Vec<_> = on.delivered.iter().filter(|d| d.peer == LOCAL).collect();
    assert_eq!(local.len(), 1);
    // The local reference keeps the segment until the application drops it too.
    let slots: Vec<SlotRef> = on
        .delivered
        .iter()
        .filter(|d| d.peer != LOCAL)
        .filter_map(|d| {
            if let Delivered::Pooled { slot, .. } = d.payload {
                Some(slot)
            } else {
                None
            }
        })
        .collect();
    on.release(slots);
    assert!(!on.released_p.contains(&SegmentId(9)));
    let slot = SlotRef {
        segment: 9,
        offset: 0,
    };
    on.p.handle(
        on.now,
        DataInput::Cmd(DataCmd::Release {
            peer: LOCAL,
            slots: vec![slot],
        }),
    )
    .expect("release");
    on.pump();
    assert!(on.released_p.contains(&SegmentId(9)));
}

#[test]
fn an_unsubscribed_node_loses_its_link_and_every_reference_with_it() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", pooled(5));
    assert_eq!(t.p.segment_refs(), 1);
    let routes = Routes::from_view(&view("t", &[]));
    t.p.handle(t.now, DataInput::Cmd(DataCmd::Routes(routes)))
        .expect("routes");
    t.pump();
    assert_eq!(
        t.p.segment_refs(),
        0,
        "the held range is freed with the link"
    );
    assert!(t.released_p.contains(&SegmentId(5)));
    assert_eq!(t.p.subscribers().count(), 0);
}

#[test]
fn a_subscriber_that_is_gone_is_retried_while_routed() {
    let mut t = Pair::new("t", Terms::default(), false);
    let out = t.out.expect("linked");
    t.p.handle(t.now, DataInput::PeerDown(out)).expect("down");
    let at = t.p.poll_timeout().expect("a retry");
    assert!(at > t.now && at <= t.now + Duration::from_secs(1));
    while t.p.poll_output().is_some() {}
    t.p.handle_timeout(at);
    assert_eq!(
        t.p.poll_output(),
        Some(DataOutput::Connect {
            peer: out,
            addr: format!("@d{S}")
        })
    );
}

/// A release of a range the publisher never lent: a protocol violation.
fn forged_release() -> Vec<u8> {
    let slot = SlotRef {
        segment: 77,
        offset: 0,
    };
    encode_data(&DataFrame::Release(vec![slot]), &[])
}

#[test]
fn a_release_of_a_range_not_held_disconnects_the_subscriber() {
    let mut t = Pair::new("t", Terms::default(), false);
    let out = t.out.expect("linked");
    t.record_to_p(out, &forged_release());
    assert_eq!(t.misbehaved.len(), 1);
}

#[test]
fn stats_are_served_to_any_process_of_the_group() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(b"x".to_vec()));
    let asker = PeerId(99);
    // `status`: an observer, in no view, of the group's uid.
    let cred = Some(Credentials {
        pid: 4242,
        uid: UID,
        gid: 5,
    });
    t.s.handle(t.now, DataInput::PeerUp { peer: asker, cred })
        .expect("up");
    let req = encode_data(&DataFrame::StatsRequest, &[]);
    t.s.handle(
        t.now,
        DataInput::Record {
            peer: asker,
            data: &req,
            segments: &[],
        },
    )
    .expect("record");
    let out: Vec<_> = std::iter::from_fn(|| t.s.poll_output()).collect();
    let DataOutput::Transmit { bytes, .. } = &out[0] else {
        panic!("{out:?}")
    };
    let (DataFrame::Stats(stats), _) = decode_data(bytes, 255, 16).expect("stats") else {
        panic!()
    };
    assert_eq!(stats.received[0].messages, 1);
    assert_eq!(out[1], DataOutput::Disconnect(asker));
}

#[test]
fn the_application_counters_set_last_are_in_every_stats_reply() {
    let mut t = Pair::new("t", Terms::default(), false);
    assert!(t.s.stats().app.is_empty(), "none until set");
    let set = DataCmd::set_counters(&[("forwarded", 7), ("dropped", 1)]).expect("in bounds");
    t.s.handle(t.now, DataInput::Cmd(set)).expect("set");
    let want = vec![
        AppCounter::new("forwarded", 7),
        AppCounter::new("dropped", 1),
    ];
    assert_eq!(t.s.stats().app, want);
    // Out of bounds: refused when built, and when given to the machine; the last set stays.
    let long = "n".repeat(65);
    for bad in [
        &[(long.as_str(), 1)][..],
        &[("tab\t", 1)],
        &[("a", 1), ("a", 2)],
    ] {
        assert!(
            matches!(
                DataCmd::set_counters(bad),
                Err(CmdError::Invalid {
                    what: "application counters",
                    ..
                })
            ),
            "{bad:?}"
        );
        let unchecked = bad.iter().map(|&(n, v)| AppCounter::new(n, v)).collect();
        assert!(
            t.s.handle(t.now, DataInput::Cmd(DataCmd::SetCounters(unchecked)))
                .is_err()
        );
    }
    let many: Vec<(String, u64)> = (0..33).map(|i| (format!("c{i}"), i)).collect();
    let many: Vec<(&str, u64)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
    assert!(DataCmd::set_counters(&many).is_err());
    assert!(DataCmd::set_counters(&many[..32]).is_ok());
    assert_eq!(t.s.stats().app, want);
    t.s.handle(t.now, DataInput::Cmd(DataCmd::SetCounters(vec![])))
        .expect("cleared");
    assert!(t.s.stats().app.is_empty());
}

#[test]
fn a_sent_payloads_buffer_and_a_recycled_record_are_reused() {
    let mut t = Pair::new("t", Terms::default(), false);
    let payload = vec![7u8; 100];
    let at = payload.as_ptr();
    t.publish("t", Payload::Inline(payload));
    // Copied into the subscriber's record: its buffer is the next payload's, as it was.
    let spare = t.p.spare_buffer().expect("the payload's buffer is kept");
    assert_eq!((spare.as_ptr(), &spare[..]), (at, &[7u8; 100][..]));
    assert!(t.p.spare_buffer().is_none(), "given out once");
    // A record the driver gives back is what the next message is encoded into.
    let record = Vec::with_capacity(4096);
    let at = record.as_ptr();
    t.p.recycle(record);
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Publish {
            topic: "t".into(),
            payload: Payload::Inline(spare),
            expired: false,
        }),
    )
    .expect("publish");
    let sent: Vec<*const u8> = std::iter::from_fn(|| t.p.poll_output())
        .filter_map(|o| match o {
            DataOutput::Transmit { bytes, .. } => Some(bytes.as_ptr()),
            _ => None,
        })
        .collect();
    assert_eq!(sent, [at]);
}

impl Pair {
    fn publish_direct(&mut self, payload: &[u8], direct: &mut TakingDirect) {
        let cmd = DataCmd::Publish {
            topic: "t".into(),
            payload: Payload::Inline(payload.to_vec()),
            expired: false,
        };
        self.p
            .publish_direct(self.now, cmd, direct)
            .expect("publish");
    }

    /// [`Self::publish_direct`] of borrowed bytes ([`Outbound::Inline`]), as a driver
    /// publishes an application's slice.
    fn publish_borrowed(&mut self, payload: &[u8], direct: &mut TakingDirect) {
        let topic: Arc<str> = Arc::from("t");
        let payload = Outbound::Inline(payload);
        (self.p)
            .publish_topic(self.now, &topic, payload, false, direct)
            .expect("publish");
    }

    /// The subscriber reads what `direct` took, as a ring's reader hands it on: the record.
    fn deliver_taken(&mut self, direct: &mut TakingDirect) {
        for (peer, header, payload) in direct.taken.drain(..) {
            assert_eq!(Some(peer), self.out, "for the subscriber's link");
            let record = encode_data(&DataFrame::Inline(header), &payload);
            self.deliver_to_s(&record, None);
        }
        self.pump();
    }

    fn payloads(&self) -> Vec<Vec<u8>> {
        let bytes = |d: &Delivery| match &d.payload {
            Delivered::Inline(b) => b.to_vec(),
            other => panic!("not inline: {other:?}"),
        };
        self.delivered.iter().map(bytes).collect()
    }
}

/// A publish offers an inline message to its driver's direct path only with nothing ahead of
/// it on the link: not the first (its topic's binding goes first), not while an output of the
/// plane waits to be taken; a message taken is counted as sent, one refused goes as its record.
/// Borrowed bytes take every one of those ways as an owned payload does (one, four, six).
#[test]
fn a_direct_send_takes_a_message_only_with_nothing_ahead_of_it() {
    let mut t = Pair::new("t", Terms::default(), false);
    // What a ring link's driver does with the messages a publish offers it.
    let mut direct = TakingDirect {
        take: true,
        ..TakingDirect::default()
    };
    t.publish_borrowed(b"one", &mut direct);
    assert!(direct.taken.is_empty(), "the binding goes first");
    t.pump();
    t.publish_direct(b"two", &mut direct);
    assert!(t.p.poll_output().is_none(), "taken: no record");
    assert_eq!(direct.taken.len(), 1);
    assert_eq!(direct.taken[0].1.seq, 2);
    t.deliver_taken(&mut direct);
    // An output not taken yet (a record of a publish the driver has not sent) goes first.
    t.p.handle(
        t.now,
        DataInput::Cmd(DataCmd::Publish {
            topic: "t".into(),
            payload: Payload::Inline(b"three".to_vec()),
            expired: false,
        }),
    )
    .expect("publish");
    t.publish_borrowed(b"four", &mut direct);
    assert!(direct.taken.is_empty(), "behind an output not taken");
    t.pump();
    direct.take = false;
    t.publish_direct(b"five", &mut direct);
    t.pump();
    direct.take = true;
    t.publish_borrowed(b"six", &mut direct);
    assert!(t.p.poll_output().is_none(), "taken: no record");
    assert_eq!(direct.taken.len(), 1);
    t.deliver_taken(&mut direct);
    assert_eq!(t.seqs(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        t.payloads(),
        [&b"one"[..], b"two", b"three", b"four", b"five", b"six"].map(<[u8]>::to_vec)
    );
    let published = t.p.stats().published;
    assert_eq!(
        published.iter().map(|s| s.messages).collect::<Vec<_>>(),
        [6],
        "every message counted once: {published:?}"
    );
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
}

/// A subscriber's terms are bounded per link (`max_topics`), and those for topics never
/// published here go with its connection: a subscriber that states terms for new names on
/// every connection does not grow the publisher. The counters of what was published there
/// stay for `status`.
#[test]
fn a_subscribers_terms_are_bounded_and_go_with_its_connection() {
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(vec![1]));
    let out = t.out.expect("linked");
    let max = t.p.config.limits.max_topics;
    // The subscriber states terms for the topic `never-{i}`.
    let state_terms = |t: &mut Pair, out: PeerId, i: usize| {
        let frame = DataFrame::Terms {
            topic: format!("never-{i}"),
            policy: Policy::DropNewest,
            depth: 1,
        };
        let bytes = encode_data(&frame, &[]);
        let record = DataInput::Record {
            peer: out,
            data: &bytes,
            segments: &[],
        };
        t.p.handle(t.now, record).expect("record");
    };
    // `t` has terms already: room for `max - 1` more.
    for i in 0..max - 1 {
        state_terms(&mut t, out, i);
    }
    t.pump();
    assert!(t.misbehaved.is_empty(), "{:?}", t.misbehaved);
    assert_eq!(t.p.out_links[&out].topics.len(), max);
    state_terms(&mut t, out, max);
    t.pump();
    assert_eq!(t.misbehaved, ["too many terms"]);
    // Terms for names never published, then the connection goes (the subscriber is still
    // routed: its link stays, to be retried).
    let mut t = Pair::new("t", Terms::default(), false);
    t.publish("t", Payload::Inline(vec![1]));
    let out = t.out.expect("linked");
    for i in 0..10 {
        state_terms(&mut t, out, i);
    }
    t.p.handle(t.now, DataInput::PeerDown(out)).expect("down");
    t.pump();
    let l = &t.p.out_links[&out];
    let kept: Vec<&str> = l.topics.keys().map(|k| &**k).collect();
    assert_eq!(kept, ["t"], "only the counters of what was published stay");
    assert_eq!(l.with_terms, 0);
    let stats = t.p.stats();
    assert_eq!(stats.published.len(), 1);
    assert_eq!(stats.published[0].messages, 1);
}
