//! FNV-1a, 64 bits: the hash behind alert ids, plan fingerprints, checkpoint checksums and the
//! records of ingest logs. Stable across runs, machines and versions, unlike the standard
//! library's hasher, which is what all of those need.

/// The FNV-1a offset basis: where a hash starts.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Continues the hash `hash` over `bytes` (start from [`FNV_OFFSET`]).
pub fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= b as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The hash of `bytes` alone.
pub fn fnv1a_of(bytes: &[u8]) -> u64 {
    fnv1a(FNV_OFFSET, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_test_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a" and "foobar".
        assert_eq!(fnv1a_of(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_of(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_of(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(fnv1a_of(b"foo"), b"bar"), fnv1a_of(b"foobar"));
    }
}
