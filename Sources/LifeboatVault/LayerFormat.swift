import LifeboatCore

/// A layer: the writes of one journal segment, as stored in the vault (Docs/formats/vault.md).
///
/// ```
/// | header (64) | zstd frames, one per write record | index: entries × 40 | Bloom filter | footer (24) |
/// ```
/// Header: magic "LBLAYER1" (8), version u32, header size u32 (64), group id (16), first LSN u64,
/// last LSN u64, entry count u64, index offset u64.
/// Index entry (sorted by disk, block, LSN): disk u32, block-in-frame u32, block u64, LSN u64,
/// frame offset u64, frame length u32, reserved u32.
/// Bloom filter: u64 words (LayerBloom) of the distinct (disk, block) pairs.
/// Footer: Bloom filter words u64, CRC-32C of header ‖ index ‖ filter u32, reserved u32, magic "LBLAYEND" (8).
public enum LayerFormat {
    public static let magic: [UInt8] = Array("LBLAYER1".utf8)
    public static let endMagic: [UInt8] = Array("LBLAYEND".utf8)
    /// Version 1: plain zstd frames; version 2: each frame sealed (FrameSealer), the rest alike.
    public static let version: UInt32 = 1
    public static let sealedVersion: UInt32 = 2
    public static let headerSize = 64
    public static let entrySize = 40
    public static let footerSize = 24
}

public struct LayerHeader: Equatable, Sendable {
    public var groupID: [UInt8]
    public var firstLSN: LSN
    public var lastLSN: LSN
    public var entryCount: Int
    public var indexOffset: Int
    /// Whether the frames are sealed (an encrypted vault's layer, version 2).
    public var sealed = false

    func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.put(LayerFormat.magic)
        w.put(sealed ? LayerFormat.sealedVersion : LayerFormat.version)
        w.put(UInt32(LayerFormat.headerSize))
        w.put(groupID)
        w.put(firstLSN.rawValue)
        w.put(lastLSN.rawValue)
        w.put(UInt64(entryCount))
        w.put(UInt64(indexOffset))
        return w.bytes
    }
}

/// One block version in a layer.
public struct LayerEntry: Equatable, Sendable {
    public var disk: DiskID
    public var block: BlockIndex
    public var lsn: LSN
    public var frameOffset: Int
    public var frameLength: Int
    public var blockInFrame: Int

    func store(into out: UnsafeMutableRawBufferPointer, at offset: Int) {
        out.storeLE(disk.rawValue, at: offset)
        out.storeLE(UInt32(blockInFrame), at: offset + 4)
        out.storeLE(block.rawValue, at: offset + 8)
        out.storeLE(lsn.rawValue, at: offset + 16)
        out.storeLE(UInt64(frameOffset), at: offset + 24)
        out.storeLE(UInt32(frameLength), at: offset + 32)
        out.storeLE(UInt32(0), at: offset + 36)
    }

    static func load(_ raw: UnsafeRawBufferPointer, at offset: Int) -> LayerEntry {
        LayerEntry(
            disk: DiskID(raw.loadLE(UInt32.self, at: offset)), block: BlockIndex(raw.loadLE(UInt64.self, at: offset + 8)),
            lsn: LSN(raw.loadLE(UInt64.self, at: offset + 16)), frameOffset: Int(truncatingIfNeeded: raw.loadLE(UInt64.self, at: offset + 24)),
            frameLength: Int(raw.loadLE(UInt32.self, at: offset + 32)), blockInFrame: Int(raw.loadLE(UInt32.self, at: offset + 4)))
    }

    /// The index order: disk, then block, then LSN.
    static func precedes(_ a: (DiskID, BlockIndex, LSN), _ b: (DiskID, BlockIndex, LSN)) -> Bool {
        if a.0 != b.0 { return a.0 < b.0 }
        if a.1 != b.1 { return a.1 < b.1 }
        return a.2 < b.2
    }
}
