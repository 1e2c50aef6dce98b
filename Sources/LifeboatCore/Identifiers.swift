/// Newtypes for every ID and offset kind, so that an LSN is never passed where a block index
/// is expected. All are plain 64-bit values on disk (little-endian in the journal).

/// Log sequence number: the total order of writes, flushes and markers in a protection group.
/// LSN 0 means "nothing yet"; the first record of a fresh group has LSN 1.
public struct LSN: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static let zero = LSN(0)
    public var next: LSN { LSN(rawValue + 1) }
    public static func < (a: LSN, b: LSN) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// A disk's number inside its protection group (stable for the disk's life; never reused).
public struct DiskID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public init(_ value: UInt32) { self.rawValue = value }
    public static func < (a: DiskID, b: DiskID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// Index of a 4 KiB block inside a disk.
public struct BlockIndex: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static func < (a: BlockIndex, b: BlockIndex) -> Bool { a.rawValue < b.rawValue }
    public var byteOffset: ByteOffset { ByteOffset(Int64(rawValue) * Int64(BlockSize.bytes)) }
    public var description: String { String(rawValue) }
}

/// A byte offset inside a disk or a file.
public struct ByteOffset: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int64
    public init(rawValue: Int64) { self.rawValue = rawValue }
    public init(_ value: Int64) { self.rawValue = value }
    public static func < (a: ByteOffset, b: ByteOffset) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// The journal's and the digest's unit. Every write is widened to whole blocks.
public enum BlockSize {
    public static let bytes = 4096
    public static let shift = 12

    /// Blocks touched by `length` bytes at `offset` (length > 0).
    public static func blocks(coveringOffset offset: Int64, length: Int) -> (first: BlockIndex, count: Int) {
        let first = UInt64(offset) >> UInt64(shift)
        let last = (UInt64(offset) + UInt64(length) - 1) >> UInt64(shift)
        return (BlockIndex(first), Int(last - first + 1))
    }
}

/// An LSN in JSON is its number.
extension LSN: Codable {
    public init(from decoder: any Decoder) throws { self.init(try decoder.singleValueContainer().decode(UInt64.self)) }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// A site's name (`vault enroll --site-name`): it names the site's certificate and its group's
/// directory in a served vault (`sites/NAME/`), so nothing in it can leave that directory.
public enum SiteName {
    public static func validate(_ name: String) throws {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        guard !name.isEmpty, name.count <= 64, name.allSatisfy(allowed.contains), !name.hasPrefix("."), !name.hasPrefix("-") else {
            throw LifeboatError(.invalidArgument, "'\(name.prefix(80))' is not a site name: 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'")
        }
    }
}
