//! What the `camera` and `viewer` examples of both drivers share: the frame format and the
//! viewer's handling of a node's events and frames. Each example names its driver `driver`
//! (`use ipc_driver_std as driver;` or `use ipc_driver_calloop as driver;`) and includes this
//! file: the same code compiles against either driver, because both speak one vocabulary.

#![allow(dead_code)] // each example uses its half

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::driver::{Event, Message, NodeEvent};

/// The group the examples meet in, unless the first argument names another.
pub(crate) const GROUP: &str = "example";
/// The topic of the frames.
pub(crate) const TOPIC: &str = "frames";
/// The frames' declared type.
pub(crate) const MIME: &str = "application/x-example-frame";
/// A frame's size: 1 MiB, sent from a pool slot without a copy.
pub(crate) const FRAME_LEN: usize = 1 << 20;
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

/// Writes frame `n` into `buf`: its number and the wall clock in the first 16 bytes, then
/// every byte `n as u8`.
pub(crate) fn write_frame(buf: &mut [u8], n: u64) {
    buf.fill(n as u8);
    buf[..8].copy_from_slice(&n.to_le_bytes());
    buf[8..16].copy_from_slice(&wall_ns().to_le_bytes());
}

/// What a viewer has seen.
#[derive(Debug, Default)]
pub(crate) struct Viewer {
    /// Frames received.
    pub(crate) frames: u64,
    /// Frames whose bytes were not what the camera wrote.
    pub(crate) corrupt: u64,
    /// The sum of the frames' one-way latencies (sender's wall clock to now).
    latency: Duration,
    /// The camera has left the group.
    pub(crate) camera_left: bool,
}

impl Viewer {
    /// Prints what an application shows of a node's event.
    pub(crate) fn on_event(&mut self, event: &NodeEvent) {
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
            NodeEvent::Message(m) => self.on_frame(m),
            NodeEvent::Left => println!("left the group"),
            _ => {}
        }
    }

    /// Whether to stop: `count` frames seen, or the camera gone. (Frames sent before the
    /// camera learnt of this viewer's subscription went nowhere: pub/sub, not a queue.)
    pub(crate) fn is_done(&self, count: u64) -> bool {
        self.frames >= count || self.camera_left
    }

    /// Checks a frame, and prints every 30th with the mean latency so far.
    pub(crate) fn on_frame(&mut self, m: &Message) {
        self.frames += 1;
        let n = m
            .get(..8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let sent = m
            .get(8..16)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
        let intact = m.len() == FRAME_LEN && m[16..].iter().all(|&b| b == n as u8);
        if !intact {
            self.corrupt += 1;
        }
        self.latency += Duration::from_nanos(wall_ns().saturating_sub(sent));
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
