//! Two nodes of a fresh group, one publishing topic `t` to the other (included with
//! `#[path]`): joined, the subscription routed (the publisher's node sees it), so that what
//! is published next goes to it.

// Each test binary that includes this module uses some of it.
#![allow(dead_code)]

use std::time::Duration;

use ipc_driver_std::{Node, Publisher, PublisherOptions, Subscription, SubscriptionOptions};

/// Generous: everything here takes milliseconds on an idle machine.
const WAIT: Duration = Duration::from_secs(20);

/// The publishing node, the subscribing one, and their ends of topic `t`.
pub(crate) struct Pair {
    pub(crate) p: Node,
    pub(crate) s: Node,
    pub(crate) publisher: Publisher,
    pub(crate) sub: Subscription,
}

/// A publisher named `names.0` with `options` and a `Block` subscriber named `names.1` (the
/// kernel keeps 15 bytes of a thread's name, so their I/O threads are told apart by the
/// first letter), each with shared-memory rings on or off as `rings` says.
pub(crate) fn routed_pair(
    names: (&str, &str),
    options: PublisherOptions,
    rings: (bool, bool),
) -> Pair {
    routed_pair_with(names, options, SubscriptionOptions::block(WAIT), rings)
}

/// [`routed_pair`] with a subscription of these options.
pub(crate) fn routed_pair_with(
    names: (&str, &str),
    options: PublisherOptions,
    sub_options: SubscriptionOptions,
    rings: (bool, bool),
) -> Pair {
    let g = format!("t-{:016x}", getrandom::u64().expect("OS randomness"));
    let join = |name: &str, rings: bool| {
        Node::builder(name)
            .group(&g)
            .shared_memory_rings(rings)
            .join()
            .expect("join")
    };
    let p = join(names.0, rings.0);
    let s = join(names.1, rings.1);
    let publisher = p.publisher_with("t", "x", options).expect("publisher");
    let sub = s.subscription("t", sub_options).expect("sub");
    let sid = s.id();
    p.wait_view(WAIT, |v| {
        v.node(sid).is_some_and(|n| n.subscribes.len() == 1)
    })
    .expect("routed");
    Pair {
        p,
        s,
        publisher,
        sub,
    }
}
