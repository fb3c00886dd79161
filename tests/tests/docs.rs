//! Shared documents between processes: increments across hub kills, a conflict between two
//! processes, and late joiners.
//!
//! Writers are `ipc-test-node doc-peer` processes started with `--no-hub`, so that the hub is
//! always one of the plain `node` processes and killing the hub never kills a writer (whose
//! unanswered patch would then be of unknown fate). Every wait has a generous deadline; every
//! child is killed when the test ends, also on failure.

use std::time::{Duration, Instant};

use ipc_tests::{Child, Value, WAIT, event, exe, group};
use nix::sys::signal::Signal;

const DOC: &str = "shared";

/// A `doc-peer` on document [`DOC`], once the host has answered its opening.
fn doc_peer(g: &str, name: &str, extra: &[&str]) -> Child {
    let mut args = vec!["doc-peer", "--group", g, "--name", name, "--doc", DOC];
    args.extend_from_slice(extra);
    let mut c = Child::spawn_program(name, &exe(), &args, true);
    c.wait_for(WAIT, |v| event(v) == "opened");
    c
}

/// A plain node (a hub candidate), once it is synced with a hub.
fn hub_candidate(g: &str, name: &str) -> Child {
    let mut c = Child::node(g, name, &[]);
    c.wait_for(WAIT, |v| event(v) == "synced");
    c
}

/// The value `doc NAME get` prints: a node that joins now and opens the document.
fn late_get(g: &str) -> Value {
    let mut c = Child::spawn("late", &["--group", g, "doc", DOC, "get"]);
    let v = c.wait_for(WAIT, |v| v.is_object());
    assert_eq!(c.wait_exit(WAIT), Some(0), "doc get: {}", c.stderr());
    v
}

/// Asks a doc-peer for its value until `pred` holds.
fn wait_value(c: &mut Child, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        c.send("get");
        let v = c
            .next_matching(WAIT, |v| event(v) == "value")
            .expect("a value line");
        if pred(&v["value"]) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{}: the value stays at {v}",
            c.name
        );
    }
}

/// Which of `candidates` prints `became_hub` next (a new line); panics at the deadline.
fn next_hub(candidates: &mut [Child]) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        for (i, c) in candidates.iter_mut().enumerate() {
            if c.next_matching(Duration::from_millis(20), |v| event(v) == "became_hub")
                .is_some()
            {
                return i;
            }
        }
        assert!(Instant::now() < deadline, "no candidate became the hub");
    }
}

#[test]
fn four_writers_count_every_increment_once_across_three_hub_kills() {
    let g = group();
    let mut candidates: Vec<Child> = Vec::new();
    for i in 0..4 {
        candidates.push(hub_candidate(&g, &format!("cand{i}")));
    }
    let mut hub = candidates
        .iter()
        .position(|c| !c.events("became_hub").is_empty())
        .expect("the first candidate runs the hub");
    let mut writers: Vec<Child> = (0..4)
        .map(|i| {
            doc_peer(
                &g,
                &format!("w{i}"),
                &["--no-hub", "--default", r#"{"n":0}"#],
            )
        })
        .collect();
    for w in &mut writers {
        w.send("inc 1000");
    }
    let started = Instant::now();
    // Kill the hub three times while the writers write: after writer 0's 100th, 300th and
    // 500th accepted increment.
    for (kill, at) in [100, 300, 500].into_iter().enumerate() {
        writers[0].wait_for(WAIT, |v| {
            event(v) == "progress" && v["accepted"].as_u64() >= Some(at)
        });
        let mut dead = candidates.remove(hub);
        dead.kill();
        hub = next_hub(&mut candidates);
        eprintln!("kill {kill}: {} took over", candidates[hub].name);
    }
    let mut rejected = 0;
    for w in &mut writers {
        let done = w.wait_for(Duration::from_secs(120), |v| event(v) == "done");
        assert_eq!(done["accepted"], 1000, "{}: {done}", w.name);
        rejected += done["rejected"].as_u64().expect("a count");
    }
    eprintln!(
        "4000 increments accepted ({rejected} rejected as conflicts and sent again) in {:?} \
         with 3 hub kills",
        started.elapsed()
    );
    // Every writer converges to the host's value, and a late joiner gets it.
    for w in &mut writers {
        wait_value(w, |v| v["n"] == 4000);
    }
    assert_eq!(late_get(&g), serde_json::json!({"n": 4000}));
}

#[test]
fn two_processes_patching_one_path_against_one_version_one_wins_one_is_told() {
    let g = group();
    let hub = hub_candidate(&g, "hub");
    let mut a = doc_peer(&g, "a", &["--no-hub", "--default", r#"{"x":0,"y":0}"#]);
    let mut b = doc_peer(&g, "b", &["--no-hub", "--default", r#"{"x":0,"y":0}"#]);
    wait_value(&mut a, |v| v["x"] == 0);
    wait_value(&mut b, |v| v["x"] == 0);
    // With the hub stopped (all its threads: a patch it had started on would be broadcast),
    // both patches are made against version 0 and wait in its socket.
    hub.stop();
    a.send(r#"send {"$set": {"x": "a"}}"#);
    b.send(r#"send {"$set": {"x": "b", "y": 1}}"#);
    a.wait_for(WAIT, |v| event(v) == "sent");
    b.wait_for(WAIT, |v| event(v) == "sent");
    hub.signal(Signal::SIGCONT);
    a.send("wait");
    b.send("wait");
    let ra = a.wait_for(WAIT, |v| event(v) == "answer");
    let rb = b.wait_for(WAIT, |v| event(v) == "answer");
    let (winner, loser, value) = match (ra["version"].as_u64(), rb["version"].as_u64()) {
        (Some(1), None) => (&ra, &rb, serde_json::json!({"x": "a", "y": 0})),
        (None, Some(1)) => (&rb, &ra, serde_json::json!({"x": "b", "y": 1})),
        _ => panic!("not exactly one winner: a {ra}, b {rb}"),
    };
    assert_eq!(
        loser["conflict"], "x",
        "the loser is told the path: {loser}"
    );
    assert!(
        loser["error"]
            .as_str()
            .is_some_and(|e| e.contains("conflict")),
        "{loser}"
    );
    assert_eq!(winner["version"], 1);
    // The loser rolled back: both hold the winner's value, and so does a late joiner.
    assert_eq!(wait_value(&mut a, |v| *v == value)["version"], 1);
    assert_eq!(wait_value(&mut b, |v| *v == value)["version"], 1);
    assert_eq!(late_get(&g), value);
}

#[test]
fn the_doc_command_gets_patches_and_watches() {
    let g = group();
    let _hub = hub_candidate(&g, "hub");
    let mut watch = Child::spawn(
        "watch",
        &[
            "--group",
            &g,
            "doc",
            DOC,
            "watch",
            "--default",
            r#"{"n":0}"#,
        ],
    );
    let first = watch.wait_for(WAIT, |v| event(v) == "doc_state");
    assert_eq!(first["value"], serde_json::json!({"n": 0}), "{first}");
    let patch = |update: &str| {
        let mut c = Child::spawn("patch", &["--group", &g, "doc", DOC, "patch", update]);
        let code = c.wait_exit(WAIT);
        (code, c.seen.first().cloned(), c.stderr())
    };
    let (code, out, _) = patch(r#"{"$inc": {"n": 2}, "$set": {"s": "text"}}"#);
    assert_eq!((code, out), (Some(0), Some(serde_json::json!(1))));
    // A type error: the message names the operator and the path; exit code 1.
    let (code, out, err) = patch(r#"{"$inc": {"s": 1}}"#);
    assert_eq!((code, out), (Some(1), None));
    assert!(err.contains("$inc") && err.contains("`s`"), "{err}");
    // Not JSON: a failed command (exit code 1), like any invalid update.
    let (code, _, err) = patch("not json");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the update is not JSON"), "{err}");
    let line = watch.wait_for(WAIT, |v| event(v) == "doc_patched");
    assert_eq!(line["version"], 1);
    assert_eq!(
        line["update"],
        serde_json::json!({"$inc": {"n": 2}, "$set": {"s": "text"}})
    );
    assert_eq!(line["value"], serde_json::json!({"n": 2, "s": "text"}));
    assert_eq!(late_get(&g), serde_json::json!({"n": 2, "s": "text"}));
    assert_eq!(watch.terminate(WAIT), Some(0), "{}", watch.stderr());
    assert_eq!(watch.events("doc_patched").len(), 1, "{:?}", watch.seen);
}
