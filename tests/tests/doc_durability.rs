//! Acknowledged document patches survive the hub's death, whoever wrote them: the writers here
//! are `ipc-pubsub doc ... patch` runs that exit right after their answer, and the long-running
//! nodes never open the document (they hold it as witnesses).
//!
//! Every wait has a generous deadline; every child is killed when the test ends, also on
//! failure; each test has its own random group.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ipc_tests::{Child, Value, WAIT, event, group};
use nix::sys::signal::Signal;

const DOC: &str = "counter";

/// A plain node, once it is synced with a hub.
fn node(g: &str, name: &str) -> Child {
    let mut c = Child::node(g, name, &[]);
    c.wait_for(WAIT, |v| event(v) == "synced");
    c
}

/// What one `doc counter patch` run ended with.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Exit 0: the version it printed.
    Acked(u64),
    /// Exit 1 with the host's rejection: not applied.
    Rejected,
}

/// The one update every writer sends.
const INC: &str = r#"{"$inc":{"n":1}}"#;

/// Starts `ipc-pubsub doc counter patch INC --json EXTRA...`, as a script would.
fn doc_patch(g: &str, name: &str, extra: &[&str]) -> Child {
    let mut args = vec!["--group", g, "doc", DOC, "patch", INC, "--json"];
    args.extend_from_slice(extra);
    Child::spawn(name, &args)
}

/// Runs [`doc_patch`] to its end.
fn patch(g: &str, name: &str) -> Result<Outcome, String> {
    let mut c = doc_patch(g, name, &[]);
    let code = c.wait_exit(WAIT);
    match code {
        Some(0) => {
            let line = c
                .seen
                .iter()
                .find(|v| v.get("version").is_some())
                .ok_or_else(|| format!("{name}: exit 0 and no version line: {:?}", c.seen))?;
            Ok(Outcome::Acked(line["version"].as_u64().unwrap_or(0)))
        }
        Some(1) if c.stderr().contains("conflicts with") => Ok(Outcome::Rejected),
        other => Err(format!("{name}: exit {other:?}: {}", c.stderr())),
    }
}

/// `doc counter get`, retried until it exits 0 (a group in failover may have no hub for a
/// moment); the value printed.
fn get(g: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut c = Child::spawn("get", &["--group", g, "doc", DOC, "get"]);
        if c.wait_exit(WAIT) == Some(0)
            && let Some(v) = c.seen.iter().find(|v| v.is_object())
        {
            return v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "doc get keeps failing: {}",
            c.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until one of `nodes` prints `became_hub` (a new line).
fn wait_new_hub(nodes: &mut [Child]) {
    let deadline = Instant::now() + WAIT;
    loop {
        for c in nodes.iter_mut() {
            if c.next_matching(Duration::from_millis(20), |v| event(v) == "became_hub")
                .is_some()
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no survivor became the hub");
    }
}

/// The issue's transcript: a group of `members` plain nodes (the first runs the hub), three
/// one-shot patches, the hub killed with `signal`, and the value read back by a new process.
fn three_patches_survive(members: usize, signal: Signal) {
    let g = group();
    let mut hub = node(&g, "a");
    let mut others: Vec<Child> = (1..members).map(|i| node(&g, &format!("n{i}"))).collect();
    for want in 1..=3 {
        let got = patch(&g, "writer").expect("the patch");
        assert_eq!(got, Outcome::Acked(want));
    }
    assert_eq!(get(&g), serde_json::json!({"n": 3}));
    hub.signal(signal);
    hub.wait_exit(WAIT);
    wait_new_hub(&mut others);
    assert_eq!(
        get(&g),
        serde_json::json!({"n": 3}),
        "{members} members, hub stopped by {signal}"
    );
}

#[test]
fn three_acknowledged_patches_survive_kill_9_of_the_hub_with_2_3_and_5_members() {
    for members in [2, 3, 5] {
        three_patches_survive(members, Signal::SIGKILL);
    }
}

#[test]
fn three_acknowledged_patches_survive_sigterm_of_the_hub() {
    three_patches_survive(3, Signal::SIGTERM);
}

#[test]
fn a_doc_patch_alone_with_the_hub_says_it_has_no_witness() {
    let g = group();
    let _hub = node(&g, "a");
    let mut c = doc_patch(&g, "writer", &["--require-witness"]);
    assert_eq!(c.wait_exit(WAIT), Some(3), "{}", c.stderr());
    assert_eq!(
        c.seen.first(),
        Some(&serde_json::json!({"version": 1, "witnesses": 0}))
    );
    assert!(
        c.stderr().contains("held by the hub alone"),
        "{}",
        c.stderr()
    );
    // With a second member, the same patch is witnessed.
    let _b = node(&g, "b");
    let mut c = doc_patch(&g, "writer2", &["--require-witness"]);
    assert_eq!(c.wait_exit(WAIT), Some(0), "{}", c.stderr());
    assert_eq!(
        c.seen.first(),
        Some(&serde_json::json!({"version": 2, "witnesses": 1}))
    );
    // `status` shows both nodes holding the document they never opened.
    let mut status = Child::spawn("status", &["--group", &g, "status", "--json"]);
    assert_eq!(status.wait_exit(WAIT), Some(0), "{}", status.stderr());
    // Pretty-printed: one document over many lines.
    let text: String = status
        .seen
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let report: Value = serde_json::from_str(&text).expect("a status document");
    let rows = report["witnesses"].as_array().expect("witness rows");
    assert_eq!(rows.len(), 2, "{report}");
    for r in rows {
        assert_eq!(r["on"], true, "{r}");
        assert_eq!(r["docs"], 1, "{r}");
        assert!(r["bytes"].as_u64().unwrap_or(0) > 0, "{r}");
        assert_eq!(r["not_kept"], 0, "{r}");
    }
}

/// Three long-running nodes that never open the document, four writers streaming one-shot
/// `$inc` patches, the hub killed with SIGKILL while they write: the final value is the number
/// of acknowledged patches, none lost, none doubled; 20 trials.
#[test]
fn streaming_writers_lose_nothing_across_a_hub_kill_over_20_trials() {
    const WRITERS: usize = 4;
    const PATCHES: usize = 8;
    let mut total_acked = 0;
    for trial in 0..20 {
        let g = group();
        let mut hub = node(&g, "hub");
        let mut others = vec![node(&g, "b"), node(&g, "c")];
        // Each acknowledgement, as it comes: the hub dies after a different number each trial.
        let (ack_tx, acks) = mpsc::channel::<()>();
        let acked: Vec<Result<usize, String>> = thread::scope(|s| {
            let writers: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let g = &g;
                    let ack_tx = ack_tx.clone();
                    s.spawn(move || {
                        let mut acked = 0;
                        for k in 0..PATCHES {
                            match patch(g, &format!("w{w}.{k}"))? {
                                Outcome::Acked(_) => {
                                    acked += 1;
                                    let _ = ack_tx.send(());
                                }
                                Outcome::Rejected => {}
                            }
                        }
                        Ok(acked)
                    })
                })
                .collect();
            drop(ack_tx);
            // The hub dies while they write: after 1 to 6 acknowledgements (or when the
            // writers are done, should they all be rejected).
            for _ in 0..=trial % 6 {
                if acks.recv_timeout(WAIT).is_err() {
                    break;
                }
            }
            hub.kill();
            writers
                .into_iter()
                .map(|h| h.join().expect("writer thread"))
                .collect()
        });
        let acked: usize = acked
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("trial {trial}: {e}"))
            .into_iter()
            .sum();
        wait_new_hub(&mut others);
        let value = get(&g);
        assert_eq!(
            value["n"].as_u64().unwrap_or(0),
            acked as u64,
            "trial {trial}: {acked} patches acknowledged, the document says {value}"
        );
        total_acked += acked;
    }
    println!("20 trials, {total_acked} acknowledged patches, every one counted once");
}
