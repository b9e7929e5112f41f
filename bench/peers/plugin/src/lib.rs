//! The Extism side of the peers benchmark: `echo` returns its input, and
//! `run` passes its input to the host function `host_echo` and returns its
//! reply, the counterparts of the pabi plugins in `../src/main.rs`.

use extism_pdk::*;

#[host_fn]
extern "ExtismHost" {
    fn host_echo(input: Vec<u8>) -> Vec<u8>;
}

#[plugin_fn]
pub fn run(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(unsafe { host_echo(input)? })
}

#[plugin_fn]
pub fn echo(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(input)
}
