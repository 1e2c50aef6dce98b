/// Little-endian field access on raw bytes, for the on-disk formats. Offsets are checked by
/// the callers (who know their layouts); these never allocate.
extension UnsafeMutableRawBufferPointer {
    @inlinable @inline(__always) public func storeLE<T: FixedWidthInteger>(_ value: T, at offset: Int) {
        storeBytes(of: value.littleEndian, toByteOffset: offset, as: T.self)
    }
}

extension UnsafeRawBufferPointer {
    @inlinable @inline(__always) public func loadLE<T: FixedWidthInteger>(_: T.Type = T.self, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}

/// A growable little-endian byte writer for cold paths (headers, markers, fixtures).
public struct ByteWriter {
    public private(set) var bytes: [UInt8] = []
    public init() {}
    public mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func put(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }
    public mutating func put(zeros count: Int) { bytes.append(contentsOf: repeatElement(0, count: count)) }
}

/// A bounds-checked little-endian reader for cold paths; runs out with `nil`, never traps.
public struct ByteReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var position = 0
    public init(_ bytes: UnsafeRawBufferPointer) { self.bytes = bytes }
    public var remaining: Int { bytes.count - position }
    public mutating func get<T: FixedWidthInteger>(_: T.Type = T.self) -> T? {
        guard remaining >= MemoryLayout<T>.size else { return nil }
        defer { position += MemoryLayout<T>.size }
        return bytes.loadLE(T.self, at: position)
    }
    public mutating func get(count: Int) -> [UInt8]? {
        guard count >= 0, remaining >= count else { return nil }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }
}

/// Hex text for IDs and file names.
public enum Hex {
    /// Bytes from lowercase or uppercase hex digits; stops at the first pair that is not hex.
    public static func bytes(_ text: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var rest = Substring(text)
        while rest.count >= 2, let b = UInt8(rest.prefix(2), radix: 16) {
            bytes.append(b)
            rest = rest.dropFirst(2)
        }
        return bytes
    }

    /// The bytes of `text` when it is wholly hex digits, in pairs; else nil.
    public static func bytesIfValid(_ text: String) -> [UInt8]? {
        guard text.utf8.count % 2 == 0, text.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x41...0x46).contains($0) || (0x61...0x66).contains($0) }) else {
            return nil
        }
        return bytes(text)
    }

    /// Lowercase hex digits, two per byte.
    public static func string(_ bytes: [UInt8]) -> String {
        bytes.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    /// 16 lowercase hex digits, zero-padded: LSNs in file names sort as numbers.
    public static func padded(_ value: UInt64) -> String {
        let h = String(value, radix: 16)
        return String(repeating: "0", count: 16 - h.count) + h
    }
}
