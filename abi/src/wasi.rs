/// The WASI module a `wasi`-profile plugin may import from (`WASI-2`).
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// What a `wasi_snapshot_preview1` import needs before a plugin may use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WasiRequirement {
    /// Always allowed in the wasi profile; served without any capability
    /// (`WASI-2`). Clocks and random are virtual unless granted (`WASI-6`,
    /// `WASI-7`).
    Baseline,
    /// Needs at least one `fs:` capability (`WASI-4`).
    Filesystem,
    /// Never allowed in ABI 1.0 (`WASI-4`).
    Forbidden,
}

const BASELINE: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "random_get",
    "poll_oneoff",
    "sched_yield",
    "proc_exit",
    "proc_raise",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_seek",
    "fd_tell",
    "fd_sync",
    "fd_datasync",
    "fd_advise",
    "fd_allocate",
    "fd_fdstat_get",
    "fd_fdstat_set_flags",
    "fd_fdstat_set_rights",
    "fd_filestat_get",
    "fd_prestat_get",
    "fd_prestat_dir_name",
];

const FILESYSTEM: &[&str] = &[
    "fd_pread",
    "fd_pwrite",
    "fd_readdir",
    "fd_renumber",
    "fd_filestat_set_size",
    "fd_filestat_set_times",
    "path_create_directory",
    "path_filestat_get",
    "path_filestat_set_times",
    "path_link",
    "path_open",
    "path_readlink",
    "path_remove_directory",
    "path_rename",
    "path_symlink",
    "path_unlink_file",
];

const FORBIDDEN: &[&str] = &["sock_accept", "sock_recv", "sock_send", "sock_shutdown"];

/// A value type of a preview1 function signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WasiValType {
    I32,
    I64,
}

impl std::fmt::Display for WasiValType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WasiValType::I32 => "i32",
            WasiValType::I64 => "i64",
        })
    }
}

/// The function type of a preview1 function: parameters and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasiSignature {
    pub params: &'static [WasiValType],
    pub results: &'static [WasiValType],
}

impl std::fmt::Display for WasiSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |types: &[WasiValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
        write!(f, "(func (param {}) (result {}))", list(self.params), list(self.results))
    }
}

use WasiValType::{I32, I64};

/// Every preview1 function with its type, in the order of the table of
/// `WASI-11`. `proc_exit` alone has no result; every other function returns
/// an errno.
const SIGNATURES: &[(&str, &[WasiValType], &[WasiValType])] = &[
    ("args_get", &[I32, I32], &[I32]),
    ("args_sizes_get", &[I32, I32], &[I32]),
    ("environ_get", &[I32, I32], &[I32]),
    ("environ_sizes_get", &[I32, I32], &[I32]),
    ("clock_res_get", &[I32, I32], &[I32]),
    ("clock_time_get", &[I32, I64, I32], &[I32]),
    ("fd_advise", &[I32, I64, I64, I32], &[I32]),
    ("fd_allocate", &[I32, I64, I64], &[I32]),
    ("fd_close", &[I32], &[I32]),
    ("fd_datasync", &[I32], &[I32]),
    ("fd_fdstat_get", &[I32, I32], &[I32]),
    ("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    ("fd_fdstat_set_rights", &[I32, I64, I64], &[I32]),
    ("fd_filestat_get", &[I32, I32], &[I32]),
    ("fd_filestat_set_size", &[I32, I64], &[I32]),
    ("fd_filestat_set_times", &[I32, I64, I64, I32], &[I32]),
    ("fd_pread", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_prestat_get", &[I32, I32], &[I32]),
    ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    ("fd_pwrite", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_read", &[I32, I32, I32, I32], &[I32]),
    ("fd_readdir", &[I32, I32, I32, I64, I32], &[I32]),
    ("fd_renumber", &[I32, I32], &[I32]),
    ("fd_seek", &[I32, I64, I32, I32], &[I32]),
    ("fd_sync", &[I32], &[I32]),
    ("fd_tell", &[I32, I32], &[I32]),
    ("fd_write", &[I32, I32, I32, I32], &[I32]),
    ("path_create_directory", &[I32, I32, I32], &[I32]),
    ("path_filestat_get", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_filestat_set_times", &[I32, I32, I32, I32, I64, I64, I32], &[I32]),
    ("path_link", &[I32, I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_open", &[I32, I32, I32, I32, I32, I64, I64, I32, I32], &[I32]),
    ("path_readlink", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_remove_directory", &[I32, I32, I32], &[I32]),
    ("path_rename", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("path_symlink", &[I32, I32, I32, I32, I32], &[I32]),
    ("path_unlink_file", &[I32, I32, I32], &[I32]),
    ("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    ("proc_exit", &[I32], &[]),
    ("proc_raise", &[I32], &[I32]),
    ("sched_yield", &[], &[I32]),
    ("random_get", &[I32, I32], &[I32]),
    ("sock_accept", &[I32, I32, I32], &[I32]),
    ("sock_recv", &[I32, I32, I32, I32, I32, I32], &[I32]),
    ("sock_send", &[I32, I32, I32, I32, I32], &[I32]),
    ("sock_shutdown", &[I32, I32], &[I32]),
];

/// The type preview1 gives the named function (`WASI-11`), or `None` when
/// preview1 has no function of that name.
pub fn wasi_signature(name: &str) -> Option<WasiSignature> {
    SIGNATURES.iter().find(|(n, _, _)| *n == name).map(|&(_, params, results)| WasiSignature { params, results })
}

/// The version from which a plugin may import the named preview1 function
/// (the Since of `WASI-11`'s table): every one of them since 1.0, with
/// sockets allowed by no version yet (`WASI-4`).
pub fn wasi_since(name: &str) -> Option<crate::AbiVersion> {
    wasi_signature(name).map(|_| crate::AbiVersion::new(1, 0))
}

/// The names of the preview1 functions, in the order of `WASI-11`'s table.
pub fn wasi_functions() -> impl Iterator<Item = &'static str> {
    SIGNATURES.iter().map(|(name, _, _)| *name)
}

/// What the named preview1 function needs, or `None` when preview1 has no
/// function of that name.
pub fn wasi_import_requirement(name: &str) -> Option<WasiRequirement> {
    if BASELINE.contains(&name) {
        Some(WasiRequirement::Baseline)
    } else if FILESYSTEM.contains(&name) {
        Some(WasiRequirement::Filesystem)
    } else if FORBIDDEN.contains(&name) {
        Some(WasiRequirement::Forbidden)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview1_has_46_functions_each_classified_once() {
        let all: Vec<_> = BASELINE.iter().chain(FILESYSTEM).chain(FORBIDDEN).collect();
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len());
        assert_eq!(all.len(), 46);
        assert_eq!(wasi_import_requirement("path_open"), Some(WasiRequirement::Filesystem));
        assert_eq!(wasi_import_requirement("sock_send"), Some(WasiRequirement::Forbidden));
        assert_eq!(wasi_import_requirement("nope"), None);
        // The signature table names exactly the same 46 functions.
        let mut typed: Vec<_> = wasi_functions().collect();
        typed.sort();
        unique.sort();
        assert_eq!(typed, unique.into_iter().copied().collect::<Vec<_>>());
    }

    /// The table of `WASI-11` in the spec and [`wasi_signature`] agree row
    /// for row, in order.
    #[test]
    fn signatures_match_the_spec_table() {
        let spec = include_str!("../../spec/abi.md");
        let start = spec.find("**[WASI-11]**").expect("the spec has WASI-11");
        let rows: Vec<(String, String, String, String)> = spec[start..]
            .lines()
            .skip_while(|line| !line.trim_start().starts_with("| `"))
            .take_while(|line| line.trim_start().starts_with('|'))
            .map(|line| {
                let cells: Vec<_> = line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
                (cells[0].trim_matches('`').to_string(), cells[1].clone(), cells[2].clone(), cells[3].clone())
            })
            .collect();
        let ours: Vec<(String, String, String, String)> = SIGNATURES
            .iter()
            .map(|(name, params, results)| {
                let list = |types: &[WasiValType]| {
                    if types.is_empty() {
                        "—".to_string()
                    } else {
                        types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
                    }
                };
                let since = wasi_since(name).expect("a preview1 function").to_string();
                (name.to_string(), list(params), list(results), since)
            })
            .collect();
        assert_eq!(rows, ours);
    }
}
