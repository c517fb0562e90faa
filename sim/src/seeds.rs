//! Named random streams of one seed.
//!
//! Every concern (deriving the scenario, each fault generator, each client, each disk, each
//! node's disk latency) draws from its own `ChaCha8Rng`, keyed by the seed, a name and an
//! index. Adding a client or switching a fault generator off therefore never shifts what the
//! others draw, which keeps shrinking stable. The executor's own streams (scheduler, per-node
//! environments) are `Sim`'s business and keyed differently.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::trace::fnv1a;

/// The stream `name`/`index` of `seed`.
pub fn rng(seed: u64, name: &str, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ fnv1a(name.as_bytes()));
    rng.set_stream(index);
    rng
}

/// One `u64` from the stream `name`/`index` of `seed`, e.g. to seed a `SimDisk`.
pub fn derive_u64(seed: u64, name: &str, index: u64) -> u64 {
    use rand::RngCore;
    rng(seed, name, index).next_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_name_and_index_and_repeat() {
        assert_eq!(derive_u64(1, "disk", 0), derive_u64(1, "disk", 0));
        assert_ne!(derive_u64(1, "disk", 0), derive_u64(1, "disk", 1));
        assert_ne!(derive_u64(1, "disk", 0), derive_u64(1, "client", 0));
        assert_ne!(derive_u64(1, "disk", 0), derive_u64(2, "disk", 0));
    }
}
