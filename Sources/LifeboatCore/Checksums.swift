import CCRC32C
import CXXHash

/// CRC-32C (Castagnoli), the journal's record checksum. Chains: `extend(extend(0,a),b) == of(a‖b)`.
public enum CRC32C {
    @inline(__always)
    public static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        ccrc32c_extend(crc, bytes.baseAddress, bytes.count)
    }
    public static func of(_ bytes: UnsafeRawBufferPointer) -> UInt32 { extend(0, bytes) }
    public static func of(_ bytes: [UInt8]) -> UInt32 { bytes.withUnsafeBytes { of($0) } }
}

/// A 128-bit XXH3 hash: the source digest's unit (per block, per chunk, per disk).
public struct Hash128: Hashable, Sendable, CustomStringConvertible {
    public var high: UInt64
    public var low: UInt64
    public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    public static let zero = Hash128(high: 0, low: 0)

    @inline(__always)
    public static func of(_ bytes: UnsafeRawBufferPointer) -> Hash128 {
        let h = XXH3_128bits(bytes.baseAddress, bytes.count)
        return Hash128(high: h.high64, low: h.low64)
    }

    /// 32 lowercase hex digits, high half first (XXH3's canonical order).
    public var description: String { hex(high) + hex(low) }

    public init?(hex text: String) {
        guard text.count == 32, let h = UInt64(text.prefix(16), radix: 16), let l = UInt64(text.suffix(16), radix: 16) else { return nil }
        self.init(high: h, low: l)
    }
}

private func hex(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
}
