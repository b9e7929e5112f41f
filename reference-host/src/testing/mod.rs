//! What the `pabi` command and test harnesses build on, beside the
//! embedding API: a plugin shared with the handlers that call back into it,
//! and, with the `testing` feature, host functions that answer from a
//! host-call table (`pabi run --host-calls`) and a log of the host calls a
//! call made. An application offers [`crate::HostFunction`] closures and
//! shares instances through a [`crate::Pool`] instead.
//!
//! The table functions read `pabi-testkit`'s host-call tables, so only the
//! `testing` feature compiles that crate; [`SharedPlugin`] needs nothing but
//! the host and is always here.

pub use crate::plugin::SharedPlugin;
#[cfg(feature = "testing")]
pub use tables::{table_functions, table_functions_reentering, HostCallLog, Reenter};

#[cfg(feature = "testing")]
mod tables;
