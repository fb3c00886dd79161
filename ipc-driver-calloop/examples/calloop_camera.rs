//! A camera in a calloop loop: a timer publishes 1 MiB frames at 30 Hz, each a typed `Frame`
//! written in place into a pool slot (a loan) and sent without a copy. Pair it with the `viewer` (std) or
//! `calloop_viewer` example.
//!
//! ```sh
//! cargo run -p ipc-driver-calloop --example calloop_camera -- example 300   # group, frames
//! ```

use std::time::Instant;

use calloop::timer::{TimeoutAction, Timer};
use calloop::{Dispatcher, EventLoop, LoopSignal};
use ipc_driver_calloop as driver;

#[path = "../../ipc-driver-std/examples/shared/app.rs"]
mod app;

use driver::{NodeEvent, NodeSource, PublisherOptions};

struct Camera {
    sent: u64,
    signal: LoopSignal,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (group, count) = app::args(300);
    let mut event_loop: EventLoop<'static, Camera> = EventLoop::try_new()?;
    let mut source = NodeSource::builder("camera").group(&group).join()?;
    (source.node()).open_pod_publisher::<app::Frame>(app::TOPIC, PublisherOptions::default())?;
    // A dispatcher, so that the timer can reach the node too.
    let node = Dispatcher::new(source, |event, _node, camera: &mut Camera| {
        if let NodeEvent::Left = event {
            camera.signal.stop();
        }
    });
    let handle = event_loop.handle();
    handle.register_dispatcher(node.clone())?;
    let start = Instant::now();
    handle.insert_source(Timer::immediate(), move |_, (), camera: &mut Camera| {
        let mut source = node.as_source_mut();
        let node = source.node();
        if camera.sent == count {
            println!("camera: sent {count} frames");
            node.leave();
            return TimeoutAction::Drop;
        }
        let sent = node
            .loan_pod::<app::Frame>(app::TOPIC)
            .and_then(|mut frame| {
                app::write_frame(&mut frame, camera.sent);
                node.send_pod(frame)
            });
        match sent {
            Ok(()) => camera.sent += 1,
            Err(e) => eprintln!("frame {} not sent: {e}", camera.sent),
        }
        TimeoutAction::ToInstant(
            start + app::PERIOD * u32::try_from(camera.sent).unwrap_or(u32::MAX),
        )
    })?;
    let mut camera = Camera {
        sent: 0,
        signal: event_loop.get_signal(),
    };
    event_loop.run(None, &mut camera, |_| {})?;
    Ok(())
}
