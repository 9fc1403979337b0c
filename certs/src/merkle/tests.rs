//! Tests of the parent module.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use super::*;

// The reference vectors of RFC 6962 implementations: the 8-leaf tree, its roots at sizes 1 to
// 8, and known inclusion and consistency proofs in it. Taken from google/trillian,
// merkle/logverifier/log_verifier_test.go (commit 3d7922afdce9fd0144e16aae08bea061c0ad1aee:
// `leaves`, `roots`, `inclusionProofs`, `consistencyProofs`), the same values as
// google/certificate-transparency's merkle_tree_test. There the inclusion vectors number
// leaves from 1; here indices are 0-based.

/// The eight leaves' data.
const LEAVES: [&str; 8] = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
];

/// The roots of the trees of the first 1 to 8 leaves.
const ROOTS: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

/// (leaf index, tree size, proof)
const INCLUSION: &[(u64, u64, &[&str])] = &[
    (0, 1, &[]),
    (
        0,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        &[
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        3,
        &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    ),
    (
        1,
        5,
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

/// (old size, new size, proof)
const CONSISTENCY: &[(u64, u64, &[&str])] = &[
    (1, 1, &[]),
    (
        1,
        8,
        &[
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        &[
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        &[
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn h(s: &str) -> Hash {
    unhex(s).try_into().unwrap()
}

fn hashes(list: &[&str]) -> Vec<Hash> {
    list.iter().map(|s| h(s)).collect()
}

fn reference_tree() -> MerkleTree {
    let mut tree = MerkleTree::new();
    for (i, leaf) in LEAVES.iter().enumerate() {
        assert_eq!(tree.push(&unhex(leaf)), i as u64);
    }
    tree
}

/// A tree of `n` leaves with distinct data.
fn tree_of(n: u64) -> MerkleTree {
    let mut tree = MerkleTree::new();
    for i in 0..n {
        tree.push(format!("leaf {i}").as_bytes());
    }
    tree
}

// The RFC 9162 §2.1 definitions, recursively and without shortcuts.

fn naive_split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// MTH(D[n])
fn naive_mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = naive_split(n);
            node_hash(&naive_mth(&leaves[..k]), &naive_mth(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n])
fn naive_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    if n == 1 {
        return Vec::new();
    }
    let k = naive_split(n);
    if m < k {
        let mut p = naive_path(m, &leaves[..k]);
        p.push(naive_mth(&leaves[k..]));
        p
    } else {
        let mut p = naive_path(m - k, &leaves[k..]);
        p.push(naive_mth(&leaves[..k]));
        p
    }
}

/// SUBPROOF(m, D[n], b)
fn naive_subproof(m: usize, leaves: &[Hash], b: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if b {
            Vec::new()
        } else {
            vec![naive_mth(leaves)]
        };
    }
    let k = naive_split(n);
    if m <= k {
        let mut p = naive_subproof(m, &leaves[..k], b);
        p.push(naive_mth(&leaves[k..]));
        p
    } else {
        let mut p = naive_subproof(m - k, &leaves[k..], false);
        p.push(naive_mth(&leaves[..k]));
        p
    }
}

/// A small deterministic generator for the property-style loops.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn hashing_follows_rfc_9162() {
    assert_eq!(
        empty_root(),
        h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    );
    // the leaf hash of the empty string is the tree of one empty leaf's root
    assert_eq!(leaf_hash(b""), h(ROOTS[0]));
    assert_eq!(MerkleTree::new().root(), empty_root());
}

#[test]
fn reference_roots() {
    let tree = reference_tree();
    for (i, root) in ROOTS.iter().enumerate() {
        assert_eq!(
            tree.root_at(i as u64 + 1).unwrap(),
            h(root),
            "size {}",
            i + 1
        );
    }
    assert_eq!(tree.root(), h(ROOTS[7]));
    assert_eq!(tree.root_at(0).unwrap(), empty_root());
    // growing one leaf at a time gives the same roots
    let mut growing = MerkleTree::new();
    for (i, leaf) in LEAVES.iter().enumerate() {
        growing.push(&unhex(leaf));
        assert_eq!(growing.root(), h(ROOTS[i]));
    }
}

#[test]
fn reference_inclusion_proofs() {
    let tree = reference_tree();
    for &(index, size, proof) in INCLUSION {
        let proof = hashes(proof);
        assert_eq!(tree.inclusion_proof(index, size).unwrap(), proof);
        let leaf = leaf_hash(&unhex(LEAVES[index as usize]));
        let root = h(ROOTS[size as usize - 1]);
        verify_inclusion(&leaf, index, size, &proof, &root).unwrap();
    }
}

#[test]
fn reference_consistency_proofs() {
    let tree = reference_tree();
    for &(old, new, proof) in CONSISTENCY {
        let proof = hashes(proof);
        assert_eq!(tree.consistency_proof(old, new).unwrap(), proof);
        let old_root = h(ROOTS[old as usize - 1]);
        let new_root = h(ROOTS[new as usize - 1]);
        verify_consistency(old, new, &old_root, &new_root, &proof).unwrap();
    }
}

#[test]
fn every_inclusion_proof_up_to_64_verifies() {
    let tree = tree_of(64);
    let leaves: Vec<Hash> = (0..64).map(|i| tree.leaf_hash(i).unwrap()).collect();
    for size in 1..=64u64 {
        let root = tree.root_at(size).unwrap();
        for index in 0..size {
            let proof = tree.inclusion_proof(index, size).unwrap();
            assert_eq!(
                proof,
                naive_path(index as usize, &leaves[..size as usize]),
                "PATH({index}, D[{size}])"
            );
            verify_inclusion(&leaves[index as usize], index, size, &proof, &root)
                .unwrap_or_else(|e| panic!("leaf {index} in {size}: {e}"));
        }
    }
}

#[test]
fn every_consistency_proof_up_to_64_verifies() {
    let tree = tree_of(64);
    let leaves: Vec<Hash> = (0..64).map(|i| tree.leaf_hash(i).unwrap()).collect();
    let roots: Vec<Hash> = (0..=64).map(|s| tree.root_at(s).unwrap()).collect();
    for new in 0..=64u64 {
        for old in 0..=new {
            let proof = tree.consistency_proof(old, new).unwrap();
            if old > 0 && old < new {
                assert_eq!(
                    proof,
                    naive_subproof(old as usize, &leaves[..new as usize], true),
                    "PROOF({old}, D[{new}])"
                );
            } else {
                assert!(proof.is_empty());
            }
            verify_consistency(old, new, &roots[old as usize], &roots[new as usize], &proof)
                .unwrap_or_else(|e| panic!("{old} -> {new}: {e}"));
        }
    }
}

#[test]
fn tampered_inclusion_proofs_are_refused() {
    let tree = tree_of(64);
    let other = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for size in 1..=64u64 {
        let root = tree.root_at(size).unwrap();
        for index in 0..size {
            let leaf = tree.leaf_hash(index).unwrap();
            let proof = tree.inclusion_proof(index, size).unwrap();
            let refused = |leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash| {
                verify_inclusion(leaf, index, size, proof, root).unwrap_err()
            };
            // every bit of every proof hash matters
            for i in 0..proof.len() {
                for bit in [0, 3, 255] {
                    let mut p = proof.clone();
                    p[i][bit / 8] ^= 1 << (bit % 8);
                    assert_eq!(
                        refused(&leaf, index, size, &p, &root),
                        MerkleError::RootMismatch
                    );
                }
            }
            // wrong leaf, wrong roots
            assert_eq!(
                refused(&other, index, size, &proof, &root),
                MerkleError::RootMismatch
            );
            assert_eq!(
                refused(&leaf, index, size, &proof, &other),
                MerkleError::RootMismatch
            );
            assert_eq!(
                refused(&leaf, index, size, &proof, &empty_root()),
                MerkleError::RootMismatch
            );
            // another index or size with the same proof: never accepted
            for (i, s) in [
                (index.wrapping_sub(1), size),
                (index + 1, size),
                (index ^ 2, size),
                (index, size * 2),
                (index, size / 2),
            ] {
                if (i, s) != (index, size) {
                    assert!(verify_inclusion(&leaf, i, s, &proof, &root).is_err());
                }
            }
            // a hash added at either end, or one taken away
            let mut longer = proof.clone();
            longer.push(root);
            assert!(matches!(
                refused(&leaf, index, size, &longer, &root),
                MerkleError::ProofLength { .. }
            ));
            let mut longer = vec![root];
            longer.extend_from_slice(&proof);
            assert!(matches!(
                refused(&leaf, index, size, &longer, &root),
                MerkleError::ProofLength { .. }
            ));
            if !proof.is_empty() {
                assert_eq!(
                    refused(&leaf, index, size, &proof[..proof.len() - 1], &root),
                    MerkleError::ProofLength {
                        expected: proof.len(),
                        got: proof.len() - 1
                    }
                );
                // and the right number of hashes in the wrong order
                if proof.len() > 1 && proof[0] != proof[1] {
                    let mut swapped = proof.clone();
                    swapped.swap(0, 1);
                    assert_eq!(
                        refused(&leaf, index, size, &swapped, &root),
                        MerkleError::RootMismatch
                    );
                }
            }
        }
    }
}

#[test]
fn tampered_consistency_proofs_are_refused() {
    let tree = tree_of(64);
    let roots: Vec<Hash> = (0..=64).map(|s| tree.root_at(s).unwrap()).collect();
    let other = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    for new in 2..=64u64 {
        for old in 1..new {
            let (r1, r2) = (roots[old as usize], roots[new as usize]);
            let proof = tree.consistency_proof(old, new).unwrap();
            assert!(!proof.is_empty());
            for i in 0..proof.len() {
                let mut p = proof.clone();
                p[i][0] ^= 16;
                assert_eq!(
                    verify_consistency(old, new, &r1, &r2, &p).unwrap_err(),
                    MerkleError::RootMismatch,
                    "{old} -> {new}, hash {i}"
                );
            }
            for (a, b) in [(other, r2), (r1, other), (r2, r1), (empty_root(), r2)] {
                assert_eq!(
                    verify_consistency(old, new, &a, &b, &proof).unwrap_err(),
                    MerkleError::RootMismatch
                );
            }
            assert_eq!(
                verify_consistency(old, new, &r1, &r2, &[]).unwrap_err(),
                MerkleError::ProofLength {
                    expected: proof.len(),
                    got: 0
                }
            );
            let mut longer = proof.clone();
            longer.push(r1);
            assert!(matches!(
                verify_consistency(old, new, &r1, &r2, &longer).unwrap_err(),
                MerkleError::ProofLength { .. }
            ));
            let mut longer = vec![proof[0]];
            longer.extend_from_slice(&proof);
            assert!(matches!(
                verify_consistency(old, new, &r1, &r2, &longer).unwrap_err(),
                MerkleError::ProofLength { .. }
            ));
            for (o, n) in [
                (old - 1, new),
                (old + 1, new),
                (old ^ 2, new),
                (old, new * 2),
                (old, new / 2),
            ] {
                if (o, n) != (old, new) {
                    assert!(verify_consistency(o, n, &r1, &r2, &proof).is_err());
                }
            }
            // a proof in the wrong direction
            assert_eq!(
                verify_consistency(new, old, &r2, &r1, &proof).unwrap_err(),
                MerkleError::SizesOutOfOrder {
                    old_size: new,
                    new_size: old
                }
            );
        }
    }
}

#[test]
fn verifier_edge_cases() {
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let empty = empty_root();
    // inclusion in the empty tree, or beyond the tree
    for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1), (u64::MAX, u64::MAX), (5, 3)] {
        assert_eq!(
            verify_inclusion(&some, index, size, &[], &some).unwrap_err(),
            MerkleError::IndexOutOfRange { index, size }
        );
    }
    // the one-leaf tree: the root is the leaf hash and the proof is empty
    verify_inclusion(&some, 0, 1, &[], &some).unwrap();
    assert_eq!(
        verify_inclusion(&some, 0, 1, &[], &empty).unwrap_err(),
        MerkleError::RootMismatch
    );
    assert_eq!(
        verify_inclusion(&some, 0, 1, &[some], &some).unwrap_err(),
        MerkleError::ProofLength {
            expected: 0,
            got: 1
        }
    );
    // an empty proof in a larger tree
    assert_eq!(
        verify_inclusion(&some, 3, 8, &[], &some).unwrap_err(),
        MerkleError::ProofLength {
            expected: 3,
            got: 0
        }
    );
    // the largest sizes are handled without overflow
    assert_eq!(
        verify_inclusion(&some, u64::MAX - 1, u64::MAX, &[some; 63], &some).unwrap_err(),
        MerkleError::RootMismatch
    );

    // consistency: sizes that are always consistent, and their conditions
    verify_consistency(0, 0, &empty, &empty, &[]).unwrap();
    verify_consistency(0, 5, &empty, &some, &[]).unwrap();
    verify_consistency(1, 1, &some, &some, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, 5, &some, &some, &[]).unwrap_err(),
        MerkleError::RootMismatch
    );
    assert_eq!(
        verify_consistency(1, 1, &some, &empty, &[]).unwrap_err(),
        MerkleError::RootMismatch
    );
    for (old, new) in [(0, 0), (0, 1), (1, 1), (7, 7)] {
        assert_eq!(
            verify_consistency(old, new, &empty, &empty, &[empty]).unwrap_err(),
            MerkleError::ProofLength {
                expected: 0,
                got: 1
            }
        );
    }
    // time travel
    for (old, new) in [(1, 0), (2, 1), (u64::MAX, 0)] {
        assert_eq!(
            verify_consistency(old, new, &some, &some, &[]).unwrap_err(),
            MerkleError::SizesOutOfOrder {
                old_size: old,
                new_size: new
            }
        );
    }
    // an empty proof between different sizes
    assert_eq!(
        verify_consistency(1, 2, &some, &empty, &[]).unwrap_err(),
        MerkleError::ProofLength {
            expected: 1,
            got: 0
        }
    );
    assert!(verify_consistency(u64::MAX - 1, u64::MAX, &some, &some, &[some; 64]).is_err());
}

#[test]
fn verifiers_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let some = h("abacaba000000000000000000000000000000000000000000060061e00123456");
    let interesting = [
        0,
        1,
        2,
        3,
        4,
        7,
        8,
        63,
        64,
        65,
        u64::MAX / 2,
        u64::MAX - 1,
        u64::MAX,
    ];
    for _ in 0..20_000 {
        let pick = |rng: &mut XorShift| match rng.below(3) {
            0 => interesting[rng.below(interesting.len() as u64) as usize],
            1 => rng.below(200),
            _ => rng.next(),
        };
        let (a, b) = (pick(&mut rng), pick(&mut rng));
        let proof = vec![some; rng.below(70) as usize];
        let _ = verify_inclusion(&some, a, b, &proof, &some);
        let _ = verify_consistency(a, b, &some, &some, &proof);
    }
}

#[test]
fn roots_match_the_naive_definition() {
    let mut rng = XorShift(42);
    for _ in 0..20 {
        let mut tree = MerkleTree::new();
        let mut leaves = Vec::new();
        let n = rng.below(300) as usize + 1;
        for i in 0..n {
            let data: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
            assert_eq!(tree.push(&data), i as u64);
            leaves.push(leaf_hash(&data));
            assert_eq!(tree.root(), naive_mth(&leaves));
        }
        for size in 0..=n {
            assert_eq!(
                tree.root_at(size as u64).unwrap(),
                naive_mth(&leaves[..size])
            );
        }
        // a tree rebuilt from its leaf hashes is the same tree
        let rebuilt = MerkleTree::from_leaf_hashes(leaves.clone());
        assert_eq!(rebuilt.len(), n as u64);
        assert_eq!(rebuilt.levels, tree.levels);
        for _ in 0..20 {
            let size = rng.below(n as u64) + 1;
            let index = rng.below(size);
            let old = rng.below(size + 1);
            assert_eq!(
                rebuilt.inclusion_proof(index, size).unwrap(),
                naive_path(index as usize, &leaves[..size as usize])
            );
            let proof = rebuilt.consistency_proof(old, size).unwrap();
            assert_eq!(proof, tree.consistency_proof(old, size).unwrap());
            verify_consistency(
                old,
                size,
                &naive_mth(&leaves[..old as usize]),
                &naive_mth(&leaves[..size as usize]),
                &proof,
            )
            .unwrap();
        }
    }
    assert!(MerkleTree::from_leaf_hashes(Vec::new()).is_empty());
}

#[test]
fn the_tree_refuses_sizes_it_does_not_hold() {
    let tree = tree_of(5);
    assert_eq!(tree.len(), 5);
    assert_eq!(
        tree.root_at(6).unwrap_err(),
        MerkleError::SizeBeyondTree { size: 6, len: 5 }
    );
    assert_eq!(
        tree.inclusion_proof(0, 6).unwrap_err(),
        MerkleError::SizeBeyondTree { size: 6, len: 5 }
    );
    assert_eq!(
        tree.inclusion_proof(3, 3).unwrap_err(),
        MerkleError::IndexOutOfRange { index: 3, size: 3 }
    );
    assert_eq!(
        tree.inclusion_proof(0, 0).unwrap_err(),
        MerkleError::IndexOutOfRange { index: 0, size: 0 }
    );
    assert_eq!(
        tree.consistency_proof(2, u64::MAX).unwrap_err(),
        MerkleError::SizeBeyondTree {
            size: u64::MAX,
            len: 5
        }
    );
    assert_eq!(
        tree.consistency_proof(4, 3).unwrap_err(),
        MerkleError::SizesOutOfOrder {
            old_size: 4,
            new_size: 3
        }
    );
    assert_eq!(tree.leaf_hash(5), None);
    assert_eq!(tree.leaf_hash(u64::MAX), None);
    assert_eq!(format!("{tree:?}"), "MerkleTree { len: 5, .. }");
}

#[test]
fn hash_lists_split_into_hashes() {
    let a = h(ROOTS[0]);
    let b = h(ROOTS[1]);
    let bytes: Vec<u8> = [a, b].concat();
    assert_eq!(hashes_from_bytes(&bytes).unwrap(), vec![a, b]);
    assert_eq!(hashes_from_bytes(&[]).unwrap(), Vec::<Hash>::new());
    assert_eq!(
        hashes_from_bytes(&bytes[..63]).unwrap_err(),
        MerkleError::HashLength { len: 63 }
    );
}

#[test]
#[ignore = "slow: 1,000,000 leaves"]
fn a_million_leaves() {
    const N: u64 = 1_000_000;
    let start = std::time::Instant::now();
    let mut tree = MerkleTree::new();
    for i in 0..N {
        tree.push(&i.to_be_bytes());
    }
    let appended = start.elapsed();
    let root = tree.root();
    let index = 765_432;
    let proof = tree.inclusion_proof(index, N).unwrap();
    verify_inclusion(&leaf_hash(&index.to_be_bytes()), index, N, &proof, &root).unwrap();
    let old = 999_999 - 123_456;
    let old_root = tree.root_at(old).unwrap();
    let consistency = tree.consistency_proof(old, N).unwrap();
    verify_consistency(old, N, &old_root, &root, &consistency).unwrap();
    let proved = start.elapsed() - appended;
    let rebuild = std::time::Instant::now();
    let rebuilt =
        MerkleTree::from_leaf_hashes((0..N).map(|i| tree.leaf_hash(i).unwrap()).collect());
    assert_eq!(rebuilt.root(), root);
    println!(
        "{N} leaves appended in {appended:?}; root, inclusion and consistency proofs made and \
         checked in {proved:?}; rebuilt from leaf hashes in {:?}",
        rebuild.elapsed()
    );
}
