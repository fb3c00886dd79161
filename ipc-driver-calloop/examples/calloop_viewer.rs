//! A viewer in a calloop loop: receives the `camera` example's frames, checks every byte and
//! measures their latency, and prints the group's changes. Its event handling is the std
//! driver's `viewer` example's (`ipc-driver-std/examples/shared/app.rs`); only the loop
//! differs.
//!
//! ```sh
//! cargo run -p ipc-driver-calloop --example calloop_viewer -- example 300   # group, frames to wait for
//! ```

use calloop::{EventLoop, LoopSignal};
use ipc_driver_calloop as driver;

#[path = "../../ipc-driver-std/examples/shared/app.rs"]
mod app;

use driver::{NodeEvent, NodeSource, SubscriptionOptions};

struct State {
    viewer: app::Viewer,
    count: u64,
    signal: LoopSignal,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (group, count) = app::args(300);
    let mut event_loop: EventLoop<'static, State> = EventLoop::try_new()?;
    let mut source = NodeSource::builder("viewer").group(&group).join()?;
    (source.node()).open_subscription(app::TOPIC, SubscriptionOptions::default())?;
    event_loop
        .handle()
        .insert_source(source, |event, node, state: &mut State| {
            // Frames and the group's changes, by the same code as the std viewer.
            state.viewer.on_event(&event, &*node);
            match event {
                NodeEvent::Left => state.signal.stop(),
                _ if state.viewer.is_done(state.count) => node.leave(),
                _ => {}
            }
        })?;
    let mut state = State {
        viewer: app::Viewer::default(),
        count,
        signal: event_loop.get_signal(),
    };
    event_loop.run(None, &mut state, |_| {})?;
    println!("viewer: {:?}", state.viewer);
    Ok(())
}
