//! The ring link target: [`ring_link`] drives both ends of a data link's ring
//! ([`RingSender`], [`RingReceiver`]) beside a modelled socket, with arbitrary geometry,
//! header lies and peer writes: the layer the drivers use, where [`ring_consume`] drives the
//! bare ring.
//!
//! [`ring_consume`]: super::ring_consume

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;

use arbitrary::{Arbitrary, Unstructured};

use crate::ring::link::{Next, NextInto, RingReceiver, RingSender, Sent};
use crate::ring::{self, Body, Park, PoolRange, RingError};
use crate::wire::{DataFrame, MessageHeader, MessageRef, SlotRef, decode_data};

/// One input of [`ring_link`]: a geometry, optionally foreign words laid over the fresh
/// region before the publisher attaches, then operations on both ends.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub struct LinkCase {
    /// log2 of the slot count (taken modulo 5: 1 to 16 slots).
    pub capacity_log2: u8,
    /// Inline bytes per slot (modulo 200).
    pub inline_max: u8,
    /// log2 of the return entries (modulo 4).
    pub return_log2: u8,
    /// The pool's length.
    pub pool_len: u16,
    /// Words written over the region's start after `init`, before `attach`: a subscriber
    /// that lies in its header.
    pub header: Vec<(u8, u64)>,
    /// What happens then.
    pub ops: Vec<LinkOp>,
}

/// One operation of a [`LinkCase`].
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum LinkOp {
    /// The publisher sends an inline message of `len` bytes (modulo 256): into the ring, or
    /// on the socket if it is longer than the ring's slots.
    Inline {
        /// The binding.
        binding: u32,
        /// Payload length.
        len: u8,
    },
    /// The publisher sends a pooled message.
    Pooled(PoolRange),
    /// The publisher sends a record on the socket (a binding, say).
    Socket,
    /// The subscriber takes the next message from the ring into a buffer of its length
    /// less `short` (modulo 4: mostly exact), as the drivers do ([`RingReceiver::next_into`]).
    NextInto {
        /// How much shorter the buffer is than the payload.
        short: u8,
    },
    /// The subscriber takes the next message as a record ([`RingReceiver::next`]).
    Next,
    /// The subscriber hands on every ring message that is due, then the socket's next
    /// record, if any: what a reader does when the socket is readable.
    ReadSocket,
    /// The subscriber gives a pool range back.
    GiveBack(SlotRef),
    /// The publisher takes up to `max` (modulo 8) ranges back.
    TakeReturns {
        /// At most this many.
        max: u8,
    },
    /// The subscriber parks (and, on `Sleep`, finishes parking).
    Park,
    /// The publisher waits for room (and, on `Sleep`, finishes waiting).
    Wait,
    /// The publisher watches for returns with `lent` (modulo 4) ranges out.
    WatchReturns {
        /// Ranges out.
        lent: u8,
    },
    /// The publisher sets its `writing` hint; the subscriber reads it.
    Writing,
    /// The peer writes a word (index modulo the region's length).
    Write {
        /// Which word.
        word: u16,
        /// What it writes.
        value: u64,
    },
}

/// What the publisher sent, in the order it sent it: what the subscriber must hand on, in
/// that order, whichever way each item went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    /// A message in the ring: its binding, sequence number and body.
    Ring(u32, u64, ModelBody),
    /// A record on the socket, numbered.
    Socket(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelBody {
    Inline(Vec<u8>),
    Pool(PoolRange),
}

/// The `ring_link` target: [`run_link`] on the input read as a [`LinkCase`].
pub fn ring_link(data: &[u8]) {
    if let Ok(case) = LinkCase::arbitrary_take_rest(Unstructured::new(data)) {
        run_link(&case);
    }
}

/// Runs one case. Panics (a fuzzer crash) if either end panics, returns something other than
/// a value or a [`RingError`], hands on an inline payload of another length than it asked a
/// buffer for, or, while no word was written behind the ends' backs, if the subscriber does
/// not hand on exactly what the publisher sent, in the order it sent it (ring messages and
/// socket records merged), or the publisher does not take back the ranges given back, in
/// order.
pub fn run_link(case: &LinkCase) {
    let geometry = (
        case.capacity_log2,
        case.inline_max,
        case.return_log2,
        case.pool_len,
    );
    let Some((region, created, attached)) = super::ring::ring_region(geometry, &case.header) else {
        return;
    };
    let mut clean = case.header.is_empty();
    let mut sender = RingSender::new(attached, 0);
    let mut receiver = RingReceiver::new(created, 0);
    // What was sent and not handed on yet, in order; the socket's records not read yet.
    let mut sent: VecDeque<Item> = VecDeque::new();
    let mut socket: VecDeque<u64> = VecDeque::new();
    let mut returns: VecDeque<SlotRef> = VecDeque::new();
    let (mut seq, mut records) = (0u64, 0u64);
    let within =
        |r: PoolRange, pool: u64| r.offset.checked_add(r.len).is_some_and(|end| end <= pool);
    for op in &case.ops {
        match op {
            LinkOp::Inline { binding, len } => {
                seq += 1;
                let bytes = vec![seq as u8; usize::from(*len)];
                let header = MessageHeader {
                    topic: *binding,
                    seq,
                };
                match sender.send_message(&region, header, Body::Inline(&bytes)) {
                    Ok(Sent::Ring { .. }) => {
                        sent.push_back(Item::Ring(*binding, seq, ModelBody::Inline(bytes)));
                    }
                    Ok(Sent::Socket) => {
                        assert!(bytes.len() > attached.inline_max());
                        send_on_socket(&mut sender, &mut sent, &mut socket, &mut records);
                    }
                    Ok(Sent::Full) => {}
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            LinkOp::Pooled(range) => {
                seq += 1;
                let header = MessageHeader { topic: 0, seq };
                match sender.send_message(&region, header, Body::Pool(*range)) {
                    Ok(Sent::Ring { .. }) => {
                        sent.push_back(Item::Ring(0, seq, ModelBody::Pool(*range)));
                    }
                    Ok(Sent::Full) => {}
                    Ok(Sent::Socket) => panic!("a pooled message takes the ring"),
                    Err(RingError::PoolRange { .. }) => {
                        assert!(!within(*range, attached.pool_len()));
                    }
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            LinkOp::Socket => send_on_socket(&mut sender, &mut sent, &mut socket, &mut records),
            LinkOp::NextInto { short } => {
                let short = usize::from(*short % 4);
                let mut asked = None;
                let got = receiver.next_into(&region, |len| {
                    asked = Some(len);
                    vec![0u8; len.saturating_sub(short)]
                });
                match got {
                    Ok(NextInto::Inline { header, payload }) => {
                        let len = asked.expect("a buffer was asked for");
                        assert!(len <= created.inline_max());
                        assert_eq!(payload.len(), len, "the buffer as asked");
                        if clean {
                            expect_ring(&mut sent, header, &ModelBody::Inline(payload));
                        }
                    }
                    Ok(NextInto::Other(next)) => {
                        on_next(next, &receiver, &mut sent, &socket, created, clean)
                    }
                    Err(RingError::BufferTooSmall { len, buf }) => {
                        assert!(short > 0 && buf < len);
                    }
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            LinkOp::Next => match receiver.next(&region) {
                Ok(next) => on_next(next, &receiver, &mut sent, &socket, created, clean),
                Err(e) => assert!(!clean, "{e}"),
            },
            LinkOp::ReadSocket => {
                // The ring messages due before the socket's next record, then that record.
                let drained = loop {
                    match receiver.next(&region) {
                        Ok(Next::Record) => {
                            on_next(Next::Record, &receiver, &mut sent, &socket, created, clean)
                        }
                        Ok(next) => {
                            on_next(next, &receiver, &mut sent, &socket, created, clean);
                            break true;
                        }
                        Err(e) => {
                            assert!(!clean, "{e}");
                            break false;
                        }
                    }
                };
                if drained && let Some(record) = socket.pop_front() {
                    receiver.record_read();
                    if clean {
                        assert_eq!(sent.pop_front(), Some(Item::Socket(record)), "in order");
                    }
                }
            }
            LinkOp::GiveBack(slot) => {
                let range = PoolRange {
                    segment: slot.segment,
                    offset: slot.offset,
                    len: 0,
                };
                match receiver.give_back(&region, &[*slot]) {
                    Ok(1) => returns.push_back(*slot),
                    Ok(n) => assert_eq!(n, 0),
                    Err(RingError::PoolRange { .. }) => {
                        assert!(!within(range, created.pool_len()));
                    }
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            LinkOp::TakeReturns { max } => {
                let mut out = Vec::new();
                match sender.take_returns(&region, usize::from(*max % 8), &mut out) {
                    Ok(0) => assert!(out.is_empty()),
                    Ok(n) => {
                        let Ok((DataFrame::Release(refs), _)) = decode_data(&out, 0, usize::MAX)
                        else {
                            panic!("a release record");
                        };
                        assert_eq!(refs.len(), n);
                        if clean {
                            let expected: Vec<SlotRef> =
                                returns.drain(..n.min(returns.len())).collect();
                            assert_eq!(refs, expected, "given back in order");
                        }
                    }
                    Err(e) => assert!(!clean, "{e}"),
                }
            }
            LinkOp::Park => {
                if let Ok(Park::Sleep) = receiver.prepare_park(&region) {
                    let _ = receiver.finish_park(&region);
                }
                let _ = receiver.take_wake();
            }
            LinkOp::Wait => {
                if let Ok(Park::Sleep) = sender.prepare_wait(&region) {
                    let _ = sender.finish_wait(&region);
                }
            }
            LinkOp::WatchReturns { lent } => {
                if let Err(e) = sender.watch_returns(&region, u64::from(*lent % 4)) {
                    assert!(!clean, "{e}");
                }
            }
            LinkOp::Writing => {
                let _ = sender.writing(&region, Some(3));
                if let Err(e) = receiver.producer_writing(&region) {
                    assert!(!clean, "{e}");
                }
            }
            LinkOp::Write { word, value } => {
                let i = usize::from(*word) % region.len();
                if let Some(w) = region.get(i) {
                    w.store(*value, Relaxed);
                }
                clean = false;
            }
        }
    }
}

/// The publisher sends a record on the socket.
fn send_on_socket(
    sender: &mut RingSender,
    sent: &mut VecDeque<Item>,
    socket: &mut VecDeque<u64>,
    records: &mut u64,
) {
    sender.record_sent();
    sent.push_back(Item::Socket(*records));
    socket.push_back(*records);
    *records += 1;
}

/// Checks what [`RingReceiver::next`] (or [`RingReceiver::next_into`]) said.
fn on_next(
    next: Next,
    receiver: &RingReceiver,
    sent: &mut VecDeque<Item>,
    socket: &VecDeque<u64>,
    created: ring::Layout,
    clean: bool,
) {
    match next {
        Next::Record => match MessageRef::of(receiver.record()) {
            Some(MessageRef::Inline { header, payload }) => {
                assert!(payload.len() <= created.inline_max());
                if clean {
                    expect_ring(sent, header, &ModelBody::Inline(payload.to_vec()));
                }
            }
            Some(MessageRef::Pooled {
                header,
                segment,
                offset,
                len,
            }) => {
                let range = PoolRange {
                    segment,
                    offset,
                    len,
                };
                assert!(
                    range
                        .offset
                        .checked_add(range.len)
                        .is_some_and(|end| end <= created.pool_len())
                );
                if clean {
                    expect_ring(sent, header, &ModelBody::Pool(range));
                }
            }
            other => panic!("a message record, not {other:?}"),
        },
        // The next ring message waits for a socket record not read yet.
        Next::Socket => {
            if clean {
                assert!(matches!(sent.front(), Some(Item::Socket(_))), "{sent:?}");
                assert!(!socket.is_empty());
            }
        }
        // Nothing in the ring: what comes next, if anything, is on the socket.
        Next::Empty => {
            if clean {
                assert!(
                    sent.front().is_none_or(|i| matches!(i, Item::Socket(_))),
                    "{sent:?}"
                );
            }
        }
    }
}

/// The subscriber handed on a ring message: the next one sent.
fn expect_ring(sent: &mut VecDeque<Item>, header: MessageHeader, body: &ModelBody) {
    let expected = Item::Ring(header.topic, header.seq, body.clone());
    assert_eq!(sent.pop_front(), Some(expected), "in the order sent");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(ops: Vec<LinkOp>) -> LinkCase {
        LinkCase {
            capacity_log2: 2,
            inline_max: 16,
            return_log2: 1,
            pool_len: 4096,
            header: Vec::new(),
            ops,
        }
    }

    fn range(offset: u64, len: u64) -> PoolRange {
        PoolRange {
            segment: 1,
            offset,
            len,
        }
    }

    /// Ring messages and socket records merged back into the order sent: a message sent
    /// after a record waits for it (held), one sent before it comes first; an inline one
    /// too long for a slot takes the socket.
    #[test]
    fn a_link_hands_on_what_was_sent_in_order() {
        use LinkOp::*;
        run_link(&case(vec![
            Inline { binding: 1, len: 5 },
            Socket,
            Inline { binding: 1, len: 7 },
            Pooled(range(0, 100)),
            Inline {
                binding: 2,
                len: 40,
            },
            NextInto { short: 0 },
            // Held behind the socket record.
            NextInto { short: 0 },
            Next,
            ReadSocket,
            NextInto { short: 0 },
            Next,
            ReadSocket,
            Next,
        ]));
    }

    /// A buffer too short for a held message leaves it held; the next one gets it.
    #[test]
    fn a_held_message_survives_a_short_buffer() {
        use LinkOp::*;
        run_link(&case(vec![
            Socket,
            Inline { binding: 1, len: 9 },
            NextInto { short: 0 },
            ReadSocket,
            NextInto { short: 2 },
            NextInto { short: 0 },
            Next,
        ]));
    }

    /// Ranges given back come back to the publisher in order, as far as the return ring
    /// has room.
    #[test]
    fn returns_come_back_in_order() {
        use LinkOp::*;
        let slot = |offset| SlotRef { segment: 1, offset };
        run_link(&case(vec![
            Pooled(range(0, 10)),
            Pooled(range(10, 10)),
            Next,
            Next,
            GiveBack(slot(0)),
            GiveBack(slot(10)),
            GiveBack(slot(20)),
            WatchReturns { lent: 2 },
            TakeReturns { max: 1 },
            TakeReturns { max: 7 },
            Park,
            Wait,
            Writing,
        ]));
    }

    /// Foreign writes make errors legal, never a panic.
    #[test]
    fn a_lying_peer_is_an_error_at_most() {
        use LinkOp::*;
        let mut c = case(vec![
            Inline { binding: 1, len: 5 },
            Write {
                word: 3,
                value: u64::MAX,
            },
            Inline { binding: 1, len: 5 },
            NextInto { short: 0 },
            Next,
            ReadSocket,
            GiveBack(SlotRef {
                segment: 9,
                offset: 9,
            }),
            TakeReturns { max: 3 },
        ]);
        run_link(&c);
        c.header = vec![(0, 7), (1, u64::MAX), (2, 0)];
        run_link(&c);
    }
}
