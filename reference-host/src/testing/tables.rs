//! The application played from a host-call table: host functions that
//! answer by its rules and log what they were asked. They read
//! `pabi-testkit`'s formats, so they exist with the `testing` feature.

use std::fmt;
use std::sync::Arc;

use pabi_abi::HostErrorKind;
use pabi_testkit::host_calls::{Answer, HostCallRecord, HostCallTable, REENTRY_REFUSED};

use crate::host_fn::{HostCallError, HostFunction};

/// How a table's `reenter` answer calls the plugin back: a function of the
/// plugin, by name, with the request as its input.
pub type Reenter = Arc<dyn Fn(&str, &[u8]) -> Result<Vec<u8>, crate::Error> + Send + Sync>;

/// The host calls an application received, in order: what a plugin asked
/// of its host. Shared by the handlers that record into it and the caller
/// that reads it after each call.
#[derive(Clone)]
pub struct HostCallLog(Option<Arc<std::sync::Mutex<Vec<HostCallRecord>>>>);

impl HostCallLog {
    /// A log that keeps nothing: for a server, whose handlers run for as
    /// long as it does and whose record nobody takes.
    pub fn off() -> HostCallLog {
        HostCallLog(None)
    }

    pub fn record(&self, name: &str, request: &[u8]) {
        if let Some(log) = &self.0 {
            log.lock().unwrap_or_else(|p| p.into_inner()).push(HostCallRecord::new(name, request));
        }
    }

    /// `function`, recording each call it serves in this log before its
    /// handler runs: the transcript `pabi run` prints.
    pub fn recording(&self, function: HostFunction) -> HostFunction {
        let log = self.clone();
        function.wrap_handler(move |inner| {
            Arc::new(move |cx: &crate::CallContext<'_>, request: &[u8]| {
                log.record(cx.host_call(), request);
                inner(cx, request)
            })
        })
    }

    /// The calls recorded since the last take.
    pub fn take(&self) -> Vec<HostCallRecord> {
        match &self.0 {
            Some(log) => std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner())),
            None => Vec::new(),
        }
    }
}

/// A log that keeps every call.
impl Default for HostCallLog {
    fn default() -> HostCallLog {
        HostCallLog(Some(Arc::default()))
    }
}

impl fmt::Debug for HostCallLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("HostCallLog").finish_non_exhaustive()
    }
}

/// Host functions that play the application from a host-call table
/// ([`pabi_testkit::host_calls`]): one per name the table lists, answering
/// by its rules (sleeping a rule's delay first) and recording every call
/// in `log`. `pabi run --host-calls`, `pabi conform` and tests use them to
/// run a plugin that makes host calls without an application.
pub fn table_functions(table: &HostCallTable, log: &HostCallLog) -> Vec<HostFunction> {
    table_functions_reentering(table, log, None)
}

/// [`table_functions`], with `reenter` serving the table's `reenter`
/// answers: a re-entrant call the host refuses (`CALL-8`) fails the host
/// call with [`REENTRY_REFUSED`].
pub fn table_functions_reentering(
    table: &HostCallTable,
    log: &HostCallLog,
    reenter: Option<Reenter>,
) -> Vec<HostFunction> {
    let table = Arc::new(table.clone());
    table
        .names()
        .map(|name| {
            let (table, log, reenter) = (table.clone(), log.clone(), reenter.clone());
            HostFunction::new(name, move |cx, request| {
                log.record(cx.host_call(), request);
                let (answer, delay) = table
                    .answer(cx.host_call(), request)
                    .unwrap_or((Answer::Fail("not in the table".into()), std::time::Duration::ZERO));
                std::thread::sleep(delay);
                match answer {
                    Answer::Reply(reply) => Ok(reply),
                    Answer::Fail(message) => Err(HostCallError::new(message)),
                    Answer::Reenter(function) => match reenter.as_ref().map(|call| call(&function, request)) {
                        Some(Ok(output)) => Ok(output),
                        Some(Err(e)) if e.kind() == Some(HostErrorKind::HostFailure) => {
                            Err(HostCallError::new(REENTRY_REFUSED))
                        }
                        Some(Err(e)) => Err(HostCallError::new(e.to_string())),
                        None => Err(HostCallError::new("this application cannot call the plugin back")),
                    },
                }
            })
        })
        .collect()
}
