//! Sets `cfg(attune_test_postgres)` when `ATTUNE_TEST_DATABASE_URL` is set, so the
//! kit's PostgreSQL-only tests are `#[ignore]`d (reported as skipped by nextest)
//! rather than passing without running. `tests/build.rs` does the same for the
//! end-to-end tests.

fn main() {
    const URL: &str = "ATTUNE_TEST_DATABASE_URL";
    println!("cargo::rerun-if-env-changed={URL}");
    println!("cargo::rustc-check-cfg=cfg(attune_test_postgres)");
    if std::env::var(URL).is_ok_and(|url| !url.trim().is_empty()) {
        println!("cargo::rustc-cfg=attune_test_postgres");
    }
}
