//! The vocabulary of a driver's API, for each driver to re-export at its root with
//! `pub use ipc_driver_core::api::*`: an application depends on its driver crate alone.
//!
//! It gathers this crate's own types (events, the error, documents, messages) and the
//! protocol's types that the drivers' methods and events mention (ids, the group's view and
//! its changes, topic options, document types, data-link counters), and the traits of typed
//! payloads (bytemuck's `Pod`, serde's).

pub use crate::{
    BINCODE_MIME, DECODE_LIMIT, POD_MIME, TopicTypes, TypeError, TypeName, bincode_mime, pod_mime,
};
pub use crate::{
    Committed, DEFAULT_GROUP, DEFAULT_POOL_BYTES, DocEvent, DocSnapshot, DriverError, EventKinds,
    HubInfo, Message, NodeEvent, ObserverId, PatchError, RecvError, SegmentsInUse, Via,
};
/// The plain-old-data traits of typed payloads ([`Message::pod`], a driver's `PodLoan`), and
/// their derives with the crate's `derive` feature.
pub use bytemuck::{self, Pod, Zeroable};
pub use ipc_os::rendezvous::RendezvousError;
pub use ipc_proto::data::{
    DEFAULT_INLINE_MAX, DEFAULT_MAX_PAYLOAD, Incoming, Loss, LossReason, Paths, PublisherOptions,
    SendMode, SubscriptionOptions,
};
pub use ipc_proto::doc::{
    DocError, DocLimits, PatchId, PathError, Refusal, RejectReason, Scope, Update,
};
pub use ipc_proto::names::bus_topic;
pub use ipc_proto::wire::{
    AppCounter, DataStats, GuardStats, MAX_APP_COUNTERS, MAX_COUNTER_NAME, Policy, TopicStats,
    WitnessStats,
};
pub use ipc_proto::{
    AccessPolicy, Change, CloseReason, CmdError, ConfigError, Credentials, Epoch, Event, Keepalive,
    Limits, NodeId, NodeInfo, NodeView, Role, Seq, Term, Uid, View,
};
/// The serde traits of typed payloads ([`Message::decode`], a driver's serde publishing).
pub use serde::{self, Serialize, de::DeserializeOwned};
