//! Generated inputs: empty, small, large (up to 1 MiB), random bytes, valid
//! and invalid UTF-8, and JSON-ish text. proptest shrinks a failing input to
//! a minimal one.

use proptest::prelude::*;

/// Largest generated input.
pub const MAX_INPUT: usize = 1 << 20;

/// Inputs for plugin functions. Large inputs are rare (they cost time) but
/// present in every run of a few hundred cases.
pub fn any_input() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        6 => proptest::collection::vec(any::<u8>(), 0..64),
        4 => "\\PC{0,200}".prop_map(String::into_bytes),
        3 => invalid_utf8(),
        3 => json_ish().prop_map(String::into_bytes),
        3 => proptest::collection::vec(any::<u8>(), 64..8192),
        1 => large(),
    ]
    .boxed()
}

/// [`any_input`] without its largest shape, for plugins that make host
/// calls: their work grows with their application's (a host call per line
/// of a megabyte of two-byte lines is a million host calls), which the
/// checks do not measure; the `host-calls` check covers them.
pub fn any_input_for_host_calls() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        6 => proptest::collection::vec(any::<u8>(), 0..64),
        4 => "\\PC{0,200}".prop_map(String::into_bytes),
        3 => invalid_utf8(),
        3 => json_ish().prop_map(String::into_bytes),
        3 => proptest::collection::vec(any::<u8>(), 64..8192),
    ]
    .boxed()
}

/// How long a slow answer of the `host-calls` check takes: well inside the
/// default deadline of 1 s, so that a plugin making a few more calls
/// after it still finishes (`CALL-7`).
pub const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_millis(300);

/// The application's answers for the `host-calls` check, in order: empty,
/// small and large replies, one past the reply cap, failures with printable
/// messages, and at most one slow answer. Shrinks to fewer, smaller
/// answers and no slow one.
pub fn host_call_answers() -> BoxedStrategy<Vec<crate::host::ScriptedAnswer>> {
    use pabi_testkit::host_calls::Answer;
    let past_cap = crate::reference::HOST_CALL_REPLY_CAP as usize + 1;
    let answer = prop_oneof![
        2 => Just(Answer::Reply(Vec::new())),
        4 => proptest::collection::vec(any::<u8>(), 1..=16).prop_map(Answer::Reply),
        2 => proptest::collection::vec(any::<u8>(), 17..=4096).prop_map(Answer::Reply),
        1 => Just(Answer::Reply(vec![b'x'; past_cap])),
        3 => "[ -~]{0,80}".prop_map(Answer::Fail),
    ];
    (proptest::collection::vec(answer, 0..16), proptest::option::of(0..16usize))
        .prop_map(|(answers, slow)| {
            answers
                .into_iter()
                .enumerate()
                .map(|(i, answer)| crate::host::ScriptedAnswer {
                    answer,
                    delay: if slow == Some(i) { SLOW_ANSWER } else { std::time::Duration::ZERO },
                })
                .collect()
        })
        .boxed()
}

/// Config bytes for `pabi_init`: the same shapes, smaller.
pub fn any_config() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => proptest::collection::vec(any::<u8>(), 0..256),
        2 => "\\PC{0,64}".prop_map(String::into_bytes),
        2 => json_ish().prop_map(String::into_bytes),
    ]
    .boxed()
}

/// Bounded inputs for the leak check: at most 4 KiB.
pub fn bounded_input() -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..4096).boxed()
}

/// UTF-8 text with one invalid byte sequence spliced in.
fn invalid_utf8() -> impl Strategy<Value = Vec<u8>> {
    let bad = prop_oneof![
        Just(vec![0xff]),
        Just(vec![0xc3]),             // truncated two-byte sequence
        Just(vec![0xe2, 0x82]),       // truncated three-byte sequence
        Just(vec![0xed, 0xa0, 0x80]), // surrogate
        Just(vec![0xc0, 0xaf]),       // overlong
    ];
    ("\\PC{0,40}", bad, "\\PC{0,40}").prop_map(|(a, bad, b)| {
        let mut out = a.into_bytes();
        out.extend(bad);
        out.extend(b.into_bytes());
        out
    })
}

fn json_ish() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z ]{0,12}".prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..4).prop_map(|v| format!(
                "{{{}}}",
                v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")
            )),
        ]
    })
}

/// 64 KiB to 1 MiB: a short random pattern repeated (cheap to make), with
/// newlines so that line-oriented plugins see many lines.
fn large() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(any::<u8>(), 1..64), 64usize * 1024..=MAX_INPUT).prop_map(|(mut pattern, len)| {
        pattern.push(b'\n');
        // Whole copies of the pattern, not a byte at a time: at up to 1 MiB
        // per input, building it byte by byte was a tenth of a check's time.
        let mut input = pattern.repeat(len / pattern.len() + 1);
        input.truncate(len);
        input
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    #[test]
    fn inputs_cover_every_shape() {
        let mut runner = TestRunner::deterministic();
        let strategy = any_input();
        let (mut empty, mut large, mut invalid) = (false, false, false);
        for _ in 0..2000 {
            let input = strategy.new_tree(&mut runner).unwrap().current();
            assert!(input.len() <= MAX_INPUT);
            empty |= input.is_empty();
            large |= input.len() >= 64 * 1024;
            invalid |= std::str::from_utf8(&input).is_err();
        }
        assert!(empty && large && invalid);
    }
}
