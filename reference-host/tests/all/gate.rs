//! The CPU gate ([`pabi_host::CpuGate`]): a bound on the calls that run
//! wasm at once, shared fairly between plugins by time slices. Each test
//! has one permit, and orders events by the pools' own counts, not by
//! timings.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pabi_abi::HostErrorKind;
use pabi_host::{CancelHandle, CpuGate, Error, HostFunction, Pool};

use crate::pool::{asker, wait_until};
use crate::{fixture, host_with};

/// A pool of one instance of `wasm` on a host of its own, gated by `gate`.
fn gated(gate: &CpuGate, timeout: Duration, wasm: &[u8]) -> Pool {
    let host = host_with(|c| c.cpu_gate(gate.clone()).timeout(timeout));
    Pool::builder().instances(1).build(&host, wasm).unwrap()
}

/// A spinner's call that loops until its deadline or its cancel, running
/// (and holding the gate's one permit) when this returns.
fn spin(pool: &Pool) -> (CancelHandle, std::thread::JoinHandle<Result<Vec<u8>, Error>>) {
    let cancel = CancelHandle::new();
    let call = {
        let (pool, cancel) = (pool.clone(), cancel.clone());
        std::thread::spawn(move || pool.call_cancellable("spin", b"", &cancel))
    };
    wait_until("the spin runs", || pool.stats().busy == 1);
    (cancel, call)
}

#[test]
fn a_short_call_runs_while_a_long_one_holds_the_only_permit() {
    let gate = CpuGate::new(1);
    let spinner = gated(&gate, Duration::from_secs(5), &fixture("host-conformance", "io"));
    let echo = gated(&gate, Duration::from_secs(5), &fixture("good", "core"));
    let (cancel, spinning) = spin(&spinner);
    // Without time slices the echo would wait for the spin's deadline.
    assert_eq!(echo.call("echo", b"my turn").unwrap(), b"my turn");
    assert_eq!(spinner.stats().busy, 1, "the spin's call is still running");
    assert!(!spinning.is_finished());
    cancel.cancel();
    assert_eq!(spinning.join().unwrap().unwrap_err(), Error::Cancelled);
    assert_eq!(gate.waiting(), 0);
}

#[test]
fn a_call_waiting_for_its_turn_can_be_cancelled_and_times_out() {
    // A slice past every deadline here: the spin never gives its permit up.
    let gate = CpuGate::with_slice(1, Duration::from_secs(60));
    let spinner = gated(&gate, Duration::from_secs(10), &fixture("host-conformance", "io"));
    let echo = gated(&gate, Duration::from_secs(3), &fixture("good", "core"));
    let (stop_spin, spinning) = spin(&spinner);
    let cancel = CancelHandle::new();
    let waiting = {
        let (echo, cancel) = (echo.clone(), cancel.clone());
        std::thread::spawn(move || echo.call_cancellable("echo", b"x", &cancel))
    };
    wait_until("the echo waits for its turn", || gate.waiting() == 1);
    cancel.cancel();
    // Without a look at the cancel it would wait until its deadline.
    assert_eq!(waiting.join().unwrap().unwrap_err(), Error::Cancelled);
    assert_eq!(gate.waiting(), 0);
    assert_eq!(spinner.stats().busy, 1, "the spin still runs");
    // A wait ends at the call's deadline too (wall time, `LIM-3`).
    let short = gated(&gate, Duration::from_millis(50), &fixture("good", "core"));
    assert_eq!(short.call("echo", b"x").unwrap_err().kind(), Some(HostErrorKind::Timeout));
    stop_spin.cancel();
    assert_eq!(spinning.join().unwrap().unwrap_err(), Error::Cancelled);
    // The permit is back.
    assert_eq!(echo.call("echo", b"after").unwrap(), b"after");
}

#[test]
fn a_call_blocked_in_a_host_call_holds_no_permit() {
    let gate = CpuGate::with_slice(1, Duration::from_secs(60));
    let entered = Arc::new(AtomicBool::new(false));
    let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let blocker = {
        let (entered, open) = (entered.clone(), open.clone());
        HostFunction::new("app.reenter", move |_, _| {
            entered.store(true, Ordering::Relaxed);
            let (opened, wake) = &*open;
            let mut opened = opened.lock().unwrap();
            while !*opened {
                opened = wake.wait(opened).unwrap();
            }
            Ok(b"done".to_vec())
        })
    };
    // Opened however the test ends, so that a failing assert does not
    // leave the handler waiting.
    struct Opens(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);
    impl Drop for Opens {
        fn drop(&mut self) {
            *self.0 .0.lock().unwrap() = true;
            self.0 .1.notify_all();
        }
    }
    let opens = Opens(open);
    let host = host_with(|c| c.cpu_gate(gate.clone()).timeout(Duration::from_secs(10)).host_function(blocker));
    let asking = Pool::builder().instances(1).build(&host, &asker()).unwrap();
    let call = {
        let asking = asking.clone();
        std::thread::spawn(move || asking.call("ask", b""))
    };
    wait_until("the handler runs", || entered.load(Ordering::Relaxed));
    // With the permit held in the handler, the echo would time out.
    let echo = gated(&gate, Duration::from_secs(2), &fixture("good", "core"));
    assert_eq!(echo.call("echo", b"meanwhile").unwrap(), b"meanwhile");
    assert_eq!(asking.stats().busy, 1, "the host call is still blocked");
    drop(opens);
    assert_eq!(call.join().unwrap().unwrap(), b"done");
}

/// A short async call that a pool runs in place, on the executor thread,
/// takes no turn at the gate: it runs while a spin holds the only permit
/// and another call waits for it. Before, a call waiting at the gate sent
/// every async call to a blocking thread and a turn of its own.
#[test]
fn a_call_in_place_runs_while_calls_wait_for_their_turn() {
    // A slice past every deadline here: the spin never gives its permit up.
    let gate = CpuGate::with_slice(1, Duration::from_secs(60));
    let spinner = gated(&gate, Duration::from_secs(30), &fixture("host-conformance", "io"));
    // A call of this pool that waits for a turn times out after 1 s.
    let echo = gated(&gate, Duration::from_secs(1), &fixture("good", "core"));
    let other = gated(&gate, Duration::from_secs(30), &fixture("good", "core"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let ask = |input: &[u8]| {
        let before = echo.stats().calls_in_place;
        let result = runtime.block_on(echo.call_async("echo", input.to_vec()));
        (echo.stats().calls_in_place > before, result)
    };
    // A loaded machine may make a short call long, which starts the
    // pool's count of short calls again: tried until the call beside the
    // spin is one in place.
    for tries in 0.. {
        assert!(tries < 20, "no call ran in place beside the spin");
        // Short calls until one runs in place, while the gate is free.
        let mut hopped = 0;
        while !ask(b"warm").0 {
            hopped += 1;
            assert!(hopped < 1000, "short calls never ran in place");
        }
        let (stop_spin, spinning) = spin(&spinner);
        let stop_waiting = CancelHandle::new();
        let waiting = {
            let (other, cancel) = (other.clone(), stop_waiting.clone());
            std::thread::spawn(move || other.call_cancellable("echo", b"x", &cancel))
        };
        wait_until("a call waits for its turn", || gate.waiting() == 1);
        let (in_place, result) = ask(b"beside");
        let still = (spinner.stats().busy, gate.waiting());
        stop_waiting.cancel();
        stop_spin.cancel();
        assert_eq!(waiting.join().unwrap().unwrap_err(), Error::Cancelled);
        assert_eq!(spinning.join().unwrap().unwrap_err(), Error::Cancelled);
        if in_place {
            assert_eq!(result.unwrap(), b"beside");
            assert_eq!(still, (1, 1), "the spin held the permit and the other call waited meanwhile");
            break;
        }
        // Not in place: it waited for a turn until its deadline.
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
    }
    assert_eq!(gate.waiting(), 0);
}

/// A call that waited long for its turn, but computed little, counts as
/// short toward running in place: a light plugin whose calls wait at the
/// gate beside a burner earns its calls in place all the same. Counted in
/// wall time, each of those waits made the count start again.
#[test]
fn a_call_that_waited_for_its_turn_still_counts_as_short() {
    // A slice past every deadline here: the spin never gives its permit up.
    let gate = CpuGate::with_slice(1, Duration::from_secs(60));
    let spinner = gated(&gate, Duration::from_secs(30), &fixture("host-conformance", "io"));
    let echo = gated(&gate, Duration::from_secs(30), &fixture("good", "core"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for round in 0.. {
        assert!(round < 100, "the echo's calls never ran in place");
        let (stop_spin, spinning) = spin(&spinner);
        let before = echo.stats().calls_in_place;
        let call = runtime.spawn({
            let echo = echo.clone();
            async move { echo.call_async("echo", b"x".to_vec()).await }
        });
        if !call.is_finished() {
            // Not in place: it waits for its turn. The sleep orders
            // nothing (the count above did); it makes the wait a long one.
            wait_until("the echo waits for its turn", || gate.waiting() == 1 || call.is_finished());
            std::thread::sleep(Duration::from_millis(5));
        }
        stop_spin.cancel();
        assert_eq!(runtime.block_on(call).unwrap().unwrap(), b"x");
        assert_eq!(spinning.join().unwrap().unwrap_err(), Error::Cancelled);
        if echo.stats().calls_in_place > before {
            // A new pool's average starts at 1 ms: 8 calls of nothing do
            // not bring it under 0.1 ms.
            assert!(round >= 8, "in place after {round} calls");
            break;
        }
    }
}
