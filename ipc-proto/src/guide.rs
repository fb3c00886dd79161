//! # Writing a driver
//!
//! A driver runs one [`Member`] on some event loop and does, for it, everything this crate
//! refuses to do: open sockets, read credentials, read the clock, draw random seeds, map
//! memory. Every protocol decision (who runs the hub, who is told what, when a silent peer is
//! gone, what to retry and when, what to send to whom and what to drop) is the member's.
//! `ipc-driver-std` (an I/O thread and blocking calls) and `ipc-driver-calloop` (an event
//! source in the application's loop) are two drivers; this guide builds a third in one file:
//! one thread, one `poll(2)` loop, the topology and the data plane (inline, fresh and pooled
//! payloads, publishing and subscribing, the three queue policies). Its whole source is at the
//! end of this page and in `ipc-proto/examples/poll_driver.rs`:
//!
//! ```text
//! cargo run -p ipc-proto --example poll_driver -- --group demo --name me --announce frames
//! ```
//!
//! Start `ipc-pubsub watch --group demo` (from `ipc-driver-std`) beside it, and the poll
//! node shows up like any other; kill whichever process runs the hub and the survivors,
//! poll node included, elect a new one. Type `publisher t pooled` and `publish t 100000 3`
//! into it while `ipc-pubsub --group demo sub t` runs, and three messages arrive. The
//! conformance suite in `tests/` runs every one of its scenarios against this program as an
//! outside executable, alone and mixed with the two real drivers (section 7).
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
//!   [`MemberInput::Bound`] `{ won: false }`. Having it, check that the file locked still
//!   has the lock's name (a node leaving last may have removed it: see
//!   [`names`](crate::names)), else let it go and try again. Holding it, remove any hub
//!   socket left behind (a dead hub's) and bind and listen on a new one; report
//!   `{ won: true }`. Whoever wins runs the group's hub inside its member; the loser is asked
//!   to connect. The kernel drops the lock when its holder dies, so a crashed hub leaves
//!   nothing that blocks the next. [`MemberOutput::Unbind`]: remove the socket file, close the
//!   listener, release the lock. (`GroupDir::claim_hub` does all of this.) When the node is
//!   done, after its sockets are gone, remove the group's directory if it is the last
//!   (`GroupDir::remove_if_unused`).
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
//!   the data plane's (section 6).
//!
//! ## 4. Reading
//!
//! One `recv` is one record. Receive into a buffer one byte larger than the largest frame
//! ([`Limits::max_frame`](crate::wire::Limits) plus the length prefix) with `MSG_TRUNC`, so
//! that a larger record is noticed and refused ([`MemberInput::Rejected`]) instead of being
//! cut. Feed each record as [`MemberInput::Record`]. Zero bytes, or an error, is the end of
//! the link: [`MemberInput::PeerDown`]. Data links carry records up to
//! [`DataLimits::max_record`](data::DataLimits::max_record) (plus one byte, the same way) and
//! at most one fd each: receive with room for two fds, so that a second is noticed
//! (`MSG_CTRUNC`), and refuse fds on topology links (section 6 says what to check).
//! Read a bounded number of records per link per wakeup, so that one chatty peer cannot
//! starve the others, and act on each record's outputs before reading the next (the
//! example's `read`): deliveries then map the segments that came with it at once.
//!
//! **Edge-triggered loops** (epoll with `EPOLLET`, mio, tokio's `AsyncFd`, many game loops)
//! are told of readiness once, when it arrives. A link whose read budget ran out still has
//! records queued, and no new edge will come for them: the loop must remember such links and
//! read them again on its next turn without sleeping (mio and tokio: until `WouldBlock`; a
//! budget then means "yield, and come back at once", never "wait for the next event"). The same
//! holds for writing: keep sending until `EAGAIN` before waiting for writability. The example's
//! `poll(2)` is level-triggered, so whatever is left wakes it again.
//!
//! ## 5. Leaving
//!
//! Feed `SpokeCmd::Leave` ([`MemberCmd::Spoke`]) and keep looping: the member says goodbye,
//! and if it runs the hub, waits for the hub to sequence this node's own leave before closing
//! it. Stop when [`MemberEvt::Left`] has come (or [`Member::is_left`]) *and every outbox is
//! empty*, data links' included: the last messages published before leaving are still in
//! them. Do not wait for the links to be gone: publishers keep their data links to this node
//! open until they see it leave, and a node that waits for "no links left" waits for them. Give
//! it a deadline of your own too (the example: 1.5 s).
//!
//! ## 6. The data plane: the driver's duties
//!
//! [`NodeOptions::member_config`] with a data address makes a member with a [`data`] plane
//! (with `None`, a member without one, which neither publishes nor receives). What the member
//! decides (which subscriber gets what, what is in flight, what to drop, when a segment is free,
//! whether a range is within its segment) is in [`data`]'s docs; the driver's share is this
//! checklist. Each item names the place in the example that does it.
//!
//! 1. **A data address.** Listen on the node's own data socket (`GroupDir::listen_data`,
//!    [`names::GroupPaths::data_socket`]) and pass its name ([`names::data_addr`]) to
//!    `member_config` (example: `main`). Accept on it as on the hub's listener, reporting
//!    [`MemberInput::Accepted`] with [`Listener::Data`] and the kernel's credentials
//!    (`accept`). For [`MemberOutput::ConnectData`], connect to the named address
//!    (`GroupDir::connect_data` refuses anything that is not a data socket of the group) and
//!    report `Connected` with the listener's credentials or `ConnectFailed` (`connect`).
//! 2. **Publishing pairs a topology command with a data command.** A publisher is
//!    [`SpokeCmd::Announce`](crate::SpokeCmd::Announce) (the group learns of the publisher)
//!    *and*
//!    [`DataCmd::Advertise`](data::DataCmd::Advertise) (the data plane opens links to the
//!    topic's subscribers); a subscription is [`DataCmd::Take`](data::DataCmd::Take) with
//!    its terms *and* [`SpokeCmd::Subscribe`](crate::SpokeCmd::Subscribe) (publishers learn
//!    of it and connect). One without the other publishes to nobody or receives nothing; close
//!    them in pairs too (`Withdraw` and `Retract`, `Leave` and `Unsubscribe`). (`execute`:
//!    `publisher`, `subscription`.)
//! 3. **Credits: room and expiry.** Before each [`DataCmd::Publish`](data::DataCmd::Publish),
//!    ask [`DataPlane::room`](data::DataPlane::room) ([`Member::data`]): `None` or
//!    `messages > 0` means publish now; `Some` with `messages == 0` means a `Block` subscriber
//!    is full: hold the message (bounded: the example holds the commands, not the messages),
//!    and publish it when [`MemberEvt::Room`] says room came back, or, once it has waited
//!    `room.timeout`, publish it with `expired: true` (dropped for the subscribers still full,
//!    delivered to the others). Never publish past zero credits with `expired: false`
//!    (`publish_pending`, and `act` for `Room`).
//! 4. **Blocked and Writable.** A data link whose socket does not take a record keeps it in
//!    the link's outbox: report [`MemberInput::Blocked`] once, and
//!    [`MemberInput::Writable`] once it has drained; the member stops handing records to a
//!    blocked link and counts what it holds against the subscriber's depth. The member bounds
//!    what it gives a data link; topology links are bounded by the driver (`flush`).
//! 5. **Segments out.** Create payload memory as [`MemberOutput::Transmit`]'s `attach` will
//!    name it: a fresh memfd per message, written, unmapped, then sealed with `SealSet::FRESH`
//!    ([`Payload::Fresh`](data::Payload::Fresh)); or a pool segment from
//!    [`Pool::alloc`](data::Pool::alloc), created when `new`, sealed with `SealSet::POOLED`
//!    and written through the publisher's own mapping ([`Payload::Pooled`](data::Payload::Pooled)).
//!    Send the named segment's fd with the record (`SCM_RIGHTS`), looked up when the record
//!    goes out: a segment gone meanwhile drops its record (`Memory::payload`, `flush`). Retire
//!    pool segments idle for a while with [`DataCmd::Retire`](data::DataCmd::Retire) (`main`).
//! 6. **Segments in: the driver checks the fd, the member checks the ranges.** For every fd
//!    that comes with a record, check that it is a memfd sealed against shrinking *before*
//!    anything maps it, then read its size (`fstat`, after the seal: a lower bound forever)
//!    (`ipc_os::memfd::verify`). Report it as a [`ReceivedSegment`](data::ReceivedSegment)
//!    with that size and its seals, or the record as [`MemberInput::Rejected`] if the check
//!    fails. The member checks every offset and length against that size, and each mode's
//!    seals, before it delivers; the driver maps only what the member delivered, within the
//!    size it reported (`read`, `Memory::receive`).
//! 7. **Ownership: Fresh against Release.** A [`Delivered::Fresh`](data::Delivered::Fresh)
//!    segment is the driver's from its delivery on: map it, hand the bytes over, close it; the
//!    member never mentions it again. A [`Delivered::Pooled`](data::Delivered::Pooled) range
//!    stays the publisher's: give it back with [`DataCmd::Release`](data::DataCmd::Release)
//!    (its `slot`, on the link it came on) once the application is done with it, and unmap the
//!    segment only at [`MemberOutput::Release`], which also frees the driver's own pool
//!    segments and fresh memfds once every subscriber has them (`deliver`, `Memory::release`).
//! 8. **Queues and policies.** The member applies each subscriber's policy
//!    (`block`, `oldest`, `newest`) on the publisher's side. A driver that queues messages for
//!    its application applies it again there, and for `Block` stops reading the link while the
//!    queue is full (the socket then fills, and the publisher's member sees the link blocked).
//!    The example prints each message at once, so its queue never fills.
//!
//! `ipc-os`'s `socket` and `memfd` modules (used by both drivers and the example) do the system
//! calls; `ipc-driver-calloop`'s `data` module is another compact reference.
//!
//! ## 7. Testing a driver
//!
//! Make your program speak the peer protocol (below) and point the conformance suite at it:
//! `IPC_CONFORMANCE_DRIVER=/abs/path/to/it cargo test -p ipc-tests --test conformance`. The
//! scenarios kill and freeze processes, write garbage to the hub and data sockets, send
//! payloads of every mode and size, and mix your driver with the std and calloop drivers in
//! one group, each of the three as the hub; a driver that passes them interoperates with the
//! others. No file of the workspace needs editing; CI runs the suite this way against the
//! example built as a crate of its own.
//!
//! ## 8. Knowing a peer is dead: pidfds
//!
//! A new hub waits [`NodeOptions::grace`] for the nodes it inherited to reconnect, unless it
//! knows they are dead. On Linux the driver can know: report
//! [`MemberInput::PeerExited`] when the process at the other end of a link exits, and a hub
//! killed with `kill -9` is declared gone by its successor at once instead of after the grace.
//! The shared documents' gathering on the new hub ends by the same rule: as soon as every
//! node is back with its documents' states or known dead.
//! Its docs are the contract; the checklist, for every hub link (data links need none):
//!
//! 1. **Open a pidfd per hub link**, accepted on the hub listener or connected to the hub,
//!    right after the accept or connect. `ipc_os::pidfd::PidFd::open_peer` does all of this
//!    step and the next; use it, or do what it does:
//!    - `SO_PEERCRED`: pid 0 means the peer is in a pid namespace this process cannot see (no
//!      pidfd, see 4).
//!    - **Linux 6.5+:** `getsockopt(SO_PEERPIDFD)`. The kernel hands out a pidfd of the
//!      process that made the socket's other end: no pid number is looked up, so pid reuse
//!      cannot intervene.
//!    - **Older kernels:** `pidfd_open(pid, 0)`. `ESRCH` means no process has that pid any
//!      more: the peer has exited.
//!
//!    (Example: `connect` and `accept` call `PidFd::open_peer`; `watch` keeps what it says.)
//! 2. **Tie it to the peer** (the fallback only). A pid number may have been reused between
//!    the peer's exit and `pidfd_open`. Re-reading `SO_PEERCRED` proves nothing: the kernel
//!    fixes it at `connect` and keeps returning that pid after the peer has exited. Instead:
//!    - if the new pidfd is readable at once, the process with that pid has exited, and so
//!      has the peer (it was the peer, or a stranger that could only get the pid after the
//!      peer's exit): report [`MemberInput::PeerExited`] at once, after `Connected` or
//!      `Accepted`;
//!    - else the peer's end of the socket must still be open *after* the open (poll the
//!      socket with a zero timeout: no `POLLHUP`/`POLLRDHUP`): the peer held it after the
//!      pidfd was opened, so the pid was still its own. If it is closed, the pidfd cannot be
//!      tied to the peer: close it and never report for that link.
//!
//!    With `SO_PEERPIDFD` too, a pidfd already readable means the peer has already exited.
//!    The driver skips a pidfd of its own process (a hub's own spoke): its exit ends the
//!    watcher too.
//! 3. **Watch it** in the loop with the link's socket (readable when the process exits; it
//!    stays readable). When it is readable, report [`MemberInput::PeerExited`] once for that
//!    link, even if the link was already reported down (the kernel hangs the socket up first),
//!    then close the pidfd. Close the pidfd too a short while (the example and both drivers:
//!    1 s) after the link closed without an exit, so that no fd leaks (the member forgets old
//!    closed links; a later report is ignored anyway). (Example: `wait` polls the pidfds,
//!    `exited` reports, `end_watches` closes.)
//! 4. **Fallback: just never report.** No credentials, pid 0 (the peer lives in a pid
//!    namespace this process cannot see), `pidfd_open` failing (`ENOSYS` before Linux 5.3,
//!    `EMFILE`), a peer that cannot be tied to its pid (step 2), or pidfds switched off
//!    (`IPC_PUBSUB_NO_PIDFD=1`, which `PidFd::open_peer` honours): the link gets no report,
//!    and the grace covers its peer. A stopped process (`SIGSTOP`) is not dead and its pidfd
//!    stays quiet; keepalive finds it, after the hub's limit ([`NodeOptions::keepalive`],
//!    heartbeats every [`NodeOptions::heartbeat`]; see [`Keepalive`](crate::Keepalive) for
//!    groups of mixed figures). A driver checks the options first ([`NodeOptions::check`]).
//! 5. **Never reuse a link id** for another link in a member's lifetime (number accepted links
//!    from a counter), so that a late report cannot hit a newer link.
//!
#![doc = include_str!("guide/peer_protocol.md")]
//!
//! ## The example, whole
#![doc = concat!("```rust,ignore\n", include_str!("../examples/poll_driver.rs"), "```")]

#[allow(unused_imports)] // for the intra-doc links above
use crate::{
    AccessPolicy, Credentials, Listener, Member, MemberCmd, MemberEvt, MemberInput, MemberOutput,
    NodeOptions, data, names,
};
