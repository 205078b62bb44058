//! What the types make impossible, proved: every program under compile-fail/ must fail to
//! compile, with the compiler's error beside it (`.stderr`), which names the reason. The
//! value-array, lock-race, zero-copy and pipe chapters make these claims.
//!
//! After a deliberate change of an error, `TRYBUILD=overwrite cargo test -p multiproc --test
//! compile_fail` rewrites the `.stderr` files: read them before committing.

#[test]
fn the_compiler_refuses() {
    trybuild::TestCases::new().compile_fail("tests/compile-fail/*.rs");
}
