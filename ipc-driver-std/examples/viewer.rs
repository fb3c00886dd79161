//! A viewer: receives the `camera` example's frames, checks every byte and measures their
//! latency, and prints the group's changes. Its event handling (`shared/app.rs`) is the
//! calloop driver's `calloop_viewer` example's too; only the loop differs.
//!
//! ```sh
//! cargo run -p ipc-driver-std --example viewer -- example 300   # group, frames to wait for
//! ```

use std::time::Duration;

use ipc_driver_std as driver;

#[path = "shared/app.rs"]
mod app;

use driver::{DriverError, EventKinds, Node, NodeWithEvents, SubscriptionOptions};

fn main() -> Result<(), DriverError> {
    let (group, count) = app::args(300);
    let NodeWithEvents { node, events } = Node::builder("viewer")
        .group(&group)
        .join_with_events(EventKinds::GROUP)?;
    let frames = node.subscription(app::TOPIC, SubscriptionOptions::default())?;
    let mut viewer = app::Viewer::default();
    while !viewer.is_done(count) {
        match frames.recv_timeout(Duration::from_millis(100)) {
            Ok(frame) => viewer.on_frame(&frame, &node),
            Err(e) if e.is_final() => {
                println!("no more frames: {e}");
                break;
            }
            Err(_) => {}
        }
        while let Some(event) = events.try_recv() {
            viewer.on_event(&event, &node);
        }
    }
    println!("viewer: {viewer:?}");
    node.leave()
}
