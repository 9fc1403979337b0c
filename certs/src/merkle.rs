//! An append-only log as an RFC 9162 Merkle tree, with inclusion and consistency proofs.
//!
//! Hashing is RFC 9162 §2.1 (the same as RFC 6962): a leaf hashes to
//! `SHA-256(0x00 || data)`, an interior node to `SHA-256(0x01 || left || right)`, and the
//! empty tree to `SHA-256("")`.
//!
//! [`MerkleTree`] is the log's side: it appends leaves and produces roots and proofs for the
//! current size or any earlier one. [`verify_inclusion`] and [`verify_consistency`] are the
//! follower's side (a routing gateway checking the feed offline): pure functions over sizes and
//! hashes that follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step and return a [`MerkleError`]
//! for any input that does not prove what is claimed. They never panic, whatever the sizes,
//! indices or proof lengths.
//!
//! Sizes and indices are `u64`, as they are on the wire and in a
//! [checkpoint](crate::checkpoint).

use ring::digest::{Context, SHA256};

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Why a tree operation or a proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A leaf index is not below the tree size it is claimed in.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// the leaf index
        index: u64,
        /// the tree size
        size: u64,
    },
    /// A tree size is beyond what the tree holds.
    #[error("tree size {size} is beyond the {len} leaves the tree holds")]
    SizeBeyondTree {
        /// the size asked for
        size: u64,
        /// the number of leaves in the tree
        len: u64,
    },
    /// A consistency proof from a larger tree to a smaller one.
    #[error("old tree size {old_size} is greater than new tree size {new_size}")]
    SizesOutOfOrder {
        /// the old (first) tree size
        old_size: u64,
        /// the new (second) tree size
        new_size: u64,
    },
    /// A proof has another number of hashes than its sizes (and index) call for.
    #[error("proof has {got} hashes where {expected} are expected")]
    ProofLength {
        /// the number of hashes the sizes call for
        expected: usize,
        /// the number of hashes given
        got: usize,
    },
    /// A proof does not lead to the root (or roots) it is checked against.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// A byte string that should be a list of hashes is not a multiple of 32 bytes long.
    #[error("{len} bytes are not a list of 32-byte hashes")]
    HashLength {
        /// the length of the byte string
        len: usize,
    },
}

/// The hash of a leaf: `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x00]);
    ctx.update(data);
    finish(ctx)
}

/// The hash of an interior node: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    finish(ctx)
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    finish(Context::new(&SHA256))
}

/// Splits a byte string made of concatenated 32-byte hashes (a proof as it travels) into hashes.
///
/// # Errors
/// [`MerkleError::HashLength`] when the length is not a multiple of 32.
pub fn hashes_from_bytes(bytes: &[u8]) -> Result<Vec<Hash>, MerkleError> {
    let chunks = bytes.chunks_exact(32);
    if !chunks.remainder().is_empty() {
        return Err(MerkleError::HashLength { len: bytes.len() });
    }
    Ok(chunks
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// An in-memory, append-only Merkle tree.
///
/// The tree keeps the hash of every complete subtree, level by level: level 0 holds the leaf
/// hashes, level `l` the roots of the aligned subtrees of `2^l` leaves that are complete. That
/// is `n + n/2 + n/4 + ...`, under `2n` hashes for `n` leaves: about 64 bytes per leaf (64 MB
/// for a million leaves), plus the vectors' spare capacity.
///
/// With those, appending costs one leaf hash and, amortised, one node hash (a new level-`l`
/// node is made each time a subtree of `2^l` leaves is completed), and every root or proof is
/// put together from stored subtree roots in O(log n) hashes, for the current size as for any
/// earlier one.
#[derive(Clone, Default)]
pub struct MerkleTree {
    /// `levels[l][i]` is the root of the complete subtree over leaves `i * 2^l .. (i + 1) * 2^l`.
    ///
    /// **Invariant**: `levels[l].len() == len() >> l` for every stored level, and a level is
    /// stored once it holds a hash.
    levels: Vec<Vec<Hash>>,
}

impl std::fmt::Debug for MerkleTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl MerkleTree {
    /// An empty tree.
    pub fn new() -> Self {
        MerkleTree::default()
    }

    /// Rebuilds a tree from its leaf hashes (as stored by the caller), in O(n).
    pub fn from_leaf_hashes(leaf_hashes: Vec<Hash>) -> Self {
        let mut tree = MerkleTree::new();
        let mut level = leaf_hashes;
        while !level.is_empty() {
            let next: Vec<Hash> = level
                .chunks_exact(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            tree.levels.push(level);
            level = next;
        }
        tree
    }

    /// Appends a leaf with `leaf_data` and returns its index.
    pub fn push(&mut self, leaf_data: &[u8]) -> u64 {
        self.push_leaf_hash(leaf_hash(leaf_data))
    }

    /// Appends a leaf whose [leaf hash](leaf_hash) the caller already has, and returns its index.
    pub fn push_leaf_hash(&mut self, hash: Hash) -> u64 {
        let index = self.len();
        let mut carry = hash;
        let mut level = 0;
        loop {
            if self.levels.len() == level {
                self.levels.push(Vec::new());
            }
            let hashes = &mut self.levels[level];
            hashes.push(carry);
            let n = hashes.len();
            if n % 2 == 1 {
                break;
            }
            // a subtree of 2^(level + 1) leaves is now complete
            carry = node_hash(&hashes[n - 2], &hashes[n - 1]);
            level += 1;
        }
        index
    }

    /// The number of leaves.
    pub fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// Whether the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The leaf hash at `index`, if the tree holds that leaf.
    pub fn leaf_hash(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.levels.first()?.get(index).copied()
    }

    /// The root of the tree as it is (the [empty root](empty_root) for no leaves).
    pub fn root(&self) -> Hash {
        self.range_hash(0, self.levels.first().map_or(0, Vec::len))
    }

    /// The root of the tree as it was at `size` leaves.
    ///
    /// # Errors
    /// [`MerkleError::SizeBeyondTree`] when `size` is greater than [`len`](Self::len).
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        let size = self.checked_size(size)?;
        Ok(self.range_hash(0, size))
    }

    /// The inclusion proof (RFC 9162 §2.1.3.1) of leaf `index` in the tree at `size` leaves,
    /// from the leaf's sibling up to the root's child.
    ///
    /// # Errors
    /// [`MerkleError::SizeBeyondTree`] when `size` is greater than [`len`](Self::len),
    /// [`MerkleError::IndexOutOfRange`] when `index` is not below `size`.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        let n = self.checked_size(size)?;
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        // index < size <= len, which is a usize
        let m = index as usize;
        // PATH(m, D[lo:hi]): descend towards the leaf, noting each sibling subtree's root
        let (mut lo, mut hi) = (0, n);
        let mut siblings = Vec::new();
        while hi - lo > 1 {
            let k = split(hi - lo);
            if m < lo + k {
                siblings.push(self.range_hash(lo + k, hi));
                hi = lo + k;
            } else {
                siblings.push(self.range_hash(lo, lo + k));
                lo += k;
            }
        }
        siblings.reverse();
        Ok(siblings)
    }

    /// The consistency proof (RFC 9162 §2.1.4.1) between the tree at `old_size` and at
    /// `new_size` leaves. It is empty when `old_size` is 0 or equal to `new_size`.
    ///
    /// # Errors
    /// [`MerkleError::SizeBeyondTree`] when `new_size` is greater than [`len`](Self::len),
    /// [`MerkleError::SizesOutOfOrder`] when `old_size` is greater than `new_size`.
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, MerkleError> {
        let n = self.checked_size(new_size)?;
        if old_size > new_size {
            return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
        }
        if old_size == 0 || old_size == new_size {
            return Ok(Vec::new());
        }
        // old_size < new_size <= len, which is a usize
        let mut m = old_size as usize;
        // SUBPROOF(m, D[lo:hi], b), unrolled
        let (mut lo, mut hi) = (0, n);
        let mut whole_old_tree = true;
        let mut siblings = Vec::new();
        while m != hi - lo {
            let k = split(hi - lo);
            if m <= k {
                siblings.push(self.range_hash(lo + k, hi));
                hi = lo + k;
            } else {
                siblings.push(self.range_hash(lo, lo + k));
                lo += k;
                m -= k;
                whole_old_tree = false;
            }
        }
        let mut proof = Vec::with_capacity(siblings.len() + 1);
        if !whole_old_tree {
            proof.push(self.range_hash(lo, hi));
        }
        proof.extend(siblings.into_iter().rev());
        Ok(proof)
    }

    /// `size` as an index into the levels, once it is known not to exceed the tree.
    fn checked_size(&self, size: u64) -> Result<usize, MerkleError> {
        let len = self.len();
        if size > len {
            return Err(MerkleError::SizeBeyondTree { size, len });
        }
        // size <= len, the length of a Vec
        Ok(size as usize)
    }

    /// MTH(D[lo:hi]) for `hi <= len()`.
    ///
    /// Ranges met while building roots and proofs start at a multiple of the largest power of
    /// two that fits in them, so each is a stored complete subtree or splits into one and a
    /// smaller such range: O(log n) hashes.
    fn range_hash(&self, lo: usize, hi: usize) -> Hash {
        let len = hi - lo;
        if len == 0 {
            return empty_root();
        }
        if len.is_power_of_two() && lo.is_multiple_of(len) {
            let level = len.trailing_zeros() as usize;
            // a complete aligned subtree within the tree is stored (see the invariant)
            return self.levels[level][lo >> level];
        }
        let k = split(len);
        node_hash(&self.range_hash(lo, lo + k), &self.range_hash(lo + k, hi))
    }
}

/// Checks that `proof` proves the leaf with hash `leaf_hash` at `index` in the tree of `size`
/// leaves whose root is `root` (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`MerkleError::IndexOutOfRange`] when `index` is not below `size` (so for any index when
/// `size` is 0), [`MerkleError::ProofLength`] when the proof has more or fewer hashes than
/// `index` and `size` call for, [`MerkleError::RootMismatch`] when it does not lead to `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // 1. leaf_index < tree_size
    if index >= size {
        return Err(MerkleError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(MerkleError::ProofLength {
            expected,
            got: proof.len(),
        });
    }
    // 2.-3.
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    // 4.
    for p in proof {
        if sn == 0 {
            // not reached: the length was checked above
            return Err(MerkleError::ProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    if sn == 0 && r == *root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// Checks that `proof` shows the tree of `new_size` leaves with root `new_root` to extend the
/// tree of `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2).
///
/// The cases RFC 9162 leaves out of the algorithm are decided as follows, failing closed: equal
/// sizes need an empty proof and equal roots; an old size of 0 needs an empty proof and the
/// [empty root](empty_root) as `old_root` (any new tree extends the empty one).
///
/// # Errors
/// [`MerkleError::SizesOutOfOrder`] when `old_size` is greater than `new_size`,
/// [`MerkleError::ProofLength`] when the proof has more or fewer hashes than the sizes call for
/// (an empty proof between different non-zero sizes among them), [`MerkleError::RootMismatch`]
/// when it does not lead to both roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    if old_size > new_size {
        return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(MerkleError::ProofLength {
                expected: 0,
                got: proof.len(),
            });
        }
        let consistent = if old_size == 0 {
            *old_root == empty_root()
        } else {
            old_root == new_root
        };
        return if consistent {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        };
    }
    // 0 < old_size < new_size from here on
    let expected = consistency_proof_len(old_size, new_size);
    // 1. an empty proof fails (expected is at least 1 here)
    if proof.len() != expected {
        return Err(MerkleError::ProofLength {
            expected,
            got: proof.len(),
        });
    }
    // 2. when old_size is a power of two, old_root is the proof's (implicit) first hash
    let (seed, rest) = if old_size.is_power_of_two() {
        (old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (first, rest),
            None => {
                return Err(MerkleError::ProofLength {
                    expected,
                    got: proof.len(),
                });
            }
        }
    };
    // 3.-4.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let (mut fr, mut sr) = (*seed, *seed);
    // 6.
    for c in rest {
        if sn == 0 {
            // not reached: the length was checked above
            return Err(MerkleError::ProofLength {
                expected,
                got: proof.len(),
            });
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    if sn == 0 && fr == *old_root && sr == *new_root {
        Ok(())
    } else {
        Err(MerkleError::RootMismatch)
    }
}

/// The number of hashes in the inclusion proof of `index` in a tree of `size` leaves
/// (`index < size`): the steps of RFC 9162 §2.1.3.2 until `sn` reaches 0.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (mut fn_, mut sn) = (index, size - 1);
    let mut steps = 0;
    while sn != 0 {
        if fn_ & 1 == 0 && fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        steps += 1;
    }
    steps
}

/// The number of hashes in the consistency proof between sizes `0 < old_size < new_size`: the
/// steps of RFC 9162 §2.1.4.2 until `sn` reaches 0, plus the first hash unless `old_size` is a
/// power of two (then the old root stands in for it).
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    let mut steps = 0;
    while sn != 0 {
        if fn_ & 1 == 0 && fn_ == sn {
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        }
        fn_ >>= 1;
        sn >>= 1;
        steps += 1;
    }
    if old_size.is_power_of_two() {
        steps
    } else {
        steps + 1
    }
}

/// The largest power of two smaller than `n` (`n >= 2`): where RFC 9162 splits a tree of `n`.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

fn finish(ctx: Context) -> Hash {
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

#[cfg(test)]
mod tests;
