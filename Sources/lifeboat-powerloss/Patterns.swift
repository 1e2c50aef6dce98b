import LifeboatCore
#if canImport(Glibc)
import Glibc
#endif

/// The content the workload writes: every 4 KiB block names itself — disk, block, generation —
/// and the rest follows from those, so the checker can tell any block's generation and that
/// it is whole, without a copy of what was written.
enum BlockPattern {
    static let magic: UInt64 = 0x3130_5257_4C50_424C  // "LBPLWR01"
    static let bytes = 4096

    static func fill(_ out: UnsafeMutableRawBufferPointer, disk: UInt32, block: UInt32, generation: UInt64) {
        out.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt64.self)
        out.storeBytes(of: disk.littleEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: block.littleEndian, toByteOffset: 12, as: UInt32.self)
        out.storeBytes(of: generation.littleEndian, toByteOffset: 16, as: UInt64.self)
        var random = SplitMix64(seed: (UInt64(disk) << 56) ^ (UInt64(block) << 32) ^ generation)
        for i in stride(from: 24, to: bytes, by: 8) {
            out.storeBytes(of: random.next(), toByteOffset: i, as: UInt64.self)
        }
    }

    /// The generation a block holds: 0 for a never-written (all-zero) block; nil when it is
    /// neither (torn, misplaced, or garbage).
    static func generation(of block: UnsafeRawBufferPointer, disk: UInt32, index: UInt32,
                           scratch: UnsafeMutableRawBufferPointer) -> UInt64? {
        if block.allSatisfy({ $0 == 0 }) { return 0 }
        guard UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) == magic else { return nil }
        let generation = UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        fill(scratch, disk: disk, block: index, generation: generation)
        return memcmp(block.baseAddress!, scratch.baseAddress!, bytes) == 0 ? generation : nil
    }
}

/// What the workload writes to the recorder's ack disk after an fsync returned: the blocks
/// (disk, block, generation) that fsync made durable. The recorder journals the ack write with
/// an LSN after the flush that made them durable, which is how the checker knows, for each
/// crash state, which writes must read back. Block 0 holds the start mark.
enum AckBlock {
    static let magic: UInt64 = 0x314B_4341_4C50_424C  // "LBPLACK1"
    static let startMagic: UInt64 = 0x5452_5453_4C50_424C  // "LBPLSTRT"
    static let entryBytes = 16
    static let headerBytes = 16
    static let capacity = (BlockPattern.bytes - headerBytes) / entryBytes

    struct Entry: Hashable {
        var disk: UInt32
        var block: UInt32
        var generation: UInt64
    }

    static func encode(_ entries: [Entry], into out: UnsafeMutableRawBufferPointer) {
        precondition(entries.count <= capacity)
        out.initializeMemory(as: UInt8.self, repeating: 0)
        out.storeBytes(of: magic.littleEndian, toByteOffset: 0, as: UInt64.self)
        out.storeBytes(of: UInt32(entries.count).littleEndian, toByteOffset: 8, as: UInt32.self)
        for (i, e) in entries.enumerated() {
            let at = headerBytes + i * entryBytes
            out.storeBytes(of: e.disk.littleEndian, toByteOffset: at, as: UInt32.self)
            out.storeBytes(of: e.block.littleEndian, toByteOffset: at + 4, as: UInt32.self)
            out.storeBytes(of: e.generation.littleEndian, toByteOffset: at + 8, as: UInt64.self)
        }
    }

    enum Decoded {
        case start
        case acks([Entry])
    }

    static func decode(_ block: UnsafeRawBufferPointer) -> Decoded? {
        let m = UInt64(littleEndian: block.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        if m == startMagic { return .start }
        guard m == magic else { return nil }
        let count = Int(UInt32(littleEndian: block.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard count <= capacity else { return nil }
        return .acks((0..<count).map { i in
            let at = headerBytes + i * entryBytes
            return Entry(disk: UInt32(littleEndian: block.loadUnaligned(fromByteOffset: at, as: UInt32.self)),
                         block: UInt32(littleEndian: block.loadUnaligned(fromByteOffset: at + 4, as: UInt32.self)),
                         generation: UInt64(littleEndian: block.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self)))
        })
    }
}
