//! `demo`: the tour a new user takes first.
//!
//! It runs in a private group with a random name, starts `ipc-pubsub node` children of this
//! executable, shows what they print (shortened, prefixed by the child's name), shows
//! `status`, kills the hub with SIGKILL and times the failover, sends payloads of three sizes
//! (64 B inline, 256 KiB fresh, 8 MiB pooled) from `pub` children to a `sub` child and checks
//! their checksums, then stops every child with SIGTERM. Every wait is on a condition (lines
//! read from the children, with a deadline); the [`Fleet`] and the payload step's `Piped`
//! guards reap every child whatever happens.
//!
//! The tour is a list of [`STEPS`], each a method of [`Tour`]: a later step (payloads, say)
//! is one more entry and one more method.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::Signal;

use super::children::{Fleet, Seen, SeenKind, TempGroup};
use super::json::Line;
use super::{CliError, Result, status};
use crate::GroupArgs;

/// How long any one step may wait for the children; it takes milliseconds.
const STEP_DEADLINE: Duration = Duration::from_secs(10);

/// Options of `demo`.
#[derive(Debug, Args)]
pub(super) struct DemoArgs {}

/// One node of the tour.
struct Role {
    name: &'static str,
    args: &'static [&'static str],
}

/// The first node runs the hub; the others join it.
const FIRST: Role = Role {
    name: "camera",
    args: &["--announce", "frames=image/x-raw"],
};
const OTHERS: [Role; 2] = [
    Role {
        name: "detector",
        args: &[
            "--subscribe",
            "frames",
            "--announce",
            "detections=application/json",
        ],
    },
    Role {
        name: "logger",
        args: &["--subscribe", "frames", "--subscribe", "detections"],
    },
];

/// One step of the tour: its title, and what it does.
struct Step {
    title: &'static str,
    run: fn(&mut Tour) -> Result<()>,
}

/// The steps, in order.
const STEPS: &[Step] = &[
    Step {
        title: "The first node of a group runs its hub",
        run: Tour::first_node,
    },
    Step {
        title: "More nodes join",
        run: Tour::more_nodes,
    },
    Step {
        title: "What the group looks like",
        run: Tour::show_status,
    },
    Step {
        title: "The hub crashes",
        run: Tour::kill_hub,
    },
    Step {
        title: "The group after the failover",
        run: Tour::show_status_again,
    },
    Step {
        title: "Payloads go point to point",
        run: Tour::payloads,
    },
    Step {
        title: "Stopping",
        run: Tour::stop,
    },
];

pub(super) fn run(_args: &DemoArgs, verbose: bool) -> Result<()> {
    let mut tour = Tour::new(verbose)?;
    tour.intro();
    for (i, step) in STEPS.iter().enumerate() {
        println!("\n[{}/{}] {}", i + 1, STEPS.len(), step.title);
        tour.step_start = Instant::now();
        (step.run)(&mut tour)?;
    }
    tour.summary();
    Ok(())
}

/// The state of the tour, shared by its steps.
struct Tour {
    fleet: Fleet,
    /// Dropped after `fleet` (fields drop in order), which reaps the nodes first.
    group: TempGroup,
    started: Instant,
    step_start: Instant,
    /// The child running the hub.
    hub: Option<usize>,
    /// What the failover step measured: the time, the old hub's name, the new hub's index.
    failover: Option<(Duration, String, usize)>,
    /// What the payload step delivered: messages and bytes, all checked.
    delivered: Option<(usize, usize)>,
    /// Width of the name column.
    width: usize,
}

impl Tour {
    fn new(verbose: bool) -> Result<Self> {
        let group = TempGroup::new("demo")?;
        let width = OTHERS
            .iter()
            .chain([&FIRST])
            .map(|r| r.name.len())
            .max()
            .unwrap_or(0);
        let now = Instant::now();
        Ok(Self {
            fleet: Fleet::new(Vec::new(), verbose)?,
            group,
            started: now,
            step_start: now,
            hub: None,
            failover: None,
            delivered: None,
            width,
        })
    }

    fn intro(&self) {
        println!("ipc-pubsub demo: publish/subscribe between processes, with no daemon");
        println!();
        say(&format!(
            "Every node below is a separate process of this program (`ipc-pubsub node ...`) in \
             a private group named {}. Nodes print their events as JSON lines; here each line \
             is shortened and prefixed with the name of the node that printed it and the time \
             since the step began.",
            self.group.name()
        ));
    }

    fn deadline(&self) -> Instant {
        Instant::now() + STEP_DEADLINE
    }

    /// Starts a child for `role` and shows its command line.
    fn spawn(&mut self, role: &Role) -> Result<usize> {
        println!(
            "  $ ipc-pubsub --group {} node --name {} {}",
            self.group.name(),
            role.name,
            role.args.join(" ")
        );
        let args: Vec<String> = role.args.iter().map(|a| (*a).to_string()).collect();
        self.fleet.spawn(self.group.name(), role.name, &args)
    }

    /// Shows what the children do until `done` holds.
    fn watch_until(&mut self, what: &str, mut done: impl FnMut(&Fleet) -> bool) -> Result<()> {
        let deadline = self.deadline();
        while !done(&self.fleet) {
            let seen = self.fleet.next(deadline, what)?;
            show(&self.fleet, &seen, self.width, self.step_start);
        }
        Ok(())
    }

    fn first_node(&mut self) -> Result<()> {
        say(
            "There is no daemon. The first process to lock the group's hub file (a flock in a \
             directory only this user can enter; the kernel drops it when the holder dies) runs \
             the group's hub, and joins it like any other node. The hub numbers every change (seq term.counter) so that \
             every node applies them in the same order.",
        );
        let camera = self.spawn(&FIRST)?;
        self.watch_until(
            "the first node to run the hub and announce its topic",
            |f| {
                let c = f.child(camera);
                c.mirror.synced && c.mirror.roles() == 1 && c.node == c.mirror.hub
            },
        )?;
        self.hub = Some(camera);
        Ok(())
    }

    fn more_nodes(&mut self) -> Result<()> {
        say(
            "Two more nodes connect to the same address, receive the group's history, and from \
             then on see every change as it is sequenced. Every node sees every node, its own \
             join and topics included.",
        );
        for role in &OTHERS {
            self.spawn(role)?;
        }
        let nodes = 1 + OTHERS.len();
        let roles = count_roles(&FIRST) + OTHERS.iter().map(count_roles).sum::<usize>();
        self.watch_until("every node to see every node and topic", |f| {
            f.children().iter().all(|c| {
                c.mirror.synced && c.mirror.nodes.len() == nodes && c.mirror.roles() == roles
            })
        })?;
        println!(
            "  -> all {nodes} nodes agree: {nodes} members, {roles} topic roles ({} ms)",
            self.step_start.elapsed().as_millis()
        );
        Ok(())
    }

    fn show_status(&mut self) -> Result<()> {
        say(
            "`status` watches the group without joining it (it appears in nobody's events and \
             never becomes the hub), prints the group, and exits.",
        );
        self.status()
    }

    fn show_status_again(&mut self) -> Result<()> {
        say("The same command now shows the new hub, and the topics of the survivors.");
        self.status()
    }

    fn status(&mut self) -> Result<()> {
        println!("  $ ipc-pubsub --group {} status", self.group.name());
        let view = status::observe(&GroupArgs::private(self.group.name()))?;
        for line in status::table(self.group.name(), &view, None).lines() {
            println!("    {line}");
        }
        Ok(())
    }

    fn kill_hub(&mut self) -> Result<()> {
        let hub = self.hub.expect("the first step found the hub");
        let (old, old_name) = {
            let c = self.fleet.child(hub);
            (c.node.expect("a started line came"), c.name.clone())
        };
        say(&format!(
            "SIGKILL to {old_name}, the hub: no goodbye. Its sockets close, every node notices \
             at once (hub_lost), and exactly one survivor binds the hub address and takes over \
             with its copy of the history (became_hub). The others connect to it (synced). The \
             new hub knows the old one is dead (a pidfd on its hub link became readable), so \
             it declares it gone at once (node_left); a node whose death it cannot confirm gets \
             a grace period to reconnect first."
        ));
        println!("  $ kill -KILL {}", self.fleet.child(hub).pid);
        let killed_at = Instant::now();
        self.fleet.signal(hub, Signal::SIGKILL)?;
        let survivors: Vec<usize> = (0..self.fleet.children().len())
            .filter(|&i| i != hub)
            .collect();
        let (width, since, deadline) = (self.width, self.step_start, self.deadline());
        let print = |f: &Fleet, seen: &Seen| show(f, seen, width, since);
        let t = self
            .fleet
            .await_takeover(old, &survivors, killed_at, deadline, print)?;
        let new_hub = self
            .fleet
            .by_node(t.new_hub)
            .ok_or_else(|| CliError::Failed("the new hub is none of the nodes".into()))?;
        for s in &t.survivors {
            println!(
                "  -> {}: synced with the new hub after {} ms, saw {old_name} leave after {} ms",
                self.fleet.child(s.child).name,
                s.synced.as_millis(),
                s.left.as_millis()
            );
        }
        let took = t.last_left().max(t.last_synced());
        println!(
            "  -> failover took {} ms: {} runs the hub now",
            took.as_millis(),
            self.fleet.child(new_hub).name
        );
        self.hub = Some(new_hub);
        self.failover = Some((took, old_name, new_hub));
        Ok(())
    }

    fn payloads(&mut self) -> Result<()> {
        say(
            "Messages never pass through the hub: a publisher learns its subscribers from the \
             topology and sends to each directly. Small payloads travel inline in the socket \
             record; larger ones in a memfd whose fd is passed to the subscriber, which maps it \
             read-only: a fresh sealed memfd per message, or a slot of a pool of segments \
             shared once (zero-copy: a publisher can write in place). A subscriber prints one \
             line per message with its length, how it travelled and its FNV-1a checksum, which \
             the demo checks against the payload `pub` generates.",
        );
        const TOPIC: &str = "clips";
        const PER_SIZE: usize = 3;
        let legs: [(usize, &str); 3] = [(64, "inline"), (256 << 10, "fresh"), (8 << 20, "pooled")];
        let total = legs.len() * PER_SIZE;
        let sub_args = ["sub", TOPIC, "--count", &total.to_string()].map(String::from);
        println!(
            "  $ ipc-pubsub --group {} {}",
            self.group.name(),
            sub_args.join(" ")
        );
        let mut sub = Piped::spawn(self.group.name(), &sub_args)?;
        let mut pids = vec![sub.proc.id()];
        let mut bytes = 0;
        for (size, mode) in legs {
            let pub_args = [
                "pub",
                TOPIC,
                "--size",
                &size.to_string(),
                "--count",
                &PER_SIZE.to_string(),
                "--mode",
                mode,
                "--wait-subscribers",
                "1",
            ]
            .map(String::from);
            println!(
                "  $ ipc-pubsub --group {} {}",
                self.group.name(),
                pub_args.join(" ")
            );
            let started = Instant::now();
            let mut publisher = Piped::spawn(self.group.name(), &pub_args)?;
            pids.push(publisher.proc.id());
            let expected = format!(
                "{:016x}",
                super::pubsub::fnv1a64(&super::pubsub::generated(size))
            );
            for _ in 0..PER_SIZE {
                let line = sub.line(self.deadline(), "the subscriber's next message")?;
                let v: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| CliError::Failed(format!("sub printed {line:?}: {e}")))?;
                let (len, via, fnv) = (&v["len"], &v["via"], &v["fnv1a64"]);
                if *len != size || *via != mode || *fnv != expected.as_str() {
                    return Err(CliError::Failed(format!(
                        "sub received {line}, expected {size} bytes via {mode} with FNV-1a {expected}"
                    )));
                }
                println!(
                    "  {:<w$}  +{:>4} ms  seq {} of {} bytes via {mode}, fnv1a64 {expected} (checked)",
                    "sub",
                    self.step_start.elapsed().as_millis(),
                    v["seq"],
                    len,
                    w = self.width
                );
                bytes += size;
            }
            let status = publisher.wait(self.deadline())?;
            if !status.success() {
                return Err(CliError::Failed(format!("pub exited with {status}")));
            }
            println!(
                "  -> {PER_SIZE} x {} via {mode}: delivered and checked, pub done in {} ms",
                human(size),
                started.elapsed().as_millis()
            );
        }
        let status = sub.wait(self.deadline())?;
        if !status.success() {
            return Err(CliError::Failed(format!("sub exited with {status}")));
        }
        // The nodes saw `sub` and each `pub` join, announce or subscribe, and leave: counted
        // here rather than shown, once every node has seen all of them leave.
        let (mut lines, mut ids, mut left) = (0, BTreeSet::new(), BTreeMap::new());
        let deadline = self.deadline();
        let all_seen = |left: &BTreeMap<usize, usize>, f: &Fleet| {
            (0..f.children().len())
                .filter(|&i| f.child(i).is_running())
                .all(|i| left.get(&i) == Some(&pids.len()))
        };
        while !all_seen(&left, &self.fleet) {
            let seen = self
                .fleet
                .next(deadline, "the nodes to see pub and sub leave")?;
            lines += 1;
            match &seen.what {
                SeenKind::Line(Line::NodeJoined { node, pid, .. }) if pids.contains(pid) => {
                    ids.insert(node.0);
                }
                SeenKind::Line(Line::NodeLeft { node }) if ids.contains(&node.0) => {
                    *left.entry(seen.child).or_insert(0) += 1;
                }
                _ => {}
            }
        }
        println!(
            "  -> meanwhile the nodes printed {lines} lines: sub and each pub joining, \
             announcing or subscribing, and leaving"
        );
        self.delivered = Some((total, bytes));
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        say(
            "SIGTERM makes a node leave gracefully: it says goodbye, so the others see it leave \
             at once instead of after a grace period. The hub goes first: its node leaves, the \
             hub closes its links with a goodbye, and a survivor takes over as after a crash, \
             only nobody has to wait for anybody.",
        );
        let hub = self.hub.expect("the failover step found the new hub");
        let mut order = vec![hub];
        order.extend((0..self.fleet.children().len()).filter(|&i| i != hub));
        for i in order {
            if !self.fleet.child(i).is_running() {
                continue;
            }
            let (name, node) = {
                let c = self.fleet.child(i);
                (c.name.clone(), c.node.expect("a started line came"))
            };
            println!("  $ kill -TERM {}", self.fleet.child(i).pid);
            let signalled = Instant::now();
            self.fleet.signal(i, Signal::SIGTERM)?;
            let what = format!("{name} to exit and the others to see it leave");
            self.watch_until(&what, |f| {
                !f.child(i).is_running()
                    && f.children().iter().filter(|c| c.is_running()).all(|c| {
                        let m = &c.mirror;
                        !m.nodes.contains_key(&node) && m.synced && m.hub != Some(node)
                    })
            })?;
            let status = self.fleet.child(i).status.expect("exited");
            if !status.success() {
                return Err(CliError::Failed(format!("{name} exited with {status}")));
            }
            let others = self.fleet.children().iter().filter(|c| c.is_running());
            if others.clone().next().is_some() {
                let hub_now = others
                    .clone()
                    .find_map(|c| c.mirror.hub)
                    .map(|h| self.fleet.name_of(h))
                    .unwrap_or_default();
                println!(
                    "  -> {name} left; {} ms later the others agreed, with {hub_now} as the hub",
                    signalled.elapsed().as_millis()
                );
            }
        }
        Ok(())
    }

    fn summary(&self) {
        println!("\nSummary");
        let n = self.fleet.children().len();
        let rows = [
            ("group", self.group.name().to_string()),
            (
                "nodes",
                format!(
                    "{n} processes, {} JSON lines printed",
                    self.fleet.children().iter().map(|c| c.lines).sum::<usize>()
                ),
            ),
            (
                "failover",
                self.failover.as_ref().map_or_else(String::new, |(d, old, new)| {
                    format!(
                        "{} ms from SIGKILL of {old} until every survivor followed {} and saw {old} leave",
                        d.as_millis(),
                        self.fleet.child(*new).name
                    )
                }),
            ),
            (
                "payloads",
                self.delivered.map_or_else(String::new, |(n, bytes)| {
                    let mib = bytes as f64 / f64::from(1 << 20);
                    format!("{n} messages, {mib:.1} MiB in all, every checksum right")
                }),
            ),
            (
                "still running",
                if self.fleet.children().iter().any(|c| c.is_running()) {
                    "some children (they are killed now)".into()
                } else {
                    "nothing: every node exited with status 0".into()
                },
            ),
            (
                "took",
                format!("{:.1} s", self.started.elapsed().as_secs_f64()),
            ),
        ];
        for (k, v) in rows {
            println!("  {k:<14} {v}");
        }
        println!();
        say(
            "Next: run `ipc-pubsub node --name a --announce news` and `ipc-pubsub node --name b \
             --subscribe news` in two terminals and `ipc-pubsub watch` or `ipc-pubsub status` in \
             a third; kill one and watch the others. CLI.md documents every command and every \
             JSON line; `ipc-pubsub bench topology` measures failover, convergence and idle CPU, \
             `ipc-pubsub bench payload` the data path against raw baselines.",
        );
    }
}

/// `n` bytes for people.
fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

/// A `pub` or `sub` child of the payload step, its stdout read line by line; killed and
/// reaped when dropped, whatever happens.
struct Piped {
    proc: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Piped {
    fn spawn(group: &str, args: &[String]) -> Result<Self> {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.args(["--group", group])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        super::children::die_with_parent(&mut cmd);
        let mut proc = cmd.spawn()?;
        let stdout = proc.stdout.take().expect("stdout is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("ipc-pubsub-demo-out".into())
            .spawn(move || {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(|l| l.ok())
                {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self { proc, lines })
    }

    /// The next line, by `deadline`.
    fn line(&mut self, deadline: Instant, what: &str) -> Result<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines
            .recv_timeout(left)
            .map_err(|_| CliError::Failed(format!("timed out waiting for {what}")))
    }

    /// Waits for the child to exit, by `deadline`.
    fn wait(&mut self, deadline: Instant) -> Result<std::process::ExitStatus> {
        loop {
            if let Some(status) = self.proc.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(CliError::Failed(
                    "a payload child did not exit in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.proc.kill();
        let _ = self.proc.wait();
    }
}

/// Prints what a child did, shortened, with the time since `since`.
fn show(fleet: &Fleet, seen: &Seen, width: usize, since: Instant) {
    let text = match &seen.what {
        SeenKind::Line(line) => describe(fleet, line),
        SeenKind::Exited(status) => format!("exited ({status})"),
    };
    let ms = seen.at.saturating_duration_since(since).as_millis();
    let name = &fleet.child(seen.child).name;
    println!("  {name:<width$}  +{ms:>4} ms  {text}");
}

fn count_roles(role: &Role) -> usize {
    role.args
        .iter()
        .filter(|a| matches!(**a, "--announce" | "--subscribe"))
        .count()
}

/// Prints `text` as an indented paragraph, wrapped at 96 columns.
fn say(text: &str) {
    let mut line = String::from(" ");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 96 {
            println!("{line}");
            line = String::from(" ");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.trim().is_empty() {
        return;
    }
    println!("{line}");
}

/// One line of a child, for people: names instead of ids.
fn describe(fleet: &Fleet, line: &Line) -> String {
    let name = |h: &super::json::Hex| fleet.name_of(h.0);
    match line {
        Line::Started { node, pid, .. } => format!("started: node {node}, pid {pid}"),
        Line::NodeJoined {
            name: who,
            pid,
            seq,
            ..
        } => format!("{who} joined (pid {pid})  [seq {seq}]"),
        Line::NodeLeft { node } => format!("{} left", name(node)),
        Line::TopicAnnounced {
            node,
            topic,
            mime,
            seq,
        } => format!("{} announces {topic} ({mime})  [seq {seq}]", name(node)),
        Line::TopicRetracted { node, topic } => format!("{} retracts {topic}", name(node)),
        Line::Subscribed { node, topic, seq } => {
            format!("{} subscribes to {topic}  [seq {seq}]", name(node))
        }
        Line::Unsubscribed { node, topic } => format!("{} unsubscribes from {topic}", name(node)),
        Line::HubChanged { node, term } => format!("hub is {} (term {term})", name(node)),
        Line::Synced { hub, term } => format!("synced with {}'s hub (term {term})", name(hub)),
        Line::BecameHub => "became the hub".into(),
        Line::HubLost => "lost the hub".into(),
        Line::HubUnresponsive => "the hub is unresponsive".into(),
        Line::HubResponsive => "the hub is responsive again".into(),
        Line::HubClosed { reason } => format!("the hub closed the link: {reason}"),
        Line::HubAbsent => "no hub answered".into(),
        Line::Lagged { missed } => format!("missed {missed} events (too slow)"),
        Line::Doc { doc, what, .. } => format!("document {doc}: {what}"),
        Line::DocState { doc, version, .. } => format!("document {doc} at version {version}"),
        Line::DocPatched { doc, version, .. } => format!("document {doc} patched: {version}"),
        Line::DocVersionsLost { doc, from, to } => {
            format!("document {doc} lost versions {to}..{from}")
        }
        Line::Other { debug } => debug.clone(),
    }
}
