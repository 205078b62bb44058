//! forklore: the workspace-wide tests live in tests/; this crate has no code.
