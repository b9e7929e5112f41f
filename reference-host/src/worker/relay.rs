//! The pool's side of a host call its worker relays: the one place where
//! such a call is checked and served, during the load as after it.

use super::link::Link;
use super::lock;
use super::pool::PoolState;
use super::protocol::ToWorker;

/// Serves the host call `id` and sends the reply to the worker. The plugin
/// is who this process loaded, whatever the worker claims; the request is
/// held to the host-call cap (`LIM-14`) and the function must be offered
/// to the plugin (`CALL-5`). A reply that cannot be sent means the worker
/// has ended, which its supervisor sees.
pub(super) fn answer(pool: &PoolState, link: &Link, id: u64, name: &str, function: &str, request: &[u8]) {
    let plugin = lock(&pool.module).name.clone();
    let max_request = pool.start.config.limits().max_request;
    let reply = if request.len() as u64 > max_request {
        Err(format!("a request of {} bytes, past the cap of {max_request}", request.len()))
    } else {
        match pool.host_functions.iter().find(|f| f.name() == name && f.offered_to(&plugin)) {
            Some(handler) => {
                let _serving = crate::host_fn::Serving::enter(pool.group);
                handler.serve(&plugin, function, request).map_err(|e| e.message().to_string())
            }
            None => Err(format!("no host function `{name}` is offered to `{plugin}`")),
        }
    };
    let (error, reply) = match reply {
        Ok(reply) => (None, reply),
        Err(error) => (Some(error), Vec::new()),
    };
    let _ = link.send_frame(&ToWorker::HostReply { id, error }, &reply);
}
