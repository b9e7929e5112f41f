//! The `math` example plugin: `double`, the seed's `process(x) = x * 2` over
//! a little-endian i32, wrapping on overflow.

use pabi_pdk::Error;

pabi_pdk::metadata!("pabi.json");
pabi_pdk::export!(double => double);

fn double(input: &[u8]) -> Result<Vec<u8>, Error> {
    let bytes: [u8; 4] = input
        .try_into()
        .map_err(|_| Error::invalid_input(format!("double needs exactly 4 bytes, got {}", input.len())))?;
    Ok(i32::from_le_bytes(bytes).wrapping_mul(2).to_le_bytes().to_vec())
}
