//! A camera: publishes 1 MiB frames at 30 Hz, each a typed `Frame` written in place into a
//! pool slot (a loan) and sent without a copy. Pair it with the `viewer` example, or the calloop
//! driver's `calloop_viewer`.
//!
//! ```sh
//! cargo run -p ipc-driver-std --example camera -- example 300   # group, frames
//! ```

use std::time::Instant;

use ipc_driver_std as driver;

#[path = "shared/app.rs"]
mod app;

use driver::{DriverError, Node};

fn main() -> Result<(), DriverError> {
    let (group, count) = app::args(300);
    let node = Node::builder("camera").group(&group).join()?;
    let frames = node.pod_publisher::<app::Frame>(app::TOPIC)?;
    let start = Instant::now();
    for n in 0..count {
        let mut frame = frames.loan()?;
        app::write_frame(&mut frame, n);
        frames.send(frame)?;
        let next = start + app::PERIOD * u32::try_from(n + 1).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    println!("camera: sent {count} frames");
    node.leave()
}
