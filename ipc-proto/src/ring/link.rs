//! A ring beside a data link's socket: which records take the ring, and how the receiving side
//! merges the two streams back into the order they were sent in.
//!
//! A subscriber offers its publisher a ring on each data link
//! ([`encode_ring_offer`](crate::wire::encode_ring_offer), with the region and two eventfds);
//! from then on the publisher's driver puts each message record the data plane hands it
//! ([`DataFrame::Inline`] up to the ring's inline size, [`DataFrame::Pooled`]) into the ring
//! with [`RingSender::send`], or the message itself where the data plane offers it without a
//! record ([`RingSender::send_message`], see [`DirectSend`](crate::data::DirectSend)), and
//! everything else (bindings, segment offers with their fds, fresh payloads, `Last`,
//! `Goodbye`) on the socket, as before. The subscriber gives pool ranges back through the
//! return ring ([`RingReceiver::give_back`]); what does not fit goes in a
//! [`DataFrame::Release`] on the socket. The subscriber's reader hands each message on as the
//! record the publisher's data plane wrote ([`RingReceiver::next`]), or an inline one as its
//! parts, its payload popped into a buffer of the data plane's own
//! ([`RingReceiver::next_into`]): the messages a data plane takes are the ones the other one
//! sent, in the same order, whichever way they went.
//!
//! # Order
//! The publisher counts the records it has sent on the socket since the link opened and
//! stamps each ring message with that count ([`Popped::sent_before`](super::Popped::sent_before)). The subscriber
//! counts the socket records it has handed on since the link opened, and:
//! - hands on a ring message only once it has handed on `sent_before` socket records
//!   ([`RingReceiver::next`] says [`Next::Socket`] and keeps it until then), so a message
//!   never overtakes the binding or segment offer it refers to;
//! - before handing on a socket record, hands on every ring message that is due: the ring
//!   messages pushed before that record was sent are visible by then (the push's `Release`
//!   store comes before the `sendmsg` that the `recvmsg` follows), so a socket record never
//!   overtakes an earlier ring message either.
//!
//! A peer that stamps nonsense only disorders or stalls its own link.
//!
//! # Flow control and wakeups
//! A full ring is a full link: the record waits in the driver's outbox (the data plane is told
//! [`DataInput::Blocked`](crate::data::DataInput::Blocked) as for a full socket) and the
//! publisher waits on its eventfd for room ([`RingSender::prepare_wait`]). While pool ranges
//! are out ([`RingSender::watch_returns`]) it also says it waits for returns, after each
//! message and when idle, so that returns are taken back without delay (a publisher blocked
//! on a pool with every range lent would wait for them otherwise). That wait is for returns
//! only: the subscriber wakes it when it gives a range back, not when it takes a message
//! from the ring, so a publisher streaming pooled messages is woken about once per batch of
//! returns, as it is by releases on the socket without a ring. The subscriber parks
//! ([`RingReceiver::prepare_park`]) when both the ring and the socket are empty.
//!
//! [`DataFrame::Inline`]: crate::wire::DataFrame::Inline
//! [`DataFrame::Pooled`]: crate::wire::DataFrame::Pooled
//! [`DataFrame::Release`]: crate::wire::DataFrame::Release

use super::{
    Body, Consumer, Layout, Park, PoolRange, Popped, Producer, Push, RingConfig, RingError,
    RingPayload, Word, Writer,
};
use crate::wire::{
    DataFrame, INLINE_OVERHEAD, MessageHeader, MessageRef, SlotRef, decode_data, encode_data_into,
    inline_head,
};

/// Slots of a link's ring: the messages in flight on it before its publisher waits.
pub const LINK_CAPACITY: u32 = 64;
/// Largest payload a link's ring carries inline; larger inline messages take the socket.
pub const LINK_INLINE_MAX: u32 = 4096;
/// Return entries of a link's ring.
pub const LINK_RETURNS: u32 = 64;

/// The geometry of the ring a subscriber offers on each data link: [`LINK_CAPACITY`] slots
/// of [`LINK_INLINE_MAX`] inline bytes (about 266 KiB of shared memory per link, touched as
/// it is used) and [`LINK_RETURNS`] return entries. The pool's length is not the
/// subscriber's to know: pool ranges are checked by the data plane against the segments
/// offered on the link.
pub fn link_config() -> RingConfig {
    let mut config = RingConfig::default();
    config
        .capacity(LINK_CAPACITY)
        .inline_max(LINK_INLINE_MAX)
        .return_capacity(LINK_RETURNS)
        .pool_len(u64::MAX);
    config
}

/// The pool ranges a publisher lent on one data link and were not given back yet, counted
/// from the link's first record (before its ring existed too): pooled messages sent, in the
/// ring or on the socket, less the ranges given back, through the return ring or in a
/// [`DataFrame::Release`] on the socket. While any are out, the publisher watches the return
/// ring ([`RingSender::watch_returns`]). A subscriber that lies only delays its own link's
/// returns; the data plane checks every range it gives back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lent(u64);

impl Lent {
    /// How many ranges are out.
    pub fn get(self) -> u64 {
        self.0
    }

    /// How many would be out once `record` is sent.
    pub fn after(self, record: &[u8]) -> u64 {
        self.0 + u64::from(MessageRef::is_pooled(record))
    }

    /// `record` was sent, on the socket or in the ring.
    pub fn sent(&mut self, record: &[u8]) {
        self.0 = self.after(record);
    }

    /// A record was sent for which [`Self::after`] said `lent` (the same count as
    /// [`Self::sent`], without reading the record again).
    pub fn set(&mut self, lent: u64) {
        self.0 = lent;
    }

    /// A record came from the subscriber on the socket: counts the ranges a release gives back.
    pub fn read(&mut self, record: &[u8]) {
        if self.0 > 0
            && let Ok((DataFrame::Release(refs), _)) = decode_data(record, 0, usize::MAX)
        {
            self.returned(refs.len());
        }
    }

    /// `n` ranges came back through the return ring ([`RingSender::take_returns`]).
    pub fn returned(&mut self, n: usize) {
        self.0 = self.0.saturating_sub(n as u64);
    }
}

/// What [`RingSender::send`] did with a record.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// In the ring. `wake`: write the subscriber's eventfd.
    Ring {
        /// The subscriber sleeps: wake it.
        wake: bool,
    },
    /// A message, but the ring is full: keep it queued and wait for room.
    Full,
    /// Not for the ring: send it on the socket.
    Socket,
}

/// The publisher's end of a ring link.
#[derive(Debug, Clone)]
pub struct RingSender {
    producer: Producer,
    /// Records sent on the socket so far.
    sent: u64,
    /// "Waiting" is published in the ring and no wake was taken since.
    waiting: bool,
}

impl RingSender {
    /// The sending end of a ring [`attach`](super::attach)ed with this layout, on a link
    /// whose socket has carried `sent` records so far (every one since the link opened).
    pub fn new(layout: Layout, sent: u64) -> Self {
        Self {
            producer: Producer::new(layout),
            sent,
            waiting: false,
        }
    }

    /// A record went out on the link's socket.
    pub fn record_sent(&mut self) {
        self.sent += 1;
    }

    /// Puts `record` in the ring if it is a message the ring carries (see the module docs).
    /// An `Err` is the subscriber's fault: close the link.
    pub fn send<W: Word>(&mut self, region: &[W], record: &[u8]) -> Result<Sent, RingError> {
        let (header, body) = match MessageRef::of(record) {
            Some(MessageRef::Inline { header, payload }) => (header, Body::Inline(payload)),
            Some(MessageRef::Pooled {
                header,
                segment,
                offset,
                len,
            }) => (
                header,
                Body::Pool(PoolRange {
                    segment,
                    offset,
                    len,
                }),
            ),
            _ => return Ok(Sent::Socket),
        };
        self.send_message(region, header, body)
    }

    /// [`Self::send`] of the message a record would carry, without the record: what a data
    /// plane hands its driver straight ([`DirectSend`](crate::data::DirectSend)). An inline
    /// payload above the ring's inline size is [`Sent::Socket`].
    pub fn send_message<W: Word>(
        &mut self,
        region: &[W],
        header: MessageHeader,
        body: Body<'_>,
    ) -> Result<Sent, RingError> {
        if let Body::Inline(payload) = body
            && payload.len() > self.producer.layout().inline_max()
        {
            return Ok(Sent::Socket);
        }
        match self
            .producer
            .push_after(region, header.topic, header.seq, self.sent, body)?
        {
            Push::Done { wake } => Ok(Sent::Ring { wake }),
            Push::Full => Ok(Sent::Full),
        }
    }

    /// The publisher is filling a message this link will carry (a pooled loan), on CPU `cpu`
    /// if known: see [`Producer::writing`].
    pub fn writing<W: Word>(&mut self, region: &[W], cpu: Option<u32>) -> Result<(), RingError> {
        self.producer.writing(region, cpu)
    }

    /// While `lent` pool ranges are out on the link (the driver counts them: sent in the ring
    /// or on the socket, before the ring or after, and not given back either way), makes sure
    /// the subscriber wakes this side when it gives one back through the return ring (it
    /// wakes only a publisher that says it waits). Call it after each message and when idle:
    /// it costs nothing while the last wait is not woken yet, and such a wait is for returns
    /// only ([`Producer::prepare_wait_returns`](super::Producer::prepare_wait_returns)), so
    /// the messages the subscriber takes meanwhile do not wake this side.
    /// `true`: ranges came back already, take them ([`Self::take_returns`]).
    pub fn watch_returns<W: Word>(&mut self, region: &[W], lent: u64) -> Result<bool, RingError> {
        if self.waiting || lent == 0 {
            return Ok(false);
        }
        Ok(self.prepare_wait_returns(region)? == Park::Ready)
    }

    /// Takes back up to `max` ranges given back as one [`DataFrame::Release`] record in `out`,
    /// for the data plane; returns how many (0: none, `out` untouched).
    pub fn take_returns<W: Word>(
        &mut self,
        region: &[W],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<usize, RingError> {
        let mut refs = Vec::new();
        while refs.len() < max {
            match self.producer.pop_return(region)? {
                Some(r) => refs.push(SlotRef {
                    segment: r.segment,
                    offset: r.offset,
                }),
                None => break,
            }
        }
        let n = refs.len();
        if n > 0 {
            encode_data_into(&DataFrame::Release(refs), &[], out);
        }
        Ok(n)
    }

    /// Before waiting on the publisher's eventfd (for room or returns): see
    /// [`Producer::prepare_wait`].
    pub fn prepare_wait<W: Word>(&mut self, region: &[W]) -> Result<Park, RingError> {
        let park = self.producer.prepare_wait(region)?;
        self.waiting = park == Park::Sleep;
        Ok(park)
    }

    /// Whether the ring has a free slot, as last seen.
    pub fn has_room(&self) -> bool {
        self.producer.free_cached() > 0
    }

    /// Before waiting on the publisher's eventfd for returned ranges only (idle, with
    /// [`Self::watch_returns`]): see [`Producer::prepare_wait_returns`].
    pub fn prepare_wait_returns<W: Word>(&mut self, region: &[W]) -> Result<Park, RingError> {
        let park = self.producer.prepare_wait_returns(region)?;
        self.waiting = park == Park::Sleep;
        Ok(park)
    }

    /// After waiting: see [`Producer::finish_wait`].
    pub fn finish_wait<W: Word>(&mut self, region: &[W]) -> Result<(), RingError> {
        self.waiting = false;
        self.producer.finish_wait(region)
    }
}

/// What [`RingReceiver::next`] found.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// A message record is ready ([`RingReceiver::record`]): hand it on.
    Record,
    /// The next ring message follows socket records not handed on yet: read the socket.
    Socket,
    /// The ring is empty.
    Empty,
}

/// What [`RingReceiver::next_into`] found.
#[must_use]
#[derive(Debug)]
pub enum NextInto<B> {
    /// An inline message, its payload in the buffer the reader gave: hand it on.
    Inline {
        /// Its header.
        header: MessageHeader,
        /// The buffer, the payload its first bytes.
        payload: B,
    },
    /// Anything else, as [`RingReceiver::next`] says.
    Other(Next),
}

/// The subscriber's end of a ring link.
#[derive(Debug, Clone)]
pub struct RingReceiver {
    consumer: Consumer,
    /// Socket records handed on so far.
    read: u64,
    /// A message popped before its turn ([`Next::Socket`]); its inline bytes are in `inline`.
    held: Option<Popped>,
    /// An inline message's record: [`INLINE_OVERHEAD`] bytes for its header, then room for
    /// the ring's largest inline payload, which a pop copies there once, straight behind the
    /// header written after it; the record is `inline[record.0..record.1]`.
    inline: Vec<u8>,
    /// A pooled message's record.
    pooled: Vec<u8>,
    /// The last record: `inline`'s range, or `None` for `pooled`.
    record: Option<(usize, usize)>,
    /// The publisher waits for room (then a pop or a return wakes it) or for returns only
    /// (then only a return does) and is owed a wake ([`Self::take_wake`]).
    wake: bool,
}

impl RingReceiver {
    /// The receiving end of a ring this side [`init`](super::init)ed with this layout, on a
    /// link whose socket records were handed on `read` times so far (every one since the
    /// link opened).
    pub fn new(layout: Layout, read: u64) -> Self {
        Self {
            consumer: Consumer::new(layout),
            read,
            held: None,
            inline: vec![0; INLINE_OVERHEAD + layout.inline_max()],
            pooled: Vec::new(),
            record: None,
            wake: false,
        }
    }

    /// A socket record of the link was handed on.
    pub fn record_read(&mut self) {
        self.read += 1;
    }

    /// The next ring message that is due before the socket's next record (see the module
    /// docs), encoded as the record the publisher's data plane wrote ([`Self::record`]). An
    /// `Err` is the publisher's fault: close the link.
    pub fn next<W: Word>(&mut self, region: &[W]) -> Result<Next, RingError> {
        let popped = match self.held.take() {
            Some(p) => p,
            None => match self.consumer.pop(
                region,
                self.inline.get_mut(INLINE_OVERHEAD..).unwrap_or_default(),
            )? {
                Some(p) => {
                    self.wake |= p.wake_producer;
                    p
                }
                None => return Ok(Next::Empty),
            },
        };
        if popped.sent_before > self.read {
            self.held = Some(popped);
            return Ok(Next::Socket);
        }
        Ok(self.found(popped))
    }

    /// Whether [`Self::next`] may find something now: a message held for its turn, or one
    /// the producer's head shows (read now). For a reader that has what it came for: a
    /// look at one word where `next` would go through its steps to find the ring empty.
    /// `true` if the head fails its check, for `next` to find and report.
    pub fn may_hold<W: Word>(&mut self, region: &[W]) -> bool {
        self.held.is_some() || self.consumer.pending(region).map_or(true, |n| n > 0)
    }

    /// [`Self::next`], an inline message's payload popped straight into the buffer `dst`
    /// gives for its length (exactly that long, as `DataPlane::payload_buffer`'s: the
    /// payload is its first that many bytes, and a buffer delivered as it is must hold no
    /// more) and handed back with its header ([`NextInto::Inline`]): for a
    /// reader that hands each payload on in a buffer of its own
    /// ([`DataPlane::payload_buffer`](crate::data::DataPlane::payload_buffer)), one copy out of
    /// the ring and no record; a message held until its turn too, copied from where it waited.
    /// Anything else is as [`Self::next`] says ([`NextInto::Other`]).
    pub fn next_into<W: Word, B: AsMut<[u8]>>(
        &mut self,
        region: &[W],
        dst: impl FnOnce(usize) -> B,
    ) -> Result<NextInto<B>, RingError> {
        let (popped, buf) = match self.held.take() {
            Some(popped) => {
                if popped.sent_before > self.read {
                    self.held = Some(popped);
                    return Ok(NextInto::Other(Next::Socket));
                }
                // Held until now: an inline payload moves from where it waited into `dst`'s
                // buffer, as if popped now.
                let buf = match popped.payload {
                    RingPayload::Inline { len } => {
                        let mut buf = dst(len);
                        let kept = self.inline.get(INLINE_OVERHEAD..INLINE_OVERHEAD + len);
                        let bytes = buf.as_mut();
                        let buf_len = bytes.len();
                        match (bytes.get_mut(..len), kept) {
                            (Some(out), Some(kept)) => out.copy_from_slice(kept),
                            // `kept` is always there (`inline` holds the ring's largest
                            // payload, which `len` was checked against when popped): a buffer
                            // too short is the one case.
                            _ => {
                                self.held = Some(popped);
                                return Err(RingError::BufferTooSmall { len, buf: buf_len });
                            }
                        }
                        Some(buf)
                    }
                    RingPayload::Pool(_) => None,
                };
                (popped, buf)
            }
            None => match self.consumer.pop_into(region, dst)? {
                Some((popped, buf)) => {
                    self.wake |= popped.wake_producer;
                    (popped, buf)
                }
                None => return Ok(NextInto::Other(Next::Empty)),
            },
        };
        let due = popped.sent_before <= self.read;
        match (popped.payload, buf) {
            (RingPayload::Inline { .. }, Some(buf)) if due => {
                self.record = None;
                Ok(NextInto::Inline {
                    header: MessageHeader {
                        topic: popped.binding,
                        seq: popped.seq,
                    },
                    payload: buf,
                })
            }
            (RingPayload::Inline { len }, Some(mut buf)) => {
                // Before its turn (rare: behind a socket record sent just before it): held
                // as `next` holds it, its bytes where `next` keeps them.
                if let (Some(out), Some(bytes)) = (
                    self.inline.get_mut(INLINE_OVERHEAD..INLINE_OVERHEAD + len),
                    buf.as_mut().get(..len),
                ) {
                    out.copy_from_slice(bytes);
                }
                self.held = Some(popped);
                Ok(NextInto::Other(Next::Socket))
            }
            _ if !due => {
                self.held = Some(popped);
                Ok(NextInto::Other(Next::Socket))
            }
            _ => Ok(NextInto::Other(self.found(popped))),
        }
    }

    /// A message due now: its record, ready for [`Self::record`].
    fn found(&mut self, popped: Popped) -> Next {
        let header = MessageHeader {
            topic: popped.binding,
            seq: popped.seq,
        };
        match popped.payload {
            RingPayload::Inline { len } => {
                let (head, start) = inline_head(header, len);
                if let Some(h) = self.inline.get_mut(start..INLINE_OVERHEAD) {
                    h.copy_from_slice(&head[start..]);
                }
                self.record = Some((start, INLINE_OVERHEAD + len));
            }
            RingPayload::Pool(r) => {
                let message = MessageRef::Pooled {
                    header,
                    segment: r.segment,
                    offset: r.offset,
                    len: r.len,
                };
                message.encode_into(&mut self.pooled);
                self.record = None;
            }
        }
        Next::Record
    }

    /// The record of the last message [`Self::next`] (or [`Self::next_into`]) found as
    /// [`Next::Record`]; meaningless after any other answer.
    pub fn record(&self) -> &[u8] {
        match self.record {
            Some((start, end)) => self.inline.get(start..end).unwrap_or_default(),
            None => &self.pooled,
        }
    }

    /// Whether messages are known to wait (without reading the publisher's words).
    pub fn has_more(&self) -> bool {
        self.held.is_some() || self.consumer.pending_cached() > 0
    }

    /// Gives pooled ranges back through the return ring, in order, as far as it has room;
    /// returns how many went (send the rest in a [`DataFrame::Release`] on the socket).
    pub fn give_back<W: Word>(
        &mut self,
        region: &[W],
        slots: &[SlotRef],
    ) -> Result<usize, RingError> {
        for (given, slot) in slots.iter().enumerate() {
            let range = PoolRange {
                segment: slot.segment,
                offset: slot.offset,
                len: 0,
            };
            match self.consumer.push_return(region, range)? {
                Push::Done { wake } => self.wake |= wake,
                Push::Full => return Ok(given),
            }
        }
        Ok(slots.len())
    }

    /// Whether the publisher says it fills a message for this link: see
    /// [`Consumer::producer_writing`].
    pub fn producer_writing<W: Word>(&self, region: &[W]) -> Result<Writer, RingError> {
        self.consumer.producer_writing(region)
    }

    /// Whether the publisher is owed a wake (it waits for room or returns): write its eventfd.
    pub fn take_wake(&mut self) -> bool {
        std::mem::take(&mut self.wake)
    }

    /// Before sleeping on the subscriber's eventfd, once the ring and the socket are empty:
    /// see [`Consumer::prepare_park`].
    ///
    /// With a message held for socket records not read yet ([`Next::Socket`]), nothing in
    /// the ring can be handed on before those records, whose arrival the socket tells:
    /// [`Park::Sleep`] without parking, so that the publisher is not asked for wakes.
    pub fn prepare_park<W: Word>(&mut self, region: &[W]) -> Result<Park, RingError> {
        if self.held.is_some() {
            return Ok(Park::Sleep);
        }
        self.consumer.prepare_park(region)
    }

    /// After sleeping: see [`Consumer::finish_park`].
    pub fn finish_park<W: Word>(&mut self, region: &[W]) -> Result<(), RingError> {
        self.consumer.finish_park(region)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;
    use crate::ring::layout::W_HEAD;
    use crate::ring::{attach, init};
    use crate::wire::{DataFrame, decode_data, encode_data};

    fn pair() -> (Vec<AtomicU64>, RingSender, RingReceiver) {
        let mut config = link_config();
        config.capacity(4).inline_max(64).return_capacity(2);
        let layout = config.layout().expect("valid");
        let region: Vec<AtomicU64> = (0..layout.region_words())
            .map(|_| AtomicU64::new(0))
            .collect();
        let created = init(&region, &config).expect("init");
        let attached = attach(&region).expect("attach");
        (
            region,
            RingSender::new(attached, 0),
            RingReceiver::new(created, 0),
        )
    }

    fn inline(topic: u32, seq: u64, payload: &[u8]) -> Vec<u8> {
        encode_data(&DataFrame::Inline(MessageHeader { topic, seq }), payload)
    }

    fn pooled(seq: u64) -> Vec<u8> {
        encode_data(
            &DataFrame::Pooled {
                header: MessageHeader { topic: 1, seq },
                segment: 7,
                offset: 4096,
                len: 100,
            },
            &[],
        )
    }

    #[test]
    fn messages_cross_the_ring_as_the_records_they_were() {
        let (region, mut tx, mut rx) = pair();
        for record in [inline(3, 1, b"hello"), pooled(2), inline(3, 3, b"")] {
            assert_eq!(tx.send(&region, &record), Ok(Sent::Ring { wake: false }));
            assert_eq!(rx.next(&region), Ok(Next::Record));
            assert_eq!(rx.record(), record);
        }
        assert_eq!(rx.next(&region), Ok(Next::Empty));
    }

    /// What `next_into` found, as the record `next` would have written (an inline
    /// message's payload from the buffer it gave).
    fn next_into(rx: &mut RingReceiver, region: &[AtomicU64]) -> Result<Option<Vec<u8>>, Next> {
        match rx.next_into(region, |len| vec![0xee; len]) {
            Ok(NextInto::Inline { header, payload }) => {
                Ok(Some(encode_data(&DataFrame::Inline(header), &payload)))
            }
            Ok(NextInto::Other(Next::Record)) => Ok(Some(rx.record().to_vec())),
            Ok(NextInto::Other(other)) => Err(other),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn messages_popped_into_the_readers_buffers_are_the_records_they_were() {
        let (region, mut tx, mut rx) = pair();
        for record in [inline(3, 1, b"hello"), pooled(2), inline(3, 3, b"")] {
            assert_eq!(tx.send(&region, &record), Ok(Sent::Ring { wake: false }));
            assert_eq!(next_into(&mut rx, &region), Ok(Some(record)));
        }
        assert_eq!(next_into(&mut rx, &region), Err(Next::Empty));
        // The payload alone, no record, and the header as sent.
        let header = MessageHeader { topic: 9, seq: 4 };
        let sent = tx.send_message(&region, header, Body::Inline(b"abc"));
        assert_eq!(sent, Ok(Sent::Ring { wake: false }));
        match rx.next_into(&region, |len| vec![0; len]) {
            Ok(NextInto::Inline { header: h, payload }) => {
                assert_eq!((h, &payload[..]), (header, &b"abc"[..]));
            }
            other => panic!("{other:?}"),
        }
        // A buffer too short leaves the message in the ring.
        let sent = tx.send_message(&region, header, Body::Inline(b"defg"));
        assert_eq!(sent, Ok(Sent::Ring { wake: false }));
        let short = rx.next_into(&region, |_| vec![0; 3]);
        assert!(
            matches!(short, Err(RingError::BufferTooSmall { len: 4, buf: 3 })),
            "{short:?}"
        );
        assert_eq!(next_into(&mut rx, &region), Ok(Some(inline(9, 4, b"defg"))));
    }

    /// A message popped into the reader's buffer before its turn is held as `next` holds it,
    /// with its bytes, and comes after the socket records sent before it, in a buffer of the
    /// reader's as any inline message (a buffer too short for it leaves it held).
    #[test]
    fn a_message_popped_into_a_buffer_before_its_turn_waits_with_its_bytes() {
        let (region, mut tx, mut rx) = pair();
        tx.record_sent();
        let m = inline(1, 1, b"early");
        assert_eq!(tx.send(&region, &m), Ok(Sent::Ring { wake: false }));
        assert_eq!(next_into(&mut rx, &region), Err(Next::Socket));
        assert_eq!(next_into(&mut rx, &region), Err(Next::Socket), "still held");
        rx.record_read();
        let short = rx.next_into(&region, |_| vec![0; 4]);
        assert!(
            matches!(short, Err(RingError::BufferTooSmall { len: 5, buf: 4 })),
            "{short:?}"
        );
        match rx.next_into(&region, |len| vec![0xee; len]) {
            Ok(NextInto::Inline { header, payload }) => {
                assert_eq!(header, MessageHeader { topic: 1, seq: 1 });
                assert_eq!(payload, b"early");
            }
            other => panic!("not in the reader's buffer: {other:?}"),
        }
        assert_eq!(next_into(&mut rx, &region), Err(Next::Empty));
    }

    /// `may_hold` says `false` only when `next` would find the ring empty: messages pushed
    /// and not popped, one held for its turn and a head that fails its check say `true`.
    #[test]
    fn may_hold_is_false_only_for_an_empty_ring() {
        let (region, mut tx, mut rx) = pair();
        assert!(!rx.may_hold(&region));
        for seq in 1..=2 {
            assert_eq!(
                tx.send(&region, &inline(1, seq, b"m")),
                Ok(Sent::Ring { wake: false })
            );
        }
        assert!(rx.may_hold(&region));
        assert_eq!(next_into(&mut rx, &region), Ok(Some(inline(1, 1, b"m"))));
        assert!(rx.may_hold(&region), "one more, its head read before");
        assert_eq!(next_into(&mut rx, &region), Ok(Some(inline(1, 2, b"m"))));
        assert!(!rx.may_hold(&region));
        assert_eq!(next_into(&mut rx, &region), Err(Next::Empty));
        // Held for a socket record: `next` has it.
        tx.record_sent();
        assert_eq!(
            tx.send(&region, &inline(1, 3, b"m")),
            Ok(Sent::Ring { wake: false })
        );
        assert_eq!(next_into(&mut rx, &region), Err(Next::Socket));
        assert!(rx.may_hold(&region), "held");
        rx.record_read();
        assert_eq!(next_into(&mut rx, &region), Ok(Some(inline(1, 3, b"m"))));
        assert!(!rx.may_hold(&region));
        // A peer's head beyond the ring's capacity: `next` reports it.
        region[W_HEAD].store(u64::MAX, Ordering::SeqCst);
        assert!(rx.may_hold(&region));
        assert!(matches!(rx.next(&region), Err(RingError::Index { .. })));
    }

    #[test]
    fn other_frames_and_large_payloads_take_the_socket() {
        let (region, mut tx, _) = pair();
        let topic = encode_data(
            &DataFrame::Topic {
                id: 1,
                topic: "t".into(),
            },
            &[],
        );
        assert_eq!(tx.send(&region, &topic), Ok(Sent::Socket));
        assert_eq!(tx.send(&region, &inline(1, 1, &[0; 65])), Ok(Sent::Socket));
        assert_eq!(tx.send(&region, &[1, 2, 3]), Ok(Sent::Socket));
        let fresh = encode_data(
            &DataFrame::Fresh {
                header: MessageHeader { topic: 1, seq: 1 },
                len: 5,
            },
            &[],
        );
        assert_eq!(tx.send(&region, &fresh), Ok(Sent::Socket));
    }

    #[test]
    fn a_ring_message_waits_for_the_socket_records_sent_before_it() {
        let (region, mut tx, mut rx) = pair();
        // Two socket records (a binding, a segment offer), then a message in the ring.
        tx.record_sent();
        tx.record_sent();
        let m = inline(1, 1, b"x");
        assert_eq!(tx.send(&region, &m), Ok(Sent::Ring { wake: false }));
        assert_eq!(rx.next(&region), Ok(Next::Socket));
        rx.record_read();
        assert_eq!(rx.next(&region), Ok(Next::Socket));
        // Held for a socket record: the socket wakes the subscriber, so it sleeps without
        // parking on the ring (a `Ready` here spun the driver's read loop), and the
        // publisher is not asked for a wake.
        assert_eq!(rx.prepare_park(&region), Ok(Park::Sleep), "a held message");
        let m2 = inline(1, 2, b"y");
        assert_eq!(tx.send(&region, &m2), Ok(Sent::Ring { wake: false }));
        rx.finish_park(&region).expect("finish");
        rx.record_read();
        assert_eq!(rx.next(&region), Ok(Next::Record));
        assert_eq!(rx.record(), m);
        assert_eq!(rx.next(&region), Ok(Next::Record));
        assert_eq!(rx.record(), m2);
        // A socket record sent after it comes after it.
        tx.record_sent();
        assert_eq!(rx.next(&region), Ok(Next::Empty));
    }

    #[test]
    fn a_full_ring_says_so_and_takes_the_message_once_there_is_room() {
        let (region, mut tx, mut rx) = pair();
        for seq in 1..=4 {
            assert!(matches!(
                tx.send(&region, &inline(1, seq, b"")),
                Ok(Sent::Ring { .. })
            ));
        }
        let fifth = inline(1, 5, b"");
        assert_eq!(tx.send(&region, &fifth), Ok(Sent::Full));
        assert_eq!(tx.prepare_wait(&region), Ok(Park::Sleep));
        assert_eq!(rx.next(&region), Ok(Next::Record));
        assert!(!rx.take_wake(), "three of four slots still full");
        assert_eq!(rx.next(&region), Ok(Next::Record));
        assert!(
            rx.take_wake(),
            "half the ring free: the waiting publisher is woken"
        );
        assert!(!rx.take_wake(), "once");
        tx.finish_wait(&region).expect("fine");
        assert!(matches!(tx.send(&region, &fifth), Ok(Sent::Ring { .. })));
    }

    #[test]
    fn ranges_come_back_as_one_release() {
        let (region, mut tx, mut rx) = pair();
        let mut out = Vec::new();
        assert!(matches!(
            tx.send(&region, &pooled(1)),
            Ok(Sent::Ring { .. })
        ));
        // A publisher that only publishes says it waits for returns as soon as a range is
        // out (else the subscriber never wakes it for them); with room to spare it waits for
        // returns, not for room (a `Ready` for the free slots spun the driver's read loop).
        assert!(tx.has_room());
        assert_eq!(tx.watch_returns(&region, 0), Ok(false), "nothing lent");
        assert_eq!(tx.watch_returns(&region, 1), Ok(false));
        assert_eq!(tx.watch_returns(&region, 1), Ok(false), "once is enough");
        let slots = [
            SlotRef {
                segment: 7,
                offset: 0,
            },
            SlotRef {
                segment: 7,
                offset: 4096,
            },
            SlotRef {
                segment: 8,
                offset: 0,
            },
        ];
        assert_eq!(rx.give_back(&region, &slots), Ok(2), "two return entries");
        assert!(rx.take_wake(), "the waiting publisher is owed a wake");
        tx.finish_wait(&region).expect("finish");
        assert_eq!(tx.prepare_wait_returns(&region), Ok(Park::Ready));
        assert_eq!(tx.take_returns(&region, 16, &mut out), Ok(2));
        let (frame, _) = decode_data(&out, 255, 16).expect("a release");
        assert_eq!(frame, DataFrame::Release(slots[..2].to_vec()));
        assert_eq!(tx.take_returns(&region, 16, &mut out), Ok(0));
    }

    #[test]
    fn a_publisher_waiting_for_returns_is_woken_by_a_return_not_by_messages_taken() {
        let (region, mut tx, mut rx) = pair();
        let mut out = Vec::new();
        let slot = SlotRef {
            segment: 7,
            offset: 4096,
        };
        // A pooled message, then an inline one: the publisher says it waits for returns
        // after the first.
        assert!(matches!(
            tx.send(&region, &pooled(1)),
            Ok(Sent::Ring { .. })
        ));
        assert_eq!(tx.watch_returns(&region, 1), Ok(false));
        assert!(matches!(
            tx.send(&region, &inline(1, 2, b"x")),
            Ok(Sent::Ring { .. })
        ));
        assert_eq!(tx.watch_returns(&region, 1), Ok(false), "waits already");
        // Taking both messages frees slots the publisher does not wait for: no wake.
        for _ in 0..2 {
            assert_eq!(rx.next(&region), Ok(Next::Record));
            assert!(!rx.take_wake(), "a message taken does not wake it");
        }
        // The range given back does, once.
        assert_eq!(rx.give_back(&region, &[slot]), Ok(1));
        assert!(rx.take_wake(), "a return wakes it");
        assert_eq!(rx.give_back(&region, &[slot]), Ok(1));
        assert!(!rx.take_wake(), "once per wait");
        tx.finish_wait(&region).expect("finish");
        out.clear();
        assert_eq!(tx.take_returns(&region, 16, &mut out), Ok(2));
        // Waiting for room (a full ring) is woken by a message taken, as before.
        for seq in 3..=6 {
            assert!(matches!(
                tx.send(&region, &inline(1, seq, b"")),
                Ok(Sent::Ring { .. })
            ));
        }
        assert_eq!(tx.send(&region, &inline(1, 7, b"")), Ok(Sent::Full));
        assert_eq!(tx.prepare_wait(&region), Ok(Park::Sleep));
        for _ in 0..2 {
            assert_eq!(rx.next(&region), Ok(Next::Record));
        }
        assert!(rx.take_wake(), "room wakes a publisher waiting for room");
    }

    #[test]
    fn a_publisher_waiting_for_returns_and_then_room_is_woken_for_room() {
        let (region, mut tx, mut rx) = pair();
        assert!(matches!(
            tx.send(&region, &pooled(1)),
            Ok(Sent::Ring { .. })
        ));
        // Waiting for returns (idle), woken for nothing yet; then the publishing thread fills
        // the ring and waits for room: that wait replaces the first, and pops wake it (once
        // half the ring is free).
        assert_eq!(tx.watch_returns(&region, 1), Ok(false));
        for seq in 2..=4 {
            assert!(matches!(
                tx.send(&region, &inline(1, seq, b"")),
                Ok(Sent::Ring { .. })
            ));
        }
        assert_eq!(tx.send(&region, &inline(1, 5, b"")), Ok(Sent::Full));
        assert_eq!(tx.prepare_wait(&region), Ok(Park::Sleep));
        for _ in 0..2 {
            assert_eq!(rx.next(&region), Ok(Next::Record));
        }
        assert!(
            rx.take_wake(),
            "the pops wake the publisher waiting for room"
        );
    }

    #[test]
    fn lent_counts_pooled_messages_out_and_ranges_back() {
        let mut lent = Lent::default();
        lent.sent(&inline(1, 1, b"x"));
        assert_eq!(lent.get(), 0, "an inline message lends nothing");
        assert_eq!(lent.after(&pooled(2)), 1);
        lent.sent(&pooled(2));
        lent.sent(&pooled(3));
        let release = |n: u64| {
            let refs = (0..n).map(|i| SlotRef {
                segment: 7,
                offset: i * 4096,
            });
            encode_data(&DataFrame::Release(refs.collect()), &[])
        };
        lent.read(&encode_data(&DataFrame::Goodbye, &[]));
        assert_eq!(lent.get(), 2, "only a release gives back");
        lent.read(&release(1));
        assert_eq!(lent.get(), 1);
        lent.returned(5);
        assert_eq!(lent.get(), 0, "a subscriber giving back more does not wrap");
        lent.read(&release(3));
        assert_eq!(lent.get(), 0);
    }

    #[test]
    fn a_parked_subscriber_is_woken_once() {
        let (region, mut tx, mut rx) = pair();
        assert_eq!(rx.next(&region), Ok(Next::Empty));
        assert_eq!(rx.prepare_park(&region), Ok(Park::Sleep));
        assert_eq!(
            tx.send(&region, &inline(1, 1, b"")),
            Ok(Sent::Ring { wake: true })
        );
        assert_eq!(
            tx.send(&region, &inline(1, 2, b"")),
            Ok(Sent::Ring { wake: false })
        );
        rx.finish_park(&region).expect("fine");
        assert_eq!(rx.next(&region), Ok(Next::Record));
        assert!(rx.has_more(), "the second one is known to wait");
        assert_eq!(rx.next(&region), Ok(Next::Record));
        assert!(!rx.has_more());
    }
}
