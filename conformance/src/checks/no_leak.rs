//! The `no-leak` check: many calls after a warm-up grow memory by at most
//! [`leak_bound`].

use proptest::prelude::Rng;
use proptest::test_runner::TestRng;

use crate::harness::Run;
use crate::report::{CheckOutcome, Failure};
use crate::{PluginUnderTest, TestHost};

/// Calls of the leak check after its warm-up (`FN-7`).
pub const LEAK_CALLS: usize = 10_000;
const LEAK_WARMUP: usize = 100;
/// Growth the leak check allows in the second half of its calls: the larger
/// of 1 MiB and a quarter of the memory at the half-way point.
pub fn leak_bound(warm_bytes: u64) -> u64 {
    (1 << 20u64).max(warm_bytes / 4)
}

impl<H: TestHost + Sync> Run<'_, H> {
    pub(super) fn no_leak(&self, function: &str) -> CheckOutcome {
        let mut plugin = match self.load(b"") {
            Ok(p) => p,
            Err(outcome) => return outcome,
        };
        let mut rng = self.runner(1).new_rng();
        let mut input = vec![0u8; 4096];
        let mut call = |plugin: &mut H::Plugin, rng: &mut TestRng| {
            let len = rand_below(rng, input.len() + 1);
            rng.fill_bytes(&mut input[..len]);
            let _ = plugin.call(function, &input[..len]);
        };
        for _ in 0..LEAK_WARMUP {
            call(&mut plugin, &mut rng);
        }
        // Two halves: a garbage-collected runtime grows its heap once and
        // then plateaus; a leak keeps growing, or runs into the memory cap.
        let warm = plugin.memory_bytes();
        for _ in 0..LEAK_CALLS / 2 {
            call(&mut plugin, &mut rng);
        }
        let middle = plugin.memory_bytes();
        for _ in 0..LEAK_CALLS / 2 {
            call(&mut plugin, &mut rng);
        }
        let after = plugin.memory_bytes();
        let still_growing = after.saturating_sub(middle) > leak_bound(middle);
        let at_cap = after > plugin.max_memory() / 10 * 9;
        if still_growing || at_cap {
            let why = if at_cap { "ran into the memory cap" } else { "was still growing in the second half" };
            let mut failure = Failure::new(format!(
                "memory {why}: {warm} bytes after warm-up, {middle} after {} calls, {after} after {LEAK_CALLS} \
                     (inputs of at most 4 KiB; a second half may grow by at most {} bytes)",
                LEAK_CALLS / 2,
                leak_bound(middle)
            ));
            failure.function = Some(function.to_string());
            CheckOutcome::Fail(failure)
        } else {
            CheckOutcome::Pass
        }
    }
}

fn rand_below(rng: &mut TestRng, bound: usize) -> usize {
    (rng.next_u64() % bound as u64) as usize
}
