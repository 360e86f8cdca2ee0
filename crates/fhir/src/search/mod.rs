//! FHIR search: parameter definitions, index extraction and query parsing.

pub mod index;
pub mod normalize;
pub mod query;
pub mod registry;

pub use index::{CompositeValue, IndexEntry, IndexValue, extract};
pub use query::{
    Chain, Clause, Has, Include, Modifier, ParseOptions, Prefix, SearchRequest, SearchValue,
    SortColumn, SortKey, Summary, SystemMatch, TotalMode, parse_search,
};
pub use registry::{Column, ParamType, Registry, SearchParam, registry};
