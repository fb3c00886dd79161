//! ipc-pubsub over real Unix sockets and memfd segments.
//!
//! Filled by the "ipc-driver-std" issue; today it holds the OS layer ([`sys`]).

pub mod sys;
