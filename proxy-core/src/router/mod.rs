//! The HTTP router: picks the virtual host by Host / `:authority`, then the first route
//! of that host, in config order, whose path, method and header conditions all hold.
//!
//! A [`RouteTable`] is built and validated once per config snapshot and is immutable
//! afterwards: lookups take no lock and, on the common path, allocate nothing.
//!
//! - Virtual hosts are selected in Envoy's order: an exact domain, then the longest
//!   suffix wildcard (`*.example.com`), then the longest prefix wildcard (`api.*`), then
//!   `*`. The port of the Host header is ignored and the comparison is case-insensitive.
//! - Routes are indexed by path (exact paths in a hash map, prefixes in a radix trie,
//!   regexes behind [`regex::RegexSet`] filters), so a lookup does not scan thousands of
//!   routes; of the candidates, the one with the lowest config index whose method and
//!   header conditions hold wins, exactly as a linear first-match scan would decide.

mod filter_stacks;
mod hash;
mod host;
mod matcher;
mod path_index;
mod route;
mod table;

#[cfg(test)]
mod tests;

pub(crate) use filter_stacks::ListenerStacks;
pub use route::{HeaderMutations, RetryPolicy, Route};
pub use table::RouteTable;
