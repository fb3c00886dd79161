//! Typed publishing in a calloop loop: [`Node::open_pod_publisher`] and
//! [`Node::open_serde_publisher`] declare a topic's payload type in its mime, and
//! [`Node::loan_pod`], [`Node::publish_pod`] and [`Node::publish_serde`] send values of that
//! type only. Reading is [`Message::pod`] and [`Message::decode`], checked against the
//! [`Node`] (or its [`View`](crate::View)), which answers [`TopicTypes`].
//!
//! [`Message::pod`]: crate::Message::pod
//! [`Message::decode`]: crate::Message::decode

use std::borrow::Cow;

use bytemuck::Pod;
use ipc_driver_core::{
    DriverError, TopicTypes, TypeError, TypeName, bincode_mime, encode, pod_mime,
};
use ipc_proto::NodeId;
use ipc_proto::data::PublisherOptions;
use serde::Serialize;

use crate::data::Loan;
use crate::node::Node;

/// A loan holding one `T` ([`Node::loan_pod`]), written in place through `Deref`: in a pool
/// segment or a fresh memfd the value is the payload's bytes, with no copy.
pub type PodLoan<T> = ipc_driver_core::PodLoan<T, Loan>;

impl TopicTypes for Node {
    fn declared_type(&self, publisher: NodeId, topic: &str) -> Option<Cow<'_, str>> {
        self.view().declared_type(publisher, topic)
    }
}

impl Node {
    /// Starts publishing `T` values as their bytes on `topic`, announced as
    /// [`pod_mime::<T>()`](crate::pod_mime) (see [`open_publisher`](Self::open_publisher)).
    pub fn open_pod_publisher<T: Pod + TypeName>(
        &mut self,
        topic: &str,
        options: PublisherOptions,
    ) -> Result<(), DriverError> {
        self.open_publisher(topic, &pod_mime::<T>(), options)
    }

    /// Starts publishing `T` values encoded with bincode on `topic`, announced as
    /// [`bincode_mime::<T>()`](crate::bincode_mime).
    ///
    /// A reader decodes them with [`Message::decode`](crate::Message::decode), checked against
    /// its node (the README's calloop example):
    ///
    /// ```no_run
    /// use calloop::EventLoop;
    /// use ipc_driver_calloop::{NodeEvent, NodeSource, PublisherOptions, SubscriptionOptions};
    ///
    /// let mut event_loop: EventLoop<'_, ()> = EventLoop::try_new()?;
    /// let mut source = NodeSource::builder("viewer").group("robot").join()?;
    /// source.node().open_serde_publisher::<str>("notes", PublisherOptions::default())?;
    /// source.node().publish_serde("notes", "ready")?;
    /// source.node().open_subscription("notes", SubscriptionOptions::default())?;
    /// event_loop.handle().insert_source(source, |event, node, _| match event {
    ///     NodeEvent::Message(m) => match m.decode::<String>(&*node) {   // typed, or m's bytes
    ///         Ok(text) => println!("{}: {text}", m.topic()),
    ///         Err(e) => println!("{}: {} bytes, not text: {e}", m.topic(), m.len()),
    ///     },
    ///     NodeEvent::Topology(e) => println!("{e:?} (hub: {:?})", node.hub()),
    ///     _ => {}
    /// })?;
    /// event_loop.run(None, &mut (), |_| {})?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_serde_publisher<T: Serialize + TypeName + ?Sized>(
        &mut self,
        topic: &str,
        options: PublisherOptions,
    ) -> Result<(), DriverError> {
        self.open_publisher(topic, &bincode_mime::<T>(), options)
    }

    /// Checks that this node publishes `topic` with the payload type `expected`.
    fn check_publishing(&self, topic: &str, expected: String) -> Result<(), DriverError> {
        match self.publishing_mime(topic) {
            None => Err(DriverError::NotPublishing(topic.into())),
            Some(m) if m == expected => Ok(()),
            Some(m) => Err(TypeError::Mismatch {
                expected,
                declared: Some(m.into()),
            }
            .into()),
        }
    }

    /// A zeroed `T` for the next message of `topic`, written in place and sent without a copy
    /// by [`send_pod`](Self::send_pod); [`DriverError::Type`] unless the topic was opened
    /// with [`open_pod_publisher::<T>`](Self::open_pod_publisher).
    pub fn loan_pod<T: Pod + TypeName>(&mut self, topic: &str) -> Result<PodLoan<T>, DriverError> {
        self.check_publishing(topic, pod_mime::<T>())?;
        Ok(PodLoan::new(self.loan(topic, size_of::<T>())?))
    }

    /// Sends a loaned value as the next message of its topic (see [`send`](Self::send)).
    pub fn send_pod<T: Pod>(&mut self, loan: PodLoan<T>) -> Result<(), DriverError> {
        self.send(loan.into_loan())
    }

    /// Publishes a copy of `value` on `topic`, opened with
    /// [`open_pod_publisher::<T>`](Self::open_pod_publisher).
    pub fn publish_pod<T: Pod + TypeName>(
        &mut self,
        topic: &str,
        value: &T,
    ) -> Result<(), DriverError> {
        self.check_publishing(topic, pod_mime::<T>())?;
        self.publish(topic, bytemuck::bytes_of(value))
    }

    /// Publishes `value` encoded with bincode on `topic`, opened with
    /// [`open_serde_publisher::<T>`](Self::open_serde_publisher).
    pub fn publish_serde<T: Serialize + TypeName + ?Sized>(
        &mut self,
        topic: &str,
        value: &T,
    ) -> Result<(), DriverError> {
        self.check_publishing(topic, bincode_mime::<T>())?;
        self.publish(topic, &encode(value)?)
    }
}
