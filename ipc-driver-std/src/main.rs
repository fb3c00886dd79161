//! The `ipc-pubsub` command line.

fn main() {
    eprintln!("ipc-pubsub: not built yet");
    std::process::exit(2);
}
