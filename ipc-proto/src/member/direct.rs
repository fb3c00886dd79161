//! The member's way for messages that skips records: a publish's inline messages straight
//! into the rings ([`Member::publish_direct`]), and a ring's inline messages in as their parts
//! ([`Member::receive_inline`]) or in the data plane's own buffers
//! ([`Member::receive_payload`]). Each does what [`Member::handle`] does with the same input,
//! less the encoding and decoding of a record and the copies that go with it.

use std::sync::Arc;
use std::time::Instant;

use crate::data::{DataCmd, Delivery, DirectSend, Outbound, PayloadBuffer};
use crate::error::CmdError;
use crate::ids::PeerId;
use crate::wire::{DataFrame, MessageHeader, encode_data};

use super::{Kind, Member, MemberCmd, MemberInput, MemberOutput};

impl Member {
    /// [`handle`](Self::handle) of a [`DataCmd::Publish`], whose inline messages go to
    /// `direct` where it takes them instead of as [`MemberOutput::Transmit`]s of their records
    /// (see [`DirectSend`]); what it does not take goes out as `handle` sends it. Only while
    /// this member has no output waiting to be taken (the driver polled them all since the
    /// last input), as a record ahead of a message must go first. Any other command is
    /// handled as by `handle`.
    pub fn publish_direct(
        &mut self,
        now: Instant,
        cmd: DataCmd,
        direct: &mut dyn DirectSend,
    ) -> Result<(), CmdError> {
        match cmd {
            DataCmd::Publish {
                topic,
                payload,
                expired,
            } => self.publish_topic(now, &topic, payload.into(), expired, direct),
            cmd => self.handle(now, MemberInput::Cmd(MemberCmd::Data(cmd))),
        }
    }

    /// [`publish_direct`](Self::publish_direct) of a [`DataCmd::Publish`] of `topic`,
    /// `payload` and `expired`, the topic borrowed: a command owns its `Arc`, whose clone and
    /// drop (an atomic operation each) a small message would pay for nothing. An inline
    /// payload's bytes may be borrowed too ([`Outbound::Inline`]): copied into the rings and
    /// records that carry them, or into a buffer of their own if an output not taken yet must
    /// go first.
    pub fn publish_topic(
        &mut self,
        now: Instant,
        topic: &Arc<str>,
        payload: Outbound<'_>,
        expired: bool,
        direct: &mut dyn DirectSend,
    ) -> Result<(), CmdError> {
        if !self.out.is_empty() {
            let cmd = DataCmd::Publish {
                topic: Arc::clone(topic),
                payload: payload.into_owned_with(|| self.spare_buffer()),
                expired,
            };
            return self.handle(now, MemberInput::Cmd(MemberCmd::Data(cmd)));
        }
        let Some(d) = &mut self.data else {
            return Err(CmdError::Observer);
        };
        d.publish_topic(now, topic, payload, expired, direct)?;
        self.take_data_outputs();
        self.after_input(true, true);
        Ok(())
    }

    /// [`handle`](Self::handle) of a [`MemberInput::Record`] on a data link that is an inline
    /// message, given as its header and payload (see
    /// [`DataPlane::receive_inline`](crate::data::DataPlane::receive_inline)).
    pub fn receive_inline(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: &[u8],
    ) {
        match (&mut self.data, self.links.get(&peer)) {
            (Some(d), Some(Kind::Data)) => d.receive_inline(now, peer, header, payload),
            // Not a data link (any more): what `handle` does with its record.
            _ => {
                let record = encode_data(&DataFrame::Inline(header), payload);
                let input = MemberInput::Record {
                    peer,
                    data: &record,
                    segments: &[],
                };
                // Records are no commands: never refused.
                let _ = self.handle(now, input);
                return;
            }
        }
        self.take_data_outputs();
        self.after_input(false, true);
    }

    /// A buffer for an inline payload to receive (see
    /// [`DataPlane::payload_buffer`](crate::data::DataPlane::payload_buffer)).
    pub fn payload_buffer(&mut self, len: usize) -> PayloadBuffer {
        match &mut self.data {
            Some(d) => d.payload_buffer(len),
            None => PayloadBuffer::zeroed(len),
        }
    }

    /// [`Self::receive_inline`] of a payload written into a [`Self::payload_buffer`] (see
    /// [`DataPlane::receive_payload`](crate::data::DataPlane::receive_payload)).
    pub fn receive_payload(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: PayloadBuffer,
    ) {
        if let Some(d) = self.receive_payload_direct(now, peer, header, payload) {
            // Handed back with nothing ahead of it: the first of this input's outputs (those
            // after it are queued already).
            self.out.push_front(MemberOutput::Deliver(d));
        }
    }

    /// [`Self::receive_payload`], its message returned rather than queued as a
    /// [`MemberOutput::Deliver`] when no output waits ahead of
    /// it (see [`DataPlane::receive_payload_direct`](crate::data::DataPlane::receive_payload_direct)):
    /// the caller hands it on first, then polls the outputs, which may follow it. `None`: the
    /// message (if any) is among the outputs, in its place.
    #[must_use = "a message returned is delivered by the caller, or lost"]
    pub fn receive_payload_direct(
        &mut self,
        now: Instant,
        peer: PeerId,
        header: MessageHeader,
        payload: PayloadBuffer,
    ) -> Option<Delivery> {
        let d = match (&mut self.data, self.links.get(&peer)) {
            (Some(d), Some(Kind::Data)) if self.out.is_empty() => {
                d.receive_payload_direct(now, peer, header, payload)
            }
            (Some(d), Some(Kind::Data)) => {
                d.receive_payload(now, peer, header, payload);
                None
            }
            _ => {
                self.receive_inline(now, peer, header, payload.bytes());
                return None;
            }
        };
        self.take_data_outputs();
        self.after_input(false, true);
        d
    }
}
