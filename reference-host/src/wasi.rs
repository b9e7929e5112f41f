//! The `wasi` profile: grant the intersection of what a plugin declares and
//! what the host allows (`WASI-5`), and keep everything else closed.
//!
//! Without the `clock` capability time is virtual: both clocks start at 1 s
//! and only sleeps advance them, instantly (`WASI-6`). Without `random`,
//! randomness comes from a fixed-seed generator (`WASI-7`). Both keep a
//! plugin deterministic unless it asked for the real thing.

use pabi_abi::{Capability, Metadata};
use rand::SeedableRng;
use wasmtime::{Caller, Linker};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::clock::{PluginClock, RealClock, VirtualClock};
use crate::config::Allow;
use crate::error::Unavailable;
use crate::store::StoreData;
use crate::Error;

/// The seed of the generator a plugin without `random` reads.
const FIXED_SEED: u64 = 0x7061_6269_2d31_2e30;

/// What one plugin is granted.
#[derive(Clone, Debug, Default)]
pub(crate) struct Grants {
    pub clock: bool,
    pub random: bool,
    pub env: Vec<(String, String)>,
    pub dirs: Vec<(std::path::PathBuf, String, bool)>,
}

/// The capabilities granted to `metadata`, or every declared one that the
/// host does not allow (`WASI-5`).
pub(crate) fn grants(metadata: &Metadata, allow: &Allow) -> Result<Grants, Error> {
    let mut grants = Grants::default();
    let mut refused = Vec::new();
    for declared in &metadata.capabilities {
        let granted = match declared.clone() {
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
        Err(Error::MissingCapability { capabilities: refused })
    }
}

/// The WASI context of one instance: stdio closed, nothing inherited.
pub(crate) fn context(grants: &Grants) -> Result<(wasmtime_wasi::p1::WasiP1Ctx, Option<PluginClock>), Error> {
    let mut builder = WasiCtxBuilder::new();
    builder.allow_blocking_current_thread(true);
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
        let virtual_clock = VirtualClock::default();
        builder.wall_clock(virtual_clock.clone());
        builder.monotonic_clock(virtual_clock.clone());
        PluginClock::Virtual(virtual_clock)
    };
    Ok((builder.build_p1(), Some(clock)))
}

/// Links WASI preview 1 with the host's own `poll_oneoff`: on virtual time
/// it advances the virtual clock instead of sleeping; on real time it
/// sleeps, but never past the call's deadline (`LIM-3`), which the epoch
/// cannot enforce while the plugin waits in host code.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    wasmtime_wasi::p1::add_to_linker_sync(linker, StoreData::wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "poll_oneoff", poll_oneoff)?;
    linker.allow_shadowing(false);
    Ok(())
}

const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

const CLOCK_REALTIME: u32 = 0;

/// `poll_oneoff`: fd subscriptions are ready at once (the plugin's files and
/// stdio never block); otherwise the call waits for the earliest timer and
/// those timers fire. Virtual time jumps (`WASI-6`); real time sleeps within
/// the call's deadline.
fn poll_oneoff(
    mut caller: Caller<'_, StoreData>,
    subs: i32,
    events: i32,
    count: i32,
    out_count: i32,
) -> wasmtime::Result<i32> {
    let Some(memory) = caller.data().memory else { return Ok(ERRNO_FAULT) };
    let Some(clock) = caller.data().clock.clone() else { return Ok(ERRNO_INVAL) };
    let count = count as u32 as usize;
    if count == 0 {
        return Ok(ERRNO_INVAL);
    }
    let size = memory.data_size(&caller);
    let range = |ptr: i32, len: usize| {
        let start = ptr as u32 as usize;
        start.checked_add(len).filter(|end| *end <= size).map(|end| start..end)
    };
    let (Some(sub_range), Some(event_range), Some(count_range)) = (
        count.checked_mul(SUBSCRIPTION_SIZE).and_then(|len| range(subs, len)),
        count.checked_mul(EVENT_SIZE).and_then(|len| range(events, len)),
        range(out_count, 4),
    ) else {
        return Ok(ERRNO_FAULT);
    };
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
    let fd_ready: Vec<_> = parsed.iter().filter(|(_, tag, _)| *tag != 0).collect();
    let fired: Vec<_> = if fd_ready.is_empty() {
        let wait = parsed.iter().map(|(_, _, due)| *due).min().unwrap_or(0);
        match &clock {
            PluginClock::Virtual(virtual_clock) => virtual_clock.advance_to(now.saturating_add(wait)),
            PluginClock::Real(_) => caller.data().deadline.sleep(std::time::Duration::from_nanos(wait))?,
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
        Metadata {
            abi: pabi_abi::AbiVersion::new(1, 0),
            name: "p".into(),
            version: "1.0.0".into(),
            description: None,
            profile: pabi_abi::Profile::Wasi,
            functions: vec![],
            capabilities: caps.iter().map(|c| Capability::parse(c).unwrap()).collect(),
            statuses: Default::default(),
        }
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
        assert_eq!(refused(&["random"]), Error::MissingCapability { capabilities: vec![cap("random")] });
        assert_eq!(refused(&["env:PATH"]), Error::MissingCapability { capabilities: vec![cap("env:PATH")] });
        assert_eq!(refused(&["fs:/data:rw"]), Error::MissingCapability { capabilities: vec![cap("fs:/data:rw")] });
        assert_eq!(refused(&["fs:/other:ro"]), Error::MissingCapability { capabilities: vec![cap("fs:/other:ro")] });
        assert_eq!(
            refused(&["random", "clock", "env:PATH"]),
            Error::MissingCapability { capabilities: vec![cap("random"), cap("env:PATH")] },
            "every refused capability is named"
        );
    }
}
