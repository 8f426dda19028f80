//! Leaf hashes and the RFC 6962 tree hash of a range of them.

use super::*;

/// The leaf data of a record: `kind | len u32 LE | payload`.
pub fn leaf_data(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + payload.len());
    v.push(kind);
    v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// The RFC 6962 leaf hash of a record: `SHA-256(0x00 | kind | len | payload)`.
pub fn leaf_hash(kind: u8, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8, kind]);
    h.update((payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize().into()
}

/// The RFC 6962 leaf hash of leaf data: `SHA-256(0x00 | data)`.
pub fn leaf_hash_of(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// An RFC 6962 interior node: `SHA-256(0x01 | left | right)`.
fn node(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The right edge of a Merkle tree being appended to: the roots of the
/// perfect subtrees that make it up, largest (leftmost) first, one per bit
/// of its size. Enough to append a leaf and to compute the RFC 6962 root,
/// in memory logarithmic in the size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves appended.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut n = self.size;
        // Each trailing one of the size is a perfect subtree the new leaf completes.
        while n & 1 == 1 {
            if let Some(left) = self.stack.pop() {
                h = node(&left, &h);
            }
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    /// The RFC 6962 Merkle tree hash (`SHA-256("")` for the empty tree).
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(mut r) = it.next().copied() else { return Sha256::digest([]).into() };
        for left in it {
            r = node(left, &r);
        }
        r
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9 + 32 * self.stack.len() + 32);
        v.extend_from_slice(&self.size.to_le_bytes());
        v.push(self.stack.len() as u8);
        for h in &self.stack {
            v.extend_from_slice(h);
        }
        let sum: Hash = Sha256::digest(&v).into();
        v.extend_from_slice(&sum);
        v
    }

    pub(super) fn decode(b: &[u8]) -> Option<Self> {
        let body = b.get(..b.len().checked_sub(32)?)?;
        if Sha256::digest(body).as_slice() != &b[body.len()..] || body.len() < 9 {
            return None;
        }
        let size = u64::from_le_bytes(body[..8].try_into().ok()?);
        let n = body[8] as usize;
        if n != size.count_ones() as usize || body.len() != 9 + 32 * n {
            return None;
        }
        let stack = body[9..].chunks_exact(32).map(|c| c.try_into().unwrap_or_default()).collect();
        Some(Self { size, stack })
    }
}
