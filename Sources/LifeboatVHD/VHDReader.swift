import Foundation
import LifeboatCore
import SystemPackage

/// Reads fixed and dynamic VHDs (import). Every open-time rejection names the field, its value
/// and its offset; differencing disks are refused for now.
public final class VHDReader {
    public let path: String
    public let footer: VHDFooter
    public var sizeBytes: Int64 { Int64(footer.currentSize) }
    private let fd: FileDescriptor
    private let fileSize: Int64
    /// Dynamic: file offset of each block's bitmap, nil when unallocated.
    private var blocks: [Int64?] = []
    private var blockSize = 0
    private var bitmapBytes = 0

    /// Whether the file ends with a VHD footer (or starts with one: QEMU's dynamic probe).
    public static func looksLikeVHD(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return false }
        defer { try? fd.close() }
        guard let size = try? fd.fileSize(), size >= 512 else { return false }
        var tail = [UInt8](repeating: 0, count: 8)
        _ = try? tail.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: size - 512, into: $0) }
        return tail == VHDFooter.cookie
    }

    /// Whether the file starts with a VHD footer copy (dynamic VHDs have one at offset 0): such a
    /// file without a footer at its end is a truncated VHD, not a raw image.
    public static func startsLikeADynamicVHD(_ path: String) -> Bool {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return false }
        defer { try? fd.close() }
        var head = [UInt8](repeating: 0, count: 8)
        _ = try? head.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }
        return head == VHDFooter.cookie
    }

    public init(path: String) throws {
        self.path = path
        do { fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) } catch {
            throw LifeboatError.wrapping(error, "cannot open the VHD", path: path)
        }
        do {
            fileSize = try fd.fileSize()
            guard fileSize >= 512 else { throw LifeboatError(.corrupt, "file is too short for a VHD footer (\(fileSize) bytes)", path: path, offset: 0) }
            footer = try VHDFooter.decode(ArraySlice(try Self.bytes(fd, at: fileSize - 512, count: 512)), what: path, offset: fileSize - 512)
            switch footer.diskType {
            case .fixed:
                guard Int64(footer.currentSize) + 512 == fileSize else {
                    throw LifeboatError(.corrupt, "fixed VHD: current size \(footer.currentSize) + 512 does not equal the file size \(fileSize) (truncated?)", path: path, offset: fileSize - 512 + 48)
                }
            case .dynamic:
                try openDynamic()
            case .differencing:
                throw LifeboatError(.unsupported, "differencing VHDs are not supported (disk type 4); convert it first, e.g. qemu-img convert -O vpc -o subformat=fixed", path: path, offset: fileSize - 512 + 60)
            }
            guard footer.currentSize > 0, footer.currentSize % 512 == 0 else {
                throw LifeboatError(.corrupt, "current size \(footer.currentSize) is not a positive multiple of 512", path: path, offset: fileSize - 512 + 48)
            }
        } catch {
            try? fd.close()
            throw error
        }
    }

    deinit { try? fd.close() }

    private func openDynamic() throws {
        let dataOffset = footer.dataOffset
        guard dataOffset >= 512, dataOffset % 512 == 0, Int64(dataOffset) + 1024 <= fileSize - 512 else {
            throw LifeboatError(.corrupt, "dynamic header offset \(dataOffset) (footer data offset) lies outside the file", path: path, offset: fileSize - 512 + 16)
        }
        let h = try Self.bytes(fd, at: Int64(dataOffset), count: 1024)
        let at = Int64(dataOffset)
        guard Array(h[0..<8]) == Array("cxsparse".utf8) else {
            throw LifeboatError(.corrupt, "dynamic header cookie is not \"cxsparse\"", path: path, offset: at)
        }
        let r = BigEndianReader(h)
        var zeroed = h
        zeroed.replaceSubrange(36..<40, with: [0, 0, 0, 0])
        guard r.u32(36) == vhdChecksum(zeroed) else {
            throw LifeboatError(.corrupt, "dynamic header checksum is 0x\(String(r.u32(36), radix: 16)), the header sums to 0x\(String(vhdChecksum(zeroed), radix: 16))", path: path, offset: at + 36)
        }
        let table = r.u64(16), entries = Int(r.u32(28)), block = Int(r.u32(32))
        guard block >= 512, block.nonzeroBitCount == 1 else {
            throw LifeboatError(.corrupt, "block size \(block) is not a power of two ≥ 512", path: path, offset: at + 32)
        }
        guard UInt64(entries) * UInt64(block) >= footer.currentSize else {
            throw LifeboatError(.corrupt, "max table entries \(entries) × block size \(block) is smaller than the disk (\(footer.currentSize))", path: path, offset: at + 28)
        }
        guard table % 512 == 0, Int64(table) + Int64(entries * 4) <= fileSize - 512 else {
            throw LifeboatError(.corrupt, "BAT offset \(table) with \(entries) entries lies outside the file", path: path, offset: at + 16)
        }
        blockSize = block
        bitmapBytes = ((block / 512 / 8) + 511) / 512 * 512
        let bat = BigEndianReader(try Self.bytes(fd, at: Int64(table), count: entries * 4))
        var spans: [(start: Int64, index: Int)] = []
        blocks = (0..<entries).map { i in
            let s = bat.u32(i * 4)
            if s == 0xFFFF_FFFF { return nil }
            spans.append((Int64(s) * 512, i))
            return Int64(s) * 512
        }
        let span = Int64(bitmapBytes + block)
        for (start, i) in spans {
            guard start >= 512, start + span <= fileSize - 512 else {
                throw LifeboatError(.corrupt, "BAT entry \(i) points at offset \(start), outside the file's blocks", path: path, offset: Int64(table) + Int64(i * 4))
            }
        }
        let sorted = spans.sorted { $0.start < $1.start }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.start + span > b.start {
            throw LifeboatError(.corrupt, "BAT entries \(a.index) and \(b.index) overlap (blocks at \(a.start) and \(b.start))", path: path, offset: Int64(table) + Int64(b.index * 4))
        }
    }

    /// Fills `buffer` with the disk's bytes at `offset` (a multiple of 512).
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        if footer.diskType == .fixed {
            try fd.readAll(at: offset, into: buffer)
            return
        }
        var done = 0
        while done < buffer.count {
            let at = offset + Int64(done)
            let index = Int(at / Int64(blockSize))
            let within = Int(at % Int64(blockSize))
            let n = min(buffer.count - done, blockSize - within)
            let out = UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + n)])
            if let base = blocks[index] {
                try fd.readAll(at: base + Int64(bitmapBytes + within), into: out)
                // Sectors whose bitmap bit is 0 read as zeros (libvhdi's reading; QEMU ignores bitmaps).
                let bitmap = try Self.bytes(fd, at: base, count: bitmapBytes)
                for sector in 0..<(n / 512) {
                    let s = within / 512 + sector
                    if bitmap[s / 8] & (0x80 >> UInt8(s % 8)) == 0 {
                        UnsafeMutableRawBufferPointer(rebasing: out[(sector * 512)..<((sector + 1) * 512)]).initializeMemory(as: UInt8.self, repeating: 0)
                    }
                }
            } else {
                out.initializeMemory(as: UInt8.self, repeating: 0)
            }
            done += n
        }
    }

    static func bytes(_ fd: FileDescriptor, at offset: Int64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        try out.withUnsafeMutableBytes { try fd.readAll(at: offset, into: $0) }
        return out
    }
}
