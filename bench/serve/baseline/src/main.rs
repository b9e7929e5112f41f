//! The limit of `pabi serve`'s stack: an axum server that keeps two raw
//! wasmtime instances of the echo plugin (`fixtures/good/core.wat`) behind
//! mutexes and, per request, does the work a call needs and nothing else:
//! serve the body through `pabi.input_read`, collect `pabi.output_write`,
//! call `pabi_fn_echo` on the executor thread. No limits, no metrics, no
//! queue, no timeouts.
//!
//!     baseline ECHO.wasm   (prints `listening on http://ADDR`, port chosen by the OS)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use tokio::sync::Mutex;
use wasmtime::{Caller, Engine, Linker, Module, Store, TypedFunc};

#[derive(Default)]
struct Call {
    input: Bytes,
    output: Vec<u8>,
}

struct Instance {
    store: Store<Call>,
    echo: TypedFunc<i32, i32>,
}

struct Shared {
    instances: Vec<Mutex<Instance>>,
    next: AtomicUsize,
}

fn memory<'a>(caller: &'a mut Caller<'_, Call>) -> (&'a mut [u8], &'a mut Call) {
    let memory = caller.get_export("memory").and_then(|e| e.into_memory()).expect("the plugin exports memory");
    memory.data_and_store_mut(caller)
}

fn instance(engine: &Engine, module: &Module) -> Instance {
    let mut linker = Linker::new(engine);
    linker
        .func_wrap("pabi", "input_read", |mut caller: Caller<'_, Call>, dst: u32, offset: u32, len: u32| {
            let (memory, call) = memory(&mut caller);
            let from = (offset as usize).min(call.input.len());
            let n = (len as usize).min(call.input.len() - from);
            memory[dst as usize..dst as usize + n].copy_from_slice(&call.input[from..from + n]);
            n as i32
        })
        .expect("input_read links");
    linker
        .func_wrap("pabi", "output_write", |mut caller: Caller<'_, Call>, src: u32, len: u32| {
            let (memory, call) = memory(&mut caller);
            call.output.extend_from_slice(&memory[src as usize..src as usize + len as usize]);
            0
        })
        .expect("output_write links");
    linker.func_wrap("pabi", "error_write", |_: Caller<'_, Call>, _: u32, _: u32| 0).expect("error_write links");
    let mut store = Store::new(engine, Call::default());
    let instance = linker.instantiate(&mut store, module).expect("the echo plugin instantiates");
    let echo = instance.get_typed_func(&mut store, "pabi_fn_echo").expect("the plugin has echo");
    Instance { store, echo }
}

async fn echo(State(shared): State<Arc<Shared>>, body: Bytes) -> Vec<u8> {
    let i = shared.next.fetch_add(1, Ordering::Relaxed) % shared.instances.len();
    let mut guard = shared.instances[i].lock().await;
    let instance = &mut *guard;
    let len = i32::try_from(body.len()).expect("a body under 2 GiB");
    instance.store.data_mut().input = body;
    let status = instance.echo.call(&mut instance.store, len).expect("echo runs");
    assert_eq!(status, 0, "echo returns OK");
    std::mem::take(&mut instance.store.data_mut().output)
}

#[tokio::main]
async fn main() {
    let path = std::env::args().nth(1).expect("usage: baseline ECHO.wasm");
    let engine = Engine::default();
    let module = Module::from_file(&engine, &path).expect("the echo plugin compiles");
    let instances = (0..2).map(|_| Mutex::new(instance(&engine, &module))).collect();
    let shared = Arc::new(Shared { instances, next: AtomicUsize::new(0) });
    let app = Router::new().route("/v1/plugins/echo/echo", post(echo)).with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    eprintln!("listening on http://{}", listener.local_addr().expect("has an address"));
    axum::serve(listener, app).await.expect("serves");
}
