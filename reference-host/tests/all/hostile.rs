//! Every hostile fixture ends with exactly its error kind, and the host
//! keeps serving, both the same plugin and a good one.

use std::time::{Duration, Instant};

use pabi_abi::HostErrorKind;
use pabi_host::Error;

use crate::{assert_serves_good_plugin, fixture, host_with};

/// How soon after the deadline the loop stops is a figure of the calls
/// bench (`deadline_overshoot`): a wall-clock bound here would fail on a
/// busy machine.
#[test]
fn infinite_loop_times_out_and_never_before_its_deadline() {
    let timeout = Duration::from_millis(100);
    let host = host_with(|c| c.timeout(timeout));
    let mut plugin = host.load(&fixture("hostile", "infinite-loop")).unwrap();
    // The deadline is armed before every call, so every call times out
    // (Extism #556 timed out only the first).
    for _ in 0..3 {
        let started = Instant::now();
        let error = plugin.call("spin", b"").unwrap_err();
        assert_eq!(error, Error::Timeout { timeout });
        assert!(started.elapsed() >= timeout, "ended early: {:?}", started.elapsed());
    }
    assert_serves_good_plugin(&host);
}

#[test]
fn memory_bomb_hits_the_memory_limit_or_returns_out_of_memory() {
    let host = host_with(|c| c.max_memory(4 << 20));
    let mut plugin = host.load(&fixture("hostile", "memory-bomb")).unwrap();
    assert_eq!(plugin.call("bomb", b"").unwrap_err(), Error::MemoryLimit { limit: 4 << 20 });
    let polite = plugin.call("polite", b"").unwrap_err();
    assert_eq!((polite.kind(), polite.status()), (Some(HostErrorKind::PluginError), Some(4)));
    assert!(plugin.memory_bytes() <= 4 << 20);
    assert_serves_good_plugin(&host);
}

#[test]
fn unbounded_recursion_is_a_stack_overflow_trap() {
    let host = host_with(|c| c);
    let mut plugin = host.load(&fixture("hostile", "recursion")).unwrap();
    match plugin.call("recurse", b"").unwrap_err() {
        Error::Trap { trap, .. } => assert_eq!(trap, pabi_abi::TrapKind::StackOverflow),
        other => panic!("expected a stack overflow, got {other}"),
    }
    assert_serves_good_plugin(&host);
}

#[test]
fn out_of_bounds_and_wrapping_ranges_are_abi_violations_at_every_import() {
    let host = host_with(|c| c.crash_limit(1000, std::time::Duration::from_secs(60)));
    let mut plugin = host.load(&fixture("hostile", "bad-pointers")).unwrap();
    let page = 65536u32;
    let ranges = [(page - 4, 8), (page + 1, 0), (u32::MAX, 2), (16, u32::MAX), (page, 1)];
    for import in ["input_read", "output_write", "error_write", "log"] {
        for (ptr, len) in ranges {
            let input = [ptr.to_le_bytes(), len.to_le_bytes()].concat();
            let error = plugin.call(import, &input).unwrap_err();
            assert_eq!(error.clause(), Some(pabi_abi::Clause::Mem3), "{import} with {ptr:#x}+{len}: {error}");
            assert_eq!(error.kind(), Some(HostErrorKind::AbiViolation));
        }
        // In-bounds edge cases are fine: an empty range at the very end.
        let input = [page.to_le_bytes(), 0u32.to_le_bytes()].concat();
        assert!(plugin.call(import, &input).is_ok(), "{import}: an empty range at the end of memory is valid");
    }
    assert_serves_good_plugin(&host);
}

#[test]
fn output_flood_hits_the_output_limit() {
    let host = host_with(|c| c.max_output(1 << 20).crash_limit(100, std::time::Duration::from_secs(60)));
    let mut plugin = host.load(&fixture("hostile", "output-flood")).unwrap();
    assert_eq!(plugin.call("flood", b"").unwrap_err(), Error::OutputLimit { limit: 1 << 20 });
    assert_serves_good_plugin(&host);
}

#[test]
fn traps_in_initialize_and_init_fail_the_load() {
    let host = host_with(|c| c);
    for name in ["trap-in-initialize", "trap-in-init"] {
        match host.load(&fixture("hostile", name)).unwrap_err() {
            Error::Trap { trap, .. } => assert_eq!(trap, pabi_abi::TrapKind::Unreachable, "{name}"),
            other => panic!("{name}: expected TRAP, got {other}"),
        }
    }
    assert_serves_good_plugin(&host);
}

#[test]
fn an_undefined_status_is_unknown_status() {
    let host = host_with(|c| c);
    let mut plugin = host.load(&fixture("hostile", "undefined-status")).unwrap();
    assert_eq!(plugin.call("f", b"").unwrap_err(), Error::UnknownStatus { status: 1000 });
    assert_serves_good_plugin(&host);
}

#[test]
fn a_million_tiny_writes_complete() {
    let host = host_with(|c| c.timeout(Duration::from_secs(30)));
    let mut plugin = host.load(&fixture("hostile", "tiny-writes")).unwrap();
    let output = plugin.call("drip", b"").unwrap();
    assert_eq!(output.len(), 1_000_000);
    assert!(output.iter().all(|b| *b == b'x'));
    assert_serves_good_plugin(&host);
}

#[test]
fn sleeping_without_the_clock_capability_uses_virtual_time() {
    // A 100 ms deadline: a real one-hour sleep would be a TIMEOUT.
    let host = host_with(|c| c.timeout(Duration::from_millis(100)));
    let mut plugin = host.load(&fixture("hostile", "sleeper")).unwrap();
    let output = plugin.call("sleep", b"").unwrap();
    assert_eq!(output, (1_000_000_000u64 + 3_600_000_000_000).to_le_bytes(), "starts at 1 s, then one hour");
    assert_serves_good_plugin(&host);
}

#[test]
fn a_real_sleep_is_bounded_by_the_deadline() {
    let deadline = Duration::from_millis(200);
    let host = host_with(|c| c.timeout(deadline).allow_clock(true));
    let mut plugin = host.load(&fixture("hostile", "real-sleeper")).unwrap();
    // A short sleep is real: the clock moves by at least 50 ms.
    let nap = plugin.call("nap", b"").unwrap();
    let (before, after) =
        (u64::from_le_bytes(nap[..8].try_into().unwrap()), u64::from_le_bytes(nap[8..].try_into().unwrap()));
    assert!(after - before >= 50_000_000, "slept {} ns", after - before);
    for function in ["sleep", "forever"] {
        let started = Instant::now();
        let error = plugin.call(function, b"").unwrap_err();
        let took = started.elapsed();
        assert_eq!(error, Error::Timeout { timeout: deadline }, "{function}");
        // Without the bound `sleep` takes 5 s and `forever` never returns:
        // anything under 4 s is the deadline at work, however loaded the
        // machine.
        assert!(took < Duration::from_secs(4), "{function} took {took:?}");
    }
    // A cancel ends a real sleep too.
    let host = host_with(|c| c.timeout(Duration::from_secs(30)).allow_clock(true));
    let mut plugin = host.load(&fixture("hostile", "real-sleeper")).unwrap();
    let cancel = plugin.cancel_handle();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        cancel.cancel();
    });
    assert_eq!(plugin.call("forever", b"").unwrap_err(), Error::Cancelled);
    canceller.join().unwrap();
    assert_serves_good_plugin(&host);
    // Cancels are the caller's doing: however many, they never disable the
    // plugin (LIFE-7 counts the plugin's own failures).
    let host =
        host_with(|c| c.timeout(Duration::from_secs(30)).allow_clock(true).crash_limit(2, Duration::from_secs(60)));
    let mut plugin = host.load(&fixture("hostile", "real-sleeper")).unwrap();
    for _ in 0..3 {
        let cancel = plugin.cancel_handle();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            cancel.cancel();
        });
        assert_eq!(plugin.call("forever", b"").unwrap_err(), Error::Cancelled);
        canceller.join().unwrap();
    }
    assert!(plugin.call("nap", b"").is_ok(), "three cancels did not disable the plugin");
}

#[test]
fn a_plugin_that_keeps_trapping_is_disabled() {
    let host = host_with(|c| c.crash_limit(3, std::time::Duration::from_secs(60)));
    let mut plugin = host.load(&fixture("hostile", "undefined-status")).unwrap();
    // Returned statuses do not kill the instance, so they never count.
    for _ in 0..5 {
        assert_eq!(plugin.call("f", b"").unwrap_err().kind(), Some(HostErrorKind::UnknownStatus));
    }
    let mut plugin = host.load(&fixture("hostile", "infinite-loop")).unwrap();
    let kinds: Vec<_> = (0..4).map(|_| plugin.call("spin", b"").unwrap_err().kind()).collect();
    assert_eq!(
        kinds,
        [HostErrorKind::Timeout, HostErrorKind::Timeout, HostErrorKind::Timeout, HostErrorKind::CrashLoop].map(Some)
    );
    assert_serves_good_plugin(&host);
}

fn words(output: &[u8]) -> Vec<u32> {
    output.chunks_exact(4).map(|w| u32::from_le_bytes(w.try_into().unwrap())).collect()
}

#[test]
fn wasi_pointer_faults_are_mem3_aborts_and_the_next_call_gets_a_fresh_instance() {
    let host = host_with(|c| c);
    let mut plugin = host.load(&fixture("hostile", "wasi-edges")).unwrap();
    // wasmtime's own fd_write, and the host's clock_time_get: out of
    // bounds, and misaligned (MEM-3).
    for function in ["fd_write_oob", "clock_oob", "clock_misaligned"] {
        let error = plugin.call(function, b"").unwrap_err();
        assert_eq!(
            (error.kind(), error.clause()),
            (Some(HostErrorKind::AbiViolation), Some(pabi_abi::Clause::Mem3)),
            "{function}: {error}"
        );
        assert_eq!(words(&plugin.call("raise", b"").unwrap()), [52], "proc_raise is nosys (WASI-10)");
    }
    assert_serves_good_plugin(&host);
}

#[test]
fn every_clock_id_reads_virtual_time_and_others_are_inval() {
    let host = host_with(|c| c);
    let mut plugin = host.load(&fixture("hostile", "wasi-edges")).unwrap();
    for id in 0u32..4 {
        let out = plugin.call("clock_id", &id.to_le_bytes()).unwrap();
        assert_eq!(words(&out[..4]), [0], "clock {id}");
        assert_eq!(u64::from_le_bytes(out[4..].try_into().unwrap()), 1_000_000_000, "clock {id} (WASI-6)");
    }
    let out = plugin.call("clock_id", &4u32.to_le_bytes()).unwrap();
    assert_eq!(words(&out[..4]), [28], "an unknown clock id is inval (WASI-9)");
}

#[test]
fn random_get_fills_any_length_that_fits_in_memory() {
    // wasmtime's own random_get refuses more than 64 MiB at once.
    let host = host_with(|c| c.timeout(Duration::from_secs(20)));
    let mut plugin = host.load(&fixture("hostile", "wasi-edges")).unwrap();
    let len = 96u32 << 20;
    assert_eq!(words(&plugin.call("random_big", &len.to_le_bytes()).unwrap()), [0]);
}

#[test]
fn log_text_is_capped_per_call_and_stdout_counts_against_it() {
    let host = host_with(|c| c.max_log(256 << 10));
    let mut plugin = host.load(&fixture("hostile", "wasi-edges")).unwrap();
    // Four 64 KiB records fit in 256 KiB; the fifth is dropped with E_LIMIT.
    assert_eq!(words(&plugin.call("log_flood", b"").unwrap()), [4, (-1i32) as u32]);
    // Every call has its own budget.
    assert_eq!(words(&plugin.call("log_flood", b"").unwrap()), [4, (-1i32) as u32]);
    // Standard output takes the budget: fd_write reports every byte written
    // even past the cap, and a log record after it is dropped.
    let flood = 300u32 << 10;
    assert_eq!(words(&plugin.call("stdout_flood", &flood.to_le_bytes()).unwrap()), [0, flood, (-1i32) as u32]);
    assert_eq!(words(&plugin.call("stdout_flood", &16u32.to_le_bytes()).unwrap()), [0, 16, 0]);
}

#[test]
fn a_plugin_cannot_plant_a_symlink_in_a_granted_directory() {
    let dir = tempfile::tempdir().unwrap();
    let grant = pabi_host::DirGrant::new(dir.path(), "/data", false).unwrap();
    let host = host_with(|c| c.allow_dir(grant));
    let mut plugin = host.load(&fixture("hostile", "symlink-planter")).unwrap();
    // A link to `/etc/passwd` inside the grant would be followed, outside
    // the grant's confinement, by any other program reading the folder.
    assert_eq!(words(&plugin.call("plant", b"").unwrap()), [76], "notcapable (WASI-10)");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing was created");
}

#[test]
fn only_consecutive_failures_count_toward_a_crash_loop() {
    let host = host_with(|c| c.crash_limit(3, std::time::Duration::from_secs(60)));
    let mut plugin = host.load(&fixture("hostile", "wasi-edges")).unwrap();
    // Ten failures, each followed by a call that returns a status: the count
    // starts again every time (`LIFE-7`).
    for round in 0..10 {
        let error = plugin.call("clock_oob", b"").unwrap_err();
        assert_eq!(error.kind(), Some(HostErrorKind::AbiViolation), "round {round}: {error}");
        assert_eq!(words(&plugin.call("raise", b"").unwrap()), [52]);
    }
    // Three in a row still disable it.
    let kinds: Vec<_> = (0..4).map(|_| plugin.call("clock_oob", b"").unwrap_err().kind()).collect();
    assert_eq!(kinds.last(), Some(&Some(HostErrorKind::CrashLoop)), "{kinds:?}");
}

#[test]
fn the_compile_budget_refuses_before_compiling() {
    use pabi_host::CompileCap;
    let good = fixture("good", "core");
    let size = pabi_validator::code_size(&good);
    let (index, body) = size.largest_body.unwrap();
    let refused =
        |edit: &dyn Fn(pabi_host::ConfigBuilder) -> pabi_host::ConfigBuilder| host_with(edit).load(&good).unwrap_err();
    let len = good.len() as u64;
    assert_eq!(
        refused(&|c| c.compile_budget(len - 1, 100, 1 << 20)),
        Error::ModuleLimit { cap: CompileCap::ModuleBytes { bytes: len, cap: len - 1 } }
    );
    assert_eq!(
        refused(&|c| c.compile_budget(1 << 20, size.functions - 1, 1 << 20)),
        Error::ModuleLimit { cap: CompileCap::Functions { functions: size.functions, cap: size.functions - 1 } }
    );
    assert_eq!(
        refused(&|c| c.compile_budget(1 << 20, 100, body - 1)),
        Error::ModuleLimit { cap: CompileCap::FunctionBody { index, bytes: body, cap: body - 1 } }
    );
    let error = refused(&|c| c.compile_budget(len - 1, 100, 1 << 20));
    assert_eq!(error.kind(), Some(HostErrorKind::ModuleLimit));
    // Exactly at every cap, it loads.
    host_with(|c| c.compile_budget(len, size.functions, body)).load(&good).unwrap();
}

#[test]
fn environ_get_serves_only_granted_variables_and_checks_its_pointers() {
    let wasm = wat::parse_str(
        r#"(module
          (import "pabi" "output_write" (func $out (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "environ_get" (func $get (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "pabi_fn_env") (param i32) (result i32)
            (drop (call $sizes (i32.const 0) (i32.const 4)))
            (drop (call $get (i32.const 16) (i32.const 64)))
            ;; count, total size, first pointer, then the text
            (drop (call $out (i32.const 0) (i32.const 8)))
            (drop (call $out (i32.const 16) (i32.const 4)))
            (drop (call $out (i32.const 64) (i32.load (i32.const 4))))
            (i32.const 0))
          (func (export "pabi_fn_oob") (param i32) (result i32)
            (call $get (i32.const 65534) (i32.const 64)))
          (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"env\",\"version\":\"1.0.0\",\"profile\":\"wasi\",\"functions\":[{\"name\":\"env\"},{\"name\":\"oob\"}],\"capabilities\":[\"env:LANG\"]}"))"#,
    )
    .unwrap();
    let host = host_with(|c| c.allow_env("LANG", "C").allow_env("HOME", "/root"));
    let mut plugin = host.load(&wasm).unwrap();
    let out = plugin.call("env", b"").unwrap();
    assert_eq!(words(&out[..12]), [1, 7, 64], "one variable of 7 bytes at 64");
    assert_eq!(&out[12..], b"LANG=C\0", "HOME is allowed but not declared");
    let error = plugin.call("oob", b"").unwrap_err();
    assert_eq!(error.clause(), Some(pabi_abi::Clause::Mem3), "{error}");
}
