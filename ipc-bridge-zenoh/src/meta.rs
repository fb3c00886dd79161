//! What travels beside a payload as a Zenoh attachment: origin bridge, publisher, seq, mime.

/// The attachment format's version byte.
const VERSION: u8 = 1;

/// The longest mime carried; a longer one is refused by [`Meta::decode`] and cut by
/// [`Meta::encode`]'s callers (they never send one: see [`Meta::new`]).
pub const MAX_MIME: usize = 255;

/// The longest attachment [`Meta::decode`] reads: version, origin, publisher, seq, mime.
pub const MAX_ATTACHMENT: usize = 1 + 16 + 8 + 8 + 1 + MAX_MIME;

/// The mime of a sample that came without an attachment (a plain Zenoh publisher).
pub const PLAIN_MIME: &str = "application/octet-stream";

/// A message's metadata on the wire, in the sample's attachment.
///
/// Layout (little-endian): version `1`, the origin bridge's 16-byte Zenoh session id, the
/// publisher's node id (`u64`), the publisher's sequence number (`u64`), the mime's length (one
/// byte) and the mime (UTF-8).
///
/// ```
/// use ipc_bridge_zenoh::Meta;
///
/// let meta = Meta::new([7; 16], 42, 1, "text/plain");
/// assert_eq!(Meta::decode(&meta.encode()), Ok(meta));
/// assert!(Meta::decode(&[9, 9]).is_err());          // malformed: an error, never a panic
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The Zenoh session id of the bridge that put the sample (loop prevention).
    pub origin: [u8; 16],
    /// The publishing node's id in its group (0 for a sample from a plain Zenoh publisher).
    pub publisher: u64,
    /// The publisher's sequence number on its topic (0: unknown).
    pub seq: u64,
    /// The payload's type, as its publisher announced it.
    pub mime: String,
}

/// Why an attachment was refused ([`Meta::decode`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    /// It ends before its fields do.
    #[error("attachment ends early")]
    UnexpectedEnd,
    /// An unknown version byte.
    #[error("unknown attachment version {0}")]
    Version(u8),
    /// Longer than [`MAX_ATTACHMENT`].
    #[error("attachment of {len} bytes, the maximum is {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_ATTACHMENT`].
        max: usize,
    },
    /// The mime is not UTF-8.
    #[error("mime is not UTF-8")]
    Mime,
    /// Bytes after the mime.
    #[error("{0} bytes after the attachment's fields")]
    Trailing(usize),
}

impl Meta {
    /// Metadata for a message; a mime longer than [`MAX_MIME`] is cut at a character boundary.
    pub fn new(origin: [u8; 16], publisher: u64, seq: u64, mime: &str) -> Self {
        let mut end = mime.len().min(MAX_MIME);
        while !mime.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            origin,
            publisher,
            seq,
            mime: mime[..end].to_owned(),
        }
    }

    /// The attachment's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mime = &self.mime.as_bytes()[..self.mime.len().min(MAX_MIME)];
        let mut out = Vec::with_capacity(1 + 16 + 8 + 8 + 1 + mime.len());
        out.push(VERSION);
        out.extend_from_slice(&self.origin);
        out.extend_from_slice(&self.publisher.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        // At most MAX_MIME (255) bytes: the cast is exact.
        out.push(mime.len() as u8);
        out.extend_from_slice(mime);
        out
    }

    /// Reads an attachment from a peer: bounded, checked, never panics.
    pub fn decode(bytes: &[u8]) -> Result<Self, MetaError> {
        if bytes.len() > MAX_ATTACHMENT {
            return Err(MetaError::TooLong {
                len: bytes.len(),
                max: MAX_ATTACHMENT,
            });
        }
        let (&version, rest) = bytes.split_first().ok_or(MetaError::UnexpectedEnd)?;
        if version != VERSION {
            return Err(MetaError::Version(version));
        }
        let (origin, rest) = rest
            .split_first_chunk::<16>()
            .ok_or(MetaError::UnexpectedEnd)?;
        let (publisher, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(MetaError::UnexpectedEnd)?;
        let (seq, rest) = rest
            .split_first_chunk::<8>()
            .ok_or(MetaError::UnexpectedEnd)?;
        let (&len, rest) = rest.split_first().ok_or(MetaError::UnexpectedEnd)?;
        let mime = rest
            .get(..usize::from(len))
            .ok_or(MetaError::UnexpectedEnd)?;
        let trailing = rest.len() - mime.len();
        if trailing != 0 {
            return Err(MetaError::Trailing(trailing));
        }
        let mime = std::str::from_utf8(mime).map_err(|_| MetaError::Mime)?;
        Ok(Self {
            origin: *origin,
            publisher: u64::from_le_bytes(*publisher),
            seq: u64::from_le_bytes(*seq),
            mime: mime.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let meta = Meta::new([3; 16], u64::MAX, 17, "image/x-raw; w=640");
        assert_eq!(Meta::decode(&meta.encode()), Ok(meta));
    }

    #[test]
    fn long_mime_is_cut_on_a_char_boundary() {
        let mime = "é".repeat(200); // 400 bytes
        let meta = Meta::new([0; 16], 1, 1, &mime);
        assert!(meta.mime.len() <= MAX_MIME);
        assert_eq!(Meta::decode(&meta.encode()), Ok(meta));
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let bytes = Meta::new([1; 16], 2, 3, "text/plain").encode();
        for n in 0..bytes.len() {
            assert!(Meta::decode(&bytes[..n]).is_err(), "prefix of {n} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Meta::decode(&longer), Err(MetaError::Trailing(1)));
        assert_eq!(
            Meta::decode(&[0; MAX_ATTACHMENT + 1]),
            Err(MetaError::TooLong {
                len: MAX_ATTACHMENT + 1,
                max: MAX_ATTACHMENT
            })
        );
        let mut bad = bytes;
        bad[0] = 2;
        assert_eq!(Meta::decode(&bad), Err(MetaError::Version(2)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep (a fuzzer would do better): lengths around the fields.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..=MAX_ATTACHMENT + 2 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = Meta::decode(&bytes);
        }
    }
}
