//! # Writing a driver
//!
//! A driver runs one [`Member`] on some event loop and does, for it, everything this crate
//! refuses to do: open sockets, read credentials, read the clock, draw random seeds, map
//! memory. Every protocol decision (who runs the hub, who is told what, when a silent peer is
//! gone, what to retry and when) is the member's. `ipc-driver-std` (an I/O thread and
//! blocking calls) and `ipc-driver-calloop` (an event source in the application's loop) are
//! two drivers; this guide builds a third, the smallest that joins a real group: one thread,
//! one `poll(2)` loop, topology only. Its whole source is at the end of this page and in
//! `ipc-proto/examples/poll_driver.rs`:
//!
//! ```text
//! cargo run -p ipc-proto --example poll_driver -- --group demo --name me --announce frames
//! ```
//!
//! Start `ipc-pubsub watch --group demo` (from `ipc-driver-std`) beside it, and the poll
//! node shows up like any other; kill whichever process runs the hub and the survivors,
//! poll node included, elect a new one. The conformance suite in `tests/` runs its topology
//! scenarios against this program too, alone and mixed with the two real drivers.
//!
//! ## 1. What the driver owns
//!
//! | the driver | the member |
//! |---|---|
//! | sockets: the group's directory and the hub's lock ([`names`]), connect, bind, accept, send, receive | which link to open, bind, close, and what each record means |
//! | `SO_PEERCRED` of every link, accepted and connected, hub and data ([`Credentials`]) | whether to talk to that process at all ([`AccessPolicy`]), whether a data peer is the node it claims, and the pid/uid in the joined record |
//! | the clock: `Instant::now()` once per wakeup, passed as `now` | every deadline (heartbeats, keepalive, grace, backoff) |
//! | a node id and a seed from the OS ([`NodeOptions::member_config`]) | every other random number (record uids, jitter) |
//! | queues of bytes a socket has not taken yet, and their bound | nothing: it hands over whole records and forgets them |
//! | memfds, seals, mappings (data plane only) | which segment goes where, when one is free ([`data`]) |
//!
//! The link ids: links the member asks for ([`MemberOutput::ConnectHub`],
//! [`MemberOutput::ConnectData`]) come with an id it chose, with the [`OUTGOING`](data::OUTGOING)
//! bit set; links the driver accepts get an id the driver chooses, below that bit (the example
//! counts from 1).
//!
//! ### Credentials: every link's, and the member decides
//!
//! Pass the kernel's credentials of *every* link: [`MemberInput::Connected`] (the hub link and
//! the data links the member asked for; for a connected socket `SO_PEERCRED` names the process
//! that listens) and [`MemberInput::Accepted`] (hub and data listeners). Never read them from
//! the peer's bytes, and never decide yourself: the member checks each link against the
//! group's [`AccessPolicy`] ([`NodeOptions::access`]) before it sends a byte on it or believes
//! one. A hub refuses joiners it does not allow; a spoke refuses a hub held by a process the
//! group does not allow ([`MemberEvt::HubRefused`]: nothing is sent to it, not even the
//! `Hello`, and the member retries as if no hub had answered); the data plane refuses data
//! links and stats requests from such processes ([`MemberEvt::PeerRefused`]) and checks that a
//! publisher is the node it claims (the uid, and pid where known, the hub recorded when that
//! node joined). `None` means "the kernel could not tell": the member then refuses the link
//! unless the policy allows anyone. Log these events plainly; they are how a user learns that
//! another user holds the group's socket.
//!
//! ## 2. The loop
//!
//! The same five calls as every machine of this crate (see the [crate docs](crate#run-loop)):
//!
//! 1. `now = Instant::now()`, once per wakeup.
//! 2. Feed what happened: [`Member::handle`] with a [`MemberInput`], or
//!    [`Member::handle_timeout`] once [`Member::poll_timeout`] has passed.
//! 3. Drain [`Member::poll_output`] until `None`, acting on each [`MemberOutput`] (below).
//!    Acting may feed the member again (a connect that fails at once, a bind that is won):
//!    drain again until it is quiet.
//! 4. Sleep until a socket is ready, a command arrives, or the member's deadline.
//!
//! Time given to the member never moves backwards; calling `handle_timeout` early is
//! harmless. `handle` returns `Err` only for a command invalid in the current state (never for
//! anything a peer sent), and a refused command changes nothing: log it, or return it to
//! whoever issued it.
//!
//! ## 3. Acting on outputs
//!
//! - Where: a group meets in its directory ([`names`] gives the layout and the rules: a private
//!   group in this user's 0700 runtime directory, checked before use; a group opened to other
//!   users in a directory the application names). The crate `ipc-os` does these system calls
//!   for both real drivers and this example (`ipc_os::rendezvous::GroupDir`); a driver on
//!   another loop can use it as it is, or must follow the same rules to meet the others.
//! - [`MemberOutput::ConnectHub`]: connect a `SOCK_SEQPACKET` socket to the hub's socket. A Unix
//!   connect completes or fails at once: report [`MemberInput::Connected`] with the peer's
//!   credentials (`SO_PEERCRED` of the connected socket), or [`MemberInput::ConnectFailed`].
//!   Never retry yourself: the member asks again after its own backoff, or asks to bind. If
//!   the holder of the hub socket is not allowed, the member closes the link at once
//!   ([`MemberOutput::Disconnect`]) and reports [`MemberEvt::HubRefused`].
//! - [`MemberOutput::Bind`]: claim the hub: take the hub's lock file with
//!   `flock(LOCK_EX | LOCK_NB)`; if another process holds it, report
//!   [`MemberInput::Bound`] `{ won: false }`. Holding it, remove any hub socket left behind (a
//!   dead hub's) and bind and listen on a new one; report `{ won: true }`. Whoever wins runs
//!   the group's hub inside its member; the loser is asked to connect. The kernel drops the
//!   lock when its holder dies, so a crashed hub leaves nothing that blocks the next.
//!   [`MemberOutput::Unbind`]: remove the socket file, close the listener, release the lock.
//! - Accepted links on the listener: report [`MemberInput::Accepted`] with
//!   [`Listener::Hub`] and the credentials read from the kernel, never from the peer's bytes.
//!   Accept a bounded number per wakeup. If `accept` fails (out of descriptors: `EMFILE`,
//!   `ENFILE`), do not stop: report [`MemberInput::AcceptFailed`]; the member answers
//!   [`MemberOutput::PauseAccepting`], and [`MemberOutput::ResumeAccepting`] after a short
//!   backoff on its own timer. Watch the listeners only while [`Member::is_accepting`]. The
//!   member closes accepted links that do not complete their handshake in time, and refuses
//!   them beyond a bound ([`MemberEvt::LinkRefused`]): log those rate-limited
//!   ([`LogLimit`](crate::LogLimit)), a hostile peer chooses how many there are.
//! - [`MemberOutput::Transmit`]: one record for one link. Queue it and send it whole, one
//!   record per `send`, without blocking; a socket that does not take it now gets it when it is
//!   writable. Bound that queue: a peer that never reads is dropped (report
//!   [`MemberInput::PeerDown`]), it must not grow the driver's memory without end.
//! - [`MemberOutput::Disconnect`]: flush what is queued for the link (briefly), then close it.
//!   Do not report `PeerDown` for a link the member closed itself.
//! - [`MemberOutput::Evt`]: for the application ([`MemberEvt`]). [`MemberEvt::Left`] (or
//!   [`Member::is_left`]) means everything is said: flush and stop.
//! - [`MemberOutput::ConnectData`], [`MemberOutput::Deliver`], [`MemberOutput::Release`]:
//!   the data plane's (next section).
//!
//! ## 4. Reading
//!
//! One `recv` is one record. Receive into a buffer one byte larger than the largest frame
//! ([`Limits::max_frame`](crate::wire::Limits) plus the length prefix) with `MSG_TRUNC`, so
//! that a larger record is noticed and refused ([`MemberInput::Rejected`]) instead of being
//! cut. Feed each record as [`MemberInput::Record`]. Zero bytes, or an error, is the end of
//! the link: [`MemberInput::PeerDown`]. Read a bounded number of records per link per wakeup,
//! so that one chatty peer cannot starve the others.
//!
//! ## 5. Leaving
//!
//! Feed `SpokeCmd::Leave` ([`MemberCmd::Spoke`]) and keep looping: the member says goodbye,
//! and if it runs the hub, waits for the hub to sequence this node's own leave before closing
//! it. Stop at [`MemberEvt::Left`] once the queues are flushed, or at a deadline of your own
//! (the example gives it 1.5 s), whichever comes first.
//!
//! ## 6. The data plane, for a complete driver
//!
//! The example has none: [`NodeOptions::member_config`] with no data address makes a member
//! without one, and the driver refuses the data links it is never asked for. A complete
//! driver also listens on the node's own data socket ([`names::GroupPaths::data_socket`],
//! published as [`names::data_addr`]), connects where
//! [`MemberOutput::ConnectData`] says, sends the segment fd named by `Transmit::attach` with
//! `SCM_RIGHTS`, reports the credentials of every data link it connects or accepts (see
//! section 1), and, for every fd it receives, checks that it is a memfd with the seals its
//! mode requires and a size covering the claimed range *before* mapping it read-only; it
//! reports each checked fd as a [`ReceivedSegment`](data::ReceivedSegment) with its record, and
//! a failed check as [`MemberInput::Rejected`]. It reports [`MemberInput::Blocked`] and
//! [`MemberInput::Writable`] for data links, hands each [`MemberOutput::Deliver`] to the
//! subscriptions of its topic, and unmaps and closes a segment at
//! [`MemberOutput::Release`]. `ipc-os`'s `socket` and `memfd` modules (used by both drivers)
//! and `ipc-driver-calloop`'s `data` module are a compact reference.
//!
//! ## 7. Testing a driver
//!
//! Make it print the conformance suite's JSON lines (`started`, `synced`, `became_hub`, the
//! topology events...; see `tests/src/peer.rs`), give it a `Driver` variant in
//! `tests/src/peer.rs`, and add it to the scenarios in `tests/tests/conformance.rs`. The
//! scenarios kill and freeze processes, write garbage to the hub socket and mix drivers in
//! one group; a driver that passes them interoperates with the others.
//!
//! ## The example, whole
#![doc = concat!("```rust,ignore\n", include_str!("../examples/poll_driver.rs"), "```")]

#[allow(unused_imports)] // for the intra-doc links above
use crate::{
    AccessPolicy, Credentials, Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput,
    NodeOptions, data, names,
};
