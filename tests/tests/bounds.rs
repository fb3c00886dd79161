//! The calloop driver bounded against a flood of idle connections (the std driver's own
//! tests are in `ipc-driver-std/tests/hostile.rs`): a calloop node that may open 64 files,
//! flooded with hundreds of silent connections, stays alive, keeps delivering on the link it
//! has and lets a new member join through its hub.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ipc_driver_std::Node;
use ipc_os::rendezvous::GroupDir;
use ipc_tests::{Child, WAIT, event, exe, group};

/// Raises this process's soft limit of open files to its hard limit.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
}

#[test]
fn a_calloop_node_out_of_files_keeps_serving_its_members() {
    raise_nofile();
    let g = group();
    let program = exe();
    let program = program.to_str().expect("a UTF-8 path");
    let args = [
        "-c",
        "ulimit -n 64 && exec \"$0\" \"$@\"",
        program,
        "peer",
        "--driver",
        "calloop",
        "--group",
        &g,
        "--name",
        "victim",
    ];
    let mut victim = Child::spawn_program("victim", Path::new("/bin/sh"), &args, true);
    victim.wait_for(WAIT, |v| event(v) == "started");
    victim.send("subscription t block 64");
    let publisher = Node::builder("pub").group(&g).join().expect("join");
    let view = publisher
        .wait_view(WAIT, |v| {
            v.nodes()
                .values()
                .any(|n| n.info.name == "victim" && n.subscribes.contains_key("t"))
        })
        .expect("the victim subscribes");
    let data_addr = view
        .nodes()
        .values()
        .find(|n| n.info.name == "victim")
        .map(|n| n.info.data_addr.clone())
        .expect("listed");
    let p = publisher.publisher("t", "text/plain").expect("publisher");
    let mut sent = 0u64;
    let mut delivered = |victim: &mut Child, what: &str| {
        let deadline = Instant::now() + WAIT;
        loop {
            sent += 1;
            p.publish(b"x").expect("publish");
            let seq = sent;
            if victim
                .next_matching(Duration::from_millis(50), |v| {
                    event(v) == "message" && v["seq"].as_u64() >= Some(seq.saturating_sub(5))
                })
                .is_some()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: nothing delivered; stderr: {}",
                victim.stderr()
            );
        }
    };
    delivered(&mut victim, "before the flood");

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = Arc::clone(&stop);
        let dir = GroupDir::private(&g).expect("the group's directory");
        thread::spawn(move || {
            let mut idle: Vec<OwnedFd> = Vec::new();
            while !stop.load(Ordering::Relaxed) && idle.len() < 5000 {
                match dir.connect_data(&data_addr) {
                    Ok(fd) => idle.push(fd),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(2));
                    }
                    Err(e) => panic!("connect: {e}"),
                }
            }
            idle
        })
    };
    delivered(&mut victim, "during the flood");
    let late = Node::builder("late")
        .group(&g)
        .join()
        .expect("a member joins");
    victim.wait_for(WAIT, |v| event(v) == "node_joined" && v["name"] == "late");
    // Out of files, the victim paused its listeners, and expired the silent connections.
    let deadline = Instant::now() + WAIT;
    loop {
        let err = victim.stderr();
        if err.contains("pausing the listeners") && err.matches("no handshake within").count() >= 2
        {
            break;
        }
        assert!(Instant::now() < deadline, "stderr: {err}");
        victim.drain_for(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let idle = attacker.join().expect("the attacker");
    eprintln!(
        "{} idle connections against a calloop node limited to 64 files",
        idle.len()
    );
    assert!(idle.len() > 3 * 64, "only {} connections", idle.len());
    drop(idle);
    drop(late);
    delivered(&mut victim, "after the flood");
    let err = victim.stderr();
    assert!(!err.contains("panicked"), "{err}");
    let warnings = err.lines().filter(|l| l.contains("WARN")).count();
    assert!(warnings <= 50, "{warnings} warnings: {err}");
}
