//! Links the functions that startup and the common requests run first and together.
//!
//! Idle RSS is mostly the binary's text pages, and the kernel maps up to 64 KiB around every page
//! fault on a file, so mapped text tracks how scattered the executed code is. `symbol-order.txt`
//! (made by `scripts/symbol-order` from a callgrind run of the server) lists those functions; lld
//! places them first, in that order. Release builds for x86_64 Linux (glibc) only: that target
//! links with lld by default since Rust 1.90. `BERTH_SYMBOL_ORDER=0` turns it off, e.g. for a
//! custom linker that does not know the flag. Symbols the file names but the build lacks are
//! skipped, so a stale file costs density, never correctness.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=BERTH_SYMBOL_ORDER");
    let release = env::var("PROFILE").is_ok_and(|p| p == "release");
    let lld_target = env::var("TARGET").is_ok_and(|t| t == "x86_64-unknown-linux-gnu");
    let disabled = env::var("BERTH_SYMBOL_ORDER").is_ok_and(|v| v == "0");
    let Ok(dir) = env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    if release && lld_target && !disabled {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={dir}/symbol-order.txt");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
