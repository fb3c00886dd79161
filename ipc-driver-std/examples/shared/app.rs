//! What the `camera` and `viewer` examples of both drivers share: the frame format and the
//! viewer's handling of a node's events and frames. Each example names its driver `driver`
//! (`use ipc_driver_std as driver;` or `use ipc_driver_calloop as driver;`) and includes this
//! file: the same code compiles against either driver, because both speak one vocabulary.
//! A frame is a typed payload, a [`Frame`] of plain old data: the camera writes it in place
//! into a pool slot, the viewer reads it in the mapping, neither copies it.

#![allow(dead_code)] // each example uses its half

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::driver::{Event, Message, NodeEvent, Pod, TopicTypes, TypeName, Zeroable};

/// The group the examples meet in, unless the first argument names another.
pub(crate) const GROUP: &str = "example";
/// The topic of the frames.
pub(crate) const TOPIC: &str = "frames";
/// A frame's size: 1 MiB, sent from a pool slot without a copy.
pub(crate) const FRAME_LEN: usize = 1 << 20;

/// A frame: its number, when it was sent, and its pixels.
#[derive(Clone, Copy, Pod, Zeroable)]
#[bytemuck(crate = "crate::driver::bytemuck")]
#[repr(C)]
pub(crate) struct Frame {
    /// The frame's number, from 0.
    pub(crate) n: u64,
    /// The camera's wall clock when it sent the frame, in ns since the Unix epoch.
    pub(crate) sent_ns: u64,
    /// Every byte `n as u8`.
    pub(crate) pixels: [u8; FRAME_LEN - 16],
}

/// The name both examples declare and check (`application/x-ipc-pod; size=1048576;
/// type=example.Frame/1`), the same whichever compiler built them.
impl TypeName for Frame {
    fn type_name() -> Cow<'static, str> {
        "example.Frame/1".into()
    }
}
/// 30 frames a second.
pub(crate) const PERIOD: Duration = Duration::from_micros(33_333);

/// The group (first argument) and a count (second argument; `default` without one).
pub(crate) fn args(default: u64) -> (String, u64) {
    let mut args = std::env::args().skip(1);
    let group = args.next().unwrap_or_else(|| GROUP.into());
    let count = args.next().and_then(|s| s.parse().ok()).unwrap_or(default);
    (group, count)
}

fn wall_ns() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH);
    since.map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Writes frame `n` in place: its number, the wall clock, every pixel `n as u8`.
pub(crate) fn write_frame(frame: &mut Frame, n: u64) {
    frame.n = n;
    frame.sent_ns = wall_ns();
    frame.pixels.fill(n as u8);
}

/// What a viewer has seen.
#[derive(Debug, Default)]
pub(crate) struct Viewer {
    /// Frames received.
    pub(crate) frames: u64,
    /// Frames whose bytes were not what the camera wrote.
    pub(crate) corrupt: u64,
    /// Messages that were not frames (another declared type, another size), or whose
    /// publisher's announcement this node had not seen yet.
    pub(crate) not_frames: u64,
    /// The sum of the frames' one-way latencies (sender's wall clock to now).
    latency: Duration,
    /// The camera has left the group.
    pub(crate) camera_left: bool,
}

impl Viewer {
    /// Prints what an application shows of a node's event; `types` (the node) knows what each
    /// publisher declared.
    pub(crate) fn on_event(&mut self, event: &NodeEvent, types: &impl TopicTypes) {
        match event {
            NodeEvent::Topology(Event::NodeJoined { info, .. }) => {
                println!("{} joined (pid {})", info.name, info.pid);
            }
            NodeEvent::Topology(Event::NodeLeft { info, .. }) => {
                println!("{} left", info.name);
                self.camera_left |= info.name == "camera";
            }
            NodeEvent::Topology(Event::TopicAnnounced {
                node, topic, mime, ..
            }) => println!("{node} publishes {topic:?} ({mime})"),
            NodeEvent::Synced { hub, term } => println!("synced with hub {hub} (term {term})"),
            NodeEvent::BecameHub => println!("this viewer now runs the hub"),
            NodeEvent::HubLost => println!("hub lost: finding the next one"),
            NodeEvent::Message(m) => self.on_frame(m, types),
            NodeEvent::Left => println!("left the group"),
            _ => {}
        }
    }

    /// Whether to stop: `count` frames seen, or the camera gone. (Frames sent before the
    /// camera learnt of this viewer's subscription went nowhere: pub/sub, not a queue.)
    pub(crate) fn is_done(&self, count: u64) -> bool {
        self.frames >= count || self.camera_left
    }

    /// Checks a frame, read in place as a [`Frame`], and prints every 30th with the mean
    /// latency so far.
    pub(crate) fn on_frame(&mut self, m: &Message, types: &impl TopicTypes) {
        let frame = match m.pod::<Frame>(types) {
            Ok(frame) => frame,
            Err(e) => {
                self.not_frames += 1;
                println!("not a frame from {}: {e}", m.publisher());
                return;
            }
        };
        self.frames += 1;
        let n = frame.n;
        if !frame.pixels.iter().all(|&b| b == n as u8) {
            self.corrupt += 1;
        }
        self.latency += Duration::from_nanos(wall_ns().saturating_sub(frame.sent_ns));
        if self.frames % 30 == 1 {
            let mean = self.latency / u32::try_from(self.frames).unwrap_or(u32::MAX);
            println!(
                "frame {n} from {} via {}: {} frames, {} corrupt, mean latency {mean:?}",
                m.publisher(),
                m.via(),
                self.frames,
                self.corrupt
            );
        }
    }
}
