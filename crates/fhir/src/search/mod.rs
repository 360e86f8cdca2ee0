//! FHIR search: parameter definitions, index extraction and query parsing.

pub mod index;
pub mod normalize;
pub mod query;
pub mod registry;

pub use index::{CompositeValue, IndexEntry, IndexValue, extract, over_index_limit};
pub use query::{
    Chain, Clause, Has, Include, Modifier, ParseOptions, Prefix, SearchLimits, SearchRequest,
    SearchValue, SortColumn, SortKey, Summary, SystemMatch, TotalMode, parse_search,
};
pub use registry::{Column, ParamType, Registry, SearchParam, registry};
