//! One host-function round trip per plugin call, pabi against Extism, on
//! the same machine in one run (ratios compare numbers of this run only).
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

    let echo = pabi_host::HostFunction::new("app.echo", |_, request| Ok(request.to_vec())).unwrap();
    let host = pabi_host::Host::new(pabi_host::Config::builder().host_function(echo).build()).unwrap();
    let mut pabi = host.load(&wat::parse_str(PABI_PLUGIN).unwrap()).unwrap();

    let extism_echo = extism::Function::new(
        "echo",
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
    let mut extism = extism::Plugin::new(&manifest, [extism_echo], false).unwrap();

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
