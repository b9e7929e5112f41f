//! Why the suite could not judge a case or a vector (the adapter could
//! not be run, or broke the protocol; a case cannot become an invocation),
//! and why the lines it read do not meet what was expected. A report
//! carries each as the failing case's reason, in words.

use std::time::Duration;

/// The suite could not get result lines to judge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuiteError {
    #[error("the adapter command `{0}` has an unclosed quote")]
    UnclosedQuote(String),
    #[error("the adapter command is empty")]
    EmptyCommand,
    #[error("cannot start the adapter `{program}`: {source}")]
    Start { program: String, source: std::io::Error },
    #[error("cannot wait for the adapter: {0}")]
    Wait(std::io::Error),
    /// What the adapter printed before it was killed tells a hang in a call
    /// from one at exit, on a CI log.
    #[error(
        "the adapter ran longer than {deadline:?} and was killed\n  command: {command}\n  its standard output: {stdout}\n  its standard error: {stderr}"
    )]
    PastDeadline { deadline: Duration, command: String, stdout: String, stderr: String },
    /// A process the adapter started kept a pipe open after it exited.
    #[error("the adapter exited, but a process it started kept its standard {0} open")]
    PipeHeldOpen(Pipe),
    #[error("the adapter exited with {code:?}: {stderr}")]
    Exited { code: Option<i32>, stderr: String },
    #[error(transparent)]
    Line(#[from] LineError),
    /// A case or a vector whose bytes cannot be given to the adapter.
    #[error("{subject}: {reason}")]
    Input { subject: String, reason: String },
    /// A scratch file or folder the run needs could not be written.
    #[error("cannot write {what}: {source}")]
    Scratch { what: String, source: std::io::Error },
}

/// One of the adapter's output pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pipe {
    Output,
    Error,
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pipe::Output => "output",
            Pipe::Error => "error",
        })
    }
}

/// A line the adapter printed that is not a line of the protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    #[error("the adapter printed a line that is not JSON ({reason}): {line}")]
    NotJson { reason: String, line: String },
    #[error("the adapter printed a line outside the protocol ({reason} at {at}): {line}")]
    OutsideSchema { reason: String, at: String, line: String },
    #[error("the adapter printed a line outside the protocol: {reason}")]
    OutsideType { reason: String },
}

/// How a result line differs from what a case expects of it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// A field the case gives has another value, or is absent; `want` is
    /// the value as the case file writes it.
    #[error("expected {key} = {want}")]
    Field { key: &'static str, want: String },
    #[error("the message does not name `{needle}`")]
    MessageLacks { needle: String },
}

/// How the lines of a shared vector differ from its steps.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VectorMismatch {
    #[error("step {step} ({function}) printed no result line")]
    NoLine { step: usize, function: String },
    #[error("step {step} ({function}): expected {expected}, got {got}")]
    Differs { step: usize, function: String, expected: String, got: String },
}
