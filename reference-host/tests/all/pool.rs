//! Pools of both isolations, by one suite: calls from many threads, the
//! bounded queue, cancellation, async calls, resizing and reload with
//! state (`HOST-9`, `LIFE-11`). Each test of [`both_isolations!`] runs once per
//! isolation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pabi_abi::HostErrorKind;
use pabi_host::{CancelHandle, Error, HostCallError, HostFunction, Isolation, Pool, PoolBuilder, Unavailable};

use crate::{fixture, host_with};

/// A pool builder of `isolation`; a worker process runs this crate's
/// `pabi-worker` program.
pub fn builder(isolation: Isolation) -> PoolBuilder {
    let builder = Pool::builder().isolation(isolation);
    #[cfg(feature = "worker-process")]
    if isolation == Isolation::WorkerProcess {
        return builder.worker_command(crate::worker::command());
    }
    builder
}

both_isolations! {
    fn calls_from_many_threads_give_the_same_results_as_one(isolation) {
        let host = host_with(|c| c);
        let wasm = fixture("good", "core");
        let pool = builder(isolation).instances(3).build(&host, &wasm).unwrap();
        let inputs: Vec<Vec<u8>> =
            (0..300u32).map(|i| format!("record {i} {}", "x".repeat(i as usize)).into_bytes()).collect();
        let alone: Vec<Vec<u8>> = inputs.iter().map(|input| pool.call("echo", input).unwrap()).collect();
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (pool, inputs) = (pool.clone(), inputs.clone());
                std::thread::spawn(move || inputs.iter().map(|input| pool.call("echo", input).unwrap()).collect::<Vec<_>>())
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), alone);
        }
        let stats = pool.stats();
        assert_eq!((stats.size, stats.live, stats.busy, stats.waiting), (3, 3, 0, 0));
        assert_eq!(stats.calls, 300 * 7);
    }


    fn a_pool_built_from_a_host_with_other_limits_keeps_them(isolation) {
        let host = host_with(|c| c);
        let mut limits = host.config().limits().clone();
        limits.max_output = 4;
        let terse = host.with_limits(limits).unwrap();
        let wasm = fixture("good", "core");
        let pool = builder(isolation).instances(2).build(&terse, &wasm).unwrap();
        assert_eq!(pool.call("echo", b"too long").unwrap_err(), Error::OutputLimit { limit: 4 });
        assert_eq!(pool.call("echo", b"four").unwrap(), b"four");
        let roomy = builder(isolation).instances(1).build(&host, &wasm).unwrap();
        assert_eq!(roomy.call("echo", b"too long").unwrap(), b"too long");
    }

    fn typed_calls_convert_on_either_side_and_keep_an_output_they_cannot_read(isolation) {
        use pabi_host::{Json, TypedCallError};
        let host = host_with(|c| c);
        let pool = builder(isolation).instances(1).build(&host, &fixture("good", "core")).unwrap();
        let text: String = pool.call_as("echo", "héllo").unwrap();
        assert_eq!(text, "héllo");
        let Json(pair): Json<(u8, String)> = pool.call_as("echo", &Json((7, "seven"))).unwrap();
        assert_eq!(pair, (7, "seven".to_string()));
        match pool.call_as::<_, String>("echo", &[0xffu8, b'!']).unwrap_err() {
            TypedCallError::Output { expected: "UTF-8 text", output, .. } => assert_eq!(output, [0xff, b'!']),
            other => panic!("expected an output error, got {other:?}"),
        }
        let unknown = pool.call_as::<_, Vec<u8>>("nope", "x").unwrap_err();
        assert_eq!(unknown.kind(), Some(HostErrorKind::UnknownFunction));
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let Json(list): Json<Vec<u32>> = runtime.block_on(pool.call_as_async("echo", &Json([1u32, 2]))).unwrap();
        assert_eq!(list, [1, 2]);
    }

    fn a_call_waiting_in_the_queue_holds_no_thread(isolation) {
        // The hog's one instance blocks in a host call until the gate opens.
        let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let closed = gate.clone();
        let blocker = HostFunction::new("app.reenter", move |_, _| {
            let (open, opened) = &*closed;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
            Ok(Vec::new())
        });
        let host = host_with(|c| c.timeout(Duration::from_secs(60)).host_function(blocker));
        let hog = builder(isolation).instances(1).max_queue(64).queue_timeout(Duration::from_secs(60));
        let hog = hog.build(&host, &asker()).unwrap();
        let neighbour = builder(isolation).instances(1).build(&host_with(|c| c), &fixture("good", "core")).unwrap();
        // Two blocking threads for the whole runtime: queued calls that
        // each held one would leave none for the neighbour.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .unwrap();
        // Opened however the test ends, so that a failing assert fails the
        // test instead of leaving the runtime's drop waiting for the gate.
        struct Opens(Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);
        impl Drop for Opens {
            fn drop(&mut self) {
                *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = true;
                self.0 .1.notify_all();
            }
        }
        let opens = Opens(gate);
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let hog = hog.clone();
                runtime.spawn(async move { hog.call_async("ask", Vec::new()).await })
            })
            .collect();
        wait_until("one call runs and the others wait in the queue", || {
            let stats = hog.stats();
            (stats.busy, stats.waiting) == (1, 19)
        });
        assert_eq!(runtime.block_on(neighbour.call_async("echo", b"next door".to_vec())).unwrap(), b"next door");
        assert_eq!(hog.stats().waiting, 19, "the queued calls still wait");
        drop(opens);
        for call in calls {
            let result = runtime.block_on(call).unwrap();
            assert!(result.is_ok(), "{result:?}");
        }
        // In process, the thread that ended the first call ran waiting
        // ones next, on its instance.
        let handed_on = hog.stats().calls_handed_on;
        assert!(isolation != Isolation::InProcess || (1..=19).contains(&handed_on), "{handed_on}");
    }

    fn a_full_queue_refuses_at_once_and_a_queued_call_runs_when_an_instance_frees(isolation) {
        let pool = spinning_pool(isolation, 1, Duration::from_millis(300));
        let spinner = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.call("spin", b""))
        };
        wait_until("the spin runs", || pool.stats().busy == 1);
        let queued = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.call("echo", b"queued"))
        };
        wait_until("a call waits", || pool.stats().waiting == 1);
        let refused = pool.call("echo", b"one too many").unwrap_err();
        assert_eq!(refused, Error::HostUnavailable(Unavailable::QueueFull { limit: 1 }));
        assert_eq!(refused.kind(), Some(HostErrorKind::HostFailure));
        assert_eq!(spinner.join().unwrap().unwrap_err().kind(), Some(HostErrorKind::Timeout));
        assert_eq!(queued.join().unwrap().unwrap(), b"queued", "the dead instance was replaced (LIFE-5)");
    }

    fn a_queue_timeout_refuses_a_call_that_waited_too_long(isolation) {
        let host = host_with(|c| c.timeout(Duration::from_secs(5)));
        let pool = builder(isolation)
            .instances(1)
            .queue_timeout(Duration::from_millis(50))
            .build(&host, &fixture("host-conformance", "io"))
            .unwrap();
        let cancel = CancelHandle::new();
        let spinner = {
            let (pool, cancel) = (pool.clone(), cancel.clone());
            std::thread::spawn(move || pool.call_cancellable("spin", b"", &cancel))
        };
        wait_until("the spin runs", || pool.stats().busy == 1);
        let error = pool.call("echo", b"").unwrap_err();
        assert!(matches!(error, Error::HostUnavailable(Unavailable::QueueTimeout { .. })), "{error}");
        cancel.cancel();
        assert_eq!(spinner.join().unwrap().unwrap_err(), Error::Cancelled);
    }

    fn a_queued_call_times_out_while_every_instance_waits_in_a_host_call(isolation) {
        // The handler holds its instance until the test lets it go (or 10 s
        // pass, a guard against a hang).
        let gate = Arc::new((std::sync::Mutex::new((false, false)), std::sync::Condvar::new()));
        let held = gate.clone();
        let slow = HostFunction::new("app.reenter", move |_, _| {
            let (lock, changed) = &*held;
            let mut state = lock.lock().unwrap();
            state.0 = true;
            changed.notify_all();
            let _ = changed.wait_timeout_while(state, Duration::from_secs(10), |s| !s.1).unwrap();
            Ok(b"late".to_vec())
        });
        let host = host_with(|c| c.host_function(slow).timeout(Duration::from_secs(30)));
        let pool = builder(isolation).instances(1).queue_timeout(Duration::from_millis(200)).build(&host, &asker()).unwrap();
        let stuck = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.call("ask", b""))
        };
        wait_until("the handler runs", || gate.0.lock().unwrap().0);
        let (sender, answered) = std::sync::mpsc::channel();
        {
            let pool = pool.clone();
            std::thread::spawn(move || sender.send(pool.call("ask", b"")));
        }
        let answer = answered.recv_timeout(Duration::from_secs(10)).expect("the queued call is answered");
        let error = answer.unwrap_err();
        assert!(matches!(error, Error::HostUnavailable(Unavailable::QueueTimeout { .. })), "{error}");
        gate.0.lock().unwrap().1 = true;
        gate.1.notify_all();
        assert_eq!(stuck.join().unwrap().unwrap(), b"late");
    }

    fn a_plugin_that_floods_its_log_from_many_calls_is_held_to_its_log_rate(isolation) {
        let rate = pabi_host::LogRate::new(3, 1 << 30);
        // 100 records of 16 bytes fill the cap of a call; the 101st is
        // refused with E_LIMIT and ends the call's loop.
        let host = host_with(|c| c.log_rate(Some(rate)).max_log(1600));
        let pool = builder(isolation).instances(2).build(&host, &fixture("hostile", "log-flood-short")).unwrap();
        let subscriber = CountingSubscriber::default();
        let written = subscriber.0.clone();
        let calls = 20;
        let started = Instant::now();
        // A call in this process logs on the calling thread; a worker logs
        // to its own standard error, and only its counts come back.
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..calls {
                assert_eq!(pool.call("flood", b"").unwrap(), b"");
            }
        });
        let elapsed = started.elapsed();
        let stats = pool.stats();
        let (within_cap, past_cap) = (100 * calls, calls);
        let dropped_by_rate = stats.log_records_dropped - past_cap;
        let through_rate = within_cap - dropped_by_rate;
        // The bucket holds a second's worth and refills at the rate: what
        // passed is bounded by the rate over the time the calls took.
        let bound = rate.records + (elapsed.as_secs_f64() * rate.records as f64).ceil() as u64;
        assert!((rate.records..=bound).contains(&through_rate), "{through_rate} records written, bound {bound}: {stats:?}");
        assert_eq!(stats.log_bytes_dropped, 16 * (dropped_by_rate + past_cap));
        if isolation == Isolation::InProcess {
            assert_eq!(written.load(std::sync::atomic::Ordering::Relaxed), through_rate);
        }
    }

    fn a_cancelled_call_ends_its_instance_is_replaced_and_no_cancel_lingers(isolation) {
        let pool = spinning_pool(isolation, 4, Duration::from_secs(30));
        let cancel = CancelHandle::new();
        let spinner = {
            let (pool, cancel) = (pool.clone(), cancel.clone());
            std::thread::spawn(move || pool.call_cancellable("spin", b"", &cancel))
        };
        wait_until("the spin runs", || pool.stats().busy == 1);
        cancel.cancel();
        // Had the cancel not reached the running call, it would end at its
        // deadline with TIMEOUT.
        assert_eq!(spinner.join().unwrap().unwrap_err(), Error::Cancelled);
        // The next calls run normally: the cancel was the call's, not the instance's.
        assert_eq!(pool.call("count", b"").unwrap(), 1u32.to_le_bytes(), "a fresh instance");
        assert_eq!(pool.call("count", b"").unwrap(), 2u32.to_le_bytes());
        // A call cancelled before it starts never runs.
        let early = CancelHandle::new();
        early.cancel();
        assert_eq!(pool.call_cancellable("count", b"", &early).unwrap_err(), Error::Cancelled);
        assert_eq!(pool.call("count", b"").unwrap(), 3u32.to_le_bytes(), "the instance was not touched");
    }

    fn a_cancel_after_the_call_returned_does_not_reach_the_next_call(isolation) {
        let host = host_with(|c| c);
        let pool = builder(isolation).instances(1).build(&host, &fixture("host-conformance", "io")).unwrap();
        let cancel = CancelHandle::new();
        assert_eq!(pool.call_cancellable("count", b"", &cancel).unwrap(), 1u32.to_le_bytes());
        cancel.cancel();
        assert_eq!(pool.call("count", b"").unwrap(), 2u32.to_le_bytes());
    }

    fn async_calls_run_off_the_executor_and_a_dropped_future_cancels_its_call(isolation) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let pool = spinning_pool(isolation, 4, Duration::from_secs(30));
        runtime.block_on(async {
            assert_eq!(pool.call_async("echo", b"async".to_vec()).await.unwrap(), b"async");
            // One executor thread: if the spin held it, the timer could not fire.
            let spin = pool.call_async("spin", Vec::new());
            assert!(tokio::time::timeout(Duration::from_millis(50), spin).await.is_err());
        });
        // The dropped future cancelled the call, which frees the instance long
        // before its 30 s deadline.
        wait_until("the cancelled call ends", || pool.stats().busy == 0);
        assert_eq!(pool.call("count", b"").unwrap(), 1u32.to_le_bytes(), "its instance was replaced");
    }

    fn reload_carries_the_latest_instance_s_state_into_every_new_instance(isolation) {
        let host = host_with(|c| c);
        let wasm = fixture("host-conformance", "lifecycle");
        let pool = builder(isolation).instances(2).build(&host, &wasm).unwrap();
        // The latest call's instance is the one whose state moves.
        pool.call("set", b"old").unwrap();
        pool.call("set", b"latest").unwrap();
        pool.reload(b"not wasm").unwrap_err();
        assert_eq!(pool.stats().reloads, 0, "a failed reload changes nothing");
        pool.reload(&wasm).unwrap();
        assert_eq!(pool.stats().reloads, 1);
        // Both instances of the new version have the state.
        let barrier = std::sync::Barrier::new(2);
        let (a, b) = std::thread::scope(|s| {
            let get = || {
                let mut output = Vec::new();
                // Both calls overlap so that each takes its own instance.
                barrier.wait();
                pool.call_into("get", b"", &mut output).map(|_| output)
            };
            let a = s.spawn(get);
            let b = s.spawn(get);
            (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
        });
        assert_eq!((a.as_slice(), b.as_slice()), (&b"latest"[..], &b"latest"[..]));
    }

    fn reload_during_calls_fails_none_of_them(isolation) {
        let host = host_with(|c| c);
        let wasm = fixture("good", "core");
        let pool = builder(isolation).instances(2).build(&host, &wasm).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let callers: Vec<_> = (0..4)
            .map(|i| {
                let (pool, stop) = (pool.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut calls = 0u32;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let input = format!("{i}:{calls}");
                        assert_eq!(pool.call("echo", input.as_bytes()).unwrap(), input.as_bytes());
                        calls += 1;
                    }
                    calls
                })
            })
            .collect();
        // The reloads start once calls are flowing, so that they overlap.
        wait_until("calls are flowing", || pool.stats().calls >= 4);
        for _ in 0..20 {
            pool.reload(&wasm).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let calls: u32 = callers.into_iter().map(|c| c.join().unwrap()).sum();
        assert!(calls > 0);
        assert_eq!(pool.stats().reloads, 20);
        assert_eq!(pool.stats().live, 2, "old instances were retired, not kept");
    }


    fn shutdown_finishes_the_call_in_progress_and_refuses_later_ones(isolation) {
        let host = host_with(|c| c.timeout(Duration::from_millis(200)));
        let pool = builder(isolation).instances(1).build(&host, &fixture("host-conformance", "io")).unwrap();
        let spinner = {
            let pool = pool.clone();
            std::thread::spawn(move || pool.call("spin", b""))
        };
        wait_until("the spin runs", || pool.stats().busy == 1);
        pool.shutdown();
        // The call in progress ran to its end (its deadline) before the
        // shutdown returned; none runs after.
        assert_eq!(spinner.join().unwrap().unwrap_err().kind(), Some(HostErrorKind::Timeout));
        assert_eq!(pool.call("echo", b"late").unwrap_err(), Error::HostUnavailable(Unavailable::ShutDown));
        assert_eq!(pool.stats().live, 0);
    }

    fn a_handler_cannot_call_into_the_pool_it_serves(isolation) {
        let slot: Arc<std::sync::OnceLock<Pool>> = Arc::default();
        let inner = slot.clone();
        let reenter = HostFunction::new("app.reenter", move |_, _| {
            let error = inner.get().unwrap().call("ask", b"").unwrap_err();
            Err(HostCallError::new(error.to_string()))
        });
        let host = host_with(|c| c.host_function(reenter));
        let wasm = asker();
        // Two instances: one is idle, yet the call is refused, since with one
        // it would wait for itself.
        let pool = builder(isolation).instances(2).build(&host, &wasm).unwrap();
        assert!(slot.set(pool.clone()).is_ok());
        let reply = String::from_utf8(pool.call("ask", b"").unwrap()).unwrap();
        assert!(reply.contains("CALL-8"), "{reply}");
    }

    fn an_async_host_function_serves_calls_made_through_call_async(isolation) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
        let delayed = runtime.block_on(async {
            HostFunction::new_async("app.reenter", |cx, request| async move {
                // Real async work: a timer of the runtime.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let mut reply = format!("{}/{} asked: ", cx.plugin(), cx.function()).into_bytes();
                reply.extend(request);
                Ok(reply)
            })
        });
        let host = host_with(|c| c.host_function(delayed));
        let pool = builder(isolation).instances(2).build(&host, &asker()).unwrap();
        let replies = runtime.block_on(async {
            let calls: Vec<_> = (0..4)
                .map(|_| {
                    let pool = pool.clone();
                    tokio::spawn(async move { pool.call_async("ask", Vec::new()).await })
                })
                .collect();
            let mut replies = Vec::new();
            for call in calls {
                replies.push(call.await.unwrap().unwrap());
            }
            replies
        });
        for reply in replies {
            assert_eq!(reply, b"asker/ask asked: ");
        }
        // From a plain thread, the runtime the function was made on serves it.
        assert_eq!(pool.call("ask", b"").unwrap(), b"asker/ask asked: ");
    }
}

/// In this process only: the instance slots freed are the host's.
#[test]
fn shrinking_retires_idle_instances_and_growing_creates_them_on_demand() {
    let isolation = Isolation::InProcess;
    let host = host_with(|c| c.max_instances(4));
    let pool = builder(isolation).instances(3).build(&host, &fixture("good", "core")).unwrap();
    pool.resize(1);
    assert_eq!((pool.stats().size, pool.stats().live), (1, 1));
    // Their instance slots are free again: a plugin can take them.
    let others: Vec<_> = (0..3).map(|_| host.load(&fixture("good", "core")).unwrap()).collect();
    drop(others);
    pool.resize(2);
    assert_eq!(pool.stats().live, 1, "growth waits for demand");
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                barrier.wait();
                pool.call("echo", b"x").unwrap()
            });
        }
    });
    assert!(pool.stats().live <= 2);
}

/// A plugin with a short call (`quick`) and a long one (`spin`, to its
/// deadline).
const QUICK_AND_SPIN: &str = r#"(module
  (import "pabi" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "pabi_fn_quick") (param i32) (result i32) (i32.const 0))
  (func (export "pabi_fn_spin") (param i32) (result i32) (loop $again (br $again)) (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"quick-and-spin\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"quick\"},{\"name\":\"spin\"}],\"capabilities\":[]}")
)"#;

/// In this process only: once a pool's calls are short on average, its
/// async calls run in place, on the executor thread, without a hop to a
/// blocking thread and back; a call in place that turns long ends that
/// for the plugin's version, and a reload starts it again; a plugin that
/// can block in host code (host calls) never runs in place.
#[test]
fn short_async_calls_run_in_place_until_one_is_long() {
    let host = host_with(|c| c.timeout(Duration::from_millis(20)));
    let wasm = wat::parse_str(QUICK_AND_SPIN).unwrap();
    let pool = builder(Isolation::InProcess).instances(1).build(&host, &wasm).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Whether the call ran in place, and its result.
    let ask = |pool: &Pool, function: &str| {
        let before = pool.stats().calls_in_place;
        let result = runtime.block_on(pool.call_async(function, Vec::new()));
        (pool.stats().calls_in_place > before, result)
    };
    for call in 0..8 {
        // A new pool's average starts at 1 ms: 8 calls of nothing do not
        // bring it under 0.1 ms.
        assert!(!ask(&pool, "quick").0, "call {call} ran in place before 8 short ones");
    }
    // Short calls until one runs in place: a loaded machine may make a
    // call long, which starts the count again.
    let until_in_place = |pool: &Pool| {
        let mut hopped = 0;
        while !ask(pool, "quick").0 {
            hopped += 1;
            assert!(hopped < 1000, "short calls never ran in place");
        }
    };
    until_in_place(&pool);
    // A long call, in place once the calls before it were short (tried
    // again when one was not): after it, no call runs in place.
    let long_in_place = |pool: &Pool| {
        let mut tries = 0;
        loop {
            tries += 1;
            assert!(tries < 100, "the long call never ran in place");
            until_in_place(pool);
            let (in_place, result) = ask(pool, "spin");
            assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
            if in_place {
                break;
            }
        }
    };
    long_in_place(&pool);
    // The spin held its thread for its deadline, 20 ms: no call runs in
    // place for 100 times that, 2 s, which these calls take far less than.
    for _ in 0..100 {
        assert!(!ask(&pool, "quick").0, "a call ran in place after a long one in place");
    }
    // Then the pool earns it again: one long call does not end it for good.
    wait_until("a call runs in place again after the pause", || ask(&pool, "quick").0);
    // A new version earns it by its own short calls, without the pause: a
    // spin of 1 s pauses running in place for 100 s, far longer than the
    // short calls that earn it again take.
    let host = host_with(|c| c.timeout(Duration::from_secs(1)));
    let slow = builder(Isolation::InProcess).instances(1).build(&host, &wasm).unwrap();
    long_in_place(&slow);
    slow.reload(&wasm).unwrap();
    until_in_place(&slow);
    // Host calls can block: never in place.
    let host = host_with(|c| c.host_function(HostFunction::new("app.reenter", |_, _| Ok(Vec::new()))));
    let asking = builder(Isolation::InProcess).instances(1).build(&host, &asker()).unwrap();
    for _ in 0..100 {
        let (in_place, result) = ask(&asking, "ask");
        assert!(!in_place && result.is_ok(), "{result:?}");
    }
}

/// A pool of one instance whose call `spin` loops until its deadline.
fn spinning_pool(isolation: Isolation, max_queue: usize, timeout: Duration) -> Pool {
    let host = host_with(|c| c.timeout(timeout));
    builder(isolation).instances(1).max_queue(max_queue).build(&host, &fixture("host-conformance", "io")).unwrap()
}

pub fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A plugin whose `ask` makes the host call `app.reenter` with its input
/// and outputs the reply.
pub fn asker() -> Vec<u8> {
    wat::parse_str(
        r#"(module
            (import "pabi" "host_call" (func $host_call (param i32 i32 i32 i32) (result i32)))
            (import "pabi" "reply_read" (func $reply_read (param i32 i32 i32) (result i32)))
            (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 0) "app.reenter")
            (func (export "pabi_fn_ask") (param i32) (result i32) (local $n i32)
              (drop (call $host_call (i32.const 0) (i32.const 11) (i32.const 0) (i32.const 0)))
              (local.set $n (call $reply_read (i32.const 64) (i32.const 0) (i32.const 1000)))
              (drop (call $write (i32.const 64) (local.get $n)))
              (i32.const 0))
            (@custom "pabi" "{\"abi\":\"1.1\",\"name\":\"asker\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"ask\"}],\"capabilities\":[],\"host_calls\":[{\"name\":\"app.reenter\",\"required\":true}]}"))"#,
    )
    .unwrap()
}

/// Counts the plugin log records written (target `pabi::plugin`), and
/// keeps every other event and span out of the way.
#[derive(Default)]
struct CountingSubscriber(Arc<std::sync::atomic::AtomicU64>);

impl tracing::Subscriber for CountingSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if event.metadata().target() == "pabi::plugin" {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
