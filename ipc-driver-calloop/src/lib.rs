//! ipc-pubsub inside a [calloop] event loop, for GUI and Wayland applications.
//!
//! A [`NodeSource`] is one node of a group as a calloop event source: its hub connection, the
//! hub it runs when it holds the group's address, its data links, its timers and its command
//! channel, all driven by the application's own loop, with no thread of its own and nothing
//! that blocks. Its callback receives [`NodeEvent`]s (topology changes, messages of the topics
//! it subscribes to) and `&mut` [`Node`], through which it announces, subscribes, publishes
//! and leaves. Other threads send the same commands through a [`NodeHandle`].
//!
//! Every protocol decision is made by `ipc-proto`'s machines, the same ones the std driver
//! runs, so nodes of both drivers form one group and either may be its hub.
//!
//! By default, after a turn that delivered messages, the source polls the node's rings for
//! the next one for up to 10 µs (100 µs while a publisher says it fills one for this node),
//! and only while that finds messages: a burst is read without a wakeup per message, and an
//! idle node or a sparse stream costs no polling. While a fast stream goes on, the loop's
//! other sources (a Wayland connection, say) wait up to 1 ms per turn; a GUI thread that
//! must never poll subscribes with `SubscriptionOptions::default().spin(Duration::ZERO)`
//! (see [`Node::open_subscription`]).
//!
//! ```no_run
//! use calloop::EventLoop;
//! use ipc_driver_calloop::{NodeEvent, NodeSource, PublisherOptions, SubscriptionOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut event_loop: EventLoop<u64> = EventLoop::try_new()?;
//! let mut source = NodeSource::builder("viewer").group("robot").join()?;
//! source.node().open_subscription("frames", SubscriptionOptions::default())?;
//! source.node().open_publisher("clicks", "text/plain", PublisherOptions::default())?;
//! event_loop.handle().insert_source(source, |event, node, frames| match event {
//!     NodeEvent::Message(msg) => {
//!         *frames += 1;
//!         let _ = node.publish("clicks", format!("got {} bytes", msg.len()).as_bytes());
//!     }
//!     NodeEvent::Topology(change) => println!("{change:?}"),
//!     _ => {}
//! })?;
//! let mut frames = 0;
//! event_loop.run(None, &mut frames, |_| {})?;
//! # Ok(()) }
//! ```
//!
//! # Payloads
//! Small payloads travel inline in the socket record; larger ones in a memfd passed with
//! `SCM_RIGHTS` and mapped read-only by each subscriber: a pool segment reused per message in
//! a group private to this uid, a fresh sealed segment otherwise ([`PublisherOptions`]). A
//! received [`Message`] derefs to the mapped bytes; dropping it gives a pooled range back to
//! its publisher.
//!
//! # Not blocking
//! Nothing a `Node` does waits: connecting to a Unix socket completes or fails at once, sends
//! queue in bounded per-peer outboxes flushed when the socket has room, and when a `Block`
//! subscriber is full [`Node::publish`] holds the message in the node until the subscriber has
//! room or its timeout passes (and fails with [`DriverError::Full`] beyond [`MAX_HELD`]).
//!
//! # Unsafe code
//! None: sockets, fd passing, memfds and their mappings, `epoll` and the timer are the OS layer
//! shared with the std driver, `ipc-os`, whose mapping module holds the only `unsafe` blocks.
//!
//! # Example and bench
//! `examples/live.rs` shows a group's live topology and the messages of a topic from one
//! thread (`cargo run -p ipc-driver-calloop --example live -- --group demo --topic chat`).
//! `examples/wayland.rs` is a real Wayland client (smithay-client-toolkit) whose one loop serves
//! both its window and a group: it draws the group's nodes, hub and last message, and keeps
//! drawing through a hub's death (`cargo run -p ipc-driver-calloop --example wayland -- --group
//! demo --topic chat` on a Wayland desktop; `tests/wayland.rs` runs it under headless weston).
//! `examples/calloop_camera.rs` and `examples/calloop_viewer.rs` publish and check 1 MiB frames
//! at 30 Hz; the viewer handles events with the same code as the std driver's `viewer` example
//! (`cargo run -p ipc-driver-calloop --example calloop_viewer`, then `... --example
//! calloop_camera`).
//! `benches/vs_std.rs` measures a 64 B round trip and 1 MiB pooled throughput with this
//! driver and with `ipc-driver-std` in the same run (`cargo bench -p ipc-driver-calloop`).
//!
//! [calloop]: https://docs.rs/calloop

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod builder;
mod data;
mod node;
mod source;
mod typed;

pub use builder::NodeBuilder;
pub use data::Loan;
pub use ipc_driver_core::api::*;
pub use ipc_proto::data::MAX_HELD;
pub use node::{Node, NodeHandle};
pub use source::NodeSource;
pub use typed::PodLoan;
