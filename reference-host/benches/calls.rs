//! Call and instantiation overhead of the reference host against raw
//! wasmtime doing the same copying. Prints ratios measured in one run:
//!
//!     cargo bench -p pabi-host --bench calls
//!
//! Raw: the host writes the input into guest memory, makes a typed call
//! that copies it to an output region, and reads the output back. pabi: the
//! plugin pulls the input with `input_read` and pushes it with
//! `output_write`. Goals: call <= 1.5x raw up to 1 KiB, throughput >= 0.8x
//! raw at 1 MiB, instantiation <= 1.5x raw pooled.
//!
//! Host calls (ABI 1.1): a plugin call that makes one `host_call` with an
//! N-byte request to an application function that replies with the same
//! bytes, then reads the reply with `reply_read`; raw: a typed call into a
//! module whose wasmtime host function copies the request out, runs the
//! same closure and copies the reply back in. Goal: <= 1.5x raw.

use std::hint::black_box;
use std::time::{Duration, Instant};

use wasmtime::{Engine, InstancePre, Linker, Module, PoolingAllocationConfig, Store, TypedFunc};

const PABI_ECHO: &str = r#"(module
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 40)
  (func (export "pabi_fn_echo") (param $len i32) (result i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
    (drop (call $write (i32.const 1024) (local.get $len)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"bench\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"echo\"}],\"capabilities\":[]}"))"#;

const RAW_ECHO: &str = r#"(module
  (memory (export "memory") 40)
  (func (export "echo") (param $ptr i32) (param $len i32) (result i32)
    (memory.copy (i32.const 0x120000) (local.get $ptr) (local.get $len))
    (local.get $len)))"#;

const OUT: usize = 0x120000;

/// One host call of `len` request bytes at 1024, its reply read to 0x120000.
const PABI_HOST_CALL: &str = r#"(module
  (import "pabi" "host_call" (func $host_call (param i32 i32 i32 i32) (result i32)))
  (import "pabi" "reply_read" (func $reply_read (param i32 i32 i32) (result i32)))
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (memory (export "memory") 40)
  (data (i32.const 0) "app.echo")
  (func (export "pabi_fn_ask") (param $len i32) (result i32) (local $n i32)
    ;; The input is the request size, as 4 bytes.
    (drop (call $read (i32.const 16) (i32.const 0) (i32.const 4)))
    (local.set $n (call $host_call (i32.const 0) (i32.const 8) (i32.const 1024) (i32.load (i32.const 16))))
    (drop (call $reply_read (i32.const 0x120000) (i32.const 0) (local.get $n)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.1\",\"name\":\"bench\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"ask\"}],\"capabilities\":[],\"host_calls\":[{\"name\":\"app.echo\",\"required\":true}]}"))"#;

/// The same through a plain wasmtime import that copies in and out.
const RAW_HOST_CALL: &str = r#"(module
  (import "app" "echo" (func $echo (param i32 i32 i32) (result i32)))
  (memory (export "memory") 40)
  (func (export "ask") (param $len i32) (result i32)
    (call $echo (i32.const 1024) (local.get $len) (i32.const 0x120000))))"#;

/// Median time per operation over `rounds` batches of `iters`.
fn time_per_op(rounds: usize, iters: usize, mut op: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iters {
                op();
            }
            started.elapsed() / iters as u32
        })
        .collect();
    samples.sort();
    samples[rounds / 2]
}

fn pooled_engine() -> Engine {
    let mut config = wasmtime::Config::new();
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(64).total_memories(64).max_memory_size(128 << 20);
    config.allocation_strategy(pool);
    Engine::new(&config).unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pabi_wasm = wat::parse_str(PABI_ECHO).unwrap();
    let host = pabi_host::Host::new(pabi_host::Config::default()).unwrap();
    let mut plugin = host.load(&pabi_wasm).unwrap();

    let engine = pooled_engine();
    let module = Module::new(&engine, wat::parse_str(RAW_ECHO).unwrap()).unwrap();
    let pre: InstancePre<()> = Linker::new(&engine).instantiate_pre(&module).unwrap();
    let mut store = Store::new(&engine, ());
    let instance = pre.instantiate(&mut store).unwrap();
    let echo: TypedFunc<(i32, i32), i32> = instance.get_typed_func(&mut store, "echo").unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();

    println!("{:<28} {:>12} {:>12} {:>8}  goal", "case", "raw", "pabi", "ratio");
    for (label, size, iters) in
        [("call 0 B", 0, 20_000), ("call 64 B", 64, 20_000), ("call 1 KiB", 1024, 20_000), ("call 1 MiB", 1 << 20, 100)]
    {
        let input = vec![0x5au8; size];
        let raw = time_per_op(7, iters, || {
            memory.write(&mut store, 0, &input).unwrap();
            let len = echo.call(&mut store, (0, input.len() as i32)).unwrap() as usize;
            black_box(memory.data(&store)[OUT..OUT + len].to_vec());
        });
        let pabi = time_per_op(7, iters, || {
            black_box(plugin.call("echo", &input).unwrap());
        });
        let ratio = pabi.as_secs_f64() / raw.as_secs_f64();
        let goal = if size >= 1 << 20 {
            format!("throughput {:.2}x raw (goal >= 0.8x)", 1.0 / ratio)
        } else {
            "<= 1.5x".to_string()
        };
        println!("{label:<28} {:>12?} {:>12?} {ratio:>7.2}x  {goal}", raw, pabi);
    }

    // Host calls: the application's function is the same closure in both.
    let application = |request: &[u8]| request.to_vec();
    let echo_fn = pabi_host::HostFunction::new("app.echo", move |_, request| Ok(application(request))).unwrap();
    let calls_host = pabi_host::Host::new(pabi_host::Config::builder().host_function(echo_fn).build()).unwrap();
    let mut asker = calls_host.load(&wat::parse_str(PABI_HOST_CALL).unwrap()).unwrap();
    let raw_module = Module::new(&engine, wat::parse_str(RAW_HOST_CALL).unwrap()).unwrap();
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("app", "echo", move |mut caller: wasmtime::Caller<'_, ()>, ptr: i32, len: i32, out: i32| {
            let memory = caller.get_export("memory").and_then(|e| e.into_memory()).unwrap();
            let (ptr, len, out) = (ptr as usize, len as usize, out as usize);
            let request = memory.data(&caller)[ptr..ptr + len].to_vec();
            let reply = application(&request);
            memory.data_mut(&mut caller)[out..out + reply.len()].copy_from_slice(&reply);
            reply.len() as i32
        })
        .unwrap();
    let raw_pre: InstancePre<()> = linker.instantiate_pre(&raw_module).unwrap();
    let mut raw_store = Store::new(&engine, ());
    let raw_instance = raw_pre.instantiate(&mut raw_store).unwrap();
    let ask: TypedFunc<i32, i32> = raw_instance.get_typed_func(&mut raw_store, "ask").unwrap();
    for (label, size) in [("host call 64 B", 64u32), ("host call 1 KiB", 1024)] {
        let raw = time_per_op(7, 20_000, || {
            black_box(ask.call(&mut raw_store, size as i32).unwrap());
        });
        let input = size.to_le_bytes();
        let pabi = time_per_op(7, 20_000, || {
            black_box(asker.call("ask", &input).unwrap());
        });
        let ratio = pabi.as_secs_f64() / raw.as_secs_f64();
        println!("{label:<28} {:>12?} {:>12?} {ratio:>7.2}x  <= 1.5x", raw, pabi);
    }

    let raw_inst = time_per_op(7, 2_000, || {
        let mut store = Store::new(&engine, ());
        black_box(pre.instantiate(&mut store).unwrap());
    });
    let pabi_inst = time_per_op(7, 2_000, || {
        black_box(host.load(&pabi_wasm).unwrap());
    });
    let ratio = pabi_inst.as_secs_f64() / raw_inst.as_secs_f64();
    println!("{:<28} {:>12?} {:>12?} {ratio:>7.2}x  <= 1.5x", "instantiate (cached, pooled)", raw_inst, pabi_inst);

    // A cold load: validation and compilation, once per distinct plugin.
    let started = Instant::now();
    let fresh = pabi_host::Host::new(pabi_host::Config::builder().pooling(false).build()).unwrap();
    black_box(fresh.load(&pabi_wasm).unwrap());
    println!("{:<28} {:>12} {:>12?}", "first load (validate+compile)", "-", started.elapsed());
}
