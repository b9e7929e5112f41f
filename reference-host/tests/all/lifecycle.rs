//! Loading, re-instantiation, state, reload, the compile cache and WASI
//! scoping.

use pabi_abi::HostErrorKind;
use pabi_host::{Config, DirGrant, Error, Host};

use crate::{fixture, host_with};

#[test]
fn a_trapped_instance_is_replaced_and_initialised_again() {
    let host = host_with(|c| c);
    let wasm = fixture("host-conformance", "io");
    let mut plugin = host.load(&wasm).unwrap();
    assert_eq!(plugin.call("count", b"").unwrap(), 1u32.to_le_bytes());
    assert_eq!(plugin.call("count", b"").unwrap(), 2u32.to_le_bytes());
    assert_eq!(plugin.call("trap", b"").unwrap_err().kind(), Some(HostErrorKind::Trap));
    // A fresh instance: the count starts again.
    assert_eq!(plugin.call("count", b"").unwrap(), 1u32.to_le_bytes());
}

#[test]
fn call_into_reuses_the_callers_buffer_and_keeps_nothing_on_failure() {
    let host = host_with(|c| c);
    let mut plugin = host.load(&fixture("host-conformance", "io")).unwrap();
    let mut output = Vec::with_capacity(4096);
    let buffer = output.as_ptr();
    plugin.call_into("echo", b"hello", &mut output).unwrap();
    assert_eq!(output, b"hello");
    plugin.call_into("echo", b"hi", &mut output).unwrap();
    assert_eq!(output, b"hi", "the previous output is cleared first");
    assert_eq!((output.as_ptr(), output.capacity()), (buffer, 4096), "the same allocation serves every call");
    // A failing status discards what the plugin wrote (FN-3), as does a trap.
    let error = plugin.call_into("fail", b"", &mut output).unwrap_err();
    assert_eq!(error, Error::PluginError { status: 1, message: b"bad input".to_vec() });
    assert!(output.is_empty());
    plugin.call_into("echo", b"hello", &mut output).unwrap();
    assert_eq!(plugin.call_into("trap", b"", &mut output).unwrap_err().kind(), Some(HostErrorKind::Trap));
    assert!(output.is_empty());
    // And the message does not leak into the next failure.
    let again = plugin.call_into("fail", b"", &mut output).unwrap_err();
    assert_eq!(again, Error::PluginError { status: 1, message: b"bad input".to_vec() });
}

#[test]
fn traps_carry_a_backtrace_with_function_names() {
    let host = host_with(|c| c);
    let wasm = wat::parse_str(
        r#"(module
            (memory (export "memory") 1)
            (func $inner_helper unreachable)
            (func (export "pabi_fn_f") (param i32) (result i32) (call $inner_helper) (i32.const 0))
            (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"bt\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"f\"}],\"capabilities\":[]}"))"#,
    )
    .unwrap();
    let error = host.load(&wasm).unwrap().call("f", b"").unwrap_err();
    assert!(error.to_string().contains("inner_helper"), "{error}");
}

#[test]
fn loading_rejects_invalid_modules_with_the_validator_findings() {
    let host = host_with(|c| c);
    let error = host.load(b"\0asm\x01\0\0\0").unwrap_err();
    assert_eq!(error.kind(), Some(HostErrorKind::InvalidModule));
    assert!(error.to_string().contains("META-1"), "{error}");
    let unknown = host.load(&fixture("host-conformance", "unknown-import")).unwrap_err();
    assert_eq!(unknown.kind(), Some(HostErrorKind::InvalidModule));
    assert!(unknown.to_string().contains("input_size"), "{unknown}");
}

#[test]
fn version_mismatches_name_both_versions() {
    // A host offering 1.0 only (CALL-9) refuses 1.1; a 1.1 host refuses 2.0.
    let v1_0 = pabi_abi::AbiVersion::new(1, 0);
    for (offered, name, declared) in [(v1_0, "version-1-1", "1.1"), (pabi_abi::HOST_ABI, "version-2-0", "2.0")] {
        let host = host_with(|c| c.abi_version(offered));
        match host.load(&fixture("host-conformance", name)).unwrap_err() {
            Error::VersionMismatch { plugin, host, .. } => {
                assert_eq!((plugin.to_string(), host.to_string()), (declared.to_string(), offered.to_string()))
            }
            other => panic!("{name}: {other}"),
        }
        assert!(host.load(&fixture("host-conformance", "version-1-0")).is_ok());
    }
    // The 1.1 host runs the 1.1 plugin; a host cannot offer a version it
    // does not implement.
    assert!(host_with(|c| c).load(&fixture("host-conformance", "version-1-1")).is_ok());
    let future = Host::new(Config::builder().abi_version(pabi_abi::AbiVersion::new(1, 9)).build()).unwrap_err();
    assert_eq!(future.kind(), None, "a configuration the host cannot apply: {future}");
}

#[test]
fn config_reaches_init_and_bad_init_status_fails_the_load() {
    let host = host_with(|c| c);
    let failing = host.load(&fixture("host-conformance", "init-fails")).unwrap_err();
    assert_eq!(failing.kind(), Some(HostErrorKind::PluginError), "{failing}");
}

#[test]
fn state_moves_across_a_reload_and_a_failed_reload_keeps_the_old_version() {
    let host = host_with(|c| c);
    let wasm = fixture("host-conformance", "lifecycle");
    let mut plugin = host.load(&wasm).unwrap();
    assert!(plugin.has_state());
    let state = plugin.save_state().unwrap();
    plugin.load_state(&state).unwrap();
    assert_eq!(plugin.save_state().unwrap(), state);

    // A broken new version: refused, and the old one keeps serving.
    let error = plugin.reload(b"not wasm").unwrap_err();
    assert_eq!(error.kind(), Some(HostErrorKind::InvalidModule));
    assert!(plugin.call("counts", b"").is_ok());

    // The same version again: the state moves over.
    plugin.reload(&wasm).unwrap();
    assert_eq!(plugin.save_state().unwrap(), state);
}

#[test]
fn reload_moves_state_that_differs_from_what_init_sets() {
    let host = host_with(|c| c);
    let wasm = fixture("good", "lifecycle");
    // init stores the config as the state; the test then changes it.
    let mut plugin = host.load_with_plugin_config(&wasm, &[1; 8]).unwrap();
    assert_eq!(plugin.call("get", b"").unwrap(), [1; 8]);
    plugin.load_state(&[7; 8]).unwrap();
    plugin.reload(&wasm).unwrap();
    assert_eq!(plugin.call("get", b"").unwrap(), [7; 8], "without the move, init would give [1; 8]");
    let short = plugin.load_state(&[7; 3]).unwrap_err();
    assert_eq!((short.kind(), short.status()), (Some(HostErrorKind::PluginError), Some(1)));
}

#[test]
fn the_disk_cache_is_reused_across_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("good", "core");
    let first = host_with(|c| c.cache_dir(Some(dir.path().to_path_buf())));
    first.load(&wasm).unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "one precompiled module");
    let second = host_with(|c| c.cache_dir(Some(dir.path().to_path_buf())));
    assert_eq!(second.load(&wasm).unwrap().call("echo", b"x").unwrap(), b"x");
    // A corrupt entry is ignored, not trusted.
    std::fs::write(entries[0].path(), b"garbage").unwrap();
    let third = host_with(|c| c.cache_dir(Some(dir.path().to_path_buf())));
    assert_eq!(third.load(&wasm).unwrap().call("echo", b"y").unwrap(), b"y");
}

#[test]
fn the_disk_cache_stays_within_its_byte_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cache = |bytes| host_with(|c| c.cache_dir(Some(dir.path().to_path_buf())).cache_dir_bytes(bytes));
    let entries =
        || -> Vec<std::path::PathBuf> { std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.path()).collect() };
    cache(u64::MAX).load(&fixture("good", "core")).unwrap();
    let first = entries();
    let one_entry = std::fs::metadata(&first[0]).unwrap().len();
    // Room for about one entry: the second plugin's entry replaces the first.
    cache(one_entry + one_entry / 2).load(&fixture("good", "lifecycle")).unwrap();
    let after = entries();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, first, "the oldest entry went");
    // A budget smaller than any entry keeps nothing, and loads still work.
    let host = cache(1);
    assert_eq!(host.load(&fixture("good", "core")).unwrap().call("echo", b"z").unwrap(), b"z");
    assert!(entries().is_empty());
}

#[test]
fn undeclared_or_unallowed_capabilities_are_refused_by_name() {
    let wasm = fixture("host-conformance", "wants-clock");
    let refused = host_with(|c| c).load(&wasm).unwrap_err();
    assert_eq!(
        refused,
        Error::MissingCapability { capabilities: vec![pabi_abi::Capability::Clock], host_calls: vec![] }
    );
    let allowed = host_with(|c| c.allow_clock(true));
    assert!(allowed.load(&wasm).is_ok());
    // A host that serves no wasi plugins says so before it looks at
    // capabilities (the order of HOST-1).
    let core_only = host_with(|c| c.wasi_profile(false).allow_clock(true));
    let error = core_only.load(&wasm).unwrap_err();
    assert_eq!(error.kind(), Some(pabi_abi::HostErrorKind::Unsupported), "{error}");
    assert!(core_only.load(&fixture("good", "core")).is_ok());
}

#[test]
fn a_granted_directory_is_visible_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let grant = DirGrant::new(dir.path(), "/data", true).unwrap();
    let host = host_with(|c| c.allow_dir(grant));
    let meta = r#"{"abi":"1.0","name":"fs","version":"1.0.0","profile":"wasi","functions":[{"name":"f"}],"capabilities":["fs:/data:ro"]}"#;
    let wat = format!(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_prestat_get" (func $prestat (param i32 i32) (result i32)))
            (import "pabi" "output_write" (func $out (param i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "pabi_fn_f") (param i32) (result i32)
              ;; fd 3 is the first preopen: errno 0 means it exists.
              (i32.store (i32.const 0) (call $prestat (i32.const 3) (i32.const 16)))
              (drop (call $out (i32.const 0) (i32.const 4)))
              (i32.const 0))
            (@custom "pabi" "{}"))"#,
        meta.replace('"', "\\\"")
    );
    let wasm = wat::parse_str(&wat).unwrap();
    assert_eq!(host.load(&wasm).unwrap().call("f", b"").unwrap(), 0u32.to_le_bytes());
    let closed = host_with(|c| c).load(&wasm).unwrap_err();
    assert_eq!(
        closed,
        Error::MissingCapability {
            capabilities: vec![pabi_abi::Capability::parse("fs:/data:ro").unwrap()],
            host_calls: vec![]
        }
    );
}

#[test]
fn a_full_instance_pool_is_the_hosts_own_error() {
    let host = host_with(|c| c.max_instances(2));
    let wasm = fixture("good", "core");
    let first = host.load(&wasm).unwrap();
    let _second = host.load(&wasm).unwrap();
    let third = host.load(&wasm).unwrap_err();
    assert_eq!(third, Error::HostUnavailable(pabi_host::Unavailable::InstanceSlots { limit: 2 }), "{third}");
    assert_eq!(third.kind(), Some(pabi_abi::HostErrorKind::HostFailure), "not a failure of the plugin");
    drop(first);
    assert!(host.load(&wasm).is_ok(), "a freed slot serves the next load");
}

#[test]
fn a_cancelled_call_ends_and_the_next_call_gets_a_fresh_instance() {
    let host = host_with(|c| c.timeout(std::time::Duration::from_secs(30)));
    let mut plugin = host.load(&fixture("host-conformance", "io")).unwrap();
    assert_eq!(plugin.call("count", b"").unwrap(), 1u32.to_le_bytes());
    let cancel = plugin.cancel_handle();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        cancel.cancel();
    });
    assert_eq!(plugin.call("spin", b"").unwrap_err(), Error::Cancelled);
    canceller.join().unwrap();
    assert_eq!(plugin.call("count", b"").unwrap(), 1u32.to_le_bytes(), "the cancelled instance was replaced");
    assert_eq!(plugin.call("count", b"").unwrap(), 2u32.to_le_bytes(), "and no cancel is left pending");
}

#[test]
fn unknown_functions_name_the_ones_the_plugin_has() {
    let host = host_with(|c| c);
    let mut plugin = host.load(&fixture("good", "core")).unwrap();
    let error = plugin.call("nope", b"").unwrap_err();
    assert_eq!(error, Error::UnknownFunction { name: "nope".into(), available: vec!["echo".into(), "count".into()] });
}
