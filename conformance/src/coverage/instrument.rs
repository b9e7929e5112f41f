//! The instrumented copy of a plugin: a probe at the entry of every block,
//! setting the block's bit in an exported `i64` global, and the table that
//! maps each bit back to its function and code offset.
//!
//! A *block* here is a straight-line stretch of code the probes can tell
//! apart: the start of every structured sequence (a function body, the body
//! of a `block`, `loop` and `try_table`, both arms of an `if`, the missing
//! `else` included), and the code that follows a nested `block`, `loop`,
//! `if` or `try_table` (reached when it ends or is branched out of) or a
//! conditional branch (`br_if`, `br_on_null`, `br_on_non_null`: its
//! fall-through). A call that returns continues its block, so it starts
//! none.

use std::collections::BTreeSet;

use walrus::ir::{BinaryOp, Const, GlobalGet, GlobalSet, Instr, InstrLocId, InstrSeqId, Value};
use walrus::{ConstExpr, FunctionId, LocalFunction, Module, ValType};

use super::{BlockInfo, Instrumented, WasmFunction};

/// The prefix of the exported counter globals: `__pabi_coverage_<k>` holds
/// the bits of blocks `64k` to `64k + 63`. It does not start with `pabi_`,
/// which the ABI reserves (`EXP-2`); other exports are allowed (`EXP-9`).
pub const COUNTER_PREFIX: &str = "__pabi_coverage_";

/// The most dictionary tokens kept from a module.
const MAX_TOKENS: usize = 256;

/// Why a plugin could not be instrumented.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstrumentError {
    #[error("the module does not parse for instrumentation: {0}")]
    Parse(String),
    #[error("the module already exports `{0}`, the name of a coverage counter")]
    NameTaken(String),
    #[error("the module has no code to instrument")]
    NoCode,
}

/// Where probes go in one function: per sequence, the instruction indices
/// a probe is inserted before, in order.
type Plan = Vec<(InstrSeqId, Vec<usize>)>;

/// Makes the instrumented copy of `wasm`. The plugin's exports, custom
/// sections (its `pabi` metadata) and name section are kept; only the
/// counters and their exports are added.
pub fn instrument(wasm: &[u8]) -> Result<Instrumented, InstrumentError> {
    let mut module = Module::from_buffer(wasm).map_err(|e| InstrumentError::Parse(format!("{e:#}")))?;
    let mut functions = Vec::new();
    let mut blocks = Vec::new();
    let mut plans: Vec<(FunctionId, Plan)> = Vec::new();
    let mut tokens = BTreeSet::new();
    let mut locals: Vec<(FunctionId, &LocalFunction)> = module.funcs.iter_local().collect();
    locals.sort_by_key(|(id, _)| id.index());
    for (id, local) in locals {
        // Rust's symbols, demangled without their hash; other names as
        // they are.
        let name = match &module.funcs.get(id).name {
            Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
            None => format!("func[{}]", id.index()),
        };
        let first = blocks.len();
        let mut plan = Plan::new();
        let mut pending = vec![local.entry_block()];
        while let Some(seq_id) = pending.pop() {
            let seq = local.block(seq_id);
            let mut positions = vec![0];
            for (i, (instr, _)) in seq.instrs.iter().enumerate() {
                match instr {
                    Instr::Block(b) => pending.push(b.seq),
                    Instr::Loop(l) => pending.push(l.seq),
                    Instr::TryTable(t) => pending.push(t.seq),
                    Instr::IfElse(e) => pending.extend([e.consequent, e.alternative]),
                    _ => {}
                }
                if matches!(
                    instr,
                    Instr::Block(_)
                        | Instr::Loop(_)
                        | Instr::TryTable(_)
                        | Instr::IfElse(_)
                        | Instr::BrIf(_)
                        | Instr::BrOnNull(_)
                        | Instr::BrOnNonNull(_)
                ) {
                    positions.push(i + 1);
                }
                collect_token(&seq.instrs, i, &mut tokens);
            }
            for &at in &positions {
                let loc = seq.instrs.get(at).map_or(seq.end, |(_, loc)| *loc);
                blocks.push(BlockInfo { function: functions.len() as u32, offset: offset(loc) });
            }
            plan.push((seq_id, positions));
        }
        functions.push(WasmFunction {
            index: id.index() as u32,
            name,
            blocks: first as u32..blocks.len() as u32,
            offset: offset(local.block(local.entry_block()).instrs.first().map_or(InstrLocId::default(), |i| i.1)),
        });
        plans.push((id, plan));
    }
    if blocks.is_empty() {
        return Err(InstrumentError::NoCode);
    }
    for data in module.data.iter() {
        collect_strings(&data.value, &mut tokens);
    }
    let counters = blocks.len().div_ceil(64);
    let mut globals = Vec::with_capacity(counters);
    for k in 0..counters {
        let name = format!("{COUNTER_PREFIX}{k}");
        if module.exports.iter().any(|e| e.name == name) {
            return Err(InstrumentError::NameTaken(name));
        }
        let global = module.globals.add_local(ValType::I64, true, false, ConstExpr::Value(Value::I64(0)));
        module.exports.add(&name, global);
        globals.push(global);
    }
    let mut next = 0usize;
    for (id, plan) in plans {
        let walrus::FunctionKind::Local(local) = &mut module.funcs.get_mut(id).kind else { continue };
        for (seq_id, positions) in plan {
            let seq = local.block_mut(seq_id);
            let old = std::mem::take(&mut seq.instrs);
            let mut instrs = Vec::with_capacity(old.len() + 4 * positions.len());
            let mut positions = positions.into_iter().peekable();
            for (i, instr) in old.into_iter().enumerate() {
                while positions.next_if(|&at| at == i).is_some() {
                    instrs.extend(probe(globals[next / 64], next % 64));
                    next += 1;
                }
                instrs.push(instr);
            }
            // A probe after the last instruction: the continuation of a
            // block that ends its sequence.
            for _ in positions {
                instrs.extend(probe(globals[next / 64], next % 64));
                next += 1;
            }
            seq.instrs = instrs;
        }
    }
    let tokens = tokens.into_iter().take(MAX_TOKENS).collect();
    Ok(Instrumented { wasm: module.emit_wasm(), functions, blocks, tokens })
}

/// `global |= 1 << bit`: four instructions that leave the stack as it was.
fn probe(global: walrus::GlobalId, bit: usize) -> [(Instr, InstrLocId); 4] {
    let loc = InstrLocId::default();
    [
        (Instr::GlobalGet(GlobalGet { global }), loc),
        (Instr::Const(Const { value: Value::I64(1i64 << bit) }), loc),
        (Instr::Binop(walrus::ir::Binop { op: BinaryOp::I64Or }), loc),
        (Instr::GlobalSet(GlobalSet { global }), loc),
    ]
}

fn offset(loc: InstrLocId) -> Option<u32> {
    (!loc.is_default()).then(|| loc.data())
}

/// A constant compared against, or subtracted before a `br_table` (a
/// `switch` on a character): the bytes an input may need, for the
/// mutator's dictionary. A byte-sized one as that byte; a larger one in
/// its little-endian bytes and as decimal text.
fn collect_token(instrs: &[(Instr, InstrLocId)], i: usize, tokens: &mut BTreeSet<Vec<u8>>) {
    let Instr::Const(Const { value }) = &instrs[i].0 else { return };
    let Some((Instr::Binop(walrus::ir::Binop { op }), _)) = instrs.get(i + 1) else { return };
    use BinaryOp::*;
    let compares = matches!(
        op,
        I32Eq | I32Ne | I32LtS | I32LtU | I32GtS | I32GtU | I32LeS | I32LeU | I32GeS | I32GeU | I32Sub | I64Eq | I64Ne
    );
    if !compares {
        return;
    }
    match *value {
        Value::I32(c) if (0..=255).contains(&c) => {
            tokens.insert(vec![c as u8]);
        }
        Value::I32(c) => {
            tokens.insert(c.to_le_bytes().to_vec());
            tokens.insert(c.to_string().into_bytes());
        }
        Value::I64(c) => {
            tokens.insert(c.to_le_bytes().to_vec());
            tokens.insert(c.to_string().into_bytes());
        }
        _ => {}
    }
}

/// Printable runs of 4 to 32 bytes in a data segment: keywords, field
/// names and messages a parser compares against.
fn collect_strings(data: &[u8], tokens: &mut BTreeSet<Vec<u8>>) {
    for run in data.split(|b| !(0x20..0x7f).contains(b)) {
        if (4..=32).contains(&run.len()) && tokens.len() < MAX_TOKENS * 4 {
            tokens.insert(run.to_vec());
        }
    }
}
