//! Linux abstract-namespace socket addresses, for tests and tools that poke at sockets.
//!
//! Groups no longer meet in the abstract namespace (any user can bind any abstract name, so a
//! name there can be squatted): their sockets are files in a directory, see
//! [`rendezvous`](crate::rendezvous). Abstract names remain useful for throwaway sockets.
//!
//! Names are shown as `@name`, the convention of `ss -x` and `/proc/net/unix`.
//!
//! # Exact-length names
//! The address length passed to `bind`/`connect` covers exactly the leading NUL plus the name,
//! with no NUL padding. Linux treats every byte up to the length as part of an abstract name,
//! so `@a` and the same name padded with NULs to `sizeof(sockaddr_un)` are *different*
//! sockets.

use std::fmt;

use rustix::net::SocketAddrUnix;

/// Longest abstract name: `sun_path` is 108 bytes and the first one is the NUL marker.
pub const MAX_NAME_LEN: usize = 107;

/// Why an abstract name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// A raw abstract name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("abstract socket name is {len} bytes long, the maximum is {max}")]
    NameTooLong {
        /// Length of the rejected name in bytes.
        len: usize,
        /// The maximum, [`MAX_NAME_LEN`].
        max: usize,
    },
}

/// A Linux abstract-namespace Unix socket address with an exact-length name.
///
/// `Display` shows `@name` (non-printable bytes escaped); [`Self::as_unix_addr`] gives the
/// address to pass to the kernel.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AbstractAddr {
    inner: SocketAddrUnix,
}

impl AbstractAddr {
    /// An address for an arbitrary abstract name (without the leading NUL), e.g. for tests.
    ///
    /// Any bytes are allowed; only the length is checked.
    pub fn new(name: &[u8]) -> Result<Self, AddrError> {
        if name.len() > MAX_NAME_LEN {
            return Err(AddrError::NameTooLong {
                len: name.len(),
                max: MAX_NAME_LEN,
            });
        }
        let inner = SocketAddrUnix::new_abstract_name(name)
            .expect("length was checked against sun_path above, the only way this fails");
        Ok(Self { inner })
    }

    /// The name without the leading NUL.
    pub fn name(&self) -> &[u8] {
        self.inner
            .abstract_name()
            .expect("constructed only through SocketAddrUnix::new_abstract_name")
    }

    /// The socket address, for [`socket::listen`](crate::socket::listen) and
    /// [`socket::connect`](crate::socket::connect).
    pub fn as_unix_addr(&self) -> &SocketAddrUnix {
        &self.inner
    }
}

impl fmt::Display for AbstractAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("@")?;
        for chunk in self.name().utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    fmt::Write::write_char(f, c)?;
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AbstractAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AbstractAddr({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_names() {
        assert!(AbstractAddr::new(&[b'x'; MAX_NAME_LEN]).is_ok());
        assert_eq!(
            AbstractAddr::new(&[b'x'; MAX_NAME_LEN + 1]),
            Err(AddrError::NameTooLong {
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
        let odd = AbstractAddr::new(b"a\nb\0c\xff").expect("short name");
        assert_eq!(odd.to_string(), "@a\\nb\\u{0}c\\xff");
    }
}
