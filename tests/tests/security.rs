//! What another local user can do against a group, tried as that user: each attack is an
//! `ipc-test-node as-uid 65534 attack ...` process (see `ipc_tests::attack`) against groups
//! of this user's `ipc-pubsub node` processes.
//!
//! The tests need root to start processes of another uid; run as anyone else, each says it
//! skipped and passes.

use std::path::PathBuf;

use ipc_os::rendezvous::GroupDir;
use ipc_tests::{Child, Value, WAIT, converge, event, group, ids};

/// The uid of the hostile user.
const ATTACKER: &str = "65534";

fn root() -> bool {
    let root = nix::unistd::Uid::effective().is_root();
    if !root {
        eprintln!("skipped: needs root to start processes of another uid");
    }
    root
}

fn attack(args: &[&str]) -> Child {
    let mut all = vec!["as-uid", ATTACKER, "attack"];
    all.extend_from_slice(args);
    Child::spawn("attacker", &all)
}

/// The attempts of a `probe` that worked, by kind.
fn breaches(done: &Value) -> Vec<String> {
    let attempts = done["attempts"].as_object().expect("attempts");
    assert!(
        attempts["connect_hub"]["tried"].as_u64() > Some(10),
        "the probe kept trying: {done}"
    );
    attempts
        .iter()
        .filter(|(_, t)| t["ok"].as_u64() != Some(0))
        .map(|(k, t)| format!("{k}: {t}"))
        .collect()
}

#[test]
fn an_impostor_before_the_group_starts_and_during_failover_gets_nothing() {
    if !root() {
        return;
    }
    let g = group();
    // The impostor holds the name where groups used to meet before anyone starts, and keeps
    // it through a failover.
    let mut squatter = attack(&["squat", &format!("ipc-pubsub/{g}/hub"), "8000"]);
    squatter.wait_for(WAIT, |v| event(v) == "listening");
    let mut hub = Child::node(&g, "a", &["--announce", "secrets"]);
    hub.wait_for(WAIT, |v| event(v) == "became_hub");
    let mut b = Child::node(&g, "b", &["--subscribe", "secrets"]);
    let mut c = Child::node(&g, "c", &[]);
    let all = ids(&[&hub, &b, &c]);
    converge(&mut [&mut hub, &mut b, &mut c], &all);

    // Meanwhile it tries the group's own directory, over and over, as the hub dies.
    let dir = GroupDir::private(&g).expect("the group's directory");
    let dir = dir.paths().dir().to_str().expect("UTF-8").to_owned();
    let mut prober = attack(&["probe", &dir, "3000"]);
    hub.kill();
    let survivors = ids(&[&b, &c]);
    converge(&mut [&mut b, &mut c], &survivors);
    let elected: usize = [&b, &c].iter().map(|n| n.events("became_hub").len()).sum();
    assert_eq!(elected, 1, "one survivor took over");

    let probed = prober.wait_for(WAIT, |v| event(v) == "done");
    assert_eq!(breaches(&probed), Vec::<String>::new(), "{probed}");
    let denied = probed["attempts"]["connect_hub"]["error"].as_str();
    assert!(
        denied.is_some_and(|e| e.contains("ermission denied")),
        "{probed}"
    );
    let squatted = squatter.wait_for(WAIT, |v| event(v) == "done");
    assert_eq!(squatted["accepted"], 0, "{squatted}");
    assert_eq!(squatted["bytes"], 0, "{squatted}");
}

#[test]
fn a_runtime_directory_planted_by_another_user_is_refused() {
    if !root() {
        return;
    }
    // The victim is another unprivileged user, whose fallback directory the attacker makes
    // first, open to all.
    let victim = "65533";
    let planted = PathBuf::from(format!("/tmp/ipc-pubsub-{victim}"));
    let _ = std::fs::remove_dir_all(&planted);
    let mut planter = attack(&["plant", planted.to_str().expect("UTF-8")]);
    planter.wait_for(WAIT, |v| event(v) == "planted");

    let g = group();
    let mut node = Child::spawn(
        "victim",
        &["as-uid", victim, "--group", &g, "node", "--name", "victim"],
    );
    let code = node.wait_exit(WAIT);
    // The exit can be seen before the reader thread has taken the last of stderr.
    let deadline = std::time::Instant::now() + WAIT;
    while !node.stderr().contains("refusing") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let stderr = node.stderr();
    let _ = std::fs::remove_dir_all(&planted);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to use /tmp/ipc-pubsub-65533")
            && stderr.contains("owned by uid 65534"),
        "{stderr}"
    );
    assert!(
        node.seen.iter().all(|v| event(v) != "started"),
        "the node never started"
    );
}
