import Foundation
import LifeboatCore
import SystemPackage

/// Writes a disk as a VHD, streaming: `read(offset, buffer)` fills each piece of the disk in
/// order. Fixed: the data, then the footer (holes stay holes). Dynamic (shared/reference §3.3):
/// footer copy, dynamic header at 512, BAT at 1536, then a 512-byte all-ones bitmap and 2 MiB of
/// data for every block that is not all zero (zero blocks stay unallocated), then the footer.
public enum VHDWriter {
    public enum Format: String, Sendable { case fixed = "vhd-fixed", dynamic = "vhd-dynamic" }
    public static let blockSize = 2 << 20
    static let headerOffset = 512
    static let tableOffset = 1536

    public static func write(_ format: Format, sizeBytes: Int64, to out: FileDescriptor,
                             read: @escaping (Int64, UnsafeMutableRawBufferPointer) throws -> Void,
                             progress: (Int64) -> Void = { _ in }) throws {
        guard sizeBytes > 0, sizeBytes % 512 == 0 else { throw LifeboatError(.invalidArgument, "a VHD's size must be a multiple of 512 bytes") }
        // QEMU refuses any vpc image above 2040 GiB (shared/reference §0).
        guard sizeBytes <= 2040 << 30 else { throw LifeboatError(.invalidArgument, "VHD holds at most 2040 GiB; the disk has \(sizeBytes) bytes") }
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 4096)
        defer { chunk.deallocate() }
        do {
            switch format {
            case .fixed:
                let footer = VHDFooter(diskType: .fixed, size: UInt64(sizeBytes)).encoded()
                let chunks = Int((sizeBytes + Int64(blockSize) - 1) / Int64(blockSize))
                try ChunkPipeline.run(count: chunks, bufferBytes: blockSize, produce: { i, buffer in
                    let at = Int64(i) * Int64(blockSize)
                    try read(at, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(min(Int64(blockSize), sizeBytes - at))]))
                }, consume: { i, buffer in
                    let at = Int64(i) * Int64(blockSize)
                    let n = Int(min(Int64(blockSize), sizeBytes - at))
                    // The data region of a fixed VHD may have holes anywhere: skip zero 64 KiB runs.
                    var k = 0
                    while k < n {
                        let len = min(65536, n - k)
                        let run = UnsafeRawBufferPointer(rebasing: buffer[k..<(k + len)])
                        if !isZero(run) { _ = try out.writeAll(toAbsoluteOffset: at + Int64(k), run) }
                        k += len
                    }
                    progress(at + Int64(n))
                })
                _ = try out.writeAll(toAbsoluteOffset: sizeBytes, footer)
            case .dynamic:
                let entries = Int((sizeBytes + Int64(blockSize) - 1) / Int64(blockSize))
                let batBytes = (entries * 4 + 511) / 512 * 512
                var bat = [UInt8](repeating: 0xFF, count: batBytes)
                var next = Int64(tableOffset + batBytes)
                let bitmap = [UInt8](repeating: 0xFF, count: 512)
                for i in 0..<entries {
                    let at = Int64(i) * Int64(blockSize)
                    let n = Int(min(Int64(blockSize), sizeBytes - at))
                    chunk.initializeMemory(as: UInt8.self, repeating: 0)  // the tail of a partial last block is zeros
                    try read(at, UnsafeMutableRawBufferPointer(rebasing: chunk[0..<n]))
                    if !isZero(UnsafeRawBufferPointer(chunk)) {
                        let sector = UInt32(next / 512)
                        bat.replaceSubrange((i * 4)..<(i * 4 + 4), with: [UInt8(sector >> 24), UInt8((sector >> 16) & 0xFF), UInt8((sector >> 8) & 0xFF), UInt8(sector & 0xFF)])
                        _ = try out.writeAll(toAbsoluteOffset: next, bitmap)
                        _ = try out.writeAll(toAbsoluteOffset: next + 512, UnsafeRawBufferPointer(chunk))
                        next += Int64(512 + blockSize)
                    }
                    progress(at + Int64(n))
                }
                let footer = VHDFooter(diskType: .dynamic, size: UInt64(sizeBytes)).encoded()
                _ = try out.writeAll(toAbsoluteOffset: 0, footer)
                _ = try out.writeAll(toAbsoluteOffset: Int64(headerOffset), dynamicHeader(entries: entries))
                _ = try out.writeAll(toAbsoluteOffset: Int64(tableOffset), bat)
                _ = try out.writeAll(toAbsoluteOffset: next, footer)
            }
            try out.fullSync()
        } catch let e as LifeboatError {
            throw e
        } catch {
            throw LifeboatError.wrapping(error, "VHD write failed")
        }
    }

    /// The 1024-byte dynamic disk header (shared/reference §1.6).
    static func dynamicHeader(entries: Int) -> [UInt8] {
        var b = BigEndianWriter()
        b.put(Array("cxsparse".utf8))
        b.put(UInt64.max)                // data offset: unused, all ones
        b.put(UInt64(tableOffset))
        b.put(UInt32(0x0001_0000))       // header version (libvhdi requires it)
        b.put(UInt32(entries))           // max table entries = ceil(size / block size)
        b.put(UInt32(blockSize))
        b.put(UInt32(0))                 // checksum, below
        b.put(zeros: 16 + 4 + 4 + 512 + 8 * 24 + 256)  // parent id, time, reserved, name, locators, reserved
        var bytes = b.bytes
        let sum = vhdChecksum(bytes)
        bytes.replaceSubrange(36..<40, with: [UInt8(sum >> 24), UInt8((sum >> 16) & 0xFF), UInt8((sum >> 8) & 0xFF), UInt8(sum & 0xFF)])
        return bytes
    }

    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let words = bytes.count / 8
        for i in 0..<words where bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
        for j in (words * 8)..<bytes.count where bytes[j] != 0 { return false }
        return true
    }
}
