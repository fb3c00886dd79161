//! A calloop application that shows a group's live topology and the messages of one topic,
//! and publishes every line typed on stdin to that topic.
//!
//! ```sh
//! cargo run -p ipc-driver-calloop --example live -- --group demo --topic chat --name alice
//! cargo run -p ipc-driver-calloop --example live -- --group demo --topic chat --name bob
//! ```
//!
//! Everything runs on the application's one thread: the node is a calloop event source next
//! to a timer (the screen is redrawn at most twice a second, and only when something changed)
//! and a channel fed by a stdin reader (the only other thread, since stdin cannot be polled
//! portably). End with Ctrl-D: the node leaves the group gracefully, then the loop ends.

use std::io::BufRead;
use std::time::{Duration, Instant};

use calloop::channel::{self, Channel};
use calloop::timer::{TimeoutAction, Timer};
use calloop::{Dispatcher, EventLoop, LoopSignal};
use ipc_driver_calloop::Event;
use ipc_driver_calloop::{NodeEvent, NodeSource, PublisherOptions, SubscriptionOptions};

/// What the screen shows.
struct App {
    topic: String,
    /// The latest messages, oldest first.
    messages: Vec<String>,
    events: Vec<String>,
    dirty: bool,
    signal: LoopSignal,
}

const KEEP: usize = 8;

fn keep_last(v: &mut Vec<String>, line: String) {
    v.push(line);
    if v.len() > KEEP {
        v.remove(0);
    }
}

fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let group = arg(&args, "--group", "demo");
    let topic = arg(&args, "--topic", "chat");
    let name = arg(&args, "--name", "live");

    let mut event_loop: EventLoop<'static, App> = EventLoop::try_new()?;
    let mut source = NodeSource::builder(&name).group(&group).join()?;
    source
        .node()
        .open_publisher(&topic, "text/plain", PublisherOptions::default())?;
    source
        .node()
        .open_subscription(&topic, SubscriptionOptions::default())?;

    // The node: events update the model; the callback gets `&mut Node` for commands.
    let node = Dispatcher::new(source, |event, _node, app: &mut App| {
        match event {
            NodeEvent::Message(m) => {
                let text = String::from_utf8_lossy(&m).into_owned();
                keep_last(&mut app.messages, format!("{}: {text}", m.publisher()));
            }
            NodeEvent::Left => app.signal.stop(),
            NodeEvent::Room { .. } => return,
            NodeEvent::Topology(e) => keep_last(&mut app.events, describe(&e)),
            other => keep_last(&mut app.events, format!("{other:?}")),
        }
        app.dirty = true;
    });
    let handle = event_loop.handle();
    handle.register_dispatcher(node.clone())?;

    // Lines typed on stdin, published on the topic; the end of stdin leaves the group.
    let (tx, lines): (_, Channel<Option<String>>) = channel::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.send(None);
    });
    let for_lines = node.clone();
    handle.insert_source(lines, move |e, (), app: &mut App| {
        let mut source = for_lines.as_source_mut();
        let n = source.node();
        match e {
            channel::Event::Msg(Some(line)) => {
                if let Err(e) = n.publish(&app.topic, line.as_bytes()) {
                    keep_last(&mut app.events, format!("publish failed: {e}"));
                }
            }
            channel::Event::Msg(None) | channel::Event::Closed => n.leave(),
        }
    })?;

    // The screen, redrawn when the model changed, at most twice a second.
    let for_screen = node.clone();
    handle.insert_source(Timer::immediate(), move |_, (), app: &mut App| {
        if app.dirty {
            app.dirty = false;
            let mut source = for_screen.as_source_mut();
            draw(source.node(), app);
        }
        TimeoutAction::ToInstant(Instant::now() + Duration::from_millis(500))
    })?;

    let mut app = App {
        topic,
        messages: Vec::new(),
        events: Vec::new(),
        dirty: true,
        signal: event_loop.get_signal(),
    };
    event_loop.run(None, &mut app, |_| {})?;
    Ok(())
}

/// One line per topology change.
fn describe(e: &Event) -> String {
    match e {
        Event::NodeJoined { info, .. } => format!("{} joined as {:?}", info.id, info.name),
        Event::NodeLeft { node, info } => format!("{node} left (was {:?})", info.name),
        Event::TopicAnnounced {
            node, topic, mime, ..
        } => {
            format!("{node} publishes {topic:?} ({mime})")
        }
        Event::TopicRetracted { node, topic } => format!("{node} stopped publishing {topic:?}"),
        Event::Subscribed { node, topic, .. } => format!("{node} subscribed to {topic:?}"),
        Event::Unsubscribed { node, topic } => format!("{node} unsubscribed from {topic:?}"),
        Event::HubChanged { node, term } => format!("{node} runs the hub (term {term})"),
    }
}

fn draw(node: &ipc_driver_calloop::Node, app: &App) {
    // Clear the screen and home the cursor.
    print!("\x1b[2J\x1b[H");
    let hub = node.hub().map(|h| h.to_string());
    println!(
        "group {} as {} [{}]   hub: {}",
        node.group(),
        node.name(),
        node.id(),
        hub.as_deref().unwrap_or("none yet")
    );
    println!("\n{:<18} {:<12} {:>7}  TOPICS", "NODE", "NAME", "PID");
    for n in node.view().nodes().values() {
        let topics: Vec<String> = n
            .publishes
            .keys()
            .map(|t| format!("+{t}"))
            .chain(n.subscribes.keys().map(|t| format!("<{t}")))
            .collect();
        println!(
            "{:<18} {:<12} {:>7}  {}",
            n.info.id.to_string(),
            n.info.name,
            n.info.pid,
            topics.join(" ")
        );
    }
    println!(
        "\nmessages on {:?} (type a line to publish, Ctrl-D to leave):",
        app.topic
    );
    for m in &app.messages {
        println!("  {m}");
    }
    println!("\nevents:");
    for e in &app.events {
        println!("  {e}");
    }
}
