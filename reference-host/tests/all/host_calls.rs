//! Host calls (ABI 1.1) through the embedding API.

use std::sync::{Arc, OnceLock};

use pabi_abi::HostErrorKind;
use pabi_host::testing::SharedPlugin;
use pabi_host::{Config, Error, Host, HostCallError, HostFunction, Unavailable};

/// `ask` sends its input to `app.back` and outputs the reply, or the
/// handler's failure message after a 0xff byte.
const ASKER: &str = r#"(module
  (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
  (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
  (import "pabi" "host_call" (func $host_call (param i32 i32 i32 i32) (result i32)))
  (import "pabi" "reply_read" (func $reply_read (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "app.back")
  (data (i32.const 16) "\ff")
  (func (export "pabi_fn_ask") (param $len i32) (result i32) (local $n i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
    (local.set $n (call $host_call (i32.const 0) (i32.const 8) (i32.const 1024) (local.get $len)))
    (if (i32.eq (local.get $n) (i32.const -4))
      (then
        (drop (call $write (i32.const 16) (i32.const 1)))
        (local.set $n (call $reply_read (i32.const 2048) (i32.const 0) (i32.const 1024)))
        (drop (call $write (i32.const 2048) (local.get $n)))
        (return (i32.const 0))))
    (drop (call $write (i32.const 2048) (call $reply_read (i32.const 2048) (i32.const 0) (local.get $n))))
    (i32.const 0))
  (func (export "pabi_fn_echo") (param $len i32) (result i32)
    (drop (call $read (i32.const 1024) (i32.const 0) (local.get $len)))
    (drop (call $write (i32.const 1024) (local.get $len)))
    (i32.const 0))
  (@custom "pabi" "{\"abi\":\"1.1\",\"name\":\"asker\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"ask\"},{\"name\":\"echo\"}],\"capabilities\":[],\"host_calls\":[{\"name\":\"app.back\",\"required\":true}]}"))"#;

/// A handler that calls back into the instance it serves is refused with
/// HOST_FAILURE instead of waiting for itself (CALL-8); it may call another
/// plugin, here a second instance of the same one.
#[test]
fn a_handler_cannot_call_back_into_the_instance_it_serves() {
    let same: Arc<OnceLock<SharedPlugin>> = Arc::default();
    let other: Arc<OnceLock<SharedPlugin>> = Arc::default();
    let (same_slot, other_slot) = (same.clone(), other.clone());
    let back = HostFunction::new("app.back", move |_, request| {
        let target = if request == b"same" { &same_slot } else { &other_slot };
        match target.get().expect("both plugins are loaded").call("echo", request) {
            Ok(output) => Ok(output),
            Err(Error::HostUnavailable(Unavailable::Reentrant)) => Err(HostCallError::new("refused")),
            Err(e) => Err(HostCallError::new(e.to_string())),
        }
    });
    let host = Host::new(Config::builder().host_function(back).build()).unwrap();
    let wasm = wat::parse_str(ASKER).unwrap();
    let first = SharedPlugin::new(host.load(&wasm).unwrap());
    let second = SharedPlugin::new(host.load(&wasm).unwrap());
    same.set(first.clone()).unwrap();
    other.set(second).unwrap();
    assert_eq!(first.call("ask", b"same").unwrap(), b"\xffrefused");
    assert_eq!(first.call("ask", b"other").unwrap(), b"other", "another instance serves the call");
    // The refusal ran no plugin code and left the instance working.
    assert_eq!(first.call("echo", b"still here").unwrap(), b"still here");
    let reentrant = Error::HostUnavailable(Unavailable::Reentrant);
    assert_eq!(reentrant.kind(), Some(HostErrorKind::HostFailure));
}

/// Registering a host function cannot fail; a host given a name outside
/// `CALL-2`'s grammar, or in the reserved `pabi` namespace, refuses to start.
#[test]
fn host_function_names_follow_the_grammar_and_pabi_is_reserved() {
    let host =
        |name: &str| Host::new(Config::builder().host_function(HostFunction::new(name, |_, _| Ok(vec![]))).build());
    for good in ["kv.get", "editor.buffer_text", "a.b.c.d"] {
        assert!(host(good).is_ok(), "{good}");
    }
    for bad in ["kv", "Kv.get", "a.b.c.d.e", "kv..get", "kv.get-x", "pabi.time", ""] {
        let error = host(bad).unwrap_err();
        assert_eq!(error.clause(), Some(pabi_abi::Clause::Call2), "{bad}: {error}");
    }
}
