//! The `enrich` example plugin: a pipeline operator that enriches records
//! by asking the application that hosts it (ABI 1.1 host calls). Its results
//! are byte for byte those of the C and Go versions
//! (`fixtures/vectors/enrich.json`).
//!
//! - `enrich`: for each line `KEY` of the input (lines end with `\n`; the
//!   last may not; empty lines are skipped) it calls `kv.get` with `KEY` and
//!   writes `KEY\tVALUE\n`, then calls `kv.note` with `KEY`, whose answer it
//!   ignores: the call is optional, and a host that does not offer it
//!   returns `E_ABSENT`. A failed `kv.get` ends the call with `FAILED` and
//!   the message `kv.get KEY: REASON`.
//! - `offered`: `{"kv.note":true}` or `{"kv.note":false}`.

use pabi_pdk::host::{self, HostCallError};
use pabi_pdk::Error;

pabi_pdk::metadata!("pabi.json");
pabi_pdk::export! {
    enrich => enrich,
    offered => offered,
}

fn enrich(input: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(input.len() * 2);
    for key in input.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        let value = host::call("kv.get", key).map_err(|e| failure(key, &e))?;
        out.extend_from_slice(key);
        out.push(b'\t');
        out.extend_from_slice(&value);
        out.push(b'\n');
        // Optional: absent on hosts that do not offer it, and its answer
        // does not change the output.
        let _ = host::call("kv.note", key);
    }
    Ok(out)
}

/// `kv.get KEY: REASON`, the same words in every language.
fn failure(key: &[u8], error: &HostCallError) -> Error {
    let key = String::from_utf8_lossy(key);
    let reason = match error {
        HostCallError::Failed(message) => message.clone(),
        HostCallError::Absent => "not offered".to_string(),
        HostCallError::Limit => "too large".to_string(),
        HostCallError::Unavailable => "unavailable".to_string(),
        HostCallError::Code(code) => format!("code {code}"),
    };
    Error::failed(format!("kv.get {key}: {reason}"))
}

fn offered(_input: &[u8]) -> Result<Vec<u8>, Error> {
    Ok(format!("{{\"kv.note\":{}}}", host::offers("kv.note")).into_bytes())
}
