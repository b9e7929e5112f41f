//! Every hostile fixture ends with exactly its error kind, and the host
//! keeps serving, both the same plugin and a good one.

use std::time::{Duration, Instant};

use pabi_abi::HostErrorKind;
use pabi_host::Error;

use crate::{assert_serves_good_plugin, fixture, host_with};

#[test]
fn infinite_loop_times_out_within_the_deadline_plus_50ms() {
    let timeout = Duration::from_millis(100);
    let host = host_with(|c| c.timeout(timeout));
    let mut plugin = host.load(&fixture("hostile", "infinite-loop")).unwrap();
    // The deadline is armed before every call, so every call times out
    // (Extism #556 timed out only the first). Judge the fastest of three to
    // keep a busy machine from failing the bound.
    let mut fastest = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let error = plugin.call("spin", b"").unwrap_err();
        fastest = fastest.min(started.elapsed());
        assert_eq!(error, Error::Timeout { timeout });
    }
    assert!(fastest >= timeout, "ended early: {fastest:?}");
    assert!(fastest <= timeout + Duration::from_millis(50), "took {fastest:?}");
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
        // Generous slack for a loaded machine; without the bound `sleep`
        // takes 5 s and `forever` never returns.
        assert!(took < deadline * 5, "{function} took {took:?}");
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
