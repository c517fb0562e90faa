//! Event ids the server generates when the client gives no `EVENT_ID`.
//!
//! The layout is SierraDB's (`research/sierradb.md` §2.3), bit 127 first:
//!
//! | bits | width | field |
//! |---|---|---|
//! | 127..80 | 48 | Unix time in milliseconds |
//! | 79..68 | 12 | random |
//! | 67..64 | 4 | `0x7` |
//! | 63..62 | 2 | `0b10` (the RFC 4122 variant) |
//! | 61..46 | 16 | the partition hash of the partition key ([`PartitionKey::hash16`]) |
//! | 45..0 | 46 | random |
//!
//! It is not an RFC 9562 UUIDv7 (the version nibble is in the wrong place), but ids sort
//! roughly by time, and clients that derive an event's partition from its id, as SierraDB's
//! `EGET` routing does, keep working. Our `EGET` does not need the hash: it looks ids up in the
//! id index, so client-chosen ids may be any UUID.

use uuid::Uuid;

use crate::env::Env;
use crate::model::{EventId, PartitionKey};

const MS_MASK: u64 = (1 << 48) - 1;
const RAND_A_MASK: u64 = (1 << 12) - 1;
const RAND_B_MASK: u64 = (1 << 46) - 1;

/// The id with these parts; only the low bits of each random word are used.
pub fn compose_event_id(unix_ms: u64, partition_hash: u16, rand_a: u64, rand_b: u64) -> EventId {
    let bits = (u128::from(unix_ms & MS_MASK) << 80)
        | (u128::from(rand_a & RAND_A_MASK) << 68)
        | (0x7 << 64)
        | (0b10 << 62)
        | (u128::from(partition_hash) << 46)
        | u128::from(rand_b & RAND_B_MASK);
    EventId(Uuid::from_u128(bits))
}

/// A fresh id for an event of `partition_key` timestamped `unix_ms`, with randomness from the
/// environment's seeded generator (so a simulation seed reproduces it).
pub fn generate_event_id<E: Env>(env: &E, unix_ms: u64, partition_key: PartitionKey) -> EventId {
    let rand_a = env.random_u64();
    let rand_b = env.random_u64();
    compose_event_id(unix_ms, partition_key.hash16(), rand_a, rand_b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproduces_an_id_sierradb_generated() {
        // From sierradb-replies.md: the first EAPPEND of user-123 at 1795745539215 ms.
        let key = PartitionKey(Uuid::parse_str("7e124fe8-fe28-5398-bb95-53973100148f").unwrap());
        let sierradb = Uuid::parse_str("01a21ac6-648f-78f7-bb95-6feef04f9c90").unwrap();
        let bits = sierradb.as_u128();
        let rand_a = ((bits >> 68) as u64) & RAND_A_MASK;
        let rand_b = (bits as u64) & RAND_B_MASK;
        let id = compose_event_id(1_795_745_539_215, key.hash16(), rand_a, rand_b);
        assert_eq!(id.0, sierradb);
    }

    #[test]
    fn embeds_time_hash_and_fixed_bits() {
        let key = PartitionKey(Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0));
        let id = compose_event_id(0xABCD_EF01_2345, key.hash16(), u64::MAX, u64::MAX).0;
        let bits = id.as_u128();
        assert_eq!((bits >> 80) as u64, 0xABCD_EF01_2345);
        assert_eq!((bits >> 64) & 0xF, 0x7);
        assert_eq!((bits >> 62) & 0b11, 0b10);
        // The id's hash is the key's hash, so hashing the id gives the key's partition.
        assert_eq!(PartitionKey(id).hash16(), key.hash16());
        assert_eq!(PartitionKey(id).partition(32), key.partition(32));
    }

    #[test]
    fn time_beyond_48_bits_wraps_instead_of_spilling() {
        let id = compose_event_id(u64::MAX, 0, 0, 0).0.as_u128();
        assert_eq!(id >> 80, u128::from(MS_MASK));
        assert_eq!((id >> 64) & 0xFFFF, 0x7);
    }
}
