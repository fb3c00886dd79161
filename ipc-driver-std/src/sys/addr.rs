//! Linux abstract-namespace socket addresses for a group.
//!
//! A group of nodes meets at two kinds of names, both in the abstract namespace (no file on
//! disk, so nothing stale is left behind after a crash, and a name is released the moment the
//! last fd bound to it is closed):
//!
//! - `ipc-pubsub/<group>/hub`: the group's hub socket ([`hub_addr`]); whoever binds it is hub.
//! - `ipc-pubsub/<group>/data/<token as 16 lowercase hex digits>`: a node's own socket
//!   ([`data_addr`]).
//!
//! Names are shown as `@name`, the convention of `ss -x` and `/proc/net/unix`.
//!
//! # Exact-length names
//! The address length passed to `bind`/`connect` covers exactly the leading NUL plus the name,
//! with no NUL padding. Linux treats every byte up to the length as part of an abstract name,
//! so `@ipc-pubsub/g/hub` and the same name padded with NULs to `sizeof(sockaddr_un)` are
//! *different* sockets. C or C++ code that passes `sizeof(struct sockaddr_un)` as the length
//! (as many examples, and the original C++ ipc-pubsub, do) would need the exact length instead
//! to interoperate.

use std::fmt;

use nix::sys::socket::UnixAddr;

pub use ipc_proto::names::{GroupError, MAX_GROUP_LEN, MAX_NAME_LEN, NAME_PREFIX};

/// Why a group name or socket name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddrError {
    /// The group name is not usable.
    #[error(transparent)]
    Group(#[from] GroupError),
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
/// `nix` address to pass to the kernel.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AbstractAddr {
    inner: UnixAddr,
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
        let inner = UnixAddr::new_abstract(name)
            .expect("length was checked against sun_path above, the only way this fails");
        Ok(Self { inner })
    }

    /// The name without the leading NUL.
    pub fn name(&self) -> &[u8] {
        self.inner
            .as_abstract()
            .expect("constructed only through UnixAddr::new_abstract")
    }

    /// The `nix` socket address, for `bind`/`connect`.
    pub fn as_unix_addr(&self) -> &UnixAddr {
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

/// Checks a group name: non-empty, at most [`MAX_GROUP_LEN`] bytes, no NUL, no `/`.
pub fn validate_group(group: &str) -> Result<(), AddrError> {
    Ok(ipc_proto::names::validate_group(group)?)
}

/// The group's hub socket: `@ipc-pubsub/<group>/hub`.
pub fn hub_addr(group: &str) -> Result<AbstractAddr, AddrError> {
    AbstractAddr::new(ipc_proto::names::hub_name(group)?.as_bytes())
}

/// A node's own data socket: `@ipc-pubsub/<group>/data/<token as 16 lowercase hex digits>`.
pub fn data_addr(group: &str, token: u64) -> Result<AbstractAddr, AddrError> {
    AbstractAddr::new(ipc_proto::names::data_name(group, token)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_and_data_names_are_exact() {
        let hub = hub_addr("cams").expect("valid group");
        assert_eq!(hub.name(), b"ipc-pubsub/cams/hub");
        assert_eq!(hub.to_string(), "@ipc-pubsub/cams/hub");
        // Exact length: family + NUL + name, no padding.
        assert_eq!(hub.as_unix_addr().path_len(), 1 + hub.name().len());

        let data = data_addr("cams", 0xdead_beef).expect("valid group");
        assert_eq!(data.to_string(), "@ipc-pubsub/cams/data/00000000deadbeef");
        let data = data_addr("cams", u64::MAX).expect("valid group");
        assert_eq!(data.name(), b"ipc-pubsub/cams/data/ffffffffffffffff");
        assert_eq!(
            format!("{data:?}"),
            "AbstractAddr(@ipc-pubsub/cams/data/ffffffffffffffff)"
        );
    }

    #[test]
    fn group_validation() {
        assert_eq!(hub_addr(""), Err(GroupError::Empty.into()));
        assert_eq!(data_addr("a/b", 1), Err(GroupError::HasSlash.into()));
        assert_eq!(hub_addr("a\0b"), Err(GroupError::HasNul.into()));
        let longest = "g".repeat(MAX_GROUP_LEN);
        assert_eq!(MAX_GROUP_LEN, 74);
        let data = data_addr(&longest, 7).expect("longest group fits");
        assert_eq!(data.name().len(), MAX_NAME_LEN);
        hub_addr(&longest).expect("longest group fits");
        let too_long = "g".repeat(MAX_GROUP_LEN + 1);
        assert_eq!(
            hub_addr(&too_long),
            Err(GroupError::TooLong {
                len: MAX_GROUP_LEN + 1,
                max: MAX_GROUP_LEN
            }
            .into())
        );
        // Unicode is fine and counted in bytes.
        let addr = hub_addr("über").expect("valid group");
        assert_eq!(addr.to_string(), "@ipc-pubsub/über/hub");
    }

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
