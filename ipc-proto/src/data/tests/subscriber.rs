//! The subscriber side: what it refuses from a publisher, and payloads or segments larger than
//! its subscription takes.

use super::*;
use std::sync::Arc;

#[test]
fn bad_input_from_a_publisher_is_refused_and_its_fds_released() {
    let seg = |n, seals| {
        [ReceivedSegment {
            segment: SegmentId(n),
            size: 4096,
            seals,
        }]
    };
    let sealed_fresh = Seals {
        shrink: true,
        grow: true,
        write: true,
        future_write: false,
    };
    let unsealed = Seals {
        shrink: true,
        ..Seals::default()
    };
    let h = MessageHeader { topic: 1, seq: 1 };
    let hello = encode_data(
        &DataFrame::Hello {
            publisher: id(P),
            rings: false,
        },
        &[],
    );
    let bind = encode_data(
        &DataFrame::Topic {
            id: 1,
            topic: "t".into(),
        },
        &[],
    );
    let cases: Vec<(&str, Vec<u8>, Vec<ReceivedSegment>)> = vec![
        ("garbage", vec![1, 2, 3, 4, 5], vec![]),
        (
            "unsealed fresh",
            encode_data(&DataFrame::Fresh { header: h, len: 10 }, &[]),
            seg(1, unsealed).to_vec(),
        ),
        (
            "too small",
            encode_data(
                &DataFrame::Fresh {
                    header: h,
                    len: 5000,
                },
                &[],
            ),
            seg(2, sealed_fresh).to_vec(),
        ),
        (
            "fresh without fd",
            encode_data(&DataFrame::Fresh { header: h, len: 1 }, &[]),
            vec![],
        ),
        (
            "two fds",
            encode_data(&DataFrame::Inline(h), b"x"),
            [seg(3, sealed_fresh), seg(4, sealed_fresh)].concat(),
        ),
        (
            "unknown segment",
            encode_data(
                &DataFrame::Pooled {
                    header: h,
                    segment: 9,
                    offset: 0,
                    len: 1,
                },
                &[],
            ),
            vec![],
        ),
        (
            "a topic bound again under another id",
            encode_data(
                &DataFrame::Topic {
                    id: 2,
                    topic: "t".into(),
                },
                &[],
            ),
            vec![],
        ),
        (
            "unbound topic",
            encode_data(&DataFrame::Inline(MessageHeader { topic: 5, seq: 1 }), b""),
            vec![],
        ),
    ];
    for (name, record, segments) in cases {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let now = Instant::now();
        let mut s = DataPlane::new(config(S), now);
        let routes = Routes::from_view(&view("t", &[S]));
        s.handle(now, DataInput::Cmd(DataCmd::Routes(routes)))
            .expect("routes");
        s.handle(
            now,
            DataInput::Cmd(DataCmd::Take {
                topic: "t".into(),
                terms: Terms::default(),
            }),
        )
        .expect("take");
        s.handle(
            now,
            DataInput::PeerUp {
                peer: IN,
                cred: Some(cred_of(P)),
            },
        )
        .expect("up");
        for r in [&hello, &bind] {
            s.handle(
                now,
                DataInput::Record {
                    peer: IN,
                    data: r,
                    segments: &[],
                },
            )
            .expect("ok");
        }
        s.handle(
            now,
            DataInput::Record {
                peer: IN,
                data: &record,
                segments: &segments,
            },
        )
        .expect("never an error");
        let out: Vec<_> = std::iter::from_fn(|| s.poll_output()).collect();
        assert!(
            out.contains(&DataOutput::Disconnect(IN)),
            "{name}: disconnected"
        );
        assert!(
            out.iter()
                .any(|o| matches!(o, DataOutput::Evt(DataEvt::PeerMisbehaved { .. }))),
            "{name}"
        );
        for r in &segments {
            assert!(
                out.contains(&DataOutput::Release(r.segment)),
                "{name}: fd {r:?} released"
            );
        }
        assert!(
            !out.iter().any(|o| matches!(o, DataOutput::Deliver(_))),
            "{name}: nothing delivered"
        );
    }
}

#[test]
fn payloads_and_segments_larger_than_the_subscription_takes_are_refused_unmapped() {
    let sealed = |fresh: bool| Seals {
        shrink: true,
        grow: true,
        write: fresh,
        future_write: !fresh,
    };
    let h = MessageHeader { topic: 1, seq: 1 };
    let hello = encode_data(
        &DataFrame::Hello {
            publisher: id(P),
            rings: false,
        },
        &[],
    );
    let bind = encode_data(
        &DataFrame::Topic {
            id: 1,
            topic: "t".into(),
        },
        &[],
    );
    let offer = |id, size| encode_data(&DataFrame::Segment { id, size }, &[]);
    // Not a power of two: pool segments come in power-of-two classes.
    let max = 3 << 19;
    let class = Pool::class(max);
    /// The case, the records after hello and bind, the last one's segment (size, fresh), and
    /// whether it is refused.
    type Case = (&'static str, Vec<Vec<u8>>, Option<(u64, bool)>, bool);
    let cases: Vec<Case> = vec![
        (
            "a sparse 4 GiB fresh payload",
            vec![encode_data(
                &DataFrame::Fresh {
                    header: h,
                    len: 4 << 30,
                },
                &[],
            )],
            Some((4 << 30, true)),
            true,
        ),
        (
            "a small payload in a huge fresh segment",
            vec![encode_data(&DataFrame::Fresh { header: h, len: 10 }, &[])],
            Some((max + 1, true)),
            true,
        ),
        (
            "a fresh payload at the maximum",
            vec![encode_data(
                &DataFrame::Fresh {
                    header: h,
                    len: max,
                },
                &[],
            )],
            Some((max, true)),
            false,
        ),
        (
            "a pool segment larger than any payload taken",
            vec![offer(3, 4 << 30)],
            Some((4 << 30, false)),
            true,
        ),
        (
            "a pooled message larger than the maximum",
            vec![
                offer(3, class),
                encode_data(
                    &DataFrame::Pooled {
                        header: h,
                        segment: 3,
                        offset: 0,
                        len: max + 1,
                    },
                    &[],
                ),
            ],
            None,
            true,
        ),
    ];
    for (name, records, seg, refused) in cases {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let now = Instant::now();
        let mut s = DataPlane::new(config(S), now);
        let terms = SubscriptionOptions::default().max_payload(max).terms();
        let take = DataCmd::Take {
            topic: "t".into(),
            terms,
        };
        s.handle(now, DataInput::Cmd(take)).expect("take");
        let routes = DataCmd::Routes(Routes::from_view(&view("t", &[S])));
        s.handle(now, DataInput::Cmd(routes)).expect("routes");
        while s.poll_output().is_some() {}
        let up = DataInput::PeerUp {
            peer: IN,
            cred: Some(cred_of(P)),
        };
        s.handle(now, up).expect("up");
        let n = records.len();
        let mut out = Vec::new();
        for (i, r) in [hello.clone(), bind.clone()]
            .into_iter()
            .chain(records)
            .enumerate()
        {
            // Every offer, and the last record, come with their segment.
            let (size, fresh) = match (seg, i == n + 1) {
                (Some(s), true) => s,
                _ if r[4] == 6 => (class, false),
                _ => (0, false),
            };
            let segments: Vec<ReceivedSegment> = (size > 0)
                .then(|| ReceivedSegment {
                    segment: SegmentId(100 + i as u64),
                    size,
                    seals: sealed(fresh),
                })
                .into_iter()
                .collect();
            s.handle(
                now,
                DataInput::Record {
                    peer: IN,
                    data: &r,
                    segments: &segments,
                },
            )
            .expect("never an error");
            out.extend(std::iter::from_fn(|| s.poll_output()));
        }
        let delivered = out.iter().any(|o| matches!(o, DataOutput::Deliver(_)));
        assert_eq!(delivered, !refused, "{name}: {out:?}");
        assert_eq!(
            out.contains(&DataOutput::Disconnect(IN)),
            refused,
            "{name}: disconnected"
        );
        let stats = s.stats();
        assert_eq!(stats.guard.oversized, u64::from(refused), "{name}");
        assert_eq!(stats.rejected, u64::from(refused), "{name}");
        if refused {
            // Every segment of the link goes back to the driver, never mapped.
            let released = out
                .iter()
                .filter(|o| matches!(o, DataOutput::Release(_)))
                .count();
            assert!(released >= 1, "{name}: segments released: {out:?}");
        }
    }
}

/// The buffer of an inline payload the application dropped takes a later payload of its
/// length, and one the application still holds keeps its bytes.
#[test]
fn inline_payloads_the_application_dropped_are_written_again() {
    let mut t = Pair::new("t", Terms::default(), false);
    let payload = |byte: u8| Payload::Inline(vec![byte; 1024]);
    let bytes = |d: &Delivery| match &d.payload {
        Delivered::Inline(b) => Arc::clone(b),
        other => panic!("not inline: {other:?}"),
    };
    t.publish("t", payload(1));
    t.publish("t", payload(2));
    let first = bytes(&t.delivered[0]);
    let second = bytes(&t.delivered[1]);
    let ptr = first.as_ptr();
    t.delivered.clear();
    // Watched: the data plane holds each one too.
    assert_eq!(Arc::strong_count(&first), 2);
    drop(first);
    // Were the buffer freed, an allocation of its size would most likely take it now.
    let blocker = vec![0u8; 1024 + 16];
    t.publish("t", payload(3));
    let third = bytes(&t.delivered[0]);
    assert_eq!(third.as_ptr(), ptr, "the first one's buffer, dropped");
    assert_eq!(third[..], [3; 1024]);
    assert_eq!(second[..], [2; 1024], "still held: untouched");
    assert_eq!(t.seqs(), [3]);
    drop(blocker);
}
