//! ipc-pubsub over real Unix sockets: groups of processes with no daemon.
//!
//! A [`Node`] joins a named group. The first node to take the group's hub lock
//! (`flock` on `hub.lock` in the group's directory, by default this user's private
//! `$XDG_RUNTIME_DIR/ipc-pubsub/<group>` or `/tmp/ipc-pubsub-<uid>/<group>`, mode 0700) runs
//! the group's hub on the `SOCK_SEQPACKET` socket `hub` beside it; every node, the hub's own
//! included, is a spoke connected to it. When the hub's process dies, its socket closes and
//! its lock is released, every spoke notices at once, and exactly one survivor takes the lock
//! and takes over, seeded with its copy of the group's history (the crate `ipc-proto` makes
//! every protocol decision; its module `names` says where a group's sockets live).
//!
//! Each node has one I/O thread, which multiplexes all its sockets with `epoll`; application
//! threads talk to it through requests, except to send and receive messages on shared-memory
//! rings:
//! - a publishing thread sends its message itself, into the link's ring or socket, holding
//!   the node's state for the time of that send (no hand-off, no wakeup of the I/O thread);
//! - a thread blocked in [`Subscription::recv`] with nothing queued waits on the node's rings
//!   itself and reads what they bring (one thread at a time; others wait for it or the I/O
//!   thread to hand their messages on), so a message costs one wakeup, of the thread that
//!   wants it. Messages that come through the socket are still read by the I/O thread, which
//!   wakes the receiver.
//!
//! Events reach the application through [`Events`] receivers or callbacks
//! ([`Node::on_event`]), which run on a separate dispatch thread with no lock held.
//!
//! ```no_run
//! use std::time::Duration;
//! use ipc_driver_std::{Event, EventKinds, Node, NodeEvent, NodeWithEvents};
//!
//! # fn main() -> Result<(), ipc_driver_std::DriverError> {
//! let NodeWithEvents { node, events } = Node::builder("logger")
//!     .group("robot")
//!     .join_with_events(EventKinds::GROUP)?;
//! node.subscribe("logs")?;
//! while let Some(event) = events.recv_timeout(Duration::from_secs(1)) {
//!     if let NodeEvent::Topology(Event::NodeJoined { info, .. }) = event {
//!         println!("{} joined (pid {})", info.name, info.pid);
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Typed payloads
//! Beside bytes, a topic can carry plain-old-data values ([`Node::pod_publisher`], read in
//! place with [`Message::pod`]) or serde values ([`Node::serde_publisher`], read with
//! [`Message::decode`]), each checked against the type its publisher declared (see
//! [`TopicTypes`] for the mime format). The README's first example:
//!
//! ```no_run
//! use std::time::Duration;
//! use ipc_driver_std::{Event, EventKinds, Node, NodeEvent, NodeWithEvents, Pod, SubscriptionOptions, TypeName, Zeroable};
//!
//! #[derive(Clone, Copy, Pod, Zeroable)]
//! #[bytemuck(crate = "ipc_driver_std::bytemuck")]   // the driver re-exports bytemuck
//! #[repr(C)]
//! struct Pose { x: f32, y: f32, heading: f32 }
//! impl TypeName for Pose {}      // declared as "application/x-ipc-pod; size=12; type=<its path>"
//!
//! let NodeWithEvents { node, events } = Node::builder("viewer")
//!     .group("robot")
//!     .join_with_events(EventKinds::GROUP)?;     // finds the hub, or becomes it
//! let poses = node.subscription("pose", SubscriptionOptions::default())?;   // receives
//! let clicks = node.serde_publisher::<str>("clicks")?;                       // sends, bincode
//! clicks.publish("ready")?;
//! loop {
//!     match poses.recv_timeout(Duration::from_millis(100)) {
//!         // Read in place, checked against the type its publisher declared.
//!         Ok(m) => match m.pod::<Pose>(&node) {
//!             Ok(pose) => println!("pose {} from {}: {}, {}", m.seq(), m.publisher(), pose.x, pose.y),
//!             Err(e) => println!("not a pose: {e}"),   // another type, size or encoding
//!         },
//!         Err(e) if e.is_final() => break,     // the node left or stopped: e says which
//!         Err(_) => {}                         // nothing within the timeout
//!     }
//!     while let Some(event) = events.try_recv() {   // the group's changes only
//!         match event {
//!             NodeEvent::Topology(Event::NodeJoined { info, .. }) => println!("{} joined", info.name),
//!             NodeEvent::Topology(Event::NodeLeft { info, .. }) => println!("{} left", info.name),
//!             NodeEvent::Synced { hub, .. } => println!("hub: {hub}"),
//!             _ => {}
//!         }
//!     }
//! }
//! # Ok::<(), ipc_driver_std::DriverError>(())
//! ```
//!
//! # Shared documents
//! [`Node::open_doc`] opens a JSON document shared by the group, hosted by the hub and patched
//! with MongoDB update operators: see [`Doc`].
//!
//! # Who may join
//! Every accepted connection's peer credentials (`SO_PEERCRED`) are checked by the hub: by
//! default only processes of the same uid may join; [`NodeBuilder::allow_uid`],
//! [`NodeBuilder::allow_gid`] and [`NodeBuilder::allow_anyone`] open the group explicitly. The
//! pid and uid that others see in a node's record come from those credentials.
//!
//! # A stopped hub
//! If the hub's process is stopped (`SIGSTOP`) it still holds the address, so no other node
//! can take over: spokes report [`NodeEvent::HubUnresponsive`] after the keepalive timeout and
//! stay connected. If the process resumes they report [`NodeEvent::HubResponsive`] and nothing
//! else changes; if it dies, its socket closes and a new hub is elected as after any crash.

#![forbid(unsafe_code)]

mod data;
mod doc;
mod events;
mod node;
mod pubsub;
mod reactor;
mod request;
mod typed;

pub use data::{Loan, SubscriptionCounters};
pub use doc::{Doc, Ticket};
pub use events::{CallbackId, EVENT_QUEUE_CAPACITY, Events};
pub use ipc_driver_core::api::*;
pub use node::{Node, NodeBuilder, NodeWithEvents};
pub use pubsub::{Bus, Publisher, Subscription};
pub use typed::{PodLoan, PodPublisher, SerdePublisher};
