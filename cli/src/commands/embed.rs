use std::path::PathBuf;

use anyhow::Context;

use super::read_input;
use crate::exit;

/// Write or replace the `pabi` metadata custom section of a module.
///
/// The JSON is checked against the metadata schema first, and stored
/// without the whitespace of its layout (keys keep their order). Every
/// other byte of the module is kept, so debug info and the name section
/// survive.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Examples:
  pabi embed --metadata pabi.json plugin.wasm -o plugin.wasm
  clang ... -o raw.wasm && pabi embed --metadata text.json raw.wasm -o text.wasm

Exit codes:
  0  the section was written
  2  usage or I/O error, invalid metadata, or an input that is not wasm")]
pub struct Opts {
    /// The metadata JSON file.
    #[arg(long, value_name = "FILE")]
    metadata: PathBuf,
    /// The module to read (`-` for standard input).
    input: PathBuf,
    /// Where to write the result (may be the input).
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

impl Opts {
    pub fn run(self) -> anyhow::Result<u8> {
        let json = read_input(&self.metadata)?;
        let json = minify(&json).with_context(|| format!("`{}` is not JSON", self.metadata.display()))?;
        let wasm = read_input(&self.input)?;
        let out = pabi_abi::embed_metadata(&wasm, &json)
            .with_context(|| format!("cannot embed `{}` into `{}`", self.metadata.display(), self.input.display()))?;
        std::fs::write(&self.output, out).with_context(|| format!("failed to write `{}`", self.output.display()))?;
        Ok(exit::OK)
    }
}

/// The JSON without insignificant whitespace: hand-formatted metadata was
/// a third of a small plugin. Streams token by token, so keys keep the
/// order they were written in.
fn minify(json: &[u8]) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(json.len());
    let mut reader = serde_json::Deserializer::from_slice(json);
    serde_transcode::transcode(&mut reader, &mut serde_json::Serializer::new(&mut out))?;
    reader.end()?;
    Ok(out)
}
