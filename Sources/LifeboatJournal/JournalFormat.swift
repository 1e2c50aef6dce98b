import LifeboatCore

/// Constants and fixed layouts of the journal format. `Docs/formats/journal.md` is the spec;
/// this file and that doc change together (the golden fixture test pins both).
public enum JournalFormat {
    public static let magic: [UInt8] = Array("LBJOURNL".utf8)
    public static let version: UInt32 = 1
    public static let segmentHeaderSize = 64
    public static let recordHeaderSize = 24
    public static let writePayloadHeaderSize = 16
    public static let segmentSuffix = ".seg"
    /// Payloads above this are rejected as corrupt lengths (a write record is at most 1 MiB of
    /// data in practice: the FUSE max_write).
    public static let maxPayload = 64 << 20
}

/// Record types. Bit 7 set means "ignorable": a reader that does not know the type skips the
/// record instead of refusing the segment (forward compatibility).
public struct RecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let write = RecordType(rawValue: 1)
    public static let flush = RecordType(rawValue: 2)
    public static let marker = RecordType(rawValue: 3)
    public static let seal = RecordType(rawValue: 4)
    public static let ignorableBit: UInt8 = 0x80
    public var isIgnorable: Bool { rawValue & Self.ignorableBit != 0 }
    public var isKnown: Bool { (1...4).contains(rawValue) }
    public var description: String {
        switch self {
        case .write: "write"
        case .flush: "flush"
        case .marker: "marker"
        case .seal: "seal"
        default: "type(\(rawValue))"
        }
    }
}

/// The 64-byte segment header.
///
/// | off | size | field |
/// | 0 | 8 | magic "LBJOURNL" | 8 | 4 | version | 12 | 4 | header size (64) |
/// | 16 | 16 | group id | 32 | 8 | first LSN | 40 | 4 | block size | 44 | 4 | reserved |
/// | 48 | 8 | created (Unix ns) | 56 | 4 | reserved | 60 | 4 | CRC-32C of bytes 0..<60 |
public struct SegmentHeader: Equatable, Sendable {
    public var groupID: [UInt8]   // 16 bytes
    public var firstLSN: LSN
    public var createdNanos: Int64

    public init(groupID: [UInt8], firstLSN: LSN, createdNanos: Int64) {
        precondition(groupID.count == 16)
        self.groupID = groupID
        self.firstLSN = firstLSN
        self.createdNanos = createdNanos
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.put(JournalFormat.magic)
        w.put(JournalFormat.version)
        w.put(UInt32(JournalFormat.segmentHeaderSize))
        w.put(groupID)
        w.put(firstLSN.rawValue)
        w.put(UInt32(BlockSize.bytes))
        w.put(UInt32(0))
        w.put(createdNanos)
        w.put(UInt32(0))
        let crc = CRC32C.of(w.bytes)
        w.put(crc)
        return w.bytes
    }

    /// Decodes and validates; `path` only names the file in errors.
    public static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws -> SegmentHeader {
        guard bytes.count >= JournalFormat.segmentHeaderSize else {
            throw LifeboatError(.corrupt, "segment header is truncated: \(bytes.count) of \(JournalFormat.segmentHeaderSize) bytes", path: path, offset: 0)
        }
        guard Array(bytes[0..<8]) == JournalFormat.magic else {
            throw LifeboatError(.corrupt, "not a Lifeboat journal segment (bad magic)", path: path, offset: 0)
        }
        let crc = bytes.loadLE(UInt32.self, at: 60)
        guard crc == CRC32C.of(UnsafeRawBufferPointer(rebasing: bytes[0..<60])) else {
            throw LifeboatError(.corrupt, "segment header checksum mismatch", path: path, offset: 60)
        }
        let version = bytes.loadLE(UInt32.self, at: 8)
        guard version == JournalFormat.version else {
            throw LifeboatError(.unsupported, "segment format version \(version); this lifeboat reads version \(JournalFormat.version)", path: path, offset: 8)
        }
        let blockSize = bytes.loadLE(UInt32.self, at: 40)
        guard blockSize == UInt32(BlockSize.bytes), bytes.loadLE(UInt32.self, at: 12) == UInt32(JournalFormat.segmentHeaderSize) else {
            throw LifeboatError(.unsupported, "segment block size \(blockSize) or header size is not supported", path: path, offset: 12)
        }
        return SegmentHeader(
            groupID: Array(bytes[16..<32]), firstLSN: LSN(bytes.loadLE(UInt64.self, at: 32)),
            createdNanos: bytes.loadLE(Int64.self, at: 48))
    }
}

/// The 24-byte record header.
///
/// | off | size | field |
/// | 0 | 4 | CRC-32C of header bytes 4..<24 | 4 | 4 | CRC-32C of the payload |
/// | 8 | 4 | payload length | 12 | 1 | type | 13 | 1 | flags (0) | 14 | 2 | reserved (0) |
/// | 16 | 8 | LSN |
public struct RecordHeader: Equatable, Sendable {
    public var payloadCRC: UInt32
    public var length: UInt32
    public var type: RecordType
    public var lsn: LSN

    public init(payloadCRC: UInt32, length: UInt32, type: RecordType, lsn: LSN) {
        self.payloadCRC = payloadCRC
        self.length = length
        self.type = type
        self.lsn = lsn
    }

    /// Stores the header, with its checksum, into the first 24 bytes of `out` (no allocation).
    @inline(__always)
    public func store(into out: UnsafeMutableRawBufferPointer) {
        out.storeLE(payloadCRC, at: 4)
        out.storeLE(length, at: 8)
        out.storeBytes(of: type.rawValue, toByteOffset: 12, as: UInt8.self)
        out.storeBytes(of: UInt8(0), toByteOffset: 13, as: UInt8.self)
        out.storeLE(UInt16(0), at: 14)
        out.storeLE(lsn.rawValue, at: 16)
        let crc = CRC32C.of(UnsafeRawBufferPointer(rebasing: out[4..<24]))
        out.storeLE(crc, at: 0)
    }

    /// The header at the start of `bytes` if its checksum and reserved fields are right.
    @inline(__always)
    public static func decode(_ bytes: UnsafeRawBufferPointer) -> RecordHeader? {
        guard bytes.count >= JournalFormat.recordHeaderSize else { return nil }
        let crc = bytes.loadLE(UInt32.self, at: 0)
        guard crc == CRC32C.of(UnsafeRawBufferPointer(rebasing: bytes[4..<24])) else { return nil }
        guard bytes[13] == 0, bytes.loadLE(UInt16.self, at: 14) == 0 else { return nil }
        return RecordHeader(
            payloadCRC: bytes.loadLE(UInt32.self, at: 4), length: bytes.loadLE(UInt32.self, at: 8),
            type: RecordType(rawValue: bytes[12]), lsn: LSN(bytes.loadLE(UInt64.self, at: 16)))
    }
}

/// The 16-byte header at the start of a write record's payload, followed by
/// `blockCount × 4096` bytes of data.
///
/// | off | size | field |
/// | 0 | 4 | disk id | 4 | 4 | block count | 8 | 8 | first block |
public struct WritePayloadHeader: Equatable, Sendable {
    public var disk: DiskID
    public var blockCount: UInt32
    public var firstBlock: BlockIndex

    public init(disk: DiskID, firstBlock: BlockIndex, blockCount: UInt32) {
        self.disk = disk
        self.firstBlock = firstBlock
        self.blockCount = blockCount
    }

    @inline(__always)
    public func store(into out: UnsafeMutableRawBufferPointer) {
        out.storeLE(disk.rawValue, at: 0)
        out.storeLE(blockCount, at: 4)
        out.storeLE(firstBlock.rawValue, at: 8)
    }

    /// Decodes the write payload header and checks that the data length matches the count.
    public static func decode(_ payload: UnsafeRawBufferPointer) -> WritePayloadHeader? {
        guard payload.count >= JournalFormat.writePayloadHeaderSize else { return nil }
        let h = WritePayloadHeader(
            disk: DiskID(payload.loadLE(UInt32.self, at: 0)), firstBlock: BlockIndex(payload.loadLE(UInt64.self, at: 8)),
            blockCount: payload.loadLE(UInt32.self, at: 4))
        guard h.blockCount > 0, payload.count == JournalFormat.writePayloadHeaderSize + Int(h.blockCount) * BlockSize.bytes else { return nil }
        return h
    }
}

/// Segment file names: the first LSN as 16 hex digits, so names sort in LSN order.
public enum SegmentName {
    public static func make(firstLSN: LSN) -> String { Hex.padded(firstLSN.rawValue) + JournalFormat.segmentSuffix }

    public static func parse(_ name: String) -> LSN? {
        guard name.hasSuffix(JournalFormat.segmentSuffix), name.count == 16 + JournalFormat.segmentSuffix.count else { return nil }
        return UInt64(name.prefix(16), radix: 16).map { LSN($0) }
    }
}
