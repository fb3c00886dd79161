//! Topic names as the data plane keeps them: one shared allocation per name ([`Names`]), so
//! that its maps, all keyed by topic, find a key by comparing pointers.
//!
//! A message touches several of those maps on its way out (its sequence, its subscribers,
//! each link's entry for the topic, the topic's room) and a few on its way in. Keyed by `Arc<str>`, each lookup compared the name's bytes with
//! every key on its path; keyed by [`Topic`], the key found is the same allocation as the
//! one looked up, and a pointer comparison settles it.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// A topic name, compared by its allocation first: two `Topic`s of one allocation are equal
/// without reading their bytes, and `Topic`s of different allocations compare as their names
/// do. Equality and order are a name's (a `Topic` borrows as its `str`, and maps may be
/// searched by either).
#[derive(Clone)]
pub(crate) struct Topic(Arc<str>);

impl Topic {
    /// The name, shared (for the outputs, which carry `Arc<str>`).
    pub(crate) fn arc(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// The same allocation.
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl From<&str> for Topic {
    fn from(name: &str) -> Self {
        Self(Arc::from(name))
    }
}

impl From<Arc<str>> for Topic {
    fn from(name: Arc<str>) -> Self {
        Self(name)
    }
}

impl Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Self) -> bool {
        self.same(other) || *self.0 == *other.0
    }
}

impl Eq for Topic {}

impl Ord for Topic {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.same(other) {
            Ordering::Equal
        } else {
            self.0.cmp(&other.0)
        }
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// The data plane's topic names: every name that enters it (a command, a record, the routes)
/// is looked up here, and the one [`Topic`] of that name is what its maps keep.
///
/// Bounded by what is in use: a name nothing else holds any more is forgotten when the set
/// has doubled since it was last swept (so a sweep costs amortised O(1) per new name).
#[derive(Debug, Default)]
pub(crate) struct Names {
    set: BTreeSet<Topic>,
    /// The size at which the next new name sweeps the set.
    sweep_at: usize,
}

/// The fewest names before the set is swept.
const SWEEP_MIN: usize = 64;

impl Names {
    /// The `Topic` of `name`.
    pub(crate) fn get(&mut self, name: &str) -> Topic {
        match self.set.get(name) {
            Some(t) => t.clone(),
            None => self.insert(Topic::from(name)),
        }
    }

    fn insert(&mut self, topic: Topic) -> Topic {
        if self.set.len() >= self.sweep_at {
            // Held only here: no map keys by it any more.
            self.set.retain(|t| Arc::strong_count(&t.0) > 1);
            self.sweep_at = (2 * self.set.len()).max(SWEEP_MIN);
        }
        self.set.insert(topic.clone());
        topic
    }

    /// How many names are kept (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

/// `map[key]`, made with its default first if absent. Unlike `entry`, makes an owned key only
/// then: a `Topic`'s clone and drop are an atomic increment and decrement of a shared count,
/// and a `String` key's copy an allocation, which a message would pay at every such map on
/// its way.
///
/// Two lookups when the key is there (`contains_key`, then `get_mut`): a function that
/// returns the reference found by `get_mut` or else inserts cannot borrow-check today. A
/// message's own lookups (its sequence number, its topic's entry on each link, the
/// hold-back's topic) write that `match map.get_mut(key) { Some(v) => v, None => .. }`
/// inline instead, where it does: one lookup, and an owned key only the first time.
pub(crate) fn value_of<'a, K, Q, V>(map: &'a mut BTreeMap<K, V>, key: &Q) -> &'a mut V
where
    K: Ord + Borrow<Q>,
    Q: Ord + ToOwned<Owned = K> + ?Sized,
    V: Default,
{
    if !map.contains_key(key) {
        map.insert(key.to_owned(), V::default());
    }
    map.get_mut(key).expect("inserted above")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn topics_compare_as_their_names() {
        let a1 = Topic::from("a");
        let a2 = Topic::from("a");
        let b = Topic::from("b");
        assert!(!a1.same(&a2));
        assert_eq!(a1, a2);
        assert_eq!(a1.cmp(&a2), Ordering::Equal);
        assert_eq!(a1.cmp(&b), Ordering::Less);
        assert_eq!(b.cmp(&a2), Ordering::Greater);
        assert_ne!(a1, b);
        // A map keyed by topics is searched by either a topic or a name.
        let map: BTreeMap<Topic, u32> = [(a1.clone(), 1), (b.clone(), 2)].into();
        assert_eq!(map.get(&a2), Some(&1));
        assert_eq!(map.get("b"), Some(&2));
        assert_eq!(map.get("c"), None);
    }

    #[test]
    fn a_name_is_one_topic_while_in_use() {
        let mut names = Names::default();
        let a = names.get("a");
        assert!(a.same(&names.get("a")));
        assert!(!a.same(&names.get("b")));
    }

    #[test]
    fn names_nothing_holds_are_forgotten() {
        let mut names = Names::default();
        let kept = names.get("kept");
        for i in 0..10 * SWEEP_MIN {
            names.get(&format!("t{i}"));
            assert!(names.len() <= 2 * SWEEP_MIN + 1, "{} names", names.len());
        }
        // The name in use survived every sweep: it is still the same topic.
        assert!(kept.same(&names.get("kept")));
    }
}
