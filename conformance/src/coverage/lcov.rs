//! The blocks reached and missed, as an lcov tracefile: one record for the
//! plugin, a function entry per wasm function (named from the name
//! section) and a line entry per block. A wasm module has no source lines
//! without DWARF, which is not read: a block's "line" is its byte offset in
//! the module, so that tools sort and show blocks in code order.

use std::fmt::Write as _;

use super::CoverageReport;

/// The lcov tracefile of `report` for the plugin at `path`.
pub fn lcov(report: &CoverageReport, path: &str) -> String {
    let mut out = String::new();
    let map = &report.map;
    // `writeln!` to a String cannot fail.
    let _ = writeln!(out, "TN:explore");
    let _ = writeln!(out, "SF:{path}");
    let line = |offset: Option<u32>, ordinal: u32| offset.map_or(u64::from(ordinal) + 1, u64::from);
    for f in &map.functions {
        let _ = writeln!(out, "FN:{},{}", line(f.offset, f.blocks.start), lcov_name(&f.name));
    }
    let mut hit_functions = 0;
    for f in &map.functions {
        let hits = u32::from(f.blocks.clone().any(|b| report.reached.has(b)));
        hit_functions += hits;
        let _ = writeln!(out, "FNDA:{hits},{}", lcov_name(&f.name));
    }
    let _ = writeln!(out, "FNF:{}", map.functions.len());
    let _ = writeln!(out, "FNH:{hit_functions}");
    let mut lines: Vec<(u64, u32)> = map
        .blocks
        .iter()
        .enumerate()
        .map(|(k, b)| (line(b.offset, k as u32), u32::from(report.reached.has(k as u32))))
        .collect();
    // Blocks at one offset (an empty sequence's end and the code after it)
    // are one line, hit when either is.
    lines.sort_unstable();
    lines.dedup_by(|later, first| {
        let same = later.0 == first.0;
        if same {
            first.1 |= later.1;
        }
        same
    });
    for (line, hit) in &lines {
        let _ = writeln!(out, "DA:{line},{hit}");
    }
    let _ = writeln!(out, "LF:{}", lines.len());
    let _ = writeln!(out, "LH:{}", lines.iter().filter(|(_, hit)| *hit > 0).count());
    out + "end_of_record\n"
}

/// A function name lcov reads back whole: no comma or line break.
fn lcov_name(name: &str) -> String {
    name.chars().map(|c| if c == ',' || c.is_control() { '_' } else { c }).collect()
}
