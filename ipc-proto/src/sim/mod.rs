//! A deterministic simulator of whole groups, for property tests (feature `sim`).
//!
//! A complete property test: the test file of the crate `ipc-proto/tests/sim_user`, which
//! depends on `ipc-proto` (feature `sim`) and proptest from outside this workspace.
//!
#![doc = concat!(
    "```\n",
    include_str!("../../tests/sim_user/tests/survivors.rs"),
    // Run as a doctest, the properties are plain functions (without `cfg(test)`): call them.
    "# fn main() {\n",
    "#     survivors_of_a_hub_crash_converge();\n",
    "#     groups_converge_after_any_schedule();\n",
    "# }\n",
    "```"
)]
//!
//! A [`Sim`] runs N nodes, each a [`Member`](crate::Member) driven exactly as a driver
//! would drive it (every output drained after every input), over a simulated network and
//! clock: links with seeded latency (FIFO per link, reordered across links), records split at
//! random points, the hub address as one atomic resource for which concurrent binds race.
//! Everything random comes from the seed given to [`Sim::builder`], so a seed and the same
//! calls replay a run exactly. The documents ride on the members and are simulated too
//! ([`Sim::open_doc`], [`Sim::patch_doc`]), and so is the data plane: every member has one,
//! with its own data address and credentials; data links behave as hub links do, but their
//! records go whole (SEQPACKET). Applications take topics ([`Sim::take`]: an
//! [`Inbox`](crate::data::Inbox) per topic, read a little after each input) and publish
//! bursts of inline messages ([`Sim::publish`]); what each read is [`SimNode::received`].
//!
//! - **Build** with [`Sim::builder`] ([`SimBuilder`]): members, latency, record splitting,
//!   keepalive, grace, document limits.
//! - **Drive** with [`Sim::step`], [`Sim::run_for`], [`Sim::run_until`] (bounded: it fails
//!   instead of hanging) and [`Sim::settle`] (until converged); inject faults with
//!   [`Sim::crash`], [`Sim::freeze`]/[`Sim::resume`], [`Sim::leave`], [`Sim::cut_links`],
//!   [`Sim::spawn`] (or [`Sim::spawn_with`] and [`SpawnOptions`]: a node that is no document
//!   witness, or may not run the hub) and [`Sim::cmd`].
//! - **Deaths**: [`Sim::crash`] is a death nobody confirms (a driver without pidfds);
//!   [`Sim::kill`] is one the survivors' drivers confirm
//!   ([`MemberInput::PeerExited`](crate::MemberInput::PeerExited) on each link to the dead
//!   process, usually after its hangup); [`Sim::spawn_hidden`] starts a node in another pid
//!   namespace, whose death is never confirmed; [`Sim::kill_reusing_pid`] gives a dead
//!   node's pid to a newcomer at once. [`Schedule::deaths_from_seed`] and
//!   [`strategy::death_schedules`] mix them.
//! - **Faults as values**: a [`Schedule`] lists [`Fault`]s at times; [`Schedule::run`] plays
//!   one, lets the group converge and stay quiet, and runs every check. [`strategy`] generates
//!   them for proptest (with shrinking), or derives one from a seed
//!   ([`Schedule::from_seed`]; with takes and publishes, [`strategy::data_schedules`] and
//!   [`Schedule::data_from_seed`]).
//! - **Check** with [`check`]: exactly one hub (and never two at once), every view equal to
//!   the truth (no ghosts), equal histories, each change reported once per member, terms
//!   monotonic, no flaps; for documents, every replica equal to the host and the host equal to
//!   its accepted patches, every patch answered once, no acknowledged version lost or applied
//!   twice, every patch acknowledged with a witness kept whoever died
//!   ([`check::witnessed_patches_kept`]); for the data plane, what every application read is
//!   in order per publisher, none twice, and every message between its first and its last
//!   delivered or told lost ([`check::deliveries`]).
//! - **Replay**: a failing [`Schedule::run`] returns a [`Failure`] whose `replay` is a Rust
//!   expression (`ipc_proto::sim::Schedule::from_seed(..).run()`, or the whole schedule) that
//!   reproduces it; `IPC_SIM_EXPLAIN=1` prints the faults, hubs and final state as it runs.
//!
//! Whatever a node's machine logs through `tracing` while the simulator drives it is logged
//! inside a span `node` with the node's name.
//!
//! The simulator reads the clock once, for its epoch, and adds only simulated durations.
//! This is the simulator that proves this crate: its own scenarios and random-schedule
//! properties all run on it (only scripted tests of the bare document machines, which hold
//! back or forge single messages, use a fixture of their own).

mod app;
mod builder;
pub mod check;
mod data;
mod death;
mod docs;
mod group;
mod observe;
mod options;
mod schedule;
pub mod strategy;

pub use app::{NodeIx, SimMessage};
pub use builder::SimBuilder;
pub use group::{Sim, SimNode};
pub use options::SpawnOptions;
pub use schedule::{Failure, Fault, Outcome, Schedule};

#[cfg(test)]
pub(crate) use group::SimConfig;
