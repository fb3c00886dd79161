//! Typed payloads beside bytes, for both drivers: plain-old-data values loaned and read in
//! place ([`PodLoan`], [`Message::pod`]) and serde values encoded with bincode
//! ([`encode`], [`Message::decode`]), each checked against the type its publisher declared
//! ([`TypeName`], [`pod_mime`], [`bincode_mime`], [`TopicTypes`], [`TypeError`]).

use std::borrow::Cow;
use std::fmt;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use ipc_proto::{NodeId, View};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Message;

/// The mime type of [`Pod`] payloads; parameters follow (see [`TopicTypes`]).
pub const POD_MIME: &str = "application/x-ipc-pod";

/// The mime type of bincode-encoded serde payloads; a parameter follows.
pub const BINCODE_MIME: &str = "application/x-ipc-bincode";

/// Most bytes that decoding one serde message may allocate (bincode's limit): a peer's bytes
/// are untrusted, and a length prefix that claims more fails with [`TypeError::Decode`]
/// instead of allocating.
pub const DECODE_LIMIT: usize = 64 << 20;

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// The name a payload type is declared with in its topic's mime.
///
/// The default is [`std::any::type_name`], which is readable but may change between compiler
/// versions: processes built separately should agree on a name of their own.
///
/// ```
/// use ipc_driver_core::TypeName;
///
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[repr(C)]
/// struct Pose { x: f32, y: f32, heading: f32 }
///
/// impl TypeName for Pose {
///     fn type_name() -> Cow<'static, str> { "robot.Pose/1".into() }
/// }
/// # use std::borrow::Cow;
/// assert_eq!(Pose::type_name(), "robot.Pose/1");
/// ```
pub trait TypeName {
    /// The type's name: `std::any::type_name::<Self>()` unless overridden.
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(std::any::type_name::<Self>())
    }
}

macro_rules! type_names {
    ($($t:ty),* $(,)?) => { $(impl TypeName for $t {})* };
}
type_names!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    serde_json::Value,
);
impl<T: TypeName, const N: usize> TypeName for [T; N] {}
impl<T: TypeName> TypeName for Vec<T> {}
/// Named as `String`, which encodes the same: a publisher of `str` is read as a `String`.
impl TypeName for str {
    fn type_name() -> Cow<'static, str> {
        String::type_name()
    }
}
/// Named as `Vec<T>`, which encodes the same: a publisher of `[T]` is read as a `Vec<T>`.
impl<T: TypeName> TypeName for [T] {
    fn type_name() -> Cow<'static, str> {
        Vec::<T>::type_name()
    }
}
impl<T: TypeName> TypeName for Option<T> {}
impl<A: TypeName, B: TypeName> TypeName for (A, B) {}

/// The mime a publisher of `T` as plain old data declares: `application/x-ipc-pod;
/// size=<size_of::<T>()>; type=<T::type_name()>`.
pub fn pod_mime<T: Pod + TypeName>() -> String {
    format!(
        "{POD_MIME}; size={}; type={}",
        size_of::<T>(),
        T::type_name()
    )
}

/// The mime a publisher of `T` encoded with bincode declares: `application/x-ipc-bincode;
/// type=<T::type_name()>`.
pub fn bincode_mime<T: TypeName + ?Sized>() -> String {
    format!("{BINCODE_MIME}; type={}", T::type_name())
}

/// Why a typed payload could not be sent or read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeError {
    /// The message's publisher declared another type for the topic than the one expected, or
    /// none that this node knows of (`declared: None`: it has no such topic in this node's
    /// view, perhaps not yet).
    #[error("expected a payload of type {expected:?}, the publisher declared {declared:?}")]
    Mismatch {
        /// The mime expected.
        expected: String,
        /// The mime the publisher declared.
        declared: Option<String>,
    },
    /// The payload's length is not the size of the plain-old-data type.
    #[error("a payload of {len} bytes cannot hold a value of {expected} bytes")]
    Size {
        /// The type's size.
        expected: usize,
        /// The payload's length.
        len: usize,
    },
    /// The payload does not decode as the type: malformed, truncated, trailing bytes, or a
    /// length over [`DECODE_LIMIT`].
    #[error("the payload does not decode: {0}")]
    Decode(String),
    /// The value does not encode (a serde `Serialize` implementation failed).
    #[error("the value does not encode: {0}")]
    Encode(String),
}

/// What a node knows of the types its group's publishers declared: each driver's node (and
/// any [`View`]) answers it.
///
/// # The declared type
/// A typed publisher announces its topic with a `mime` that names the payload's encoding and
/// type; `type=` is always the last parameter and runs to the end of the string (a Rust type
/// name may hold `;`, as in `[u8; 4]`):
///
/// | encoding | mime |
/// |---|---|
/// | a [`Pod`] value, its bytes as they are in memory | `application/x-ipc-pod; size=<bytes>; type=<name>` |
/// | a serde value, bincode 2 `standard()` encoding | `application/x-ipc-bincode; type=<name>` |
///
/// A typed read compares the mime its publisher declared for the topic (in the reader's view
/// of the group) with the one it expects, byte for byte, and refuses a message whose
/// publisher declared anything else ([`TypeError::Mismatch`]) before it looks at the bytes.
///
/// A message can arrive before the reader's view has its publisher's announcement (the data
/// link and the hub's records travel apart): that read is a `Mismatch` with `declared: None`,
/// and the same read succeeds once the view has it.
pub trait TopicTypes {
    /// The mime `publisher` declared for `topic`, if it publishes it (in this node's view).
    fn declared_type(&self, publisher: NodeId, topic: &str) -> Option<Cow<'_, str>>;
}

impl TopicTypes for View {
    fn declared_type(&self, publisher: NodeId, topic: &str) -> Option<Cow<'_, str>> {
        let (mime, _) = self.node(publisher)?.publishes.get(topic)?;
        Some(Cow::Borrowed(mime))
    }
}

impl<T: TopicTypes + ?Sized> TopicTypes for &T {
    fn declared_type(&self, publisher: NodeId, topic: &str) -> Option<Cow<'_, str>> {
        (**self).declared_type(publisher, topic)
    }
}

/// Checks that `declared` (a publisher's mime) is `expected`.
fn check(declared: Option<Cow<'_, str>>, expected: String) -> Result<(), TypeError> {
    match declared {
        Some(d) if d == expected => Ok(()),
        declared => Err(TypeError::Mismatch {
            expected,
            declared: declared.map(Cow::into_owned),
        }),
    }
}

/// `value` encoded as a bincode payload (what a serde publisher sends).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, TypeError> {
    bincode::serde::encode_to_vec(value, bincode_config())
        .map_err(|e| TypeError::Encode(e.to_string()))
}

/// `bytes` decoded as a `T`, all of them, allocating at most [`DECODE_LIMIT`]: never panics
/// on hostile bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, TypeError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode_config())
        .map_err(|e| TypeError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(TypeError::Decode(format!(
            "{} trailing bytes",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// `bytes` as a `&T` where they are aligned for it, else a copy: a size other than
/// `size_of::<T>()` is [`TypeError::Size`].
pub fn pod_from_bytes<T: Pod>(bytes: &[u8]) -> Result<Cow<'_, T>, TypeError> {
    if bytes.len() != size_of::<T>() {
        return Err(TypeError::Size {
            expected: size_of::<T>(),
            len: bytes.len(),
        });
    }
    Ok(match bytemuck::try_from_bytes(bytes) {
        Ok(value) => Cow::Borrowed(value),
        // The length is right, so only the alignment failed: an inline payload's buffer.
        Err(_) => Cow::Owned(bytemuck::pod_read_unaligned(bytes)),
    })
}

impl Message {
    /// The mime this message's publisher declared for its topic, as `types` (a node, or a
    /// view of the group) knows it.
    pub fn declared_type<'t>(&self, types: &'t impl TopicTypes) -> Option<Cow<'t, str>> {
        types.declared_type(self.publisher(), self.topic())
    }

    /// The payload as a `T`, checked against the type its publisher declared
    /// ([`pod_mime::<T>()`](pod_mime)) in `types` (the node, or its view).
    ///
    /// Borrowed without a copy where the payload is aligned for `T` (always in a `fresh` or
    /// `pooled` segment, which are page-aligned); an inline payload that is not is copied out
    /// with [`bytemuck::pod_read_unaligned`]. Either way, read it as `&*value`.
    pub fn pod<T: Pod + TypeName>(&self, types: &impl TopicTypes) -> Result<Cow<'_, T>, TypeError> {
        check(self.declared_type(types), pod_mime::<T>())?;
        pod_from_bytes(self)
    }

    /// The payload decoded as a `T` from bincode, checked against the type its publisher
    /// declared ([`bincode_mime::<T>()`](bincode_mime)) in `types` (the node, or its view).
    /// Hostile bytes give [`TypeError::Decode`], never a panic or an allocation over
    /// [`DECODE_LIMIT`].
    pub fn decode<T: DeserializeOwned + TypeName>(
        &self,
        types: &impl TopicTypes,
    ) -> Result<T, TypeError> {
        check(self.declared_type(types), bincode_mime::<T>())?;
        decode(self)
    }
}

/// A loan holding one `T`, written in place: a driver's loan of `size_of::<T>()` bytes seen
/// as a `T` (each driver names it `PodLoan<T>`).
///
/// In a `pooled` or `fresh` segment (page-aligned) the `T` is the loan's bytes, with no copy;
/// a loan whose bytes are not aligned for `T` (an inline buffer may not be) holds a `T` beside
/// them, copied into them when it is sent.
pub struct PodLoan<T, L> {
    loan: L,
    /// `Some` where the loan's bytes are not aligned for `T`.
    value: Option<T>,
}

impl<T: Pod, L: DerefMut<Target = [u8]>> PodLoan<T, L> {
    /// Wraps a loan of exactly `size_of::<T>()` bytes, zeroed. For drivers.
    pub fn new(mut loan: L) -> Self {
        assert_eq!(loan.len(), size_of::<T>(), "a driver loans size_of::<T>()");
        loan.fill(0);
        let value = bytemuck::try_from_bytes::<T>(&loan)
            .is_err()
            .then(T::zeroed);
        Self { loan, value }
    }

    /// The loan's bytes, holding the value. For drivers, to send.
    pub fn into_loan(mut self) -> L {
        if let Some(value) = self.value.take() {
            self.loan.copy_from_slice(bytemuck::bytes_of(&value));
        }
        self.loan
    }

    /// The underlying loan (how it travels: see its `via`).
    pub fn loan(&self) -> &L {
        &self.loan
    }
}

impl<T: Pod, L: DerefMut<Target = [u8]>> Deref for PodLoan<T, L> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.value {
            Some(v) => v,
            // `new` found the bytes aligned and the right size, and they do not move.
            None => bytemuck::from_bytes(&self.loan),
        }
    }
}

impl<T: Pod, L: DerefMut<Target = [u8]>> DerefMut for PodLoan<T, L> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            // As in `deref`.
            None => bytemuck::from_bytes_mut(&mut self.loan),
        }
    }
}

impl<T, L: fmt::Debug> fmt::Debug for PodLoan<T, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PodLoan")
            .field("type", &std::any::type_name::<T>())
            .field("loan", &self.loan)
            .field("in_place", &self.value.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mimes_put_the_type_last() {
        assert_eq!(
            pod_mime::<[u8; 4]>(),
            "application/x-ipc-pod; size=4; type=[u8; 4]"
        );
        assert_eq!(
            bincode_mime::<Vec<String>>(),
            "application/x-ipc-bincode; type=alloc::vec::Vec<alloc::string::String>"
        );
    }

    #[test]
    fn borrowed_forms_are_named_as_their_owned_forms() {
        assert_eq!(bincode_mime::<str>(), bincode_mime::<String>());
        assert_eq!(bincode_mime::<[u16]>(), bincode_mime::<Vec<u16>>());
        let bytes = encode("hello").expect("encodes");
        assert_eq!(decode::<String>(&bytes), Ok("hello".to_string()));
    }

    #[test]
    fn pod_sizes_are_checked_and_unaligned_bytes_copied() {
        let bytes = [0u8, 1, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(
            pod_from_bytes::<u32>(&bytes[..3]),
            Err(TypeError::Size {
                expected: 4,
                len: 3
            })
        );
        // One of these two windows is misaligned for u32: both read the same.
        assert_eq!(*pod_from_bytes::<u32>(&bytes[1..5]).expect("4 bytes"), 1);
        assert_eq!(*pod_from_bytes::<u32>(&bytes[5..9]).expect("4 bytes"), 2);
    }

    #[test]
    fn hostile_bytes_decode_to_errors() {
        // A Vec<u64> claiming 2^61 elements: over the limit, refused before allocating.
        let mut claim = vec![253u8];
        claim.extend_from_slice(&(1u64 << 61).to_le_bytes());
        assert!(matches!(
            decode::<Vec<u64>>(&claim),
            Err(TypeError::Decode(_))
        ));
        // Truncated, trailing, invalid UTF-8.
        let good = encode(&("hi".to_string(), 7u32)).expect("encodes");
        assert_eq!(decode::<(String, u32)>(&good), Ok(("hi".to_string(), 7u32)));
        assert!(decode::<(String, u32)>(&good[..good.len() - 2]).is_err());
        let mut long = good.clone();
        long.push(0);
        assert!(decode::<(String, u32)>(&long).is_err());
        assert!(decode::<String>(&[2, 0xff, 0xfe]).is_err());
    }
}
