//! `ipc-test-node attack ...`: what a hostile local user tries against a group, as a program
//! the security tests start as another uid (`ipc-test-node as-uid 65534 attack ...`).
//!
//! Every attack prints JSON lines: what it did and what the kernel answered, so the test
//! decides what counts as a breach.
//!
//! | attack | what it does |
//! |---|---|
//! | `squat NAME MILLIS` | binds the abstract socket `@NAME` (where groups used to meet), accepts every connection for `MILLIS` ms and reads everything sent; prints `listening`, then `done` with the connections and bytes it got |
//! | `probe DIR MILLIS` | for `MILLIS` ms, over and over: connects to `DIR/hub` and to every data socket it can list in `DIR`, opens and locks `DIR/hub.lock`, binds `DIR/hub`, creates a file in `DIR`; prints `done` with how often each succeeded and the last error of each |
//! | `plant DIR` | creates `DIR` with mode 0777 (a directory another user will be told to use); prints `planted` |

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ipc_os::addr::AbstractAddr;
use ipc_os::socket::{self, Recv};
use rustix::fs::{FlockOperation, Mode, OFlags};
use serde_json::{Value, json};

fn emit(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}").and_then(|()| out.flush());
}

/// Runs `attack ARGS...`; the exit code is 2 on a usage error, else 0.
pub fn main(args: &[String]) -> ExitCode {
    let millis = |s: Option<&String>| s.and_then(|s| s.parse::<u64>().ok());
    match args {
        [kind, name, ms] if kind == "squat" => match millis(Some(ms)) {
            Some(ms) => squat(name, Duration::from_millis(ms)),
            None => usage(),
        },
        [kind, dir, ms] if kind == "probe" => match millis(Some(ms)) {
            Some(ms) => probe(Path::new(dir), Duration::from_millis(ms)),
            None => usage(),
        },
        [kind, dir] if kind == "plant" => plant(Path::new(dir)),
        _ => usage(),
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: ipc-test-node attack squat NAME MILLIS | probe DIR MILLIS | plant DIR");
    ExitCode::from(2)
}

fn squat(name: &str, period: Duration) -> ExitCode {
    let addr = match AbstractAddr::new(name.as_bytes()) {
        Ok(a) => a,
        Err(e) => {
            emit(&json!({"event": "error", "error": e.to_string()}));
            return ExitCode::from(1);
        }
    };
    let listener = match socket::listen(addr.as_unix_addr()) {
        Ok(l) => l,
        Err(e) => {
            emit(&json!({"event": "error", "error": e.to_string()}));
            return ExitCode::from(1);
        }
    };
    emit(&json!({"event": "listening", "name": addr.to_string()}));
    let end = Instant::now() + period;
    let mut links: Vec<OwnedFd> = Vec::new();
    let (mut accepted, mut bytes, mut records) = (0u64, 0u64, 0u64);
    let mut buf = vec![0u8; 1 << 17];
    while Instant::now() < end {
        while let Ok(Some((fd, _))) = socket::accept(listener.as_fd()) {
            accepted += 1;
            links.push(fd);
        }
        for l in &links {
            let mut fds = Vec::new();
            while let Ok(Recv::Data { len, .. }) =
                socket::recv_record(l.as_fd(), &mut buf, &mut fds, 4)
            {
                records += 1;
                bytes += len as u64;
                fds.clear();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    emit(&json!({"event": "done", "accepted": accepted, "records": records, "bytes": bytes}));
    ExitCode::SUCCESS
}

/// Counts of one kind of attempt: how often it worked, and the last error.
#[derive(Default)]
struct Tally {
    ok: u64,
    tried: u64,
    error: Option<String>,
}

impl Tally {
    fn record<T>(&mut self, r: std::io::Result<T>) -> Option<T> {
        self.tried += 1;
        match r {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(e) => {
                self.error = Some(e.to_string());
                None
            }
        }
    }
}

fn probe(dir: &Path, period: Duration) -> ExitCode {
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let end = Instant::now() + period;
    let mut held = Vec::new();
    while Instant::now() < end {
        let hub = dir.join("hub");
        let t = tallies.entry("connect_hub").or_default();
        if let Some(fd) = t.record(ipc_os::rendezvous::connect(&hub)) {
            held.push(fd);
        }
        let t = tallies.entry("list_dir").or_default();
        if let Some(entries) = t.record(fs::read_dir(dir)) {
            for e in entries.flatten() {
                let name = e.file_name();
                if name.to_string_lossy().ends_with(".data") {
                    let t = tallies.entry("connect_data").or_default();
                    if let Some(fd) = t.record(ipc_os::rendezvous::connect(&e.path())) {
                        held.push(fd);
                    }
                }
            }
        }
        let t = tallies.entry("lock_hub").or_default();
        let lock = rustix::fs::open(
            dir.join("hub.lock"),
            OFlags::RDONLY | OFlags::CREATE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(std::io::Error::from)
        .and_then(|fd| {
            rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive)?;
            Ok(fd)
        });
        if let Some(fd) = t.record(lock) {
            held.push(fd);
        }
        let t = tallies.entry("bind_hub").or_default();
        if let Some(fd) = t.record(ipc_os::rendezvous::listen(&hub)) {
            held.push(fd);
        }
        let t = tallies.entry("create_file").or_default();
        t.record(fs::write(dir.join("planted"), b"x"));
        std::thread::sleep(Duration::from_millis(2));
    }
    let summary: serde_json::Map<String, Value> = tallies
        .into_iter()
        .map(|(k, t)| {
            (
                k.to_string(),
                json!({"ok": t.ok, "tried": t.tried, "error": t.error}),
            )
        })
        .collect();
    emit(&json!({"event": "done", "attempts": summary}));
    ExitCode::SUCCESS
}

fn plant(dir: &Path) -> ExitCode {
    let made = fs::create_dir(dir)
        .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o777)));
    match made {
        Ok(()) => {
            emit(&json!({"event": "planted", "dir": dir.display().to_string()}));
            ExitCode::SUCCESS
        }
        Err(e) => {
            emit(&json!({"event": "error", "error": e.to_string()}));
            ExitCode::from(1)
        }
    }
}
