//! The RFC 9162 (Certificate Transparency v2) Merkle tree over the audit log, stored as
//! the hashes of its complete subtrees.
//!
//! Hashing follows RFC 9162 section 2.1.1 with SHA-256: a leaf hashes as
//! `SHA-256(0x00 || leaf)`, an interior node as `SHA-256(0x01 || left || right)`, and the
//! tree of no leaves has the root `SHA-256("")`.
//!
//! # Storage
//!
//! Only *perfect* subtrees are ever stored. Node `(level, index)` is the root of the
//! perfect subtree over leaves `[index * 2^level, (index + 1) * 2^level)`; level 0 holds
//! the leaf hashes themselves. A perfect subtree never changes once its last leaf is in, so
//! every stored node is written exactly once and never updated. The partial right edge of
//! a tree whose size is not a power of two is recomputed on demand from the perfect
//! subtrees that make it up.
//!
//! Appending leaf `n` completes node `(0, n)` plus one node per trailing one bit of `n`:
//! two nodes and two hashes amortised, whatever the log size. [`Frontier`] holds the
//! *peaks* (the roots of the at most 64 perfect subtrees whose sizes are the set bits of
//! the tree size) so an append needs no read at all; it is rebuilt from the store with
//! `popcount(size)` reads on start-up.
//!
//! # Reads per query
//!
//! * [`root`] of size `n`: `popcount(n)` node reads.
//! * [`inclusion_proof`] in a tree of size `n`: at most `len(proof) + popcount(n) - 1`
//!   reads, where `len(proof) <= ceil(log2 n)`, so fewer than `2 * ceil(log2 n)` in all.
//! * [`consistency_proof`] to size `n`: at most `len(proof) + popcount(n) - 1` reads, where
//!   `len(proof) <= ceil(log2 n) + 1`.
//!
//! Only one proof element can cover a non-perfect range (the first left turn of the
//! path); every other element is a single stored node.
//!
//! # Using it
//!
//! ```text
//! let mut frontier = Frontier::from_store(size_from_db, &store)?;
//! let mut pending = frontier.clone();
//! for entry in batch {
//!     for node in pending.append(entry.leaf_hash())? { /* INSERT node in the same transaction */ }
//! }
//! /* COMMIT */
//! frontier = pending; // only once the batch is durable
//! ```

use std::collections::HashMap;
use std::convert::Infallible;

use ring::digest::{Context, SHA256};

/// A SHA-256 digest: a leaf hash, node hash or tree root.
pub type Hash = [u8; 32];

/// Domain-separation prefix of a leaf hash (RFC 9162 section 2.1.1).
const LEAF_PREFIX: u8 = 0x00;
/// Domain-separation prefix of an interior node hash (RFC 9162 section 2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// The leaf hash `SHA-256(0x00 || leaf)` of one log entry's bytes.
pub fn leaf_hash(leaf: &[u8]) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[LEAF_PREFIX]);
    context.update(leaf);
    finish(context)
}

/// The interior node hash `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut context = Context::new(&SHA256);
    context.update(&[NODE_PREFIX]);
    context.update(left);
    context.update(right);
    finish(context)
}

/// The root of the tree with no leaves, `SHA-256("")`.
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

fn finish(context: Context) -> Hash {
    let mut hash = [0u8; 32];
    // SHA-256 digests are always 32 bytes long.
    hash.copy_from_slice(context.finish().as_ref());
    hash
}

/// Read access to the stored perfect-subtree nodes; implemented over SQL by the log writer.
pub trait NodeStore {
    /// The store's own failure (a database error, say).
    type Error;

    /// The hash of node `(level, index)`, or `None` when it has not been stored.
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error>;
}

impl<S: NodeStore + ?Sized> NodeStore for &S {
    type Error = S::Error;

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Self::Error> {
        (**self).node(level, index)
    }
}

/// One perfect-subtree node, addressed as in the module doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TreeNode {
    /// Height above the leaves: 0 for a leaf hash.
    pub level: u8,
    /// Position among the nodes of this level, counted from 0 at the left.
    pub index: u64,
    /// The node's hash.
    pub hash: Hash,
}

/// Why a root or proof could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum TreeError<E> {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The requested tree size.
        size: u64,
    },
    /// A consistency proof needs `0 < old <= new`.
    #[error("no consistency proof from tree size {old} to {new}")]
    InvalidSizes {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
    },
    /// A node the tree size implies is absent: the size is beyond the log, or the store lost it.
    #[error("tree node ({level}, {index}) is missing from the store")]
    MissingNode {
        /// Level of the missing node.
        level: u8,
        /// Index of the missing node.
        index: u64,
    },
    /// The node store failed.
    #[error("the tree node store failed")]
    Store(#[source] E),
}

impl<E> TreeError<E> {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::IndexOutOfRange { .. } => "leaf_index_out_of_range",
            Self::InvalidSizes { .. } => "invalid_tree_sizes",
            Self::MissingNode { .. } => "missing_tree_node",
            Self::Store(_) => "tree_store_failed",
        }
    }
}

/// Why a leaf could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The caller's leaf index is not the next one.
    #[error("leaf index {got} appended to a tree of size {expected}")]
    LeafIndexMismatch {
        /// The tree size, which is the only index that can be appended.
        expected: u64,
        /// The index the caller gave.
        got: u64,
    },
    /// The tree already holds `u64::MAX` leaves.
    #[error("the tree is full")]
    TreeFull,
}

impl AppendError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::LeafIndexMismatch { .. } => "leaf_index_mismatch",
            Self::TreeFull => "tree_full",
        }
    }
}

/// The peaks of a tree: enough state to append and to compute the current root without reads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    /// Number of leaves in the tree.
    size: u64,
    /// One hash per set bit of `size`, the largest (leftmost) subtree first.
    peaks: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Rebuilds the frontier of a tree of `size` leaves with `popcount(size)` node reads.
    pub fn from_store<S: NodeStore + ?Sized>(
        size: u64,
        store: &S,
    ) -> Result<Self, TreeError<S::Error>> {
        let peaks = perfect_cover(0, size)
            .map(|(level, index)| read(store, level, index))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { size, peaks })
    }

    /// Number of leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The peaks with their coordinates, the largest (leftmost) first.
    pub fn peaks(&self) -> impl Iterator<Item = TreeNode> + '_ {
        perfect_cover(0, self.size)
            .zip(&self.peaks)
            .map(|((level, index), hash)| TreeNode {
                level,
                index,
                hash: *hash,
            })
    }

    /// The root of the tree as it stands, computed from the peaks alone.
    pub fn root(&self) -> Hash {
        fold_peaks(&self.peaks)
    }

    /// Appends the next leaf and returns the nodes it completes, deepest first, for the caller to store.
    pub fn append(&mut self, leaf_hash: Hash) -> Result<Vec<TreeNode>, AppendError> {
        let completed = nodes_completed_by_append(self, self.size, leaf_hash)?;
        // The peaks below the new top node are now its descendants.
        let merged = self.size.trailing_ones() as usize;
        self.peaks.truncate(self.peaks.len().saturating_sub(merged));
        if let Some(top) = completed.last() {
            self.peaks.push(top.hash);
        }
        self.size += 1;
        Ok(completed)
    }
}

/// The nodes completed by appending leaf `leaf_index` (which must equal the frontier's size)
/// with hash `leaf_hash`: `(0, leaf_index)` first, then each ancestor that becomes perfect.
///
/// Pure: the frontier is not changed, so the caller can store the nodes in the same
/// transaction as the entry and update its frontier (with [`Frontier::append`]) only after
/// the commit.
pub fn nodes_completed_by_append(
    frontier: &Frontier,
    leaf_index: u64,
    leaf_hash: Hash,
) -> Result<Vec<TreeNode>, AppendError> {
    if leaf_index != frontier.size {
        return Err(AppendError::LeafIndexMismatch {
            expected: frontier.size,
            got: leaf_index,
        });
    }
    if leaf_index == u64::MAX {
        return Err(AppendError::TreeFull);
    }
    // Each trailing one bit of the index is a left sibling waiting as a peak; the lowest
    // peaks are exactly those siblings, smallest first.
    let merges = leaf_index.trailing_ones() as usize;
    let mut completed = Vec::with_capacity(merges + 1);
    let mut node = TreeNode {
        level: 0,
        index: leaf_index,
        hash: leaf_hash,
    };
    completed.push(node);
    for left in frontier.peaks.iter().rev().take(merges) {
        node = TreeNode {
            level: node.level + 1,
            index: node.index >> 1,
            hash: node_hash(left, &node.hash),
        };
        completed.push(node);
    }
    Ok(completed)
}

/// The root of the tree made of the first `size` leaves, with `popcount(size)` node reads.
pub fn root<S: NodeStore + ?Sized>(size: u64, store: &S) -> Result<Hash, TreeError<S::Error>> {
    if size == 0 {
        return Ok(empty_root());
    }
    range_hash(store, 0, size)
}

/// The RFC 9162 section 2.1.3.1 inclusion proof (`PATH`) of leaf `index` in the tree of
/// `size` leaves, deepest sibling first.
pub fn inclusion_proof<S: NodeStore + ?Sized>(
    index: u64,
    size: u64,
    store: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if index >= size {
        return Err(TreeError::IndexOutOfRange { index, size });
    }
    // Walk PATH's recursion top-down over the leaf range [lo, hi), then reverse: the
    // recursion emits the deepest sibling first.
    let mut proof = Vec::new();
    let (mut lo, mut hi) = (0, size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            proof.push(range_hash(store, lo + k, hi - lo - k)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(store, lo, k)?);
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// The RFC 9162 section 2.1.4.1 consistency proof (`PROOF`) from tree size `old` to `new`.
///
/// Needs `0 < old <= new`; for `old == new` the proof is empty (RFC 9162 defines none, and
/// [`verify_consistency`] accepts it when both roots are equal).
pub fn consistency_proof<S: NodeStore + ?Sized>(
    old: u64,
    new: u64,
    store: &S,
) -> Result<Vec<Hash>, TreeError<S::Error>> {
    if old == 0 || old > new {
        return Err(TreeError::InvalidSizes { old, new });
    }
    // SUBPROOF(m, D[lo:hi], complete) walked top-down, then reversed as for PATH.
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut m) = (0, new, old);
    let mut complete = true;
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            proof.push(range_hash(store, lo + k, hi - lo - k)?);
            hi = lo + k;
        } else {
            proof.push(range_hash(store, lo, k)?);
            lo += k;
            m -= k;
            complete = false;
        }
    }
    // The old tree's rightmost subtree: the verifier knows it already only when it is the
    // whole old tree.
    if !complete {
        proof.push(range_hash(store, lo, hi - lo)?);
    }
    proof.reverse();
    Ok(proof)
}

/// Checks an inclusion proof as in RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    // Step 1.
    if index >= size {
        return false;
    }
    // Steps 2 and 3.
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    s == 0 && r == *root
}

/// Checks a consistency proof as in RFC 9162 section 2.1.4.2.
///
/// Beyond the RFC, which defines proofs only for `0 < old < new`: equal sizes are
/// consistent exactly when the proof is empty and the roots are equal; an old size of 0
/// or above the new size is never accepted.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size == 0 || old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    // Step 1.
    if proof.is_empty() {
        return false;
    }
    // Step 2: when the old tree is perfect its root is the path's implicit first element.
    let (first, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some(split) => split,
            None => return false,
        }
    };
    // Step 3.
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    // Step 4.
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (*first, *first);
    // Step 6.
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    // Step 7.
    fr == *old_root && sr == *new_root && s == 0
}

/// An in-memory [`NodeStore`], for tests and for offline verification of a whole log.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    nodes: HashMap<(u8, u64), Hash>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the tree of the given leaf hashes: its frontier and every completed node.
    pub fn build(
        leaf_hashes: impl IntoIterator<Item = Hash>,
    ) -> Result<(Frontier, Self), AppendError> {
        let mut frontier = Frontier::empty();
        let mut store = Self::new();
        for leaf in leaf_hashes {
            store.extend(frontier.append(leaf)?);
        }
        Ok((frontier, store))
    }

    /// Stores one node, replacing any earlier hash at its coordinates.
    pub fn insert(&mut self, node: TreeNode) {
        self.nodes.insert((node.level, node.index), node.hash);
    }

    /// Stores several nodes.
    pub fn extend(&mut self, nodes: impl IntoIterator<Item = TreeNode>) {
        for node in nodes {
            self.insert(node);
        }
    }

    /// Number of stored nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node is stored.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NodeStore for MemoryStore {
    type Error = Infallible;

    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
        Ok(self.nodes.get(&(level, index)).copied())
    }
}

/// RFC 9162's `k`: the largest power of two strictly below `n`, for `n >= 2`.
fn split_point(n: u64) -> u64 {
    1 << (n - 1).ilog2()
}

/// The perfect subtrees covering leaves `[start, start + len)`, largest first, as
/// `(level, index)`; `start` must be a multiple of the largest power of two `<= len`,
/// which holds for every range RFC 9162's recursion produces.
fn perfect_cover(start: u64, len: u64) -> impl Iterator<Item = (u8, u64)> {
    let mut offset = start;
    (0..64u8)
        .rev()
        .filter(move |level| len >> level & 1 == 1)
        .map(move |level| {
            let node = (level, offset >> level);
            offset = offset.wrapping_add(1 << level);
            node
        })
}

/// `MTH(D[start:start+len])` for `len >= 1`, from `popcount(len)` stored nodes.
fn range_hash<S: NodeStore + ?Sized>(
    store: &S,
    start: u64,
    len: u64,
) -> Result<Hash, TreeError<S::Error>> {
    let peaks = perfect_cover(start, len)
        .map(|(level, index)| read(store, level, index))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(fold_peaks(&peaks))
}

/// Combines peaks into a root: MTH splits off the largest power of two on the left, so the
/// right-hand peaks merge first.
fn fold_peaks(peaks: &[Hash]) -> Hash {
    match peaks.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |right, left| node_hash(left, &right)),
    }
}

fn read<S: NodeStore + ?Sized>(
    store: &S,
    level: u8,
    index: u64,
) -> Result<Hash, TreeError<S::Error>> {
    store
        .node(level, index)
        .map_err(TreeError::Store)?
        .ok_or(TreeError::MissingNode { level, index })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod vectors;
