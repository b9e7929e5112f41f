//! A server embedding `pabi-serve`: the application offers a host function,
//! `kv.get`, as a closure over its own data; the plugins of a folder are
//! served, each in a worker process of this executable, and the
//! application's routes sit beside theirs.
//!
//!     mkdir -p /tmp/plugins && cp target/plugins/rust/enrich.wasm /tmp/plugins/
//!     cargo run -p pabi-serve --example enrich_server -- /tmp/plugins
//!
//! It sends one request through the routes and prints the answer; pass
//! `--listen ADDR` to keep serving instead.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use pabi_host::{HostCallError, HostFunction};
use pabi_serve::{ServeConfig, Server};
use tower::ServiceExt;

fn main() -> anyhow::Result<()> {
    // A worker started from this executable serves its plugin and exits.
    pabi_host::worker::run_if_worker();

    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: enrich_server DIR [--listen ADDR]"))?;
    let listen = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(address)) => Some(address),
        _ => None,
    };

    // The application's own data, behind the host function.
    let prices: Arc<HashMap<&str, &str>> = Arc::new([("apple", "0.40"), ("pear", "0.55")].into());
    let kv_get = HostFunction::new("kv.get", move |_cx, key| {
        let key = std::str::from_utf8(key).map_err(|_| HostCallError::new("a key is UTF-8"))?;
        prices.get(key).map(|v| v.as_bytes().to_vec()).ok_or_else(|| HostCallError::new("no such key"))
    });
    let config =
        ServeConfig::from_toml("[defaults]\nisolation = \"worker_process\"\ninstances = 2\ntimeout = \"500ms\"")?;
    let server = Server::new(dir.into(), config).host_function(kv_get);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        // Armed before loading: a SIGTERM while the plugins load is kept,
        // and drains the server as soon as it serves.
        let stop = pabi_serve::stop_signal();
        // Loading compiles: off the executor threads.
        let loader = server.clone();
        let report = tokio::task::spawn_blocking(move || loader.scan()).await?;
        println!("loaded {:?}, refused {:?}", report.loaded, report.refused);
        // The application's routes and the plugins' in one router.
        let app = axum::Router::new().route("/hello", axum::routing::get(|| async { "hi\n" })).merge(server.router());
        if let Some(address) = listen {
            let listener = tokio::net::TcpListener::bind(&address).await?;
            println!("listening on http://{address}");
            server.serve_app(listener, app, std::time::Duration::from_secs(1), stop).await?;
            return Ok(());
        }
        let request = Request::post("/v1/plugins/enrich/enrich").body(Body::from("apple\npear\nplum\n"))?;
        let answer = app.oneshot(request).await?;
        let status = answer.status();
        let body = answer.into_body().collect().await?.to_bytes();
        println!("{status}\n{}", String::from_utf8_lossy(&body));
        let request = Request::post("/v1/plugins/enrich/enrich").body(Body::from("apple\npear\n"))?;
        let body = server.router().oneshot(request).await?.into_body().collect().await?.to_bytes();
        print!("{}", String::from_utf8_lossy(&body));
        anyhow::Ok(())
    })
}
