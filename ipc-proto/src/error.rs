//! Error types: one enum per concern.

/// Why bytes from a peer could not be read as a frame.
///
/// Any of these means the stream cannot be resynchronised: the machine reports
/// `PeerMisbehaved` and disconnects the peer.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A frame announced a length above the limit (checked before buffering it).
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLong {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame announced a length of zero: not even a tag.
    #[error("empty frame")]
    Empty,
    /// The tag names no frame this version knows.
    #[error("unknown frame tag {0}")]
    UnknownTag(u8),
    /// The peer speaks another protocol version.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u16),
    /// The body ended before a value was complete.
    #[error("frame body ends early")]
    UnexpectedEnd,
    /// The body decoded, with bytes left over.
    #[error("{0} bytes after the end of the frame body")]
    TrailingBytes(usize),
    /// A string or list inside the body is longer than the configured limit.
    #[error("{what} of {len} exceeds the maximum of {max}")]
    FieldTooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a value the protocol forbids (an empty topic, an invalid id, ...).
    #[error("invalid frame body: {0}")]
    Invalid(String),
}

/// Why a command from the local application was refused; the machine's state is unchanged.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmdError {
    /// `Join` was given twice.
    #[error("already joined")]
    AlreadyJoined,
    /// The command needs the node to have joined first.
    #[error("not joined")]
    NotJoined,
    /// The node has left; it takes no more commands.
    #[error("the node has left the group")]
    Closed,
    /// An observer holds no topics.
    #[error("an observer cannot announce or subscribe")]
    Observer,
    /// A topic name or type string is empty or too long.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The node already holds the most topics allowed.
    #[error("a node may hold at most {max} topics")]
    TooManyTopics {
        /// The limit.
        max: usize,
    },
}
