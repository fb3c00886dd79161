//! What both systems' children share: the case, the payload and its checksum, pinning, the
//! control socket and the report a child prints for the parent.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Every failure is a message; a child prints it and exits non-zero.
pub type Res<T> = Result<T, String>;

/// Turns any error into the message of a [`Res`].
pub fn err<E: std::fmt::Debug>(what: &'static str) -> impl FnOnce(E) -> String {
    move |e| format!("{what}: {e:?}")
}

/// One repetition's parameters, as the parent passes them to both children.
#[derive(Debug, Clone)]
pub struct Case {
    /// Payload bytes per message.
    pub size: usize,
    /// Timed messages (one-way) or round trips.
    pub msgs: u64,
    /// Untimed messages or round trips before them.
    pub warmup: u64,
    /// Subscriber queue depth (both systems): 8, as `bench payload` uses.
    pub window: usize,
    /// A name unique to this run, measure, system and repetition (iceoryx2 service names,
    /// our group name).
    pub name: String,
}

impl Case {
    /// All messages, warm-up included.
    pub fn all(&self) -> u64 {
        self.warmup + self.msgs
    }
}

/// Sums the payload as little-endian 64-bit words (the tail zero-padded): reads every byte,
/// costs about what a memcpy's read side does. The same sum `bench payload` uses.
pub fn checksum(bytes: &[u8]) -> u64 {
    let (words, tail) = bytes.as_chunks::<8>();
    let mut sum = 0u64;
    for w in words {
        sum = sum.wrapping_add(u64::from_le_bytes(*w));
    }
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    sum.wrapping_add(u64::from_le_bytes(last))
}

/// A payload of `size` bytes: a fixed pattern whose first 8 bytes carry the message's
/// sequence number, so every message differs and its checksum is known in advance.
pub struct Payload {
    pub bytes: Vec<u8>,
    base: u64,
}

impl Payload {
    pub fn new(size: usize) -> Self {
        let mut bytes: Vec<u8> = (0..size).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect();
        let stamp = size.min(8);
        bytes[..stamp].fill(0);
        let base = checksum(&bytes);
        Self { bytes, base }
    }

    /// Writes message `seq` into `dst` (exactly as long as the payload): one full copy.
    pub fn write_to(&self, dst: &mut [u8], seq: u64) {
        dst.copy_from_slice(&self.bytes);
        stamp(dst, seq);
    }

    /// The checksum message `seq` must have.
    pub fn sum(&self, seq: u64) -> u64 {
        if self.bytes.len() >= 8 { self.base.wrapping_add(seq) } else { self.base }
    }
}

/// Puts `seq` into the first 8 bytes of `dst` (when it has 8).
pub fn stamp(dst: &mut [u8], seq: u64) {
    if dst.len() >= 8 {
        dst[..8].copy_from_slice(&seq.to_le_bytes());
    }
}

/// Pins the calling thread, before it starts any other, to `cpu`: the threads it starts later
/// (our node's I/O thread, any iceoryx2 thread) inherit the mask, so the whole process runs on
/// that CPU.
pub fn pin(cpu: usize) -> Res<()> {
    let mut set = CpuSet::new();
    set.set(cpu).map_err(err("CPU number"))?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(err("sched_setaffinity"))
}

/// The control socket the parent wired between the two children of a repetition. It carries
/// nothing but 1-byte acknowledgements and, by closing, "I am done".
pub struct Control(UnixStream);

impl Control {
    /// Takes over the inherited descriptor `fd`.
    pub fn from_fd(fd: RawFd) -> Self {
        // SAFETY: the parent passed this descriptor (one end of a socketpair, inherited across
        // exec) for this child alone, and nothing else in this process owns or closes it.
        Self(unsafe { UnixStream::from_raw_fd(fd) })
    }

    pub fn ack(&mut self) -> Res<()> {
        self.0.write_all(&[1]).map_err(err("control write"))
    }

    /// Waits for one acknowledgement.
    pub fn wait_ack(&mut self) -> Res<()> {
        let mut b = [0u8; 1];
        self.0.read_exact(&mut b).map_err(err("control read (peer gone?)"))
    }

    /// Waits until the peer closes its end (its part of the repetition is over).
    pub fn until_closed(&mut self) -> Res<()> {
        let mut b = [0u8; 16];
        loop {
            match self.0.read(&mut b) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("control read: {e}")),
            }
        }
    }
}

/// What a child prints on its last stdout line (`RESULT {json}`) for the parent.
#[derive(Debug, Default)]
pub struct Report {
    /// Messages (or round trips) sent or received, warm-up included.
    pub msgs: u64,
    /// Sum of the checksums of every payload sent, or received and checked.
    pub checksum: u64,
    /// One-way sender: seconds from "warm-up received" to "last message received".
    pub secs: Option<f64>,
    /// Round-trip initiator: per-round-trip times, in ns (sorted by the report).
    pub samples: Vec<u64>,
    /// Receiver: how our messages travelled (`inline`, `pooled`, `fresh`), and how many.
    pub via: Vec<(String, u64)>,
}

impl Report {
    pub fn print(mut self) {
        self.samples.sort_unstable();
        let q = |p: f64| -> Option<u64> {
            (!self.samples.is_empty()).then(|| {
                let i = ((self.samples.len() - 1) as f64 * p).round() as usize;
                self.samples[i]
            })
        };
        let via: serde_json::Map<String, Value> =
            self.via.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let v = json!({
            "msgs": self.msgs,
            "checksum": self.checksum,
            "secs": self.secs,
            "median_ns": q(0.5),
            "p99_ns": q(0.99),
            "via": via,
        });
        println!("RESULT {v}");
    }

    /// Counts one message that came by `via`.
    pub fn count_via(&mut self, via: &str) {
        match self.via.iter_mut().find(|(k, _)| k == via) {
            Some((_, n)) => *n += 1,
            None => self.via.push((via.to_string(), 1)),
        }
    }
}
