//! The sans-IO core of ipc-pubsub.
//!
//! Processes on one Linux host form a named *group* with no daemon: the first to bind the
//! group's hub address runs the [`Hub`], and every process, the hub's own included, runs a
//! [`Spoke`] connected to it. The hub mints a sequenced [history](History) of topology
//! [changes](Change) (nodes joining and leaving, topics announced and retracted, subscriptions);
//! each spoke holds a copy and reports the [events](Event) that change its [view](View). When
//! the hub dies, a survivor binds the address and starts a new hub from its own history; every
//! spoke introduces itself and its history to it, the hub merges them (conflicts go the hub's
//! way), and each spoke reports exactly the difference between what it knew and what the new
//! hub says.
//!
//! This crate holds every protocol decision and nothing else: **no sockets, no file
//! descriptors, no threads, no clock, no OS randomness, no locks**. Drivers
//! (`ipc-driver-std`, `ipc-driver-calloop`) move bytes, credentials and time in and out.
//!
//! # Run loop
//! Every machine has the same five methods, and every driver the same loop:
//!
//! 1. Read the clock once per wakeup: `let now = Instant::now();`.
//! 2. Feed what happened: [`Spoke::handle`] with an [`Input`] (bytes from a link, a link up or
//!    down, a command, a connect or bind outcome), or [`Spoke::handle_timeout`] when the
//!    deadline passed.
//! 3. Drain [`Spoke::poll_output`] until `None`: [`Output::Transmit`] bytes to a link,
//!    [`Output::Disconnect`] a link, [`Output::Evt`] an event.
//! 4. Sleep until a link is readable, a command arrives, or [`Spoke::poll_timeout`].
//!
//! ```no_run
//! use std::time::Instant;
//! use ipc_proto::{AccessPolicy, Credentials, Input, Output, PeerId, Spoke, SpokeCmd, SpokeConfig, SpokeEvt};
//!
//! let now = Instant::now();
//! let config = SpokeConfig::default()
//!     .name("camera")
//!     .rng_seed(42)
//!     .access(AccessPolicy::same_uid(1000))
//!     .clone();
//! let mut spoke = Spoke::new(config, now);
//! spoke.handle(now, Input::Cmd(SpokeCmd::Subscribe { topic: "frames".into() }))?;
//! spoke.handle(now, Input::Cmd(SpokeCmd::Join))?;
//! while let Some(out) = spoke.poll_output() {
//!     match out {
//!         Output::Evt(SpokeEvt::ConnectRequested) => {
//!             // connect(hub_addr): on success report the link with the kernel's credentials
//!             // of the other end (SO_PEERCRED), else Input::ConnectFailed.
//!             let cred = Some(Credentials { pid: 4242, uid: 1000, gid: 1000 });
//!             spoke.handle(now, Input::PeerUp { peer: PeerId(1), cred })?;
//!         }
//!         Output::Evt(SpokeEvt::BindRequested) => { /* bind; on success start a Hub */ }
//!         Output::Transmit(t) => { /* queue t.bytes on link t.peer */ }
//!         Output::Disconnect(_peer) => { /* close it */ }
//!         Output::Evt(evt) => println!("{evt:?}"),
//!     }
//! }
//! let _deadline = spoke.poll_timeout();
//! # Ok::<(), ipc_proto::CmdError>(())
//! ```
//!
//! # Time
//! `now` is an argument of every mutating call; machines keep the latest value seen, and an
//! earlier `now` counts as that one, so a clock that steps back never rewinds a machine.
//! Deadlines are kept per [`Timer`] kind; `poll_timeout` is the earliest, `next_timer` says
//! which. Calling `handle_timeout` early is harmless.
//!
//! # Randomness
//! Record uids, node ids and backoff jitter come from a ChaCha8 generator seeded by
//! [`HubConfig::rng_seed`] and [`SpokeConfig::rng_seed`]. Drivers draw the seeds from the OS;
//! tests pick them, and a run is reproducible from its seeds. There is no fallback to OS
//! entropy in this crate.
//!
//! # Errors and panics
//! - Bytes from a peer never produce an `Err` and never a panic. A stale or irrelevant frame is
//!   dropped; broken framing, an oversized length or a protocol violation is reported
//!   ([`HubEvt::PeerMisbehaved`], [`SpokeEvt::HubMisbehaved`]) and the link is closed with
//!   [`Output::Disconnect`], because a stream cannot resynchronise. Every length is checked
//!   against [`Limits`] before anything is allocated for it.
//! - A command invalid in the current state returns [`CmdError`] and changes nothing.
//! - A panic is a bug: it means an internal invariant broke.
//!
//! # Simulation
//! With the feature `sim`, `ipc_proto::sim` is a deterministic simulator of whole groups
//! for property tests: seeded network and clock, fault schedules, invariant checks, replayable
//! failures. It is the one this crate's own properties run on.
//!
//! # Drivers
//! [`guide`] shows how to write one, with a complete single-threaded driver on `poll(2)`.
//!
//! # Wire
//! See [`wire`]: length-prefixed frames, bodies in bincode 2 behind one module, histories in
//! chunks that never need a whole history in one socket record.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod admission;
pub mod data;
pub mod doc;
mod error;
mod exits;
#[cfg(feature = "arbitrary")]
pub mod fuzzing;
pub mod guide;
mod history;
mod hub;
mod ids;
mod keepalive;
mod log_limit;
mod machine;
mod member;
pub mod names;
pub mod ring;
mod rng;
#[cfg(feature = "sim")]
pub mod sim;
mod spoke;
mod timer;
mod topology;
pub mod wire;

pub use error::{CmdError, DecodeError};
pub use history::{DEFAULT_TOMBSTONES, HORIZON_EPOCHS, History, Horizon, Verdict, merge};
pub use hub::{Hub, HubCmd, HubConfig, HubEvt, HubSeed, MergeStats};
pub use ids::{Credentials, Epoch, NodeId, PeerId, Seq, Term, Uid};
pub use keepalive::{ConfigError, Keepalive, MIN_PEER_HEARTBEAT};
pub use log_limit::LogLimit;
pub use machine::{AccessPolicy, Input, Output, Transmit};
pub use member::{
    Listener, Member, MemberCmd, MemberConfig, MemberEvt, MemberInput, MemberOutput, NodeOptions,
    Refusal,
};
pub use spoke::{Spoke, SpokeCmd, SpokeConfig, SpokeEvt, SpokeState};
pub use timer::Timer;
pub use topology::{Change, Event, NodeInfo, NodeView, OwnTopics, Record, Role, Summary, View};
pub use wire::{CloseReason, Limits};

#[cfg(test)]
mod tests;
