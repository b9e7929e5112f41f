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
