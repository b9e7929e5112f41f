//! The validator inside someone else's program: it must not take over
//! process-wide resources such as rayon's global thread pool.

/// A plugin with enough code for the validator to spread the bodies over
/// threads.
pub fn large_plugin(functions: usize) -> Vec<u8> {
    let body = "(drop (i32.add (i32.const 1) (i32.const 2)))".repeat(40);
    let funcs: String = (0..functions).map(|i| format!("(func $f{i} {body})")).collect();
    wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          {funcs}
          (func (export "pabi_fn_f") (param i32) (result i32) (i32.const 0)))"#
    ))
    .unwrap()
}

#[test]
fn the_global_thread_pool_stays_the_embedders() {
    let wasm = large_plugin(1400);
    assert!(wasm.len() > 300 << 10, "{} bytes is too little code to go parallel", wasm.len());
    let report = pabi_validator::validate(&wasm);
    assert!(report.shape.is_some());
    // Building the global pool fails once anything has used it.
    rayon::ThreadPoolBuilder::new().num_threads(2).build_global().expect("the global pool is still unbuilt");
    // And validation still works with the embedder's pool in place.
    assert!(pabi_validator::validate(&wasm).shape.is_some());
}

/// The first out-of-profile instruction ends the scan; the report names the
/// feature it needs, even with a great deal of code after it.
#[test]
fn an_out_of_profile_instruction_is_named_once() {
    let body = "(drop (i32.add (i32.const 1) (i32.const 2)))".repeat(40);
    let funcs: String = (0..1200).map(|i| format!("(func $f{i} {body})")).collect();
    let wasm = wat::parse_str(format!(
        r#"(module
          (memory (export "memory") 1)
          (func $callee (result i32) (i32.const 0))
          (func (export "pabi_fn_f") (param i32) (result i32) (return_call $callee))
          {funcs})"#
    ))
    .unwrap();
    let report = pabi_validator::validate(&wasm);
    let mod2: Vec<_> = report.findings.iter().filter(|f| f.rule.id() == "MOD-2").collect();
    assert_eq!(mod2.len(), 1, "{:#?}", report.findings);
    assert_eq!(mod2[0].subject.as_deref(), Some("tail_call"));
}
