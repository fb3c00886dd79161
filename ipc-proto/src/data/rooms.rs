//! [`RoomChanges`]: what may have changed the rooms of `Block` topics during one input of the
//! data plane, so that it recomputes only those, and none for a message sent at once.

use crate::ids::PeerId;

use super::topic::Topic;

/// What may have changed rooms since they were last computed (see `DataPlane::settle_rooms`).
#[derive(Debug, Default)]
pub(super) struct RoomChanges {
    /// Topics whose room may have changed (once each: as short as the node's topics).
    touched: Vec<Topic>,
    /// Changes of messages in flight on `Block` links, per topic and link, netted: a topic
    /// whose links all net zero has the room it had.
    moved: Vec<(Topic, PeerId, i32)>,
}

/// The most (topic, link) changes netted in one input; beyond, a topic is just touched (its
/// room recomputed), so an input that moves many stays linear.
const MAX_MOVED: usize = 16;

impl RoomChanges {
    /// The room of `topic` may have changed.
    pub(super) fn touch(&mut self, topic: &Topic) {
        touch(&mut self.touched, topic);
    }

    /// `delta` more messages of `topic` in flight on `peer`'s link, whose terms are `Block`.
    ///
    /// An entry that nets to zero is kept, and reused for another topic and link: a stream
    /// of messages sent at once (each +1 then -1 in one input) makes no clone of its topic
    /// (an atomic operation each, and its drop another) after its first. (So up to
    /// [`MAX_MOVED`] topics stay held here, and known to the plane's names, until the next
    /// [`clear`](Self::clear).)
    pub(super) fn moved(&mut self, topic: &Topic, peer: PeerId, delta: i32) {
        if let Some((_, _, d)) = (self.moved.iter_mut()).find(|(t, p, _)| *p == peer && t == topic)
        {
            *d += delta;
        } else if let Some(e) = self.moved.iter_mut().find(|(_, _, d)| *d == 0) {
            // Its topic and link netted to zero: their room is as it was.
            *e = (topic.clone(), peer, delta);
        } else if self.moved.len() < MAX_MOVED {
            self.moved.push((topic.clone(), peer, delta));
        } else {
            self.touch(topic);
        }
    }

    /// Forgets every change, and the topics kept for netting: the rooms were recomputed
    /// (wholesale, which is rare).
    pub(super) fn clear(&mut self) {
        self.touched.clear();
        self.moved.clear();
    }

    /// Whether nothing touched a room since the last [`Self::take`]: no topic touched, every
    /// move netted to zero (as a message sent at once, or received, leaves them).
    pub(super) fn is_quiet(&self) -> bool {
        self.touched.is_empty() && self.moved.iter().all(|(_, _, d)| *d == 0)
    }

    /// The topics whose room may have changed, to recompute; hand the list back with
    /// [`give_back`](Self::give_back) (it keeps its allocation).
    pub(super) fn take(&mut self) -> Vec<Topic> {
        for (topic, _, delta) in &mut self.moved {
            if *delta != 0 {
                *delta = 0;
                touch(&mut self.touched, topic);
            }
        }
        std::mem::take(&mut self.touched)
    }

    /// Hands back the list [`take`](Self::take) gave, emptied.
    pub(super) fn give_back(&mut self, touched: Vec<Topic>) {
        debug_assert!(touched.is_empty() && self.touched.is_empty());
        self.touched = touched;
    }
}

/// Adds `topic` to `touched` unless it is there ([`RoomChanges::touch`], also while its
/// netted changes are borrowed).
fn touch(touched: &mut Vec<Topic>, topic: &Topic) {
    if !touched.contains(topic) {
        touched.push(topic.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_that_do_not_cancel_out_touch_a_room() {
        let (a, b) = (Topic::from("a"), Topic::from("b"));
        let mut c = RoomChanges::default();
        assert!(c.is_quiet());
        // Queued and sent at once on one link: netted, quiet.
        c.moved(&a, PeerId(1), 1);
        c.moved(&a, PeerId(1), -1);
        assert!(c.is_quiet());
        // Queued on another.
        c.moved(&b, PeerId(1), 1);
        assert!(!c.is_quiet());
        let touched = c.take();
        assert!(c.is_quiet(), "taken");
        assert_eq!(touched, [b]);
        // One up on a link, one down on another: the room may have changed.
        let mut touched = touched;
        touched.clear();
        c.give_back(touched);
        c.moved(&a, PeerId(1), 1);
        c.moved(&a, PeerId(2), -1);
        assert_eq!(c.take(), [a]);
    }

    #[test]
    fn netted_entries_are_reused_and_past_the_bound_a_topic_is_touched() {
        let topics: Vec<Topic> = (0..2 * MAX_MOVED)
            .map(|i| Topic::from(format!("t{i}").as_str()))
            .collect();
        let mut c = RoomChanges::default();
        // Each nets to zero before the next: one entry serves them all.
        for t in &topics {
            c.moved(t, PeerId(1), 1);
            c.moved(t, PeerId(1), -1);
        }
        assert_eq!(c.moved.len(), 1);
        let touched = c.take();
        assert!(touched.is_empty());
        c.give_back(touched);
        // None nets to zero: the first ones are netted entries, the rest touched at once;
        // every one counts.
        for t in &topics {
            c.moved(t, PeerId(1), 1);
        }
        assert_eq!(c.moved.len(), MAX_MOVED);
        let mut touched = c.take();
        touched.sort();
        let mut all = topics.clone();
        all.sort();
        assert_eq!(touched, all);
    }
}
