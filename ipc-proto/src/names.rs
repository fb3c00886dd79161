//! Where a group meets: the names of its sockets, which every driver must agree on.
//!
//! A group of nodes meets at two kinds of names, both in Linux's abstract socket namespace (no
//! file on disk, so nothing stale is left behind after a crash, and a name is released the
//! moment the last fd bound to it is closed):
//!
//! - `ipc-pubsub/<group>/hub`: the group's hub socket ([`hub_name`]); whoever binds it is hub.
//! - `ipc-pubsub/<group>/data/<token as 16 lowercase hex digits>`: a node's own socket for
//!   data links ([`data_name`]); nodes publish it in their topology record, written `@name`.
//!
//! Names are written `@name`, the convention of `ss -x` and `/proc/net/unix`. The address
//! length a driver passes to `bind`/`connect` must cover exactly the leading NUL plus the name:
//! Linux treats every byte up to the length as part of an abstract name, so a name padded with
//! NULs to `sizeof(sockaddr_un)` is a *different* socket.

/// Prefix of every name a group uses.
pub const NAME_PREFIX: &str = "ipc-pubsub/";

/// Longest abstract name: `sun_path` is 108 bytes and the first one is the NUL marker.
pub const MAX_NAME_LEN: usize = 107;

/// Longest group name, chosen so that both the hub and the data names fit [`MAX_NAME_LEN`].
///
/// 107 − `"ipc-pubsub/"` (11) − `"/data/"` (6) − 16 hex digits = 74 bytes.
pub const MAX_GROUP_LEN: usize = MAX_NAME_LEN - NAME_PREFIX.len() - "/data/".len() - 16;

/// The topic that carries bus channel `name`: every member publishes and subscribes to it.
pub fn bus_topic(name: &str) -> String {
    format!("bus:{name}")
}

/// Why a group name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The group name is empty.
    #[error("group name is empty")]
    Empty,
    /// The group name is longer than [`MAX_GROUP_LEN`] bytes.
    #[error("group name is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the rejected group name in bytes.
        len: usize,
        /// The maximum, [`MAX_GROUP_LEN`].
        max: usize,
    },
    /// The group name contains a NUL byte.
    #[error("group name contains a NUL byte")]
    HasNul,
    /// The group name contains `/`, which separates the parts of the names.
    #[error("group name contains '/'")]
    HasSlash,
}

/// Checks a group name: non-empty, at most [`MAX_GROUP_LEN`] bytes, no NUL, no `/`.
pub fn validate_group(group: &str) -> Result<(), GroupError> {
    if group.is_empty() {
        return Err(GroupError::Empty);
    }
    if group.len() > MAX_GROUP_LEN {
        return Err(GroupError::TooLong {
            len: group.len(),
            max: MAX_GROUP_LEN,
        });
    }
    if group.contains('\0') {
        return Err(GroupError::HasNul);
    }
    if group.contains('/') {
        return Err(GroupError::HasSlash);
    }
    Ok(())
}

/// The group's hub socket name (without the `@`): `ipc-pubsub/<group>/hub`.
pub fn hub_name(group: &str) -> Result<String, GroupError> {
    validate_group(group)?;
    Ok(format!("{NAME_PREFIX}{group}/hub"))
}

/// A node's data socket name (without the `@`):
/// `ipc-pubsub/<group>/data/<token as 16 lowercase hex digits>`.
pub fn data_name(group: &str, token: u64) -> Result<String, GroupError> {
    validate_group(group)?;
    Ok(format!("{NAME_PREFIX}{group}/data/{token:016x}"))
}

/// The abstract name in a data address as nodes publish it (`@name`), or `None` when it is
/// not an abstract name of at most [`MAX_NAME_LEN`] bytes.
pub fn parse_abstract(addr: &str) -> Option<&[u8]> {
    let name = addr.strip_prefix('@')?.as_bytes();
    (name.len() <= MAX_NAME_LEN).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_exact() {
        assert_eq!(hub_name("cams").as_deref(), Ok("ipc-pubsub/cams/hub"));
        assert_eq!(
            data_name("cams", 0xdead_beef).as_deref(),
            Ok("ipc-pubsub/cams/data/00000000deadbeef")
        );
        assert_eq!(
            data_name("cams", u64::MAX).as_deref(),
            Ok("ipc-pubsub/cams/data/ffffffffffffffff")
        );
        assert_eq!(bus_topic("chat"), "bus:chat");
    }

    #[test]
    fn group_validation() {
        assert_eq!(hub_name(""), Err(GroupError::Empty));
        assert_eq!(data_name("a/b", 1), Err(GroupError::HasSlash));
        assert_eq!(hub_name("a\0b"), Err(GroupError::HasNul));
        assert_eq!(MAX_GROUP_LEN, 74);
        let longest = "g".repeat(MAX_GROUP_LEN);
        assert_eq!(data_name(&longest, 7).map(|n| n.len()), Ok(MAX_NAME_LEN));
        let too_long = "g".repeat(MAX_GROUP_LEN + 1);
        assert_eq!(
            hub_name(&too_long),
            Err(GroupError::TooLong {
                len: MAX_GROUP_LEN + 1,
                max: MAX_GROUP_LEN
            })
        );
        // Unicode is fine and counted in bytes.
        assert_eq!(hub_name("über").as_deref(), Ok("ipc-pubsub/über/hub"));
    }

    #[test]
    fn abstract_addresses() {
        assert_eq!(parse_abstract("@a/b"), Some(&b"a/b"[..]));
        assert_eq!(parse_abstract("a/b"), None);
        let long = format!("@{}", "x".repeat(MAX_NAME_LEN + 1));
        assert_eq!(parse_abstract(&long), None);
    }
}
