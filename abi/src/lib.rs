//! The pabi plugin ABI as data.
//!
//! Every other pabi crate takes its names, signatures and numbers from here, so
//! that the validator, the hosts and the tools cannot drift apart. Each item
//! cites the clause of `spec/abi.md` that defines it.
//!
//! The formats that test plugins and hosts (shared test vectors, host-call
//! tables, the host-adapter protocol) are not here but in `pabi-testkit`,
//! which builds on this crate: an application that embeds a host compiles
//! the ABI, not the test tooling.
//!
//! ```
//! use pabi_abi::{AbiVersion, Status, HOST_ABI};
//!
//! let plugin: AbiVersion = "1.0".parse().unwrap();
//! assert!(HOST_ABI.accepts(plugin));
//! assert_eq!(Status::from_code(1), Some(Status::InvalidInput));
//! ```

mod clauses;
mod envelope;
mod errors;
mod features;
mod ijson;
pub mod since;
pub use envelope::{function_imports, read_envelope, EnvelopeError};
mod imports;
pub use ijson::MAX_METADATA_DEPTH;
mod limits;
mod metadata;
mod section;
mod status;
pub mod text;
mod trap;
mod version;
mod wasi;

pub use clauses::{clause_definition, defined_ids, Area, Clause, UnknownClause};
pub use errors::HostErrorKind;
pub use features::{feature_profile, named_features, PROFILE_NAME};
pub use imports::{
    find_import, ExportSpec, ImportCode, ImportSpec, ValType, EXPORTS, FN_EXPORT_PREFIX, IMPORTS, IMPORT_MODULE,
    RESERVED_EXPORT_PREFIX,
};
pub use limits::{Limits, MAX_INPUT_LEN};
pub use metadata::{
    is_valid_function_name, is_valid_host_call_name, Capability, FunctionMeta, HostCallMeta, Metadata, MetadataError,
    Profile, MAX_METADATA_BYTES, METADATA_SCHEMA,
};
pub use section::{
    embed_metadata, encode_custom_section, find_custom_sections, CustomSection, EmbedError, METADATA_SECTION,
};
pub use status::Status;
pub use trap::TrapKind;
pub use version::{AbiVersion, VersionParseError, HOST_ABI};
pub use wasi::{
    wasi_functions, wasi_import_requirement, wasi_signature, wasi_since, WasiRequirement, WasiSignature, WasiValType,
    WASI_MODULE,
};
