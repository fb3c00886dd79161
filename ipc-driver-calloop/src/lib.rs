//! ipc-pubsub as calloop event sources. Filled by the "ipc-driver-calloop" issue.
