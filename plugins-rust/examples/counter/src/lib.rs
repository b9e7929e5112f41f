//! The `counter` example plugin: each call adds 1 to a count kept in the
//! instance and returns it in decimal; the count survives a reload through
//! `pabi_state_save` / `pabi_state_load` (8 bytes, little-endian).

use std::sync::atomic::{AtomicU64, Ordering};

use pabi_pdk::Error;

pabi_pdk::metadata!("pabi.json");
pabi_pdk::export!(counter => counter);
pabi_pdk::state!(save => save, load => load);

static COUNT: AtomicU64 = AtomicU64::new(0);

fn counter(_input: &[u8]) -> Result<Vec<u8>, Error> {
    let count = COUNT.load(Ordering::Relaxed).wrapping_add(1);
    COUNT.store(count, Ordering::Relaxed);
    Ok(count.to_string().into_bytes())
}

fn save() -> Result<Vec<u8>, Error> {
    Ok(COUNT.load(Ordering::Relaxed).to_le_bytes().to_vec())
}

fn load(state: &[u8]) -> Result<(), Error> {
    let bytes: [u8; 8] = state
        .try_into()
        .map_err(|_| Error::invalid_input(format!("counter state needs exactly 8 bytes, got {}", state.len())))?;
    COUNT.store(u64::from_le_bytes(bytes), Ordering::Relaxed);
    Ok(())
}
