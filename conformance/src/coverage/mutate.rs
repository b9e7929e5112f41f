//! The mutations of the `explore` check, as a coverage-guided fuzzer makes
//! them: bit and byte flips, inserted, deleted and duplicated ranges,
//! splices of two corpus entries, interesting integers, edits of ASCII
//! digits and JSON tokens, lengths around powers of two, and tokens of the
//! plugin's own dictionary (the constants its code compares against).

/// A small, fast generator (SplitMix64): the same seed gives the same
/// mutations, so a run replays with `--seed`.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    /// A position in `0..=len`, half the time among the first 8: headers,
    /// magic numbers and the first token decide most branches.
    fn position(&mut self, len: usize) -> usize {
        if self.chance(2) {
            self.below(len.min(8) + 1)
        } else {
            self.below(len + 1)
        }
    }
}

/// The longest input a mutation makes: mutants stay cheap to run; the
/// generated seeds cover the large sizes.
pub const MAX_MUTANT: usize = 64 << 10;

const INTERESTING: [i64; 16] =
    [0, 1, -1, 16, 32, 64, 100, 127, 128, 255, 256, 1024, 4096, 32767, 65535, i32::MAX as i64];

const JSON_TOKENS: [&[u8]; 16] = [
    b"{", b"}", b"[", b"]", b"\"", b":", b",", b"null", b"true", b"false", b"-0", b"1e999", b"\\u0000", b"\\",
    b"{\"\":", b" ",
];

const NUMBERS: [&[u8]; 8] =
    [b"0", b"-1", b"18446744073709551616", b"1e308", b"-9223372036854775809", b"0.5", b"NaN", b"00"];

/// `input` changed by one to four stacked mutations; `other` is another
/// corpus entry to splice with, `tokens` the plugin's dictionary.
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], tokens: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, &mut out, other, tokens);
    }
    out.truncate(MAX_MUTANT);
    out
}

fn mutate_once(rng: &mut Rng, out: &mut Vec<u8>, other: &[u8], tokens: &[Vec<u8>]) {
    let len = out.len();
    match rng.below(14) {
        0 if len > 0 => {
            let at = rng.below(len);
            out[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.position(len - 1);
            out[at] = rng.next_u64() as u8;
        }
        2 => {
            let at = rng.position(len);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
        3 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            out.drain(at..at + n);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(64));
            let copy = out[at..at + n].to_vec();
            let to = rng.below(len + 1);
            out.splice(to..to, copy);
        }
        5 if !other.is_empty() => {
            let keep = rng.below(len + 1);
            let from = rng.below(other.len());
            out.truncate(keep);
            out.extend_from_slice(&other[from..]);
        }
        6 if len > 0 => {
            let value = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1, 2, 4, 8][rng.below(4)].min(len);
            let at = rng.position(len - width);
            let bytes = if rng.chance(2) { value.to_le_bytes() } else { value.to_be_bytes() };
            let bytes = if rng.chance(2) { &bytes[..width] } else { &bytes[8 - width..] };
            out[at..at + width].copy_from_slice(bytes);
        }
        7 => {
            // A run of ASCII digits becomes another number.
            let digits: Vec<usize> = (0..len).filter(|&i| out[i].is_ascii_digit()).collect();
            let number = NUMBERS[rng.below(NUMBERS.len())];
            if digits.is_empty() {
                let at = rng.position(len);
                out.splice(at..at, number.iter().copied());
            } else {
                let start = digits[rng.below(digits.len())];
                let end = (start..len).find(|&i| !out[i].is_ascii_digit()).unwrap_or(len);
                out.splice(start..end, number.iter().copied());
            }
        }
        8 => {
            let token = JSON_TOKENS[rng.below(JSON_TOKENS.len())];
            let at = rng.position(len);
            out.splice(at..at, token.iter().copied());
        }
        9 => {
            // Around a power of two: 2^k - 1, 2^k or 2^k + 1 bytes, padded
            // with copies of the input (or zeros).
            let k = rng.below(17);
            let target = ((1usize << k) + rng.below(3)).saturating_sub(1).min(MAX_MUTANT);
            if target <= len {
                out.truncate(target);
            } else if len == 0 {
                out.resize(target, 0);
            } else {
                while out.len() < target {
                    let n = (target - out.len()).min(len);
                    out.extend_from_within(..n);
                }
            }
        }
        10..=13 if !tokens.is_empty() => {
            let token = &tokens[rng.below(tokens.len())];
            if rng.chance(2) || len < token.len() {
                // Appended half of those times: a prefix the code has
                // accepted so far, continued.
                let at = if rng.chance(2) { len } else { rng.position(len) };
                out.splice(at..at, token.iter().copied());
            } else {
                let at = rng.position(len - token.len());
                out[at..at + token.len()].copy_from_slice(token);
            }
        }
        _ => {
            let at = rng.position(len);
            out.insert(at, rng.next_u64() as u8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_bounded_and_replay_from_the_seed() {
        let tokens = vec![b"PABI".to_vec(), vec![0x7b]];
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let mut input = b"{\"n\":12}".to_vec();
        let mut changed = 0;
        for _ in 0..5000 {
            let next = mutate(&mut a, &input, b"other", &tokens);
            assert_eq!(next, mutate(&mut b, &input, b"other", &tokens));
            assert!(next.len() <= MAX_MUTANT);
            changed += usize::from(next != input);
            input = if next.len() > 4096 { b"x".to_vec() } else { next };
        }
        assert!(changed > 4000, "only {changed} of 5000 mutants differ");
    }
}
