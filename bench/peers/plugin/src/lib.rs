//! Passes the input to the host function `echo` and returns its reply: the
//! Extism counterpart of the pabi plugin in `../src/main.rs`.

use extism_pdk::*;

#[host_fn]
extern "ExtismHost" {
    fn echo(input: Vec<u8>) -> Vec<u8>;
}

#[plugin_fn]
pub fn run(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(unsafe { echo(input)? })
}
