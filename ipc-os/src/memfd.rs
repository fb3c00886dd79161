//! Sealed memfd segments: create and seal on the sending side, verify and map on the receiver.
//!
//! # Two sealing modes
//! - [`SealSet::FRESH`] (`SHRINK | GROW | WRITE | SEAL`): a segment written once and then frozen.
//!   `F_SEAL_WRITE` is refused with `EBUSY` while any writable shared mapping of the file
//!   exists (in any process), so drop every [`MappingMut`] before [`Segment::seal`].
//! - [`SealSet::POOLED`] (`SHRINK | GROW | FUTURE_WRITE | SEAL`): a reusable segment. The
//!   writer keeps the [`MappingMut`] it made before sealing and goes on writing through it;
//!   nobody (the writer included) can create a new writable mapping, `write()` to the fd or
//!   upgrade a read-only mapping with `mprotect`. Which slots may be rewritten when is the
//!   protocol's business.
//!
//! Always seal before sending the fd: a receiver holding an unsealed memfd could map it
//! writable (the fd shares our read-write open file description).
//!
//! # Why a receiver never gets `SIGBUS`
//! Accessing a page of a shared file mapping that lies wholly beyond the file's end raises
//! `SIGBUS`, and a sender could shrink its memfd at any time. [`verify`] therefore accepts only
//! shmem files (memfd, `TMPFS_MAGIC`) carrying `F_SEAL_SHRINK` in addition to the caller's
//! required seals, and reads the seals *before* `fstat`: once the shrink seal is seen the size
//! can never drop below what `fstat` reports afterwards (seals cannot be removed). Mappings
//! are then confined to that size, so every mapped byte stays backed for the mapping's
//! lifetime. Hugetlbfs memfds are rejected too: reading an unpopulated huge page can `SIGBUS`
//! when the huge page pool is exhausted.
//!
//! Caveats the protocol must handle:
//! - Reading a never-written page of a sparse segment allocates a page (shmem has no shared
//!   zero page), charged as shmem; a sender can therefore make receivers commit memory up to
//!   the segment size. Bound segment sizes in the protocol.
//! - The writer of a [`SealSet::POOLED`] segment can change bytes under a receiver's
//!   [`Mapping`]. Rust's `&[u8]` promises they do not change; the protocol must guarantee that
//!   a slot is not rewritten while lent out, and receivers should treat the bytes as
//!   untrusted (validate after copying, not before). [`SealSet::FRESH`] segments are immutable.
//!
//! `EINTR` is retried everywhere.

use std::fmt;
use std::io;
use std::ops::{BitOr, BitOrAssign};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU8, Ordering};

use rustix::fs::{FileType, MemfdFlags, SealFlags};
use rustix::io::Errno;

pub use crate::mapping::{Mapping, MappingMut, SharedWords};
use crate::{invalid_input, retry_eintr};

/// The `tmpfs` magic number `fstatfs` reports for a memfd (`TMPFS_MAGIC`).
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// How often [`Segment::seal`] retries `EBUSY` (see there).
pub const SEAL_RETRIES: u32 = 4;

/// Longest memfd name Linux accepts (`NAME_MAX` minus the `"memfd:"` prefix).
pub const MAX_NAME_LEN: usize = 249;

/// A set of file seals (`F_SEAL_*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SealSet(u32);

impl SealSet {
    /// No seals.
    pub const EMPTY: Self = Self(0);
    /// `F_SEAL_SEAL`: no further seals can be added.
    pub const SEAL: Self = Self(SealFlags::SEAL.bits());
    /// `F_SEAL_SHRINK`: the size cannot decrease.
    pub const SHRINK: Self = Self(SealFlags::SHRINK.bits());
    /// `F_SEAL_GROW`: the size cannot increase.
    pub const GROW: Self = Self(SealFlags::GROW.bits());
    /// `F_SEAL_WRITE`: the contents cannot change at all.
    pub const WRITE: Self = Self(SealFlags::WRITE.bits());
    /// `F_SEAL_FUTURE_WRITE`: only writable mappings that existed before the seal can write.
    pub const FUTURE_WRITE: Self = Self(SealFlags::FUTURE_WRITE.bits());
    /// `F_SEAL_EXEC`: the exec permission bits cannot change (set by `MFD_NOEXEC_SEAL`).
    pub const EXEC: Self = Self(SealFlags::EXEC.bits());
    /// Seals for a segment written once, then frozen: `SHRINK | GROW | WRITE | SEAL`.
    pub const FRESH: Self = Self(Self::SHRINK.0 | Self::GROW.0 | Self::WRITE.0 | Self::SEAL.0);
    /// Seals for a reused segment whose creator keeps writing through its existing mapping:
    /// `SHRINK | GROW | FUTURE_WRITE | SEAL`.
    pub const POOLED: Self =
        Self(Self::SHRINK.0 | Self::GROW.0 | Self::FUTURE_WRITE.0 | Self::SEAL.0);
    /// Seals for a region both sides keep writing (a ring): `SHRINK | GROW | SEAL`. Its size
    /// is fixed for good, its contents are not.
    pub const SHARED: Self = Self(Self::SHRINK.0 | Self::GROW.0 | Self::SEAL.0);

    const NAMES: [(Self, &'static str); 6] = [
        (Self::SEAL, "SEAL"),
        (Self::SHRINK, "SHRINK"),
        (Self::GROW, "GROW"),
        (Self::WRITE, "WRITE"),
        (Self::FUTURE_WRITE, "FUTURE_WRITE"),
        (Self::EXEC, "EXEC"),
    ];

    /// The set with these raw `F_SEAL_*` bits, unknown bits included.
    pub const fn from_bits_retain(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw `F_SEAL_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every seal of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The seals of `self` that are not in `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether no seal is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for SealSet {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for SealSet {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl From<SealSet> for ipc_proto::data::Seals {
    /// The seals `ipc-proto`'s data plane judges a received segment by.
    fn from(s: SealSet) -> Self {
        Self {
            shrink: s.contains(SealSet::SHRINK),
            grow: s.contains(SealSet::GROW),
            write: s.contains(SealSet::WRITE),
            future_write: s.contains(SealSet::FUTURE_WRITE),
        }
    }
}

impl fmt::Display for SealSet {
    /// `SHRINK|GROW|WRITE|SEAL` style; unknown bits in hex; `(none)` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        let mut rest = *self;
        let mut first = true;
        for (seal, name) in Self::NAMES {
            if rest.contains(seal) {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
                rest = rest.difference(seal);
            }
        }
        if !rest.is_empty() {
            if !first {
                f.write_str("|")?;
            }
            write!(f, "{:#x}", rest.0)?;
        }
        Ok(())
    }
}

impl fmt::Debug for SealSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealSet({self})")
    }
}

/// Why [`verify`] rejected a received fd. The fd has been closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// The fd is not a memfd: not a regular shmem file, or the file does not support seals.
    #[error("fd is not a memfd")]
    NotMemfd,
    /// The memfd lacks seals we require (`F_SEAL_SHRINK` is always required).
    #[error("memfd has seals {have}, needs {need}")]
    MissingSeals {
        /// Seals the memfd carries.
        have: SealSet,
        /// Seals we require.
        need: SealSet,
    },
    /// The memfd's size is not the one the region must have.
    #[error("memfd is {size} bytes, the region is {need}")]
    WrongSize {
        /// Size of the memfd.
        size: u64,
        /// Size the region must have.
        need: u64,
    },
    /// The memfd is smaller than the claimed range.
    #[error("memfd is {size} bytes, the claimed range needs {need}")]
    TooSmall {
        /// Size of the memfd.
        size: u64,
        /// End of the claimed range.
        need: u64,
    },
    /// `offset + len` overflows.
    #[error("range offset {offset} + length {len} overflows")]
    RangeOverflow {
        /// Claimed offset.
        offset: u64,
        /// Claimed length.
        len: u64,
    },
    /// A syscall failed unexpectedly.
    #[error("checking the memfd failed: {0}")]
    Os(Errno),
}

impl From<SegmentError> for io::Error {
    fn from(e: SegmentError) -> Self {
        match e {
            SegmentError::Os(errno) => errno.into(),
            other => Self::new(io::ErrorKind::InvalidData, other),
        }
    }
}

const PROBE_UNKNOWN: u8 = 0;
const PROBE_YES: u8 = 1;
const PROBE_NO: u8 = 2;

/// Whether the kernel accepts `MFD_NOEXEC_SEAL` (Linux 6.3+).
static NOEXEC_SEAL: AtomicU8 = AtomicU8::new(PROBE_UNKNOWN);

/// Whether `MFD_NOEXEC_SEAL` is used: `None` until the first [`Segment::create`] has probed.
pub fn noexec_seal_supported() -> Option<bool> {
    match NOEXEC_SEAL.load(Ordering::Relaxed) {
        PROBE_YES => Some(true),
        PROBE_NO => Some(false),
        _ => None,
    }
}

fn create_memfd(name: &str) -> rustix::io::Result<OwnedFd> {
    let base = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING;
    if NOEXEC_SEAL.load(Ordering::Relaxed) != PROBE_NO {
        let noexec = base | MemfdFlags::NOEXEC_SEAL;
        match retry_eintr(|| rustix::fs::memfd_create(name, noexec)) {
            Ok(fd) => {
                NOEXEC_SEAL.store(PROBE_YES, Ordering::Relaxed);
                return Ok(fd);
            }
            // Older kernels reject the unknown flag. The name was validated, so EINVAL
            // means the flag, which the fallback below confirms before caching.
            Err(Errno::INVAL) => {
                let fd = retry_eintr(|| rustix::fs::memfd_create(name, base))?;
                NOEXEC_SEAL.store(PROBE_NO, Ordering::Relaxed);
                return Ok(fd);
            }
            Err(e) => return Err(e),
        }
    }
    retry_eintr(|| rustix::fs::memfd_create(name, base))
}

fn get_seals(fd: BorrowedFd<'_>) -> rustix::io::Result<SealSet> {
    let bits = retry_eintr(|| rustix::fs::fcntl_get_seals(fd))?;
    Ok(SealSet(bits.bits()))
}

/// A memfd we created: `MFD_CLOEXEC | MFD_ALLOW_SEALING`, plus `MFD_NOEXEC_SEAL` where the
/// kernel has it.
#[derive(Debug)]
pub struct Segment {
    fd: OwnedFd,
    len: usize,
}

impl Segment {
    /// Creates a memfd called `name` (shown as `/memfd:name` in `/proc/*/maps`) of `len` bytes.
    ///
    /// The pages are allocated lazily, on first touch. Fails with `InvalidInput` for a name
    /// with a NUL byte or longer than [`MAX_NAME_LEN`], or a `len` beyond `i64::MAX`.
    pub fn create(name: &str, len: usize) -> io::Result<Self> {
        if name.len() > MAX_NAME_LEN || name.contains('\0') {
            return Err(invalid_input(format!(
                "memfd name must be at most {MAX_NAME_LEN} bytes without NUL: {name:?}"
            )));
        }
        let size = i64::try_from(len)
            .ok()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| invalid_input(format!("segment length {len} exceeds i64::MAX")))?;
        let fd = create_memfd(name)?;
        retry_eintr(|| rustix::fs::ftruncate(&fd, size))?;
        Ok(Self { fd, len })
    }

    /// The segment's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the segment has length 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Maps the whole segment read-write and shared. A zero-length segment gives an empty
    /// mapping without calling `mmap`. Fails with `EPERM` once write-sealed.
    pub fn map_rw(&self) -> io::Result<MappingMut> {
        MappingMut::new(self.fd.as_fd(), self.len)
    }

    /// Maps the whole segment read-write and shared as 64-bit atomic words, for a region both
    /// sides write ([`SealSet::SHARED`]). The length must be a non-zero multiple of 8.
    pub fn map_words(&self) -> io::Result<SharedWords> {
        SharedWords::new(self.fd.as_fd(), self.len)
    }

    /// Adds `seals` (e.g. [`SealSet::FRESH`] or [`SealSet::POOLED`]).
    ///
    /// Fails with `EBUSY` (`ErrorKind::ResourceBusy`) when adding `F_SEAL_WRITE` while a
    /// writable mapping exists: drop every [`MappingMut`] first. Fails with `EPERM` once
    /// `F_SEAL_SEAL` is set.
    ///
    /// The kernel also refuses `F_SEAL_WRITE` with `EBUSY` while some page of the file has an
    /// extra reference for a moment (it waits for such pins about 75 ms, then gives up): seen
    /// on a busy VM after the last mapping was gone. So `EBUSY` is retried [`SEAL_RETRIES`]
    /// times, after 1, 2, 4... ms, before it is returned.
    pub fn seal(&self, seals: SealSet) -> io::Result<()> {
        let flags = SealFlags::from_bits_retain(seals.0);
        let mut pause = std::time::Duration::from_millis(1);
        for _ in 0..SEAL_RETRIES {
            match retry_eintr(|| rustix::fs::fcntl_add_seals(&self.fd, flags)) {
                Err(Errno::BUSY) => {
                    std::thread::sleep(pause);
                    pause *= 2;
                }
                other => return Ok(other?),
            }
        }
        retry_eintr(|| rustix::fs::fcntl_add_seals(&self.fd, flags))?;
        Ok(())
    }

    /// The seals currently set.
    pub fn seals(&self) -> io::Result<SealSet> {
        Ok(get_seals(self.fd.as_fd())?)
    }

    /// The memfd, e.g. to keep it after mapping.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A received memfd that passed [`verify`]: shmem, shrink-sealed, at least [`Self::size`] long.
#[derive(Debug)]
pub struct VerifiedSegment {
    fd: OwnedFd,
    size: u64,
    seals: SealSet,
}

/// Checks a received fd before anything maps it; on failure the fd is closed.
///
/// Accepts the fd if it is a memfd (a regular file on shmem whose `F_GET_SEALS` works), it
/// carries every seal in `required` plus [`SealSet::SHRINK`], and its size covers
/// `offset + len` without overflow. Read the [module docs](self) for why this rules out
/// `SIGBUS`.
pub fn verify(
    fd: OwnedFd,
    required: SealSet,
    offset: u64,
    len: u64,
) -> Result<VerifiedSegment, SegmentError> {
    let end = offset
        .checked_add(len)
        .ok_or(SegmentError::RangeOverflow { offset, len })?;
    let fs = retry_eintr(|| rustix::fs::fstatfs(&fd)).map_err(SegmentError::Os)?;
    #[allow(clippy::useless_conversion)] // `f_type` is narrower on some targets
    if i64::from(fs.f_type) != TMPFS_MAGIC {
        return Err(SegmentError::NotMemfd);
    }
    // Seals before size: once SHRINK is seen, the size read below is a lower bound forever.
    let have = match get_seals(fd.as_fd()) {
        Ok(seals) => seals,
        Err(Errno::INVAL) => return Err(SegmentError::NotMemfd),
        Err(e) => return Err(SegmentError::Os(e)),
    };
    let need = required | SealSet::SHRINK;
    if !have.contains(need) {
        return Err(SegmentError::MissingSeals { have, need });
    }
    let stat = retry_eintr(|| rustix::fs::fstat(&fd)).map_err(SegmentError::Os)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(SegmentError::NotMemfd);
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size < end {
        return Err(SegmentError::TooSmall { size, need: end });
    }
    Ok(VerifiedSegment {
        fd,
        size,
        seals: have,
    })
}

impl VerifiedSegment {
    /// The size `fstat` reported after the shrink seal was seen; a lower bound forever.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The seals the memfd carried when verified.
    pub fn seals(&self) -> SealSet {
        self.seals
    }

    /// Maps `len` bytes at `offset` read-only and shared.
    ///
    /// The `mmap` offset is aligned down to the page size and the in-page delta hidden, so
    /// any byte range works. A zero-length range gives an empty mapping without calling
    /// `mmap`. Fails with `InvalidInput` for a range beyond [`Self::size`].
    pub fn map_ro(&self, offset: u64, len: u64) -> io::Result<Mapping> {
        let within = offset.checked_add(len).is_some_and(|end| end <= self.size);
        if !within {
            return Err(invalid_input(format!(
                "range {offset}+{len} exceeds the verified size {}",
                self.size
            )));
        }
        let len = usize::try_from(len)
            .map_err(|_| invalid_input(format!("length {len} exceeds the address space")))?;
        Mapping::new(self.fd.as_fd(), offset, len)
    }

    /// Maps the whole verified size read-write and shared as 64-bit atomic words: a region
    /// both sides write. Fails with `EPERM` if the memfd is write-sealed, and with
    /// `InvalidInput` unless the size is a non-zero multiple of 8.
    pub fn map_words(&self) -> io::Result<SharedWords> {
        let len = usize::try_from(self.size)
            .map_err(|_| invalid_input(format!("size {} exceeds the address space", self.size)))?;
        SharedWords::new(self.fd.as_fd(), len)
    }

    /// The memfd.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }
}

impl AsFd for VerifiedSegment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::{Recv, Sent, recv_record, send_record, socketpair_seqpacket};
    use crate::testutil::{exclusive, mappings, open_fds, pass, shared};
    use rustix::io::FdFlags;
    use rustix::mm::MprotectFlags;

    fn filled(name: &str, len: usize, byte: u8) -> Segment {
        let seg = Segment::create(name, len).expect("create");
        let mut map = seg.map_rw().expect("map_rw");
        map.fill(byte);
        seg
    }

    fn errno(e: &io::Error) -> Option<Errno> {
        e.raw_os_error().map(Errno::from_raw_os_error)
    }

    #[test]
    fn seal_set_display_and_ops() {
        assert_eq!(SealSet::FRESH.to_string(), "SEAL|SHRINK|GROW|WRITE");
        assert_eq!(SealSet::POOLED.to_string(), "SEAL|SHRINK|GROW|FUTURE_WRITE");
        assert_eq!(SealSet::EMPTY.to_string(), "(none)");
        assert_eq!(SealSet::SHARED.to_string(), "SEAL|SHRINK|GROW");
        assert_eq!(
            format!("{:?}", SealSet::from_bits_retain(0x100 | 2)),
            "SealSet(SHRINK|0x100)"
        );
        assert!(SealSet::FRESH.contains(SealSet::SHRINK | SealSet::WRITE));
        assert!(!SealSet::POOLED.contains(SealSet::WRITE));
        assert_eq!(SealSet::FRESH.difference(SealSet::POOLED), SealSet::WRITE);
    }

    #[test]
    fn create_probes_noexec_and_sets_cloexec() {
        let _g = shared();
        let seg = Segment::create("probe", 10).expect("create");
        assert_eq!(seg.len(), 10);
        assert!(noexec_seal_supported().is_some());
        let seals = seg.seals().expect("seals");
        assert_eq!(
            seals.contains(SealSet::EXEC),
            noexec_seal_supported() == Some(true)
        );
        let flags = rustix::io::fcntl_getfd(&seg).expect("F_GETFD");
        assert!(flags.contains(FdFlags::CLOEXEC));
        assert_eq!(rustix::fs::fstat(&seg).expect("fstat").st_size, 10);

        let err = Segment::create("a\0b", 1).expect_err("NUL in name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = Segment::create(&"n".repeat(MAX_NAME_LEN + 1), 1).expect_err("long name");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        Segment::create(&"n".repeat(MAX_NAME_LEN), 1).expect("longest name");
    }

    #[test]
    fn fresh_seals_freeze_the_segment() {
        let _g = shared();
        let seg = Segment::create("fresh", 8192).expect("create");
        let mut map = seg.map_rw().expect("map_rw");
        map[..5].copy_from_slice(b"hello");
        let err = seg
            .seal(SealSet::FRESH)
            .expect_err("writable mapping alive");
        assert_eq!(errno(&err), Some(Errno::BUSY));
        assert_eq!(err.kind(), io::ErrorKind::ResourceBusy);
        drop(map);
        seg.seal(SealSet::FRESH).expect("seal");
        assert!(seg.seals().expect("seals").contains(SealSet::FRESH));

        let eperm = |r: rustix::io::Result<()>| assert_eq!(r, Err(Errno::PERM));
        eperm(rustix::io::write(&seg, b"x").map(drop));
        eperm(rustix::io::pwrite(&seg, b"x", 0).map(drop));
        eperm(rustix::fs::ftruncate(&seg, 16384));
        eperm(rustix::fs::ftruncate(&seg, 4096));
        let err = seg.map_rw().expect_err("no new writable mapping");
        assert_eq!(errno(&err), Some(Errno::PERM));
        let err = seg
            .seal(SealSet::EXEC)
            .expect_err("sealed against new seals");
        assert_eq!(errno(&err), Some(Errno::PERM));

        let got = verify(pass(seg.as_fd()), SealSet::FRESH, 0, 5).expect("verify");
        assert_eq!(got.size(), 8192);
        let ro = got.map_ro(0, 5).expect("map_ro");
        assert_eq!(&*ro, b"hello");
    }

    #[test]
    #[allow(unsafe_code)] // mprotect, to show it fails
    fn pooled_seals_keep_the_writers_mapping() {
        let _g = shared();
        let seg = Segment::create("pooled", 3 * 4096).expect("create");
        let mut map = seg.map_rw().expect("map_rw");
        seg.seal(SealSet::POOLED)
            .expect("seal with a live writable mapping");

        map[4096..4099].copy_from_slice(b"one");
        let got = verify(pass(seg.as_fd()), SealSet::POOLED, 4096, 3).expect("verify");
        let ro = got.map_ro(4096, 3).expect("map_ro");
        assert_eq!(&*ro, b"one");
        map[4096..4099].copy_from_slice(b"two");
        assert_eq!(&*ro, b"two", "receiver sees the writer's later writes");

        // Nobody can get write access any other way.
        let err = seg.map_rw().expect_err("new writable mapping");
        assert_eq!(errno(&err), Some(Errno::PERM));
        assert_eq!(rustix::io::write(&seg, b"x"), Err(Errno::PERM));
        assert_eq!(rustix::fs::ftruncate(&seg, 1), Err(Errno::PERM));
        let page = ro.as_ptr().cast_mut().cast::<std::ffi::c_void>();
        // SAFETY: `page` is the page-aligned start (offset 4096 is aligned) of our live
        // read-only mapping; the call is expected to fail, and were it to succeed nothing
        // would write through it.
        let res =
            unsafe { rustix::mm::mprotect(page, 3, MprotectFlags::READ | MprotectFlags::WRITE) };
        assert_eq!(
            res,
            Err(Errno::ACCESS),
            "read-only mapping cannot be upgraded"
        );
        // A private copy-on-write mapping is allowed and harmless: it never reaches the file.
    }

    #[test]
    fn verify_rejects_bad_fds() {
        let _g = shared();
        // A regular file.
        let path = std::env::temp_dir().join(format!("ipc-sys-verify-{}", std::process::id()));
        std::fs::write(&path, [0u8; 64]).expect("write temp file");
        let file = std::fs::File::open(&path).expect("open temp file");
        std::fs::remove_file(&path).expect("remove temp file");
        let exe = std::fs::File::open("/proc/self/exe").expect("open /proc/self/exe");
        let (pipe_r, _pipe_w) = std::io::pipe().expect("pipe");
        for fd in [
            OwnedFd::from(file),
            OwnedFd::from(exe),
            OwnedFd::from(pipe_r),
        ] {
            assert_eq!(
                verify(fd, SealSet::EMPTY, 0, 1).map(drop),
                Err(SegmentError::NotMemfd)
            );
        }

        // An unsealed memfd.
        let plain = filled("plain", 4096, 1);
        let have = plain.seals().expect("seals");
        assert_eq!(
            verify(pass(plain.as_fd()), SealSet::EMPTY, 0, 1).map(drop),
            Err(SegmentError::MissingSeals {
                have,
                need: SealSet::SHRINK
            })
        );

        // Pooled seals do not satisfy a fresh requirement.
        let pooled = filled("pooled", 4096, 1);
        pooled.seal(SealSet::POOLED).expect("seal");
        match verify(pass(pooled.as_fd()), SealSet::FRESH, 0, 1) {
            Err(SegmentError::MissingSeals { have, need }) => {
                assert_eq!(need, SealSet::FRESH);
                assert_eq!(need.difference(have), SealSet::WRITE);
            }
            other => panic!("expected MissingSeals, got {other:?}"),
        }

        // Too small, and overflowing ranges.
        let small = filled("small", 100, 1);
        small.seal(SealSet::FRESH).expect("seal");
        assert_eq!(
            verify(pass(small.as_fd()), SealSet::FRESH, 50, 51).map(drop),
            Err(SegmentError::TooSmall {
                size: 100,
                need: 101
            })
        );
        assert_eq!(
            verify(pass(small.as_fd()), SealSet::FRESH, u64::MAX, 1).map(drop),
            Err(SegmentError::RangeOverflow {
                offset: u64::MAX,
                len: 1
            })
        );
        let got = verify(pass(small.as_fd()), SealSet::FRESH, 50, 50).expect("exact fit");
        let err = got.map_ro(50, 51).expect_err("beyond verified size");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = got.map_ro(u64::MAX, 2).expect_err("overflow");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(&*got.map_ro(99, 1).expect("last byte"), &[1]);

        let io_err = io::Error::from(SegmentError::NotMemfd);
        assert_eq!(io_err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn unaligned_and_empty_ranges() {
        let _g = shared();
        let seg = Segment::create("ranges", 3 * 4096 + 10).expect("create");
        {
            let mut map = seg.map_rw().expect("map_rw");
            for (i, b) in map.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
        }
        seg.seal(SealSet::FRESH).expect("seal");
        let got = verify(pass(seg.as_fd()), SealSet::FRESH, 0, 0).expect("verify");
        for (offset, len) in [
            (1u64, 10u64),
            (4095, 2),
            (4096, 4096),
            (5000, 7298),
            (12297, 1),
        ] {
            let ro = got.map_ro(offset, len).expect("map_ro");
            assert_eq!(ro.len() as u64, len);
            for (i, b) in ro.iter().enumerate() {
                assert_eq!(*b, ((offset as usize + i) % 251) as u8);
            }
        }
        let empty = got.map_ro(12298, 0).expect("empty range at the end");
        assert!(empty.is_empty());
        assert_eq!(empty.raw.map_len, 0, "no mmap for an empty range");
        drop(empty);
        let empty_seg = Segment::create("empty", 0).expect("create");
        assert!(empty_seg.map_rw().expect("map_rw").is_empty());
    }

    #[test]
    fn mappings_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Mapping>();
        assert_send_sync::<MappingMut>();
        assert_send_sync::<VerifiedSegment>();
        assert_send_sync::<Segment>();
    }

    #[test]
    fn no_leaks_over_10k_cycles() {
        let _g = exclusive();
        let (a, b) = socketpair_seqpacket().expect("socketpair");
        let mut fds = Vec::with_capacity(1);
        let mut buf = [0u8; 16];
        let mut cycle = |i: usize| {
            let seg = Segment::create("cycle", 4096).expect("create");
            {
                let mut map = seg.map_rw().expect("map_rw");
                map[100..108].copy_from_slice(&(i as u64).to_le_bytes());
            }
            seg.seal(SealSet::FRESH).expect("seal");
            assert_eq!(
                send_record(&a, b"seg", &[seg.as_fd()]).expect("send"),
                Sent::Complete
            );
            drop(seg);
            let r = recv_record(&b, &mut buf, &mut fds, 1).expect("recv");
            assert!(matches!(r, Recv::Data { len: 3, fds: 1, .. }), "{r:?}");
            let fd = fds.pop().expect("one fd");
            let got = verify(fd, SealSet::FRESH, 100, 8).expect("verify");
            let ro = got.map_ro(100, 8).expect("map_ro");
            assert_eq!(&*ro, &(i as u64).to_le_bytes());
        };
        cycle(0); // warm up lazily initialised state before counting
        let (fds_before, maps_before) = (open_fds(), mappings());
        for i in 1..=10_000 {
            cycle(i);
        }
        assert_eq!(open_fds(), fds_before, "fd leak");
        // A leak would show as thousands of lines; allow the allocator a few of its own.
        let maps_after = mappings();
        assert!(
            maps_after <= maps_before + 4,
            "mapping leak: {maps_before} -> {maps_after}"
        );
    }
}
