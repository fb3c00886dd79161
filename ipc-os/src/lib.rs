//! The OS layer both ipc-pubsub drivers share.
//!
//! `ipc-proto` decides everything and touches nothing; its drivers move bytes, fds and time.
//! What they do with the system the same way lives here, once, through `rustix`:
//!
//! | module | what |
//! |---|---|
//! | [`rendezvous`] | where a group meets: its directory (private 0700, or one the application opens), the hub's `flock`, its listening sockets, connecting to them |
//!
//! Every fd is non-blocking and close-on-exec from birth; sockets are `SOCK_SEQPACKET`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod rendezvous;
