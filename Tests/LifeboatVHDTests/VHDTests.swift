import Foundation
import LifeboatCore
import SystemPackage
import Testing

@testable import LifeboatVHD

let haveOracles = ["/usr/bin/qemu-img", "/usr/bin/vhdiinfo"].allSatisfy { FileManager.default.isExecutableFile(atPath: $0) }
let oracleReason: Comment = "needs qemu-img and vhdiinfo (Harness/setup.sh installs qemu-utils and libvhdi-utils); CI has them"
let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Images/fixtures/qemu-dynamic.vhd").standardized.path

func tool(_ args: String...) throws -> (status: Int32, out: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "lifeboat-vhd-" + UUID().uuidString.prefix(8)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// A disk image of `size` bytes: data in a few places (one at the very end), zeros elsewhere.
func sampleDisk(size: Int) -> [UInt8] {
    var d = [UInt8](repeating: 0, count: size)
    var x: UInt64 = 0x1234_5678
    for range in [0..<8192, (size / 3)..<(size / 3 + 70_000), (size - 4096)..<size] {
        for i in range { x = x &* 6_364_136_223_846_793_005 &+ 1; d[i] = UInt8(truncatingIfNeeded: x >> 33) }
    }
    return d
}

func writeVHD(_ format: VHDWriter.Format, _ disk: [UInt8], to path: String) throws {
    let fd = try FileDescriptor.open(path, .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite)
    defer { try? fd.close() }
    try VHDWriter.write(format, sizeBytes: Int64(disk.count), to: fd) { offset, buffer in
        disk.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<(Int(offset) + buffer.count)])) }
    }
}

func readBack(_ path: String) throws -> [UInt8] {
    let r = try VHDReader(path: path)
    var out = [UInt8](repeating: 0, count: Int(r.sizeBytes))
    try out.withUnsafeMutableBytes { try r.read(at: 0, into: $0) }
    return out
}

@Suite(.enabled(if: haveOracles, oracleReason))
struct VHDTests {
    // 4 MiB: two full blocks; 10 MiB + 12 KiB: not CHS-exact, a partial last block; 127 MiB: many zero blocks.
    @Test(arguments: [4 << 20, (10 << 20) + 12288, 127 << 20])
    func exportsReadBackIdenticalInQemuAndLibvhdi(size: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = sampleDisk(size: size)
        try #require(FileManager.default.createFile(atPath: dir + "/disk.raw", contents: Data(disk)))
        for format in [VHDWriter.Format.fixed, .dynamic] {
            let vhd = dir + "/disk.\(format.rawValue).vhd"
            try writeVHD(format, disk, to: vhd)
            let compare = try tool("qemu-img", "compare", "-f", "raw", "-F", "vpc", dir + "/disk.raw", vhd)
            #expect(compare.status == 0, "\(format) \(size): \(compare.out)")
            #expect(try tool("vhdiinfo", vhd).out.contains("(\(size) bytes)"), "vhdiinfo media size, \(format) \(size)")
            #expect(try tool("qemu-img", "info", "-f", "vpc", vhd).out.contains("(\(size) bytes)"))
            #expect(try tool("qemu-img", "convert", "-f", "vpc", "-O", "raw", vhd, dir + "/back.raw").status == 0)
            #expect(FileManager.default.contents(atPath: dir + "/back.raw").map(Array.init) == disk, "qemu-img convert round trip")
            #expect(try readBack(vhd) == disk, "our reader, \(format) \(size)")
            if format == .dynamic {
                // Zero 2 MiB blocks stay unallocated: only blocks with data take space.
                let blocks = Set([0, (size / 3) >> 21, ((size / 3) + 70_000 - 1) >> 21, (size - 1) >> 21]).count
                let entries = (size + (2 << 20) - 1) >> 21
                let expected = 1536 + (entries * 4 + 511) / 512 * 512 + blocks * (512 + (2 << 20)) + 512
                #expect(try FileDescriptor.open(vhd, .readOnly).fileSizeAndClose() == Int64(expected))
            }
        }
    }

    @Test func aFixedVHDMadeByQemuReadsBackIdentical() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = sampleDisk(size: 6 << 20)
        try #require(FileManager.default.createFile(atPath: dir + "/disk.raw", contents: Data(disk)))
        #expect(try tool("qemu-img", "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size=on", dir + "/disk.raw", dir + "/q.vhd").status == 0)
        #expect(try readBack(dir + "/q.vhd") == disk)
    }

    @Test func aVHDMadeByQemuImportsToTheSameContent() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(try tool("qemu-img", "convert", "-f", "vpc", "-O", "raw", fixture, dir + "/oracle.raw").status == 0)
        let ours = try readBack(fixture)
        #expect(ours == FileManager.default.contents(atPath: dir + "/oracle.raw").map(Array.init))
        #expect(ours.count == 4 << 20)
        #expect(ours[(1 << 20) + 200_000..<(1 << 20) + 200_008] == ArraySlice(Array("lifeboat".utf8)))
    }
}

/// Bad VHDs: each rejection names the field, its value and its offset.
@Suite struct BadVHDTests {
    func damaged(_ format: VHDWriter.Format, _ mutate: (inout [UInt8]) -> Void) throws -> LifeboatError? {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/bad.vhd"
        try writeVHD(format, sampleDisk(size: 6 << 20), to: path)
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        mutate(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        do { _ = try VHDReader(path: path); return nil } catch let e as LifeboatError { return e }
    }

    @Test func truncatedFixedVHD() throws {
        let e = try damaged(.fixed) { $0.removeSubrange(1000..<5096) }
        #expect(e?.message.contains("current size") == true && e?.message.contains("truncated") == true)
    }

    @Test func badFooterChecksum() throws {
        let e = try damaged(.fixed) { $0[$0.count - 512 + 100] ^= 1 }
        #expect(e?.message.contains("footer checksum") == true)
        #expect(e?.offset != nil)
    }

    @Test func badDynamicHeaderChecksum() throws {
        let e = try damaged(.dynamic) { $0[512 + 600] ^= 1 }
        #expect(e?.message.contains("dynamic header checksum") == true)
        #expect(e?.offset == Int64(512 + 36))
    }

    @Test func dynamicHeaderOffsetOutsideTheFile() throws {
        let e = try damaged(.dynamic) { bytes in
            Self.patchFooter(&bytes) { $0.replaceSubrange(16..<24, with: [0, 0, 0, 0, 0x10, 0, 0, 0]) }
        }
        #expect(e?.message.contains("dynamic header offset") == true)
    }

    @Test func batEntryOutsideTheFile() throws {
        let e = try damaged(.dynamic) { $0.replaceSubrange(1536..<1540, with: [0x00, 0xFF, 0x00, 0x00]) }
        #expect(e?.message.contains("BAT entry 0") == true && e?.message.contains("outside") == true)
    }

    @Test func overlappingBlocks() throws {
        let e = try damaged(.dynamic) { bytes in
            let first = Array(bytes[1536..<1540])
            bytes.replaceSubrange(1540..<1544, with: first)  // entry 1 points at entry 0's block
        }
        #expect(e?.message.contains("overlap") == true)
    }

    @Test func differencingDisksAreRefusedAsUnsupported() throws {
        let e = try damaged(.dynamic) { bytes in Self.patchFooter(&bytes) { $0.replaceSubrange(60..<64, with: [0, 0, 0, 4]) } }
        #expect(e?.code == .unsupported)
        #expect(e?.message.contains("differencing") == true)
    }

    /// Changes the trailing footer and re-sums it, so only the intended field is wrong.
    static func patchFooter(_ bytes: inout [UInt8], _ change: (inout [UInt8]) -> Void) {
        var footer = Array(bytes[(bytes.count - 512)...])
        change(&footer)
        footer.replaceSubrange(64..<68, with: [0, 0, 0, 0])
        let sum = vhdChecksum(footer)
        footer.replaceSubrange(64..<68, with: [UInt8(sum >> 24), UInt8((sum >> 16) & 0xFF), UInt8((sum >> 8) & 0xFF), UInt8(sum & 0xFF)])
        bytes.replaceSubrange((bytes.count - 512)..., with: footer)
    }
}

extension FileDescriptor {
    func fileSizeAndClose() throws -> Int64 {
        defer { try? close() }
        return try fileSize()
    }
}
