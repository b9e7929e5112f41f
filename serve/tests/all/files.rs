//! What the folder scan does with files that are not plugins to read: one
//! larger than the compile budget, a refused file that has not changed,
//! and things that are not regular files at all. Reads are counted from
//! this thread's I/O accounting (Linux), where [`Server::scan`] reads.

use std::path::Path;

use axum::http::StatusCode;
use pabi_serve::Server;

use super::{fixture, new_version, request, runtime, server};

/// The bytes this thread has read so far, by `read` and the like.
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/thread-self/io").expect("per-thread I/O accounting");
    let line = io.lines().find_map(|l| l.strip_prefix("rchar: ")).expect("an rchar line");
    line.parse().unwrap()
}

/// Scans, returning the report and how many bytes the scan read.
fn counted_scan(server: &Server) -> (pabi_serve::ScanReport, u64) {
    let before = bytes_read();
    let report = server.scan();
    (report, bytes_read() - before)
}

fn get_state(server: &Server) -> (StatusCode, Vec<u8>) {
    runtime().block_on(async {
        let answer = request(server, "POST", "/v1/plugins/life/get", vec![]).await;
        (answer.status, answer.body)
    })
}

/// `life.wasm` served with the state `kept`.
fn served_with_state(dir: &Path) -> (Server, Vec<u8>) {
    let wasm = fixture("host-conformance", "lifecycle");
    std::fs::write(dir.join("life.wasm"), &wasm).unwrap();
    let server = server(dir, "[plugins.life]\ninstances = 1");
    runtime().block_on(async {
        assert_eq!(request(&server, "POST", "/v1/plugins/life/set", b"kept".to_vec()).await.status, StatusCode::OK);
    });
    (server, wasm)
}

#[test]
fn an_oversized_file_is_refused_by_its_size_without_being_read() {
    let dir = tempfile::tempdir().unwrap();
    let (server, wasm) = served_with_state(dir.path());
    // serve's hosts keep the spec's compile budget.
    let limit = pabi_host::Limits::default().max_module_bytes;
    let file = dir.path().join("life.wasm");
    // Sparse: no disk space, and all zeros if it were read.
    std::fs::File::create(&file).unwrap().set_len(limit + 1).unwrap();

    let (report, read) = counted_scan(&server);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    let why = report.refused[0].why.to_string();
    assert!(why.contains("MODULE_LIMIT") && why.contains(&(limit + 1).to_string()), "{why}");
    assert!(read < limit, "the scan read {read} bytes of a file refused by its size");
    assert_eq!(get_state(&server), (StatusCode::OK, b"kept".to_vec()), "the old version still serves");

    let (report, read) = counted_scan(&server);
    assert_eq!(report, pabi_serve::ScanReport::default(), "a refusal is reported once");
    assert!(read < limit, "the second scan read {read} bytes");

    std::fs::write(&file, new_version(&wasm, 1)).unwrap();
    assert_eq!(server.scan().reloaded, ["life"]);
    assert_eq!(get_state(&server), (StatusCode::OK, b"kept".to_vec()), "the state moved to the new version");
}

#[test]
fn a_refused_file_is_read_again_only_once_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junk.wasm");
    let junk = vec![0xab; 4 << 20];
    std::fs::write(&file, &junk).unwrap();
    let server = Server::new(dir.path().to_path_buf(), pabi_serve::ServeConfig::default());

    let (report, read) = counted_scan(&server);
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert!(read >= junk.len() as u64, "the first scan reads the file: {read} bytes");

    let (report, read) = counted_scan(&server);
    assert!(report.refused.is_empty(), "{report:?}");
    assert!(read < junk.len() as u64, "the unchanged refused file was read again: {read} bytes");

    // Another version, renamed into place as a deployment does.
    let next = dir.path().join("junk.tmp");
    std::fs::write(&next, vec![0xcd; junk.len()]).unwrap();
    std::fs::rename(&next, &file).unwrap();
    let (report, read) = counted_scan(&server);
    assert_eq!(report.refused.len(), 1, "a changed file is tried again: {report:?}");
    assert!(read >= junk.len() as u64, "{read}");
}

#[cfg(unix)]
#[test]
fn a_replacement_that_is_not_a_regular_file_is_refused_and_the_old_version_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (server, wasm) = served_with_state(dir.path());
    let file = dir.path().join("life.wasm");
    let fifo = || {
        let status = std::process::Command::new("mkfifo").arg(&file).status().expect("mkfifo");
        assert!(status.success());
    };
    let dangling = || std::os::unix::fs::symlink(dir.path().join("nothing-here"), &file).unwrap();
    let null = || std::os::unix::fs::symlink("/dev/null", &file).unwrap();
    let replacements: [(&str, &dyn Fn()); 3] =
        [("a FIFO", &fifo), ("a symlink to nothing", &dangling), ("a character device", &null)];
    for (round, (what, make)) in replacements.into_iter().enumerate() {
        std::fs::remove_file(&file).unwrap();
        make();
        // A scan that opened the FIFO for reading would wait for a writer
        // forever: bounded here, so that it fails rather than hangs.
        let scanning = server.clone();
        let (done, report) = std::sync::mpsc::channel();
        std::thread::spawn(move || done.send(scanning.scan()).unwrap());
        let report = report.recv_timeout(std::time::Duration::from_secs(60)).expect("the scan blocked");
        assert!(report.removed.is_empty(), "{what}: {report:?}");
        assert_eq!(report.refused.len(), 1, "{what}: {report:?}");
        assert_eq!(report.refused[0].plugin, "life");
        let why = report.refused[0].why.to_string();
        assert!(why.contains(what) && why.contains("not a regular file"), "{why}");
        assert_eq!(server.scan(), pabi_serve::ScanReport::default(), "{what}: a refusal is reported once");
        assert_eq!(get_state(&server), (StatusCode::OK, b"kept".to_vec()), "{what}: the old version serves");

        let listing = runtime().block_on(request(&server, "GET", "/v1/plugins", vec![]));
        let listing: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
        assert_eq!(listing["refused"][0]["name"], "life", "{listing}");
        let metrics = runtime().block_on(request(&server, "GET", "/metrics", vec![]));
        let line = format!("pabi_reloads_total{{plugin=\"life\",result=\"refused\"}} {}", round + 1);
        assert!(String::from_utf8(metrics.body).unwrap().lines().any(|l| l == line), "no `{line}`");
    }

    // A symlink to a regular file is a plugin file like any other.
    let target = dir.path().join("life-v2.bin");
    std::fs::write(&target, new_version(&wasm, 2)).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    assert_eq!(server.scan().reloaded, ["life"]);
    assert_eq!(get_state(&server), (StatusCode::OK, b"kept".to_vec()), "the state moved to the new version");
    assert_eq!(server.pool("life").unwrap().stats().reloads, 1);
    let listing = runtime().block_on(request(&server, "GET", "/v1/plugins", vec![]));
    let listing: serde_json::Value = serde_json::from_slice(&listing.body).unwrap();
    assert_eq!(listing["refused"], serde_json::json!([]), "{listing}");
}
