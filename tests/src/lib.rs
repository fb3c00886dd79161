//! Helpers shared by the multi-process and cross-driver tests.
