//! Shared memory mappings of memfd segments: `mmap`, the slices over it, `munmap`.
//!
//! [`memfd`](crate::memfd) decides what may be mapped (a verified range, a segment we own);
//! this module maps it, hands out the bytes as slices, and unmaps on drop. See the
//! [`memfd` docs](crate::memfd) for why a mapped byte never faults with `SIGBUS`.

use std::ffi::c_void;
use std::io;
use std::num::NonZeroUsize;
use std::ops::{Deref, DerefMut};
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::OnceLock;

use rustix::mm::{MapFlags, ProtFlags};

use crate::word::SharedWord;
use crate::{invalid_input, retry_eintr};

fn page_size() -> usize {
    static PAGE: OnceLock<usize> = OnceLock::new();
    *PAGE.get_or_init(|| {
        let size = rustix::param::page_size();
        assert!(
            size.is_power_of_two(),
            "page size {size} is not a power of two"
        );
        size
    })
}

/// An `mmap`ed byte range (or an empty one), unmapped on drop.
#[derive(Debug)]
pub(crate) struct RawMapping {
    /// Start of the mapping as returned by mmap; only meaningful when `map_len > 0`.
    base: NonNull<c_void>,
    /// Length passed to mmap; 0 for an empty range that was never mapped.
    pub(crate) map_len: usize,
    /// First byte of the requested range (`base` + in-page delta).
    data: NonNull<u8>,
    /// Length of the requested range.
    len: usize,
}

impl RawMapping {
    fn new(fd: BorrowedFd<'_>, offset: u64, len: usize, prot: ProtFlags) -> io::Result<Self> {
        let Some(nonzero) = NonZeroUsize::new(len) else {
            return Ok(Self {
                base: NonNull::dangling(),
                map_len: 0,
                data: NonNull::dangling(),
                len: 0,
            });
        };
        let page = page_size() as u64;
        let delta = offset % page;
        let aligned = offset - delta;
        if i64::try_from(aligned).is_err() {
            return Err(invalid_input(format!("offset {offset} exceeds off_t")));
        }
        let delta = delta as usize; // < page size
        let map_len = nonzero
            .checked_add(delta)
            .ok_or_else(|| invalid_input(format!("length {len} exceeds the address space")))?;
        let base = retry_eintr(|| {
            // SAFETY: a new shared mapping at an address of the kernel's choosing (null hint,
            // no MAP_FIXED), so no existing memory is affected. The range lies within the file
            // (callers check it against the size), and the memory is only exposed as bytes.
            unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    map_len.get(),
                    prot,
                    MapFlags::SHARED,
                    fd,
                    aligned,
                )
            }
        })?;
        let base =
            NonNull::new(base).ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        // SAFETY: `delta` < page size <= `map_len`, so the pointer stays inside the mapping.
        let data = unsafe { base.cast::<u8>().add(delta) };
        Ok(Self {
            base,
            map_len: map_len.get(),
            data,
            len,
        })
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `data` is valid for reads of `len` bytes: either a live mapping of at least
        // delta + len bytes, backed by the file (the range lies within a size that a shrink
        // seal, or our own ownership of the file, keeps), or dangling with `len == 0`. The
        // memory stays mapped until `self` is dropped, which the returned borrow prevents.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and only MappingMut (mapped PROT_WRITE) calls this, with
        // `&mut self`, so this is the only reference into the mapping in this process.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }
}

impl Drop for RawMapping {
    fn drop(&mut self) {
        if self.map_len == 0 {
            return;
        }
        // SAFETY: `base`/`map_len` describe a mapping we created and have not unmapped; no
        // borrow of it outlives `self`.
        if let Err(e) = unsafe { rustix::mm::munmap(self.base.as_ptr(), self.map_len) } {
            tracing::error!(error = %e, "munmap failed; leaking the mapping");
        }
    }
}

/// A read-only shared mapping of a verified byte range; unmapped on drop.
///
/// Dereferences to the range's bytes. See the [`memfd` docs](crate::memfd) about pooled segments.
#[derive(Debug)]
pub struct Mapping {
    pub(crate) raw: RawMapping,
}

// SAFETY: the mapping is plain shared memory owned by this value alone; unmapping it from
// another thread is fine.
unsafe impl Send for Mapping {}
// SAFETY: it is only ever read through `&self`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, read-only and shared. The caller has checked
    /// that the range lies within a size the file keeps (a verified shrink seal).
    pub(crate) fn new(fd: BorrowedFd<'_>, offset: u64, len: usize) -> io::Result<Self> {
        let raw = RawMapping::new(fd, offset, len, ProtFlags::READ)?;
        Ok(Self { raw })
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.raw.as_slice()
    }

    /// Address of the first mapped byte (dangling for an empty mapping).
    pub fn as_ptr(&self) -> *const u8 {
        self.raw.data.as_ptr()
    }
}

impl Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

/// A read-write shared mapping of a whole [`Segment`](crate::memfd::Segment); unmapped on drop.
#[derive(Debug)]
pub struct MappingMut {
    pub(crate) raw: RawMapping,
}

// SAFETY: the mapping is plain shared memory owned by this value alone; it may be used and
// unmapped from another thread.
unsafe impl Send for MappingMut {}
// SAFETY: `&MappingMut` only allows reads; writes need `&mut`.
unsafe impl Sync for MappingMut {}

impl MappingMut {
    /// Maps all `len` bytes of `fd`, a segment this process created and sized, read-write and
    /// shared.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        let raw = RawMapping::new(fd, 0, len, ProtFlags::READ | ProtFlags::WRITE)?;
        Ok(Self { raw })
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.raw.as_slice()
    }

    /// The mapped bytes, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.raw.as_mut_slice()
    }
}

impl Deref for MappingMut {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl DerefMut for MappingMut {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

/// A read-write shared mapping of a whole shared-memory region, seen as 64-bit atomic words
/// (a ring both processes write); unmapped on drop.
///
/// Handed out only as `&[SharedWord]` (atomic words): the other process may write any word at
/// any time, which atomics allow and plain bytes would not.
#[derive(Debug)]
pub struct SharedWords {
    raw: RawMapping,
}

// SAFETY: the mapping is plain shared memory owned by this value alone; its words are atomics,
// so sharing and sending it between threads is fine.
unsafe impl Send for SharedWords {}
// SAFETY: as above: every access goes through `SharedWord`'s atomics (or its string copy, as
// sound as they are, see `crate::word`).
unsafe impl Sync for SharedWords {}

impl SharedWords {
    /// Maps all `len` bytes of `fd` from offset 0, read-write and shared. The caller has checked
    /// that the file keeps at least `len` bytes (our own unshrinkable memfd, or a verified
    /// shrink seal). `len` must be a non-zero multiple of 8.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Self> {
        if len == 0 || !len.is_multiple_of(8) {
            return Err(invalid_input(format!(
                "a word region must be a non-zero multiple of 8 bytes, not {len}"
            )));
        }
        let raw = RawMapping::new(fd, 0, len, ProtFlags::READ | ProtFlags::WRITE)?;
        Ok(Self { raw })
    }

    /// The mapped words.
    pub fn words(&self) -> &[SharedWord] {
        let ptr = self.raw.data.as_ptr().cast::<SharedWord>();
        // SAFETY: `new` mapped offset 0, so `data` is page-aligned (mmap's result), hence
        // aligned for AtomicU64; `len` is a multiple of 8, so len / 8 words are in the live
        // mapping, backed by the file for the mapping's lifetime (see `RawMapping::as_slice`).
        // SharedWord is a transparent AtomicU64, with the size and alignment of u64 and
        // interior mutability, so shared references to memory that another process writes
        // concurrently are sound as long as every access is atomic (or byte-atomic, as its
        // string copy is), which is all that type allows.
        unsafe { std::slice::from_raw_parts(ptr, self.raw.len / 8) }
    }
}
