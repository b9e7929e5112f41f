//! pabi against Extism and raw wasmtime, on the same machine in one run
//! (ratios compare numbers of this run only): an echo call at 64 B, 1 KiB,
//! 64 KiB and 1 MiB, instantiation of a cached plugin, and one
//! host-function round trip per call.
//!
//! Raw wasmtime echo: the host allocates in guest memory (a bump
//! allocator the module exports), writes the input, calls, reads the
//! output and frees. pabi: `Plugin::call` as the README shows it. Extism:
//! `Plugin::call` on a plugin built with its Rust PDK.
//!
//! Both plugins take an N-byte input, hand it to a host function that
//! replies with the same bytes, and return the reply as their output.
//! pabi: `input_read`, `host_call` (the host copies the request out),
//! `reply_read` (the reply in), `output_write`. Extism: its PDK's input,
//! a host function reading the input block and allocating the reply block,
//! and the output. Goal: pabi at least 20x faster.
//!
//!     bench/peers/run.sh

use std::hint::black_box;
use std::time::{Duration, Instant};

const PABI_PLUGIN: &str = r#"(module
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (import "pabi" "host_call" (func $host_call (param i32 i32 i32 i32) (result i32)))
  (import "pabi" "reply_read" (func $reply_read (param i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 0) "app.echo")
  (func (export "pabi_fn_run") (param $len i32) (result i32) (local $n i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
    (local.set $n (call $host_call (i32.const 0) (i32.const 8) (i32.const 1024) (local.get $len)))
    (if (i32.lt_s (local.get $n) (i32.const 0)) (then (return (i32.const 3))))
    (drop (call $reply_read (i32.const 0x20000) (i32.const 0) (local.get $n)))
    (drop (call $write (i32.const 0x20000) (local.get $n)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.1\",\"name\":\"run\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"run\"}],\"capabilities\":[],\"host_calls\":[{\"name\":\"app.echo\",\"required\":true}]}"))"#;

const PABI_ECHO: &str = r#"(module
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 40)
  (func (export "pabi_fn_echo") (param $len i32) (result i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
    (drop (call $write (i32.const 1024) (local.get $len)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"echo\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"echo\"}],\"capabilities\":[]}"))"#;

const RAW_ECHO: &str = r#"(module
  (memory (export "memory") 40)
  (global $top (mut i32) (i32.const 1024))
  (func (export "alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (func (export "free") (param $p i32) (global.set $top (i32.const 1024)))
  (func (export "echo") (param $ptr i32) (param $len i32) (result i32)
    (memory.copy (i32.const 0x120000) (local.get $ptr) (local.get $len))
    (local.get $len)))"#;

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

fn main() {
    let extism_wasm = std::env::args().nth(1).expect("usage: pabi-bench-peers EXTISM_PLUGIN.wasm");
    let extism_wasm = std::fs::read(&extism_wasm).expect("the Extism plugin was built by run.sh");

    let echo = pabi_host::HostFunction::new("app.echo", |_, request| Ok(request.to_vec()));
    let host = pabi_host::Host::new(pabi_host::Config::builder().host_function(echo).build()).unwrap();
    let mut pabi = host.load(&wat::parse_str(PABI_PLUGIN).unwrap()).unwrap();

    let extism_echo = extism::Function::new(
        "host_echo",
        [extism::PTR],
        [extism::PTR],
        extism::UserData::new(()),
        |plugin: &mut extism::CurrentPlugin, inputs: &[extism::Val], outputs: &mut [extism::Val], _| {
            let request: Vec<u8> = plugin.memory_get_val(&inputs[0])?;
            let reply = request.to_vec();
            let handle = plugin.memory_new(&reply)?;
            outputs[0] = plugin.memory_to_val(handle);
            Ok(())
        },
    );
    let manifest = extism::Manifest::new([extism::Wasm::data(extism_wasm)]);
    let mut extism = extism::Plugin::new(&manifest, [extism_echo.clone()], false).unwrap();

    let echo_wasm = wat::parse_str(PABI_ECHO).unwrap();
    let mut pabi_echo = host.load(&echo_wasm).unwrap();
    let engine = wasmtime::Engine::default();
    let raw_module = wasmtime::Module::new(&engine, wat::parse_str(RAW_ECHO).unwrap()).unwrap();
    let raw_pre = wasmtime::Linker::<()>::new(&engine).instantiate_pre(&raw_module).unwrap();
    let mut raw_store = wasmtime::Store::new(&engine, ());
    let raw = raw_pre.instantiate(&mut raw_store).unwrap();
    let alloc = raw.get_typed_func::<i32, i32>(&mut raw_store, "alloc").unwrap();
    let free = raw.get_typed_func::<i32, ()>(&mut raw_store, "free").unwrap();
    let raw_echo = raw.get_typed_func::<(i32, i32), i32>(&mut raw_store, "echo").unwrap();
    let raw_memory = raw.get_memory(&mut raw_store, "memory").unwrap();

    println!("{:<24} {:>12} {:>12} {:>12} {:>9} {:>9}", "echo", "raw", "pabi", "Extism", "pabi/raw", "Extism/pabi");
    for (label, size, iters) in
        [("64 B", 64usize, 20_000), ("1 KiB", 1024, 20_000), ("64 KiB", 64 << 10, 2_000), ("1 MiB", 1 << 20, 100)]
    {
        let input = vec![0x5au8; size];
        assert_eq!(pabi_echo.call("echo", &input).unwrap(), input);
        assert_eq!(extism.call::<&[u8], Vec<u8>>("echo", &input).unwrap(), input);
        let raw_time = time_per_op(7, iters, || {
            let ptr = alloc.call(&mut raw_store, size as i32).unwrap();
            raw_memory.write(&mut raw_store, ptr as usize, &input).unwrap();
            let len = raw_echo.call(&mut raw_store, (ptr, size as i32)).unwrap() as usize;
            black_box(raw_memory.data(&raw_store)[0x120000..0x120000 + len].to_vec());
            free.call(&mut raw_store, ptr).unwrap();
        });
        let pabi_time = time_per_op(7, iters, || {
            black_box(pabi_echo.call("echo", &input).unwrap());
        });
        let extism_time = time_per_op(7, (iters / 10).max(20), || {
            black_box(extism.call::<&[u8], Vec<u8>>("echo", &input).unwrap());
        });
        println!(
            "{label:<24} {:>12?} {:>12?} {:>12?} {:>8.2}x {:>8.1}x",
            raw_time,
            pabi_time,
            extism_time,
            pabi_time.as_secs_f64() / raw_time.as_secs_f64(),
            extism_time.as_secs_f64() / pabi_time.as_secs_f64()
        );
    }

    let raw_inst = time_per_op(7, 500, || {
        let mut store = wasmtime::Store::new(&engine, ());
        black_box(raw_pre.instantiate(&mut store).unwrap());
    });
    let pabi_inst = time_per_op(7, 500, || {
        black_box(host.load(&echo_wasm).unwrap());
    });
    let compiled =
        extism::CompiledPlugin::new(extism::PluginBuilder::new(manifest.clone()).with_functions([extism_echo.clone()]))
            .unwrap();
    let extism_inst = time_per_op(7, 50, || {
        black_box(extism::Plugin::new_from_compiled(&compiled).unwrap());
    });
    println!(
        "{:<24} {:>12?} {:>12?} {:>12?} {:>8.2}x {:>8.1}x",
        "instantiate (cached)",
        raw_inst,
        pabi_inst,
        extism_inst,
        pabi_inst.as_secs_f64() / raw_inst.as_secs_f64(),
        extism_inst.as_secs_f64() / pabi_inst.as_secs_f64()
    );
    println!();

    println!("{:<24} {:>12} {:>12} {:>10}  goal", "host-function round trip", "Extism", "pabi", "pabi is");
    for (label, size) in [("64 B", 64usize), ("1 KiB", 1024)] {
        let input = vec![0x5au8; size];
        assert_eq!(pabi.call("run", &input).unwrap(), input);
        assert_eq!(extism.call::<&[u8], Vec<u8>>("run", &input).unwrap(), input);
        let extism_time = time_per_op(7, 2_000, || {
            black_box(extism.call::<&[u8], Vec<u8>>("run", &input).unwrap());
        });
        let pabi_time = time_per_op(7, 20_000, || {
            black_box(pabi.call("run", &input).unwrap());
        });
        let speedup = extism_time.as_secs_f64() / pabi_time.as_secs_f64();
        println!("{label:<24} {:>12?} {:>12?} {speedup:>8.1}x  faster, goal >= 20x", extism_time, pabi_time);
    }
}
