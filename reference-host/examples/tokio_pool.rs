//! A pool of plugin instances in a tokio application: limits of its own, a
//! typed call from a thread, concurrent async calls, a call cancelled by a
//! timeout, one by a handle, and a reload while serving.
//!
//!     cargo run -p pabi-host --example tokio_pool -- target/plugins/rust/text.wasm
//!
//! Any plugin with an `upper` function does (the text example in every
//! language has one). The README shows this file from the line after this
//! header to the end, and a test checks that it still does.

// Cargo.toml: pabi-host = { path = "PABI/reference-host" }, anyhow = "1",
//             tokio = { version = "1", features = ["rt", "time"] }
use std::time::Duration;

use pabi_host::{CancelHandle, Config, Host, Pool};

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: tokio_pool PLUGIN.wasm"))?;
    let wasm = std::fs::read(&path)?;
    let host = Host::new(Config::builder().timeout(Duration::from_millis(200)).build())?;
    // This plugin's calls get a longer deadline than the host's others.
    let mut limits = host.config().limits().clone();
    limits.timeout = Duration::from_secs(2);
    let pool = Pool::builder().instances(2).max_queue(64).build(&host.with_limits(limits)?, &wasm)?;
    // From any thread, blocking, as bytes or as text (or JSON, with `Json`):
    let upper: String = pool.call_as("upper", "record 0")?;
    println!("a blocking call: {upper}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    runtime.block_on(async {
        // From async code: eight calls at once on two instances; the queue
        // holds the rest.
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { pool.call_async("upper", format!("record {i}").into_bytes()).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            println!("call {i}: {}", String::from_utf8_lossy(&call.await??));
        }
        // A caller that stops waiting: the future is dropped, and so is the
        // call, whatever the plugin was doing; its instance is replaced.
        let hurried =
            tokio::time::timeout(Duration::from_micros(1), pool.call_async("upper", vec![b'a'; 1 << 20])).await;
        println!("a call given 1 µs: {}", if hurried.is_err() { "cancelled" } else { "finished first" });
        // Or cancel from anywhere, with a handle, before or while it runs.
        let cancel = CancelHandle::new();
        cancel.cancel();
        let cancelled = pool.call_async_cancellable("upper", b"too late".to_vec(), cancel).await;
        println!("a call cancelled by its handle: {}", cancelled.unwrap_err());
        // A new version while serving, into every instance, with the state
        // when the plugin has one (LIFE-11): the same bytes here.
        pool.reload(&wasm)?;
        let after = pool.call_async("upper", b"after the reload".to_vec()).await?;
        println!("{} (reloads: {})", String::from_utf8_lossy(&after), pool.stats().reloads);
        anyhow::Ok(())
    })
}
