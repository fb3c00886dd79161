//! [`SharedWord`]: a word of a region both processes write (a data ring), and the copies of a
//! message's inline payload into and out of such words.
//!
//! `ipc_proto::ring` moves an inline payload with [`Word::store_bytes`] and
//! [`Word::load_bytes`]; their provided versions store or load one `AtomicU64` at a time,
//! which the compiler cannot widen (atomics are never merged or vectorized). On x86-64 the
//! words of a payload of [`STRING_COPY_MIN`] bytes or more are copied here by the CPU's own
//! string copy instead (`rep movsb`), which moves whole cache lines: measured on the AMD EPYC
//! VM between two pinned processes (inline 4 KiB, `Block` depth 64, alternated runs), 0.88 M →
//! 1.30 M messages per second while the VM copies slowly between its vCPUs, and 3-5 % more
//! while it copies fast; the word loop's stores, eight per line, fill the store buffer while
//! each line comes over from the consumer's cache. Machines differ: on the Intel Xeon VM an
//! earlier session found the bare ring 6-16 % slower with `rep movsb` at 1-4 KiB and ours
//! level (`ipc-pubsub-cli/BENCH.md`), and did not keep it then.
//!
//! # Why the string copy is sound on memory the peer writes
//! A data race is undefined behaviour only between accesses the Rust abstract machine
//! performs. The copy is an `asm!` block, whose accesses are the hardware's: `rep movsb` reads
//! and writes every byte exactly once, each access at least byte-atomic, which is what a
//! sequence of relaxed `AtomicU8` accesses would do (the "byte-wise atomic memcpy" of C++'s
//! P1478): the peer writing the same bytes meanwhile makes the copied bytes any bytes, never
//! undefined behaviour, and the ring treats them as untrusted anyway. Ordering: Intel's manual
//! (SDM vol. 3, "Out-of-Order Stores For String Operations") lets the stores of one fast
//! string operation become visible out of order among themselves, but says string operations
//! are not reordered with other stores, and asks order-dependent code to write a separate
//! flag after the string operation: here the `Release` store of the ring's head, a plain
//! store after the copy, which publishes every byte (the copy-then-release pattern the Linux
//! kernel relies on on AMD as on Intel). The loads of a copy come after the `Acquire` load of
//! the head in program order (the `asm!` block may access memory, so the compiler keeps it
//! there), and x86 does not let loads pass older loads.

use std::sync::atomic::{AtomicU64, Ordering};

use ipc_proto::ring::{Word, load_words, store_words};

/// Inline payloads from this many bytes on are copied with the CPU's string copy on x86-64;
/// shorter ones word by word, which costs less than the string copy's start-up (measured at
/// 64 B: the word loop about 3 % faster; see the module docs for 4 KiB).
pub const STRING_COPY_MIN: usize = 256;

/// A 64-bit word of a shared region: an [`AtomicU64`] (every access to a single word is
/// atomic) whose payload copies ([`Word::store_bytes`], [`Word::load_bytes`]) may be wider
/// (see the module docs). Same size and alignment as `u64`.
#[repr(transparent)]
#[derive(Debug, Default)]
pub struct SharedWord(AtomicU64);

impl SharedWord {
    /// A word holding `value` (for tests and for regions in this process's own memory).
    pub const fn new(value: u64) -> Self {
        Self(AtomicU64::new(value))
    }

    /// The word as an atomic.
    pub fn atomic(&self) -> &AtomicU64 {
        &self.0
    }
}

impl Word for SharedWord {
    #[inline]
    fn load(&self, order: Ordering) -> u64 {
        self.0.load(order)
    }

    #[inline]
    fn store(&self, value: u64, order: Ordering) {
        self.0.store(value, order);
    }

    #[inline]
    fn fence(order: Ordering) {
        std::sync::atomic::fence(order);
    }

    // Always inlined, as the provided copy is: a short payload's copy stays in the ring's
    // push, with one comparison more.
    #[inline(always)]
    fn store_bytes(dst: &[Self], bytes: &[u8]) {
        let whole = (bytes.len() / 8).min(dst.len());
        if whole * 8 < STRING_COPY_MIN {
            return store_words(dst, bytes);
        }
        let (head, tail) = bytes.split_at(whole * 8);
        let (words, rest) = dst.split_at(whole);
        string_copy::into_words(words, head);
        store_words(rest, tail);
    }

    #[inline(always)]
    fn load_bytes(src: &[Self], out: &mut [u8]) {
        let whole = (out.len() / 8).min(src.len());
        if whole * 8 < STRING_COPY_MIN {
            return load_words(src, out);
        }
        let (head, tail) = out.split_at_mut(whole * 8);
        let (words, rest) = src.split_at(whole);
        string_copy::out_of_words(words, head);
        load_words(rest, tail);
    }
}

#[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
mod string_copy {
    use super::SharedWord;

    /// Copies `src` into `dst`, which has exactly `src.len()` bytes.
    #[inline(never)]
    pub(super) fn into_words(dst: &[SharedWord], src: &[u8]) {
        assert_eq!(dst.len() * 8, src.len(), "whole words only");
        // SAFETY: `dst` is `src.len()` bytes of live words (checked above) and `src` is that
        // many readable bytes; `SharedWord` is an `AtomicU64`, an `UnsafeCell`, so writing
        // through a pointer derived from a shared reference to it is allowed. The two do not
        // overlap: this crate hands a shared region out as words only, never as bytes. `src`
        // may still be memory another peer writes (a pooled segment's `Mapping`, with its own
        // caveats): the copy then reads other bytes, never undefined behaviour (module docs).
        // `rep movsb` copies forward (the direction flag is clear on entry to `asm!`), touches
        // no stack, leaves the flags alone and clobbers only the three registers declared,
        // each a full 64-bit pointer or count (not compiled for x32).
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") src.len() => _,
                inout("rdi") dst.as_ptr().cast::<u8>().cast_mut() => _,
                inout("rsi") src.as_ptr() => _,
                options(nostack, preserves_flags),
            );
        }
    }

    /// Copies `src`'s bytes into `dst`, which has exactly `src.len() * 8` bytes.
    #[inline(never)]
    pub(super) fn out_of_words(src: &[SharedWord], dst: &mut [u8]) {
        assert_eq!(src.len() * 8, dst.len(), "whole words only");
        // SAFETY: as in `into_words`, the other way: `dst` is our own exclusive buffer of
        // `src.len() * 8` bytes (checked above), `src` that many bytes of live words, which
        // may be read through a shared reference; they do not overlap (`dst` is a `&mut`).
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") dst.len() => _,
                inout("rdi") dst.as_mut_ptr() => _,
                inout("rsi") src.as_ptr().cast::<u8>() => _,
                options(nostack, preserves_flags),
            );
        }
    }
}

/// Elsewhere (and on x32, whose pointers are 32 bits wide), word by word (what the provided
/// copies do).
#[cfg(not(all(target_arch = "x86_64", target_pointer_width = "64")))]
mod string_copy {
    use super::SharedWord;
    use ipc_proto::ring::{load_words, store_words};

    pub(super) fn into_words(dst: &[SharedWord], src: &[u8]) {
        store_words(dst, src);
    }

    pub(super) fn out_of_words(src: &[SharedWord], dst: &mut [u8]) {
        load_words(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(n: usize) -> Vec<SharedWord> {
        (0..n).map(|_| SharedWord::new(u64::MAX)).collect()
    }

    /// What the provided word-by-word copy leaves in `n` words, the reference.
    fn by_words(n: usize, bytes: &[u8]) -> Vec<u64> {
        let dst: Vec<std::sync::atomic::AtomicU64> = (0..n)
            .map(|_| std::sync::atomic::AtomicU64::new(u64::MAX))
            .collect();
        store_words(&dst, bytes);
        dst.iter().map(|w| w.load(Ordering::Relaxed)).collect()
    }

    #[test]
    fn payloads_of_every_length_go_in_and_out_as_the_word_copy_moves_them() {
        // Both sides of the threshold, whole words and a tail, a payload longer than the
        // words (only what fits is stored, as the word copy does).
        for len in [
            0, 1, 7, 8, 63, 248, 255, 256, 257, 263, 264, 1000, 4096, 4100, 5000,
        ] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let n = 513;
            let dst = words(n);
            SharedWord::store_bytes(&dst, &bytes);
            let got: Vec<u64> = dst.iter().map(|w| w.load(Ordering::Relaxed)).collect();
            assert_eq!(got, by_words(n, &bytes), "store of {len} bytes");

            let fit = len.min(n * 8);
            let mut out = vec![0xaa; fit];
            SharedWord::load_bytes(&dst, &mut out);
            assert_eq!(out, bytes[..fit], "load of {len} bytes");
        }
    }

    #[test]
    fn a_copy_stays_within_its_words() {
        // 300 bytes into 40 words: 37 whole words by the string copy, a tail word padded with
        // zeros, the two words after untouched.
        let bytes = vec![0x5a; 300];
        let dst = words(40);
        SharedWord::store_bytes(&dst[..38], &bytes);
        let got: Vec<u64> = dst.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        assert!(got[..37].iter().all(|w| *w == 0x5a5a_5a5a_5a5a_5a5a));
        assert_eq!(got[37], 0x5a5a_5a5a);
        assert_eq!(got[38..], [u64::MAX, u64::MAX]);

        // A load into a buffer shorter than the words reads only what the buffer holds.
        let mut out = vec![0; 296];
        SharedWord::load_bytes(&dst, &mut out);
        assert!(out.iter().all(|b| *b == 0x5a));
    }
}
