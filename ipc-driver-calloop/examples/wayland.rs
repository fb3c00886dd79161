//! A Wayland client that shows a group live: one calloop loop serves both the Wayland
//! connection (smithay-client-toolkit's `WaylandSource`) and a node of the group
//! ([`NodeSource`]).
//!
//! ```sh
//! cargo run -p ipc-driver-calloop --example wayland -- --group demo --topic chat
//! cargo run -p ipc-driver-calloop --example live -- --group demo --topic chat --name alice
//! ```
//!
//! The window (a `wl_shm` buffer drawn with an 8x8 bitmap font) lists the group's nodes (the
//! hub's in green, this one marked), the last message on the topic and the latest group events;
//! its title names the group, the node count and the hub. A bar sweeps along the bottom on every
//! frame callback, with the frame rate and the longest gap between loop iterations over the last
//! half second: kill the hub's process (`kill -9`) and watch the bar keep moving while the group
//! elects another hub.
//!
//! For tests and scripts, it prints one JSON object per line on stdout: `connected`,
//! `joined`, `configured` (each configure of the window), `group` (each [`NodeEvent`], with
//! the hub and the nodes after it), `message`, `redraw` (a frame that showed new content),
//! `loop` (every 500 ms: loop iterations and frames so far, the longest gaps between iterations
//! and between frame callbacks and the longest draw since the previous `loop` line), `failover` (from losing the hub
//! to holding the new hub's history: how long, and the longest gaps meanwhile) and `left`.
//!
//! Closing the window leaves the group gracefully; the loop ends once the node has left.

use std::io::Write;
use std::time::{Duration, Instant};

use calloop::timer::{TimeoutAction, Timer};
use calloop::{EventLoop, LoopSignal};
use ipc_driver_calloop::Event;
use ipc_driver_calloop::{Node, NodeEvent, NodeHandle, NodeSource, SubscriptionOptions};
use serde_json::json;
use smithay_client_toolkit::compositor::{CompositorHandler, CompositorState, FrameCallbackData};
use smithay_client_toolkit::output::{OutputHandler, OutputState};
use smithay_client_toolkit::reexports::calloop_wayland_source::WaylandSource;
use smithay_client_toolkit::reexports::client::globals::registry_queue_init;
use smithay_client_toolkit::reexports::client::protocol::{wl_output, wl_shm, wl_surface};
use smithay_client_toolkit::reexports::client::{Connection, QueueHandle};
use smithay_client_toolkit::registry::{ProvidesRegistryState, RegistryState};
use smithay_client_toolkit::shell::WaylandSurface;
use smithay_client_toolkit::shell::xdg::XdgShell;
use smithay_client_toolkit::shell::xdg::window::{
    Window, WindowConfigure, WindowDecorations, WindowHandler,
};
use smithay_client_toolkit::shm::slot::{Buffer, SlotPool};
use smithay_client_toolkit::shm::{Shm, ShmHandler};
use smithay_client_toolkit::{delegate_dispatch2, delegate_registry, registry_handlers};

/// The window's size until the compositor picks one.
const DEFAULT_SIZE: (u32, u32) = (800, 480);
/// Pixels per font pixel.
const SCALE: usize = 2;
/// Height of a text line, in pixels.
const LINE: usize = 8 * SCALE + 4;
/// Group events kept on screen.
const KEEP_EVENTS: usize = 6;
/// How often a `loop` line is printed (and the on-screen figures refreshed).
const REPORT_EVERY: Duration = Duration::from_millis(500);

const BACKGROUND: u32 = 0xff20_2228;
const TEXT: u32 = 0xffd8_dee9;
const DIM: u32 = 0xff81_8a99;
const HUB: u32 = 0xffa3_be8c;
const ACCENT: u32 = 0xff88_c0d0;
const WARN: u32 = 0xffeb_cb8b;

/// One node as the window lists it.
struct Row {
    id: String,
    name: String,
    pid: u32,
    hub: bool,
    me: bool,
}

/// What the window shows of the group, copied from the node on each of its events.
#[derive(Default)]
struct Group {
    rows: Vec<Row>,
    /// The hub's node name, if there is a hub.
    hub: Option<String>,
    /// The last message on the topic: who sent it, and its text.
    last_message: Option<(String, String)>,
    /// The latest group events, oldest first.
    events: Vec<String>,
    /// The node has lost its hub and not yet synced with the next one.
    hub_lost: bool,
}

/// Longest gaps between loop iterations and between frame callbacks.
#[derive(Default, Clone, Copy)]
struct Gaps {
    iteration: Duration,
    frame: Duration,
}

/// A failover in progress: since when, and the longest gaps so far.
struct Failover {
    since: Instant,
    gaps: Gaps,
}

/// What the window shows.
struct Screen {
    group_name: String,
    topic: String,
    group: Group,
    started: Instant,
    /// What the last `loop` line said: frames per second, and the longest gaps.
    shown: (f64, Gaps),
}

/// The application state: the window, what it shows, and the loop's measurements.
struct App {
    registry_state: RegistryState,
    output_state: OutputState,
    shm: Shm,
    pool: SlotPool,
    /// Up to three buffers, reused once the compositor releases them.
    buffers: Vec<Buffer>,
    window: Window,
    size: (u32, u32),
    configured: bool,

    screen: Screen,
    node: NodeHandle,
    title: String,
    /// The group changed since the last frame drawn.
    dirty: bool,

    iterations: u64,
    frames: u64,
    last_iteration: Instant,
    last_frame: Option<Instant>,
    /// Since the last `loop` line.
    window_gaps: Gaps,
    /// The longest time spent drawing a frame since the last `loop` line.
    longest_draw: Duration,
    frames_at_report: u64,
    failover: Option<Failover>,
    signal: LoopSignal,
}

fn arg(args: &[String], flag: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let group_name = arg(&args, "--group", "demo");
    let topic = arg(&args, "--topic", "chat");
    let name = arg(&args, "--name", "wayland");

    let mut event_loop: EventLoop<'static, App> = EventLoop::try_new()?;
    let handle = event_loop.handle();

    // The Wayland connection: its event queue is a source of the loop.
    let conn = Connection::connect_to_env()?;
    let (globals, queue) = registry_queue_init(&conn)?;
    let qh: QueueHandle<App> = queue.handle();
    WaylandSource::new(conn.clone(), queue)
        .insert(handle.clone())
        .map_err(|e| e.error)?;
    let compositor = CompositorState::bind(&globals, &qh)?;
    let xdg_shell = XdgShell::bind(&globals, &qh)?;
    let shm = Shm::bind(&globals, &qh)?;
    say(json!({"event": "connected"}));

    // The group: a node of it is another source of the same loop.
    let mut source = NodeSource::builder(&name).group(&group_name).join()?;
    source
        .node()
        .open_subscription(&topic, SubscriptionOptions::default())?;
    let node = source.node().handle();
    say(json!({"event": "joined", "group": group_name, "node": source.node().id().to_string()}));
    handle.insert_source(source, |event, node, app: &mut App| {
        app.node_event(event, node)
    })?;

    // A `loop` line every half second.
    handle.insert_source(
        Timer::from_duration(REPORT_EVERY),
        |_, (), app: &mut App| {
            app.report();
            TimeoutAction::ToDuration(REPORT_EVERY)
        },
    )?;

    // The window: the first commit, without a buffer, asks for the first configure.
    let surface = compositor.create_surface(&qh);
    let window = xdg_shell.create_window(surface, WindowDecorations::RequestServer, &qh);
    let title = format!("ipc-pubsub: {group_name}");
    window.set_title(title.clone());
    window.set_app_id("ipc-pubsub.wayland-example");
    window.set_min_size(Some((320, 200)));
    window.commit();

    let (w, h) = DEFAULT_SIZE;
    let now = Instant::now();
    let mut app = App {
        registry_state: RegistryState::new(&globals),
        output_state: OutputState::new(&globals, &qh),
        pool: SlotPool::new((w * h * 4) as usize, &shm)?,
        shm,
        buffers: Vec::new(),
        window,
        size: DEFAULT_SIZE,
        configured: false,
        screen: Screen {
            group_name,
            topic,
            group: Group::default(),
            started: now,
            shown: (0.0, Gaps::default()),
        },
        node,
        title,
        dirty: true,
        iterations: 0,
        frames: 0,
        last_iteration: now,
        last_frame: None,
        window_gaps: Gaps::default(),
        longest_draw: Duration::ZERO,
        frames_at_report: 0,
        failover: None,
        signal: event_loop.get_signal(),
    };
    event_loop.run(None, &mut app, App::iterated)?;
    Ok(())
}

/// One JSON line on stdout (ignored if stdout is gone: the window is what matters).
fn say(v: serde_json::Value) {
    let _ = writeln!(std::io::stdout().lock(), "{v}");
}

impl App {
    /// After each loop iteration.
    fn iterated(&mut self) {
        let now = Instant::now();
        let gap = now - self.last_iteration;
        self.last_iteration = now;
        self.iterations += 1;
        self.window_gaps.iteration = self.window_gaps.iteration.max(gap);
        if let Some(f) = &mut self.failover {
            f.gaps.iteration = f.gaps.iteration.max(gap);
        }
    }

    fn report(&mut self) {
        let gaps = std::mem::take(&mut self.window_gaps);
        let fps = (self.frames - self.frames_at_report) as f64 / REPORT_EVERY.as_secs_f64();
        self.frames_at_report = self.frames;
        self.screen.shown = (fps, gaps);
        say(json!({
            "event": "loop",
            "t_ms": ms(self.screen.started.elapsed()),
            "iterations": self.iterations,
            "frames": self.frames,
            "max_iteration_gap_ms": ms(gaps.iteration),
            "max_frame_gap_ms": ms(gaps.frame),
            "max_draw_ms": ms(std::mem::take(&mut self.longest_draw)),
        }));
    }

    fn node_event(&mut self, event: NodeEvent, node: &mut Node) {
        let kind = match &event {
            NodeEvent::Topology(_) => "Topology",
            NodeEvent::Synced { .. } => "Synced",
            NodeEvent::BecameHub => "BecameHub",
            NodeEvent::HubLost => "HubLost",
            NodeEvent::HubUnresponsive => "HubUnresponsive",
            NodeEvent::HubResponsive => "HubResponsive",
            NodeEvent::HubClosed(_) => "HubClosed",
            NodeEvent::HubAbsent => "HubAbsent",
            NodeEvent::Message(_) => "Message",
            NodeEvent::Room { .. } => "Room",
            NodeEvent::Failed { .. } => "Failed",
            NodeEvent::Doc(_) => "Doc",
            NodeEvent::DocObserved { .. } => "DocObserved",
            NodeEvent::Left => "Left",
            _ => "Other",
        };
        let name_of = |id| {
            node.view()
                .node(id)
                .map_or_else(|| id.to_string(), |n| n.info.name.clone())
        };
        let line = match &event {
            NodeEvent::Topology(e) => Some(describe(e, &name_of)),
            NodeEvent::Message(m) => {
                let from = name_of(m.publisher());
                let text = String::from_utf8_lossy(m).into_owned();
                say(json!({"event": "message", "topic": m.topic(), "from": from, "text": text}));
                self.screen.group.last_message = Some((from, text));
                None
            }
            NodeEvent::Synced { hub, term } => {
                Some(format!("synced with {}'s hub (term {term})", name_of(*hub)))
            }
            NodeEvent::HubLost => Some("hub lost: electing the next one".to_string()),
            NodeEvent::Failed { command, error } => Some(format!("{command} failed: {error}")),
            NodeEvent::Room { .. } | NodeEvent::Doc(_) | NodeEvent::DocObserved { .. } => None,
            other => Some(format!("{other:?}")),
        };
        if let Some(line) = line {
            self.screen.group.events.push(line);
            if self.screen.group.events.len() > KEEP_EVENTS {
                self.screen.group.events.remove(0);
            }
        }
        match &event {
            NodeEvent::HubLost => {
                self.screen.group.hub_lost = true;
                self.failover.get_or_insert(Failover {
                    since: Instant::now(),
                    gaps: Gaps::default(),
                });
            }
            NodeEvent::Synced { hub, term } => {
                self.screen.group.hub_lost = false;
                if let Some(f) = self.failover.take() {
                    say(json!({
                        "event": "failover",
                        "new_hub": name_of(*hub),
                        "term": term.to_string(),
                        "lost_to_synced_ms": ms(f.since.elapsed()),
                        "max_iteration_gap_ms": ms(f.gaps.iteration),
                        "max_frame_gap_ms": ms(f.gaps.frame),
                    }));
                }
            }
            NodeEvent::Left => {
                say(json!({"event": "left"}));
                self.signal.stop();
            }
            _ => {}
        }

        // Copy what the window shows.
        let hub = node.hub().map(|h| h.node);
        let me = node.id();
        self.screen.group.rows = node
            .view()
            .nodes()
            .values()
            .map(|n| Row {
                id: n.info.id.to_string(),
                name: n.info.name.clone(),
                pid: n.info.pid,
                hub: Some(n.info.id) == hub,
                me: n.info.id == me,
            })
            .collect();
        self.screen.group.hub = hub.map(name_of);
        let names: Vec<&str> = self
            .screen
            .group
            .rows
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        say(json!({
            "event": "group",
            "kind": kind,
            "hub": self.screen.group.hub,
            "nodes": names,
        }));

        let title = format!(
            "ipc-pubsub: {} ({} nodes, hub {})",
            self.screen.group_name,
            self.screen.group.rows.len(),
            self.screen.group.hub.as_deref().unwrap_or("none")
        );
        if title != self.title {
            self.window.set_title(title.clone());
            self.title = title;
        }
        self.dirty = true;
    }

    /// Draws the window into a free buffer, asks for the next frame callback and commits.
    fn draw(&mut self, qh: &QueueHandle<Self>) {
        let started = Instant::now();
        let (w, h) = (self.size.0 as usize, self.size.1 as usize);
        let stride = w * 4;
        // A buffer the compositor has released (or a new one, up to three).
        self.buffers
            .retain(|b| b.height() as usize == h && b.stride() as usize == stride);
        let free = self
            .buffers
            .iter()
            .position(|b| b.canvas(&mut self.pool).is_some());
        let index = match free {
            Some(i) => i,
            None if self.buffers.len() < 3 => {
                let (buffer, _) = self
                    .pool
                    .create_buffer(w as i32, h as i32, stride as i32, wl_shm::Format::Argb8888)
                    .expect("the pool grows as needed");
                self.buffers.push(buffer);
                self.buffers.len() - 1
            }
            None => {
                // All three are still on screen: try again at the next frame.
                self.window
                    .wl_surface()
                    .frame(qh, FrameCallbackData(self.window.wl_surface().clone()));
                self.window.commit();
                return;
            }
        };
        let new_content = std::mem::take(&mut self.dirty);
        {
            let buffer = &self.buffers[index];
            let canvas = buffer
                .canvas(&mut self.pool)
                .expect("checked free just above");
            let mut c = Canvas { px: canvas, w, h };
            self.screen.paint(&mut c);
        }
        let surface = self.window.wl_surface();
        surface.damage_buffer(0, 0, w as i32, h as i32);
        surface.frame(qh, FrameCallbackData(surface.clone()));
        self.buffers[index]
            .attach_to(surface)
            .expect("a free buffer can be attached");
        self.window.commit();
        self.longest_draw = self.longest_draw.max(started.elapsed());
        if new_content {
            say(json!({
                "event": "redraw",
                "frame": self.frames,
                "nodes": self.screen.group.rows.len(),
                "hub": self.screen.group.hub,
            }));
        }
    }
}

impl Screen {
    fn paint(&self, c: &mut Canvas<'_>) {
        c.fill(0, 0, c.w, c.h, BACKGROUND);
        let x = 12;
        let mut y = 10;
        let hub = self.group.hub.as_deref().unwrap_or("none yet");
        c.text(x, y, &format!("group {}", self.group_name), ACCENT);
        y += LINE;
        let (color, state) = if self.group.hub_lost {
            (WARN, "hub lost, electing...".to_string())
        } else {
            (HUB, format!("hub: {hub}"))
        };
        c.text(x, y, &state, color);
        y += LINE + 6;
        c.text(
            x,
            y,
            &format!("{:<16} {:<12} {:>7}", "NODE", "NAME", "PID"),
            DIM,
        );
        y += LINE;
        for r in &self.group.rows {
            let mark = match (r.hub, r.me) {
                (true, true) => "  hub, me",
                (true, false) => "  hub",
                (false, true) => "  me",
                (false, false) => "",
            };
            let line = format!("{:<16} {:<12} {:>7}{mark}", r.id, r.name, r.pid);
            c.text(x, y, &line, if r.hub { HUB } else { TEXT });
            y += LINE;
        }
        y += 6;
        c.text(x, y, &format!("last on {:?}:", self.topic), DIM);
        y += LINE;
        let last = match &self.group.last_message {
            Some((from, text)) => format!("{from}: {text}"),
            None => "(nothing yet)".to_string(),
        };
        c.text(x, y, &last, TEXT);
        y += LINE + 6;
        c.text(x, y, "events:", DIM);
        y += LINE;
        for e in &self.group.events {
            c.text(x, y, e, TEXT);
            y += LINE;
        }

        // The loop's pulse: a bar sweeping once a second, and the figures of the last report.
        let (fps, gaps) = self.shown;
        let bottom = c.h.saturating_sub(LINE + 16);
        c.text(
            x,
            bottom,
            &format!(
                "{fps:.0} fps; longest gaps: loop {:.0} ms, frames {:.0} ms",
                ms(gaps.iteration),
                ms(gaps.frame)
            ),
            DIM,
        );
        let phase = self.started.elapsed().as_millis() % 1000;
        let bar = 60;
        let span = c.w.saturating_sub(bar);
        let bx = span * phase as usize / 1000;
        c.fill(bx, c.h.saturating_sub(10), bar, 6, ACCENT);
    }
}

/// One line per topology change.
fn describe(e: &Event, name_of: &dyn Fn(ipc_driver_calloop::NodeId) -> String) -> String {
    match e {
        Event::NodeJoined { info, .. } => format!("{} joined ({})", info.name, info.id),
        Event::NodeLeft { info, .. } => format!("{} left", info.name),
        Event::TopicAnnounced { node, topic, .. } => {
            format!("{} publishes {topic:?}", name_of(*node))
        }
        Event::TopicRetracted { node, topic } => {
            format!("{} stopped publishing {topic:?}", name_of(*node))
        }
        Event::Subscribed { node, topic, .. } => {
            format!("{} subscribed to {topic:?}", name_of(*node))
        }
        Event::Unsubscribed { node, topic } => {
            format!("{} unsubscribed from {topic:?}", name_of(*node))
        }
        Event::HubChanged { node, term } => {
            format!("{} runs the hub (term {term})", name_of(*node))
        }
    }
}

/// An ARGB8888 buffer (little-endian: B, G, R, A in memory).
struct Canvas<'a> {
    px: &'a mut [u8],
    w: usize,
    h: usize,
}

impl Canvas<'_> {
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, color: u32) {
        let bytes = color.to_le_bytes();
        for row in y.min(self.h)..(y + h).min(self.h) {
            let start = (row * self.w + x.min(self.w)) * 4;
            let end = (row * self.w + (x + w).min(self.w)) * 4;
            for p in self.px[start..end].chunks_exact_mut(4) {
                p.copy_from_slice(&bytes);
            }
        }
    }

    /// One line of text, cut at the right edge; characters outside ASCII show as `?`.
    fn text(&mut self, x: usize, y: usize, s: &str, color: u32) {
        let advance = 8 * SCALE;
        for (i, ch) in s.chars().enumerate() {
            let cx = x + i * advance;
            if cx + advance > self.w {
                break;
            }
            let code = if ch.is_ascii() {
                ch as usize
            } else {
                b'?' as usize
            };
            let glyph = font8x8::legacy::BASIC_LEGACY[code];
            for (gy, bits) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    // Bit 0 is the leftmost pixel.
                    if bits & (1 << gx) != 0 {
                        self.fill(cx + gx * SCALE, y + gy * SCALE, SCALE, SCALE, color);
                    }
                }
            }
        }
    }
}

impl CompositorHandler for App {
    fn scale_factor_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: i32,
    ) {
    }

    fn transform_changed(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: wl_output::Transform,
    ) {
    }

    fn frame(&mut self, _: &Connection, qh: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: u32) {
        let now = Instant::now();
        if let Some(last) = self.last_frame.replace(now) {
            let gap = now - last;
            self.window_gaps.frame = self.window_gaps.frame.max(gap);
            if let Some(f) = &mut self.failover {
                f.gaps.frame = f.gaps.frame.max(gap);
            }
        }
        self.frames += 1;
        self.draw(qh);
    }

    fn surface_enter(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }

    fn surface_leave(
        &mut self,
        _: &Connection,
        _: &QueueHandle<Self>,
        _: &wl_surface::WlSurface,
        _: &wl_output::WlOutput,
    ) {
    }
}

impl WindowHandler for App {
    fn request_close(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window) {
        // Leave gracefully; the loop stops on `NodeEvent::Left`.
        if self.node.leave().is_err() {
            self.signal.stop();
        }
    }

    fn configure(
        &mut self,
        _: &Connection,
        qh: &QueueHandle<Self>,
        _: &Window,
        configure: WindowConfigure,
        serial: u32,
    ) {
        let w = configure.new_size.0.map_or(DEFAULT_SIZE.0, |v| v.get());
        let h = configure.new_size.1.map_or(DEFAULT_SIZE.1, |v| v.get());
        self.size = (w, h);
        say(json!({"event": "configured", "width": w, "height": h, "serial": serial}));
        self.dirty = true;
        if !self.configured {
            // The first frame; every later one is drawn from the frame callback.
            self.configured = true;
            self.draw(qh);
        }
    }
}

impl OutputHandler for App {
    fn output_state(&mut self) -> &mut OutputState {
        &mut self.output_state
    }

    fn new_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}

    fn update_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}

    fn output_destroyed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
}

impl ShmHandler for App {
    fn shm_state(&mut self) -> &mut Shm {
        &mut self.shm
    }
}

impl ProvidesRegistryState for App {
    fn registry(&mut self) -> &mut RegistryState {
        &mut self.registry_state
    }
    registry_handlers![OutputState];
}

delegate_registry!(App);
delegate_dispatch2!(App);
