//! Reading a plugin from a file within the compile budget (`LIM-12`).
//!
//! A module past [`crate::Limits::max_module_bytes`] is refused with
//! `MODULE_LIMIT` whatever its bytes, so its bytes are not read: the size
//! comes from the open file's metadata, and a file that grows after that
//! is read only up to one byte past the cap, which is refused the same
//! way. A 2 GB file costs a `stat`, not 2 GB of memory.

use std::fs::{File, Metadata};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::{CompileCap, Error};

/// Why a plugin file was not read, or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginFileError {
    /// The file cannot be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    Unreadable { path: PathBuf, error: std::io::Error },
    /// [`PluginFile::open_regular`] found something else than a regular
    /// file: a FIFO, a device, a folder, a symlink to nothing.
    #[error("{} is {what}, not a regular file", path.display())]
    NotAFile { path: PathBuf, what: &'static str },
    /// The module is past the host's compile budget: an
    /// [`Error::ModuleLimit`], as [`crate::Host::load`] would return for
    /// the same bytes.
    #[error(transparent)]
    ModuleLimit(Error),
}

/// What tells one version of a file from another without reading it: its
/// size, modification time and file identity (device and inode on Unix).
/// A copy written in place changes the size or the modification time; one
/// renamed into place is another inode even with the same size written
/// within the same clock tick. A change of owner or mode is not a new
/// version: the bytes are the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    device: u64,
    inode: u64,
}

impl FileStamp {
    /// The stamp of the file `metadata` describes.
    pub fn of(metadata: &Metadata) -> FileStamp {
        #[cfg(unix)]
        let (device, inode) = {
            use std::os::unix::fs::MetadataExt;
            (metadata.dev(), metadata.ino())
        };
        #[cfg(not(unix))]
        let (device, inode) = (0, 0);
        FileStamp { len: metadata.len(), modified: metadata.modified().ok(), device, inode }
    }
}

/// A plugin file, open and not read yet.
#[derive(Debug)]
pub struct PluginFile {
    path: PathBuf,
    file: File,
    metadata: Metadata,
}

impl PluginFile {
    /// Opens whatever `path` names that can be read, a pipe included (a
    /// command line's `<(…)`): opening a FIFO waits for its writer, as
    /// reading one does.
    pub fn open(path: &Path) -> Result<PluginFile, PluginFileError> {
        let unreadable = |error| PluginFileError::Unreadable { path: path.to_path_buf(), error };
        let file = File::open(path).map_err(unreadable)?;
        let metadata = file.metadata().map_err(unreadable)?;
        Ok(PluginFile { path: path.to_path_buf(), file, metadata })
    }

    /// Opens `path` only if it is a regular file, or a symlink to one, and
    /// never waits: for a folder of plugins that anyone may drop files
    /// into. The type is checked before opening, so a device is never
    /// opened, and again on the open file, which is opened with
    /// `O_NONBLOCK` on Unix, so a FIFO put in its place in between cannot
    /// block the open either.
    pub fn open_regular(path: &Path) -> Result<PluginFile, PluginFileError> {
        let unreadable = |error| PluginFileError::Unreadable { path: path.to_path_buf(), error };
        let not_a_file = |what| PluginFileError::NotAFile { path: path.to_path_buf(), what };
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            // `metadata` follows symlinks: a symlink to nothing (or to
            // itself) fails here, where "no such file" would confuse the
            // one who sees the link in the folder.
            Err(error) => {
                return Err(match std::fs::symlink_metadata(path) {
                    Ok(link) if link.file_type().is_symlink() => not_a_file("a symlink to nothing readable"),
                    _ => unreadable(error),
                })
            }
        };
        if !metadata.is_file() {
            return Err(not_a_file(file_type_name(&metadata)));
        }
        let mut options = std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // The flag's bits fit an `i32`, the type `custom_flags` takes.
            options.custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32);
        }
        let file = options.open(path).map_err(unreadable)?;
        let metadata = file.metadata().map_err(unreadable)?;
        if !metadata.is_file() {
            return Err(not_a_file(file_type_name(&metadata)));
        }
        Ok(PluginFile { path: path.to_path_buf(), file, metadata })
    }

    /// The open file's stamp, from its metadata: nothing is read.
    pub fn stamp(&self) -> FileStamp {
        FileStamp::of(&self.metadata)
    }

    /// The file's size as it was opened; a pipe's is 0.
    pub fn size(&self) -> u64 {
        self.metadata.len()
    }

    /// Reads the module, refusing with `MODULE_LIMIT` one of more than
    /// `max_module_bytes`: a regular file by its size, before anything is
    /// read; anything else, or a file that grew since it was opened, after
    /// one byte past the cap.
    pub fn read(self, max_module_bytes: u64) -> Result<Vec<u8>, PluginFileError> {
        let too_large = |bytes| {
            PluginFileError::ModuleLimit(Error::ModuleLimit {
                cap: CompileCap::ModuleBytes { bytes, cap: max_module_bytes },
            })
        };
        let regular = self.metadata.is_file();
        if regular && self.size() > max_module_bytes {
            return Err(too_large(self.size()));
        }
        let mut bytes = Vec::new();
        if regular {
            // The size is at most the cap here; a pipe's says nothing.
            bytes.reserve_exact(usize::try_from(self.size()).unwrap_or(0));
        }
        let mut file = self.file;
        file.by_ref()
            .take(max_module_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|error| PluginFileError::Unreadable { path: self.path.clone(), error })?;
        let read = bytes.len() as u64;
        if read > max_module_bytes {
            // Grown since it was opened, or a stream: the size it has now,
            // where there is one, else as far as it was read.
            let now = file.metadata().map(|m| m.len()).unwrap_or(0);
            return Err(too_large(read.max(now)));
        }
        Ok(bytes)
    }
}

/// Reads the plugin at `path` within the compile budget: see
/// [`PluginFile::open`] and [`PluginFile::read`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("big.wasm");
/// std::fs::File::create(&path)?.set_len(1 << 40)?; // 1 TiB, sparse
/// let limit = pabi_host::Limits::default().max_module_bytes;
/// match pabi_host::read_plugin_file(&path, limit) {
///     Err(pabi_host::PluginFileError::ModuleLimit(error)) => {
///         assert_eq!(error.kind(), Some(pabi_host::HostErrorKind::ModuleLimit));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
pub fn read_plugin_file(path: &Path, max_module_bytes: u64) -> Result<Vec<u8>, PluginFileError> {
    PluginFile::open(path)?.read(max_module_bytes)
}

/// What a file that is not a regular file is, for a message.
fn file_type_name(metadata: &Metadata) -> &'static str {
    let kind = metadata.file_type();
    if kind.is_dir() {
        return "a folder";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    "something else"
}
