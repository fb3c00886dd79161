//! Shared documents between two nodes in one calloop loop: open, patch, follow, refuse.

use std::time::{Duration, Instant};

use calloop::EventLoop;
use ipc_driver_calloop::{
    DocError, DocEvent, DriverError, Node, NodeEvent, NodeSource, ObserverId, PatchId,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn group() -> String {
    format!("calloop-doc-{:016x}", getrandom::u64().expect("random"))
}

#[derive(Default)]
struct State {
    /// (node, event) in order.
    docs: Vec<(String, DocEvent)>,
    /// Patches of `a` to send once it has opened the document.
    to_send: Vec<Value>,
    sent: Vec<PatchId>,
    /// (node, version, value) after each change.
    values: Vec<(String, Option<u64>, Value)>,
    /// What b's path observers reported, in order.
    observed: Vec<(ObserverId, Option<Value>)>,
}

fn run_until(
    event_loop: &mut EventLoop<'static, State>,
    state: &mut State,
    what: &str,
    done: impl Fn(&State) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(state) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        event_loop
            .dispatch(Some(Duration::from_millis(10)), state)
            .expect("dispatch");
    }
}

#[test]
fn two_nodes_in_one_loop_share_a_document() {
    let g = group();
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new().expect("loop");
    let mut state = State::default();
    let mut a = NodeSource::builder("a").group(&g).join().expect("a");
    let mut b = NodeSource::builder("b").group(&g).join().expect("b");
    a.node().open_doc("cfg", json!({"n": 0})).expect("a opens");
    b.node()
        .open_doc("cfg", json!({"other": 1}))
        .expect("b opens");
    assert!(matches!(
        a.node().open_doc("cfg", json!({})),
        Err(DriverError::Doc(DocError::AlreadyOpen { .. }))
    ));
    let bad = a.node().patch_doc("cfg", &json!({"$nope": {"x": 1}}));
    let Err(DriverError::Doc(DocError::Update(e))) = bad else {
        panic!("an unknown operator was taken: {bad:?}")
    };
    assert!(e.to_string().contains("$nope"), "{e}");
    let on_n = b.node().observe_doc("cfg", "n").expect("observe n");
    let on_mk = b.node().observe_doc("cfg", "m.k").expect("observe m.k");
    let on_other = b.node().observe_doc("cfg", "zzz").expect("observe zzz");
    let gone = b.node().observe_doc("cfg", "").expect("observe everything");
    assert!(b.node().unobserve_doc(gone));
    assert!(!b.node().unobserve_doc(gone));
    assert!(matches!(
        b.node().observe_doc("cfg", "a..b"),
        Err(DriverError::Path(_))
    ));
    assert!(matches!(
        b.node().observe_doc("nope", "n"),
        Err(DriverError::Doc(DocError::NotOpen { .. }))
    ));
    for source in [a, b] {
        event_loop
            .handle()
            .insert_source(source, |event, node: &mut Node, state: &mut State| {
                let me = node.name().to_string();
                if let NodeEvent::DocObserved {
                    doc,
                    observer,
                    value,
                } = event
                {
                    assert_eq!((me.as_str(), doc.as_str()), ("b", "cfg"));
                    state.observed.push((observer, value));
                    return;
                }
                if let NodeEvent::Doc(e) = event {
                    if matches!(e, DocEvent::Opened { .. }) && me == "a" {
                        for u in std::mem::take(&mut state.to_send) {
                            state.sent.push(node.patch_doc("cfg", &u).expect("valid"));
                        }
                    }
                    if matches!(e, DocEvent::Changed { .. }) {
                        let snapshot = node.doc("cfg").expect("open");
                        let value = snapshot.value.clone();
                        state.values.push((me.clone(), snapshot.version, value));
                    }
                    state.docs.push((me, e));
                }
            })
            .expect("insert");
    }
    state.to_send = vec![json!({"$inc": {"n": 2}}), json!({"$set": {"m.k": "v"}})];
    run_until(&mut event_loop, &mut state, "both patches accepted", |s| {
        s.docs
            .iter()
            .filter(|(n, e)| n == "a" && matches!(e, DocEvent::Accepted { .. }))
            .count()
            == 2
    });
    let want = json!({"n": 2, "m": {"k": "v"}});
    run_until(&mut event_loop, &mut state, "b sees version 2", |s| {
        s.values
            .iter()
            .any(|(n, v, value)| n == "b" && *v == Some(2) && *value == want)
    });
    // b's default never overwrote the document; b saw each version patched by a.
    let patched: Vec<u64> = state
        .docs
        .iter()
        .filter_map(|(n, e)| match e {
            DocEvent::Patched { version, .. } if n == "b" => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(patched, [1, 2]);
    assert!(
        !state
            .values
            .iter()
            .any(|(_, _, value)| value.get("other").is_some() && value.get("n").is_some()),
        "a default merged into the group's value"
    );
    assert_eq!(state.sent.len(), 2);
    // b's observers fired when their paths changed, and only then.
    let seen = |id| -> Vec<Option<Value>> {
        (state.observed.iter())
            .filter(|(o, _)| *o == id)
            .map(|(_, v)| v.clone())
            .collect()
    };
    assert_eq!(seen(on_mk), [Some(json!("v"))]);
    let n = seen(on_n);
    assert_eq!(n.last(), Some(&Some(json!(2))), "{n:?}");
    assert!(
        n.windows(2).all(|w| w[0] != w[1]),
        "fired without a change: {n:?}"
    );
    assert_eq!(seen(on_other), [], "a path nobody wrote");
    assert_eq!(seen(gone), [], "a removed observer");
}
