//! Shared test vectors (`fixtures/vectors/*.json`): the inputs every
//! language's example plugins must answer byte for byte the same.

use serde::Deserialize;

use crate::hex::{decode_hex, sha256_hex};

/// A vector file: the vectors of one plugin.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VectorFile {
    /// The plugin's name, e.g. `text`.
    pub plugin: String,
    pub vectors: Vec<Vector>,
}

/// One vector: a single call, or `steps` run in order on one instance.
#[derive(Clone, Debug, Deserialize)]
pub struct Vector {
    pub name: String,
    #[serde(default)]
    pub config: Option<Bytes>,
    /// The application's side of the plugin's host calls (ABI 1.1), as a
    /// host-call table; `None` offers none.
    #[serde(default)]
    pub host_calls: Option<crate::host_calls::HostCallTable>,
    #[serde(flatten)]
    pub call: Option<Step>,
    #[serde(default)]
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub function: String,
    pub input: Bytes,
    pub expect: Expect,
    /// The host calls the step must make, in order; `None` does not check.
    #[serde(default)]
    pub requests: Option<Vec<ExpectedRequest>>,
}

/// One host call a step must make: its name and request.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    pub name: String,
    pub request: Bytes,
}

impl Step {
    /// Whether the host calls the application received (name, request) are
    /// the expected ones.
    /// A step without `requests` accepts any.
    pub fn requests_match(&self, received: &[(String, Vec<u8>)]) -> bool {
        let Some(expected) = &self.requests else { return true };
        expected.len() == received.len()
            && expected.iter().zip(received).all(|(want, (name, request))| {
                want.name == *name && want.request.resolve().is_ok_and(|bytes| bytes == *request)
            })
    }
}

/// Bytes written as text, hex, or a repeated pattern.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Bytes {
    Text(String),
    Hex(String),
    Repeat(Box<Repeat>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct Repeat {
    #[serde(flatten)]
    pub pattern: Bytes,
    pub count: usize,
}

/// What a step must give: `{"output": …}`, or `{"status": N}` with, when
/// the contract fixes it, the plugin's `"message"`.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "ExpectFields")]
pub enum Expect {
    /// Status OK with this output.
    Output(ExpectedOutput),
    /// This non-OK plugin status, reported as `PLUGIN_ERROR`; the output is
    /// ignored. With `message`, the plugin's message must be exactly it.
    Status { status: i32, message: Option<String> },
}

/// [`Expect`] as a file writes it: one object whose fields say which.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectFields {
    #[serde(default)]
    output: Option<ExpectedOutput>,
    #[serde(default)]
    status: Option<i32>,
    #[serde(default)]
    message: Option<String>,
}

/// An `expect` object that is neither an output nor a status.
#[derive(Debug, thiserror::Error)]
#[error("`expect` gives either `output`, or `status` with an optional `message`")]
pub struct ExpectShapeError;

impl TryFrom<ExpectFields> for Expect {
    type Error = ExpectShapeError;

    fn try_from(fields: ExpectFields) -> Result<Self, Self::Error> {
        match fields {
            ExpectFields { output: Some(output), status: None, message: None } => Ok(Expect::Output(output)),
            ExpectFields { output: None, status: Some(status), message } => Ok(Expect::Status { status, message }),
            _ => Err(ExpectShapeError),
        }
    }
}

impl Expect {
    /// Whether a `PLUGIN_ERROR` with this status and message meets a
    /// [`Expect::Status`]; never an [`Expect::Output`].
    pub fn failure_matches(&self, got_status: Option<i32>, got_message: &[u8]) -> bool {
        match self {
            Expect::Output(_) => false,
            Expect::Status { status, message } => {
                got_status == Some(*status) && message.as_ref().is_none_or(|m| m.as_bytes() == got_message)
            }
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ExpectedOutput {
    Text(String),
    Hex(String),
    Sha256(String),
}

/// Why a vector file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("not a vector file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("vector `{0}`: give either `function`/`input`/`expect` or `steps`")]
    Shape(String),
    #[error("vector `{name}`: bad hex `{hex}`")]
    Hex { name: String, hex: String },
}

impl VectorFile {
    pub fn parse(json: &[u8]) -> Result<VectorFile, VectorError> {
        let file: VectorFile = serde_json::from_slice(json)?;
        for vector in &file.vectors {
            if vector.call.is_some() != vector.steps.is_empty() {
                return Err(VectorError::Shape(vector.name.clone()));
            }
            let mut byte_fields: Vec<&Bytes> = vector.config.iter().collect();
            byte_fields.extend(vector.steps().map(|s| &s.input));
            for bytes in byte_fields {
                bytes.resolve().map_err(|hex| VectorError::Hex { name: vector.name.clone(), hex })?;
            }
        }
        Ok(file)
    }
}

impl Vector {
    /// The calls of the vector, in order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.call.iter().chain(self.steps.iter())
    }
}

impl Bytes {
    /// The bytes, or the hex text that did not decode.
    pub fn resolve(&self) -> Result<Vec<u8>, String> {
        match self {
            Bytes::Text(text) => Ok(text.as_bytes().to_vec()),
            Bytes::Hex(hex) => decode_hex(hex).ok_or_else(|| hex.clone()),
            Bytes::Repeat(repeat) => Ok(repeat.pattern.resolve()?.repeat(repeat.count)),
        }
    }
}

impl ExpectedOutput {
    /// Whether `output` is what is expected.
    pub fn matches(&self, output: &[u8]) -> bool {
        match self {
            ExpectedOutput::Text(text) => output == text.as_bytes(),
            ExpectedOutput::Hex(hex) => decode_hex(hex).is_some_and(|b| b == output),
            ExpectedOutput::Sha256(digest) => sha256_hex(output).eq_ignore_ascii_case(digest),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let file = VectorFile::parse(
            br#"{"plugin":"t","vectors":[
              {"name":"a","function":"echo","input":{"text":"hi"},"expect":{"output":{"text":"hi"}}},
              {"name":"b","config":{"hex":"4869"},"function":"greet","input":{"repeat":{"hex":"00ff","count":3}},"expect":{"status":1}},
              {"name":"c","steps":[{"function":"inc","input":{"text":""},"expect":{"output":{"sha256":"E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"}}}]}
            ]}"#,
        )
        .unwrap();
        let b = &file.vectors[1];
        assert_eq!(b.config.as_ref().unwrap().resolve().unwrap(), b"Hi");
        assert_eq!(b.steps().next().unwrap().input.resolve().unwrap(), [0, 255, 0, 255, 0, 255]);
        let Expect::Output(expected) = &file.vectors[2].steps[0].expect else { panic!() };
        assert!(expected.matches(b""));
        assert!(!expected.matches(b"x"));
        // A status alone accepts any message.
        assert!(b.steps().next().unwrap().expect.failure_matches(Some(1), b"anything"));
    }

    /// A status with a message needs both; an expectation with both an
    /// output and a status, or a message without a status, is refused.
    #[test]
    fn a_status_can_fix_the_message() {
        let file = VectorFile::parse(
            br#"{"plugin":"t","vectors":[{"name":"m","function":"f","input":{"text":""},"expect":{"status":3,"message":"kv.get k: no such key"}}]}"#,
        )
        .unwrap();
        let expect = &file.vectors[0].steps().next().unwrap().expect;
        assert!(expect.failure_matches(Some(3), b"kv.get k: no such key"));
        assert!(!expect.failure_matches(Some(3), b"kv.get k: something else"));
        assert!(!expect.failure_matches(Some(1), b"kv.get k: no such key"));
        for bad in [
            r#"{"output":{"text":""},"status":1}"#,
            r#"{"message":"x"}"#,
            r#"{"output":{"text":""},"message":"x"}"#,
            r#"{"status":1,"mesage":"x"}"#,
            r#"{}"#,
        ] {
            let json = format!(
                r#"{{"plugin":"t","vectors":[{{"name":"x","function":"f","input":{{"text":""}},"expect":{bad}}}]}}"#
            );
            assert!(VectorFile::parse(json.as_bytes()).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn refuses_bad_shapes_and_hex() {
        let both = br#"{"plugin":"t","vectors":[{"name":"x","function":"f","input":{"text":""},"expect":{"status":1},"steps":[{"function":"f","input":{"text":""},"expect":{"status":1}}]}]}"#;
        assert!(matches!(VectorFile::parse(both), Err(VectorError::Shape(_))));
        let bad_hex =
            br#"{"plugin":"t","vectors":[{"name":"x","function":"f","input":{"hex":"zz"},"expect":{"status":1}}]}"#;
        assert!(matches!(VectorFile::parse(bad_hex), Err(VectorError::Hex { .. })));
        assert!(VectorFile::parse(b"[]").is_err());
    }
}
