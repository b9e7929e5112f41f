//! Link options for the `pabi` binary only.
//!
//! A position-dependent executable has its 43,000 relative relocations
//! resolved by the linker, not by the dynamic loader at every start, which
//! also spares the copy-on-write faults on the pages they touch: most of
//! the start-up of a short command such as `pabi validate` on one small
//! plugin. The binary is not a shared object and runs from one address, so
//! nothing is lost but address-space layout randomisation of its own code;
//! its heap, stack and the plugins' memories stay randomised.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
