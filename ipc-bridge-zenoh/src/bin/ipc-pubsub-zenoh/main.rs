//! `ipc-pubsub-zenoh`: runs a bridge from a group to Zenoh, or measures one against bare Zenoh.
//!
//! Exit codes: 0 stopped by SIGINT or SIGTERM (or a bench that ran), 1 an unexpected failure
//! (a thread could not start), 2 a usage error (bad flags or patterns), 3 the group could not
//! be joined, 4 the Zenoh configuration was refused or its session could not open, 5 a bench
//! whose messages did not get through.

mod bench;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use ipc_bridge_zenoh::{
    Bridge, BridgeConfig, BridgeError, DEFAULT_DEPTH, DEFAULT_MAX_PAYLOAD, peer_config,
};
use ipc_driver_std::DEFAULT_GROUP;

/// Exit code: a thread could not start, or another unexpected failure.
const EXIT_FAILURE: u8 = 1;
/// Exit code: bad flags or patterns.
const EXIT_USAGE: u8 = 2;
/// Exit code: the group could not be joined.
const EXIT_JOIN: u8 = 3;
/// Exit code: the Zenoh configuration was refused or its session could not open.
const EXIT_ZENOH: u8 = 4;

/// A bridge from an ipc-pubsub group to Zenoh.
#[derive(Parser, Debug)]
#[command(name = "ipc-pubsub-zenoh", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 stopped by SIGINT/SIGTERM, 1 unexpected failure, \
    2 usage, 3 cannot join the group, 4 Zenoh configuration or session failed, 5 bench failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a bridge until SIGINT or SIGTERM. Prints one JSON line when ready and one with
    /// the counters when stopped.
    Run(RunArgs),
    /// Measures the bridge (latency of 64 B round trips, throughput at 4 KiB and 1 MiB)
    /// against bare Zenoh pub/sub in the same run, all on 127.0.0.1.
    Bench(bench::BenchArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// The group.
    #[arg(long, env = "IPC_PUBSUB_GROUP", default_value = DEFAULT_GROUP)]
    group: String,
    /// The bridge's node name in the group.
    #[arg(long, default_value = "zenoh-bridge")]
    name: String,
    /// Local topics to put to Zenoh: a key expression over topic names (`camera/*`,
    /// `camera/**`, `**`). Repeatable.
    #[arg(long = "export", value_name = "PATTERN")]
    export: Vec<String>,
    /// Zenoh topics to publish in the group. Repeatable.
    #[arg(long = "import", value_name = "PATTERN")]
    import: Vec<String>,
    /// The key expression topics go under (default `ipc/<group>`).
    #[arg(long, value_name = "KEY")]
    key_prefix: Option<String>,
    /// A Zenoh endpoint to listen on (`tcp/0.0.0.0:7447`, `unixsock-stream//tmp/z.sock`).
    /// Repeatable.
    #[arg(long = "listen", value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// A Zenoh endpoint to connect to. Repeatable.
    #[arg(long = "connect", value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// Scouts for peers by UDP multicast too (off: only the endpoints given).
    #[arg(long)]
    multicast: bool,
    /// A Zenoh configuration file (JSON5) instead of peer mode; `--listen`, `--connect` and
    /// `--multicast` are applied over it.
    #[arg(long, value_name = "FILE")]
    zenoh_config: Option<PathBuf>,
    /// Depth of each export subscription's queue (it drops its oldest message when full).
    #[arg(long, default_value_t = DEFAULT_DEPTH)]
    depth: u32,
    /// The largest payload bridged either way, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_PAYLOAD)]
    max_payload: usize,
    /// Does not declare the group's topology as liveliness tokens.
    #[arg(long)]
    no_liveliness: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,zenoh=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run(&args),
        Command::Bench(args) => bench::run(&args),
    }
}

fn run(args: &RunArgs) -> ExitCode {
    let config = match config(args) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("ipc-pubsub-zenoh: cannot handle signal {signal}: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    }
    let bridge = match Bridge::start(config) {
        Ok(b) => b,
        Err(e) => return fail(&e),
    };
    let mut out = std::io::stdout().lock();
    // A closed stdout is no reason to stop bridging.
    let _ = writeln!(
        out,
        "{{\"event\":\"ready\",\"group\":{:?},\"node\":\"{}\",\"zid\":\"{}\",\"prefix\":{:?}}}",
        args.group,
        bridge.node().id(),
        bridge.zid(),
        bridge.key_prefix()
    );
    let _ = out.flush();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let counters = bridge.counters();
    bridge.stop();
    let _ = writeln!(
        out,
        "{{\"event\":\"stopped\",\"counters\":{}}}",
        counters.to_json()
    );
    ExitCode::SUCCESS
}

fn config(args: &RunArgs) -> Result<BridgeConfig, BridgeError> {
    let mut config = BridgeConfig::new(&args.group);
    config
        .name(&args.name)
        .depth(args.depth)
        .max_payload(args.max_payload)
        .liveliness(!args.no_liveliness);
    if let Some(prefix) = &args.key_prefix {
        config.set_key_prefix(prefix)?;
    }
    for p in &args.export {
        config.export(p)?;
    }
    for p in &args.import {
        config.import(p)?;
    }
    let listen: Vec<&str> = args.listen.iter().map(String::as_str).collect();
    let connect: Vec<&str> = args.connect.iter().map(String::as_str).collect();
    let mut zenoh = match &args.zenoh_config {
        None => peer_config(&listen, &connect)?,
        Some(path) => {
            let mut z = zenoh::Config::from_file(path)
                .map_err(|e| BridgeError::Zenoh(format!("{}: {e}", path.display())))?;
            let list = |eps: &[&str]| {
                let quoted: Vec<String> = eps.iter().map(|e| format!("{e:?}")).collect();
                format!("[{}]", quoted.join(","))
            };
            if !listen.is_empty() {
                insert(&mut z, "listen/endpoints", &list(&listen))?;
            }
            if !connect.is_empty() {
                insert(&mut z, "connect/endpoints", &list(&connect))?;
            }
            z
        }
    };
    if args.multicast {
        insert(&mut zenoh, "scouting/multicast/enabled", "true")?;
    }
    config.zenoh(zenoh);
    Ok(config)
}

fn insert(config: &mut zenoh::Config, key: &str, value: &str) -> Result<(), BridgeError> {
    config
        .insert_json5(key, value)
        .map_err(|e| BridgeError::Zenoh(format!("{key} = {value}: {e}")))
}

/// Prints `e` and picks its exit code.
fn fail(e: &BridgeError) -> ExitCode {
    eprintln!("ipc-pubsub-zenoh: {e}");
    ExitCode::from(match e {
        BridgeError::Invalid { .. } => EXIT_USAGE,
        BridgeError::Join { .. } => EXIT_JOIN,
        BridgeError::Zenoh(_) => EXIT_ZENOH,
        _ => EXIT_FAILURE,
    })
}
