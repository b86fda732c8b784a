//! Against RFC 9162's recursive definitions, plus costs and refusals.

use std::cell::Cell;
use std::convert::Infallible;

use ring::digest::{SHA256, digest};

use super::*;

// ---- The reference: RFC 9162 section 2.1 definitions, recursively, with plain SHA-256. ----

fn sha(parts: &[&[u8]]) -> Hash {
    let joined: Vec<u8> = parts.concat();
    digest(&SHA256, &joined).as_ref().try_into().unwrap()
}

/// "the largest power of two smaller than n", found by counting rather than bit tricks.
fn naive_k(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Vec<u8>]) -> Hash {
    match d.len() {
        0 => sha(&[]),
        1 => sha(&[&[0x00], &d[0]]),
        n => {
            let k = naive_k(n);
            sha(&[&[0x01], &mth(&d[..k]), &mth(&d[k..])])
        }
    }
}

fn path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
    let n = d.len();
    if n == 1 {
        return vec![];
    }
    let k = naive_k(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}

fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = naive_k(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}

fn data(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("audit entry {i}").into_bytes())
        .collect()
}

// ---- Stores that observe or fake reads. ----

struct CountingStore<S> {
    inner: S,
    reads: Cell<u64>,
}

impl<S: NodeStore> CountingStore<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            reads: Cell::new(0),
        }
    }
    fn take(&self) -> u64 {
        self.reads.replace(0)
    }
}

impl<S: NodeStore> NodeStore for CountingStore<S> {
    type Error = S::Error;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, S::Error> {
        self.reads.set(self.reads.get() + 1);
        self.inner.node(level, index)
    }
}

/// Answers every coordinate, so that huge trees can be walked without storing them.
struct EveryNode;

impl NodeStore for EveryNode {
    type Error = Infallible;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>, Infallible> {
        let mut hash = [level; 32];
        hash[..8].copy_from_slice(&index.to_be_bytes());
        Ok(Some(hash))
    }
}

// ---- Against the RFC definitions, exhaustively for small trees. ----

#[test]
fn matches_rfc_definitions_for_every_size_up_to_70() {
    let d = data(70);
    let mut frontier = Frontier::empty();
    let mut store = MemoryStore::new();
    for (i, leaf) in d.iter().enumerate() {
        store.extend(frontier.append(leaf_hash(leaf)).unwrap());
        // Only the nodes of the tree as it stands are stored, so nothing below can peek ahead.
        let n = i + 1;
        let size = n as u64;
        let tree = &d[..n];
        let want_root = mth(tree);
        assert_eq!(frontier.root(), want_root, "frontier root at {n}");
        assert_eq!(root(size, &store).unwrap(), want_root, "stored root at {n}");
        assert_eq!(
            Frontier::from_store(size, &store).unwrap(),
            frontier,
            "rebuilt at {n}"
        );
        for (m, leaf) in tree.iter().enumerate() {
            let proof = inclusion_proof(m as u64, size, &store).unwrap();
            assert_eq!(proof, path(m, tree), "PATH({m}, D[{n}])");
            assert!(verify_inclusion(
                &leaf_hash(leaf),
                m as u64,
                size,
                &proof,
                &want_root
            ));
        }
        for m in 1..=n {
            let proof = consistency_proof(m as u64, size, &store).unwrap();
            let want = if m == n {
                vec![]
            } else {
                subproof(m, tree, true)
            };
            assert_eq!(proof, want, "PROOF({m}, D[{n}])");
            assert!(verify_consistency(
                m as u64,
                size,
                &mth(&d[..m]),
                &want_root,
                &proof
            ));
        }
    }
}

#[test]
fn each_append_completes_the_perfect_subtrees_it_finishes() {
    let d = data(200);
    let mut frontier = Frontier::empty();
    for (i, leaf) in d.iter().enumerate() {
        let index = i as u64;
        let completed = nodes_completed_by_append(&frontier, index, leaf_hash(leaf)).unwrap();
        assert_eq!(
            completed.len(),
            1 + index.trailing_ones() as usize,
            "leaf {i}"
        );
        for (node, level) in completed.iter().zip(0u8..) {
            let width = 1usize << level;
            let first = node.index as usize * width;
            assert_eq!(node.level, level);
            assert_eq!(
                first + width,
                i + 1,
                "node ({level}, {}) must end at leaf {i}",
                node.index
            );
            assert_eq!(
                node.hash,
                mth(&d[first..first + width]),
                "node ({level}, {})",
                node.index
            );
        }
        assert_eq!(frontier.append(leaf_hash(leaf)).unwrap(), completed);
    }
}

#[test]
fn append_takes_only_the_next_leaf_index() {
    let (frontier, _) = MemoryStore::build(data(5).iter().map(|l| leaf_hash(l))).unwrap();
    let cases = [
        (
            4,
            Err(AppendError::LeafIndexMismatch {
                expected: 5,
                got: 4,
            }),
        ),
        (
            6,
            Err(AppendError::LeafIndexMismatch {
                expected: 5,
                got: 6,
            }),
        ),
        (
            0,
            Err(AppendError::LeafIndexMismatch {
                expected: 5,
                got: 0,
            }),
        ),
        (5, Ok(2)),
    ];
    for (index, want) in cases {
        let got = nodes_completed_by_append(&frontier, index, [9; 32]).map(|nodes| nodes.len());
        assert_eq!(got, want, "index {index}");
    }
    assert_eq!(AppendError::TreeFull.code(), "tree_full");
}

#[test]
fn appends_at_the_extremes_of_u64() {
    let full = Frontier::from_store(u64::MAX, &EveryNode).unwrap();
    assert_eq!(full.peaks().count(), 64);
    assert_eq!(full.clone().append([1; 32]), Err(AppendError::TreeFull));

    let mut nearly_full = Frontier::from_store(u64::MAX - 1, &EveryNode).unwrap();
    assert_eq!(nearly_full.append([1; 32]).unwrap().len(), 1);
    assert_eq!(nearly_full.size(), u64::MAX);

    let mut half = Frontier::from_store((1 << 63) - 1, &EveryNode).unwrap();
    let completed = half.append([1; 32]).unwrap();
    assert_eq!(completed.len(), 64);
    assert_eq!((completed[63].level, completed[63].index), (63, 0));
    assert_eq!(
        half.peaks().map(|p| (p.level, p.index)).collect::<Vec<_>>(),
        [(63, 0)]
    );
}

#[test]
fn peaks_are_addressed_by_level_and_index() {
    let (frontier, store) = MemoryStore::build(data(13).iter().map(|l| leaf_hash(l))).unwrap();
    let peaks: Vec<(u8, u64)> = frontier.peaks().map(|p| (p.level, p.index)).collect();
    assert_eq!(peaks, [(3, 0), (2, 2), (0, 12)]);
    for peak in frontier.peaks() {
        assert_eq!(store.node(peak.level, peak.index).unwrap(), Some(peak.hash));
    }
    // 13 leaves complete 13 + 6 + 3 + 1 nodes.
    assert_eq!(store.len(), 23);
}

// ---- Costs. ----

#[test]
fn reads_stay_logarithmic() {
    let small: Vec<u64> = (1..=70).collect();
    let large = [
        1 << 20,
        (1 << 40) + 12345,
        u64::MAX / 3,
        u64::MAX - 1,
        u64::MAX,
    ];
    for &size in small.iter().chain(&large) {
        let store = CountingStore::new(EveryNode);
        let ceil_log2 = 64 - (size - 1).leading_zeros() as usize;
        let popcount = size.count_ones() as usize;

        root(size, &store).unwrap();
        assert_eq!(store.take(), popcount as u64, "root of {size}");
        Frontier::from_store(size, &store).unwrap();
        assert_eq!(store.take(), popcount as u64, "frontier of {size}");

        let probes = [0, 1, size / 3, size / 2, size.saturating_sub(2), size - 1];
        for index in probes.into_iter().filter(|&i| i < size) {
            let proof = inclusion_proof(index, size, &store).unwrap();
            let reads = store.take() as usize;
            assert!(
                proof.len() <= ceil_log2,
                "PATH({index}, {size}) has {}",
                proof.len()
            );
            assert!(
                reads < proof.len() + popcount.max(1),
                "PATH({index}, {size}) read {reads}"
            );
        }
        for old in probes.into_iter().filter(|&o| o > 0) {
            let proof = consistency_proof(old, size, &store).unwrap();
            let reads = store.take() as usize;
            assert!(
                proof.len() <= ceil_log2 + 1,
                "PROOF({old}, {size}) has {}",
                proof.len()
            );
            assert!(
                reads < proof.len() + popcount.max(1),
                "PROOF({old}, {size}) read {reads}"
            );
        }
    }
}

// ---- Refusals. ----

#[test]
fn tampered_proofs_fail() {
    let d = data(21);
    let (_, store) = MemoryStore::build(d.iter().map(|l| leaf_hash(l))).unwrap();
    let roots: Vec<Hash> = (0..=21).map(|n| root(n, &store).unwrap()).collect();
    for size in 1..=21u64 {
        let root_n = roots[size as usize];
        for index in 0..size {
            let leaf = leaf_hash(&d[index as usize]);
            let proof = inclusion_proof(index, size, &store).unwrap();
            for variant in tamperings(&proof) {
                assert!(
                    !verify_inclusion(&leaf, index, size, &variant, &root_n),
                    "{index}/{size}"
                );
            }
            assert!(!verify_inclusion(
                &leaf,
                index,
                size,
                &proof,
                &roots[size as usize - 1]
            ));
            assert!(!verify_inclusion(&[0; 32], index, size, &proof, &root_n));
            for (i, s) in [
                (index + 1, size),
                (index ^ 2, size),
                (index, size + 1),
                (index, size * 2),
            ] {
                // A different position can share a proof shape only if it also hashes to the root.
                if (i, s) != (index, size) && i < s && s <= 21 {
                    assert!(
                        !verify_inclusion(&leaf, i, s, &proof, &roots[s as usize]),
                        "{i}/{s}"
                    );
                }
            }
        }
        for old in 1..size {
            let proof = consistency_proof(old, size, &store).unwrap();
            let old_root = roots[old as usize];
            for variant in tamperings(&proof) {
                assert!(
                    !verify_consistency(old, size, &old_root, &root_n, &variant),
                    "{old}/{size}"
                );
            }
            assert!(!verify_consistency(
                old,
                size,
                &roots[old as usize - 1],
                &root_n,
                &proof
            ));
            assert!(!verify_consistency(
                old,
                size,
                &old_root,
                &roots[size as usize - 1],
                &proof
            ));
            assert!(!verify_consistency(
                old + 1,
                size,
                &roots[old as usize + 1],
                &root_n,
                &proof
            ));
        }
    }
}

/// Every single-bit flip, a dropped last element, an extra element at either end.
fn tamperings(proof: &[Hash]) -> Vec<Vec<Hash>> {
    let mut out = Vec::new();
    for element in 0..proof.len() {
        for byte in 0..32 {
            let mut bad = proof.to_vec();
            bad[element][byte] ^= 1 << (byte % 8);
            out.push(bad);
        }
    }
    if !proof.is_empty() {
        out.push(proof[..proof.len() - 1].to_vec());
    }
    out.push([proof, &[[0; 32]]].concat());
    out.push([&[[0; 32]], proof].concat());
    out
}

#[test]
fn verifiers_refuse_impossible_sizes() {
    let (a, b) = ([1; 32], [2; 32]);
    assert!(!verify_inclusion(&a, 0, 0, &[], &a));
    assert!(!verify_inclusion(&a, 1, 1, &[], &a));
    assert!(verify_inclusion(&a, 0, 1, &[], &a));
    let consistency = [
        (0, 0, a, a, vec![], false),
        (0, 5, empty_root(), a, vec![], false),
        (6, 5, a, b, vec![], false),
        (5, 5, a, a, vec![], true),
        (5, 5, a, b, vec![], false),
        (5, 5, a, a, vec![a], false),
        (3, 5, a, b, vec![], false),
    ];
    for (old, new, old_root, new_root, proof, want) in consistency {
        assert_eq!(
            verify_consistency(old, new, &old_root, &new_root, &proof),
            want,
            "{old}/{new}"
        );
    }
}

#[test]
fn proofs_refuse_bad_requests() {
    let (_, store) = MemoryStore::build(data(5).iter().map(|l| leaf_hash(l))).unwrap();
    let code = |r: Result<Vec<Hash>, TreeError<Infallible>>| r.unwrap_err().code();
    assert_eq!(
        code(inclusion_proof(5, 5, &store)),
        "leaf_index_out_of_range"
    );
    assert_eq!(
        code(inclusion_proof(0, 0, &store)),
        "leaf_index_out_of_range"
    );
    assert_eq!(code(consistency_proof(0, 5, &store)), "invalid_tree_sizes");
    assert_eq!(code(consistency_proof(6, 5, &store)), "invalid_tree_sizes");
    // Sizes beyond the stored log show up as missing nodes, never as wrong hashes.
    assert_eq!(code(inclusion_proof(0, 6, &store)), "missing_tree_node");
    assert_eq!(code(consistency_proof(5, 8, &store)), "missing_tree_node");
    // Size 6 is the peaks (2, 0) and (1, 2); the second was never completed.
    assert!(matches!(
        root(6, &store),
        Err(TreeError::MissingNode { level: 1, index: 2 })
    ));
    assert!(matches!(
        Frontier::from_store(7, &store),
        Err(TreeError::MissingNode { .. })
    ));
}

#[test]
fn proofs_must_reach_the_top_of_the_claimed_tree() {
    // A genuine proof and root for a smaller tree, passed off as being for a larger size
    // whose path is longer: only the final "sn is 0" checks of RFC 9162 catch this.
    let d = data(8);
    let (_, store) = MemoryStore::build(d.iter().map(|l| leaf_hash(l))).unwrap();
    let inclusion = [(0, 4, 5), (3, 4, 8), (1, 2, 3), (5, 6, 7)];
    for (index, real, claimed) in inclusion {
        let proof = inclusion_proof(index, real, &store).unwrap();
        let real_root = root(real, &store).unwrap();
        let leaf = leaf_hash(&d[index as usize]);
        assert!(verify_inclusion(&leaf, index, real, &proof, &real_root));
        assert!(
            !verify_inclusion(&leaf, index, claimed, &proof, &real_root),
            "{index} in {real} as {claimed}"
        );
    }
    let consistency = [(2, 4, 5), (1, 2, 3), (3, 4, 8), (4, 6, 9)];
    for (old, real, claimed) in consistency {
        let proof = consistency_proof(old, real, &store).unwrap();
        let (old_root, real_root) = (root(old, &store).unwrap(), root(real, &store).unwrap());
        assert!(verify_consistency(old, real, &old_root, &real_root, &proof));
        assert!(
            !verify_consistency(old, claimed, &old_root, &real_root, &proof),
            "{old} to {real} as {claimed}"
        );
    }
}
