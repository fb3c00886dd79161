//! The `ipc-pubsub` command line; see [`ipc_pubsub_cli`].

fn main() -> std::process::ExitCode {
    ipc_pubsub_cli::main()
}
