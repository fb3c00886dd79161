//! Typed publishers of the std driver: [`PodPublisher`] (plain-old-data values loaned and
//! written in place) and [`SerdePublisher`] (serde values encoded with bincode), each
//! declaring its payload type in its topic's mime. Reading is [`Message::pod`] and
//! [`Message::decode`], checked against a [`Node`] (which answers [`TopicTypes`]).
//!
//! [`Message::pod`]: crate::Message::pod
//! [`Message::decode`]: crate::Message::decode
//! [`TopicTypes`]: crate::TopicTypes

use std::fmt;
use std::marker::PhantomData;

use bytemuck::Pod;
use ipc_driver_core::{DriverError, TypeName, bincode_mime, encode, pod_mime};
use serde::Serialize;

use crate::data::{Loan, PublisherOptions};
use crate::node::Node;
use crate::pubsub::Publisher;

/// A loan holding one `T` ([`PodPublisher::loan`]), written in place through `Deref`: in a
/// pool segment or a fresh memfd the value is the payload's bytes, with no copy.
pub type PodLoan<T> = ipc_driver_core::PodLoan<T, Loan>;

/// Publishes `T` values as their bytes: created by [`Node::pod_publisher`], which announces
/// the topic with the mime [`pod_mime::<T>()`](crate::pod_mime).
///
/// ```no_run
/// use ipc_driver_std::{Node, Pod, TypeName, Zeroable};
///
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// #[repr(C)]
/// struct Pose { x: f32, y: f32, heading: f32 }
/// impl TypeName for Pose {}
///
/// # fn main() -> Result<(), ipc_driver_std::DriverError> {
/// let node = Node::builder("planner").group("robot").join()?;
/// let poses = node.pod_publisher::<Pose>("pose")?;
/// let mut pose = poses.loan()?;          // written in place
/// pose.x = 1.0;
/// pose.heading = 0.5;
/// poses.send(pose)?;
/// poses.publish(&Pose { x: 2.0, y: 0.0, heading: 0.0 })?;   // a copy
/// # Ok(()) }
/// ```
pub struct PodPublisher<T> {
    publisher: Publisher,
    _type: PhantomData<fn(&T)>,
}

impl<T> fmt::Debug for PodPublisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodPublisher")
            .field("type", &std::any::type_name::<T>())
            .field("publisher", &self.publisher)
            .finish()
    }
}

impl<T: Pod + TypeName> PodPublisher<T> {
    /// The byte publisher underneath (its topic, its modes).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// A zeroed `T` to write in place, sent without a copy by [`send`](Self::send).
    pub fn loan(&self) -> Result<PodLoan<T>, DriverError> {
        Ok(PodLoan::new(self.publisher.loan(size_of::<T>())?))
    }

    /// Sends a loaned value as the next message.
    pub fn send(&self, loan: PodLoan<T>) -> Result<(), DriverError> {
        self.publisher.send(loan.into_loan())
    }

    /// Publishes a copy of `value`.
    pub fn publish(&self, value: &T) -> Result<(), DriverError> {
        self.publisher.publish(bytemuck::bytes_of(value))
    }
}

/// Publishes `T` values encoded with bincode: created by [`Node::serde_publisher`], which
/// announces the topic with the mime [`bincode_mime::<T>()`](crate::bincode_mime).
pub struct SerdePublisher<T: ?Sized> {
    publisher: Publisher,
    _type: PhantomData<fn(&T)>,
}

impl<T: ?Sized> fmt::Debug for SerdePublisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerdePublisher")
            .field("type", &std::any::type_name::<T>())
            .field("publisher", &self.publisher)
            .finish()
    }
}

impl<T: Serialize + TypeName + ?Sized> SerdePublisher<T> {
    /// The byte publisher underneath (its topic, its modes).
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Publishes `value`, encoded ([`DriverError::Type`] if it does not encode).
    pub fn publish(&self, value: &T) -> Result<(), DriverError> {
        self.publisher.publish(&encode(value)?)
    }
}

impl Node {
    /// A data handle that sends `T` values as their bytes on `topic`, declared as
    /// [`pod_mime::<T>()`](crate::pod_mime). Default options.
    pub fn pod_publisher<T: Pod + TypeName>(
        &self,
        topic: &str,
    ) -> Result<PodPublisher<T>, DriverError> {
        self.pod_publisher_with(topic, PublisherOptions::default())
    }

    /// A [`pod_publisher`](Self::pod_publisher) with `options`.
    pub fn pod_publisher_with<T: Pod + TypeName>(
        &self,
        topic: &str,
        options: PublisherOptions,
    ) -> Result<PodPublisher<T>, DriverError> {
        Ok(PodPublisher {
            publisher: self.publisher_with(topic, &pod_mime::<T>(), options)?,
            _type: PhantomData,
        })
    }

    /// A data handle that sends `T` values encoded with bincode on `topic`, declared as
    /// [`bincode_mime::<T>()`](crate::bincode_mime). Default options.
    pub fn serde_publisher<T: Serialize + TypeName + ?Sized>(
        &self,
        topic: &str,
    ) -> Result<SerdePublisher<T>, DriverError> {
        self.serde_publisher_with(topic, PublisherOptions::default())
    }

    /// A [`serde_publisher`](Self::serde_publisher) with `options`.
    pub fn serde_publisher_with<T: Serialize + TypeName + ?Sized>(
        &self,
        topic: &str,
        options: PublisherOptions,
    ) -> Result<SerdePublisher<T>, DriverError> {
        Ok(SerdePublisher {
            publisher: self.publisher_with(topic, &bincode_mime::<T>(), options)?,
            _type: PhantomData,
        })
    }
}
