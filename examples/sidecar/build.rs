//! Release builds on Linux place the functions that a representative run executes
//! side by side, hottest first (`link-order.txt`, written by
//! `bench/link-order/profile.sh`). The kernel maps a binary's code in 64 KiB blocks
//! around each page first touched; scattered over the whole text, the start-up and
//! request path map most of it, packed they map a fraction, and they share fewer
//! instruction-cache and TLB entries.
//!
//! It needs LLD, Rust's default linker on x86_64 Linux; names the binary no longer
//! has are skipped. `SIDECAR_LINK_ORDER=0` builds without it (for another linker).

fn main() {
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=SIDECAR_LINK_ORDER");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = env("SIDECAR_LINK_ORDER") != "0";
    let release = env("PROFILE") == "release";
    let lld_by_default = env("TARGET") == "x86_64-unknown-linux-gnu";
    if wanted && release && lld_by_default {
        let list = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("link-order.txt");
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
