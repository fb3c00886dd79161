//! Configuring a node ([`NodeBuilder`]): a leaf, with the options shared with the std driver,
//! which [`NodeSource`](crate::NodeSource) starts from.

use ipc_driver_core::NodeConfig;

/// Configures and starts a node as a calloop event source.
///
/// ```no_run
/// use calloop::EventLoop;
/// use ipc_driver_calloop::{NodeEvent, NodeSource};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut event_loop: EventLoop<()> = EventLoop::try_new()?;
/// let source = NodeSource::builder("panel").group("desktop").join()?;
/// event_loop.handle().insert_source(source, |event, node, _state| {
///     if let NodeEvent::Synced { hub, .. } = event {
///         println!("{} sees hub {hub}: {} nodes", node.name(), node.view().nodes().len());
///     }
/// })?;
/// event_loop.run(None, &mut (), |_| {})?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Debug)]
pub struct NodeBuilder {
    pub(crate) config: NodeConfig,
}

impl NodeBuilder {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            config: NodeConfig::new(name),
        }
    }

    ipc_driver_core::node_builder_setters!();
}
