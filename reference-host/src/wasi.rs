//! The `wasi` profile: grant the intersection of what a plugin declares and
//! what the host allows (`WASI-5`), and keep everything else closed.
//!
//! Without the `clock` capability time is virtual: both clocks start at 1 s
//! and only sleeps advance them, instantly (`WASI-6`). Without `random`,
//! randomness comes from a fixed-seed generator (`WASI-7`). Both keep a
//! plugin deterministic unless it asked for the real thing.

use pabi_abi::{Capability, Metadata};
use rand::SeedableRng;
use std::ops::Range;

use pabi_abi::Clause;
use wasmtime::{Caller, Linker, Memory};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::clock::{PluginClock, RealClock, VirtualClock, VIRTUAL_CLOCK_START};
use crate::config::Allow;
use crate::error::Unavailable;
use crate::imports::{checked_range, violation};
use crate::log::{SharedSink, Stdio, StdioStream};
use crate::store::StoreData;
use crate::Error;

/// The seed of the generator a plugin without `random` reads.
const FIXED_SEED: u64 = 0x7061_6269_2d31_2e30;

/// What one plugin is granted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Grants {
    pub clock: bool,
    pub random: bool,
    /// `random` granted under [`crate::ConfigBuilder::simulate_clock_and_random`].
    pub simulated_random: bool,
    /// `clock` granted under [`crate::ConfigBuilder::simulate_clock_and_random`].
    pub simulated_clock: bool,
    pub env: Vec<(String, String)>,
    pub dirs: Vec<(std::path::PathBuf, String, bool)>,
}

/// The capabilities granted to `metadata`, or every declared one that the
/// host does not allow (`WASI-5`), all of them.
pub(crate) fn grants(metadata: &Metadata, allow: &Allow) -> Result<Grants, Vec<Capability>> {
    let mut grants = Grants::default();
    let mut refused = Vec::new();
    for declared in &metadata.capabilities {
        let granted = match declared.clone() {
            Capability::Clock if allow.simulated() => {
                grants.simulated_clock = true;
                true
            }
            Capability::Random if allow.simulated() => {
                grants.simulated_random = true;
                true
            }
            Capability::Clock if allow.clock() => {
                grants.clock = true;
                true
            }
            Capability::Random if allow.random() => {
                grants.random = true;
                true
            }
            Capability::Env(name) => match allow.env().iter().find(|(k, _)| *k == name) {
                Some((_, value)) => {
                    grants.env.push((name, value.clone()));
                    true
                }
                None => false,
            },
            Capability::Fs { guest_path, read_only } => {
                match allow.dirs().iter().find(|d| d.guest() == guest_path && (read_only || !d.read_only())) {
                    Some(dir) => {
                        grants.dirs.push((dir.host().to_path_buf(), guest_path, read_only));
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        };
        if !granted {
            refused.push(declared.clone());
        }
    }
    if refused.is_empty() {
        Ok(grants)
    } else {
        Err(refused)
    }
}

/// The WASI context of one instance: stdin empty, stdout and stderr into
/// the log, nothing inherited.
pub(crate) fn context(
    grants: &Grants,
    log: &SharedSink,
) -> Result<(wasmtime_wasi::p1::WasiP1Ctx, Option<PluginClock>), Error> {
    let mut builder = WasiCtxBuilder::new();
    builder.allow_blocking_current_thread(true);
    // Standard output and error go to the log, under the call's log budget
    // (`WASI-8`, `LIM-11`).
    builder.stdout(StdioStream { sink: log.clone(), stream: Stdio::Out });
    builder.stderr(StdioStream { sink: log.clone(), stream: Stdio::Err });
    for (name, value) in &grants.env {
        builder.env(name, value);
    }
    for (host, guest, read_only) in &grants.dirs {
        let perms = if *read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
        builder.preopened_dir(host, guest, perms).map_err(|e| {
            Error::HostUnavailable(Unavailable::Directory {
                host: host.clone(),
                guest: guest.clone(),
                reason: format!("{e:#}"),
            })
        })?;
    }
    if !grants.random {
        builder.secure_random(rand::rngs::StdRng::seed_from_u64(FIXED_SEED));
        builder.insecure_random(rand::rngs::StdRng::seed_from_u64(FIXED_SEED ^ 1));
        builder.insecure_random_seed(u128::from(FIXED_SEED));
    }
    let clock = if grants.clock {
        let real = RealClock::default();
        builder.monotonic_clock(real);
        PluginClock::Real(real)
    } else {
        let virtual_clock = if grants.simulated_clock {
            // A start per instance from a counter, a second apart, as the
            // simulated generator's seed: a run repeats exactly, and two
            // instances of a plugin that declares `clock` still read
            // different times, so a deterministic function that lets the
            // time reach its result is caught (`FN-5`).
            static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            VirtualClock::starting_at(VIRTUAL_CLOCK_START + (instance % (1 << 20)) * 1_000_000_000)
        } else {
            VirtualClock::default()
        };
        builder.wall_clock(virtual_clock.clone());
        builder.monotonic_clock(virtual_clock.clone());
        PluginClock::Virtual(virtual_clock)
    };
    Ok((builder.build_p1(), Some(clock)))
}

/// The generator `random_get` reads (`WASI-7`).
pub(crate) fn random(grants: &Grants) -> rand::rngs::StdRng {
    static INSTANCES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if grants.random {
        rand::make_rng()
    } else if grants.simulated_random {
        // A seed per instance from a counter: a run repeats exactly, and
        // two instances still see different bytes, so a function that lets
        // them reach a deterministic result is caught (`FN-5`).
        let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rand::rngs::StdRng::seed_from_u64(FIXED_SEED.wrapping_add(instance + 1))
    } else {
        rand::rngs::StdRng::seed_from_u64(FIXED_SEED)
    }
}

/// Links WASI preview 1, with the host's own versions of the functions
/// whose behaviour pabi defines more closely than WASI does: the clocks and
/// `poll_oneoff` (virtual time, and real sleeps bounded by the call's
/// deadline, which the epoch cannot enforce in host code: `LIM-3`,
/// `WASI-6`, `WASI-9`), `random_get` (any length, written in place rather
/// than allocated on the host), `fd_write` and `fd_read` (the descriptor
/// before the pointers, `MEM-3`), and `proc_raise` and `path_symlink`
/// (`WASI-10`).
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, StoreData::wasi)?;
    linker.allow_shadowing(true);
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(WASI, "poll_oneoff", poll_oneoff)?;
    linker.func_wrap(WASI, "clock_time_get", clock_time_get)?;
    linker.func_wrap(WASI, "clock_res_get", clock_res_get)?;
    linker.func_wrap(WASI, "random_get", random_get)?;
    linker.func_wrap(WASI, "args_get", args_get)?;
    linker.func_wrap(WASI, "environ_get", environ_get)?;
    linker.func_wrap(WASI, "fd_write", |caller: Caller<'_, StoreData>, fd: i32, iovs: i32, len: i32, out: i32| {
        descriptor_first(caller, Transfer::Write, fd, iovs, len, out)
    })?;
    linker.func_wrap(WASI, "fd_read", |caller: Caller<'_, StoreData>, fd: i32, iovs: i32, len: i32, out: i32| {
        descriptor_first(caller, Transfer::Read, fd, iovs, len, out)
    })?;
    linker.func_wrap(WASI, "proc_raise", |_: i32| -> i32 { ERRNO_NOSYS })?;
    linker.func_wrap(WASI, "path_symlink", |_: i32, _: i32, _: i32, _: i32, _: i32| -> i32 { ERRNO_NOTCAPABLE })?;
    linker.allow_shadowing(false);
    Ok(())
}

const ERRNO_INVAL: i32 = 28;
const ERRNO_NOSYS: i32 = 52;
const ERRNO_NOTCAPABLE: i32 = 76;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

const CLOCK_REALTIME: u32 = 0;
/// Clock ids 0–3 are WASI's four clocks (`WASI-9`).
const CLOCKS: u32 = 4;

/// A WASI pointer's range, checked like the `pabi` imports' ranges: outside
/// memory or misaligned for its type, the call aborts with `ABI_VIOLATION`
/// citing MEM-3 (WASI's own rule is a trap).
fn wasi_range(
    caller: &Caller<'_, StoreData>,
    function: &str,
    ptr: i32,
    len: usize,
    align: u32,
) -> wasmtime::Result<(Memory, Range<usize>)> {
    let memory = caller.data().memory.ok_or_else(|| violation(Clause::Exp1, "the plugin exports no memory".into()))?;
    if !(ptr as u32).is_multiple_of(align) {
        return Err(violation(
            Clause::Mem3,
            format!("{function}: pointer {:#x} is not aligned to {align} bytes", ptr as u32),
        ));
    }
    // A length up to 2^32 - 1 is a valid u32 (`MEM-4`); `checked_range`
    // takes it bit for bit as the `i32` a plugin passes.
    let len = u32::try_from(len)
        .map_err(|_| violation(Clause::Mem3, format!("{function}: a range of {len} bytes is past 2^32")))?;
    let range = checked_range(function, ptr, len as i32, memory.data_size(caller))?;
    Ok((memory, range))
}

/// Which of the two stream functions [`descriptor_first`] serves.
#[derive(Clone, Copy)]
enum Transfer {
    Read,
    Write,
}

/// `fd_write` and `fd_read`, deciding the descriptor before any pointer
/// (`MEM-3`): a descriptor that is not open, or whose rights lack the
/// operation, is errno `badf` whatever the pointers, as a function that
/// fails before it needs a pointer never dereferences it. wasmtime's own
/// versions read the iovec array first, so a bad descriptor with an array
/// outside memory aborted the call instead. The call is wasmtime's own
/// function, called as its linker glue calls it (the host-call fuel set
/// first); a pointer fault stays the `wiggle::GuestError` that
/// [`crate::classify`] reports as `MEM-3`.
fn descriptor_first(
    mut caller: Caller<'_, StoreData>,
    transfer: Transfer,
    fd: i32,
    iovs: i32,
    len: i32,
    out: i32,
) -> wasmtime::Result<i32> {
    use wasmtime::AsContextMut as _;
    use wasmtime_wasi::p1::types::{Errno, Fd, Rights};
    use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};

    let fuel = caller.as_context_mut().hostcall_fuel();
    let memory = caller.data().memory.ok_or_else(|| violation(Clause::Exp1, "the plugin exports no memory".into()))?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let mut guest = wiggle::GuestMemory::Unshared(bytes);
    let ctx = data.wasi();
    ctx.set_hostcall_fuel(fuel);
    wasmtime_wasi::runtime::in_tokio(async {
        let done = match transfer {
            Transfer::Read => p1::fd_read(ctx, &mut guest, fd, iovs, len, out).await,
            Transfer::Write => p1::fd_write(ctx, &mut guest, fd, iovs, len, out).await,
        };
        // Only a pointer fault can come before the descriptor's errno, and
        // the array is read before anything moves: the descriptor is looked
        // at then, not on every call.
        let fault = match done {
            Err(fault) if fault.downcast_ref::<wiggle::GuestError>().is_some() => fault,
            done => return done,
        };
        let right = match transfer {
            Transfer::Read => Rights::FD_READ,
            Transfer::Write => Rights::FD_WRITE,
        };
        match ctx.fd_fdstat_get(&mut guest, Fd::from(fd as u32)).await {
            Ok(stat) if stat.fs_rights_base.contains(right) => Err(fault),
            Ok(_) => Ok(Errno::Badf as i32),
            Err(error) => Ok(error.downcast()? as i32),
        }
    })
}

/// `clock_time_get(id, precision, *time)`: the virtual clock for every id
/// without `clock`; with it, real wall time for id 0 and the monotonic
/// clock for ids 1–3 (`WASI-6`, `WASI-9`).
fn clock_time_get(mut caller: Caller<'_, StoreData>, id: i32, _precision: i64, out: i32) -> wasmtime::Result<i32> {
    // The id before the pointer, as WASI decodes its arguments.
    let id = id as u32;
    if id >= CLOCKS {
        return Ok(ERRNO_INVAL);
    }
    let (memory, range) = wasi_range(&caller, "clock_time_get", out, 8, 8)?;
    let now = match &caller.data().clock {
        Some(PluginClock::Virtual(clock)) => clock.now_nanos(),
        Some(PluginClock::Real(_)) if id == CLOCK_REALTIME => {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
        }
        Some(PluginClock::Real(clock)) => clock.now_nanos(),
        None => return Ok(ERRNO_INVAL),
    };
    memory.data_mut(&mut caller)[range].copy_from_slice(&now.to_le_bytes());
    Ok(0)
}

/// `clock_res_get(id, *resolution)`: 1 ns for the four clocks (`WASI-9`).
fn clock_res_get(mut caller: Caller<'_, StoreData>, id: i32, out: i32) -> wasmtime::Result<i32> {
    if id as u32 >= CLOCKS {
        return Ok(ERRNO_INVAL);
    }
    let (memory, range) = wasi_range(&caller, "clock_res_get", out, 8, 8)?;
    memory.data_mut(&mut caller)[range].copy_from_slice(&1u64.to_le_bytes());
    Ok(0)
}

/// `args_get(argv, buf)`: the argument list is empty (`WASI-8`), so nothing
/// is written; both pointers are still checked as zero-length ranges
/// (`MEM-3`, `MEM-4`), as every other pointer is. wasmtime's own version
/// looks at them only to write.
fn args_get(caller: Caller<'_, StoreData>, argv: i32, buf: i32) -> wasmtime::Result<i32> {
    wasi_range(&caller, "args_get", argv, 0, 4)?;
    wasi_range(&caller, "args_get", buf, 0, 1)?;
    Ok(0)
}

/// `environ_get(environ, buf)`: the granted variables (`WASI-8`), each a
/// pointer into `buf` to `NAME=value` and a NUL.
fn environ_get(mut caller: Caller<'_, StoreData>, environ: i32, buf: i32) -> wasmtime::Result<i32> {
    let vars = caller.data().environ.clone();
    let total: usize = vars.iter().map(|v| v.len() + 1).sum();
    let (memory, pointers) = wasi_range(&caller, "environ_get", environ, vars.len() * 4, 4)?;
    let (_, text) = wasi_range(&caller, "environ_get", buf, total, 1)?;
    let bytes = memory.data_mut(&mut caller);
    let mut at = text.start;
    for (slot, var) in vars.iter().enumerate() {
        let pointer = pointers.start + slot * 4;
        bytes[pointer..pointer + 4].copy_from_slice(&(at as u32).to_le_bytes());
        bytes[at..at + var.len()].copy_from_slice(var.as_bytes());
        bytes[at + var.len()] = 0;
        at += var.len() + 1;
    }
    Ok(0)
}

/// `random_get(buf, len)`: filled in place from the instance's generator,
/// so any length that fits in memory works and costs the host nothing.
fn random_get(mut caller: Caller<'_, StoreData>, buf: i32, len: i32) -> wasmtime::Result<i32> {
    let (memory, range) = wasi_range(&caller, "random_get", buf, len as u32 as usize, 1)?;
    let (bytes, data) = memory.data_and_store_mut(&mut caller);
    let Some(random) = data.random.as_mut() else { return Ok(ERRNO_INVAL) };
    rand::Rng::fill_bytes(random, &mut bytes[range]);
    Ok(0)
}

/// `poll_oneoff`: fd subscriptions are ready at once (the plugin's files and
/// stdio never block); otherwise the call waits for the earliest timer and
/// every timer due by then fires (`WASI-9`). Virtual time jumps (`WASI-6`);
/// real time sleeps within the call's deadline (`LIM-3`).
fn poll_oneoff(
    mut caller: Caller<'_, StoreData>,
    subs: i32,
    events: i32,
    count: i32,
    out_count: i32,
) -> wasmtime::Result<i32> {
    let count = count as u32 as usize;
    if count == 0 {
        return Ok(ERRNO_INVAL);
    }
    let (memory, sub_range) = wasi_range(&caller, "poll_oneoff", subs, count * SUBSCRIPTION_SIZE, 8)?;
    let (_, event_range) = wasi_range(&caller, "poll_oneoff", events, count * EVENT_SIZE, 8)?;
    let (_, count_range) = wasi_range(&caller, "poll_oneoff", out_count, 4, 4)?;
    let Some(clock) = caller.data().clock.clone() else { return Ok(ERRNO_INVAL) };
    // Each subscription as (userdata, tag, nanoseconds from now until it is
    // due); tag 0 is a clock.
    let now = match &clock {
        PluginClock::Virtual(virtual_clock) => virtual_clock.now_nanos(),
        PluginClock::Real(real) => real.now_nanos(),
    };
    let wall_now =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let parsed: Vec<(u64, u8, u64)> = memory.data(&caller)[sub_range]
        .chunks_exact(SUBSCRIPTION_SIZE)
        .map(|s| {
            let userdata = u64::from_le_bytes(s[0..8].try_into().unwrap());
            let clock_id = u32::from_le_bytes(s[16..20].try_into().unwrap());
            let timeout = u64::from_le_bytes(s[24..32].try_into().unwrap());
            let absolute = u16::from_le_bytes(s[40..42].try_into().unwrap()) & 1 == 1;
            let due = match (absolute, &clock) {
                (false, _) => timeout,
                // Real wall time counts from the epoch; every other clock
                // the plugin reads counts like `now`.
                (true, PluginClock::Real(_)) if clock_id == CLOCK_REALTIME => timeout.saturating_sub(wall_now()),
                (true, _) => timeout.saturating_sub(now),
            };
            (userdata, s[8], due)
        })
        .collect();
    // fd subscriptions are ready at once, and so is every clock that has
    // already expired (`WASI-9`: every ready subscription gets an event).
    let fd_ready: Vec<_> = parsed.iter().filter(|(_, tag, due)| *tag != 0 || *due == 0).collect();
    let fired: Vec<_> = if !parsed.iter().any(|(_, tag, _)| *tag != 0) {
        let wait = parsed.iter().map(|(_, _, due)| *due).min().unwrap_or(0);
        match &clock {
            PluginClock::Virtual(virtual_clock) => virtual_clock.advance_to(now.saturating_add(wait)),
            PluginClock::Real(_) => {
                let data = caller.data();
                data.deadline.sleep(std::time::Duration::from_nanos(wait), data.group)?
            }
        }
        parsed.iter().filter(|(_, _, due)| *due <= wait).collect()
    } else {
        fd_ready
    };
    let bytes = memory.data_mut(&mut caller);
    let out = &mut bytes[event_range];
    out.fill(0);
    for (event, (userdata, tag, _)) in out.chunks_exact_mut(EVENT_SIZE).zip(&fired) {
        event[0..8].copy_from_slice(&userdata.to_le_bytes());
        event[10] = *tag;
    }
    bytes[count_range].copy_from_slice(&(fired.len() as u32).to_le_bytes());
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DirGrant;

    fn metadata(caps: &[&str]) -> Metadata {
        let mut metadata = Metadata::new(pabi_abi::AbiVersion::new(1, 0), "p", "1.0.0", pabi_abi::Profile::Wasi);
        metadata.capabilities = caps.iter().map(|c| Capability::parse(c).unwrap()).collect();
        metadata
    }

    fn cap(text: &str) -> Capability {
        Capability::parse(text).unwrap()
    }

    #[test]
    fn grants_are_the_intersection() {
        let config = crate::Config::builder()
            .allow_clock(true)
            .allow_env("HOME", "/h")
            .allow_env("USER", "u")
            .allow_dir(DirGrant::new("d", "/data", true).unwrap())
            .build();
        let allow = config.allowed();
        let g = grants(&metadata(&["clock", "env:HOME", "fs:/data:ro"]), allow).unwrap();
        assert!(g.clock && !g.random);
        assert_eq!(g.env, vec![("HOME".to_string(), "/h".to_string())], "USER is allowed but not declared");
        assert_eq!(g.dirs.len(), 1);
        let refused = |caps: &[&str]| grants(&metadata(caps), allow).unwrap_err();
        assert_eq!(refused(&["random"]), vec![cap("random")]);
        assert_eq!(refused(&["env:PATH"]), vec![cap("env:PATH")]);
        assert_eq!(refused(&["fs:/data:rw"]), vec![cap("fs:/data:rw")]);
        assert_eq!(refused(&["fs:/other:ro"]), vec![cap("fs:/other:ro")]);
        assert_eq!(
            refused(&["random", "clock", "env:PATH"]),
            vec![cap("random"), cap("env:PATH")],
            "every refused capability is named"
        );
    }
}
