//! The path index of one virtual host: which routes' path conditions a path satisfies,
//! without scanning every route.
//!
//! Every list below holds route indices in ascending (config) order. A lookup keeps the
//! best (lowest) accepted index found so far and stops reading a list at the first entry
//! not below it, so the result equals a linear first-match scan's.

use regex::{Regex, RegexSet, RegexSetBuilder};

use super::{hash::FxHashMap, matcher};
use crate::{config::PathMatchConfig, ConfigError};

/// Regex routes are filtered by one [`RegexSet`] per this many routes.
const REGEX_CHUNK: usize = 32;

/// A validated path condition.
#[derive(Debug)]
pub(super) enum PathMatch {
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    /// Anchored to match the whole path.
    Regex(Regex),
}

impl PathMatch {
    /// Validates a route's path condition; `field` is the path of the `match` object.
    pub(super) fn build(field: &str, cfg: Option<&PathMatchConfig>) -> Result<Self, ConfigError> {
        let literal = |kind: &str, p: &str| {
            if p.starts_with('/') {
                Ok(p.into())
            } else {
                Err(ConfigError::new(
                    format!("{field}.path.{kind}"),
                    format_args!("{p:?} must start with '/'"),
                ))
            }
        };
        Ok(match cfg {
            None => Self::Any,
            Some(PathMatchConfig::Exact(p)) => Self::Exact(literal("exact", p)?),
            Some(PathMatchConfig::Prefix(p)) => Self::Prefix(literal("prefix", p)?),
            Some(PathMatchConfig::Regex(p)) => {
                Self::Regex(matcher::whole_str_regex(&format!("{field}.path.regex"), p)?)
            }
        })
    }
}

/// Collects the path conditions of one virtual host's routes, in config order.
#[derive(Debug, Default)]
pub(super) struct PathIndexBuilder {
    exact: FxHashMap<Box<str>, Vec<u32>>,
    trie: TrieBuilder,
    any: Vec<u32>,
    regex: Vec<(u32, Regex)>,
}

impl PathIndexBuilder {
    /// Adds route `idx`; indices must be added in ascending order.
    pub(super) fn add(&mut self, idx: u32, m: PathMatch) {
        match m {
            PathMatch::Any => self.any.push(idx),
            PathMatch::Exact(p) => self.exact.entry(p).or_default().push(idx),
            PathMatch::Prefix(p) => self.trie.insert(p.as_bytes(), idx),
            PathMatch::Regex(re) => self.regex.push((idx, re)),
        }
    }

    /// Freezes the index; `field` (the virtual host's path) names the routes if the
    /// regex filters cannot be built.
    pub(super) fn build(self, field: &str) -> Result<PathIndex, ConfigError> {
        let mut regex = Vec::with_capacity(self.regex.len().div_ceil(REGEX_CHUNK));
        let mut routes = self.regex.into_iter().peekable();
        while routes.peek().is_some() {
            let chunk: Box<[(u32, Regex)]> = routes.by_ref().take(REGEX_CHUNK).collect();
            let first = chunk.first().map_or(u32::MAX, |(i, _)| *i);
            let set = RegexSetBuilder::new(chunk.iter().map(|(_, re)| re.as_str()))
                .size_limit(matcher::REGEX_SIZE_LIMIT.saturating_mul(chunk.len()))
                .build()
                .map_err(|e| {
                    ConfigError::new(
                        format!("{field}.routes[{first}].match.path.regex"),
                        format_args!("the regex routes from here on are too large together: {e}"),
                    )
                })?;
            regex.push(RegexChunk {
                first,
                set,
                routes: chunk,
            });
        }
        Ok(PathIndex {
            exact: self.exact.into_iter().map(|(k, v)| (k, v.into())).collect(),
            trie: self.trie.build(),
            any: self.any.into(),
            regex: regex.into(),
        })
    }
}

/// The frozen path index of one virtual host.
#[derive(Debug)]
pub(super) struct PathIndex {
    exact: FxHashMap<Box<str>, Box<[u32]>>,
    trie: Trie,
    any: Box<[u32]>,
    regex: Box<[RegexChunk]>,
}

#[derive(Debug)]
struct RegexChunk {
    /// The lowest route index of the chunk.
    first: u32,
    /// Matches when any route of the chunk matches.
    set: RegexSet,
    routes: Box<[(u32, Regex)]>,
}

impl PathIndex {
    /// The lowest route index whose path condition holds for `path` and that `accept`s.
    #[inline]
    pub(super) fn find<F: FnMut(u32) -> bool>(&self, path: &str, mut accept: F) -> Option<u32> {
        let mut best = u32::MAX;
        if let Some(list) = self.exact.get(path) {
            scan(list, &mut best, &mut accept);
        }
        self.trie
            .walk(path.as_bytes(), |list| scan(list, &mut best, &mut accept));
        scan(&self.any, &mut best, &mut accept);
        for chunk in self.regex.iter() {
            if chunk.first >= best {
                break;
            }
            if !chunk.set.is_match(path) {
                continue;
            }
            for (idx, re) in chunk.routes.iter() {
                if *idx >= best {
                    break;
                }
                if re.is_match(path) && accept(*idx) {
                    best = *idx;
                    break;
                }
            }
        }
        (best != u32::MAX).then_some(best)
    }
}

/// Lowers `best` to the first index of the sorted `list` below it that is accepted.
#[inline]
fn scan<F: FnMut(u32) -> bool>(list: &[u32], best: &mut u32, accept: &mut F) {
    for &idx in list {
        if idx >= *best {
            return;
        }
        if accept(idx) {
            *best = idx;
            return;
        }
    }
}

// === Prefix radix trie ===

/// A radix trie over prefix bytes; a node holds the routes whose prefix ends there.
#[derive(Debug)]
struct Trie {
    /// `nodes[0]` is the root, whose label is empty.
    nodes: Box<[Node]>,
}

#[derive(Debug)]
struct Node {
    /// The bytes on the edge from the parent; non-empty except at the root.
    label: Box<[u8]>,
    routes: Box<[u32]>,
    /// The first byte of each child's label, sorted, parallel to `children`.
    child_keys: Box<[u8]>,
    children: Box<[u32]>,
}

impl Trie {
    /// Calls `visit` with the routes of every prefix of `path` in the trie.
    #[inline]
    fn walk(&self, path: &[u8], mut visit: impl FnMut(&[u32])) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        let mut rest = path;
        loop {
            if !node.routes.is_empty() {
                visit(&node.routes);
            }
            let Some(&b) = rest.first() else {
                return;
            };
            let Ok(k) = node.child_keys.binary_search(&b) else {
                return;
            };
            let child = node
                .children
                .get(k)
                .and_then(|&c| self.nodes.get(c as usize));
            let Some(child) = child else {
                return;
            };
            match rest.strip_prefix(&*child.label) {
                Some(r) => {
                    rest = r;
                    node = child;
                }
                None => return,
            }
        }
    }
}

#[derive(Debug)]
struct TrieBuilder {
    nodes: Vec<BuildNode>,
}

#[derive(Debug, Default)]
struct BuildNode {
    label: Vec<u8>,
    routes: Vec<u32>,
    children: Vec<usize>,
}

impl Default for TrieBuilder {
    fn default() -> Self {
        Self {
            nodes: vec![BuildNode::default()],
        }
    }
}

impl TrieBuilder {
    fn insert(&mut self, key: &[u8], idx: u32) {
        let mut cur = 0;
        let mut rest = key;
        loop {
            let Some(&b) = rest.first() else {
                self.nodes[cur].routes.push(idx);
                return;
            };
            let nodes = &self.nodes;
            let found = nodes[cur]
                .children
                .iter()
                .copied()
                .find(|&c| nodes[c].label.first() == Some(&b));
            let Some(child) = found else {
                let new = self.nodes.len();
                self.nodes.push(BuildNode {
                    label: rest.to_vec(),
                    routes: vec![idx],
                    children: vec![],
                });
                self.nodes[cur].children.push(new);
                return;
            };
            let label = &self.nodes[child].label;
            let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if common < label.len() {
                // Split the edge: cur -> mid (label[..common]) -> child (label[common..]).
                let tail = self.nodes[child].label.split_off(common);
                let head = std::mem::replace(&mut self.nodes[child].label, tail);
                let mid = self.nodes.len();
                self.nodes.push(BuildNode {
                    label: head,
                    routes: vec![],
                    children: vec![child],
                });
                for c in &mut self.nodes[cur].children {
                    if *c == child {
                        *c = mid;
                    }
                }
                cur = mid;
            } else {
                cur = child;
            }
            rest = &rest[common..];
        }
    }

    fn build(self) -> Trie {
        let keys: Vec<u8> = self
            .nodes
            .iter()
            .map(|n| n.label.first().copied().unwrap_or(0))
            .collect();
        let nodes = self
            .nodes
            .into_iter()
            .map(|n| {
                let mut children = n.children;
                children.sort_unstable_by_key(|&c| keys[c]);
                Node {
                    label: n.label.into(),
                    routes: n.routes.into(),
                    child_keys: children.iter().map(|&c| keys[c]).collect(),
                    // A trie never holds 2^32 nodes: each needs a distinct config byte.
                    children: children.into_iter().map(|c| c as u32).collect(),
                }
            })
            .collect();
        Trie { nodes }
    }
}
