//! The reference host as the checks' [`TestHost`], with its default limits,
//! made safe to run on a CI machine with any plugin: time and entropy are
//! virtual, so a plugin that sleeps forever cannot hang the run; `fs:`
//! folders are scratch space under a quota; a plugin that floods the log
//! is cut at the cap of each call and reported.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use pabi_abi::{Capability, Metadata};
use pabi_host::{Config, DirGrant, Error, Host, HostCallError, HostFunction, Plugin};
use pabi_testkit::host_calls::Answer;

use crate::host::{AnsweredCall, Application, HostFailure, HostResult, Offer, PluginUnderTest, TestHost};

/// Runs plugins in [`pabi_host`] with the spec's default limits, granting
/// what a plugin declares: `clock` and `random` served virtually (the
/// virtual clock and the fixed-seed generator), an empty value for each
/// `env:NAME`, and an empty scratch folder for each `fs:` path, under
/// [`SCRATCH_QUOTA_BYTES`] and [`SCRATCH_QUOTA_ENTRIES`].
#[derive(Debug)]
pub struct ReferenceHost {
    base: Host,
    /// Hosts for plugins that declare `env:` or `fs:` capabilities, by the
    /// sorted list of those capabilities, with their scratch folders.
    scoped: Mutex<HashMap<Vec<String>, ScopedHost>>,
    scratch: tempfile::TempDir,
}

/// A host that grants `env:` and `fs:` capabilities or offers host calls,
/// its scratch folders, and the application behind its host calls.
type ScopedHost = (Host, Arc<Scratch>, Option<App>);

/// The reply cap of the hosts that offer host calls: the default of
/// `LIM-14`, which every conforming host offers at least, so that replies
/// reach the cap a plugin meets in practice.
pub const HOST_CALL_REPLY_CAP: u64 = 1 << 20;

/// The application behind a host's host calls: how it answers, and what it
/// was asked. Shared by the host functions and the plugin under test.
type App = Arc<Mutex<AppState>>;

#[derive(Debug)]
struct AppState {
    mode: Application,
    /// How many answers of a script were given.
    next: usize,
    calls: Vec<AnsweredCall>,
}

impl AppState {
    fn answer(&mut self, name: &str, request: &[u8]) -> Answer {
        let answer = match &self.mode {
            Application::Echo => Answer::Reply(request.to_vec()),
            Application::Table(table) => table
                .answer(name, request)
                .map(|(answer, _)| answer)
                .unwrap_or_else(|| Answer::Fail(format!("`{name}` is not in the table"))),
            Application::Script(script) => match script.get(self.next) {
                Some(scripted) => {
                    self.next += 1;
                    // A slow application: the plugin's call waits, and the
                    // time counts against its deadline (`CALL-7`).
                    std::thread::sleep(scripted.delay);
                    scripted.answer.clone()
                }
                None => Answer::Reply(request.to_vec()),
            },
            Application::Down(message) => Answer::Fail(message.clone()),
            Application::Slow(delay) => {
                std::thread::sleep(*delay);
                Answer::Reply(request.to_vec())
            }
        };
        self.calls.push(AnsweredCall { name: name.to_string(), request: request.to_vec(), answer: answer.clone() });
        answer
    }
}

/// Bytes a plugin may keep in its `fs:` scratch folders during a run.
pub const SCRATCH_QUOTA_BYTES: u64 = 64 << 20;
/// Files and folders a plugin may keep in its `fs:` scratch folders.
pub const SCRATCH_QUOTA_ENTRIES: u64 = 10_000;

/// The scratch folders behind one plugin's `fs:` capabilities.
#[derive(Debug, Default)]
pub struct Scratch {
    dirs: Vec<PathBuf>,
}

impl Scratch {
    /// Checked after every call: past the quota, the folders are emptied at
    /// once (so the disk is freed whatever the checks do next) and the call
    /// fails with a finding. A single call can still write what its
    /// deadline allows before the check runs.
    fn enforce(&self) -> HostResult<()> {
        if self.dirs.is_empty() {
            return Ok(());
        }
        let (mut bytes, mut entries) = (0u64, 0u64);
        for dir in &self.dirs {
            for entry in walkdir::WalkDir::new(dir).min_depth(1).into_iter().flatten() {
                entries += 1;
                bytes += entry.metadata().map_or(0, |m| m.len());
            }
        }
        if bytes <= SCRATCH_QUOTA_BYTES && entries <= SCRATCH_QUOTA_ENTRIES {
            return Ok(());
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
            let _ = std::fs::create_dir_all(dir);
        }
        Err(HostFailure {
            kind: None,
            status: None,
            message: Vec::new(),
            detail: format!(
                "the plugin filled its `fs:` folders with {bytes} bytes in {entries} files and folders, past the \
                 conformance quota of {SCRATCH_QUOTA_BYTES} bytes and {SCRATCH_QUOTA_ENTRIES} entries"
            ),
        })
    }
}

/// A plugin under test in the reference host, with its scratch quota and
/// the log records it had dropped so far.
#[derive(Debug)]
pub struct ReferencePlugin {
    plugin: Plugin,
    scratch: Arc<Scratch>,
    log_dropped: u64,
    app: Option<App>,
    /// For each kept global, its counter number: `None` until the first
    /// coverage read.
    counters: Option<Vec<usize>>,
}

impl ReferencePlugin {
    /// After every call: the scratch quota, and the log cap (`LIM-11`). A
    /// call that logs past the cap is reported: the host dropped the text
    /// as it must, and the plugin should not log that much.
    fn after_call(&mut self) -> HostResult<()> {
        self.scratch.enforce()?;
        // Bytes cover `log` records and standard output and error alike.
        let dropped = self.plugin.log_bytes_dropped();
        if dropped > self.log_dropped {
            let this_call = dropped - self.log_dropped;
            self.log_dropped = dropped;
            let cap = self.plugin.host_config().limits().max_log;
            return Err(HostFailure {
                kind: None,
                status: None,
                message: Vec::new(),
                detail: format!(
                    "the plugin logged past the {cap}-byte log cap of a call; the host dropped {this_call} bytes of \
                     log records and standard output and error (LIM-11)"
                ),
            });
        }
        Ok(())
    }
}

impl ReferenceHost {
    /// The reference host with default limits. Fails only if the wasm
    /// engine or the scratch folder cannot be set up. Compiled plugins are
    /// kept for the life of the host ([`ReferenceHost::with_cache_dir`]).
    pub fn new() -> anyhow::Result<Self> {
        Self::with_cache_dir(None)
    }

    /// The reference host with default limits, keeping compiled plugins in
    /// `cache_dir` between runs: a plugin and its instrumented copy are
    /// compiled once, not on every run (a Go plugin takes seconds). `None`:
    /// a folder of this host's own, removed with it. Either way each
    /// scoped host, which has an engine of its own, reads the plugin from
    /// that cache rather than compiling it again.
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let scratch = tempfile::tempdir()?;
        let compiled = cache_dir.unwrap_or_else(|| scratch.path().join("compiled"));
        std::fs::create_dir_all(&compiled)?;
        let config = Config::builder()
            .allow_clock(true)
            .allow_random(true)
            .simulate_clock_and_random(true)
            .cache_dir(Some(compiled))
            .build();
        Ok(ReferenceHost { base: Host::new(config)?, scoped: Mutex::default(), scratch })
    }

    /// The host for a plugin: the base one, or one that also offers the
    /// plugin's `env:` and `fs:` capabilities and the host calls `offer`
    /// selects, each behind the conformance application.
    fn host_for(&self, wasm: &[u8], offer: &Offer) -> ScopedHost {
        let metadata = pabi_abi::find_custom_sections(wasm, pabi_abi::METADATA_SECTION)
            .ok()
            .and_then(|sections| sections.first().and_then(|s| Metadata::parse(&wasm[s.data.clone()]).ok()));
        let (declared, host_calls) = metadata.map(|m| (m.capabilities, m.host_calls)).unwrap_or_default();
        let mut scoped: Vec<Capability> =
            declared.into_iter().filter(|c| matches!(c, Capability::Env(_) | Capability::Fs { .. })).collect();
        let mut offered: Vec<String> = host_calls
            .iter()
            .filter(|call| match offer {
                Offer::All => true,
                Offer::RequiredOnly => call.required,
                Offer::Only(names) => names.contains(&call.name),
            })
            .map(|call| call.name.clone())
            .collect();
        if scoped.is_empty() && host_calls.is_empty() {
            return (self.base.clone(), Arc::default(), None);
        }
        scoped.sort();
        offered.sort();
        let mut key: Vec<String> = scoped.iter().map(ToString::to_string).collect();
        key.extend(offered.iter().map(|name| format!("host_call:{name}")));
        key.push(format!("{} host calls", host_calls.len()));
        let mut hosts = self.scoped.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(scoped) = hosts.get(&key) {
            return scoped.clone();
        }
        let mut config = self.base.config().to_builder();
        let mut scratch = Scratch::default();
        for (i, capability) in scoped.into_iter().enumerate() {
            match capability {
                Capability::Env(name) => config = config.allow_env(name, ""),
                Capability::Fs { guest_path, read_only } => {
                    let host_dir = self.scratch.path().join(format!("dir{i}"));
                    let grant = DirGrant::new(host_dir.clone(), guest_path, read_only);
                    if let (Ok(grant), Ok(())) = (grant, std::fs::create_dir_all(&host_dir)) {
                        config = config.allow_dir(grant);
                        scratch.dirs.push(host_dir);
                    }
                }
                _ => {}
            }
        }
        let app = (!host_calls.is_empty())
            .then(|| Arc::new(Mutex::new(AppState { mode: Application::Echo, next: 0, calls: Vec::new() })));
        if let Some(app) = &app {
            let defaults = pabi_abi::Limits::default();
            config = config.max_host_call_bytes(defaults.max_request, HOST_CALL_REPLY_CAP);
            // A name no host can offer (`CALL-2`) would fail the whole
            // host; its plugin is refused at load anyway.
            for name in
                offered.iter().filter(|name| pabi_abi::is_valid_host_call_name(name) && !name.starts_with("pabi."))
            {
                let app = app.clone();
                let function = HostFunction::new(name.clone(), move |cx, request| {
                    match app.lock().unwrap_or_else(|p| p.into_inner()).answer(cx.host_call(), request) {
                        Answer::Reply(reply) => Ok(reply),
                        Answer::Fail(message) => Err(HostCallError::new(message)),
                        // The checks never call the plugin back: the host
                        // refuses that (CALL-8), and host cases test it.
                        Answer::Reenter(_) => Err(HostCallError::new(pabi_testkit::host_calls::REENTRY_REFUSED)),
                    }
                });
                config = config.host_function(function);
            }
        }
        let host = Host::new(config.build()).unwrap_or_else(|_| self.base.clone());
        let scoped = (host, Arc::new(scratch), app);
        hosts.insert(key, scoped.clone());
        scoped
    }
}

fn failure(error: Error) -> HostFailure {
    HostFailure {
        kind: error.kind(),
        status: error.status(),
        message: error.message().map(<[u8]>::to_vec).unwrap_or_default(),
        detail: error.to_string(),
    }
}

impl TestHost for ReferenceHost {
    type Plugin = ReferencePlugin;

    fn load(&self, wasm: &[u8], config: &[u8]) -> HostResult<ReferencePlugin> {
        self.load_offering(wasm, config, &Offer::All)
    }

    fn precompile(&self, wasm: &[u8]) {
        let _ = self.host_for(wasm, &Offer::All).0.precompile(wasm);
    }

    fn load_offering(&self, wasm: &[u8], config: &[u8], offer: &Offer) -> HostResult<ReferencePlugin> {
        let (host, scratch, app) = self.host_for(wasm, offer);
        // A load runs `pabi_init`, which may make host calls: answer them
        // as the default application does.
        if let Some(app) = &app {
            let mut state = app.lock().unwrap_or_else(|p| p.into_inner());
            state.mode = Application::Echo;
            state.calls.clear();
        }
        let plugin = host.load_with_plugin_config(wasm, config).map_err(failure)?;
        let mut plugin = ReferencePlugin { log_dropped: 0, plugin, scratch, app, counters: None };
        plugin.after_call()?;
        Ok(plugin)
    }
}

impl PluginUnderTest for ReferencePlugin {
    fn call(&mut self, function: &str, input: &[u8]) -> HostResult<Vec<u8>> {
        let result = self.plugin.call(function, input).map_err(failure);
        self.after_call()?;
        result
    }

    fn memory_bytes(&mut self) -> u64 {
        self.plugin.memory_bytes()
    }

    fn has_state(&self) -> bool {
        self.plugin.has_state()
    }

    fn save_state(&mut self) -> HostResult<Vec<u8>> {
        let result = self.plugin.save_state().map_err(failure);
        self.after_call()?;
        result
    }

    fn load_state(&mut self, state: &[u8]) -> HostResult<()> {
        let result = self.plugin.load_state(state).map_err(failure);
        self.after_call()?;
        result
    }

    fn shutdown(self) -> HostResult<()> {
        let scratch = self.scratch.clone();
        self.plugin.shutdown().map_err(failure)?;
        scratch.enforce()
    }

    fn abort_next_call(&mut self) {
        self.plugin.cancel_handle().cancel();
    }

    fn max_memory(&self) -> u64 {
        self.plugin.host_config().limits().max_memory
    }

    fn max_output(&self) -> u64 {
        self.plugin.host_config().limits().max_output
    }

    fn max_error_message(&self) -> u64 {
        self.plugin.host_config().limits().max_error_message
    }

    fn deadline(&self) -> std::time::Duration {
        self.plugin.host_config().limits().timeout
    }

    fn set_application(&mut self, application: Application) {
        if let Some(app) = &self.app {
            let mut state = app.lock().unwrap_or_else(|p| p.into_inner());
            state.next = 0;
            state.mode = application;
            state.calls.clear();
        }
    }

    fn coverage(&mut self) -> Option<Vec<u64>> {
        let prefix = crate::coverage::COUNTER_PREFIX;
        let counters = self.counters.get_or_insert_with(|| {
            let names = self.plugin.keep_global_bits(prefix);
            // Not a counter of ours: past every counter, so dropped below.
            names.iter().map(|name| name[prefix.len()..].parse().unwrap_or(usize::MAX)).collect()
        });
        let bits = self.plugin.take_global_bits();
        let len = counters.iter().filter(|&&k| k != usize::MAX).map(|k| k + 1).max().unwrap_or(0);
        let mut out = vec![0; len];
        for (&k, value) in counters.iter().zip(bits) {
            if let Some(slot) = out.get_mut(k) {
                *slot = value;
            }
        }
        Some(out)
    }

    fn take_host_calls(&mut self) -> Vec<AnsweredCall> {
        match &self.app {
            Some(app) => std::mem::take(&mut app.lock().unwrap_or_else(|p| p.into_inner()).calls),
            None => Vec::new(),
        }
    }
}
