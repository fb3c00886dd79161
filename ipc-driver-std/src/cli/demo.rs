//! `demo`: the tour a new user takes first.
//!
//! It runs in a private group with a random name, starts `ipc-pubsub node` children of this
//! executable, shows what they print (shortened, prefixed by the child's name), shows
//! `status`, kills the hub with SIGKILL and times the failover, then stops every child with
//! SIGTERM. On the way, two nodes of a second group send payloads of several sizes in every
//! mode. Every wait is on a condition (lines read from the children, with a deadline);
//! the [`Fleet`] reaps every child whatever happens.
//!
//! The tour is a list of [`STEPS`], each a method of [`Tour`]: a later step (payloads, say)
//! is one more entry and one more method.

use std::time::{Duration, Instant};

use clap::Args;
use nix::sys::signal::Signal;

use super::children::{Fleet, Seen, SeenKind, random_group};
use super::json::Line;
use super::pubsub::{fnv1a64, generated, wait_subscribers};
use super::stream::DEFAULT_MIME;
use super::{CliError, Result, status};
use crate::{Node, PublisherOptions, SendMode, SubscriptionOptions};

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
        title: "Payloads: point to point, inline, pooled or fresh",
        run: Tour::payloads,
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
    group: String,
    started: Instant,
    step_start: Instant,
    /// The child running the hub.
    hub: Option<usize>,
    /// What the failover step measured: the time, the old hub's name, the new hub's index.
    failover: Option<(Duration, String, usize)>,
    /// Width of the name column.
    width: usize,
}

impl Tour {
    fn new(verbose: bool) -> Result<Self> {
        let group = random_group("demo")?;
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
            self.group
        ));
    }

    fn deadline(&self) -> Instant {
        Instant::now() + STEP_DEADLINE
    }

    /// Starts a child for `role` and shows its command line.
    fn spawn(&mut self, role: &Role) -> Result<usize> {
        println!(
            "  $ ipc-pubsub --group {} node --name {} {}",
            self.group,
            role.name,
            role.args.join(" ")
        );
        let args: Vec<String> = role.args.iter().map(|a| (*a).to_string()).collect();
        self.fleet.spawn(&self.group, role.name, &args)
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
            "There is no daemon. The first process to bind the group's hub address (an abstract \
             Unix socket: no file, nothing stale after a crash) runs the group's hub, and joins \
             it like any other node. The hub numbers every change (seq term.counter) so that \
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
        println!("  $ ipc-pubsub --group {} status", self.group);
        let view = status::observe(&self.group)?;
        for line in status::table(&self.group, &view).lines() {
            println!("    {line}");
        }
        Ok(())
    }

    fn payloads(&mut self) -> Result<()> {
        say(
            "A publisher and a subscriber, two nodes of a second private group (here in this \
             process; `ipc-pubsub pub` and `ipc-pubsub sub` do the same from a shell), send one \
             message of each size. Payloads never pass through the hub: the publisher connects \
             to the subscriber's own data address. Up to 16 KiB they travel inline in the \
             socket record; larger ones in a memfd whose fd is passed along: pooled (a \
             reused segment, the default in a group of one uid) or fresh (a new memfd per \
             message, sealed by the kernel). The subscriber maps them read-only, without a copy.",
        );
        let group = random_group("demo-payloads")?;
        let publisher_node = Node::builder("publisher").group(&group).join()?;
        let subscriber_node = Node::builder("subscriber").group(&group).join()?;
        let lossless = SubscriptionOptions::block(STEP_DEADLINE);
        let topics = [("samples", SendMode::Auto), ("sealed", SendMode::Fresh)];
        let mut subs = Vec::new();
        let mut publishers = Vec::new();
        for (topic, mode) in topics {
            subs.push(subscriber_node.subscription(topic, lossless)?);
            let options = PublisherOptions {
                mode,
                ..PublisherOptions::default()
            };
            publishers.push(publisher_node.publisher_with(topic, DEFAULT_MIME, options)?);
            wait_subscribers(&publisher_node, topic, 1, STEP_DEADLINE)?;
        }
        let plan = [
            (0, 64),
            (0, 16 << 10),
            (0, 1 << 20),
            (0, 16 << 20),
            (1, 1 << 20),
        ];
        for (i, size) in plan {
            let (topic, payload) = (topics[i].0, generated(size));
            let sent = Instant::now();
            publishers[i].publish(&payload)?;
            let m = subs[i].recv_timeout(STEP_DEADLINE).ok_or_else(|| {
                CliError::Failed(format!("no message of {size} bytes on {topic}"))
            })?;
            let took = sent.elapsed();
            let (want, got) = (fnv1a64(&payload), fnv1a64(&m));
            if m.len() != size || want != got {
                return Err(CliError::Failed(format!(
                    "{topic}: {size} bytes sent, {} received, FNV-1a {got:016x} instead of \
                     {want:016x}",
                    m.len()
                )));
            }
            println!(
                "  {topic:<8} {:>8} bytes  via {:<6}  fnv1a64 {got:016x} (intact)  {:>6} µs from \
                 publish to receive",
                m.len(),
                m.via(),
                took.as_micros()
            );
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
             new hub gives the nodes it inherited a grace period to reconnect, then declares \
             the rest gone (node_left)."
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
            ("group", self.group.clone()),
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
             JSON line; `ipc-pubsub bench topology` measures failover, convergence and idle CPU.",
        );
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
    }
}
