//! Reproducers of failures: a `pabi run` command that replays a failing
//! call, with its input, configuration and host-call table inline when they
//! are short, and in files of the report folder when they are not, so that
//! a failure on a megabyte of input still fits a terminal.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pabi_testkit::hex::encode_hex;

/// Inputs and configurations up to this many bytes are given inline, as
/// hex (`--input-hex`); longer ones are written to a file (`--input FILE`).
pub const INLINE_BYTES: usize = 128;

/// A host-call table whose JSON is up to this many bytes is quoted in the
/// reproducer; a longer one is written to a file (`--host-calls FILE`).
pub const INLINE_TABLE_BYTES: usize = 256;

/// How many leading bytes of a payload in a file a report shows.
pub const PREFIX_BYTES: usize = 16;

/// Bytes a reproducer passes to `pabi run`: inline, or in a file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Payload {
    /// Short bytes, given on the command line.
    Inline(Vec<u8>),
    /// Bytes too long for a command line, written to `path`; with their
    /// length and first bytes, for the report.
    File { path: PathBuf, len: usize, prefix: Vec<u8> },
}

impl Payload {
    /// The number of bytes.
    pub fn len(&self) -> usize {
        match self {
            Payload::Inline(bytes) => bytes.len(),
            Payload::File { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file the bytes were written to, if they were.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Payload::Inline(_) => None,
            Payload::File { path, .. } => Some(path),
        }
    }

    /// The bytes as hex, when they are inline.
    pub fn inline_hex(&self) -> Option<String> {
        match self {
            Payload::Inline(bytes) => Some(encode_hex(bytes)),
            Payload::File { .. } => None,
        }
    }
}

/// A `pabi run` command that replays a failure; `Display` writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reproducer {
    /// The plugin, as the report names it.
    pub plugin: String,
    /// The function to call; `None` when any function does (a failure of
    /// `pabi_init`, which runs before the call).
    pub function: Option<String>,
    /// The configuration bytes for `pabi_init`, when not empty.
    pub config: Option<Payload>,
    /// The input of the call.
    pub input: Option<Payload>,
    /// The application's side of the plugin's host calls, as a host-call
    /// table (`spec/schemas/host-calls.schema.json`), JSON.
    pub host_calls: Option<Payload>,
    /// The reply cap the run had, when it was not the default.
    pub max_reply: Option<u64>,
    /// The run offered only the plugin's required host calls: optional
    /// ones the table does not list are absent.
    pub required_calls_only: bool,
}

impl Reproducer {
    /// A call of `function` in `plugin`, with nothing else given yet.
    pub fn new(plugin: impl Into<String>, function: Option<String>) -> Self {
        Reproducer {
            plugin: plugin.into(),
            function,
            config: None,
            input: None,
            host_calls: None,
            max_reply: None,
            required_calls_only: false,
        }
    }
}

impl fmt::Display for Reproducer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pabi run {} {}", shell_word(&self.plugin), self.function.as_deref().unwrap_or("<function>"))?;
        match &self.config {
            Some(Payload::Inline(bytes)) => write!(f, " --config-hex '{}'", encode_hex(bytes))?,
            Some(Payload::File { path, .. }) => write!(f, " --config {}", shell_word(&path.to_string_lossy()))?,
            None => {}
        }
        match &self.input {
            Some(Payload::Inline(bytes)) => write!(f, " --input-hex '{}'", encode_hex(bytes))?,
            Some(Payload::File { path, .. }) => write!(f, " --input {}", shell_word(&path.to_string_lossy()))?,
            None => {}
        }
        if let Some(cap) = self.max_reply {
            write!(f, " --max-reply {cap}")?;
        }
        match &self.host_calls {
            Some(Payload::File { path, .. }) => write!(f, " --host-calls {}", shell_word(&path.to_string_lossy()))?,
            // Last, since it reads on past the command.
            Some(Payload::Inline(json)) => {
                write!(f, " --host-calls FILE, with FILE holding {}", String::from_utf8_lossy(json))?
            }
            None => {}
        }
        if self.required_calls_only && self.host_calls.is_some() {
            f.write_str(" (optional calls not in it are absent)")?;
        }
        Ok(())
    }
}

impl serde::Serialize for Reproducer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A word as a POSIX shell reads it back: as it is when it has only
/// characters the shell leaves alone, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A reproducer file that could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReproducerError {
    #[error("cannot create a temporary folder for reproducers: {0}")]
    TempFolder(#[source] std::io::Error),
    #[error("cannot write the reproducer file `{path}`: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The longest reproducer left inline: its `reproduce:` line in the human
/// report stays within [`MAX_LINE_CHARS`](crate::report::MAX_LINE_CHARS).
const REPRODUCER_CHARS: usize = crate::report::MAX_LINE_CHARS - "        reproduce: ".len();

/// The payload of `reproducer` a file of this extension would hold.
fn slot<'r>(reproducer: &'r mut Reproducer, extension: &str) -> &'r mut Option<Payload> {
    match extension {
        ".config" => &mut reproducer.config,
        ".input" => &mut reproducer.input,
        _ => &mut reproducer.host_calls,
    }
}

/// Where one plugin's run writes its reproducer files: the folder the
/// options give, or a fresh temporary folder made at the first file (and
/// kept, since the report names its files).
#[derive(Debug)]
pub(crate) struct ReportFolder {
    given: Option<PathBuf>,
    temporary: OnceLock<Result<PathBuf, String>>,
    /// The plugin's file name without extension, the start of each file
    /// name, so that the runs of several plugins can share a folder.
    stem: String,
}

impl ReportFolder {
    pub(crate) fn new(given: Option<PathBuf>, plugin: &str) -> Self {
        let stem = Path::new(plugin).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        ReportFolder { given, temporary: OnceLock::new(), stem: file_name_part(&stem) }
    }

    /// Writes the bytes of `reproducer` that are too long for a report to
    /// files named `<plugin>-<name><extension>`: an input or configuration
    /// past [`INLINE_BYTES`], a table past [`INLINE_TABLE_BYTES`], and then,
    /// the longest first, any that keeps its `reproduce:` line past the
    /// report's line limit (a long plugin path leaves less room).
    pub(crate) fn place(&self, reproducer: &mut Reproducer, name: &str) -> Result<(), ReproducerError> {
        let limits = [(".config", INLINE_BYTES), (".input", INLINE_BYTES), (".host-calls.json", INLINE_TABLE_BYTES)];
        for (extension, limit) in limits {
            let slot = slot(reproducer, extension);
            if let Some(Payload::Inline(bytes)) = slot.as_ref().filter(|payload| payload.len() > limit) {
                *slot = Some(self.write(name, extension, bytes)?);
            }
        }
        while reproducer.to_string().chars().count() > REPRODUCER_CHARS {
            let longest = limits
                .iter()
                .filter_map(|(extension, _)| match slot(reproducer, extension) {
                    // An input or configuration shows as hex, two
                    // characters a byte; a table as its JSON.
                    Some(Payload::Inline(bytes)) if *extension == ".host-calls.json" => Some((bytes.len(), *extension)),
                    Some(Payload::Inline(bytes)) => Some((2 * bytes.len(), *extension)),
                    _ => None,
                })
                .max();
            let Some((_, extension)) = longest else { break };
            let slot = slot(reproducer, extension);
            if let Some(Payload::Inline(bytes)) = slot.as_ref() {
                *slot = Some(self.write(name, extension, bytes)?);
            }
        }
        Ok(())
    }

    fn write(&self, name: &str, extension: &str, bytes: &[u8]) -> Result<Payload, ReproducerError> {
        let folder = self.folder()?;
        let path = folder.join(format!("{}-{}{extension}", self.stem, file_name_part(name)));
        std::fs::write(&path, bytes).map_err(|source| ReproducerError::Write { path: path.clone(), source })?;
        Ok(Payload::File { path, len: bytes.len(), prefix: bytes[..bytes.len().min(PREFIX_BYTES)].to_vec() })
    }

    fn folder(&self) -> Result<PathBuf, ReproducerError> {
        if let Some(given) = &self.given {
            std::fs::create_dir_all(given).map_err(|source| ReproducerError::Write { path: given.clone(), source })?;
            return Ok(given.clone());
        }
        // Made once per run, by whichever function's check fails first;
        // an error is kept as text, since `io::Error` is not `Clone`.
        let made = self.temporary.get_or_init(|| {
            tempfile::Builder::new()
                .prefix("pabi-conform-")
                .tempdir()
                .map(tempfile::TempDir::keep)
                .map_err(|e| e.to_string())
        });
        made.clone().map_err(|message| ReproducerError::TempFolder(std::io::Error::other(message)))
    }
}

/// `text` with every character a file name should not have as `_`.
pub(crate) fn file_name_part(text: &str) -> String {
    let name: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
    let name = name.trim_start_matches('.');
    if name.is_empty() {
        "plugin".to_string()
    } else {
        name.chars().take(64).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reproducer_quotes_what_a_shell_would_split() {
        let mut r = Reproducer::new("my plugin.wasm", Some("f".into()));
        r.input = Some(Payload::File { path: "reports/it's.input".into(), len: 9000, prefix: vec![1] });
        assert_eq!(r.to_string(), r"pabi run 'my plugin.wasm' f --input 'reports/it'\''s.input'");
    }

    #[test]
    fn short_bytes_stay_inline_and_long_ones_go_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let folder = ReportFolder::new(Some(dir.path().to_path_buf()), "some/dir/text.wasm");
        let mut short = Reproducer::new("text.wasm", Some("f".into()));
        short.input = Some(Payload::Inline(vec![7; INLINE_BYTES]));
        folder.place(&mut short, "status-f").unwrap();
        assert_eq!(short.input, Some(Payload::Inline(vec![7; INLINE_BYTES])));
        let mut long = short.clone();
        long.input = Some(Payload::Inline(vec![7; INLINE_BYTES + 1]));
        folder.place(&mut long, "status-f").unwrap();
        let input = long.input.as_ref().unwrap();
        let path = input.file().unwrap();
        assert_eq!(path, dir.path().join("text-status-f.input"));
        assert_eq!(std::fs::read(path).unwrap(), vec![7; INLINE_BYTES + 1]);
        assert_eq!(input.len(), INLINE_BYTES + 1);
    }

    /// An input and a table each short enough, but too long together for
    /// one line: the longer goes to a file.
    #[test]
    fn a_reproduce_line_stays_within_the_line_limit() {
        let dir = tempfile::tempdir().unwrap();
        let folder = ReportFolder::new(Some(dir.path().to_path_buf()), "p.wasm");
        let mut r = Reproducer::new("p.wasm", Some("f".into()));
        r.input = Some(Payload::Inline(vec![1; INLINE_BYTES]));
        r.host_calls = Some(Payload::Inline(vec![b' '; INLINE_TABLE_BYTES]));
        folder.place(&mut r, "host-calls-f").unwrap();
        assert!(r.to_string().chars().count() <= REPRODUCER_CHARS, "{r}");
        assert!(r.input.as_ref().unwrap().file().is_some(), "the input is the longer, as hex");
        assert!(r.host_calls.as_ref().unwrap().file().is_none());
    }
}
