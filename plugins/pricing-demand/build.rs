//! Link settings of the module.

fn main() {
    // A 32 KiB stack instead of Rust's default 1 MiB: the module's stack, data and heap then fit in
    // one 64 KiB page of linear memory. The host resets an instance's memory after every decision
    // by scanning and restoring its pages, so a smaller memory makes every fresh instance cheaper.
    // The deepest call (formatting an unusual number through core::fmt) needs a few KiB; an
    // overflow runs below address 0 and traps, which the host answers with its fallback.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=-zstack-size=32768");
    }
}
