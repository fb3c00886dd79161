//! What a bridge bridges, and how it reaches Zenoh.

use std::path::PathBuf;

use ipc_driver_std::DEFAULT_GROUP;
use zenoh::key_expr::OwnedKeyExpr;

use crate::BridgeError;

/// The default depth of the bridge's subscription queues ([`BridgeConfig::depth`]).
pub const DEFAULT_DEPTH: u32 = 64;

/// The default largest payload bridged either way ([`BridgeConfig::max_payload`]): 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;

/// The default bound on the payload bytes of Zenoh samples waiting for the group
/// ([`BridgeConfig::import_queue_bytes`]): 256 MiB.
pub const DEFAULT_IMPORT_QUEUE_BYTES: usize = 256 << 20;

/// A bridge's configuration: the group and node, the topics each way, the Zenoh session.
///
/// Setters chain on `&mut Self`. Patterns are Zenoh key expressions over topic names: `*` is one
/// `/`-separated chunk, `**` any number of them (`camera/*`, `remote/**`, `**` for all).
///
/// ```
/// use ipc_bridge_zenoh::{BridgeConfig, peer_config};
///
/// let mut config = BridgeConfig::new("robot");
/// config
///     .export("camera/**")?
///     .import("remote/**")?
///     .zenoh(peer_config(&["tcp/127.0.0.1:7447"], &[])?);
/// assert_eq!(config.key_prefix(), "ipc/robot");
/// # Ok::<(), ipc_bridge_zenoh::BridgeError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BridgeConfig {
    pub(crate) group: String,
    pub(crate) name: String,
    pub(crate) dir: Option<PathBuf>,
    pub(crate) key_prefix: Option<OwnedKeyExpr>,
    pub(crate) export: Vec<OwnedKeyExpr>,
    pub(crate) import: Vec<OwnedKeyExpr>,
    pub(crate) depth: u32,
    pub(crate) max_payload: usize,
    pub(crate) import_queue: usize,
    pub(crate) import_queue_bytes: usize,
    pub(crate) max_imported_topics: usize,
    pub(crate) liveliness: bool,
    pub(crate) zenoh: zenoh::Config,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self::new(DEFAULT_GROUP)
    }
}

impl BridgeConfig {
    /// A bridge of `group`, named `zenoh-bridge`, that bridges nothing yet, with Zenoh's
    /// default configuration (peer mode, multicast scouting on).
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            name: "zenoh-bridge".to_owned(),
            dir: None,
            key_prefix: None,
            export: Vec::new(),
            import: Vec::new(),
            depth: DEFAULT_DEPTH,
            max_payload: DEFAULT_MAX_PAYLOAD,
            import_queue: 1024,
            import_queue_bytes: DEFAULT_IMPORT_QUEUE_BYTES,
            max_imported_topics: 256,
            liveliness: true,
            zenoh: zenoh::Config::default(),
        }
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The key expression under which topics are put: `ipc/<group>` unless set
    /// ([`set_key_prefix`](Self::set_key_prefix)); topic `t` is key `<prefix>/t`.
    pub fn key_prefix(&self) -> String {
        match &self.key_prefix {
            Some(k) => k.to_string(),
            None => format!("ipc/{}", self.group),
        }
    }

    /// The bridge's node name in the group (what `status` lists). Default `zenoh-bridge`.
    pub fn name(&mut self, name: &str) -> &mut Self {
        name.clone_into(&mut self.name);
        self
    }

    /// The group's directory, as `NodeBuilder::dir` (default: the driver's).
    pub fn dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.dir = Some(dir.into());
        self
    }

    /// Puts topics under `prefix` instead of `ipc/<group>`: bridges of groups with different
    /// names share topics by sharing a prefix.
    pub fn set_key_prefix(&mut self, prefix: &str) -> Result<&mut Self, BridgeError> {
        let key = canonical("key prefix", prefix)?;
        if key.is_wild() {
            return Err(BridgeError::Invalid {
                what: "key prefix",
                value: prefix.to_owned(),
                reason: "wildcards are for patterns".into(),
            });
        }
        self.key_prefix = Some(key);
        Ok(self)
    }

    /// Exports the local topics matching `pattern` to Zenoh (repeatable).
    pub fn export(&mut self, pattern: &str) -> Result<&mut Self, BridgeError> {
        self.export.push(canonical("export pattern", pattern)?);
        Ok(self)
    }

    /// Imports the Zenoh topics matching `pattern` into the group (repeatable).
    pub fn import(&mut self, pattern: &str) -> Result<&mut Self, BridgeError> {
        self.import.push(canonical("import pattern", pattern)?);
        Ok(self)
    }

    /// The depth of each export subscription's queue, which drops its oldest message when
    /// full (a slow network never blocks the group). Default [`DEFAULT_DEPTH`].
    pub fn depth(&mut self, depth: u32) -> &mut Self {
        self.depth = depth.max(1);
        self
    }

    /// The largest payload bridged either way; a larger Zenoh sample is refused (counted).
    /// Default [`DEFAULT_MAX_PAYLOAD`].
    pub fn max_payload(&mut self, bytes: usize) -> &mut Self {
        self.max_payload = bytes;
        self
    }

    /// How many Zenoh samples wait for the group at most; a sample arriving to a full queue
    /// is dropped (counted). Default 1024.
    pub fn import_queue(&mut self, samples: usize) -> &mut Self {
        self.import_queue = samples.max(1);
        self
    }

    /// How many payload bytes wait for the group at most; a sample that would pass it is
    /// dropped (counted). Default [`DEFAULT_IMPORT_QUEUE_BYTES`].
    pub fn import_queue_bytes(&mut self, bytes: usize) -> &mut Self {
        self.import_queue_bytes = bytes;
        self
    }

    /// How many topics the bridge publishes in the group at most for Zenoh's samples (each
    /// is a publisher); samples of further topics are dropped (counted). Default 256.
    pub fn max_imported_topics(&mut self, topics: usize) -> &mut Self {
        self.max_imported_topics = topics;
        self
    }

    /// Whether the group's topology is declared as Zenoh liveliness tokens (default yes).
    pub fn liveliness(&mut self, on: bool) -> &mut Self {
        self.liveliness = on;
        self
    }

    /// The Zenoh session's configuration (see [`peer_config`]).
    pub fn zenoh(&mut self, config: zenoh::Config) -> &mut Self {
        self.zenoh = config;
        self
    }
}

fn canonical(what: &'static str, value: &str) -> Result<OwnedKeyExpr, BridgeError> {
    OwnedKeyExpr::autocanonize(value.to_owned()).map_err(|e| BridgeError::Invalid {
        what,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

/// A Zenoh configuration in peer mode that listens on and connects to explicit endpoints
/// (`tcp/127.0.0.1:7447`, `unixsock-stream//run/bridge.sock`) and does not scout by multicast:
/// two bridges find each other only where told.
///
/// ```
/// let config = ipc_bridge_zenoh::peer_config(&["tcp/0.0.0.0:7447"], &["tcp/10.0.0.2:7447"])?;
/// # Ok::<(), ipc_bridge_zenoh::BridgeError>(())
/// ```
pub fn peer_config(listen: &[&str], connect: &[&str]) -> Result<zenoh::Config, BridgeError> {
    let mut config = zenoh::Config::default();
    let list = |eps: &[&str]| {
        let quoted: Vec<String> = eps.iter().map(|e| format!("{e:?}")).collect();
        format!("[{}]", quoted.join(","))
    };
    for (key, value) in [
        ("mode", "\"peer\"".to_owned()),
        ("listen/endpoints", list(listen)),
        ("connect/endpoints", list(connect)),
        ("scouting/multicast/enabled", "false".to_owned()),
    ] {
        config
            .insert_json5(key, &value)
            .map_err(|e| BridgeError::Zenoh(format!("{key} = {value}: {e}")))?;
    }
    Ok(config)
}
