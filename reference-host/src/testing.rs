//! What the `pabi` command and test harnesses build on, beside the
//! embedding API: host functions that answer from a host-call table
//! (`pabi run --host-calls`), a log of the host calls a call made, and a
//! plugin shared with the handlers that call back into it. An application
//! offers [`crate::HostFunction`] closures and shares instances through a
//! [`crate::Pool`] instead.

pub use crate::host_fn::{table_functions, table_functions_reentering, HostCallLog, Reenter};
pub use crate::plugin::SharedPlugin;
