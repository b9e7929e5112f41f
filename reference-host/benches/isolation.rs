//! The per-call cost of `Isolation::WorkerProcess`: a 1 KiB echo through a
//! pool in a worker process (the process, its pipes and threads) against
//! the same calls on a pool in this process, measured in alternating rounds
//! of one run so that the ratio compares like with like.
//!
//! `cargo bench -p pabi-host --features worker-process --bench isolation [-- --seconds S]`

use std::time::{Duration, Instant};

use pabi_host::worker::WorkerCommand;
use pabi_host::{Host, Isolation, Pool};

const ROUNDS: usize = 3;

fn main() {
    let seconds: f64 =
        std::env::args().skip_while(|a| a != "--seconds").nth(1).and_then(|s| s.parse().ok()).unwrap_or(1.0);
    let per_phase = Duration::from_secs_f64(seconds);
    let path = pabi_fixtures::fixtures_dir().join("good").join("core.wat");
    let wasm = pabi_fixtures::compile_wat(&path).expect("the echo fixture").wasm;
    let host = Host::new(pabi_host::Config::default()).expect("a host");
    let in_process = Pool::builder().instances(2).build(&host, &wasm).expect("a pool");
    let worker = WorkerCommand::new(env!("CARGO_BIN_EXE_pabi-worker"), Vec::<String>::new());
    let isolated = Pool::builder()
        .instances(2)
        .isolation(Isolation::WorkerProcess)
        .worker_command(worker)
        .build(&host, &wasm)
        .expect("a worker");
    let input = vec![b'x'; 1024];

    let mut results: [[Vec<Phase>; 2]; 2] = Default::default();
    for _ in 0..ROUNDS {
        let thread = |threads| run(threads, per_phase, |i| in_process.call("echo", i).expect("a call"), &input);
        let process = |threads| run(threads, per_phase, |i| isolated.call("echo", i).expect("a call"), &input);
        results[0][0].push(thread(1));
        results[1][0].push(process(1));
        results[0][1].push(thread(4));
        results[1][1].push(process(4));
    }
    println!("1 KiB echo, 2 instances; median of {ROUNDS} alternating rounds of {seconds} s\n");
    println!("{:<24} {:>12} {:>10} {:>10}", "", "calls/s", "p50", "p99");
    let mut medians = [[Phase::default(); 2]; 2];
    for (c, clients) in [1, 4].into_iter().enumerate() {
        for (m, mode) in ["in process", "worker process"].into_iter().enumerate() {
            let phase = median(&mut results[m][c]);
            medians[m][c] = phase;
            println!(
                "{:<24} {:>12.0} {:>8.1}µs {:>8.1}µs",
                format!("{mode}, {clients} thread{}", if clients > 1 { "s" } else { "" }),
                phase.rate,
                phase.p50.as_secs_f64() * 1e6,
                phase.p99.as_secs_f64() * 1e6
            );
        }
    }
    println!();
    for (c, clients) in [1, 4].into_iter().enumerate() {
        let (t, p) = (medians[0][c], medians[1][c]);
        println!(
            "{clients} thread(s): a call through the worker takes {:.1} µs more at p50; in-process makes {:.0}× the calls/s",
            (p.p50.as_secs_f64() - t.p50.as_secs_f64()) * 1e6,
            t.rate / p.rate
        );
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Phase {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// `threads` callers for `length`; calls/s and the latency percentiles.
fn run(threads: usize, length: Duration, call: impl Fn(&[u8]) -> Vec<u8> + Sync, input: &[u8]) -> Phase {
    let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
        let callers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut own = Vec::new();
                    let end = Instant::now() + length;
                    while Instant::now() < end {
                        let started = Instant::now();
                        let output = call(input);
                        own.push(started.elapsed());
                        assert_eq!(output.len(), input.len());
                    }
                    own
                })
            })
            .collect();
        callers.into_iter().flat_map(|caller| caller.join().expect("a caller")).collect()
    });
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    Phase { rate: latencies.len() as f64 / length.as_secs_f64(), p50: at(0.5), p99: at(0.99) }
}

fn median(phases: &mut [Phase]) -> Phase {
    phases.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    phases[phases.len() / 2]
}
