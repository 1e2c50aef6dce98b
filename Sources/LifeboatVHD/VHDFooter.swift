import Foundation
import LifeboatCore

/// The 512-byte VHD hard disk footer (Microsoft VHD spec v1.0; shared/reference §1.3). All
/// fields big-endian. Written so that QEMU (`-f vpc`) and libvhdi report the exact size:
/// original size = current size = the disk's size, geometry from the spec's algorithm when it
/// is exact and 65535/16/255 otherwise, our own creator application.
public struct VHDFooter: Equatable, Sendable {
    public enum DiskType: UInt32, Sendable { case fixed = 2, dynamic = 3, differencing = 4 }

    public static let size = 512
    public static let cookie: [UInt8] = Array("conectix".utf8)
    /// Seconds from the Unix epoch to the VHD epoch (2000-01-01T00:00:00Z).
    static let epochOffset: UInt32 = 946_684_800

    public var diskType: DiskType
    public var currentSize: UInt64
    public var originalSize: UInt64
    public var dataOffset: UInt64
    public var timestamp: UInt32
    public var creatorApplication: [UInt8]
    public var geometry: (cylinders: UInt16, heads: UInt8, sectors: UInt8)
    public var uniqueID: [UInt8]

    public static func == (a: VHDFooter, b: VHDFooter) -> Bool { a.encoded() == b.encoded() }

    public init(diskType: DiskType, size: UInt64, uniqueID: [UInt8]? = nil, timestamp: Date = Date()) {
        self.diskType = diskType
        self.currentSize = size
        self.originalSize = size
        self.dataOffset = diskType == .fixed ? UInt64.max : 512
        self.timestamp = UInt32(max(0, timestamp.timeIntervalSince1970 - Double(Self.epochOffset)))
        self.creatorApplication = Array("lbot".utf8)
        self.geometry = Self.geometry(forSize: size)
        self.uniqueID = uniqueID ?? UUID().uuidBytes
    }

    /// CHS per the spec's appendix; when it does not multiply out to exactly `size`, the
    /// maximum 65535/16/255, which makes QEMU use the current size (shared/reference §1.5, §2).
    static func geometry(forSize size: UInt64) -> (UInt16, UInt8, UInt8) {
        var total = size / 512
        if total > 65535 * 16 * 255 { total = 65535 * 16 * 255 }
        var spt: UInt64, heads: UInt64, cth: UInt64
        if total >= 65535 * 16 * 63 {
            spt = 255; heads = 16; cth = total / spt
        } else {
            spt = 17; cth = total / spt
            heads = max((cth + 1023) / 1024, 4)
            if cth >= heads * 1024 || heads > 16 { spt = 31; heads = 16; cth = total / spt }
            if cth >= heads * 1024 { spt = 63; heads = 16; cth = total / spt }
        }
        let cylinders = cth / heads
        if cylinders * heads * spt * 512 == size { return (UInt16(cylinders), UInt8(heads), UInt8(spt)) }
        return (65535, 16, 255)
    }

    public func encoded() -> [UInt8] {
        var b = BigEndianWriter()
        b.put(Self.cookie)
        b.put(UInt32(2))            // features: reserved bit must be 1
        b.put(UInt32(0x0001_0000))  // file format version (libvhdi requires exactly this)
        b.put(dataOffset)
        b.put(timestamp)
        b.put(creatorApplication)
        b.put(UInt32(0x0001_0000))  // creator version
        b.put(Array("Wi2k".utf8))   // creator host OS
        b.put(originalSize)
        b.put(currentSize)
        b.put(geometry.cylinders)
        b.put(geometry.heads)
        b.put(geometry.sectors)
        b.put(diskType.rawValue)
        b.put(UInt32(0))            // checksum, filled below
        b.put(uniqueID)
        b.put(UInt8(0))             // saved state
        b.put(zeros: 427)
        var bytes = b.bytes
        let sum = vhdChecksum(bytes)
        bytes.replaceSubrange(64..<68, with: [UInt8(sum >> 24), UInt8((sum >> 16) & 0xFF), UInt8((sum >> 8) & 0xFF), UInt8(sum & 0xFF)])
        return bytes
    }

    /// Decodes and checks a footer; `what` names the file in errors.
    public static func decode(_ bytes: ArraySlice<UInt8>, what: String, offset: Int64) throws -> VHDFooter {
        let b = Array(bytes)
        guard b.count == size else { throw LifeboatError(.corrupt, "VHD footer is truncated (\(b.count) bytes)", path: what, offset: offset) }
        guard Array(b[0..<8]) == cookie else { throw LifeboatError(.corrupt, "no VHD footer: cookie is not \"conectix\"", path: what, offset: offset) }
        let r = BigEndianReader(b)
        let stored = r.u32(64)
        var zeroed = b
        zeroed.replaceSubrange(64..<68, with: [0, 0, 0, 0])
        guard stored == vhdChecksum(zeroed) else {
            throw LifeboatError(.corrupt, "VHD footer checksum is 0x\(String(stored, radix: 16)), the footer sums to 0x\(String(vhdChecksum(zeroed), radix: 16))", path: what, offset: offset + 64)
        }
        let typeValue = r.u32(60)
        guard let type = DiskType(rawValue: typeValue) else {
            throw LifeboatError(.unsupported, "VHD disk type \(typeValue) is not fixed (2), dynamic (3) or differencing (4)", path: what, offset: offset + 60)
        }
        var f = VHDFooter(diskType: type, size: r.u64(48), uniqueID: Array(b[68..<84]))
        f.originalSize = r.u64(40)
        f.dataOffset = r.u64(16)
        f.timestamp = r.u32(24)
        f.creatorApplication = Array(b[28..<32])
        f.geometry = (r.u16(56), b[58], b[59])
        return f
    }
}

/// `~(sum of all bytes)` over the structure with its checksum field zero (spec: "Checksum").
func vhdChecksum(_ bytes: [UInt8]) -> UInt32 {
    ~bytes.reduce(UInt32(0)) { $0 &+ UInt32($1) }
}

struct BigEndianWriter {
    var bytes: [UInt8] = []
    mutating func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.bigEndian) { bytes.append(contentsOf: $0) } }
    mutating func put(_ raw: [UInt8]) { bytes.append(contentsOf: raw) }
    mutating func put(zeros n: Int) { bytes += [UInt8](repeating: 0, count: n) }
}

struct BigEndianReader {
    let b: [UInt8]
    init(_ b: [UInt8]) { self.b = b }
    func u16(_ o: Int) -> UInt16 { b[o..<o + 2].reduce(0) { $0 << 8 | UInt16($1) } }
    func u32(_ o: Int) -> UInt32 { b[o..<o + 4].reduce(0) { $0 << 8 | UInt32($1) } }
    func u64(_ o: Int) -> UInt64 { b[o..<o + 8].reduce(0) { $0 << 8 | UInt64($1) } }
}

extension UUID {
    var uuidBytes: [UInt8] { withUnsafeBytes(of: uuid) { Array($0) } }
}
