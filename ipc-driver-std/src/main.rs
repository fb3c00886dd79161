//! The `ipc-pubsub` command line; see [`ipc_driver_std::cli`].

fn main() -> std::process::ExitCode {
    ipc_driver_std::cli::main()
}
