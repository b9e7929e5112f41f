//! The engine, the linkers, the epoch ticker and the compile cache.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pabi_abi::{Metadata, Profile, HOST_ABI};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, InstancePre, Linker, Module};

use crate::config::Config;
use crate::imports::{self, StoreData};
use crate::plugin::Plugin;
use crate::wasi::{self, Grants};
use crate::Error;

/// Validated, compiled plugins kept ready per host.
const MAX_PREPARED: usize = 256;

/// How often the epoch advances; deadlines are whole ticks (`LIM-3`).
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// A configured host. Cheap to clone; every clone shares the engine, the
/// compile cache and the epoch ticker.
///
/// One host serves many plugins; each plugin instance has its own `Store`.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub engine: Engine,
    pub config: Config,
    core_linker: Linker<StoreData>,
    wasi_linker: Linker<StoreData>,
    virtual_time_linker: Linker<StoreData>,
    cache: Mutex<HashMap<[u8; 32], Module>>,
    prepared: Mutex<HashMap<[u8; 32], Arc<Prepared>>>,
    stop_ticker: Arc<AtomicBool>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl Drop for HostInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

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
}

impl Host {
    /// Builds the engine. Fails only when the engine cannot be set up
    /// (for example, the pooling allocator cannot reserve address space).
    pub fn new(config: Config) -> anyhow::Result<Host> {
        let limits = &config.limits;
        let mut wasmtime_config = wasmtime::Config::new();
        wasmtime_config
            .epoch_interruption(true)
            .consume_fuel(limits.fuel.is_some())
            .max_wasm_stack(limits.max_wasm_stack);
        if config.pooling {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_core_instances(64)
                .total_memories(64)
                .total_tables(128)
                .max_memories_per_module(1)
                .max_tables_per_module(8)
                .max_memory_size(limits.max_memory as usize)
                .table_elements(limits.max_table_elements as usize)
                .max_core_instance_size(16 << 20);
            wasmtime_config.allocation_strategy(pool);
        }
        let engine =
            Engine::new(&wasmtime_config).map_err(|e| anyhow::anyhow!("cannot set up the wasm engine: {e:#}"))?;
        let linker = |profile: Option<bool>| -> anyhow::Result<Linker<StoreData>> {
            let mut linker = Linker::new(&engine);
            imports::add_to_linker(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
            if let Some(virtual_time) = profile {
                wasi::add_to_linker(&mut linker, virtual_time).map_err(|e| anyhow::anyhow!("{e:#}"))?;
            }
            Ok(linker)
        };
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let inner = HostInner {
            core_linker: linker(None)?,
            wasi_linker: linker(Some(false))?,
            virtual_time_linker: linker(Some(true))?,
            engine: engine.clone(),
            config,
            cache: Mutex::new(HashMap::new()),
            prepared: Mutex::new(HashMap::new()),
            stop_ticker: stop_ticker.clone(),
        };
        std::thread::Builder::new()
            .name("pabi-epoch".into())
            .spawn(move || {
                while !stop_ticker.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot start the epoch thread: {e}"))?;
        Ok(Host { inner: Arc::new(inner) })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Loads a plugin with an empty configuration. See [`Host::load_with_config`].
    pub fn load(&self, wasm: &[u8]) -> Result<Plugin, Error> {
        self.load_with_config(wasm, b"")
    }

    /// Validates, compiles (or takes from the cache), instantiates and
    /// initialises a plugin: `_initialize`, then `pabi_init(config)`.
    pub fn load_with_config(&self, wasm: &[u8], config: &[u8]) -> Result<Plugin, Error> {
        let key = module_key(wasm);
        let cached = self.inner.prepared.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
        let prepared = match cached {
            Some(prepared) => prepared,
            None => {
                let prepared = Arc::new(self.prepare(wasm, &key)?);
                let mut map = self.inner.prepared.lock().unwrap_or_else(|p| p.into_inner());
                // A bound, so a host that loads endless distinct plugins
                // does not keep them all.
                if map.len() >= MAX_PREPARED {
                    map.clear();
                }
                map.insert(key, prepared.clone());
                prepared
            }
        };
        Plugin::start(self.clone(), prepared, config.to_vec())
    }

    /// Everything up to instantiation: `HOST-1` … `HOST-4`.
    pub(crate) fn prepare(&self, wasm: &[u8], key: &[u8; 32]) -> Result<Prepared, Error> {
        let report = pabi_validator::validate(wasm);
        if let Some(declared) = &report.metadata {
            if let Ok(version) = declared.abi_version() {
                if !HOST_ABI.accepts(version) {
                    return Err(version_mismatch(&report, version.to_string()));
                }
            }
        }
        if report.has_errors() {
            let findings = report.errors().map(|f| format!("[{}] {}", f.rule.id(), f.message)).collect();
            return Err(Error::InvalidModule { findings });
        }
        let metadata = report.metadata.clone().ok_or_else(|| Error::InvalidModule {
            findings: vec!["[META-1] the plugin has no `pabi` metadata section".into()],
        })?;
        let grants = match metadata.profile {
            Profile::Core => None,
            Profile::Wasi => Some(wasi::grants(&metadata, &self.inner.config.allow)?),
        };
        let module = self.compile(wasm, key)?;
        let linker = match &grants {
            None => &self.inner.core_linker,
            Some(g) if g.clock => &self.inner.wasi_linker,
            Some(_) => &self.inner.virtual_time_linker,
        };
        let pre =
            linker.instantiate_pre(&module).map_err(|e| Error::InvalidModule { findings: vec![format!("{e:#}")] })?;
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
            pre,
            metadata,
            grants,
        })
    }

    /// Compiles once per distinct binary (`HOST-10`): in memory, then from
    /// `cache_dir` keyed by the module hash and the engine's compatibility
    /// hash, then for real.
    fn compile(&self, wasm: &[u8], key: &[u8; 32]) -> Result<Module, Error> {
        if let Some(module) = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(module.clone());
        }
        let disk = self.inner.config.cache_dir.as_ref().map(|dir| self.cache_path(dir, key));
        let module = match disk.as_ref().and_then(|path| self.deserialize(path)) {
            Some(module) => module,
            None => {
                let module = Module::new(&self.inner.engine, wasm)
                    .map_err(|e| Error::InvalidModule { findings: vec![format!("{e:#}")] })?;
                if let Some(path) = &disk {
                    store_in_cache(path, &module);
                }
                module
            }
        };
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(*key, module.clone());
        Ok(module)
    }

    fn cache_path(&self, dir: &std::path::Path, key: &[u8; 32]) -> PathBuf {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner.engine.precompile_compatibility_hash().hash(&mut hasher);
        let module_hash: String = key.iter().map(|b| format!("{b:02x}")).collect();
        dir.join(format!("{module_hash}-{:016x}.cwasm", hasher.finish()))
    }

    /// Reads a precompiled module this host wrote earlier. It is read into
    /// memory rather than mapped, so that a cache file replaced or truncated
    /// by another process cannot fault this one.
    #[allow(unsafe_code)]
    fn deserialize(&self, path: &std::path::Path) -> Option<Module> {
        let bytes = std::fs::read(path).ok()?;
        // SAFETY: the cache folder is host configuration, written only by
        // `store_in_cache` with this engine's compatibility hash in the file
        // name; wasmtime checks the header and the engine settings again.
        match unsafe { Module::deserialize(&self.inner.engine, &bytes) } {
            Ok(module) => Some(module),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring a bad compile-cache entry: {e:#}");
                None
            }
        }
    }

    /// Loads the same plugin's compiled code without instantiating it, so a
    /// later load costs no compile.
    pub fn precompile(&self, wasm: &[u8]) -> Result<(), Error> {
        self.compile(wasm, &module_key(wasm)).map(drop)
    }
}

/// The key of a plugin in the caches: the SHA-256 of its bytes.
pub(crate) fn module_key(wasm: &[u8]) -> [u8; 32] {
    Sha256::digest(wasm).into()
}

fn store_in_cache(path: &std::path::Path, module: &Module) {
    let write = || -> std::io::Result<()> {
        let bytes = module.serialize().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Write then rename, so a reader never sees half a file.
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, path)
    };
    if let Err(e) = write() {
        tracing::warn!(path = %path.display(), "cannot write the compile cache: {e}");
    }
}

fn version_mismatch(report: &pabi_validator::Report, plugin: String) -> Error {
    let missing_imports = report
        .shape
        .iter()
        .flat_map(|m| &m.imports)
        .filter(|i| i.module == pabi_abi::IMPORT_MODULE && pabi_abi::find_import(&i.name).is_none())
        .map(|i| format!("{}.{}", i.module, i.name))
        .collect();
    Error::VersionMismatch { plugin, host: HOST_ABI.to_string(), missing_imports }
}
