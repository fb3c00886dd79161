//! The `ipc-pubsub` command line: run a node, watch a group, inspect it, take the tour, and
//! measure.
//!
//! | command | what it does |
//! |---|---|
//! | `node --name NAME [--announce TOPIC[=MIME]]... [--subscribe TOPIC]...` | joins the group and prints its events as JSON lines until SIGINT or SIGTERM, then leaves gracefully |
//! | `watch` | the same as an observer that does not join: the group's current state as events, then every change |
//! | `status [--json]` | who is in the group, who runs the hub, who publishes and subscribes what, and per subscriber the messages sent, dropped and in flight; exit code 1 if no such group runs |
//! | `pub TOPIC [--size N \| --file PATH \| --data TEXT] [--count N] [--rate HZ] [--mode M] [--wait-subscribers N] [--json]` | publishes messages on TOPIC, a status line on stderr every second (how many subscribers the messages reached), with `--json` one JSON line per message (the subscribers it was sent to), and leaves once its subscribers have them |
//! | `sub TOPIC [--count N] [--spin-us US]` | prints one JSON line per message: topic, publisher, seq, length, FNV-1a of the payload, how it came; `--spin-us` polls the rings before sleeping (lower latency, a busy CPU core; 0 never polls) |
//! | `bus NAME` | joins bus channel NAME: stdin lines out to the other members, their lines in on stdout |
//! | `demo` | a self-contained tour in a private group: starts nodes, shows their events and `status`, kills the hub and times the failover, sends payloads inline, fresh and pooled from `pub` to `sub` and checks them, stops the nodes |
//! | `doc NAME get\|patch UPDATE\|watch [--default JSON] [--create]` | a shared document of the running group (exit code 1 if none runs, unless `--create`): print its value as JSON; apply one patch (MongoDB update operators) and print the new version, or the error with exit code 1; print each accepted patch and the value after it as JSON lines until SIGINT or SIGTERM |
//! | `bench doc [--json] [--seconds S]` | shared-document patches per second through the host with 1 and 4 writers, without and with witnesses, and patch-to-ack latency |
//! | `bench topology [--json] [--kills N] [--nodes N] [--pidfd both\|on\|off] [--settle-ms MS] [--failover-only]` | failover time (hub and spoke killed, with and without pidfds, flaps counted), convergence time and idle CPU, measured with real processes |
//! | `bench payload [--json] [--reps N] [--quick] [--placement P] [--only ID]... [--wait-idle S]` | the payload data path as ratios against raw baselines (SEQPACKET ping-pong, UDS copy, memcpy, fresh memfd, segment pool) measured in the same run |
//!
//! Every command takes `--group NAME` (default `$IPC_PUBSUB_GROUP`, else `default`) and `-v`
//! (debug logs; `-vv` trace). Logs go to stderr; `RUST_LOG`, when set, replaces the `-v`
//! level. Output meant for programs (the JSON lines of `node`, `watch`, `sub`, `pub --json`
//! and `doc watch`, each ending with `ts`, the wall clock in Unix microseconds; `--json`
//! documents) goes to stdout, one line or document at a time, flushed at once.
//!
//! `CLI.md`, next to this crate's `Cargo.toml`, documents every command and every JSON line.
//!
//! Exit codes: 0 on success (also after SIGINT or SIGTERM for `node`, `watch`, `pub`, `sub`
//! and `bus`), 1 when the command failed (no such group for `status` and `doc`, a node that
//! stopped by itself, `pub`'s subscribers not taking its messages in time, an update or
//! `--default` for `doc` that is not JSON, or an invalid or empty update, a tour or benchmark
//! that went wrong), 2 for a usage error, 3 when `doc patch --require-witness` was applied but
//! no witness holds it, 130 when `demo`, `bench topology` or `bench payload` is interrupted.
//!
//! The modules: `json` maps events to lines (one function, `Line::from_event`); `stream` runs
//! `node` and `watch`; `status` reads a group's state; `children` starts, reads and always
//! reaps `node` processes, for `demo` and `bench`; `demo` and `bench` are built from steps
//! and subcommands so that they can grow. The hidden `bench-child` command is one process of
//! a `bench payload` measurement, started by the benchmark itself.

mod bench;
mod children;
mod counters;
mod demo;
mod doc;
mod json;
mod pubsub;
mod status;
mod stream;

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use ipc_driver_std::{DEFAULT_GROUP, DriverError, Node, NodeBuilder};
use ipc_os::rendezvous::GroupDir;

pub use children::TempGroup;
pub use pubsub::fnv1a64;

/// Runs the command line with the process's arguments.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs the command line with `args`, the program name first (as [`std::env::args_os`] gives
/// them), and returns the exit code. A test helper binary can call it with its own arguments.
pub fn run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with code 0, usage errors to stderr with code 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    init_logs(cli.verbose);
    let result = match cli.command {
        Command::Node(args) => stream::node(&cli.group, &args),
        Command::Watch(args) => stream::watch(&cli.group, &args),
        Command::Status(args) => status::run(&cli.group, &args),
        Command::Pub(args) => pubsub::publish(&cli.group, &args),
        Command::Sub(args) => pubsub::subscribe(&cli.group, &args),
        Command::Bus(args) => pubsub::bus(&cli.group, &args),
        Command::Demo(args) => demo::run(&args, cli.verbose > 0),
        Command::Doc(args) => doc::run(&cli.group, &args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchChild(args) => bench::child(&cli.group, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ipc-pubsub: {e}");
            e.exit_code()
        }
    }
}

/// Logs to stderr: `RUST_LOG` if set, else warnings, `-v` debug, `-vv` trace.
fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A second `run` in the same process keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .try_init();
}

/// Daemon-free publish/subscribe between processes on one Linux host.
///
/// Processes join a named group; the first one runs the group's hub, and when it dies a
/// survivor takes over. Start with `ipc-pubsub demo`.
#[derive(Debug, Parser)]
#[command(name = "ipc-pubsub", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    group: GroupArgs,

    /// More logs on stderr: -v debug, -vv trace (RUST_LOG, when set, takes precedence).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Join the group as a node and print its events as JSON lines until SIGINT or SIGTERM.
    ///
    /// The first line is `started` (this node's id and pid); then come the node's own join,
    /// the group as it finds it, and every change. On SIGINT or SIGTERM the node leaves
    /// gracefully and the command exits 0.
    Node(stream::NodeArgs),
    /// Watch the group without joining it and print its events as JSON lines.
    ///
    /// Once a hub answers, the group's current state comes first, as events; then every
    /// change, until SIGINT or SIGTERM. The watcher appears in nobody's events and never
    /// becomes the hub; while no hub answers it keeps trying.
    Watch(stream::WatchArgs),
    /// Show who is in the group: the hub, every node, what each publishes and subscribes.
    ///
    /// Observes without joining. Exits 1 if no hub answers within 1.5 s.
    Status(status::StatusArgs),
    /// Publish messages on a topic.
    ///
    /// Joins the group, publishes --count messages (a generated payload of --size bytes, a
    /// file or a text), optionally paced with --rate, waits until every subscriber has them,
    /// and leaves. A status line goes to stderr every second and at the end, with how many
    /// subscribers the messages reached; --json adds a JSON line per message on stdout.
    Pub(pubsub::PubArgs),
    /// Print a topic's messages as JSON lines.
    ///
    /// One line per message, flushed at once: {"topic","node","seq","len","fnv1a64","via","ts"},
    /// with the publisher's node id and the payload's 64-bit FNV-1a in 16 hex digits. Runs
    /// until --count messages or SIGINT/SIGTERM.
    Sub(pubsub::SubArgs),
    /// Join a bus channel: stdin lines go to every other member, theirs come out on stdout.
    ///
    /// A member never receives its own lines. Runs until SIGINT or SIGTERM (the end of stdin
    /// does not stop it); the number of other members is reported on stderr as it changes.
    Bus(pubsub::BusArgs),
    /// Take the tour: nodes in a private group, their events, a hub crash and the failover.
    ///
    /// Starts a few `ipc-pubsub node` processes, shows what they print, kills the hub with
    /// SIGKILL, measures how long the survivors take to agree on a new one, then stops them.
    /// Takes a few seconds and leaves nothing running.
    Demo(demo::DemoArgs),
    /// Read, patch or follow a shared document of the group.
    ///
    /// Joins the running group as a node named `doc` that never runs its hub (exit code 1 if
    /// no such group runs; `--create` starts it instead), opens the document (created from
    /// `--default` if the group does not have it), then: `get` prints its value as JSON; `patch UPDATE`
    /// applies one patch and prints the new version, or the error with exit code 1; `watch`
    /// prints a `doc_state` line, then a `doc_patched` line (the patch and the value after it)
    /// per accepted patch, until SIGINT or SIGTERM.
    Doc(doc::DocArgs),
    /// Measure with real processes (each benchmark starts children of this executable).
    Bench(bench::BenchArgs),
    /// One process of a `bench payload` measurement (started by the benchmark).
    #[command(name = "bench-child", hide = true)]
    BenchChild(bench::ChildArgs),
}

/// Protocol timings of the nodes a command starts; the builder's defaults when absent.
#[derive(Debug, Clone, Default, Args)]
struct Timing {
    /// The keepalive limit: a node (or hub) silent for this long is declared gone
    /// [default: 2000].
    #[arg(long, value_name = "MS")]
    keepalive_ms: Option<u64>,

    /// The heartbeat interval: how often a heartbeat goes out on the hub link; above 0 and at
    /// most half the keepalive limit [default: a quarter of the limit, 500].
    #[arg(long, value_name = "MS")]
    heartbeat_ms: Option<u64>,

    /// How long a new hub waits for the nodes it inherited to reconnect before declaring the
    /// others gone [default: 200].
    #[arg(long, value_name = "MS")]
    grace_ms: Option<u64>,
}

impl Timing {
    fn apply(&self, mut builder: NodeBuilder) -> NodeBuilder {
        if let Some(ms) = self.keepalive_ms {
            builder = builder.keepalive(Duration::from_millis(ms));
        }
        if let Some(ms) = self.heartbeat_ms {
            builder = builder.heartbeat(Duration::from_millis(ms));
        }
        if let Some(ms) = self.grace_ms {
            builder = builder.grace(Duration::from_millis(ms));
        }
        builder
    }

    /// The same options, for a child's command line.
    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ms) = self.keepalive_ms {
            args.extend(["--keepalive-ms".to_string(), ms.to_string()]);
        }
        if let Some(ms) = self.heartbeat_ms {
            args.extend(["--heartbeat-ms".to_string(), ms.to_string()]);
        }
        if let Some(ms) = self.grace_ms {
            args.extend(["--grace-ms".to_string(), ms.to_string()]);
        }
        args
    }
}

/// Which group, and where it meets: the options every command shares.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct GroupArgs {
    /// The group to join, watch or inspect (ignored by `demo` and `bench`, which make their
    /// own).
    #[arg(
        id = "group",
        long = "group",
        global = true,
        env = "IPC_PUBSUB_GROUP",
        default_value = DEFAULT_GROUP,
        value_name = "NAME",
        value_parser = parse_group,
    )]
    name: String,

    /// For a group opened to other users: the directory it meets in (every member names the
    /// same one; its permissions decide who reaches the group). Default: this user's private
    /// runtime directory, which no other user can enter.
    #[arg(long, global = true, env = "IPC_PUBSUB_DIR", value_name = "DIR")]
    dir: Option<std::path::PathBuf>,

    /// Also accept processes of this uid in the group (repeatable; useful with --dir).
    #[arg(long = "allow-uid", global = true, value_name = "UID")]
    allow_uid: Vec<u32>,
}

impl GroupArgs {
    /// Private group `name`.
    pub(crate) fn private(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            dir: None,
            allow_uid: Vec::new(),
        }
    }

    /// The group's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// A builder for a node of this group.
    pub(crate) fn builder(&self, node: &str) -> ipc_driver_std::NodeBuilder {
        let mut b = Node::builder(node).group(&self.name);
        if let Some(dir) = &self.dir {
            b = b.dir(dir);
        }
        for uid in &self.allow_uid {
            b = b.allow_uid(*uid);
        }
        b
    }

    /// The group's directory.
    pub(crate) fn dir(&self) -> std::result::Result<GroupDir, DriverError> {
        Ok(match &self.dir {
            Some(base) => GroupDir::shared(base, &self.name)?,
            None => GroupDir::private(&self.name)?,
        })
    }
}

/// A group name that can form the group's socket paths.
fn parse_group(s: &str) -> Result<String, String> {
    ipc_proto::names::validate_group(s).map_err(|e| e.to_string())?;
    Ok(s.to_string())
}

/// What can make a command fail.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("no group named {0:?} is running")]
    NoGroup(String),
    #[error("interrupted by {0}")]
    Interrupted(&'static str),
    #[error("{0}")]
    Failed(String),
    /// `doc patch --require-witness`: applied, but no witness holds it.
    #[error("{0}")]
    Unwitnessed(String),
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            Self::Interrupted(_) => ExitCode::from(130),
            Self::Unwitnessed(_) => ExitCode::from(3),
            // Options that do not fit together (`--heartbeat-ms` above half the limit...).
            Self::Driver(DriverError::Config(_)) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

type Result<T, E = CliError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ipc-pubsub").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn group_is_global_and_validated() {
        let cli = parse(&["status", "--group", "robot"]).expect("valid");
        assert_eq!(cli.group.name(), "robot");
        let cli = parse(&["--group", "robot", "status"]).expect("valid");
        assert_eq!(cli.group.name(), "robot");
        assert!(parse(&["--group", "a/b", "status"]).is_err(), "a slash");
        assert!(parse(&["--group", "", "status"]).is_err(), "empty");
        // `node --name` is the node's, not the group's.
        let cli = parse(&["--group", "g", "node", "--name", "n"]).expect("valid");
        assert_eq!(cli.group.name(), "g");
        let cli = parse(&["status", "--dir", "/run/robot", "--allow-uid", "7"]).expect("valid");
        assert_eq!(
            cli.group.dir.as_deref(),
            Some(std::path::Path::new("/run/robot"))
        );
        assert_eq!(cli.group.allow_uid, [7]);
    }

    #[test]
    fn sub_spins_for_whole_microseconds_and_not_by_default() {
        let spin = |args: &[&str]| {
            let cli = parse(args).expect("valid");
            let Command::Sub(args) = cli.command else {
                panic!("parsed as {:?}", cli.command)
            };
            args.spin_us
        };
        assert_eq!(spin(&["sub", "t"]), None);
        assert_eq!(spin(&["sub", "t", "--spin-us", "0"]), Some(0));
        assert_eq!(spin(&["sub", "t", "--spin-us", "200"]), Some(200));
        for bad in ["200us", "0.5", "-1", ""] {
            assert!(parse(&["sub", "t", "--spin-us", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn verbose_counts() {
        assert_eq!(parse(&["status"]).expect("valid").verbose, 0);
        assert_eq!(parse(&["-vv", "status"]).expect("valid").verbose, 2);
        assert_eq!(parse(&["status", "-v"]).expect("valid").verbose, 1);
    }

    #[test]
    fn node_takes_announcements_subscriptions_and_timings() {
        let cli = parse(&[
            "node",
            "--name",
            "cam",
            "--announce",
            "frames=image/x-raw",
            "--announce",
            "log",
            "--subscribe",
            "exposure",
            "--keepalive-ms",
            "1000",
            "--heartbeat-ms",
            "100",
        ])
        .expect("valid");
        let Command::Node(args) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(args.name, "cam");
        let announced: Vec<_> = args
            .announce
            .iter()
            .map(|a| (a.topic.as_str(), a.mime.as_str()))
            .collect();
        assert_eq!(
            announced,
            [
                ("frames", "image/x-raw"),
                ("log", "application/octet-stream")
            ]
        );
        assert_eq!(args.subscribe, ["exposure"]);
        assert_eq!(args.timing.keepalive_ms, Some(1000));
        assert_eq!(args.timing.heartbeat_ms, Some(100));
        assert_eq!(args.timing.grace_ms, None);
        assert_eq!(
            args.timing.to_args(),
            ["--keepalive-ms", "1000", "--heartbeat-ms", "100"]
        );
    }

    #[test]
    fn node_requires_a_name() {
        assert!(parse(&["node"]).is_err());
    }

    #[test]
    fn bench_has_a_topology_benchmark() {
        let cli = parse(&[
            "bench", "topology", "--json", "--kills", "3", "--nodes", "5",
        ])
        .expect("valid");
        let Command::Bench(args) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        let bench::Kind::Topology(t) = args.kind else {
            panic!("parsed as {:?}", args.kind)
        };
        assert!(t.json);
        assert_eq!((t.kills, t.nodes, t.settle_ms), (3, 5, 250));
        assert_eq!(t.pidfd, bench::PidfdSetting::Both);
        assert!(!t.failover_only);
        assert!(parse(&["bench"]).is_err(), "which benchmark");
        assert!(parse(&["bench", "topology", "--kills", "0"]).is_err());
        assert!(parse(&["bench", "topology", "--nodes", "2"]).is_err());
        // The old name of --kills still works.
        let cli = parse(&[
            "bench",
            "topology",
            "--trials",
            "4",
            "--pidfd",
            "off",
            "--failover-only",
        ])
        .expect("valid");
        let Command::Bench(args) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        let bench::Kind::Topology(t) = args.kind else {
            panic!("parsed as {:?}", args.kind)
        };
        assert_eq!(
            (t.kills, t.pidfd, t.failover_only),
            (4, bench::PidfdSetting::Off, true)
        );
    }

    #[test]
    fn bench_has_a_payload_benchmark() {
        let cli = parse(&["bench", "payload"]).expect("valid");
        let Command::Bench(args) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        let bench::Kind::Payload(p) = args.kind else {
            panic!("parsed as {:?}", args.kind)
        };
        assert!(!p.json && !p.quick && p.reps.is_none() && p.only.is_empty());
        assert_eq!(p.wait_idle, 0);
        assert_eq!(p.placement, bench::Placement::CrossCore);

        let cli = parse(&[
            "bench",
            "payload",
            "--json",
            "--quick",
            "--reps",
            "2",
            "--placement",
            "same-core",
            "--only",
            "memfd",
            "--wait-idle",
            "30",
        ])
        .expect("valid");
        let Command::Bench(args) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        let bench::Kind::Payload(p) = args.kind else {
            panic!("parsed as {:?}", args.kind)
        };
        assert!(p.json && p.quick);
        assert_eq!((p.reps, p.placement), (Some(2), bench::Placement::SameCore));
        assert_eq!(
            (p.only.as_slice(), p.wait_idle),
            (&["memfd".to_string()][..], 30)
        );
        assert!(parse(&["bench", "payload", "--reps", "0"]).is_err());
        assert!(parse(&["bench", "payload", "--placement", "nowhere"]).is_err());
    }

    #[test]
    fn bench_child_is_hidden() {
        let help = Cli::command().render_long_help().to_string();
        assert!(!help.contains("bench-child"), "{help}");
        assert!(parse(&["bench-child", "memcpy", "--core", "0", "--fd", "3"]).is_ok());
    }
}
