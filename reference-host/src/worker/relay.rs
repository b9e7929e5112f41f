//! The pool's side of a host call its worker relays: the one place where
//! such a call is checked and served, during the load as after it.

use super::link::Link;
use super::lock;
use super::pool::PoolState;
use super::protocol::ToWorker;
use std::sync::atomic::AtomicBool;

use crate::HostCallError;

/// Serves the host call `id` and sends the reply to the worker. The plugin
/// is who this process loaded, whatever the worker claims; the request is
/// held to the host-call cap (`LIM-14`) and the function must be offered
/// to the plugin (`CALL-5`). A reply that cannot be sent means the worker
/// has ended, which its supervisor sees.
///
/// The handler's deadline is the call's, from the time the worker says
/// was left (`CALL-7`). What goes back is held to what the worker reads
/// (`ToWorker::max_body`): a failure message cut to 65,536 bytes as the
/// plugin would read it (`CALL-4`), a reply past the cap cut to the cap
/// and one byte, which the worker still refuses as too long (`LIM-14`).
///
/// `cancel`, when set, cancels the handler ([`crate::CallContext::is_cancelled`]):
/// the worker's call stopped waiting for it.
pub(super) fn answer(pool: &PoolState, link: &Link, call: HostCall<'_>, request: &[u8], cancel: Option<&AtomicBool>) {
    let HostCall { id, name, function, time_left } = call;
    let plugin = lock(&pool.module).name.clone();
    let limits = pool.start.config.limits();
    let (max_request, max_reply) = (limits.max_request, limits.max_reply);
    let reply = if request.len() as u64 > max_request {
        Err(HostCallError::new(format!("a request of {} bytes, past the cap of {max_request}", request.len())))
    } else {
        match pool.host_functions.iter().find(|f| f.name() == name && f.offered_to(&plugin)) {
            Some(handler) => {
                let _serving = crate::host_fn::Serving::enter(pool.group);
                let deadline = time_left.and_then(|left| std::time::Instant::now().checked_add(left));
                handler.serve_until(&plugin, function, request, deadline, max_reply, cancel)
            }
            None => Err(HostCallError::new(format!("no host function `{name}` is offered to `{plugin}`"))),
        }
    };
    let (error, reply) = match reply {
        Ok(mut reply) => {
            reply.truncate(usize::try_from(max_reply.saturating_add(1)).unwrap_or(usize::MAX));
            (None, reply)
        }
        Err(error) => (Some(crate::host_fn::failure_message(&error).to_string()), Vec::new()),
    };
    let _ = link.send_frame(&ToWorker::HostReply { id, error }, &reply);
}

/// A host call as the worker relays it.
pub(super) struct HostCall<'a> {
    pub id: u64,
    pub name: &'a str,
    pub function: &'a str,
    pub time_left: Option<std::time::Duration>,
}
