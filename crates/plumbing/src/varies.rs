//! What a lesson prints that varies from run to run (a race's outcome, how work fell among
//! workers, a memory count), marked when the tests ask, so that its snapshot can redact it.
//!
//! In a terminal a lesson prints the plain value. Under the tests (which set
//! `FORKLORE_MARK_VARYING=1`) it prints `{varies: value}`, which the snapshot shows as
//! `[varies]`; the lesson prints what always holds on a line of its own, and the tests check
//! the varying values against it.

use std::fmt::Display;
use std::sync::OnceLock;

/// The variable the tests set.
pub const VARIABLE: &str = "FORKLORE_MARK_VARYING";

/// `value`, marked `{varies: value}` when the tests ask.
pub fn varies(value: impl Display) -> String {
    static MARK: OnceLock<bool> = OnceLock::new();
    if *MARK.get_or_init(|| std::env::var_os(VARIABLE).is_some_and(|v| v == "1")) {
        format!("{{varies: {value}}}")
    } else {
        value.to_string()
    }
}
