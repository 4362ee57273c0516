//! One ledger view over several nodes: each node's ledger is its own hash
//! chain numbered from 1, so an entry is known by (node_id, sequence). A
//! reader keeps one cursor per node ([`NodeCursors`]: the next sequence to
//! read from each) and merges what the nodes return ([`merge_by_time`]).

use std::collections::BTreeMap;
use std::fmt;

/// The next ledger sequence to read from each node. Written as one
/// `node=sequence` pair per line (`node-1=42`), and as
/// `node-1=42,node-2=7` on one line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCursors(pub BTreeMap<String, u64>);

/// A cursor text that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("invalid ledger cursor '{0}': use node=sequence pairs, e.g. node-1=42,node-2=7")]
pub struct CursorError(String);

impl NodeCursors {
    /// Parses pairs separated by commas or new lines; blank lines and
    /// `#` comments are skipped. A node named twice is refused.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let mut cursors = BTreeMap::new();
        for pair in text
            .split([',', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty() && !p.starts_with('#'))
        {
            let (node, next) = pair
                .split_once('=')
                .ok_or_else(|| CursorError(pair.to_string()))?;
            let next: u64 = next
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| CursorError(pair.to_string()))?;
            if cursors.insert(node.trim().to_string(), next).is_some() {
                return Err(CursorError(pair.to_string()));
            }
        }
        Ok(NodeCursors(cursors))
    }

    /// Where to read `node` from: its cursor, else 1 (a node new to the
    /// reader is read from its start).
    pub fn next_of(&self, node: &str) -> u64 {
        self.0.get(node).copied().unwrap_or(1)
    }

    /// The cursor file's text: one `node=sequence` line each.
    pub fn to_file_text(&self) -> String {
        self.0.iter().map(|(n, s)| format!("{n}={s}\n")).collect()
    }
}

impl fmt::Display for NodeCursors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(n, s)| format!("{n}={s}")).collect();
        f.write_str(&pairs.join(","))
    }
}

/// Merges per-node runs (each in its node's sequence order) into one
/// sequence ordered by `(time, node, sequence)` of their heads: roughly
/// chronological across nodes, while each node's entries keep their chain
/// order even if a node's clock stepped back. `key` gives an entry's time
/// and sequence; runs come as `(node_id, entries)`.
pub fn merge_by_time<T>(
    runs: Vec<(String, Vec<T>)>,
    key: impl Fn(&T) -> (i64, u64),
) -> Vec<(String, T)> {
    let mut runs: Vec<(String, std::iter::Peekable<std::vec::IntoIter<T>>)> = runs
        .into_iter()
        .map(|(node, entries)| (node, entries.into_iter().peekable()))
        .collect();
    let mut merged = Vec::new();
    loop {
        let mut best: Option<(usize, (i64, &str, u64))> = None;
        for (i, (node, run)) in runs.iter_mut().enumerate() {
            if let Some(head) = run.peek() {
                let (time, sequence) = key(head);
                let candidate = (time, node.as_str(), sequence);
                if best.as_ref().is_none_or(|(_, b)| candidate < *b) {
                    best = Some((i, candidate));
                }
            }
        }
        let Some((i, _)) = best else {
            return merged;
        };
        let (node, run) = &mut runs[i];
        if let Some(entry) = run.next() {
            merged.push((node.clone(), entry));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_print_and_default_to_one() {
        let c = NodeCursors::parse("node-1=42, node-2=7\n# comment\n").unwrap();
        assert_eq!(c.to_string(), "node-1=42,node-2=7");
        assert_eq!(NodeCursors::parse(&c.to_file_text()).unwrap(), c);
        assert_eq!(c.next_of("node-3"), 1);
        for bad in ["node-1", "node-1=x", "node-1=0", "a=1,a=2"] {
            assert!(NodeCursors::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn merge_interleaves_by_time_and_keeps_each_chain_in_order() {
        // node-2's clock stepped back between its entries 1 and 2.
        let runs = vec![
            ("node-1".to_string(), vec![(10, 1), (30, 2)]),
            ("node-2".to_string(), vec![(20, 1), (5, 2), (40, 3)]),
            ("node-3".to_string(), vec![]),
        ];
        let merged: Vec<(String, u64)> = merge_by_time(runs, |e: &(i64, u64)| *e)
            .into_iter()
            .map(|(n, e)| (n, e.1))
            .collect();
        let expected = [
            ("node-1", 1),
            ("node-2", 1),
            ("node-2", 2),
            ("node-1", 2),
            ("node-2", 3),
        ];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        assert_eq!(merged, expected);
    }
}
