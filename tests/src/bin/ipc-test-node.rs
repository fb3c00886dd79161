//! The process the multi-process tests start: the real `ipc-pubsub` command line, plus roles
//! only tests need.
//!
//! - `ipc-test-node <ipc-pubsub arguments>`: exactly `ipc-pubsub`.
//! - `ipc-test-node as-uid <UID> <any of these arguments>`: drops to `UID` (group too) first,
//!   for tests of who may join and of what another user can do; the tests run as root.
//! - `ipc-test-node attack ...`: a hostile local user's attempts (see `ipc_tests::attack`).
//! - `ipc-test-node peer --driver std|calloop ...`: one node on either driver, driven through
//!   stdin, for the conformance suite (see `ipc_tests::peer`).
//! - `ipc-test-node doc-peer ...`: one std node with one shared document, driven through
//!   stdin, for the document tests (see `ipc_tests::doc_peer`).

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "as-uid") {
        let Some(uid) = args
            .get(2)
            .and_then(|u| u.to_str())
            .and_then(|u| u.parse::<u32>().ok())
        else {
            eprintln!("usage: ipc-test-node as-uid <UID> <ipc-test-node arguments>");
            return ExitCode::from(2);
        };
        let id = nix::unistd::Gid::from_raw(uid);
        if let Err(e) = nix::unistd::setgroups(&[id]).and_then(|()| nix::unistd::setgid(id)) {
            eprintln!("ipc-test-node: cannot drop to gid {uid}: {e}");
            return ExitCode::from(2);
        }
        if let Err(e) = nix::unistd::setuid(nix::unistd::Uid::from_raw(uid)) {
            eprintln!("ipc-test-node: cannot drop to uid {uid}: {e}");
            return ExitCode::from(2);
        }
        args.drain(1..3);
    }
    let rest = || -> Vec<String> {
        args[2..]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    };
    match args.get(1).and_then(|a| a.to_str()) {
        Some("peer") => ipc_tests::peer::main(&rest()),
        Some("doc-peer") => ipc_tests::doc_peer::main(&rest()),
        Some("attack") => ipc_tests::attack::main(&rest()),
        _ => ipc_pubsub_cli::run(args),
    }
}
