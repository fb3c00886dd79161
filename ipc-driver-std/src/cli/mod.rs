//! The `ipc-pubsub` command line.

use std::process::ExitCode;

/// Runs the command line with the process's arguments.
pub fn main() -> ExitCode {
    eprintln!("ipc-pubsub: not built yet");
    ExitCode::from(2)
}
