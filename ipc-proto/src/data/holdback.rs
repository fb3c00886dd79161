//! Holding publishes back for full `Block` subscribers: which publish goes now, which waits
//! (and until when), which is refused, and when the waiting ones go.
//!
//! See [`HoldBack`].

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use tracing::trace;

use super::io::Room;

/// Most messages of one topic held back for full `Block` subscribers: a publish beyond it is
/// refused ([`Admit::Full`]). Both drivers bound what they hold with it.
pub const MAX_HELD: usize = 1024;

/// The verdict on a publish attempt ([`HoldBack::publish`]).
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum Admit<T> {
    /// Publish it now (not expired): the topic's `Block` subscribers have room, and nothing of
    /// the topic waits before it. It counts against the room until
    /// [`HoldInput::Accounted`].
    Go(T),
    /// Held: it comes out of [`HoldBack::poll_output`] as [`HoldOutput::Publish`] when room
    /// comes back, at the latest at `deadline` (then `expired`).
    Held {
        /// When it goes even without room.
        deadline: Instant,
    },
    /// Refused: [`MAX_HELD`] (or the configured bound) messages of the topic are held already.
    /// Given back untouched; [`HoldOutput::Drained`] says when to try again.
    Full(T),
}

/// An input to a [`HoldBack`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldInput<'a> {
    /// The data plane reported the topic's room ([`DataEvt::Room`](super::DataEvt::Room), or
    /// [`DataPlane::room`](super::DataPlane::room)); `None`: no `Block` subscriber, no limit.
    Room {
        /// The topic.
        topic: &'a str,
        /// Its room now.
        room: Option<Room>,
    },
    /// The data plane took in one message let go before ([`Admit::Go`] or
    /// [`HoldOutput::Publish`]): it counts no more against the room, which is now `room`.
    Accounted {
        /// The topic.
        topic: &'a str,
        /// Its room now, with that message counted.
        room: Option<Room>,
    },
    /// The topic is no longer published: everything held for it goes now, as expired, and its
    /// room and counts are forgotten. No [`HoldOutput::Drained`] follows.
    Forget {
        /// The topic.
        topic: &'a str,
    },
}

/// What a [`HoldBack`] decided.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum HoldOutput<T> {
    /// Publish this held message now, with [`DataCmd::Publish`](super::DataCmd::Publish)'s
    /// `expired` as given: `true` when its wait ran out without room (it is dropped for the
    /// subscribers still full). It counts against the room until [`HoldInput::Accounted`].
    Publish {
        /// The topic.
        topic: String,
        /// What was held.
        item: T,
        /// Whether the wait ran out.
        expired: bool,
    },
    /// Every message held for `topic` has gone out (edge: once each time the topic's held
    /// queue empties, not after [`HoldInput::Forget`]): publishing will not be refused now.
    Drained {
        /// The topic.
        topic: String,
    },
}

impl<T> HoldOutput<T> {
    /// The variant's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Publish { .. } => "Publish",
            Self::Drained { .. } => "Drained",
        }
    }
}

/// Topics a [`HoldBack`] keeps knowing while idle (no limit, nothing pending or held).
const KEEP_IDLE: usize = 16;

/// A message waiting for room.
#[derive(Debug)]
struct Held<T> {
    item: T,
    deadline: Instant,
}

/// One topic's room, what counts against it, and what waits for it.
#[derive(Debug)]
struct Topic<T> {
    room: Option<Room>,
    /// Messages let go and not yet taken in by the data plane.
    pending: u32,
    /// Deadlines never decrease from front to back.
    held: VecDeque<Held<T>>,
}

impl<T> Default for Topic<T> {
    fn default() -> Self {
        Self {
            room: None,
            pending: 0,
            held: VecDeque::new(),
        }
    }
}

impl<T> Topic<T> {
    /// A topic new to the hold-back with a limit: nothing pending or held yet.
    fn limited(room: Option<Room>) -> Self {
        Self {
            room,
            ..Self::default()
        }
    }

    /// Whether one more message may go now without waiting.
    fn has_room(&self) -> bool {
        self.room.is_none_or(|r| self.pending < r.messages)
    }

    /// A publish that goes at once (see [`HoldBack::go`]), counted pending; `false` changes
    /// nothing. `publish` would release nothing first: it goes only with nothing held.
    fn go(&mut self) -> bool {
        let go = self.held.is_empty() && self.has_room();
        if go {
            self.pending = self.pending.saturating_add(1);
        }
        go
    }

    /// Nothing to remember: no limit, nothing pending or held.
    fn is_idle(&self) -> bool {
        self.room.is_none() && self.pending == 0 && self.held.is_empty()
    }

    /// Lets held messages go, in order, while there is room or their deadline has passed.
    fn release(&mut self, topic: &str, now: Instant, out: &mut VecDeque<HoldOutput<T>>) {
        let was_holding = !self.held.is_empty();
        while let Some(front) = self.held.front() {
            let room = self.has_room();
            if !room && front.deadline > now {
                break;
            }
            let h = self.held.pop_front().expect("front is some");
            self.pending = self.pending.saturating_add(1);
            trace!(%topic, expired = !room, "a held message goes");
            out.push_back(HoldOutput::Publish {
                topic: topic.to_owned(),
                item: h.item,
                expired: !room,
            });
        }
        if was_holding && self.held.is_empty() {
            out.push_back(HoldOutput::Drained {
                topic: topic.to_owned(),
            });
        }
    }
}

/// Decides, per topic, which publishes go now, which wait for room at full `Block`
/// subscribers and until when, and which are refused; one per node, fed the data plane's
/// rooms.
///
/// The [`DataPlane`](super::DataPlane) reports each topic's [`Room`] ([`DataEvt::Room`]): how
/// many more messages its fullest `Block` subscriber can take, and how long a publisher may
/// wait for more. It counts the publishes it let go against that room until the
/// data plane has taken them in (`pending`, see [`HoldInput::Accounted`]), and per topic keeps
/// a queue of the publishes waiting for room, in order:
///
/// ```text
///   publish ──(nothing held, room left)──────────────► Admit::Go        (pending + 1)
///      │
///      ├──(no room left, or others held first)──────► Admit::Held { deadline }
///      │                                                   │
///      │          room came back (Room, Accounted) ────────┼──► HoldOutput::Publish { expired: false }
///      │          deadline passed, still no room ──────────┴──► HoldOutput::Publish { expired: true }
///      │                                              (the last one out: HoldOutput::Drained)
///      └──(MAX_HELD held already)───────────────────► Admit::Full
/// ```
///
/// A held message's deadline is the time it was held plus the room's timeout (the longest of
/// the `Block` subscribers'), and never earlier than the deadline of the message held before
/// it: held messages go out in the order they were published.
///
/// It is generic over what it holds: a driver that publishes from its own loop holds the
/// payloads; a driver whose publishing threads block holds a ticket per waiting thread and
/// lets each thread wait, under its lock, until its ticket is out or the
/// [`poll_timeout`](Self::poll_timeout) deadline comes.
///
/// Like the other machines, it reads no clock: `now` is an argument of every mutating call
/// (an earlier `now` than before counts as the latest seen), [`poll_timeout`](Self::poll_timeout)
/// says when to call [`handle_timeout`](Self::handle_timeout), and what it decides comes
/// out of [`poll_output`](Self::poll_output), to drain after every call.
///
/// Getters: [`held`](Self::held), [`is_full`](Self::is_full), [`pending`](Self::pending),
/// [`room`](Self::room), [`max_held`](Self::max_held); inputs: [`handle`](Self::handle),
/// [`handle_timeout`](Self::handle_timeout); command: [`publish`](Self::publish); outputs:
/// [`poll_output`](Self::poll_output) (drain after every call), [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use std::time::{Duration, Instant};
/// use ipc_proto::data::{Admit, HoldBack, HoldInput, HoldOutput, Room};
///
/// # #[allow(clippy::disallowed_methods)] // an example's epoch
/// let t0 = Instant::now();
/// let mut hold = HoldBack::new();
/// // The data plane says: the `Block` subscribers of "t" take one more, and wait 10 ms.
/// let room = Some(Room { messages: 1, timeout: Duration::from_millis(10) });
/// hold.handle(t0, HoldInput::Room { topic: "t", room });
///
/// assert!(matches!(hold.publish(t0, "t", "a"), Admit::Go("a")));
/// // "a" is not taken in yet: it counts against the room.
/// let deadline = t0 + Duration::from_millis(10);
/// assert!(matches!(hold.publish(t0, "t", "b"), Admit::Held { deadline: d } if d == deadline));
/// assert_eq!(hold.poll_timeout(), Some(deadline));
///
/// // The data plane took "a" in, and its subscriber is still full: "b" waits on...
/// let full = Some(Room { messages: 0, timeout: Duration::from_millis(10) });
/// hold.handle(t0, HoldInput::Accounted { topic: "t", room: full });
/// assert!(hold.poll_output().is_none());
/// // ...until its deadline: it goes, dropped for the subscribers still full.
/// hold.handle_timeout(deadline);
/// assert_eq!(
///     hold.poll_output(),
///     Some(HoldOutput::Publish { topic: "t".into(), item: "b", expired: true })
/// );
/// assert_eq!(hold.poll_output(), Some(HoldOutput::Drained { topic: "t".into() }));
/// assert_eq!(hold.poll_output(), None);
/// ```
///
/// [`DataEvt::Room`]: super::DataEvt::Room
#[derive(Debug)]
pub struct HoldBack<T> {
    max_held: usize,
    topics: BTreeMap<String, Topic<T>>,
    out: VecDeque<HoldOutput<T>>,
    last_now: Option<Instant>,
}

impl<T> Default for HoldBack<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> HoldBack<T> {
    /// Holds at most [`MAX_HELD`] messages per topic.
    pub fn new() -> Self {
        Self::with_max_held(MAX_HELD)
    }

    /// Holds at most `max_held` messages per topic.
    pub fn with_max_held(max_held: usize) -> Self {
        Self {
            max_held,
            topics: BTreeMap::new(),
            out: VecDeque::new(),
            last_now: None,
        }
    }

    // ---- getters ----

    /// The bound on held messages per topic.
    pub fn max_held(&self) -> usize {
        self.max_held
    }

    /// Messages of `topic` held now.
    pub fn held(&self, topic: &str) -> usize {
        self.topics.get(topic).map_or(0, |t| t.held.len())
    }

    /// Whether a publish on `topic` would be refused now ([`Admit::Full`]).
    pub fn is_full(&self, topic: &str) -> bool {
        self.held(topic) >= self.max_held
    }

    /// Messages of `topic` let go and not yet taken in by the data plane.
    pub fn pending(&self, topic: &str) -> u32 {
        self.topics.get(topic).map_or(0, |t| t.pending)
    }

    /// The room of `topic` last reported (`None`: no limit).
    pub fn room(&self, topic: &str) -> Option<Room> {
        self.topics.get(topic).and_then(|t| t.room)
    }

    // ---- inputs ----

    /// Takes in what the data plane reported; held messages that may go now come out of
    /// [`poll_output`](Self::poll_output).
    pub fn handle(&mut self, now: Instant, input: HoldInput<'_>) {
        let now = self.clamp(now);
        // One lookup of a known topic per input: a publisher's topic is (see `update`).
        match input {
            HoldInput::Room { topic, room } => {
                self.update_or_limit(topic, now, room, |t| t.room = room);
            }
            HoldInput::Accounted { topic, room } => {
                self.update_or_limit(topic, now, room, |t| {
                    t.pending = t.pending.saturating_sub(1);
                    t.room = room;
                });
            }
            HoldInput::Forget { topic } => {
                if let Some(t) = self.topics.remove(topic) {
                    for h in t.held {
                        self.out.push_back(HoldOutput::Publish {
                            topic: topic.to_owned(),
                            item: h.item,
                            expired: true,
                        });
                    }
                }
            }
        }
    }

    /// Lets go the held messages whose deadline has passed (expired, when there is still no
    /// room). Early or spurious calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        let due: Vec<String> = (self.topics.iter())
            .filter(|(_, t)| t.held.front().is_some_and(|h| h.deadline <= now))
            .map(|(topic, _)| topic.clone())
            .collect();
        for topic in due {
            self.settle(&topic, now);
        }
    }

    // ---- commands ----

    /// A publish on `topic` that goes at once, if it does: no message of the topic is held
    /// before it and its `Block` subscribers have room (a topic never published on is
    /// `false`). Counted as [`publish`](Self::publish) counts one that goes ([`Admit::Go`]),
    /// which it would be at any time; `false` changes nothing: call `publish` then. For a
    /// driver that reads the clock only when it must: a publish that goes needs no time.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ipc_proto::data::{Admit, HoldBack, HoldInput, Room};
    ///
    /// # #[allow(clippy::disallowed_methods)] // an example's epoch
    /// let now = Instant::now();
    /// let mut hold = HoldBack::new();
    /// assert!(!hold.go("t"), "a topic never published on");
    /// assert!(matches!(hold.publish(now, "t", 1), Admit::Go(1)));
    /// assert!(hold.go("t"));
    /// // Room for no more than the two already going: the next is held, by `publish`.
    /// let room = Some(Room { messages: 2, timeout: Duration::from_millis(5) });
    /// hold.handle(now, HoldInput::Room { topic: "t", room });
    /// assert!(!hold.go("t"));
    /// assert!(matches!(hold.publish(now, "t", 3), Admit::Held { .. }));
    /// ```
    pub fn go(&mut self, topic: &str) -> bool {
        self.topics.get_mut(topic).is_some_and(Topic::go)
    }

    /// [`HoldInput::Room`] and [`go`](Self::go) at once, without a time, for a driver that
    /// reads the topic's room at each publish: with nothing of the topic held, a room told at
    /// any time has the same effect (only held messages wait on a clock). With messages held
    /// (or a topic never published on), changes nothing and returns `false`: tell the room
    /// with [`handle`](Self::handle) at the time, then [`publish`](Self::publish).
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use ipc_proto::data::{Admit, HoldBack, Room};
    ///
    /// # #[allow(clippy::disallowed_methods)] // an example's epoch
    /// let now = Instant::now();
    /// let mut hold = HoldBack::new();
    /// assert!(matches!(hold.publish(now, "t", 1), Admit::Go(1)));
    /// let room = |messages| Some(Room { messages, timeout: Duration::from_millis(5) });
    /// assert!(hold.go_with_room("t", room(2)), "one pending, room for two");
    /// assert!(!hold.go_with_room("t", room(2)), "two pending: full");
    /// assert!(matches!(hold.publish(now, "t", 3), Admit::Held { .. }));
    /// assert!(!hold.go_with_room("t", None), "held: the room waits for `handle`");
    /// ```
    pub fn go_with_room(&mut self, topic: &str, room: Option<Room>) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        if !t.held.is_empty() {
            return false;
        }
        t.room = room;
        t.go()
    }

    /// A publish attempt on `topic` at `now`: it goes, is held, or is refused.
    pub fn publish(&mut self, now: Instant, topic: &str, item: T) -> Admit<T> {
        let now = self.clamp(now);
        let max_held = self.max_held;
        // One lookup (`value_of` makes two): a publisher's topic is known after its first.
        let t = match self.topics.get_mut(topic) {
            Some(t) => t,
            None => self.topics.entry(topic.to_owned()).or_default(),
        };
        // What has room or is due goes first: held messages keep their turn.
        t.release(topic, now, &mut self.out);
        if t.held.is_empty() && t.has_room() {
            t.pending = t.pending.saturating_add(1);
            return Admit::Go(item);
        }
        if t.held.len() >= max_held {
            trace!(%topic, held = t.held.len(), "publish refused: too many held");
            return Admit::Full(item);
        }
        // Held messages are left only while the room is exhausted, and no room means a limit.
        let timeout = t
            .room
            .map(|r| r.timeout)
            .expect("no room is a reported room");
        let deadline = (t.held.back()).map_or(now + timeout, |b| b.deadline.max(now + timeout));
        trace!(%topic, held = t.held.len() + 1, "publish held for room");
        t.held.push_back(Held { item, deadline });
        Admit::Held { deadline }
    }

    // ---- outputs ----

    /// The next decision; drain until `None` after every call.
    pub fn poll_output(&mut self) -> Option<HoldOutput<T>> {
        self.out.pop_front()
    }

    /// When the first held message's wait runs out: call
    /// [`handle_timeout`](Self::handle_timeout) then. Pure.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.topics.values())
            .filter_map(|t| t.held.front().map(|h| h.deadline))
            .min()
    }

    // ---- internals ----

    fn clamp(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |l| l.max(now));
        self.last_now = Some(now);
        now
    }

    /// Releases what may go of `topic`, then forgets the topic if nothing is left of it and
    /// more than [`KEEP_IDLE`] topics are known (an idle topic behaves as an unknown one; a
    /// publisher's topic stays known between its messages, not copied and dropped for each).
    fn settle(&mut self, topic: &str, now: Instant) {
        self.update(topic, now, |_| {});
    }

    /// Applies `f` to a known `topic` and settles it ([`update`](Self::update)); an unknown
    /// one has nothing pending or held, so it behaves as an idle one: only a limit (`room`)
    /// makes it known.
    fn update_or_limit(
        &mut self,
        topic: &str,
        now: Instant,
        room: Option<Room>,
        f: impl FnOnce(&mut Topic<T>),
    ) {
        if !self.update(topic, now, f) && room.is_some() {
            self.topics.insert(topic.to_owned(), Topic::limited(room));
        }
    }

    /// Applies `f` to a known `topic`, then settles it (see [`settle`](Self::settle)), with
    /// one lookup; `false` if the topic is not known.
    fn update(&mut self, topic: &str, now: Instant, f: impl FnOnce(&mut Topic<T>)) -> bool {
        let Some(t) = self.topics.get_mut(topic) else {
            return false;
        };
        f(t);
        t.release(topic, now, &mut self.out);
        if t.is_idle() && self.topics.len() > KEEP_IDLE {
            self.topics.remove(topic);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Idle topics are kept (a publisher's topic is not copied at each publish) but bounded:
    /// a publisher of many topics with no limit leaves at most [`KEEP_IDLE`] behind.
    #[test]
    fn idle_topics_are_kept_up_to_a_bound() {
        #[allow(clippy::disallowed_methods)] // the test's epoch
        let t0 = Instant::now();
        let mut h = HoldBack::new();
        for i in 0..100 {
            let topic = format!("t{i}");
            assert!(matches!(h.publish(t0, &topic, i), Admit::Go(_)));
            h.handle(
                t0,
                HoldInput::Accounted {
                    topic: &topic,
                    room: None,
                },
            );
        }
        assert_eq!(h.topics.len(), KEEP_IDLE);
        // A limited topic stays known while it is limited, idle or not.
        let room = Some(Room {
            messages: 4,
            timeout: Duration::from_millis(5),
        });
        h.handle(
            t0,
            HoldInput::Room {
                topic: "limited",
                room,
            },
        );
        assert!(h.topics.contains_key("limited"));
        assert_eq!(h.room("limited"), room);
    }
}
