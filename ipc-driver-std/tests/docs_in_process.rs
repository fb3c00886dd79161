//! Shared documents between nodes of one process: the std driver's document API end to end.

use std::sync::mpsc;
use std::time::Duration;

use ipc_driver_std::{Committed, DocEvent, Node, NodeEvent, PatchError};
use ipc_proto::doc::{DocError, RejectReason};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

fn group() -> String {
    format!("t-{:016x}", getrandom::u64().expect("OS randomness"))
}

#[test]
fn patches_reach_every_node_and_a_late_opener_gets_the_value() {
    let g = group();
    let a = Node::builder("a").group(&g).join().expect("a joins");
    let b = Node::builder("b").group(&g).join().expect("b joins");
    let b_events = b.events();
    let da = a
        .open_doc("cfg", json!({"n": 0, "motors": {"left": 0}}))
        .expect("a opens");
    assert_eq!(da.wait_opened(WAIT).expect("opened"), 0, "created at 0");
    // b's default is not the group's value: the host's wins.
    let db = b.open_doc("cfg", json!({"other": true})).expect("b opens");
    db.wait_opened(WAIT).expect("b opened");
    assert_eq!(*db.snapshot().value, json!({"n": 0, "motors": {"left": 0}}));

    // An observer on b fires for its path only.
    let (tx, seen) = mpsc::channel();
    db.observe("motors.left", move |v| {
        let _ = tx.send(v.cloned());
    })
    .expect("valid path");

    // a runs the hub; b is the witness that holds a's patches.
    assert_eq!(
        da.patch(&json!({"$inc": {"n": 5}})).expect("accepted"),
        Committed {
            version: 1,
            witnesses: 1
        }
    );
    let v = da
        .patch(&json!({"$set": {"motors.left": 40}}))
        .expect("accepted");
    assert_eq!(v.version, 2);
    assert!(
        da.snapshot().version >= Some(2),
        "the caller sees its patch"
    );
    assert_eq!(
        seen.recv_timeout(WAIT).expect("the observer fired"),
        Some(json!(40))
    );
    let patched = b_events
        .wait_for(WAIT, |e| {
            matches!(e, NodeEvent::Doc(DocEvent::Patched { version: 2, .. }))
        })
        .expect("b is told of version 2");
    let NodeEvent::Doc(DocEvent::Patched { origin, update, .. }) = patched else {
        unreachable!("matched above")
    };
    assert_eq!(origin, a.id());
    assert_eq!(update.to_value(), json!({"$set": {"motors.left": 40}}));
    // Only `n` changed since: the observer of motors.left stays quiet.
    assert_eq!(
        da.patch(&json!({"$inc": {"n": 1}}))
            .expect("accepted")
            .version,
        3
    );

    // A late node, with its own default, gets the current value.
    let c = Node::builder("c").group(&g).join().expect("c joins");
    let dc = c.open_doc("cfg", json!({})).expect("c opens");
    assert_eq!(dc.wait_opened(WAIT).expect("opened"), 3);
    assert_eq!(
        *dc.snapshot().value,
        json!({"n": 6, "motors": {"left": 40}})
    );
    assert!(
        seen.try_recv().is_err(),
        "the observer of motors.left fired for a change of n"
    );
}

#[test]
fn invalid_and_conflicting_patches_are_typed_errors() {
    let g = group();
    let a = Node::builder("a").group(&g).join().expect("a joins");
    let b = Node::builder("b").group(&g).join().expect("b joins");
    let da = a.open_doc("d", json!({"x": 1, "s": "text"})).expect("open");
    da.wait_opened(WAIT).expect("opened");
    let db = b.open_doc("d", json!({})).expect("open");
    db.wait_opened(WAIT).expect("opened");

    // Refused locally: names the operator and the path, changes nothing.
    let e = da.patch(&json!({"$inc": {"s": 1}})).expect_err("a string");
    let PatchError::Invalid(DocError::Update(u)) = &e else {
        panic!("not an update error: {e:?}")
    };
    let text = u.to_string();
    assert!(text.contains("$inc") && text.contains('s'), "{text}");
    let e = da.patch(&json!({"$nope": {"x": 1}})).expect_err("unknown");
    assert!(e.to_string().contains("$nope"), "{e}");

    // Both sides patch the same path at once, each against the version it knows: at least
    // one wins each round, and a loser is told which path conflicted (whether both bases were
    // the same depends on timing here; tests/tests/docs.rs makes it certain).
    let mut wins = 0;
    let mut conflicts = 0;
    for round in 0..20_usize {
        let ta = da
            .patch_nowait(&json!({"$set": {"y": round}}))
            .expect("sent");
        let tb = db
            .patch_nowait(&json!({"$set": {"y": round + 100}}))
            .expect("sent");
        for r in [ta.wait(), tb.wait()] {
            match r {
                Ok(_) => wins += 1,
                Err(PatchError::Rejected(RejectReason::Conflict { path, .. })) => {
                    assert_eq!(path.to_string(), "y");
                    conflicts += 1;
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(wins > round, "round {round}: both patches rejected");
    }
    assert_eq!(wins + conflicts, 40);
    // Every node ends with the host's value. Either may still be missing the other's last
    // accepted patch when its own answer arrives: wait until both hold the same version and
    // value (nothing is patched any more, so that is the host's).
    let deadline = std::time::Instant::now() + WAIT;
    while da.snapshot() != db.snapshot() {
        assert!(
            std::time::Instant::now() < deadline,
            "a and b never agreed: {:?} vs {:?}",
            da.snapshot(),
            db.snapshot()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        da.snapshot().version,
        Some(wins as u64),
        "one version per accepted patch"
    );
}

#[test]
fn a_ticket_of_a_closed_document_is_answered() {
    let g = group();
    let a = Node::builder("a").group(&g).join().expect("a joins");
    let da = a.open_doc("d", json!({"n": 0})).expect("open");
    da.wait_opened(WAIT).expect("opened");
    // Alone in its group: nobody else holds the patch.
    assert_eq!(
        da.patch(&json!({"$inc": {"n": 1}})).expect("accepted"),
        Committed {
            version: 1,
            witnesses: 0
        }
    );
    // Answered or not by the time the document closes, the ticket never hangs.
    let t = da.patch_nowait(&json!({"$inc": {"n": 1}})).expect("sent");
    drop(da);
    match t.wait_timeout(WAIT) {
        Ok(v) => assert_eq!(v.version, 2),
        Err(PatchError::Unanswered(why)) => assert!(why.contains("closed"), "{why}"),
        Err(e) => panic!("{e:?}"),
    }
    // The node still works, and the document may be opened again.
    let again = a.open_doc("d", json!({})).expect("reopen");
    again.wait_opened(WAIT).expect("opened");
    assert!(again.snapshot().value["n"].as_i64() >= Some(1));
}
