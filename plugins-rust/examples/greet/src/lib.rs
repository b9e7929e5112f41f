//! The `greet` example plugin: `pabi_init` takes the greeting prefix from the
//! config ("Hello, " when it is empty); `greet` returns prefix + input + "!".

use std::sync::Mutex;

use pabi_pdk::Error;

pabi_pdk::metadata!("pabi.json");
pabi_pdk::init!(init);
pabi_pdk::export!(greet => greet);

/// The prefix from the config; `None` (no or empty config) means "Hello, ".
static PREFIX: Mutex<Option<Vec<u8>>> = Mutex::new(None);

fn init(config: &[u8]) -> Result<(), Error> {
    *PREFIX.lock().unwrap() = if config.is_empty() { None } else { Some(config.to_vec()) };
    Ok(())
}

fn greet(input: &[u8]) -> Result<Vec<u8>, Error> {
    let guard = PREFIX.lock().unwrap();
    let prefix = guard.as_deref().unwrap_or(b"Hello, ");
    let mut out = Vec::with_capacity(prefix.len() + input.len() + 1);
    out.extend_from_slice(prefix);
    out.extend_from_slice(input);
    out.push(b'!');
    Ok(out)
}
