import LifeboatCore

/// A Bloom filter of the (disk, block) pairs a layer holds: a point read asks it before the
/// binary search, so layers without the block cost a few bit tests. 10 bits per pair and 7
/// probes (about 1% false positives); probe i is bit (h1 + i·h2) mod m (double hashing) of a
/// SplitMix64 hash of `disk << 40 | block`.
struct LayerBloom {
    static let bitsPerKey = 10
    static let probes = 7

    /// The filter's 64-bit words for `keys` (at least one word).
    static func build(_ keys: [(DiskID, BlockIndex)]) -> [UInt64] {
        let bits = max(64, (keys.count * bitsPerKey + 63) / 64 * 64)
        var words = [UInt64](repeating: 0, count: bits / 64)
        for (disk, block) in keys {
            var (h1, h2) = hashes(disk, block)
            for _ in 0..<probes {
                let bit = Int(h1 % UInt64(bits))
                words[bit >> 6] |= 1 << UInt64(bit & 63)
                h1 &+= h2
            }
        }
        return words
    }

    /// Whether the filter in `words` (little-endian u64s) may hold the pair.
    @inline(__always)
    static func mayContain(_ words: UnsafeRawBufferPointer, disk: DiskID, block: BlockIndex) -> Bool {
        let bits = UInt64(words.count * 8)
        var (h1, h2) = hashes(disk, block)
        for _ in 0..<probes {
            let bit = Int(h1 % bits)
            if words.loadLE(UInt64.self, at: (bit >> 6) * 8) & (1 << UInt64(bit & 63)) == 0 { return false }
            h1 &+= h2
        }
        return true
    }

    @inline(__always)
    static func hashes(_ disk: DiskID, _ block: BlockIndex) -> (UInt64, UInt64) {
        var z = (UInt64(disk.rawValue) << 40 | block.rawValue) &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return (z, (z >> 32 | z << 32) | 1)
    }
}
