//! 10,000 load/call/drop cycles leave the host's resident memory flat.
//! The cycles run in a child process so that other tests don't disturb
//! the reading.

use std::process::Command;

const CYCLES: usize = 10_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[test]
#[ignore = "run in its own process by load_call_drop_cycles_keep_rss_flat"]
fn rss_probe() {
    let host = crate::host_with(|c| c);
    let wasm = crate::fixture("good", "core");
    let cycle = || {
        let mut plugin = host.load(&wasm).unwrap();
        assert_eq!(plugin.call("echo", b"payload").unwrap(), b"payload");
    };
    (0..1_000).for_each(|_| cycle());
    let warm = rss_bytes();
    (0..CYCLES).for_each(|_| cycle());
    println!("RSS warm={warm} after={}", rss_bytes());
}

#[test]
fn load_call_drop_cycles_keep_rss_flat() {
    if !std::path::Path::new("/proc/self/statm").exists() {
        eprintln!("no /proc here; RSS not measured");
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["rss::rss_probe", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the probe failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.contains("RSS warm=")).expect("the probe prints its reading");
    let value =
        |key: &str| -> f64 { line.split_whitespace().find_map(|w| w.strip_prefix(key)).unwrap().parse().unwrap() };
    let (warm, after) = (value("warm="), value("after="));
    eprintln!("RSS after 1,000 warm-up cycles: {warm} B; after {CYCLES} more: {after} B");
    assert!(after <= warm * 1.10, "RSS grew from {warm} to {after} bytes over {CYCLES} cycles");
}
