//! The raw baselines of `bench payload`: what the hardware, the kernel and our OS layer can do
//! without the pub/sub layer, re-measured in every run so that the pub/sub figures can be
//! stated as ratios (absolute numbers on the dev VM move from run to run).
//!
//! Each follows a method that `BENCH.md` describes under *The raw baselines and the goals*
//! (section numbers below), with the message counts scaled down so that a whole `bench payload` run takes about a minute. Every
//! one runs in fresh processes pinned as [`Placement`](super::harness::Placement) says, per
//! repetition.
//!
//! | series | what | BENCH.md |
//! |---|---|---|
//! | [`SEQPACKET_PINGPONG`] | 64 B each way over a blocking `SOCK_SEQPACKET` socketpair; time per round trip | §1 |
//! | [`SHM_SPIN_PINGPONG`] | a sequence number each way through two words of a shared memfd, both sides spinning; time per round trip (the floor of a busy-wait round trip) | – |
//! | [`SHM_RING_SPIN`] | one-way through one data-link ring (`ipc_proto::ring`, the links' geometry), both sides spinning; no protocol around it (the ceiling of a ring link's message rate) | – |
//! | [`SHM_RING_PINGPONG`] | 64 B each way through two data-link rings (one per direction), both sides spinning; time per round trip (the floor of a spinning round trip over our rings, with nothing around them) | – |
//! | [`EVENTFD_PINGPONG`] | a wakeup each way over two eventfds, blocking `read`; time per round trip (no payload: the floor of a blocking round trip) | – |
//! | [`UDS_STREAM_DEFAULT`], [`UDS_STREAM_4M`] | one-way `SOCK_STREAM` copy, default buffers / 4 MiB `SO_SNDBUF`+`SO_RCVBUF` | §4 |
//! | [`MEMCPY`] | single-thread `memcpy` between two pre-touched buffers | §7a |
//! | [`FRESH_MEMFD`], [`FRESH_MEMFD_4`] | a new sealed memfd per message, fd passed with `SCM_RIGHTS`, 1 or 4 receivers | §5 |
//! | [`POOLED_RAW`], [`POOLED_RAW_4`] | one memfd of 8 reused slots, a notice per message, slot returned, 1 or 4 receivers | §6 |
//! | [`PACED_RAW_30HZ`], [`PACED_RAW_1KHZ`] | 64 B and 1 MiB at 30 and 1000 messages per second over `SOCK_STREAM`; one-way latency per message | §8 |
//!
//! [`UDS_STREAM`] is derived: at each size, the better of the two stream copies.
//!
//! Throughput senders time from the moment the warm-up messages are all acknowledged to the
//! acknowledgement of the last message; rates are payload bytes (messages × size) per
//! second, also for fan-out (delivered bytes are that times the receivers).

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use super::harness::{Case, ChildCtx, ChildReport, Harness, RoleFn, Team, Wiring};
use super::measure::{Payload, RepValue, STAMPED_MIN, checksum, monotonic_ns, touch_pages};
use super::series::{
    Counts, FRESH_4_COUNTS, FRESH_COUNTS, KIB4, KIB64, MIB1, MIB16, OneWayTimes, PACED_1KHZ_COUNTS,
    PACED_30HZ_COUNTS, Series, Shape, expect_counts, expect_delivery, hz, paced_latency,
    read_exact_record, round_trips, send_paced, throughput, time_round_trips, to_usize,
    write_record,
};
use crate::{CliError, Result};
use ipc_os::memfd::{self, SealSet, Segment};
use ipc_os::shared::{SharedRegion, SharedWord};
use ipc_os::socket::{self, Recv, Sent};

mod ring;

use ring::{ring_ping, ring_pong, ring_recv, ring_send, shm_ring_pingpong, shm_ring_spin};

/// Round trip, 64 B each way, over a blocking `SOCK_SEQPACKET` socketpair between two
/// processes (BENCH.md §1).
///
/// The initiator (sender core) `write`s 64 B and blocks in `read` until the echo (receiver
/// core) has `read` them and `write`n them back; each round trip is one sample, timed with
/// [`Instant`]. Cross-core, most of it is the VM waking a halted vCPU (~25 µs per wakeup).
pub(super) const SEQPACKET_PINGPONG: &str = "seqpacket_pingpong";

/// Round trip of a bare wakeup between two processes (issue 13: the blocking wakeup floor).
///
/// The initiator (sender core) makes two eventfds and hands them to the echo (receiver core)
/// with `SCM_RIGHTS`; then, per round trip, it `write`s 1 to the first and blocks in `read`
/// on the second, while the echo blocks in `read` on the first and `write`s the second. No
/// payload moves: a blocking pub/sub round trip, which needs these two wakeups, cannot beat
/// it.
pub(super) const EVENTFD_PINGPONG: &str = "eventfd_pingpong";

/// Round trip through shared memory, both processes spinning (issue 13: the busy-wait floor).
///
/// The initiator (sender core) makes a sealed shared region ([`SharedRegion`]) of two cache
/// lines and hands it to the echo (receiver core) with `SCM_RIGHTS`; then, per round trip, it
/// stores the round trip's number in the first line's word and spins until the echo has
/// stored the same number in the second line's word. No system call and no sleep on either
/// side: what cache-line transfers between the two cores cost, and what a spinning
/// subscription can at best approach. Burns both cores while it runs.
pub(super) const SHM_SPIN_PINGPONG: &str = "shm_spin_pingpong";

/// The region of [`SHM_SPIN_PINGPONG`]: two 128 B lines, one word used in each.
const SPIN_REGION: usize = 256;
/// The initiator's word, in the first line.
const SPIN_PING: usize = 0;
/// The echo's word, in the second line.
const SPIN_PONG: usize = 16;

/// One-way `SOCK_STREAM` throughput with default socket buffers (BENCH.md §4).
///
/// The sender `write`s whole messages from a pre-filled buffer; the receiver `read_exact`s
/// each into a pre-touched buffer (it does not checksum: the kernel copy already moved every
/// byte). A 1-byte acknowledgement ends the warm-up and the timed section.
pub(super) const UDS_STREAM_DEFAULT: &str = "uds_stream_copy.default";

/// [`UDS_STREAM_DEFAULT`] with `SO_SNDBUF` on the sender and `SO_RCVBUF` on the receiver
/// set to 4 MiB (the kernel doubles the request and caps it at `net.core.wmem_max`).
pub(super) const UDS_STREAM_4M: &str = "uds_stream_copy.sndbuf_4m";

/// The better of [`UDS_STREAM_DEFAULT`] and [`UDS_STREAM_4M`] at each size (higher median):
/// what ratios against "the UDS copy" use.
pub(super) const UDS_STREAM: &str = "uds_stream_copy";

/// Single-thread `memcpy` bandwidth (BENCH.md §7a, at the message sizes): one process on
/// the sender core copies a pre-filled buffer into a pre-touched one, `msgs` times after a
/// warm-up; bytes copied per second.
pub(super) const MEMCPY: &str = "memcpy";

/// A fresh memfd per message (BENCH.md §5, "+seals"), with our OS layer.
///
/// Sender, per message, once fewer than 8 messages are unacknowledged by every receiver:
/// [`Segment::create`] (`memfd_create` + `ftruncate`), `mmap` read-write, copy of the payload
/// (every page faulted in and zeroed first), `munmap`, seal `SHRINK|GROW|WRITE|SEAL`,
/// `sendmsg` of a 24 B notice with the fd (`SCM_RIGHTS`) to each receiver, `close`.
///
/// Receiver, per message: `recvmsg`, [`memfd::verify`] (`fstatfs`, `F_GET_SEALS`, `fstat`:
/// two calls more than the bare `fstat` of BENCH.md §5, as the pub/sub path must make them too),
/// `mmap` read-only, [`checksum`] of every byte, `munmap`, `close`, a 1 B ack.
///
/// Our `ipc_os::socket` is non-blocking, so an empty socket costs one `recvmsg` returning
/// `EAGAIN` and a `poll` before the `recvmsg` that gets the record; BENCH.md §5 blocked in
/// `recvmsg` (about a microsecond less per wakeup).
pub(super) const FRESH_MEMFD: &str = "fresh_memfd";

/// [`FRESH_MEMFD`] to 4 receivers, all on the receiver core (BENCH.md §5 "4 recv").
pub(super) const FRESH_MEMFD_4: &str = "fresh_memfd.4recv";

/// A reused segment pool (BENCH.md §6): the raw upper bound of a pooled data path.
///
/// Setup: one memfd of 8 slots (message size rounded up to 4 KiB), mapped read-write once by
/// the sender, sealed `SHRINK|GROW|FUTURE_WRITE|SEAL`, every slot written; its fd goes to
/// each receiver, which maps each slot read-only once and reads it all (the effect of
/// the `MAP_POPULATE` of BENCH.md §6), then says it is ready.
///
/// Per message: the sender waits for the slot to come back from every receiver (a window of
/// 8, as [`FRESH_MEMFD`]), copies the payload into it, and sends a 24 B notice (seq, length,
/// slot) to each receiver; each receiver checksums the slot in place and returns the slot
/// index (8 B).
pub(super) const POOLED_RAW: &str = "pooled_raw";

/// [`POOLED_RAW`] to 4 receivers, all on the receiver core (BENCH.md §6 "4 recv").
pub(super) const POOLED_RAW_4: &str = "pooled_raw.4recv";

/// One-way latency at 30 messages per second over a blocking `SOCK_STREAM` socketpair with
/// 4 MiB `SO_SNDBUF`/`SO_RCVBUF` (a whole 1 MiB message fits): the raw socket an application
/// would otherwise use for a paced stream of frames or commands.
///
/// Per message, on time (see [`Pacer`](super::series::Pacer)): the sender takes the
/// `CLOCK_MONOTONIC` time, writes the payload with that time in it into a pre-touched buffer,
/// and `write`s it whole; the receiver, blocked in `read`, reads it whole into a pre-touched
/// buffer, takes the time, and [`checksum`]s it. The sample is the difference of the two
/// times; the receiver reports the summary (median, p99) of the timed messages.
pub(super) const PACED_RAW_30HZ: &str = "paced_raw.30hz";

/// One-way messages through a bare data-link ring, both processes spinning (issue 13: what
/// a ring link could carry with nothing around it).
///
/// The receiver (receiver core) makes a shared region of the data links' ring geometry
/// ([`link_config`](ipc_proto::ring::link::link_config): [`LINK_CAPACITY`] slots of up to [`LINK_INLINE_MAX`] inline bytes),
/// initialises the ring and hands the region to the sender (sender core) with `SCM_RIGHTS`,
/// as a subscriber offers its ring on a data link. Per message it writes the payload into a buffer and pushes it inline,
/// spinning while the ring is full; the receiver spins while it is empty, pops each message
/// into its own buffer and checksums it, as a subscriber does. No wakeups, no records, no
/// sequencing, routing or policy: the same ring code our links run, and nothing else. The
/// timed section is measured as the stream copies' (from the acknowledged warm-up to the
/// acknowledged last message). Burns both cores while it runs.
///
/// [`LINK_CAPACITY`]: ipc_proto::ring::link::LINK_CAPACITY
/// [`LINK_INLINE_MAX`]: ipc_proto::ring::link::LINK_INLINE_MAX
pub(super) const SHM_RING_SPIN: &str = "shm_ring_spin";

/// Round trip through two bare data-link rings, one each way, both processes spinning
/// (issue 13: the floor of a spinning round trip over our rings).
///
/// Each process (the initiator on the sender core, the echo on the receiver core) makes a
/// ring of the data links' geometry ([`link_config`](ipc_proto::ring::link::link_config)) for what it receives and hands it to the
/// other with `SCM_RIGHTS`, as a subscriber offers its ring on a data link. Per round trip the
/// initiator pushes 64 B inline (numbered) into the echo's ring and spins until the answer
/// pops out of its own; the echo spins until the message pops out, checks its number and
/// length, and pushes the bytes back. The same ring code our links run (its checks, its
/// fences, the copies in and out), and nothing else: no wakeups, records, sequencing, routing
/// or policy. [`SHM_SPIN_PINGPONG`] moves one word each way; this moves a slot each way and
/// frees it: what the ring itself costs a spinning round trip. Burns both cores while it runs.
pub(super) const SHM_RING_PINGPONG: &str = "shm_ring_pingpong";

/// [`PACED_RAW_30HZ`] at 1000 messages per second.
pub(super) const PACED_RAW_1KHZ: &str = "paced_raw.1khz";

/// Messages per repetition: a full run (about 0.2-0.4 s each on the dev VM), and `--quick`.
const PINGPONG_COUNTS: &[Counts] = &[Counts::new(64, 30_000, 2_000)];
/// A round trip is well under a microsecond: more of them, still a fraction of a second.
const SPIN_COUNTS: &[Counts] = &[Counts::new(64, 300_000, 20_000)];
/// A link's ring carries at most 4 KiB inline (`LINK_INLINE_MAX`): that row only.
const RING_COUNTS: &[Counts] = &[Counts::new(KIB4, 1_000_000, 50_000)];
const UDS_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 100_000, 5_000),
    Counts::new(KIB64, 16_384, 1_000),
    Counts::new(MIB1, 1_024, 64),
    Counts::new(MIB16, 64, 4),
];
/// 4 GiB copied per full repetition, 256 MiB per quick one.
const MEMCPY_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 1 << 20, 1 << 16),
    Counts::new(KIB64, 1 << 16, 1 << 12),
    Counts::new(MIB1, 1 << 12, 1 << 8),
    Counts::new(MIB16, 1 << 8, 1 << 4),
];
const POOLED_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 100_000, 2_000),
    Counts::new(KIB64, 65_536, 500),
    Counts::new(MIB1, 4_096, 32),
    Counts::new(MIB16, 128, 4),
];
const POOLED_4_COUNTS: &[Counts] = &[
    Counts::new(KIB4, 20_000, 1_000),
    Counts::new(KIB64, 16_384, 250),
    Counts::new(MIB1, 2_048, 32),
    Counts::new(MIB16, 64, 4),
];

/// Every baseline, in table order.
pub(super) const SERIES: &[Series] = &[
    Series {
        id: SEQPACKET_PINGPONG,
        label: "raw SEQPACKET ping-pong, blocking read/write",
        shape: Shape::RoundTrip,
        counts: PINGPONG_COUNTS,
        rep: pingpong,
    },
    Series {
        id: SHM_SPIN_PINGPONG,
        label: "raw shared-memory ping-pong, both sides spinning",
        shape: Shape::RoundTrip,
        counts: SPIN_COUNTS,
        rep: shm_spin_pingpong,
    },
    Series {
        id: SHM_RING_SPIN,
        label: "raw data-link ring, both sides spinning, no protocol",
        shape: Shape::OneWay { receivers: 1 },
        counts: RING_COUNTS,
        rep: shm_ring_spin,
    },
    Series {
        id: SHM_RING_PINGPONG,
        label: "raw data-link rings, one each way, both sides spinning, no protocol",
        shape: Shape::RoundTrip,
        counts: SPIN_COUNTS,
        rep: shm_ring_pingpong,
    },
    Series {
        id: EVENTFD_PINGPONG,
        label: "raw eventfd ping-pong, blocking read/write, no payload",
        shape: Shape::RoundTrip,
        counts: PINGPONG_COUNTS,
        rep: eventfd_pingpong,
    },
    Series {
        id: UDS_STREAM_DEFAULT,
        label: "raw UDS SOCK_STREAM copy, default buffers",
        shape: Shape::OneWay { receivers: 1 },
        counts: UDS_COUNTS,
        rep: uds_default,
    },
    Series {
        id: UDS_STREAM_4M,
        label: "raw UDS SOCK_STREAM copy, 4 MiB SO_SNDBUF/RCVBUF",
        shape: Shape::OneWay { receivers: 1 },
        counts: UDS_COUNTS,
        rep: uds_4m,
    },
    Series {
        id: MEMCPY,
        label: "single-thread memcpy, pre-touched buffers",
        shape: Shape::OneWay { receivers: 1 },
        counts: MEMCPY_COUNTS,
        rep: memcpy,
    },
    Series {
        id: FRESH_MEMFD,
        label: "fresh sealed memfd per message, SCM_RIGHTS",
        shape: Shape::OneWay { receivers: 1 },
        counts: FRESH_COUNTS,
        rep: fresh,
    },
    Series {
        id: POOLED_RAW,
        label: "raw pool of 8 reused slots, notice + slot return",
        shape: Shape::OneWay { receivers: 1 },
        counts: POOLED_COUNTS,
        rep: pooled,
    },
    Series {
        id: FRESH_MEMFD_4,
        label: "fresh sealed memfd per message, 4 receivers",
        shape: Shape::OneWay { receivers: 4 },
        counts: FRESH_4_COUNTS,
        rep: fresh,
    },
    Series {
        id: POOLED_RAW_4,
        label: "raw pool of 8 reused slots, 4 receivers",
        shape: Shape::OneWay { receivers: 4 },
        counts: POOLED_4_COUNTS,
        rep: pooled,
    },
    Series {
        id: PACED_RAW_30HZ,
        label: "raw UDS SOCK_STREAM, 4 MiB buffers, 30 msgs/s, one-way latency",
        shape: Shape::Paced { hz: 30 },
        counts: PACED_30HZ_COUNTS,
        rep: paced,
    },
    Series {
        id: PACED_RAW_1KHZ,
        label: "raw UDS SOCK_STREAM, 4 MiB buffers, 1000 msgs/s, one-way latency",
        shape: Shape::Paced { hz: 1000 },
        counts: PACED_1KHZ_COUNTS,
        rep: paced,
    },
];

/// The child roles of the baselines.
pub(super) const ROLES: &[(&str, RoleFn)] = &[
    ("seqpacket-ping", seqpacket_ping),
    ("seqpacket-pong", seqpacket_pong),
    ("spin-ping", spin_ping),
    ("spin-pong", spin_pong),
    ("ring-send", ring_send),
    ("ring-recv", ring_recv),
    ("ring-ping", ring_ping),
    ("ring-pong", ring_pong),
    ("eventfd-ping", eventfd_ping),
    ("eventfd-pong", eventfd_pong),
    ("stream-send", stream_send),
    ("stream-recv", stream_recv),
    ("memcpy", memcpy_loop),
    ("fresh-send", fresh_send),
    ("fresh-recv", fresh_recv),
    ("pool-send", pool_send),
    ("pool-recv", pool_recv),
    ("paced-send", paced_send),
    ("paced-recv", paced_recv),
];

// ---------------------------------------------------------------------------------------
// Repetitions (parent side)

fn pingpong(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trips(
        h,
        &Team {
            sender: "seqpacket-ping",
            receiver: "seqpacket-pong",
            wiring: Wiring::SeqPacket,
            group: false,
            case: *case,
            opts: &[],
        },
    )
}

fn shm_spin_pingpong(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trips(
        h,
        &Team {
            sender: "spin-ping",
            receiver: "spin-pong",
            wiring: Wiring::SeqPacketNonBlocking,
            group: false,
            case: *case,
            opts: &[],
        },
    )
}

/// A one-way baseline whose receivers checksum what they got: the rate, once every
/// receiver's sum is the sender's.
fn checked_throughput(
    h: &Harness,
    case: &Case,
    sender: &'static str,
    receiver: &'static str,
) -> Result<RepValue> {
    let r = h.run(&Team {
        sender,
        receiver,
        wiring: Wiring::SeqPacketNonBlocking,
        group: false,
        case: *case,
        opts: &[],
    })?;
    expect_delivery(&r, case)?;
    throughput(&r, case)
}

fn eventfd_pingpong(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trips(
        h,
        &Team {
            sender: "eventfd-ping",
            receiver: "eventfd-pong",
            wiring: Wiring::SeqPacketNonBlocking,
            group: false,
            case: *case,
            opts: &[],
        },
    )
}

fn uds_default(h: &Harness, case: &Case) -> Result<RepValue> {
    uds(h, case, &[])
}

fn uds_4m(h: &Harness, case: &Case) -> Result<RepValue> {
    uds(h, case, &[("sockbuf", "4194304")])
}

fn uds(h: &Harness, case: &Case, opts: &[(&str, &str)]) -> Result<RepValue> {
    let r = h.run(&Team {
        sender: "stream-send",
        receiver: "stream-recv",
        wiring: Wiring::Stream,
        group: false,
        case: *case,
        opts,
    })?;
    expect_counts(&r, case)?;
    throughput(&r, case)
}

fn memcpy(h: &Harness, case: &Case) -> Result<RepValue> {
    let r = h.run(&Team {
        sender: "memcpy",
        receiver: "",
        wiring: Wiring::Nothing,
        group: false,
        case: Case {
            receivers: 0,
            ..*case
        },
        opts: &[],
    })?;
    throughput(&r, case)
}

fn fresh(h: &Harness, case: &Case) -> Result<RepValue> {
    checked_throughput(h, case, "fresh-send", "fresh-recv")
}

fn pooled(h: &Harness, case: &Case) -> Result<RepValue> {
    checked_throughput(h, case, "pool-send", "pool-recv")
}

fn paced(h: &Harness, case: &Case) -> Result<RepValue> {
    let r = h.run(&Team {
        sender: "paced-send",
        receiver: "paced-recv",
        wiring: Wiring::Stream,
        group: false,
        case: *case,
        opts: &[],
    })?;
    paced_latency(&r, case)
}

// ---------------------------------------------------------------------------------------
// Blocking helpers over the non-blocking `ipc_os::socket` records

/// Blocks in `poll` until `fd` has one of `events` (or an error or hangup).
fn wait_for(fd: BorrowedFd<'_>, events: PollFlags) -> io::Result<()> {
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// [`socket::send_record`], waiting while the send buffer is full.
fn send(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    loop {
        match socket::send_record(fd, bytes, fds)? {
            Sent::Complete => return Ok(()),
            Sent::WouldBlock => wait_for(fd, PollFlags::POLLOUT)?,
        }
    }
}

/// [`socket::recv_record`], waiting for a record; `None` at end of stream.
fn recv(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
    max_fds: usize,
) -> Result<Option<usize>> {
    loop {
        match socket::recv_record(fd, buf, fds, max_fds)? {
            Recv::Data {
                len,
                truncated: false,
                fds_truncated: false,
                ..
            } => return Ok(Some(len)),
            Recv::Data { record_len, .. } => {
                return Err(CliError::Failed(format!(
                    "a {record_len} B record (or its fds) did not fit"
                )));
            }
            Recv::Closed => return Ok(None),
            Recv::WouldBlock => wait_for(fd, PollFlags::POLLIN)?,
        }
    }
}

/// The 24 B notice of a message: three little-endian `u64`s.
fn notice(a: u64, b: u64, c: u64) -> [u8; 24] {
    let mut n = [0u8; 24];
    n[..8].copy_from_slice(&a.to_le_bytes());
    n[8..16].copy_from_slice(&b.to_le_bytes());
    n[16..].copy_from_slice(&c.to_le_bytes());
    n
}

fn parse_notice(bytes: &[u8]) -> Result<[u64; 3]> {
    if bytes.len() != 24 {
        return Err(CliError::Failed(format!("a {} B notice", bytes.len())));
    }
    let word = |i: usize| u64::from_le_bytes(bytes[i * 8..][..8].try_into().expect("8 bytes"));
    Ok([word(0), word(1), word(2)])
}

/// The sender's side of the acknowledgements: at most `limit` unacknowledged messages per
/// receiver.
struct Window {
    socks: Vec<OwnedFd>,
    outstanding: Vec<u32>,
    acked: Vec<u64>,
    limit: u32,
    /// Pool slots: each ack must carry the slot of the oldest unacknowledged message.
    slots: Option<u64>,
}

impl Window {
    fn new(socks: Vec<OwnedFd>, limit: u32, slots: Option<u64>) -> Result<Self> {
        if socks.is_empty() || limit == 0 {
            return Err(CliError::Failed(
                "a sender needs receivers and a window".into(),
            ));
        }
        let n = socks.len();
        Ok(Self {
            socks,
            outstanding: vec![0; n],
            acked: vec![0; n],
            limit,
            slots,
        })
    }

    /// Waits until every receiver has room for one more message.
    fn wait_room(&mut self) -> Result<()> {
        for r in 0..self.socks.len() {
            while self.outstanding[r] >= self.limit {
                self.take_ack(r)?;
            }
        }
        Ok(())
    }

    /// Sends `bytes` (and `fd`) to every receiver and counts the message as unacknowledged.
    fn send_all(&mut self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let fds: &[BorrowedFd<'_>] = match &fd {
            Some(fd) => std::slice::from_ref(fd),
            None => &[],
        };
        for (sock, out) in self.socks.iter().zip(&mut self.outstanding) {
            send(sock.as_fd(), bytes, fds)?;
            *out += 1;
        }
        Ok(())
    }

    /// Waits until every message is acknowledged.
    fn drain(&mut self) -> Result<()> {
        for r in 0..self.socks.len() {
            while self.outstanding[r] > 0 {
                self.take_ack(r)?;
            }
        }
        Ok(())
    }

    fn take_ack(&mut self, r: usize) -> Result<()> {
        let mut buf = [0u8; 8];
        let mut none = Vec::new();
        let len = recv(self.socks[r].as_fd(), &mut buf, &mut none, 0)?
            .ok_or_else(|| CliError::Failed(format!("receiver {r} hung up")))?;
        if let Some(slots) = self.slots {
            let want = self.acked[r] % slots;
            if len != 8 || u64::from_le_bytes(buf) != want {
                return Err(CliError::Failed(format!(
                    "receiver {r} returned {:?}, expected slot {want}",
                    &buf[..len]
                )));
            }
        }
        self.acked[r] += 1;
        self.outstanding[r] -= 1;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Child roles

/// [`SEQPACKET_PINGPONG`], initiator.
fn seqpacket_ping(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let msg = Payload::new(c.size);
    let mut back = vec![1u8; c.size];
    time_round_trips(&c, |_| {
        write_record(&sock, msg.bytes())?;
        if read_exact_record(&sock, &mut back)? {
            Ok(())
        } else {
            Err(CliError::Failed("the echo hung up".into()))
        }
    })
}

/// [`SEQPACKET_PINGPONG`], echo: until end of stream.
fn seqpacket_pong(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let mut buf = vec![1u8; ctx.case.size];
    let mut msgs = 0;
    while read_exact_record(&sock, &mut buf)? {
        write_record(&sock, &buf)?;
        msgs += 1;
    }
    Ok(ChildReport {
        msgs,
        ..ChildReport::default()
    })
}

/// [`SHM_SPIN_PINGPONG`], initiator: makes the region, hands it over, times round trips.
fn spin_ping(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let region = SharedRegion::create("ipc-bench-spin", SPIN_REGION)?;
    send(sock.as_fd(), b"region", &[region.as_fd()])?;
    let words = region.words();
    let (ping, pong) = (spin_word(words, SPIN_PING)?, spin_word(words, SPIN_PONG)?);
    time_round_trips(&c, |seq| {
        // Numbered from 1: the region starts zeroed.
        let n = seq + 1;
        ping.store(n, Ordering::Release);
        spin_until(pong, n);
        Ok(())
    })
}

/// [`SHM_SPIN_PINGPONG`], echo: answers every number until the last round trip's.
fn spin_pong(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let region = SharedRegion::open(recv_fd(sock.as_fd(), "region")?, SPIN_REGION as u64)?;
    let words = region.words();
    let (ping, pong) = (spin_word(words, SPIN_PING)?, spin_word(words, SPIN_PONG)?);
    let c = ctx.case;
    for n in 1..=c.warmup + c.msgs {
        spin_until(ping, n);
        pong.store(n, Ordering::Release);
    }
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        ..ChildReport::default()
    })
}

/// Spins until `word` holds `n`, yielding the CPU every few thousand spins: cross-core a
/// round trip ends long before the first yield, while on one core (`--placement same-core`)
/// the yield lets the other side run instead of burning whole time slices.
fn spin_until(word: &AtomicU64, n: u64) {
    let mut spins = 0u32;
    while word.load(Ordering::Acquire) != n {
        spin_wait(&mut spins);
    }
}

fn spin_word(words: &[SharedWord], at: usize) -> Result<&AtomicU64> {
    words
        .get(at)
        .map(SharedWord::atomic)
        .ok_or_else(|| CliError::Failed(format!("the region has no word {at}")))
}

/// Waits for the one record on `sock` that brings an fd (the `what` the other side made).
fn recv_fd(sock: BorrowedFd<'_>, what: &str) -> Result<OwnedFd> {
    let mut fds = Vec::with_capacity(1);
    let mut buf = [0u8; 8];
    recv(sock, &mut buf, &mut fds, 1)?;
    fds.pop()
        .ok_or_else(|| CliError::Failed(format!("the {what} did not come")))
}

/// One spin of a side waiting on the other, yielding the CPU every few thousand (see
/// [`spin_until`]).
fn spin_wait(spins: &mut u32) {
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(4096) {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// [`EVENTFD_PINGPONG`], initiator: makes the eventfds, hands them over, times round trips.
fn eventfd_ping(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let new = || {
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC)
            .map(OwnedFd::from)
            .map_err(io::Error::from)
    };
    let (there, back) = (new()?, new()?);
    send(sock.as_fd(), b"eventfds", &[there.as_fd(), back.as_fd()])?;
    time_round_trips(&c, |_| {
        bump(there.as_fd())?;
        take(back.as_fd())
    })
}

/// [`EVENTFD_PINGPONG`], echo: as many round trips as the case has.
fn eventfd_pong(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let mut fds = Vec::with_capacity(2);
    let mut buf = [0u8; 8];
    recv(sock.as_fd(), &mut buf, &mut fds, 2)?;
    let [there, back] = <[OwnedFd; 2]>::try_from(fds)
        .map_err(|fds| CliError::Failed(format!("{} eventfds instead of 2", fds.len())))?;
    let c = ctx.case;
    for _ in 0..c.warmup + c.msgs {
        take(there.as_fd())?;
        bump(back.as_fd())?;
    }
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        ..ChildReport::default()
    })
}

/// Adds 1 to a (blocking) eventfd's counter: wakes its reader.
fn bump(fd: BorrowedFd<'_>) -> io::Result<()> {
    loop {
        match nix::unistd::write(fd, &1u64.to_ne_bytes()) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Blocks until a (blocking) eventfd's counter is non-zero, and resets it.
fn take(fd: BorrowedFd<'_>) -> Result<()> {
    let mut count = [0u8; 8];
    loop {
        match nix::unistd::read(fd, &mut count) {
            Ok(8) => return Ok(()),
            Ok(n) => return Err(CliError::Failed(format!("an eventfd read {n} bytes"))),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(io::Error::from(e).into()),
        }
    }
}

/// [`UDS_STREAM_DEFAULT`] / [`UDS_STREAM_4M`], sender.
fn stream_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let mut sock = UnixStream::from(ctx.take_fd()?);
    if let Some(bytes) = ctx.opt::<usize>("sockbuf")? {
        socket::set_send_buffer(&sock, bytes)?;
    }
    let c = ctx.case;
    let msg = Payload::new(c.size);
    let mut ack = [0u8; 1];
    for _ in 0..c.warmup {
        sock.write_all(msg.bytes())?;
    }
    sock.read_exact(&mut ack)?;
    let t = Instant::now();
    for _ in 0..c.msgs {
        sock.write_all(msg.bytes())?;
    }
    sock.read_exact(&mut ack)?;
    let secs = t.elapsed().as_secs_f64();
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        timed: c.msgs,
        secs: Some(secs),
        ..ChildReport::default()
    })
}

/// [`UDS_STREAM_DEFAULT`] / [`UDS_STREAM_4M`], receiver.
fn stream_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let mut sock = UnixStream::from(ctx.take_fd()?);
    if let Some(bytes) = ctx.opt::<usize>("sockbuf")? {
        socket::set_recv_buffer(&sock, bytes)?;
    }
    let c = ctx.case;
    let mut buf = vec![1u8; c.size];
    for _ in 0..c.warmup {
        sock.read_exact(&mut buf)?;
    }
    sock.write_all(&[1])?;
    for _ in 0..c.msgs {
        sock.read_exact(&mut buf)?;
    }
    sock.write_all(&[1])?;
    black_box(&buf);
    if sock.read(&mut buf)? != 0 {
        return Err(CliError::Failed("more bytes than expected".into()));
    }
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        ..ChildReport::default()
    })
}

/// The socket buffers of the paced baselines: room for a whole 1 MiB message.
const PACED_SOCKBUF: usize = 4 << 20;

/// [`PACED_RAW_30HZ`] / [`PACED_RAW_1KHZ`], sender.
fn paced_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let hz = hz(ctx)?;
    let mut sock = UnixStream::from(ctx.take_fd()?);
    socket::set_send_buffer(&sock, PACED_SOCKBUF)?;
    let c = ctx.case;
    let payload = Payload::new(c.size.max(STAMPED_MIN));
    let mut msg = vec![0u8; c.size.max(STAMPED_MIN)];
    send_paced(&c, hz, |seq, stamp| {
        payload.write_stamped(&mut msg, seq, stamp);
        sock.write_all(&msg)?;
        Ok(payload.sum_stamped(seq, stamp))
    })
}

/// [`PACED_RAW_30HZ`] / [`PACED_RAW_1KHZ`], receiver.
fn paced_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let mut sock = UnixStream::from(ctx.take_fd()?);
    socket::set_recv_buffer(&sock, PACED_SOCKBUF)?;
    let c = ctx.case;
    let mut buf = vec![1u8; c.size.max(STAMPED_MIN)];
    let mut times = OneWayTimes::new(&c)?;
    while times.count() < c.warmup + c.msgs {
        sock.read_exact(&mut buf)?;
        times.record(&buf, monotonic_ns())?;
    }
    if sock.read(&mut buf)? != 0 {
        return Err(CliError::Failed("more bytes than expected".into()));
    }
    Ok(times.report())
}

/// [`MEMCPY`]: one process.
fn memcpy_loop(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let c = ctx.case;
    let src = Payload::new(c.size);
    let mut dst = vec![1u8; c.size];
    let mut copy = || {
        dst.copy_from_slice(black_box(src.bytes()));
        black_box(&mut dst);
    };
    for _ in 0..c.warmup {
        copy();
    }
    let t = Instant::now();
    for _ in 0..c.msgs {
        copy();
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        timed: c.msgs,
        secs: Some(secs),
        ..ChildReport::default()
    })
}

/// The warm-up and timed loop of a windowed sender: `send(seq)` sends message `seq` to every
/// receiver once the window has room; the timer starts when the warm-up is all acknowledged
/// and stops when everything is. Returns the report with the payload checksums.
fn windowed(
    ctx: &ChildCtx,
    window: &mut Window,
    payload: &Payload,
    mut send: impl FnMut(&mut Window, u64) -> Result<()>,
) -> Result<ChildReport> {
    let c = ctx.case;
    let mut sum = 0u64;
    let mut started = None;
    for seq in 0..c.warmup + c.msgs {
        if seq == c.warmup {
            window.drain()?;
            started = Some(Instant::now());
        }
        window.wait_room()?;
        send(window, seq)?;
        sum = sum.wrapping_add(payload.sum(seq));
    }
    window.drain()?;
    Ok(sent_report(&c, started, sum))
}

/// A throughput sender's report: every message, the timed ones and their seconds since
/// `started` (now is their end), and the checksum of what it sent.
fn sent_report(c: &Case, started: Option<Instant>, sum: u64) -> ChildReport {
    ChildReport {
        msgs: c.warmup + c.msgs,
        timed: c.msgs,
        secs: started.map(|t| t.elapsed().as_secs_f64()),
        checksum: Some(sum),
        ..ChildReport::default()
    }
}

/// [`FRESH_MEMFD`], sender.
fn fresh_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let c = ctx.case;
    let mut window = Window::new(std::mem::take(&mut ctx.fds), c.window, None)?;
    let payload = Payload::new(c.size);
    windowed(ctx, &mut window, &payload, |window, seq| {
        let seg = Segment::create("ipc-bench-fresh", c.size)?;
        {
            let mut map = seg.map_rw()?;
            payload.write_to(&mut map, seq);
        }
        seg.seal(SealSet::FRESH)?;
        window.send_all(&notice(seq, c.size as u64, 0), Some(seg.as_fd()))
    })
}

/// [`FRESH_MEMFD`], receiver: until end of stream.
fn fresh_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let mut buf = [0u8; 24];
    let mut fds = Vec::with_capacity(1);
    let (mut msgs, mut sum) = (0u64, 0u64);
    while let Some(len) = recv(sock.as_fd(), &mut buf, &mut fds, 1)? {
        let [_seq, size, _] = parse_notice(&buf[..len])?;
        let fd = fds.pop().ok_or_else(|| {
            CliError::Failed(format!(
                "receiver {}: a notice without its memfd",
                ctx.index
            ))
        })?;
        let seg = memfd::verify(fd, SealSet::FRESH, 0, size).map_err(io::Error::from)?;
        let map = seg.map_ro(0, size)?;
        sum = sum.wrapping_add(checksum(&map));
        drop(map);
        drop(seg);
        send(sock.as_fd(), &[1], &[])?;
        msgs += 1;
    }
    Ok(ChildReport {
        msgs,
        checksum: Some(sum),
        ..ChildReport::default()
    })
}

/// [`POOLED_RAW`], sender.
fn pool_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let c = ctx.case;
    let slots = u64::from(c.window);
    let slot_len = c.size.next_multiple_of(4096);
    let seg = Segment::create("ipc-bench-pool", slot_len * c.window as usize)?;
    let mut map = seg.map_rw()?;
    seg.seal(SealSet::POOLED)?;
    let payload = Payload::new(c.size);
    for slot in map.chunks_mut(slot_len) {
        let (msg, rest) = slot.split_at_mut(c.size);
        payload.write_to(msg, 0);
        rest.fill(0);
    }
    let mut window = Window::new(std::mem::take(&mut ctx.fds), c.window, None)?;
    // Setup: the pool to every receiver, which maps it, reads it all and says it is ready.
    window.send_all(&notice(slots, slot_len as u64, 0), Some(seg.as_fd()))?;
    window.drain()?;
    window.acked.fill(0);
    window.slots = Some(slots);
    windowed(ctx, &mut window, &payload, |window, seq| {
        let slot = seq % slots;
        let at = to_usize(slot)? * slot_len;
        payload.write_to(&mut map[at..at + c.size], seq);
        window.send_all(&notice(seq, c.size as u64, slot), None)
    })
}

/// [`POOLED_RAW`], receiver: until end of stream.
fn pool_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let mut buf = [0u8; 24];
    let mut fds = Vec::with_capacity(1);
    let setup = recv(sock.as_fd(), &mut buf, &mut fds, 1)?
        .ok_or_else(|| CliError::Failed(format!("receiver {}: no pool", ctx.index)))?;
    let [slots, slot_len, _] = parse_notice(&buf[..setup])?;
    let fd = fds
        .pop()
        .ok_or_else(|| CliError::Failed("the pool notice came without its memfd".into()))?;
    let total = slots
        .checked_mul(slot_len)
        .ok_or_else(|| CliError::Failed("pool size overflows".into()))?;
    let seg = memfd::verify(fd, SealSet::POOLED, 0, total).map_err(io::Error::from)?;
    // One mapping per slot: a slot's bytes are only looked at while it is lent to us, so no
    // `&[u8]` covers bytes the sender may be rewriting (see `ipc_os::memfd` on pooled segments).
    let maps = (0..slots)
        .map(|s| seg.map_ro(s * slot_len, slot_len))
        .collect::<io::Result<Vec<_>>>()?;
    for m in &maps {
        touch_pages(m);
    }
    send(sock.as_fd(), &[1], &[])?;
    let (mut msgs, mut sum) = (0u64, 0u64);
    while let Some(len) = recv(sock.as_fd(), &mut buf, &mut fds, 0)? {
        let [_seq, size, slot] = parse_notice(&buf[..len])?;
        let map = maps
            .get(to_usize(slot)?)
            .filter(|_| size <= slot_len)
            .ok_or_else(|| CliError::Failed(format!("slot {slot} of {size} B")))?;
        sum = sum.wrapping_add(checksum(&map[..to_usize(size)?]));
        send(sock.as_fd(), &slot.to_le_bytes(), &[])?;
        msgs += 1;
    }
    Ok(ChildReport {
        msgs,
        checksum: Some(sum),
        ..ChildReport::default()
    })
}
