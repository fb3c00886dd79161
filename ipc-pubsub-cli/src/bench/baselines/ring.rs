//! The baselines of our data-link rings with nothing around them:
//! [`SHM_RING_SPIN`](super::SHM_RING_SPIN) (one way, the ceiling of a ring link's message rate) and
//! [`SHM_RING_PINGPONG`](super::SHM_RING_PINGPONG) (a round trip through two rings, the floor of a
//! spinning round trip over them). The same ring code our links run (`ipc_proto::ring`, the links'
//! geometry), between two processes that spin.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use ipc_os::shared::SharedRegion;
use ipc_proto::ring::link::link_config;
use ipc_proto::ring::{self, Body, Consumer, Producer, Push, RingConfig, RingError, RingPayload};

use super::{checked_throughput, recv, recv_fd, send, sent_report, spin_wait};
use crate::bench::harness::{Case, ChildCtx, ChildReport, Harness, Team, Wiring};
use crate::bench::measure::{Payload, RepValue, checksum};
use crate::bench::series::{round_trips, time_round_trips, to_usize};
use crate::{CliError, Result};

pub(super) fn shm_ring_pingpong(h: &Harness, case: &Case) -> Result<RepValue> {
    round_trips(
        h,
        &Team {
            sender: "ring-ping",
            receiver: "ring-pong",
            wiring: Wiring::SeqPacketNonBlocking,
            group: false,
            case: *case,
            opts: &[],
        },
    )
}

pub(super) fn shm_ring_spin(h: &Harness, case: &Case) -> Result<RepValue> {
    checked_throughput(h, case, "ring-send", "ring-recv")
}

/// [`SHM_RING_SPIN`](super::SHM_RING_SPIN), sender: maps the receiver's ring, then pushes every
/// message, spinning while the ring is full; waits for the receiver's word after the warm-up and
/// after the last message.
pub(super) fn ring_send(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let len = ring_region_len(&link_config())? as u64;
    let region = SharedRegion::open(recv_fd(sock.as_fd(), "ring")?, len)?;
    let mut producer = Producer::new(ring::attach(region.words()).map_err(ring_failed)?);
    let payload = Payload::new(c.size);
    let mut msg = vec![0u8; c.size];
    let (mut sum, mut started) = (0u64, None);
    let (mut ack, mut fds) = ([0u8; 1], Vec::new());
    for seq in 0..c.warmup + c.msgs {
        if seq == c.warmup {
            recv(sock.as_fd(), &mut ack, &mut fds, 0)?;
            started = Some(Instant::now());
        }
        payload.write_to(&mut msg, seq);
        let mut spins = 0u32;
        while producer
            .push(region.words(), 0, seq + 1, Body::Inline(&msg))
            .map_err(ring_failed)?
            == Push::Full
        {
            spin_wait(&mut spins);
        }
        sum = sum.wrapping_add(payload.sum(seq));
    }
    recv(sock.as_fd(), &mut ack, &mut fds, 0)?;
    Ok(sent_report(&c, started, sum))
}

/// [`SHM_RING_SPIN`](super::SHM_RING_SPIN), receiver: makes the ring and hands it over (as a
/// subscriber offers one on a data link), then pops and checksums every message, spinning while the
/// ring is empty; a word to the sender after the warm-up and after the last one.
pub(super) fn ring_recv(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let config = link_config();
    let region = SharedRegion::create("ipc-bench-ring", ring_region_len(&config)?)?;
    let layout = ring::init(region.words(), &config).map_err(ring_failed)?;
    let mut msg = vec![0u8; layout.inline_max()];
    let mut consumer = Consumer::new(layout);
    send(sock.as_fd(), b"ring", &[region.as_fd()])?;
    let (all, mut sum) = (c.warmup + c.msgs, 0u64);
    for n in 1..=all {
        let mut spins = 0u32;
        let popped = loop {
            match consumer
                .pop(region.words(), &mut msg)
                .map_err(ring_failed)?
            {
                Some(p) => break p,
                None => spin_wait(&mut spins),
            }
        };
        let len = match popped.payload {
            RingPayload::Inline { len } if len == c.size && popped.seq == n => len,
            other => {
                return Err(CliError::Failed(format!(
                    "message {n} came as {other:?}, seq {}",
                    popped.seq
                )));
            }
        };
        sum = sum.wrapping_add(checksum(&msg[..len]));
        if n == c.warmup || n == all {
            send(sock.as_fd(), &[1], &[])?;
        }
    }
    Ok(ChildReport {
        msgs: all,
        checksum: Some(sum),
        ..ChildReport::default()
    })
}

/// The two rings of one side of [`SHM_RING_PINGPONG`](super::SHM_RING_PINGPONG): the one it made
/// and pops from, and the other side's, which it pushes into.
struct RingPair {
    mine: SharedRegion,
    consumer: Consumer,
    theirs: SharedRegion,
    producer: Producer,
    /// What a pop copies out.
    buf: Vec<u8>,
}

impl RingPair {
    /// Makes this side's ring, hands it over on `sock` and maps the other side's.
    fn exchange(sock: BorrowedFd<'_>) -> Result<Self> {
        let config = link_config();
        let len = ring_region_len(&config)?;
        let mine = SharedRegion::create("ipc-bench-ring", len)?;
        let layout = ring::init(mine.words(), &config).map_err(ring_failed)?;
        let buf = vec![0u8; layout.inline_max()];
        send(sock, b"ring", &[mine.as_fd()])?;
        let theirs = SharedRegion::open(recv_fd(sock, "ring")?, len as u64)?;
        let producer = Producer::new(ring::attach(theirs.words()).map_err(ring_failed)?);
        Ok(Self {
            mine,
            consumer: Consumer::new(layout),
            theirs,
            producer,
            buf,
        })
    }

    /// Pushes `msg` numbered `seq` into the other side's ring, spinning while it is full.
    fn push(&mut self, seq: u64, msg: &[u8]) -> Result<()> {
        let mut spins = 0u32;
        while self
            .producer
            .push(self.theirs.words(), 0, seq, Body::Inline(msg))
            .map_err(ring_failed)?
            == Push::Full
        {
            spin_wait(&mut spins);
        }
        Ok(())
    }

    /// Spins until a message pops out of this side's ring; it must be `seq`, `len` bytes
    /// inline (then in `self.buf`).
    fn pop(&mut self, seq: u64, len: usize) -> Result<()> {
        let mut spins = 0u32;
        let popped = loop {
            match (self.consumer)
                .pop(self.mine.words(), &mut self.buf)
                .map_err(ring_failed)?
            {
                Some(p) => break p,
                None => spin_wait(&mut spins),
            }
        };
        match popped.payload {
            RingPayload::Inline { len: got } if got == len && popped.seq == seq => Ok(()),
            other => Err(CliError::Failed(format!(
                "message {seq} came as {other:?}, seq {}",
                popped.seq
            ))),
        }
    }
}

/// [`SHM_RING_PINGPONG`](super::SHM_RING_PINGPONG), initiator: swaps rings with the echo, times
/// round trips.
pub(super) fn ring_ping(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let mut rings = RingPair::exchange(sock.as_fd())?;
    let payload = Payload::new(c.size);
    let mut msg = vec![0u8; c.size];
    time_round_trips(&c, |seq| {
        // Numbered from 1, as the echo counts.
        payload.write_to(&mut msg, seq);
        rings.push(seq + 1, &msg)?;
        rings.pop(seq + 1, c.size)
    })
}

/// [`SHM_RING_PINGPONG`](super::SHM_RING_PINGPONG), echo: swaps rings with the initiator, then
/// answers every message with its bytes until the last round trip's.
pub(super) fn ring_pong(ctx: &mut ChildCtx) -> Result<ChildReport> {
    let sock = ctx.take_fd()?;
    let c = ctx.case;
    let mut rings = RingPair::exchange(sock.as_fd())?;
    for n in 1..=c.warmup + c.msgs {
        rings.pop(n, c.size)?;
        // Pushed back from where it popped out (taken out of `rings` meanwhile).
        let buf = std::mem::take(&mut rings.buf);
        let pushed = rings.push(n, &buf[..c.size]);
        rings.buf = buf;
        pushed?;
    }
    Ok(ChildReport {
        msgs: c.warmup + c.msgs,
        ..ChildReport::default()
    })
}

/// The byte length of a ring region of `config`.
fn ring_region_len(config: &RingConfig) -> Result<usize> {
    config
        .region_bytes()
        .map_err(ring_failed)
        .and_then(to_usize)
}

fn ring_failed(e: RingError) -> CliError {
    CliError::Failed(format!("the ring: {e}"))
}
