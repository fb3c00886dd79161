//! The hold-back machine alone: room, deadlines, expiry, the bound, several topics.

use std::time::{Duration, Instant};

use crate::data::{Admit, HoldBack, HoldInput, HoldOutput, MAX_HELD, Room};

fn epoch() -> Instant {
    #[allow(clippy::disallowed_methods)] // the test's epoch; only durations are added
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn room(messages: u32, timeout_ms: u64) -> Option<Room> {
    Some(Room {
        messages,
        timeout: ms(timeout_ms),
    })
}

/// The data plane reports `topic`'s room.
fn set_room<T>(h: &mut HoldBack<T>, now: Instant, topic: &'static str, room: Option<Room>) {
    h.handle(now, HoldInput::Room { topic, room });
}

fn drain<T>(h: &mut HoldBack<T>) -> Vec<HoldOutput<T>> {
    std::iter::from_fn(|| h.poll_output()).collect()
}

fn publish<T>(topic: &str, item: T, expired: bool) -> HoldOutput<T> {
    HoldOutput::Publish {
        topic: topic.into(),
        item,
        expired,
    }
}

fn drained<T>(topic: &str) -> HoldOutput<T> {
    HoldOutput::Drained {
        topic: topic.into(),
    }
}

#[test]
fn without_a_block_subscriber_everything_goes() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    for i in 0..10 {
        assert_eq!(h.publish(t0, "t", i), Admit::Go(i));
    }
    assert_eq!(h.pending("t"), 10);
    assert_eq!(h.poll_timeout(), None);
    assert!(drain(&mut h).is_empty());
    // Taken in one by one: nothing is left to remember.
    for _ in 0..10 {
        h.handle(
            t0,
            HoldInput::Accounted {
                topic: "t",
                room: None,
            },
        );
    }
    assert_eq!(h.pending("t"), 0);
    assert_eq!(h.room("t"), None);
}

#[test]
fn room_counts_what_is_pending() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "t", room(2, 50));
    assert_eq!(h.publish(t0, "t", 1), Admit::Go(1));
    assert_eq!(h.publish(t0, "t", 2), Admit::Go(2));
    let deadline = t0 + ms(50);
    assert_eq!(h.publish(t0, "t", 3), Admit::Held { deadline });
    assert_eq!(h.held("t"), 1);
    assert_eq!(h.poll_timeout(), Some(deadline));
    // The data plane took one in and the subscriber sent it on: room for one more.
    h.handle(
        t0 + ms(1),
        HoldInput::Accounted {
            topic: "t",
            room: room(2, 50),
        },
    );
    assert_eq!(drain(&mut h), [publish("t", 3, false), drained("t")]);
    assert_eq!(h.pending("t"), 2);
    assert_eq!(h.poll_timeout(), None);
}

#[test]
fn a_held_message_expires_at_its_deadline() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "t", room(0, 20));
    assert_eq!(
        h.publish(t0, "t", 'a'),
        Admit::Held {
            deadline: t0 + ms(20)
        }
    );
    assert_eq!(
        h.publish(t0 + ms(5), "t", 'b'),
        Admit::Held {
            deadline: t0 + ms(25)
        }
    );
    // Early and spurious timeouts do nothing.
    h.handle_timeout(t0 + ms(19));
    assert!(drain(&mut h).is_empty());
    h.handle_timeout(t0 + ms(20));
    assert_eq!(drain(&mut h), [publish("t", 'a', true)]);
    assert_eq!(h.poll_timeout(), Some(t0 + ms(25)));
    // An earlier `now` counts as the latest seen: nothing rewinds.
    h.handle_timeout(t0);
    assert!(drain(&mut h).is_empty());
    h.handle_timeout(t0 + ms(30));
    assert_eq!(drain(&mut h), [publish("t", 'b', true), drained("t")]);
    assert_eq!(h.held("t"), 0);
    assert_eq!(h.pending("t"), 2, "expired messages are published too");
}

#[test]
fn deadlines_keep_the_order_of_publishes() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "t", room(0, 100));
    assert_eq!(
        h.publish(t0, "t", 1),
        Admit::Held {
            deadline: t0 + ms(100)
        }
    );
    // The long-waiting subscriber went; the one left waits 10 ms: the second message still
    // goes after the first.
    set_room(&mut h, t0, "t", room(0, 10));
    assert_eq!(
        h.publish(t0, "t", 2),
        Admit::Held {
            deadline: t0 + ms(100)
        }
    );
    h.handle_timeout(t0 + ms(100));
    assert_eq!(
        drain(&mut h),
        [publish("t", 1, true), publish("t", 2, true), drained("t")]
    );
}

#[test]
fn room_coming_back_releases_in_order_then_new_publishes_queue_behind() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "t", room(0, 50));
    for i in 0..5 {
        assert!(matches!(h.publish(t0, "t", i), Admit::Held { .. }));
    }
    // Room for two: the first two go, the others wait on.
    set_room(&mut h, t0 + ms(1), "t", room(2, 50));
    assert_eq!(
        drain(&mut h),
        [publish("t", 0, false), publish("t", 1, false)]
    );
    assert_eq!(h.held("t"), 3);
    // A new publish waits behind them even once room comes: the held go first.
    assert!(matches!(h.publish(t0 + ms(2), "t", 5), Admit::Held { .. }));
    h.handle(
        t0 + ms(3),
        HoldInput::Accounted {
            topic: "t",
            room: room(2, 50),
        },
    );
    assert_eq!(drain(&mut h), [publish("t", 2, false)]);
    // No `Block` subscriber any more: everything goes, not expired.
    set_room(&mut h, t0 + ms(4), "t", None);
    assert_eq!(
        drain(&mut h),
        [
            publish("t", 3, false),
            publish("t", 4, false),
            publish("t", 5, false),
            drained("t"),
        ]
    );
    assert_eq!(h.publish(t0 + ms(5), "t", 6), Admit::Go(6));
}

#[test]
fn a_publish_takes_its_turn_after_what_is_due() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "t", room(0, 10));
    assert!(matches!(h.publish(t0, "t", 1), Admit::Held { .. }));
    // The deadline passed without a timeout call: the publish lets the due one go first.
    assert_eq!(
        h.publish(t0 + ms(10), "t", 2),
        Admit::Held {
            deadline: t0 + ms(20)
        }
    );
    // The queue emptied before the new one was held.
    assert_eq!(drain(&mut h), [publish("t", 1, true), drained("t")]);
    assert_eq!(h.held("t"), 1);
}

#[test]
fn the_bound_refuses_and_drained_says_when_to_try_again() {
    let t0 = epoch();
    let mut h = HoldBack::with_max_held(3);
    assert_eq!(h.max_held(), 3);
    set_room(&mut h, t0, "t", room(0, 10));
    for i in 0..3 {
        assert!(matches!(h.publish(t0, "t", i), Admit::Held { .. }));
    }
    assert!(h.is_full("t"));
    assert_eq!(h.publish(t0, "t", 3), Admit::Full(3));
    assert_eq!(h.held("t"), 3, "a refused publish changes nothing");
    set_room(&mut h, t0, "t", room(1, 10));
    assert_eq!(drain(&mut h), [publish("t", 0, false)]);
    assert!(!h.is_full("t"));
    h.handle_timeout(t0 + ms(10));
    assert_eq!(
        drain(&mut h),
        [publish("t", 1, true), publish("t", 2, true), drained("t")]
    );
    assert_eq!(HoldBack::<()>::new().max_held(), MAX_HELD);
}

#[test]
fn topics_are_held_apart() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "a", room(0, 30));
    set_room(&mut h, t0, "b", room(0, 10));
    assert!(matches!(h.publish(t0, "a", "a1"), Admit::Held { .. }));
    assert!(matches!(h.publish(t0, "b", "b1"), Admit::Held { .. }));
    assert_eq!(h.publish(t0, "c", "c1"), Admit::Go("c1"));
    assert_eq!(h.poll_timeout(), Some(t0 + ms(10)));
    h.handle_timeout(t0 + ms(10));
    assert_eq!(drain(&mut h), [publish("b", "b1", true), drained("b")]);
    assert_eq!(h.poll_timeout(), Some(t0 + ms(30)));
    assert_eq!(h.held("a"), 1);
    // Room on one topic releases nothing of another.
    set_room(&mut h, t0 + ms(11), "b", room(5, 10));
    assert!(drain(&mut h).is_empty());
    set_room(&mut h, t0 + ms(12), "a", room(1, 30));
    assert_eq!(drain(&mut h), [publish("a", "a1", false), drained("a")]);
    assert_eq!(h.poll_timeout(), None);
}

#[test]
fn forgetting_a_topic_lets_its_held_messages_go_expired() {
    let t0 = epoch();
    let mut h = HoldBack::new();
    set_room(&mut h, t0, "t", room(0, 10));
    assert!(matches!(h.publish(t0, "t", 1), Admit::Held { .. }));
    assert!(matches!(h.publish(t0, "t", 2), Admit::Held { .. }));
    h.handle(t0, HoldInput::Forget { topic: "t" });
    assert_eq!(
        drain(&mut h),
        [publish("t", 1, true), publish("t", 2, true)]
    );
    assert_eq!(h.room("t"), None);
    assert_eq!(h.poll_timeout(), None);
    assert_eq!(h.publish(t0, "t", 3), Admit::Go(3));
}

/// `go` is `publish`'s decision to let a message go at once, made without a time: it agrees
/// with `publish` at every step of a topic's room filling, holding, draining and emptying,
/// counts what it lets go against the room, and changes nothing where it says no.
#[test]
fn go_is_publish_going_at_once_without_a_time() {
    let t0 = epoch();
    let (mut by_go, mut by_publish) = (HoldBack::new(), HoldBack::new());
    assert!(!by_go.go("t"), "a topic never published on");
    for h in [&mut by_go, &mut by_publish] {
        assert_eq!(h.publish(t0, "t", 0), Admit::Go(0));
        set_room(h, t0, "t", room(3, 50));
    }
    let mut went = 0;
    for n in 1..8u32 {
        let now = t0 + ms(u64::from(n));
        if n == 5 {
            // Room for two more comes back: the held messages go first.
            for h in [&mut by_go, &mut by_publish] {
                for _ in 0..2 {
                    let accounted = HoldInput::Accounted {
                        topic: "t",
                        room: room(3, 50),
                    };
                    h.handle(now, accounted);
                }
            }
            assert_eq!(drain(&mut by_go), drain(&mut by_publish));
        }
        let pending = by_go.pending("t");
        let goes = by_go.go("t");
        let decided = by_publish.publish(now, "t", n);
        assert_eq!(goes, decided == Admit::Go(n), "message {n}: {decided:?}");
        if goes {
            went += 1;
            assert_eq!(by_go.pending("t"), pending + 1);
        } else {
            assert_eq!(by_go.pending("t"), pending, "a no changes nothing");
            assert_eq!(by_go.publish(now, "t", n), decided);
        }
        assert_eq!(by_go.pending("t"), by_publish.pending("t"));
        assert_eq!(by_go.held("t"), by_publish.held("t"));
    }
    assert!(went >= 2 && by_go.held("t") > 0, "both answers were given");
}

/// `go_with_room` is `handle(Room)` then `publish` going at once, without a time: it agrees
/// with them message by message while rooms come and go, and with messages held it changes
/// nothing (the room waits for `handle`, whose time decides what goes).
#[test]
fn go_with_room_is_a_room_told_then_a_publish_going_at_once() {
    let t0 = epoch();
    let (mut by_go, mut by_publish) = (HoldBack::new(), HoldBack::new());
    assert!(
        !by_go.go_with_room("t", room(3, 50)),
        "a topic never published on"
    );
    for h in [&mut by_go, &mut by_publish] {
        assert_eq!(h.publish(t0, "t", 0), Admit::Go(0));
    }
    let rooms = [
        room(3, 50),
        None,
        room(2, 50),
        room(4, 50),
        room(0, 50),
        None,
    ];
    let mut went = 0;
    for (n, r) in (1u32..).zip(rooms) {
        let now = t0 + ms(u64::from(n));
        let (pending, held) = (by_go.pending("t"), by_go.held("t"));
        let goes = by_go.go_with_room("t", r);
        if held > 0 {
            assert!(!goes, "message {n}: held before it");
            assert_eq!(by_go.pending("t"), pending, "a no changes nothing");
            break;
        }
        set_room(&mut by_publish, now, "t", r);
        let decided = by_publish.publish(now, "t", n);
        assert_eq!(goes, decided == Admit::Go(n), "message {n}: {decided:?}");
        if goes {
            went += 1;
        } else {
            assert_eq!(by_go.publish(now, "t", n), decided);
        }
        assert_eq!(by_go.pending("t"), by_publish.pending("t"));
        assert_eq!(by_go.held("t"), by_publish.held("t"));
    }
    assert!(went >= 2 && by_go.held("t") > 0, "both answers were given");
}
