//! Generated inputs and host-call answers, shaped by what a plugin
//! declares.
//!
//! A function whose input media type is `application/json` (or
//! `application/…+json`) gets JSON documents: nested (at times deeper than
//! any reasonable recursion bound), large, with edge numbers, escapes and
//! duplicate keys, and a few that are almost JSON. A `text/*` input gets
//! UTF-8 text with edge characters. Anything else gets bytes. Every shape
//! also comes at the boundary sizes ([`boundary_sizes`]): 0, 1, around
//! every power of two and around the 64 KiB page size, up to the run's input
//! cap. A client may send anything, so a quarter of the inputs are of the
//! other shapes, invalid UTF-8 included.
//!
//! The application's answers to host calls cover what a conforming host
//! and application may do (`CALL-4` … `CALL-7`, `LIM-14`): replies at every
//! boundary size from empty up to the reply cap and one past it, shaped by
//! the declared reply media type; failures with messages up to the message
//! cap and past it (the host cuts them); and slow answers.
//!
//! proptest shrinks a failing input or script to a minimal one.

use std::time::Duration;

use proptest::prelude::*;

use crate::host::ScriptedAnswer;

/// The default input cap of a run ([`crate::Options::max_input`]): the
/// largest input generated.
pub const MAX_INPUT: usize = 1 << 20;

/// The input cap of the property checks for a plugin that makes host
/// calls: its work grows with its application's (a host call per line of a
/// megabyte of two-byte lines is half a million host calls), which the
/// checks do not measure. Just past the page size, so that boundary still
/// comes.
pub const MAX_INPUT_WITH_HOST_CALLS: usize = 64 * 1024 + 1;

/// What a declared media type asks of the generator (`META-4`): the shape
/// of its documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Shape {
    /// `application/json` and `application/…+json`.
    Json,
    /// `text/*`.
    Text,
    /// Anything else, or nothing declared.
    Bytes,
}

impl Shape {
    /// The shape of a declared media type; parameters (`; charset=…`) and
    /// case do not matter.
    pub fn of(media_type: Option<&str>) -> Shape {
        let Some(media_type) = media_type else { return Shape::Bytes };
        let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        if essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json")) {
            Shape::Json
        } else if essence.starts_with("text/") {
            Shape::Text
        } else {
            Shape::Bytes
        }
    }

    /// The shape common to several declared types: `Bytes` unless they all
    /// agree.
    pub fn common<'a>(media_types: impl IntoIterator<Item = Option<&'a str>>) -> Shape {
        let mut shapes = media_types.into_iter().map(Shape::of);
        let Some(first) = shapes.next() else { return Shape::Bytes };
        if shapes.all(|shape| shape == first) {
            first
        } else {
            Shape::Bytes
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shape::Json => "JSON",
            Shape::Text => "text",
            Shape::Bytes => "bytes",
        })
    }
}

/// Inputs of every shape for a function of no declared media type, up to
/// [`MAX_INPUT`].
pub fn any_input() -> BoxedStrategy<Vec<u8>> {
    for_shape(Shape::Bytes, MAX_INPUT)
}

/// Inputs for a function of input media type `media_type`, at most `max`
/// bytes long.
pub fn for_media_type(media_type: Option<&str>, max: usize) -> BoxedStrategy<Vec<u8>> {
    for_shape(Shape::of(media_type), max)
}

/// Inputs of `shape`, at most `max` bytes: about three in four of that
/// shape (one in five at a boundary size), the rest of the other shapes.
/// Inputs above 64 KiB are rare (they cost time) but present in every run
/// of a few hundred cases.
pub fn for_shape(shape: Shape, max: usize) -> BoxedStrategy<Vec<u8>> {
    let shaped = match shape {
        Shape::Json => json_documents(),
        Shape::Text => edge_text(),
        Shape::Bytes => small_bytes(),
    };
    let mut shapes: Vec<(u32, BoxedStrategy<Vec<u8>>)> =
        vec![(2, Just(Vec::new()).boxed()), (12, shaped), (4, boundary_sized(shape, max)), (2, invalid_utf8())];
    if shape != Shape::Bytes {
        shapes.push((2, small_bytes()));
    }
    if shape != Shape::Json {
        shapes.push((1, json_documents()));
    }
    if shape != Shape::Text {
        shapes.push((1, edge_text()));
    }
    if max >= 64 * 1024 {
        shapes.push((1, large(max)));
    }
    let max_len = max;
    proptest::strategy::Union::new_weighted(shapes)
        .prop_map(move |mut input| {
            // The small shapes have no cap of their own.
            input.truncate(max_len);
            input
        })
        .boxed()
}

/// Config bytes for `pabi_init`: the same shapes, smaller.
pub fn any_config() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        2 => Just(Vec::new()),
        4 => proptest::collection::vec(any::<u8>(), 0..256),
        2 => "\\PC{0,64}".prop_map(String::into_bytes),
        2 => json_value().prop_map(String::into_bytes),
    ]
    .boxed()
}

/// Bounded inputs for the leak check: at most 4 KiB, of the function's
/// shape.
pub fn bounded_input(shape: Shape) -> BoxedStrategy<Vec<u8>> {
    for_shape(shape, 4096)
}

/// The sizes a plugin's buffers and loops get wrong: 0, 1, one either side
/// of every power of two, one either side of 64 KiB (the page size), and
/// `max` itself; none above `max`.
pub fn boundary_sizes(max: usize) -> Vec<usize> {
    let mut sizes = vec![0, 1, max];
    let mut power = 2usize;
    while power - 1 <= max {
        sizes.extend([power - 1, power, power + 1]);
        match power.checked_mul(2) {
            Some(next) => power = next,
            None => break,
        }
    }
    sizes.extend([65_535, 65_536, 65_537]);
    sizes.retain(|&size| size <= max);
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

/// An input of `shape` at one of the [`boundary_sizes`] up to `max`;
/// shrinking goes to smaller sizes.
fn boundary_sized(shape: Shape, max: usize) -> BoxedStrategy<Vec<u8>> {
    let sizes = boundary_sizes(max);
    (0..sizes.len(), any::<u64>()).prop_map(move |(index, seed)| fill(shape, sizes[index], seed)).boxed()
}

/// Exactly `len` bytes of `shape`, from `seed`. JSON is an array of edge
/// numbers, escaped strings and small objects, padded with whitespace to
/// the length (one byte is `0`); text repeats a line of edge characters,
/// cut at a character boundary and padded with dots; bytes repeat a seeded
/// pattern.
pub fn fill(shape: Shape, len: usize, seed: u64) -> Vec<u8> {
    let pick = |i: u64| (seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).rotate_left((i % 64) as u32) as usize;
    match shape {
        Shape::Bytes => {
            let pattern: Vec<u8> = (0..61u64).map(|i| pick(i) as u8).collect();
            pattern.iter().copied().cycle().take(len).collect()
        }
        Shape::Text => {
            let edge = EDGE_CHARACTERS[pick(1) % EDGE_CHARACTERS.len()];
            let line = format!("{edge} pabi \u{e9}t\u{e9} \u{1f600}\n");
            let mut text = line.repeat(len / line.len() + 1);
            let mut end = len;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            while text.len() < len {
                text.push('.');
            }
            text.into_bytes()
        }
        Shape::Json => {
            if len < 2 {
                return b"0"[..len].to_vec();
            }
            let mut doc = String::with_capacity(len);
            doc.push('[');
            let mut i = 0u64;
            loop {
                let element = match pick(i) % 3 {
                    0 => EDGE_NUMBERS[pick(i + 1) % EDGE_NUMBERS.len()].to_string(),
                    1 => format!("\"{}\"", EDGE_ESCAPES[pick(i + 1) % EDGE_ESCAPES.len()]),
                    _ => "{\"k\":[true,null]}".to_string(),
                };
                let separator = if i == 0 { "" } else { "," };
                // Whole elements while they fit with the closing bracket.
                if doc.len() + separator.len() + element.len() + 1 > len {
                    break;
                }
                doc.push_str(separator);
                doc.push_str(&element);
                i += 1;
            }
            while doc.len() + 1 < len {
                doc.push(' ');
            }
            doc.push(']');
            doc.into_bytes()
        }
    }
}

/// Numbers a JSON reader gets wrong: signs, exponents, the edges of i64,
/// u64 and f64, integers past 2^53, and the precision of decimals.
const EDGE_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.1",
    "1e308",
    "-1e308",
    "1e309",
    "5e-324",
    "1E+2",
    "1.5e-10",
    "9007199254740993",
    "-9223372036854775808",
    "9223372036854775807",
    "18446744073709551616",
    "123456789012345678901234567890",
    "0.30000000000000004",
];

/// JSON string contents: escaped quotes, backslashes and controls, a
/// surrogate pair, an escaped NUL, and raw non-ASCII.
const EDGE_ESCAPES: &[&str] = &[
    "",
    "\\\"",
    "\\\\",
    "\\/",
    "\\b\\f\\n\\r\\t",
    "\\u0000",
    "\\u001f",
    "\\ud83d\\ude00",
    "\\u00e9",
    "\u{e9}t\u{e9}",
    "\u{1f600}",
    "\u{202e}rtl",
    "\u{feff}",
];

/// Lone surrogates: the JSON grammar allows them, many readers refuse
/// them, and a reader that accepts them must not produce invalid UTF-8.
const LONE_SURROGATES: &[&str] = &["\\ud800", "\\udfff", "a\\ud83d", "\\ude00z"];

/// Characters a text handler gets wrong: NUL and controls, line ends of
/// every kind, a byte-order mark, a combining mark, characters of two,
/// three and four bytes, a joined sequence, zero-width and direction marks,
/// the replacement character, non-characters, both sides of the surrogate
/// gap, and the last code point.
const EDGE_CHARACTERS: &[&str] = &[
    "\0",
    "\r\n",
    "\r",
    "\t",
    "\u{7f}",
    "\u{85}",
    "\u{feff}",
    "e\u{301}",
    "\u{e9}",
    "\u{20ac}",
    "\u{1f600}",
    "\u{1f469}\u{200d}\u{1f4bb}",
    "\u{200b}",
    "\u{202e}",
    "\u{2028}",
    "\u{fffd}",
    "\u{fffe}",
    "\u{ffff}",
    "\u{10ffff}",
    "\u{d7ff}",
    "\u{e000}",
];

/// Bytes of every small shape: random, printable, longer random.
fn small_bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..64),
        4 => "\\PC{0,200}".prop_map(String::into_bytes),
        3 => proptest::collection::vec(any::<u8>(), 64..8192),
    ]
    .boxed()
}

/// UTF-8 text: words, edge characters and line ends; some texts end
/// without a newline.
fn edge_text() -> BoxedStrategy<Vec<u8>> {
    let piece = prop_oneof![
        3 => "[a-zA-Z0-9 ,.]{1,12}",
        3 => proptest::sample::select(EDGE_CHARACTERS).prop_map(str::to_string),
        1 => Just("\n".to_string()),
        1 => "\\PC{1,8}",
    ];
    proptest::collection::vec(piece, 0..48).prop_map(|pieces| pieces.concat().into_bytes()).boxed()
}

/// JSON documents, and a tenth that are almost JSON (cut short, a trailing
/// comma, single quotes, two documents), as clients send them.
fn json_documents() -> BoxedStrategy<Vec<u8>> {
    let doc = prop_oneof![
        8 => json_value(),
        // Up to 100,000 levels: a recursive reader in a language whose
        // stack grows (Go) only runs out far past a few thousand.
        2 => (prop_oneof![1usize..=300, 300usize..=5000, 5000usize..=100_000], any::<bool>())
            .prop_map(|(depth, arrays)| deep(depth, arrays)),
        1 => proptest::collection::vec(json_value(), 100..400).prop_map(|v| format!("[{}]", v.join(","))),
    ];
    prop_oneof![
        9 => doc.clone().prop_map(String::into_bytes),
        1 => (doc, 0usize..64, 0u8..4).prop_map(|(doc, cut, how)| almost_json(doc, cut, how)),
    ]
    .boxed()
}

/// `depth` nested arrays or objects around a number: a reader that recurses
/// without a bound overflows its stack.
fn deep(depth: usize, arrays: bool) -> String {
    let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
    format!("{}1{}", open.repeat(depth), close.repeat(depth))
}

/// `doc` made invalid the ways clients do it.
fn almost_json(mut doc: String, cut: usize, how: u8) -> Vec<u8> {
    match how {
        0 => {
            let mut end = doc.len().saturating_sub(1 + cut % doc.len().max(1));
            while !doc.is_char_boundary(end) {
                end -= 1;
            }
            doc.truncate(end);
        }
        1 => doc = format!("[{doc},]"),
        2 => doc = doc.replace('"', "'"),
        _ => doc = format!("{doc} {doc}"),
    }
    doc.into_bytes()
}

/// A JSON value: scalars of every kind (edge numbers and escapes among
/// them), arrays, and objects with duplicate and non-ASCII keys and
/// whitespace between tokens.
fn json_value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
        proptest::sample::select(EDGE_NUMBERS).prop_map(str::to_string),
        "[a-z ]{0,12}".prop_map(|s| format!("\"{s}\"")),
        proptest::sample::select(EDGE_ESCAPES).prop_map(|s| format!("\"{s}\"")),
    ];
    let leaf = prop_oneof![
        20 => leaf,
        1 => proptest::sample::select(LONE_SURROGATES).prop_map(|s| format!("\"{s}\"")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![3 => "[a-z]{1,6}", 1 => Just("k".to_string()), 1 => Just("\\u00e9".to_string())];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            proptest::collection::vec((key, inner), 0..5).prop_map(|v| {
                let members: Vec<String> = v.into_iter().map(|(k, v)| format!("\"{k}\" : {v}")).collect();
                format!("{{ {} }}", members.join(",\n"))
            }),
        ]
    })
    .boxed()
}

/// UTF-8 text with one invalid byte sequence spliced in.
fn invalid_utf8() -> BoxedStrategy<Vec<u8>> {
    let bad = prop_oneof![
        Just(vec![0xff]),
        Just(vec![0xc3]),             // truncated two-byte sequence
        Just(vec![0xe2, 0x82]),       // truncated three-byte sequence
        Just(vec![0xed, 0xa0, 0x80]), // surrogate
        Just(vec![0xc0, 0xaf]),       // overlong
    ];
    ("\\PC{0,40}", bad, "\\PC{0,40}")
        .prop_map(|(a, bad, b)| {
            let mut out = a.into_bytes();
            out.extend(bad);
            out.extend(b.into_bytes());
            out
        })
        .boxed()
}

/// 64 KiB to `max`: a short random pattern repeated (cheap to make), with
/// newlines so that line-oriented plugins see many lines.
fn large(max: usize) -> BoxedStrategy<Vec<u8>> {
    (proptest::collection::vec(any::<u8>(), 1..64), 64usize * 1024..=max)
        .prop_map(|(mut pattern, len)| {
            pattern.push(b'\n');
            // Whole copies of the pattern, not a byte at a time: at up to
            // 1 MiB per input, building it byte by byte was a tenth of a
            // check's time.
            let mut input = pattern.repeat(len / pattern.len() + 1);
            input.truncate(len);
            input
        })
        .boxed()
}

/// How long a slow answer of a script takes: well inside the default
/// deadline of 1 s, so that a plugin making a few more calls after it
/// still finishes (`CALL-7`).
pub const SLOW_ANSWER: Duration = Duration::from_millis(300);

/// The caps the application's answers are generated against.
#[derive(Clone, Copy, Debug)]
pub struct AnswerCaps {
    /// The host's reply cap (`LIM-14`): replies reach it, and one passes
    /// it.
    pub reply: usize,
    /// The cap a host cuts a handler's failure message to (`CALL-4`):
    /// messages reach it, and some pass it.
    pub message: usize,
}

/// The application's answers for the `host-calls` check, in order, one
/// per host call: replies of the declared reply `shape` at every boundary
/// size up to the reply cap and one past it, small replies of any bytes,
/// failures with messages of every size up to the message cap and past it,
/// and at most one slow answer. Shrinks to fewer, smaller answers and no
/// slow one.
pub fn host_call_answers(shape: Shape, caps: AnswerCaps) -> BoxedStrategy<Vec<ScriptedAnswer>> {
    use pabi_testkit::host_calls::Answer;
    let mut reply_sizes = boundary_sizes(caps.reply);
    reply_sizes.push(caps.reply + 1);
    let mut message_sizes = boundary_sizes(caps.message);
    message_sizes.extend([caps.message + 1, caps.message + 4]);
    let answer = prop_oneof![
        2 => Just(Answer::Reply(Vec::new())),
        3 => proptest::collection::vec(any::<u8>(), 1..=16).prop_map(Answer::Reply),
        3 => (0..64usize, any::<u64>()).prop_map(move |(len, seed)| Answer::Reply(fill(shape, len, seed))),
        2 => proptest::sample::select(reply_sizes)
            .prop_flat_map(move |len| any::<u64>().prop_map(move |seed| Answer::Reply(fill(shape, len, seed)))),
        2 => "[ -~]{0,80}".prop_map(Answer::Fail),
        1 => proptest::sample::select(message_sizes).prop_flat_map(|len| any::<u64>().prop_map(move |seed| {
            Answer::Fail(String::from_utf8(fill(Shape::Text, len, seed)).unwrap_or_default())
        })),
    ];
    // A slow answer costs real time (a third of the deadline), so one
    // script in eight has one.
    (proptest::collection::vec(answer, 0..16), proptest::option::weighted(0.125, 0..16usize))
        .prop_map(|(answers, slow)| {
            answers
                .into_iter()
                .enumerate()
                .map(|(i, answer)| ScriptedAnswer {
                    answer,
                    delay: if slow == Some(i) { SLOW_ANSWER } else { Duration::ZERO },
                })
                .collect()
        })
        .boxed()
}

/// The message of a down application's failures (`Application::Down`):
/// short or at the message cap.
pub fn down_message(caps: AnswerCaps) -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[ -~]{0,40}",
        1 => any::<u64>()
            .prop_map(move |seed| String::from_utf8(fill(Shape::Text, caps.message, seed)).unwrap_or_default()),
    ]
    .boxed()
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

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn media_types_shape_the_inputs() {
        assert_eq!(Shape::of(Some("application/json")), Shape::Json);
        assert_eq!(Shape::of(Some("Application/Problem+JSON; charset=utf-8")), Shape::Json);
        assert_eq!(Shape::of(Some("text/csv")), Shape::Text);
        assert_eq!(Shape::of(Some("application/octet-stream")), Shape::Bytes);
        assert_eq!(Shape::of(None), Shape::Bytes);
        assert_eq!(Shape::common([Some("text/plain"), Some("text/csv")]), Shape::Text);
        assert_eq!(Shape::common([Some("text/plain"), Some("application/json")]), Shape::Bytes);

        // The JSON shape itself: documents of the grammar, but for a tenth
        // that are almost JSON. serde_json refuses some of the grammar
        // (nesting past 128, numbers past f64, lone surrogates), which
        // counts as JSON here.
        let grammar = |input: &[u8]| match serde_json::from_slice::<serde_json::Value>(input) {
            Ok(_) => true,
            Err(e) => {
                ["number out of range", "recursion limit exceeded", "lone leading surrogate", "unexpected end of hex"]
                    .iter()
                    .any(|allowed| e.to_string().starts_with(allowed))
            }
        };
        let mut runner = TestRunner::deterministic();
        let (mut valid, mut deep, mut edge) = (0, false, false);
        let documents = json_documents();
        for _ in 0..500 {
            let input = documents.new_tree(&mut runner).unwrap().current();
            valid += u32::from(grammar(&input));
            edge |= contains(&input, b"\\ud83d") || contains(&input, b"9007199254740993");
            deep |= input.starts_with(&[b'['; 200]) || input.starts_with(&b"{\"a\":".repeat(100));
        }
        assert!((400..490).contains(&valid), "{valid} of 500 JSON documents are JSON");
        assert!(deep && edge);
        // A function of JSON input gets mostly JSON, and the other shapes.
        let json = for_media_type(Some("application/json"), MAX_INPUT);
        let shaped = (0..500).filter(|_| grammar(&json.new_tree(&mut runner).unwrap().current())).count();
        assert!((250..450).contains(&shaped), "{shaped} of 500 inputs of a JSON function are JSON");

        let text = for_media_type(Some("text/plain"), MAX_INPUT);
        let (mut utf8, mut astral) = (0, false);
        for _ in 0..500 {
            let input = text.new_tree(&mut runner).unwrap().current();
            if let Ok(text) = std::str::from_utf8(&input) {
                utf8 += 1;
                astral |= text.chars().any(|c| c as u32 > 0xffff);
            }
        }
        assert!(utf8 > 350 && astral, "{utf8} of 500 text inputs are UTF-8");
    }

    #[test]
    fn boundary_sizes_straddle_powers_of_two_and_the_page() {
        let sizes = boundary_sizes(MAX_INPUT);
        for size in [0, 1, 3, 4, 5, 255, 256, 257, 4095, 4096, 4097, 65_535, 65_536, 65_537, MAX_INPUT - 1, MAX_INPUT] {
            assert!(sizes.contains(&size), "{size} missing from {sizes:?}");
        }
        assert!(!sizes.contains(&(MAX_INPUT + 1)));
        assert_eq!(boundary_sizes(5), [0, 1, 2, 3, 4, 5]);
        for shape in [Shape::Json, Shape::Text, Shape::Bytes] {
            for size in boundary_sizes(70_000) {
                let filled = fill(shape, size, 7);
                assert_eq!(filled.len(), size, "{shape} at {size}");
                match shape {
                    Shape::Json if size > 0 => {
                        let parsed = serde_json::from_slice::<serde_json::Value>(&filled);
                        // `1e309` is JSON that serde_json refuses.
                        assert!(
                            parsed.is_ok() || parsed.is_err_and(|e| e.to_string().starts_with("number out of range")),
                            "{size} bytes of JSON"
                        );
                    }
                    Shape::Text => assert!(std::str::from_utf8(&filled).is_ok()),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn answers_reach_the_caps() {
        use pabi_testkit::host_calls::Answer;
        let caps = AnswerCaps { reply: 1 << 20, message: 65_536 };
        let strategy = host_call_answers(Shape::Json, caps);
        let mut runner = TestRunner::deterministic();
        let (mut at_cap, mut past_cap, mut long_message) = (false, false, false);
        for _ in 0..3000 {
            for scripted in strategy.new_tree(&mut runner).unwrap().current() {
                match scripted.answer {
                    Answer::Reply(reply) => {
                        at_cap |= reply.len() == caps.reply;
                        past_cap |= reply.len() == caps.reply + 1;
                    }
                    Answer::Fail(message) => long_message |= message.len() > caps.message,
                    Answer::Reenter(_) => unreachable!("scripts never call back"),
                }
            }
        }
        assert!(at_cap && past_cap && long_message);
    }
}
