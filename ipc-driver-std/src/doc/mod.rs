//! Shared documents: a JSON value per name, replicated on every node that opens it, patched
//! with MongoDB update operators, hosted by the group's hub (see the module `doc` of `ipc-proto`).
//!
//! [`Node::open_doc`](crate::Node::open_doc) opens one; a node may open several, and a
//! process may run several nodes. The I/O thread owns the document machines; a [`Doc`] reads
//! the value the I/O thread last published ([`Doc::snapshot`]) and asks it for patches.
//!
//! ```no_run
//! use std::time::Duration;
//! use ipc_driver_std::{DocEvent, Node, NodeEvent};
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = Node::builder("counter").group("robot").join()?;
//! let events = node.events();
//! let doc = node.open_doc("config", json!({"retries": 3, "motors": {"left": 0}}))?;
//! doc.wait_opened(Duration::from_secs(5))?;
//! // Fired on the node's dispatch thread when `motors` or anything under it changes.
//! doc.observe("motors", |value| println!("motors now {value:?}"))?;
//! // Blocks until the host accepted it and a witness holds it, or rejected it (a typed
//! // error).
//! let version = doc.patch(&json!({"$inc": {"retries": 1}}))?.version;
//! let now = doc.snapshot();
//! assert!(now.version >= Some(version) && now.value["retries"].is_i64());
//! // Or without blocking: a ticket to wait on later.
//! let ticket = doc.patch_nowait(&json!({"$set": {"motors.left": 40}}))?;
//! match ticket.wait() {
//!     Ok(c) => println!("accepted as version {}, {} witnesses", c.version, c.witnesses),
//!     Err(e) => println!("rejected: {e}"),
//! }
//! for event in (&events).take(3) {
//!     if let NodeEvent::Doc(DocEvent::Patched { doc, version, update, .. }) = event {
//!         println!("{doc} v{version}: {}", update.to_value());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! What the application sees ([`DocEvent`](crate::DocEvent), [`Committed`](crate::Committed),
//! [`PatchError`](crate::PatchError)) is `ipc-driver-core`'s, shared with the calloop driver. The
//! modules: `shared` is one document as both sides hold it, and the requests about it;
//! `handle` is the application's side ([`Doc`], [`Ticket`]); `registry` is the I/O thread's.

mod handle;
mod registry;
mod shared;

pub(crate) use handle::DocLink;
pub use handle::{Doc, Ticket};
pub(crate) use registry::{DocRegistry, push_all};
pub(crate) use shared::DocRequest;
