//! Calls with typed inputs and outputs: UTF-8 text and JSON, over the
//! bytes a plugin function takes and gives (`FN-1`). The bytes API stays
//! the primitive; these are conversions on either side of it.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let wat = pabi_fixtures::fixtures_dir().join("good/core.wat");
//! # let wasm = pabi_fixtures::compile_wat(&wat)?.wasm;
//! use pabi_host::Json;
//!
//! let host = pabi_host::Host::new(pabi_host::Config::default())?;
//! let mut plugin = host.load(&wasm)?;
//! // Text in, text out: the output must be UTF-8.
//! let text: String = plugin.call_as("echo", "héllo")?;
//! assert_eq!(text, "héllo");
//! // JSON in, JSON out, through serde.
//! let Json(numbers): Json<Vec<u32>> = plugin.call_as("echo", &Json(vec![1, 2, 3]))?;
//! assert_eq!(numbers, [1, 2, 3]);
//! # Ok(()) }
//! ```

use std::borrow::Cow;

use crate::Error;

/// A value serialised as JSON on the way in, or parsed from JSON on the
/// way out, with `serde`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

/// What can be a call's input. Implemented for bytes, text and [`Json`].
pub trait Input {
    /// The bytes the plugin receives.
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError>;
}

/// What a call's output can be read as. Implemented for bytes, text and
/// [`Json`].
pub trait Output: Sized {
    /// Reads the plugin's output; on failure the error keeps the bytes.
    fn from_output(output: Vec<u8>) -> Result<Self, TypedCallError>;
}

/// Why a typed call failed: the call itself, or a conversion on either
/// side of it. A conversion that fails on the way out keeps the output,
/// so nothing the plugin returned is lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedCallError {
    /// The call failed; the error is the host's, with its kind.
    #[error(transparent)]
    Call(#[from] Error),
    /// The input could not be serialised.
    #[error("cannot serialise the input as JSON: {0}")]
    Input(String),
    /// The plugin's output is not what was asked for.
    #[error("the output is not {expected}: {detail}")]
    Output {
        /// What the output was to be read as: `UTF-8 text` or `JSON`.
        expected: &'static str,
        detail: String,
        /// The plugin's output, as it came.
        output: Vec<u8>,
    },
}

impl TypedCallError {
    /// The spec's host error kind of a failed call; `None` for a failed
    /// conversion, which is the caller's, not the host's.
    pub fn kind(&self) -> Option<pabi_abi::HostErrorKind> {
        match self {
            TypedCallError::Call(error) => error.kind(),
            _ => None,
        }
    }
}

impl Input for [u8] {
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError> {
        Ok(Cow::Borrowed(self))
    }
}

impl<const N: usize> Input for [u8; N] {
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError> {
        Ok(Cow::Borrowed(self))
    }
}

impl Input for Vec<u8> {
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError> {
        Ok(Cow::Borrowed(self))
    }
}

impl Input for str {
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError> {
        Ok(Cow::Borrowed(self.as_bytes()))
    }
}

impl Input for String {
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError> {
        Ok(Cow::Borrowed(self.as_bytes()))
    }
}

impl<T: serde::Serialize> Input for Json<T> {
    fn to_input(&self) -> Result<Cow<'_, [u8]>, TypedCallError> {
        serde_json::to_vec(&self.0).map(Cow::Owned).map_err(|e| TypedCallError::Input(e.to_string()))
    }
}

impl Output for Vec<u8> {
    fn from_output(output: Vec<u8>) -> Result<Self, TypedCallError> {
        Ok(output)
    }
}

impl Output for String {
    fn from_output(output: Vec<u8>) -> Result<Self, TypedCallError> {
        String::from_utf8(output).map_err(|e| TypedCallError::Output {
            expected: "UTF-8 text",
            detail: e.utf8_error().to_string(),
            output: e.into_bytes(),
        })
    }
}

impl<T: serde::de::DeserializeOwned> Output for Json<T> {
    fn from_output(output: Vec<u8>) -> Result<Self, TypedCallError> {
        match serde_json::from_slice(&output) {
            Ok(value) => Ok(Json(value)),
            Err(e) => Err(TypedCallError::Output { expected: "JSON", detail: e.to_string(), output }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_conversion_keeps_the_output_and_has_no_host_kind() {
        let error = String::from_output(vec![b'a', 0xff]).unwrap_err();
        assert_eq!(error.kind(), None);
        match error {
            TypedCallError::Output { expected, output, .. } => {
                assert_eq!((expected, output), ("UTF-8 text", vec![b'a', 0xff]));
            }
            other => panic!("expected an output error, got {other:?}"),
        }
        let error = <Json<u32>>::from_output(b"[1]".to_vec()).unwrap_err();
        assert!(matches!(error, TypedCallError::Output { expected: "JSON", ref output, .. } if output == b"[1]"));
    }

    #[test]
    fn a_value_json_cannot_hold_is_an_input_error() {
        // JSON object keys must be strings.
        let map: std::collections::BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(matches!(Json(map).to_input(), Err(TypedCallError::Input(_))));
    }
}
