//! What every plugin of a host shares: the wasm engine, the linkers, the
//! epoch ticker, and the one cache of validated, compiled plugins.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lru::LruCache;
use pabi_abi::{Clause, Metadata, Profile};
use pabi_validator::CodeSize;
use sha2::{Digest, Sha256};
use wasmtime::{Engine, InstancePre, Linker, Module};

use crate::config::Config;
use crate::error::{CompileCap, ModuleFinding, Unavailable};
use crate::log::PluginLog;
use crate::store::{StoreData, EPOCH_TICK, MAX_TABLES};
use crate::wasi::{self, Grants};
use crate::{imports, Error};

/// The key of a plugin in the cache: the SHA-256 of its bytes.
pub(crate) type ModuleKey = [u8; 32];

pub(crate) fn module_key(wasm: &[u8]) -> ModuleKey {
    Sha256::digest(wasm).into()
}

/// What a host is: its configuration and the engine room it runs in,
/// shared by the host's clones and by every plugin it loaded.
pub(crate) struct HostCore {
    pub engine: Engine,
    pub config: Config,
    room: Arc<EngineRoom>,
    /// The log rate and drop counts of each plugin loaded, by metadata
    /// name, shared by all its instances while any lives.
    logs: Mutex<std::collections::HashMap<String, std::sync::Weak<PluginLog>>>,
}

/// What hosts derived by [`crate::Host::with_limits`] share with the host
/// they came from: the linkers, the cache of prepared plugins, the epoch
/// ticker, and the limits the engine itself was built with.
struct EngineRoom {
    core_linker: Linker<StoreData>,
    wasi_linker: Linker<StoreData>,
    /// Validated, compiled plugins by module key; the least recently used
    /// goes first. A load, a precompile and a reload all go through it.
    prepared: Mutex<LruCache<ModuleKey, Arc<Prepared>>>,
    /// The bytes of the latest plugin prepared, and what they gave: loading
    /// the same plugin again (a pool growing, a conformance run loading a
    /// fresh instance per case) compares bytes instead of hashing them,
    /// several times cheaper.
    latest: Mutex<Option<Latest>>,
    /// The limits set in the engine rather than in each store: fuel on or
    /// off, the wasm stack, and with pooling the memory and table caps.
    built_with: crate::Limits,
    pooling: bool,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for EngineRoom {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A plugin's bytes and what they prepared to.
type Latest = (Arc<[u8]>, Arc<Prepared>);

/// A plugin compiled and checked, ready to instantiate.
pub(crate) struct Prepared {
    pub pre: InstancePre<StoreData>,
    pub metadata: Metadata,
    pub grants: Option<Grants>,
    /// The `pabi_fn_*` names, without the prefix.
    pub functions: Vec<String>,
    pub has_initialize: bool,
    pub has_init: bool,
    pub has_shutdown: bool,
    pub has_state: bool,
    /// The declared host calls and what serves them (`CALL-5`).
    pub host_calls: Arc<crate::host_fn::PluginHostCalls>,
    pub footprint: Footprint,
}

/// What the limits checked at load are measured on (`LIM-1`, `LIM-8`,
/// `LIM-12`), kept so that a cached plugin is checked against another
/// host's limits without reading it again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Footprint {
    code: CodeSize,
    initial_memory_bytes: u64,
    largest_initial_table: u64,
}

impl Footprint {
    fn new(code: CodeSize, report: &pabi_validator::Report) -> Footprint {
        let shape = report.shape.as_ref();
        Footprint {
            code,
            initial_memory_bytes: shape.and_then(|s| s.memory).map_or(0, |m| m.initial_pages.saturating_mul(64 << 10)),
            largest_initial_table: shape.and_then(|s| s.tables.iter().map(|t| t.initial_elements).max()).unwrap_or(0),
        }
    }

    fn check(&self, limits: &crate::Limits) -> Result<(), Error> {
        check_budget(&self.code, limits)?;
        self.check_initial_sizes(limits)
    }

    /// A memory or table that starts larger than its cap cannot be
    /// instantiated: `MEMORY_LIMIT` at load (`LIM-1`, `LIM-8`), before any
    /// compile is paid for.
    fn check_initial_sizes(&self, limits: &crate::Limits) -> Result<(), Error> {
        if self.initial_memory_bytes > limits.max_memory || self.largest_initial_table > limits.max_table_elements {
            return Err(Error::MemoryLimit { limit: limits.max_memory });
        }
        Ok(())
    }
}

/// The engines whose epoch advances every [`EPOCH_TICK`], each with the
/// flag its host sets when it goes.
struct Ticker {
    engines: Vec<(Engine, Arc<AtomicBool>)>,
    running: bool,
}

static TICKER: Mutex<Ticker> = Mutex::new(Ticker { engines: Vec::new(), running: false });

/// Advances `engine`'s epoch every tick until `stop` is set. One thread
/// serves every host of the process: a thread per host woke 500 times a
/// second each, and a server with a host per plugin (`pabi serve`) had as
/// many. The thread ends when the last host goes.
fn tick(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut ticker = TICKER.lock().unwrap_or_else(|p| p.into_inner());
    ticker.engines.push((engine, stop));
    if ticker.running {
        return Ok(());
    }
    std::thread::Builder::new().name("pabi-epoch".into()).spawn(|| loop {
        std::thread::sleep(EPOCH_TICK);
        let mut ticker = TICKER.lock().unwrap_or_else(|p| p.into_inner());
        ticker.engines.retain(|(_, stop)| !stop.load(Ordering::Relaxed));
        if ticker.engines.is_empty() {
            ticker.running = false;
            return;
        }
        for (engine, _) in &ticker.engines {
            engine.increment_epoch();
        }
    })?;
    ticker.running = true;
    Ok(())
}

impl HostCore {
    /// The log of the plugin `name`: the one its live instances share, or a
    /// fresh one at this host's rate.
    pub fn plugin_log(&self, name: &str) -> Arc<PluginLog> {
        let mut logs = self.logs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(log) = logs.get(name).and_then(std::sync::Weak::upgrade) {
            return log;
        }
        // Names of plugins no longer loaded go, so the map stays as large
        // as what is loaded.
        logs.retain(|_, log| log.strong_count() > 0);
        let log = Arc::new(PluginLog::new(self.config.log_rate()));
        logs.insert(name.to_string(), Arc::downgrade(&log));
        log
    }

    /// Builds the engine, the linkers and the epoch ticker.
    pub fn new(config: Config) -> Result<HostCore, Error> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            Error::HostUnavailable(Unavailable::Engine(format!("{what}: {e:#}")))
        };
        let limits = config.limits();
        let mut wasmtime_config = wasmtime::Config::new();
        wasmtime_config
            .epoch_interruption(true)
            .consume_fuel(limits.fuel.is_some())
            .max_wasm_stack(limits.max_wasm_stack);
        if config.pooling() {
            let slots = config.max_instances();
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_core_instances(slots)
                .total_memories(slots)
                // WebAssembly 2.0 modules may define several tables (`MOD-2`);
                // each slot is address space, reserved, not memory used.
                .total_tables(slots.saturating_mul(MAX_TABLES))
                .max_memories_per_module(1)
                .max_tables_per_module(MAX_TABLES)
                .max_memory_size(limits.max_memory as usize)
                .table_elements(limits.max_table_elements as usize)
                .max_core_instance_size(16 << 20);
            wasmtime_config.allocation_strategy(pool);
        }
        let engine = Engine::new(&wasmtime_config).map_err(|e| unavailable("the engine", &e))?;
        let linker = |with_wasi: bool| -> Result<Linker<StoreData>, Error> {
            let mut linker = Linker::new(&engine);
            imports::add_to_linker(&mut linker).map_err(|e| unavailable("the pabi imports", &e))?;
            if with_wasi {
                wasi::add_to_linker(&mut linker).map_err(|e| unavailable("WASI", &e))?;
            }
            Ok(linker)
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let capacity = NonZeroUsize::new(config.cache_capacity()).unwrap_or(NonZeroUsize::MIN);
        let room = EngineRoom {
            core_linker: linker(false)?,
            wasi_linker: linker(true)?,
            prepared: Mutex::new(LruCache::new(capacity)),
            latest: Mutex::new(None),
            built_with: limits.clone(),
            pooling: config.pooling(),
            stop_ticker: stop_ticker.clone(),
        };
        tick(engine.clone(), stop_ticker).map_err(|e| unavailable("the epoch thread", &e))?;
        if let Some(gate) = config.cpu_gate() {
            gate.serve_engine(&engine);
        }
        Ok(HostCore { engine, config, room: Arc::new(room), logs: Mutex::default() })
    }

    /// This host with other limits, in the same engine room. The limits the
    /// engine was built with bound what may change (`LIM-1`, `LIM-4`,
    /// `LIM-7`, `LIM-8`); the others are the store's and may take any value.
    pub fn with_limits(&self, limits: crate::Limits) -> Result<HostCore, Error> {
        let built = &self.room.built_with;
        let refuse =
            |clause: Clause, detail: String| Err(Error::HostUnavailable(Unavailable::Unsupported { clause, detail }));
        if limits.fuel.is_some() && built.fuel.is_none() {
            return refuse(
                Clause::Lim4,
                "fuel is counted only by a host built with fuel on (ConfigBuilder::fuel)".to_string(),
            );
        }
        if limits.max_wasm_stack != built.max_wasm_stack {
            return refuse(
                Clause::Lim7,
                format!("the wasm stack is the engine's, {} bytes, and cannot change per plugin", built.max_wasm_stack),
            );
        }
        if self.room.pooling && limits.max_memory > built.max_memory {
            return refuse(
                Clause::Lim1,
                format!("the pooling allocator reserved {} bytes of memory per instance", built.max_memory),
            );
        }
        if self.room.pooling && limits.max_table_elements > built.max_table_elements {
            return refuse(
                Clause::Lim8,
                format!("the pooling allocator reserved {} elements per table", built.max_table_elements),
            );
        }
        let config = self.config.to_builder().limits(limits).build();
        Ok(HostCore { engine: self.engine.clone(), config, room: self.room.clone(), logs: Mutex::default() })
    }

    /// Whether the engine counts fuel: then a call without a fuel limit
    /// gets all the fuel there is.
    pub fn counts_fuel(&self) -> bool {
        self.room.built_with.fuel.is_some()
    }

    /// The prepared plugin for `wasm`: from the cache, or validated,
    /// compiled and checked now (`HOST-1` … `HOST-2`) and then cached. A
    /// cached plugin is measured against this host's limits again, since a
    /// host with other limits shares the cache.
    pub fn prepared(&self, wasm: &[u8]) -> Result<Arc<Prepared>, Error> {
        let latest = self.room.latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some((bytes, prepared)) = latest {
            if *bytes == *wasm {
                prepared.footprint.check(self.config.limits())?;
                return Ok(prepared);
            }
        }
        let prepared = self.prepared_by_key(wasm)?;
        *self.room.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((Arc::from(wasm), prepared.clone()));
        Ok(prepared)
    }

    fn prepared_by_key(&self, wasm: &[u8]) -> Result<Arc<Prepared>, Error> {
        // A cached entry passed every check below but the limits', which
        // its footprint answers: a load of a known plugin costs one hash.
        let key = module_key(wasm);
        let cached = self.cache().get(&key).cloned();
        if let Some(prepared) = cached {
            prepared.footprint.check(self.config.limits())?;
            return Ok(prepared);
        }
        // The compile budget bounds everything after it, so it comes first;
        // then the envelope and the version, before anything of a version
        // (`VER-8`). An unreadable envelope is left to the validator, which
        // refuses it citing the clause of step 2 it breaks, and nothing else.
        let code = pabi_validator::code_size(wasm);
        check_budget(&code, self.config.limits())?;
        if let Ok(declared) = pabi_abi::read_envelope(wasm) {
            if !self.config.abi_version().accepts(declared) {
                return Err(version_mismatch(wasm, declared, self.config.abi_version()));
            }
        }
        let prepared = Arc::new(self.prepare(wasm, &key, code)?);
        self.cache().put(key, prepared.clone());
        Ok(prepared)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, LruCache<ModuleKey, Arc<Prepared>>> {
        self.room.prepared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Everything up to instantiation.
    fn prepare(&self, wasm: &[u8], key: &ModuleKey, code: CodeSize) -> Result<Prepared, Error> {
        // Checked as for this host's version, which its refusals name (`VER-4`).
        let options =
            pabi_validator::Options { host_abi: Some(self.config.abi_version()), ..pabi_validator::Options::default() };
        let report = pabi_validator::validate_with(wasm, &options);
        if report.has_errors() {
            return Err(Error::InvalidModule { findings: report.errors().map(ModuleFinding::from).collect() });
        }
        let metadata = report
            .metadata
            .clone()
            .ok_or_else(|| Error::invalid(Clause::Meta1, "the plugin has no `pabi` metadata section"))?;
        // The refusals in the order of `HOST-1`: `UNSUPPORTED`, then
        // `MISSING_CAPABILITY`; sizes past the caps come after them.
        let grants = match metadata.profile {
            Profile::Core => None,
            Profile::Wasi if !self.config.serves_wasi() => {
                return Err(Error::Unsupported { need: "the `wasi` profile".to_string() })
            }
            Profile::Wasi => Some(wasi::grants(&metadata, self.config.allowed())),
        };
        let host_calls = crate::host_fn::PluginHostCalls::resolve(
            &metadata.name,
            &metadata.host_calls,
            self.config.host_functions(),
        );
        // Every refused capability and every required host call not offered,
        // in one error (`WASI-5`, `CALL-5`).
        let (grants, host_calls) = match (grants.transpose(), host_calls) {
            (Ok(grants), Ok(host_calls)) => (grants, host_calls),
            (grants, host_calls) => {
                return Err(Error::MissingCapability {
                    capabilities: grants.err().unwrap_or_default(),
                    host_calls: host_calls.err().unwrap_or_default(),
                })
            }
        };
        let footprint = Footprint::new(code, &report);
        footprint.check_initial_sizes(self.config.limits())?;
        let module = self.compile(wasm, key)?;
        let linker = if grants.is_some() { &self.room.wasi_linker } else { &self.room.core_linker };
        // The validator checked every import against the ABI (`HOST-2`), so a
        // link failure here is this host lacking a function it should have.
        let pre = linker.instantiate_pre(&module).map_err(|e| Error::invalid(Clause::Host2, format!("{e:#}")))?;
        let exported = |name: &str| module.exports().any(|e| e.name() == name);
        let functions = module
            .exports()
            .filter_map(|e| e.name().strip_prefix(pabi_abi::FN_EXPORT_PREFIX).map(String::from))
            .collect();
        Ok(Prepared {
            functions,
            has_initialize: exported("_initialize"),
            has_init: exported("pabi_init"),
            has_shutdown: exported("pabi_shutdown"),
            has_state: exported("pabi_state_save") && exported("pabi_state_load"),
            footprint,
            pre,
            metadata,
            grants,
            host_calls: Arc::new(host_calls),
        })
    }

    /// Compiles the module, or reads it from `cache_dir` keyed by the module
    /// hash and the engine's compatibility hash.
    fn compile(&self, wasm: &[u8], key: &ModuleKey) -> Result<Module, Error> {
        let disk = self.config.cache_dir().map(|dir| self.cache_path(dir, key));
        if let Some(module) = disk.as_ref().and_then(|path| self.deserialize(path)) {
            return Ok(module);
        }
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| ModuleFinding { clause: None, message: format!("{e:#}") })
            .map_err(|finding| Error::InvalidModule { findings: vec![finding] })?;
        if let Some(path) = &disk {
            store_in_cache(path, &module);
            trim_cache(path, self.config.cache_dir_bytes());
        }
        Ok(module)
    }

    fn cache_path(&self, dir: &Path, key: &ModuleKey) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let module_hash: String = key.iter().map(|b| format!("{b:02x}")).collect();
        dir.join(format!("{module_hash}-{:016x}.cwasm", hasher.finish()))
    }

    /// Reads a precompiled module this host wrote earlier. It is read into
    /// memory rather than mapped, so that a cache file replaced or truncated
    /// by another process cannot fault this one.
    #[allow(unsafe_code)]
    fn deserialize(&self, path: &Path) -> Option<Module> {
        let bytes = std::fs::read(path).ok()?;
        // SAFETY: the cache folder is host configuration, written only by
        // `store_in_cache` with this engine's compatibility hash in the file
        // name; wasmtime checks the header and the engine settings again.
        match unsafe { Module::deserialize(&self.engine, &bytes) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring a bad compile-cache entry: {e:#}");
                None
            }
        }
    }
}

/// The compile budget (`LIM-12`), checked from the section headers before
/// anything else: validation and compilation both cost in proportion to the
/// code, and a compile cannot be interrupted once started.
fn check_budget(size: &CodeSize, limits: &crate::Limits) -> Result<(), Error> {
    let cap = if size.module_bytes > limits.max_module_bytes {
        CompileCap::ModuleBytes { bytes: size.module_bytes, cap: limits.max_module_bytes }
    } else if size.functions > limits.max_functions {
        CompileCap::Functions { functions: size.functions, cap: limits.max_functions }
    } else {
        match size.largest_body {
            Some((index, bytes)) if bytes > limits.max_function_body => {
                CompileCap::FunctionBody { index, bytes, cap: limits.max_function_body }
            }
            _ => return Ok(()),
        }
    };
    Err(Error::ModuleLimit { cap })
}

fn store_in_cache(path: &Path, module: &Module) {
    let write = || -> std::io::Result<()> {
        let bytes = module.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename, so a reader never sees half a file.
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
        if written.is_err() {
            // A full disk must not leave half a file outside the budget.
            let _ = std::fs::remove_file(&partial);
        }
        written
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), "cannot write the compile cache: {e}");
    }
}

/// Removes the oldest cache entries (by modification time) until the
/// folder holds at most `max_bytes`; the entry just written (`keep`) goes
/// last, so an entry larger than the whole budget is removed too.
fn trim_cache(keep: &Path, max_bytes: u64) {
    let Some(dir) = keep.parent() else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(bool, std::time::SystemTime, u64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            let path = e.path();
            Some((path == keep, meta.modified().ok()?, meta.len(), path))
        })
        .collect();
    let mut total: u64 = files.iter().map(|f| f.2).sum();
    files.sort();
    for (_, _, len, path) in files {
        if total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&path).is_ok() {
            total -= len;
            tracing::debug!(path = %path.display(), "removed from the compile cache to stay under {max_bytes} bytes");
        }
    }
}

/// `VERSION_MISMATCH` naming both versions and every `pabi` import this host
/// lacks (`VER-4`), from the import section read without validation.
fn version_mismatch(wasm: &[u8], plugin: pabi_abi::AbiVersion, host: pabi_abi::AbiVersion) -> Error {
    let missing_imports = pabi_abi::function_imports(wasm)
        .into_iter()
        .filter(|(module, name)| {
            module == pabi_abi::IMPORT_MODULE
                && pabi_abi::find_import(name).is_none_or(|spec| !host.accepts(spec.since))
        })
        .map(|(module, name)| format!("{module}.{name}"))
        .collect();
    Error::VersionMismatch { plugin, host, missing_imports }
}
