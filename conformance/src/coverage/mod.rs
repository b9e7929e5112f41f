//! Coverage of a plugin's code under the `explore` check: an instrumented
//! copy of the plugin ([`instrument()`]) counts which blocks each input
//! reaches; the check keeps the inputs that reach new ones in a corpus
//! ([`corpus`]) and mutates them further ([`mutate`]); the blocks reached
//! are reported per wasm function ([`CoverageReport`]) and as an lcov file
//! ([`lcov()`]).

pub mod corpus;
mod instrument;
mod lcov;
pub mod mutate;

use std::ops::Range;
use std::sync::Arc;

use serde::Serialize;

pub use instrument::{instrument, InstrumentError, COUNTER_PREFIX};
pub use lcov::lcov;

/// The instrumented copy on its way from the thread that makes it (in a
/// mutex, so that the run stays `Sync` for its function threads).
pub(crate) type Prepared = std::sync::Mutex<std::sync::mpsc::Receiver<Result<Arc<Instrumented>, InstrumentError>>>;

/// One block of the instrumented code: its function (an index into
/// [`Instrumented::functions`]) and the module offset of its first
/// instruction, when it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockInfo {
    pub function: u32,
    pub offset: Option<u32>,
}

/// A function defined in the module (imports have no code).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmFunction {
    /// Its index in the module's function index space.
    pub index: u32,
    /// Its name from the name section (a Rust symbol demangled), or
    /// `func[INDEX]`.
    pub name: String,
    /// Its blocks: bits `blocks.start..blocks.end` of the counters.
    pub blocks: Range<u32>,
    /// The module offset of its first instruction.
    pub offset: Option<u32>,
}

/// A plugin's instrumented copy and the map from its counter bits back to
/// the plugin's code.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Instrumented {
    /// The instrumented module.
    pub wasm: Vec<u8>,
    /// The module's functions with code, in index order.
    pub functions: Vec<WasmFunction>,
    /// Every block; block `k` is bit `k % 64` of counter `k / 64`.
    pub blocks: Vec<BlockInfo>,
    /// Constants the code compares against and strings of its data
    /// segments, sorted: the mutator's dictionary.
    pub tokens: Vec<Vec<u8>>,
}

/// A set of blocks, one bit each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bits(pub Vec<u64>);

impl Bits {
    pub fn new(blocks: usize) -> Self {
        Bits(vec![0; blocks.div_ceil(64)])
    }

    /// Adds `other`; returns how many blocks were new.
    pub fn merge(&mut self, other: &Bits) -> u32 {
        if self.0.len() < other.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        let mut new = 0;
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            new += (theirs & !*mine).count_ones();
            *mine |= theirs;
        }
        new
    }

    pub fn has(&self, block: u32) -> bool {
        self.0.get(block as usize / 64).is_some_and(|word| word & (1u64 << (block % 64)) != 0)
    }

    pub fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    fn count_in(&self, blocks: &Range<u32>) -> u32 {
        blocks.clone().filter(|&b| self.has(b)).count() as u32
    }
}

/// What the `explore` check reached: in total, per plugin function
/// explored, and per wasm function. `#[non_exhaustive]`: made by the check.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct CoverageReport {
    /// Blocks reached by any input, `pabi_init` included.
    pub blocks_reached: u32,
    /// Blocks in the module.
    pub blocks_total: u32,
    /// Each plugin function explored: the blocks its inputs reached and
    /// how many inputs ran.
    pub plugin_functions: Vec<ExploredFunction>,
    /// Each wasm function with code, in index order.
    pub functions: Vec<FunctionCoverage>,
    /// The corpus folder, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corpus: Option<CorpusStats>,
    /// The map and the blocks reached, for [`lcov()`].
    #[serde(skip)]
    pub map: Arc<Instrumented>,
    #[serde(skip)]
    pub reached: Bits,
}

/// The exploration of one plugin function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ExploredFunction {
    pub function: String,
    pub blocks_reached: u32,
    pub cases: u32,
    /// The last failure of the instrumented copy that the plugin itself
    /// did not repeat (the probes cost time and fuel), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unconfirmed: Option<String>,
}

/// Blocks reached in one wasm function.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FunctionCoverage {
    pub index: u32,
    pub name: String,
    pub blocks_reached: u32,
    pub blocks_total: u32,
}

/// The corpus of a run: the inputs read from it and written to it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CorpusStats {
    /// The plugin's folder, `<corpus>/<plugin>`.
    pub dir: std::path::PathBuf,
    pub read: u32,
    pub written: u32,
    /// Inputs that could not be written, with the first error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_error: Option<String>,
}

impl CoverageReport {
    pub(crate) fn new(
        map: Arc<Instrumented>,
        reached: Bits,
        plugin_functions: Vec<ExploredFunction>,
        corpus: Option<CorpusStats>,
    ) -> Self {
        let functions = map
            .functions
            .iter()
            .map(|f| FunctionCoverage {
                index: f.index,
                name: f.name.clone(),
                blocks_reached: reached.count_in(&f.blocks),
                blocks_total: f.blocks.len() as u32,
            })
            .collect();
        CoverageReport {
            blocks_reached: reached.count(),
            blocks_total: map.blocks.len() as u32,
            plugin_functions,
            functions,
            corpus,
            map,
            reached,
        }
    }

    /// Blocks reached, in percent of all blocks.
    pub fn percent(&self) -> f64 {
        percent(self.blocks_reached, self.blocks_total)
    }

    /// Wasm functions with at least one block reached.
    pub fn functions_reached(&self) -> usize {
        self.functions.iter().filter(|f| f.blocks_reached > 0).count()
    }
}

pub(crate) fn percent(part: u32, total: u32) -> f64 {
    if total == 0 {
        100.0
    } else {
        100.0 * f64::from(part) / f64::from(total)
    }
}
