//! A pool of plugin instances in a tokio application: concurrent async
//! calls, a call cancelled by a timeout, and a reload while serving.
//!
//!     cargo run -p pabi-host --example tokio_pool -- target/plugins/rust/text.wasm
//!
//! Any plugin with an `upper` function does (the text example in every
//! language has one).

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let path = std::env::args().nth(1).ok_or_else(|| anyhow::anyhow!("usage: tokio_pool PLUGIN.wasm"))?;
    let wasm = std::fs::read(&path)?;
    let host = pabi_host::Host::new(pabi_host::Config::builder().timeout(Duration::from_millis(200)).build())?;
    let pool = pabi_host::Pool::builder().instances(2).max_queue(64).build(&host, &wasm)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
    runtime.block_on(async {
        // Eight calls at once on two instances: the queue holds the rest.
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
        // call, whatever the plugin was doing.
        let hurried =
            tokio::time::timeout(Duration::from_micros(1), pool.call_async("upper", vec![b'a'; 1 << 20])).await;
        println!("a call given 1 µs: {}", if hurried.is_err() { "cancelled" } else { "finished first" });
        // A new version while serving: the same bytes here; any later build
        // of the plugin goes the same way, with its state when it has one.
        pool.reload(&wasm)?;
        let after = pool.call_async("upper", b"after the reload".to_vec()).await?;
        println!("{} (reloads: {})", String::from_utf8_lossy(&after), pool.stats().reloads);
        anyhow::Ok(())
    })
}
