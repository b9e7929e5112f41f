//! The README's embedding example is a program CI builds and runs: the
//! block under "Embed a pool" is `examples/tokio_pool.rs` from its first
//! line of code to its end.

#[test]
fn the_readme_shows_the_pool_example_as_it_is() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("../README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/tokio_pool.rs")).unwrap();
    let shown = &example[example.find("// Cargo.toml:").expect("the example's first line of code")..];
    assert!(
        readme.contains(&format!("```rust\n{shown}```\n")),
        "the README's pool example differs from examples/tokio_pool.rs; copy the file from `// Cargo.toml:` on"
    );
}
