//! Hash maps keyed by dense indexes, with a multiplicative hash instead of the
//! default SipHash: the keys are our own indexes, never chosen by a caller, so
//! flooding is not a concern, and on the serving path a SipHash per candidate
//! cost more than the scoring it served.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a dense index (item, customer, category) to `V`.
pub(crate) type IxMap<K, V> = HashMap<K, V, BuildHasherDefault<IxHasher>>;
/// A set of dense indexes.
pub(crate) type IxSet<K> = HashSet<K, BuildHasherDefault<IxHasher>>;

/// Fibonacci hashing of integer keys (the 64-bit golden ratio multiplier).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IxHasher(u64);

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

impl Hasher for IxHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(GOLDEN);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(GOLDEN);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_a_std_map_holds() {
        let mut map: IxMap<u32, u32> = IxMap::default();
        for i in 0..10_000u32 {
            *map.entry(i.wrapping_mul(2_654_435_761) % 50_000)
                .or_default() += i;
        }
        let mut std_map: HashMap<u32, u32> = HashMap::new();
        for i in 0..10_000u32 {
            *std_map
                .entry(i.wrapping_mul(2_654_435_761) % 50_000)
                .or_default() += i;
        }
        assert_eq!(map.len(), std_map.len());
        assert!(std_map.iter().all(|(k, v)| map.get(k) == Some(v)));
    }
}
