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
    }
}
