//! Host functions: what the embedding application offers to plugins'
//! host calls (`CALL-1` … `CALL-9`).
//!
//! The application registers each one as a closure with
//! [`crate::ConfigBuilder::host_function`]. A plugin reaches it through
//! `pabi.host_call(name, request)`: the host copies the request out of the
//! plugin's memory, runs the closure, keeps the reply, and the plugin copies
//! the reply in with `pabi.reply_read`. No buffer changes owner.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pabi_abi::{is_valid_host_call_name, HostCallMeta};

/// What a host function knows about the call it serves: who calls, and
/// the bounds its answer must keep (the call's deadline and cancel,
/// `CALL-7`; the reply cap, `LIM-14`).
#[derive(Clone, Copy, Debug)]
pub struct CallContext<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) function: &'a str,
    pub(crate) host_call: &'a str,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: Option<&'a AtomicBool>,
    pub(crate) max_reply: u64,
}

impl<'a> CallContext<'a> {
    /// The calling plugin's name, from its metadata.
    pub fn plugin(&self) -> &'a str {
        self.plugin
    }

    /// The plugin function being served (`upper` for `pabi_fn_upper`), or
    /// `pabi_init` while the plugin initialises.
    pub fn function(&self) -> &'a str {
        self.function
    }

    /// The host call's name, such as `kv.get`.
    pub fn host_call(&self) -> &'a str {
        self.host_call
    }

    /// When the plugin's call ends with `TIMEOUT` (`LIM-3`): a handler's
    /// time counts against the call's deadline, and once it has passed
    /// the plugin never reads the reply (`CALL-7`). A handler that may
    /// take long should give up by then; the host cannot stop a closure,
    /// so the call waits for it. [`HostFunction::command`] ends its
    /// command here. `None`: no deadline (a handler run by
    /// [`HostFunction::serve`]).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the embedder cancelled the plugin's call
    /// ([`crate::CancelHandle`]): it ends with `CANCELLED` as soon as the
    /// handler returns, so a handler that waits may stop waiting.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// The reply cap (`LIM-14`): a longer reply is dropped and the plugin
    /// sees `E_LIMIT`. A handler reading an answer of unknown length needs
    /// no more than `max_reply() + 1` bytes of it to know it is too long.
    pub fn max_reply(&self) -> u64 {
        self.max_reply
    }
}

/// What an async host function knows about the call it serves: an owned
/// [`CallContext`], since its future may outlive the borrow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncCallContext {
    plugin: String,
    function: String,
    host_call: String,
    deadline: Option<Instant>,
    max_reply: u64,
}

impl AsyncCallContext {
    /// The calling plugin's name, from its metadata.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin function being served, or `pabi_init`.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The host call's name, such as `kv.get`.
    pub fn host_call(&self) -> &str {
        &self.host_call
    }

    /// When the plugin's call ends with `TIMEOUT`, as
    /// [`CallContext::deadline`].
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The reply cap, as [`CallContext::max_reply`].
    pub fn max_reply(&self) -> u64 {
        self.max_reply
    }
}

/// A host function's failure. Its message reaches the plugin, which sees
/// `E_FAILED` and can read the message as the reply (`CALL-4`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostCallError {
    message: String,
}

impl HostCallError {
    pub fn new(message: impl Into<String>) -> HostCallError {
        HostCallError { message: message.into() }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for HostCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostCallError {}

/// A handler's failure message is cut to this many bytes (`CALL-4`).
pub(crate) const MAX_FAILURE_MESSAGE: usize = 64 << 10;

/// What the plugin reads of a handler's failure: its message, cut to
/// [`MAX_FAILURE_MESSAGE`] bytes at a character boundary (`CALL-4`).
pub(crate) fn failure_message(error: &HostCallError) -> &str {
    let message = error.message();
    let mut cut = message.len().min(MAX_FAILURE_MESSAGE);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    &message[..cut]
}

pub(crate) type Handler = Arc<dyn Fn(&CallContext<'_>, &[u8]) -> Result<Vec<u8>, HostCallError> + Send + Sync>;

thread_local! {
    /// The plugins whose host calls this thread's handlers are serving,
    /// innermost last (`CALL-8`).
    static SERVING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks, while it lives, that this thread runs a handler for the plugin
/// `id`: a call into that plugin from here would wait for itself.
pub(crate) struct Serving;

impl Serving {
    pub fn enter(id: usize) -> Serving {
        SERVING.with(|serving| serving.borrow_mut().push(id));
        Serving
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        SERVING.with(|serving| serving.borrow_mut().pop());
    }
}

/// Whether this thread is inside a handler serving the plugin `id`.
pub(crate) fn is_serving(id: usize) -> bool {
    SERVING.with(|serving| serving.borrow().contains(&id))
}

/// Runs a handler. A panicking handler is the application's bug, not the
/// plugin's: the plugin sees a failure and the host goes on (`CALL-4`).
#[inline]
pub(crate) fn run_handler(
    handler: &Handler,
    context: &CallContext<'_>,
    request: &[u8],
) -> Result<Vec<u8>, HostCallError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(context, request)))
        .unwrap_or_else(|_| Err(HostCallError::new(format!("the handler of `{}` panicked", context.host_call))))
}

/// A function the application offers to plugins under a host-call name,
/// like Extism's host functions: a closure from the request bytes to the
/// reply bytes or a failure.
///
/// ```
/// use pabi_host::{HostCallError, HostFunction};
///
/// let get = HostFunction::new("kv.get", |_cx, key| match key {
///     b"apple" => Ok(b"red".to_vec()),
///     _ => Err(HostCallError::new("no such key")),
/// })
/// .only_for(["enrich"]);
/// assert_eq!(get.name(), "kv.get");
/// ```
#[derive(Clone)]
pub struct HostFunction {
    name: String,
    handler: Handler,
    only_for: Option<Vec<String>>,
}

impl HostFunction {
    /// A host function offered to every plugin that declares `name`. A
    /// name outside `CALL-2`'s grammar, or in the reserved `pabi`
    /// namespace, makes [`crate::Host::new`] fail: registering cannot, so
    /// it needs no `?`.
    pub fn new<F>(name: impl Into<String>, handler: F) -> HostFunction
    where
        F: Fn(&CallContext<'_>, &[u8]) -> Result<Vec<u8>, HostCallError> + Send + Sync + 'static,
    {
        HostFunction { name: name.into(), handler: Arc::new(handler), only_for: None }
    }

    /// Why `name` cannot be a host function, if it cannot (`CALL-2`).
    pub(crate) fn name_fault(&self) -> Option<&'static str> {
        if !is_valid_host_call_name(&self.name) {
            Some("a name is two to four dot-separated parts of [a-z][a-z0-9_]{0,31}")
        } else if self.name.starts_with("pabi.") {
            Some("the `pabi` namespace is reserved")
        } else {
            None
        }
    }

    /// A host function whose handler is async, for applications on tokio:
    /// the plugin waits in `host_call` while the future runs to completion
    /// on the runtime that was current when the function was made (or the
    /// one current at the call). Its time counts against the call's
    /// deadline like any handler's (`CALL-7`).
    ///
    /// Call such a plugin from [`crate::Pool::call_async`] or from a thread
    /// outside the runtime: a call made on one of the runtime's own worker
    /// threads cannot wait for a future there, and the plugin sees
    /// `E_FAILED`.
    pub fn new_async<F, Fut>(name: impl Into<String>, handler: F) -> HostFunction
    where
        F: Fn(AsyncCallContext, Vec<u8>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Vec<u8>, HostCallError>> + Send + 'static,
    {
        let made_on = tokio::runtime::Handle::try_current().ok();
        HostFunction::new(name, move |cx, request| {
            let context = AsyncCallContext {
                plugin: cx.plugin.to_string(),
                function: cx.function.to_string(),
                host_call: cx.host_call.to_string(),
                deadline: cx.deadline,
                max_reply: cx.max_reply,
            };
            let Some(runtime) = tokio::runtime::Handle::try_current().ok().or_else(|| made_on.clone()) else {
                return Err(HostCallError::new("an async host function needs a tokio runtime"));
            };
            let future = handler(context, request.to_vec());
            // `block_on` refuses to run on a worker thread of the runtime
            // (it would stall the executor); that refusal is a panic, which
            // the import turns into `E_FAILED`.
            runtime.block_on(future)
        })
    }

    /// Offers the function only to the plugins of these names (their
    /// metadata `name`). Default: every plugin that declares it.
    pub fn only_for(mut self, plugins: impl IntoIterator<Item = impl Into<String>>) -> HostFunction {
        self.only_for = Some(plugins.into_iter().map(Into::into).collect());
        self
    }

    /// The same function with its handler wrapped by `wrap`: how the
    /// `testing` module records the calls a function serves.
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn wrap_handler(self, wrap: impl FnOnce(Handler) -> Handler) -> HostFunction {
        HostFunction { handler: wrap(self.handler), ..self }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the function is offered to the plugin called `plugin`.
    pub fn offered_to(&self, plugin: &str) -> bool {
        self.only_for.as_ref().is_none_or(|names| names.iter().any(|n| n == plugin))
    }

    /// The plugin names of [`HostFunction::only_for`], if any.
    pub fn only_for_plugins(&self) -> Option<&[String]> {
        self.only_for.as_deref()
    }

    /// Runs the handler for a host call made elsewhere, as a host would:
    /// for hosts that relay host calls from another process (a worker of
    /// `pabi serve`'s process isolation). A panicking handler is a
    /// failure, as in a host (`CALL-4`). The handler sees no deadline and
    /// the default reply cap; [`HostFunction::serve_until`] gives both.
    pub fn serve(&self, plugin: &str, function: &str, request: &[u8]) -> Result<Vec<u8>, HostCallError> {
        self.serve_until(plugin, function, request, None, pabi_abi::Limits::default().max_reply, None)
    }

    /// [`HostFunction::serve`] for a call that ends at `deadline`, whose
    /// replies are capped at `max_reply` bytes, and that is cancelled once
    /// `cancel` is set: what the handler reads as
    /// [`CallContext::deadline`], [`CallContext::max_reply`] and
    /// [`CallContext::is_cancelled`].
    pub fn serve_until(
        &self,
        plugin: &str,
        function: &str,
        request: &[u8],
        deadline: Option<Instant>,
        max_reply: u64,
        cancel: Option<&AtomicBool>,
    ) -> Result<Vec<u8>, HostCallError> {
        let context = CallContext { plugin, function, host_call: &self.name, deadline, cancel, max_reply };
        run_handler(&self.handler, &context, request)
    }
}

impl fmt::Debug for HostFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostFunction").field("name", &self.name).field("only_for", &self.only_for).finish()
    }
}

/// The host calls of one plugin: each declared name with its handler, or
/// `None` for an optional call the host does not offer (`CALL-5`).
#[derive(Clone, Default)]
pub(crate) struct PluginHostCalls {
    pub calls: BTreeMap<String, Option<Handler>>,
}

impl PluginHostCalls {
    /// Resolves a plugin's declarations against what the application
    /// offers. Returns the required calls that are not offered.
    pub fn resolve(
        plugin: &str,
        declared: &[HostCallMeta],
        offered: &[HostFunction],
    ) -> Result<PluginHostCalls, Vec<String>> {
        let mut calls = BTreeMap::new();
        let mut missing = Vec::new();
        for declaration in declared {
            let handler = offered
                .iter()
                .rev() // the last registration of a name wins
                .find(|f| f.name == declaration.name && f.offered_to(plugin))
                .map(|f| f.handler.clone());
            if handler.is_none() && declaration.required {
                missing.push(declaration.name.clone());
            }
            calls.insert(declaration.name.clone(), handler);
        }
        if missing.is_empty() {
            Ok(PluginHostCalls { calls })
        } else {
            Err(missing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(name: &str) -> HostFunction {
        HostFunction::new(name, |_, request| Ok(request.to_vec()))
    }

    fn declare(name: &str, required: bool) -> HostCallMeta {
        HostCallMeta::new(name, required)
    }

    #[test]
    fn declared_offered_and_allowed_intersect() {
        let offered = [echo("kv.get"), echo("kv.note").only_for(["other"])];
        let declared = [declare("kv.get", true), declare("kv.note", false)];
        let calls = PluginHostCalls::resolve("enrich", &declared, &offered).unwrap();
        assert!(calls.calls["kv.get"].is_some());
        assert!(calls.calls["kv.note"].is_none(), "offered to another plugin only");
        let required_note = [declare("kv.get", true), declare("kv.note", true), declare("kv.put", true)];
        assert_eq!(
            PluginHostCalls::resolve("enrich", &required_note, &offered).err(),
            Some(vec!["kv.note".to_string(), "kv.put".to_string()])
        );
        assert!(PluginHostCalls::resolve("other", &required_note[..2], &offered).is_ok());
    }
}
