//! A loaded plugin: its live instance, calls, re-instantiation after a
//! failure, crash-loop protection, cancellation, state moves and hot reload.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use pabi_abi::{Clause, Metadata, Status};
use wasmtime::{Store, TypedFunc};

use crate::classify::{classify, instantiation_error};
use crate::engine::{HostCore, Prepared};
use crate::error::Unavailable;
use crate::log::{LogDrops, LogHandle, LogSink, PluginLog};
use crate::store::{Deadline, Limiter, Phase, StoreData};
use crate::typed::{Input, Output, TypedCallError};
use crate::{wasi, CancelHandle, Config, Error};

/// A plugin loaded by a [`crate::Host`]: one instance at a time, one call at
/// a time (`HOST-9`). After a trap or an aborted call the instance is
/// discarded and a fresh one, initialised with the same configuration,
/// serves the next call (`LIFE-5`, `LIFE-6`). To share instances between
/// threads, see [Which type do I use?](crate#which-type-do-i-use).
pub struct Plugin {
    shared: Arc<HostCore>,
    prepared: Arc<Prepared>,
    config: Vec<u8>,
    instance: Option<Instance>,
    failures: VecDeque<Instant>,
    /// When the plugin was disabled by a crash loop (`LIFE-7`), until
    /// [`Config::crash_reset`] has passed.
    disabled: Option<Instant>,
    cancel: Arc<AtomicBool>,
    log_drops: Arc<LogDrops>,
    /// The log rate and drop counts this plugin's instances share in its
    /// host.
    plugin_log: Arc<PluginLog>,
    /// Who a host call's handler serves, for re-entry checks (`CALL-8`):
    /// this plugin, or the pool it belongs to.
    group: usize,
    /// The exported globals whose bits outlive instances (`testing`).
    #[cfg(feature = "testing")]
    kept_bits: Option<KeptBits>,
}

/// A fresh re-entry group.
pub(crate) fn new_group() -> usize {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A plugin shared between owners: an application's request handlers and
/// its host functions, say. Calls wait for each other, except a call from
/// a host function into the plugin whose host call it serves, which would
/// wait for itself: that one is refused with [`Unavailable::Reentrant`]
/// (`HOST_FAILURE`, `CALL-8`).
#[derive(Clone)]
pub struct SharedPlugin {
    /// The plugin's re-entry group.
    group: usize,
    inner: Arc<std::sync::Mutex<Plugin>>,
}

impl SharedPlugin {
    pub fn new(plugin: Plugin) -> SharedPlugin {
        SharedPlugin { group: plugin.group(), inner: Arc::new(std::sync::Mutex::new(plugin)) }
    }

    /// Runs `f` on the plugin once no other caller uses it.
    pub fn with<R>(&self, f: impl FnOnce(&mut Plugin) -> Result<R, Error>) -> Result<R, Error> {
        if crate::host_fn::is_serving(self.group) {
            return Err(Error::HostUnavailable(Unavailable::Reentrant));
        }
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// [`Plugin::call`] on the shared plugin.
    pub fn call(&self, name: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        self.with(|plugin| plugin.call(name, input))
    }

    /// [`Plugin::call_into`] on the shared plugin.
    pub fn call_into(&self, name: &str, input: &[u8], output: &mut Vec<u8>) -> Result<(), Error> {
        self.with(|plugin| plugin.call_into(name, input, output))
    }
}

impl std::fmt::Debug for SharedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPlugin").finish_non_exhaustive()
    }
}

struct Instance {
    store: Store<StoreData>,
    instance: wasmtime::Instance,
    /// `pabi_fn_*` exports by function name, looked up once. A short list
    /// searched in order beats hashing the name on every call.
    functions: Vec<(String, TypedFunc<i32, i32>)>,
}

impl Plugin {
    pub(crate) fn start(shared: Arc<HostCore>, prepared: Arc<Prepared>, config: Vec<u8>) -> Result<Plugin, Error> {
        let cancel = Arc::new(AtomicBool::new(false));
        let log_drops = Arc::new(LogDrops::default());
        let plugin_log = shared.plugin_log(&prepared.metadata.name);
        let group = new_group();
        let logs = (&log_drops, &plugin_log);
        let instance = instantiate(&shared, &prepared, &config, &cancel, logs, group)?;
        Ok(Plugin {
            group,
            shared,
            prepared,
            config,
            instance: Some(instance),
            failures: VecDeque::new(),
            disabled: None,
            cancel,
            log_drops,
            plugin_log,
            #[cfg(feature = "testing")]
            kept_bits: None,
        })
    }

    /// The re-entry group this plugin belongs to (`CALL-8`).
    fn group(&self) -> usize {
        self.group
    }

    /// Puts the plugin in a pool's re-entry group: a handler serving any
    /// instance of the pool cannot call into the pool (`CALL-8`).
    pub(crate) fn join_group(&mut self, group: usize) {
        self.group = group;
        if let Some(live) = &mut self.instance {
            live.store.data_mut().group = group;
        }
    }

    /// How many `log` records the plugin's calls have had dropped past the
    /// log cap of a call (`LIM-11`), since it was loaded or last reloaded.
    pub fn log_records_dropped(&self) -> u64 {
        self.log_drops.records.load(Ordering::Relaxed)
    }

    /// How many bytes of log text, `log` records and standard output and
    /// error together, were dropped past the log cap of a call (`LIM-11`),
    /// since the plugin was loaded or last reloaded.
    pub fn log_bytes_dropped(&self) -> u64 {
        self.log_drops.bytes.load(Ordering::Relaxed)
    }

    /// The log rate and drop counts shared by the plugin's instances.
    pub(crate) fn plugin_log(&self) -> &Arc<PluginLog> {
        &self.plugin_log
    }

    /// The configuration of the host that loaded the plugin.
    pub fn host_config(&self) -> &Config {
        &self.shared.config
    }

    /// The flag this plugin's calls watch: what its cancel handles set.
    pub(crate) fn cancel_flag(&self) -> &Arc<AtomicBool> {
        &self.cancel
    }

    /// A handle that cancels this plugin's calls from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle::on_flag(self.cancel.clone())
    }

    /// The plugin's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.prepared.metadata
    }

    /// The functions the plugin exports, without the `pabi_fn_` prefix.
    pub fn functions(&self) -> &[String] {
        &self.prepared.functions
    }

    /// Whether the plugin can move its state (`pabi_state_save`/`_load`).
    pub fn has_state(&self) -> bool {
        self.prepared.has_state
    }

    /// Whether a call can block in host code: a host call's handler, or a
    /// real sleep (the clock capability).
    pub(crate) fn can_block(&self) -> bool {
        can_block(&self.prepared)
    }

    /// Calls `pabi_fn_<name>` with `input` and returns its output.
    pub fn call(&mut self, name: &str, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut output = Vec::new();
        self.call_into(name, input, &mut output)?;
        Ok(output)
    }

    /// [`Plugin::call`] with typed input and output: bytes, UTF-8 text or
    /// [`Json`](crate::Json). See [`crate::typed`].
    pub fn call_as<I: Input + ?Sized, O: Output>(&mut self, name: &str, input: &I) -> Result<O, TypedCallError> {
        let output = self.call(name, &input.to_input()?)?;
        O::from_output(output)
    }

    /// [`Plugin::call`] into the caller's buffer: `output` is cleared, then
    /// holds the output when the call returns OK and nothing otherwise
    /// (`FN-3`). A buffer reused from call to call keeps its capacity, so a
    /// steady stream of calls allocates nothing per call.
    ///
    /// ```
    /// # fn main() -> anyhow::Result<()> {
    /// # let wasm = wat::parse_str(r#"(module
    /// #   (import "pabi" "input_read" (func $read (param i32 i32 i32) (result i32)))
    /// #   (import "pabi" "output_write" (func $write (param i32 i32) (result i32)))
    /// #   (memory (export "memory") 1)
    /// #   (func (export "pabi_fn_echo") (param $len i32) (result i32)
    /// #     (drop (call $read (i32.const 0) (i32.const 0) (local.get $len)))
    /// #     (drop (call $write (i32.const 0) (local.get $len)))
    /// #     (i32.const 0))
    /// #   (@custom "pabi" "{\"abi\":\"1.0\",\"name\":\"echo\",\"version\":\"1.0.0\",\"profile\":\"core\",\"functions\":[{\"name\":\"echo\"}],\"capabilities\":[]}"))"#)?;
    /// let host = pabi_host::Host::new(pabi_host::Config::default())?;
    /// let mut plugin = host.load(&wasm)?;
    /// let mut output = Vec::with_capacity(4096);
    /// for record in [&b"one"[..], b"two"] {
    ///     plugin.call_into("echo", record, &mut output)?;
    ///     assert_eq!(output, record);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn call_into(&mut self, name: &str, input: &[u8], output: &mut Vec<u8>) -> Result<(), Error> {
        output.clear();
        // One scan for the name: every instance lists its functions in the
        // order of `prepared.functions`.
        let Some(index) = self.prepared.functions.iter().position(|f| f == name) else {
            return Err(Error::UnknownFunction { name: name.to_string(), available: self.prepared.functions.clone() });
        };
        let len = input_len(input)?;
        // The function is called through a borrow: cloning a `TypedFunc`
        // clones its type, which costs more than the rest of a small call.
        let lookup = |live: &mut Instance| (index < live.functions.len()).then_some(index);
        self.run(Phase::Call, lookup, input, output, |live, index| {
            live.store.data_mut().serving = index;
            live.functions[index].1.call(&mut live.store, len)
        })
    }

    /// Runs `pabi_state_save` and returns the state bytes (`LIFE-9`).
    pub fn save_state(&mut self) -> Result<Vec<u8>, Error> {
        self.require_state()?;
        let mut state = Vec::new();
        self.run(Phase::StateSave, export("pabi_state_save"), &[], &mut state, |live, f: TypedFunc<(), i32>| {
            f.call(&mut live.store, ())
        })?;
        Ok(state)
    }

    /// Runs `pabi_state_load` with `state` (`LIFE-9`).
    pub fn load_state(&mut self, state: &[u8]) -> Result<(), Error> {
        self.require_state()?;
        let len = input_len(state)?;
        let result = self.run(
            Phase::StateLoad,
            export("pabi_state_load"),
            state,
            &mut Vec::new(),
            |live, f: TypedFunc<i32, i32>| f.call(&mut live.store, len),
        );
        if result.is_err() {
            // The plugin may have adopted part of the state: the next call
            // runs on a fresh instance without it (`LIFE-11`). It returned,
            // so this is not a failure for the crash-loop count.
            self.instance = None;
        }
        result
    }

    /// Replaces the plugin with a new version (`LIFE-10`): validates and
    /// initialises it with the same configuration (through the host's cache
    /// of prepared plugins), moves the state when both versions can, then
    /// swaps. On any failure the old version keeps serving and the error is
    /// returned. A cancel handle taken before keeps working after.
    pub fn reload(&mut self, wasm: &[u8]) -> Result<(), Error> {
        let prepared = self.shared.prepared(wasm)?;
        let mut next = Plugin::start(self.shared.clone(), prepared, self.config.clone())?;
        next.cancel = self.cancel.clone();
        next.join_group(self.group);
        if let Some(live) = &mut next.instance {
            live.store.data_mut().deadline.cancel = self.cancel.clone();
        }
        if self.prepared.has_state && next.prepared.has_state {
            let state = self.save_state()?;
            next.load_state(&state)?;
        }
        let mut old = std::mem::replace(self, next);
        old.shutdown_instance();
        tracing::info!(plugin = %self.prepared.metadata.name, version = %self.prepared.metadata.version, "plugin reloaded");
        Ok(())
    }

    /// Runs `pabi_shutdown` and drops the instance (`LIFE-4`). Dropping a
    /// plugin does the same, ignoring the result.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.shutdown_result()
    }

    fn shutdown_result(&mut self) -> Result<(), Error> {
        if self.instance.is_none() || !self.prepared.has_shutdown {
            self.instance = None;
            return Ok(());
        }
        let result =
            self.run(Phase::Shutdown, export("pabi_shutdown"), &[], &mut Vec::new(), |live, f: TypedFunc<(), i32>| {
                f.call(&mut live.store, ())
            });
        self.instance = None;
        result
    }

    fn shutdown_instance(&mut self) {
        if let Err(e) = self.shutdown_result() {
            tracing::warn!(plugin = %self.prepared.metadata.name, "pabi_shutdown failed: {e}");
        }
    }

    /// Bytes of linear memory of the live instance (0 when there is none).
    pub fn memory_bytes(&mut self) -> u64 {
        match &mut self.instance {
            Some(live) => live.store.data().memory.map_or(0, |m| m.data_size(&live.store) as u64),
            None => 0,
        }
    }

    fn require_state(&self) -> Result<(), Error> {
        if self.prepared.has_state {
            Ok(())
        } else {
            Err(Error::UnknownFunction { name: "pabi_state_save".into(), available: self.prepared.functions.clone() })
        }
    }

    /// Runs one export on the live instance (re-creating it first if the
    /// last one died) with `output` (empty) as its output buffer, which
    /// keeps the output only when the status is OK (`FN-3`).
    fn run<F>(
        &mut self,
        phase: Phase,
        lookup: impl FnOnce(&mut Instance) -> Option<F>,
        input: &[u8],
        output: &mut Vec<u8>,
        call: impl FnOnce(&mut Instance, F) -> wasmtime::Result<i32>,
    ) -> Result<(), Error> {
        if let Some(since) = self.disabled {
            if since.elapsed() < self.shared.config.crash_reset() {
                return Err(self.crash_loop());
            }
            // The reset timer ran out (`LIFE-7`): a fresh instance is tried,
            // with the failures forgotten.
            self.disabled = None;
            self.failures.clear();
            tracing::info!(plugin = %self.prepared.metadata.name, "crash-loop reset: trying the plugin again");
        }
        if self.instance.is_none() {
            tracing::warn!(plugin = %self.prepared.metadata.name, "re-instantiating after a failure");
            let logs = (&self.log_drops, &self.plugin_log);
            match instantiate(&self.shared, &self.prepared, &self.config, &self.cancel, logs, self.group) {
                Ok(instance) => self.instance = Some(instance),
                Err(e) => return Err(self.record_failure(e)),
            }
        }
        let live = self.instance.as_mut().expect("instantiated above");
        let func = lookup(live).ok_or_else(|| Error::UnknownFunction {
            name: format!("{phase:?}"),
            available: self.prepared.functions.clone(),
        })?;
        let data = live.store.data_mut();
        data.phase = phase;
        // Reuse the input buffer's capacity from call to call.
        data.input.clear();
        data.input.extend_from_slice(input);
        // The output goes straight into the caller's buffer.
        std::mem::swap(&mut data.output, output);
        data.message.clear();
        data.reply.clear();
        data.limiter.refused = false;
        arm(&mut live.store, &self.shared);
        let data = live.store.data();
        if let Err(why) = data.deadline.take_turn(data.group) {
            // A call cancelled or timed out leaves its instance dead
            // (`ERR-6`), even one that never got its turn; but the plugin
            // is not at fault, so no crash-loop count (`LIFE-7`).
            std::mem::swap(&mut live.store.data_mut().output, output);
            output.clear();
            self.instance = None;
            return Err(no_turn(why, &self.shared.config));
        }
        let result = call(live, func);
        let live = self.instance.as_mut().expect("the call does not drop the instance");
        live.store.data().deadline.give_turn();
        std::mem::swap(&mut live.store.data_mut().output, output);
        end_call(&mut live.store);
        match result {
            Ok(status) => {
                // The instance survived: failures are counted only while
                // they are consecutive (`LIFE-7`).
                self.failures.clear();
                let data = live.store.data_mut();
                data.input.clear();
                if data.input.capacity() > KEPT_INPUT_CAPACITY {
                    data.input = Vec::new();
                }
                // Only a failure's message leaves the store: moving an empty
                // one out on every call cost more than the rest of `run`.
                status_result(status, (), &mut data.message).inspect_err(|_| output.clear())
            }
            Err(e) => {
                output.clear();
                let error = classify(e, &live.store, &self.shared.config);
                // The bits the failed call set are read before its
                // instance goes.
                #[cfg(feature = "testing")]
                if let Some(kept) = &mut self.kept_bits {
                    kept.collect(live);
                }
                self.instance = None;
                Err(self.record_failure(error))
            }
        }
    }

    /// Counts a failure that killed the instance; past the crash limit the
    /// plugin is disabled (`LIFE-7`).
    fn record_failure(&mut self, error: Error) -> Error {
        // A cancelled call was the caller's decision, not a fault of the
        // plugin: it does not count (`CANCELLED` in `ERR-6`).
        if error == Error::Cancelled {
            return error;
        }
        let config = &self.shared.config;
        let now = Instant::now();
        self.failures.push_back(now);
        while self.failures.front().is_some_and(|t| now.duration_since(*t) > config.crash_window()) {
            self.failures.pop_front();
        }
        tracing::warn!(plugin = %self.prepared.metadata.name, "instance discarded: {error}");
        if self.failures.len() as u32 >= config.crash_limit() {
            self.disabled = Some(now);
            tracing::error!(
                plugin = %self.prepared.metadata.name,
                "disabled after {} failures, for {:?} (LIFE-7)",
                self.failures.len(),
                config.crash_reset()
            );
        }
        error
    }

    fn crash_loop(&self) -> Error {
        let config = &self.shared.config;
        Error::CrashLoop { failures: config.crash_limit(), window: config.crash_window() }
    }
}

/// Bits of exported mutable `i64` globals, OR-ed over calls and instances:
/// what coverage counters of an instrumented copy of a plugin need.
#[cfg(feature = "testing")]
#[derive(Debug)]
struct KeptBits {
    names: Vec<String>,
    bits: Vec<u64>,
}

#[cfg(feature = "testing")]
impl KeptBits {
    /// ORs the instance's globals into the kept bits and zeroes them.
    fn collect(&mut self, live: &mut Instance) {
        for (name, kept) in self.names.iter().zip(&mut self.bits) {
            let Some(global) = live.instance.get_global(&mut live.store, name) else { continue };
            if let Some(value) = global.get(&mut live.store).i64().filter(|v| *v != 0) {
                *kept |= value as u64;
                // A global of the wrong type was left out of `names`.
                let _ = global.set(&mut live.store, wasmtime::Val::I64(0));
            }
        }
    }
}

/// Test tooling: reading an instrumented plugin's counters.
#[cfg(feature = "testing")]
impl Plugin {
    /// Starts keeping the bits of the plugin's exported mutable `i64`
    /// globals whose names start with `prefix` (an instrumented copy's
    /// coverage bitsets): [`Plugin::take_global_bits`] returns them OR-ed
    /// since the last take, including those set by a call that trapped,
    /// whose instance is read before it is dropped. Bits set while a
    /// fresh instance ran `pabi_init` after a failure are kept only if
    /// `pabi_init` returns. Returns the globals' names, in the order of
    /// the bits.
    pub fn keep_global_bits(&mut self, prefix: &str) -> Vec<String> {
        let names: Vec<String> = self
            .prepared
            .pre
            .module()
            .exports()
            .filter(|export| {
                export.name().starts_with(prefix)
                    && matches!(export.ty(), wasmtime::ExternType::Global(g)
                        if g.content().is_i64() && g.mutability() == wasmtime::Mutability::Var)
            })
            .map(|export| export.name().to_string())
            .collect();
        self.kept_bits = Some(KeptBits { bits: vec![0; names.len()], names: names.clone() });
        names
    }

    /// The kept bits since the last take (all zero before
    /// [`Plugin::keep_global_bits`]), in the order of its names; the
    /// globals start again from zero.
    pub fn take_global_bits(&mut self) -> Vec<u64> {
        let Some(kept) = &mut self.kept_bits else { return Vec::new() };
        if let Some(live) = &mut self.instance {
            kept.collect(live);
        }
        std::mem::replace(&mut kept.bits, vec![0; kept.names.len()])
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.prepared.metadata.name)
            .field("functions", &self.prepared.functions)
            .field("live", &self.instance.is_some())
            .field("disabled", &self.disabled.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.shutdown_instance();
    }
}

/// Input buffers larger than this are freed after the call.
const KEPT_INPUT_CAPACITY: usize = 16 << 20;

/// Looks up a lifecycle export of the live instance.
fn export<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    name: &'static str,
) -> impl FnOnce(&mut Instance) -> Option<TypedFunc<P, R>> {
    move |live| live.instance.get_typed_func::<P, R>(&mut live.store, name).ok()
}

fn input_len(input: &[u8]) -> Result<i32, Error> {
    // The length reaches the plugin as an `i32` (`LIM-13`).
    i32::try_from(input.len())
        .map_err(|_| Error::InputLimit { len: Some(input.len() as u64), limit: pabi_abi::MAX_INPUT_LEN })
}

/// Maps a returned status to the call's result (`ERR-1` … `ERR-4`): OK
/// keeps the output; any other status discards it (`FN-3`).
fn status_result<T>(status: i32, output: T, message: &mut Vec<u8>) -> Result<T, Error> {
    match Status::from_code(status) {
        Some(Status::Ok) => Ok(output),
        Some(_) => Err(Error::PluginError { status, message: std::mem::take(message) }),
        None => Err(Error::UnknownStatus { status }),
    }
}

/// A call that could not get its turn at the CPU gate, as the error of the
/// call: cancelled, or past its deadline while it waited.
/// Whether calls of `prepared` can block in host code (`LIM-3`,
/// `CALL-7`): a host call's handler, or a real sleep.
fn can_block(prepared: &Prepared) -> bool {
    prepared.grants.as_ref().is_some_and(|g| g.clock) || !prepared.host_calls.calls.is_empty()
}

fn no_turn(why: crate::cpu_gate::NoTurn, config: &Config) -> Error {
    match why {
        crate::cpu_gate::NoTurn::Cancelled => Error::Cancelled,
        crate::cpu_gate::NoTurn::DeadlinePassed => Error::Timeout { timeout: config.limits().timeout },
    }
}

/// Waits for the call's turn at the CPU gate, if the host has one.
fn take_turn(store: &Store<StoreData>, config: &Config) -> Result<(), Error> {
    let data = store.data();
    data.deadline.take_turn(data.group).map_err(|why| no_turn(why, config))
}

/// Arms the deadline, and the fuel when on, before a call (`LIM-3`, `LIM-4`).
fn arm(store: &mut Store<StoreData>, shared: &HostCore) {
    let first_look = store.data_mut().deadline.arm();
    store.set_epoch_deadline(first_look);
    // A host derived without a fuel limit from one that counts fuel still
    // has an engine that counts it: its calls get all there is.
    let fuel = shared.config.limits().fuel.or(shared.counts_fuel().then_some(u64::MAX));
    if let Some(fuel) = fuel {
        store.set_fuel(fuel).expect("a host sets a fuel limit only when its engine counts fuel");
    }
}

/// Ends a call's log: partial stdio lines out, drops reported, a fresh
/// budget for the next call (`LIM-11`).
fn end_call(store: &mut Store<StoreData>) {
    store.data_mut().with_log(LogSink::end_call);
}

/// A fresh instance: `_initialize` once, then `pabi_init(config)` (`LIFE-1`, `LIFE-2`).
fn instantiate(
    shared: &HostCore,
    prepared: &Prepared,
    config: &[u8],
    cancel: &Arc<AtomicBool>,
    (log_drops, plugin_log): (&Arc<LogDrops>, &Arc<PluginLog>),
    group: usize,
) -> Result<Instance, Error> {
    let limits = shared.config.limits();
    let sink = LogSink::new(prepared.metadata.name.clone(), limits.max_log, log_drops.clone(), plugin_log.clone());
    let (wasi, clock, random, log) = match &prepared.grants {
        Some(grants) => {
            let log = Arc::new(std::sync::Mutex::new(sink));
            let (ctx, clock) = wasi::context(grants, &log)?;
            (Some(ctx), clock, Some(wasi::random(grants)), LogHandle::Shared(log))
        }
        None => (None, None, None, LogHandle::Owned(sink)),
    };
    let data = StoreData {
        memory: None,
        phase: Phase::Initialize,
        input: Vec::new(),
        output: Vec::new(),
        message: Vec::new(),
        max_output: limits.max_output,
        max_message: limits.max_error_message,
        limiter: Limiter {
            max_memory: limits.max_memory,
            max_table_elements: limits.max_table_elements,
            refused: false,
        },
        // Host code that can block (a real sleep, a host call's handler)
        // needs the wall-clock end of the call (`LIM-3`, `CALL-7`).
        deadline: Deadline::new(limits.timeout, cancel.clone(), can_block(prepared), shared.config.cpu_gate().cloned()),
        wasi,
        clock,
        random,
        environ: prepared
            .grants
            .iter()
            .flat_map(|g| g.env.iter().map(|(name, value)| format!("{name}={value}")))
            .collect(),
        log,
        host_calls: prepared.host_calls.clone(),
        reply: Vec::new(),
        max_request: limits.max_request,
        max_reply: limits.max_reply,
        plugin_name: prepared.metadata.name.as_str().into(),
        function_names: prepared.functions.clone().into(),
        serving: 0,
        group,
    };
    let mut store = Store::new(&shared.engine, data);
    store.limiter(|data| &mut data.limiter);
    store.epoch_deadline_callback(Deadline::on_epoch);
    arm(&mut store, shared);
    let instance = prepared.pre.instantiate(&mut store).map_err(|e| instantiation_error(e, &store, &shared.config))?;
    let memory = instance.get_memory(&mut store, "memory");
    store.data_mut().memory = memory;
    if prepared.has_initialize {
        let initialize = instance
            .get_typed_func::<(), ()>(&mut store, "_initialize")
            .map_err(|e| Error::invalid(Clause::Exp5, format!("{e:#}")))?;
        take_turn(&store, &shared.config)?;
        let result = initialize.call(&mut store, ());
        store.data().deadline.give_turn();
        end_call(&mut store);
        result.map_err(|e| classify(e, &store, &shared.config))?;
    }
    if prepared.has_init {
        let init = instance
            .get_typed_func::<i32, i32>(&mut store, "pabi_init")
            .map_err(|e| Error::invalid(Clause::Exp5, format!("{e:#}")))?;
        let len = input_len(config)?;
        let data = store.data_mut();
        data.phase = Phase::Init;
        data.input = config.to_vec();
        arm(&mut store, shared);
        take_turn(&store, &shared.config)?;
        let result = init.call(&mut store, len);
        store.data().deadline.give_turn();
        end_call(&mut store);
        let status = result.map_err(|e| classify(e, &store, &shared.config))?;
        let data = store.data_mut();
        data.input = Vec::new();
        status_result(status, (), &mut data.message)?;
    }
    store.data_mut().phase = Phase::Call;
    let mut functions = Vec::with_capacity(prepared.functions.len());
    for name in &prepared.functions {
        let export = format!("{}{name}", pabi_abi::FN_EXPORT_PREFIX);
        let func = instance
            .get_typed_func::<i32, i32>(&mut store, &export)
            .map_err(|e| Error::invalid(Clause::Exp3, format!("{e:#}")))?;
        functions.push((name.clone(), func));
    }
    Ok(Instance { store, instance, functions })
}
