//! The exit codes of every subcommand, in one place. Each subcommand's
//! `--help` lists the ones it uses, with their meaning for that command.

/// Success: the plugins are valid, the call returned OK, …
pub const OK: u8 = 0;
/// The command ran, and the answer is no: a plugin is invalid or not
/// conformant, a call returned an error status (`PLUGIN_ERROR`), a case
/// failed.
pub const FAILURE: u8 = 1;
/// Usage or I/O error: bad arguments, unreadable files, unwritable output.
pub const USAGE: u8 = 2;
/// Host error in `run` and `pipe`: the plugin did not load, broke a limit,
/// trapped, broke the ABI or returned an undefined status.
pub const HOST_ERROR: u8 = 3;
