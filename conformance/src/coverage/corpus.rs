//! The per-plugin corpus of `pabi conform --corpus DIR`: the inputs that
//! reached new blocks, one file each, named by the SHA-256 of their bytes,
//! in `DIR/<plugin>/<function>/`. A later run starts from them, so a CI
//! that keeps the folder explores further each time.

use std::path::{Path, PathBuf};

use pabi_testkit::hex::sha256_hex;

/// Corpus files larger than this are not read: the generator's largest
/// input ([`crate::inputs::MAX_INPUT`]).
const MAX_FILE: u64 = crate::inputs::MAX_INPUT as u64;

/// The corpus folder of one plugin function.
#[derive(Clone, Debug)]
pub struct CorpusDir {
    path: PathBuf,
}

impl CorpusDir {
    /// `dir/<plugin stem>/<function>`, each part made safe for a file name.
    pub fn new(dir: &Path, plugin: &str, function: &str) -> Self {
        let stem = Path::new(plugin).file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        CorpusDir {
            path: dir.join(crate::reproducer::file_name_part(&stem)).join(crate::reproducer::file_name_part(function)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The inputs in the folder, in file-name order (so a run is the same
    /// for the same folder); none when it does not exist yet. Unreadable
    /// and oversized files, and hidden ones (a write cut short), are
    /// passed over.
    pub fn read(&self) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(&self.path) else { return Vec::new() };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() <= MAX_FILE))
            .map(|e| e.path())
            .collect();
        files.sort();
        files.iter().filter_map(|path| std::fs::read(path).ok()).collect()
    }

    /// Writes `input` as a file named by its digest; `Ok(false)` when it
    /// was there already.
    pub fn write(&self, input: &[u8]) -> std::io::Result<bool> {
        std::fs::create_dir_all(&self.path)?;
        let path = self.path.join(sha256_hex(input));
        if path.exists() {
            return Ok(false);
        }
        // Written beside, then renamed: a run stopped half-way leaves no
        // truncated input behind for the next one.
        let partial = self.path.join(format!(".{}.partial", sha256_hex(input)));
        std::fs::write(&partial, input)?;
        std::fs::rename(&partial, &path)?;
        Ok(true)
    }
}
