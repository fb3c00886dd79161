//! The `live` example runs: two instances in one group see each other's lines, and leave
//! cleanly at the end of their input.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// `target/<profile>/examples/live`, which `cargo test` builds with the package's tests.
fn example() -> std::path::PathBuf {
    let test = std::env::current_exe().expect("own path");
    let dir = test.parent().expect("deps").parent().expect("profile dir");
    let exe = dir.join("examples").join("live");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo test`",
        exe.display()
    );
    exe
}

/// A running instance: killed when dropped; its output collected as it comes.
struct Live {
    child: Child,
    out: Arc<Mutex<String>>,
}

impl Live {
    fn start(group: &str, name: &str) -> Self {
        let mut child = Command::new(example())
            .args(["--group", group, "--topic", "chat", "--name", name])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the example");
        let out = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stdout.take().expect("piped");
        let sink = Arc::clone(&out);
        std::thread::spawn(move || {
            let mut buf = [0; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().expect("output").push_str(&text);
            }
        });
        Self { child, out }
    }

    fn says(&self, text: &str) -> bool {
        self.out.lock().expect("output").contains(text)
    }

    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes a group's directory from this user's private runtime directory when dropped.
struct GroupCleanup(String);

impl Drop for GroupCleanup {
    fn drop(&mut self) {
        if let Ok(dir) = ipc_os::rendezvous::GroupDir::private(&self.0) {
            let _ = dir.remove_all();
        }
    }
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_instances_chat_and_leave() {
    let group = format!("live-{:016x}", getrandom::u64().expect("random"));
    // Dropped last: after bob, killed at the end, left his socket behind.
    let _dir = GroupCleanup(group.clone());
    let mut a = Live::start(&group, "alice");
    let b = Live::start(&group, "bob");
    // Each shows the other in its topology table.
    until("both see both", || a.says("bob") && b.says("alice"));
    // A line typed in one shows up in the other, once routes are up: type until it does.
    let mut n = 0;
    until("bob sees alice's line", || {
        n += 1;
        a.type_line(&format!("hello {n}"));
        std::thread::sleep(Duration::from_millis(50));
        b.says("hello ")
    });
    // The end of input leaves the group: bob sees alice go, alice exits 0.
    a.child.stdin.take();
    until("alice exits", || {
        a.child.try_wait().expect("wait").is_some()
    });
    let status = a.child.wait().expect("status");
    assert!(status.success(), "alice exited with {status}");
    until("bob sees alice leave", || b.says(" left"));
}
