import Synchronization
import Testing
import LifeboatCore
import SystemPackage
import Foundation

/// The vault's layers are written past the page cache (O_DIRECT, through an aligned buffer, the
/// last block padded then cut off): the file must hold exactly the bytes, at every size around
/// a block and the 4 MiB buffer. The test directory is on a filesystem that takes O_DIRECT
/// (ext4 here and in CI; tmpfs too since Linux 6.6): the bytes must have gone past the cache.
@Suite struct DirectWriteTests {
    @Test func aFileWrittenPastThePageCacheHoldsExactlyItsBytes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var g = SplitMix64(seed: 11)
        let all = (0..<((9 << 20) + 4097)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        for size in [0, 1, 4095, 4096, 4097, (4 << 20) - 1, (4 << 20) + 123, all.count] {
            let bytes = Array(all.prefix(size))
            let path = dir + "/f\(size)"
            let fd = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
            let bypassed = try fd.closeAfter { try fd.writeAllPastTheCache(bytes) }
            #expect(bypassed, "size \(size): written through the page cache")
            #expect(FileManager.default.contents(atPath: path) == Data(bytes), "size \(size)")
        }
        let atomic = FilePath(dir + "/atomic")
        try writeFileAtomically(atomic, Array(all.prefix(5000)), bypassingCache: true)
        #expect(FileManager.default.contents(atPath: atomic.string) == Data(all.prefix(5000)))
    }
}

@Suite struct ChecksumTests {
    @Test func crc32cMatchesTheCastagnoliCheckValue() {
        // The standard check value of CRC-32C (RFC 3720 B.4 / the "123456789" catalogue entry).
        #expect(CRC32C.of(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.of([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)  // RFC 3720 B.4: 32 zero bytes
    }

    /// Long buffers take the three-chain path (blocks of 3 × 8 KiB, then 3 × 256 bytes); pieces
    /// of 97 bytes never do: both must agree, at every alignment and around every boundary.
    @Test func crc32cOfLongBuffersEqualsTheCRCTakenInSmallPieces() {
        var g = SplitMix64(seed: 7)
        let bytes = (0..<(200 << 10)).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        for (start, count) in [(0, 3 * 8192), (1, 3 * 8192 + 5), (3, 3 * 8192 * 2 + 3 * 256 + 7), (0, 3 * 256), (5, 3 * 256 - 1),
                               (7, 100_000), (0, 200 << 10)] {
            let slice = Array(bytes[start..<(start + count)])
            let whole = slice.withUnsafeBytes { CRC32C.extend(0, $0) }
            var pieces: UInt32 = 0
            for at in stride(from: 0, to: count, by: 97) {
                pieces = slice[at..<min(count, at + 97)].withUnsafeBytes { CRC32C.extend(pieces, $0) }
            }
            #expect(whole == pieces, "offset \(start), \(count) bytes")
        }
    }

    @Test func crc32cChainsAcrossPieces() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let whole = CRC32C.of(bytes)
        let chained = bytes[0..<333].withUnsafeBytes { a in bytes[333...].withUnsafeBytes { b in CRC32C.extend(CRC32C.extend(0, a), b) } }
        #expect(whole == chained)
    }

    @Test func hash128HexRoundTripsAndDiffersByContent() {
        let a = [UInt8](repeating: 1, count: 4096).withUnsafeBytes { Hash128.of($0) }
        let b = [UInt8](repeating: 2, count: 4096).withUnsafeBytes { Hash128.of($0) }
        #expect(a != b)
        #expect(Hash128(hex: a.description) == a)
        #expect(Hash128(hex: "xyz") == nil)
    }
}

@Suite struct BlockMathTests {
    @Test func writesWidenToTheBlocksTheyTouch() {
        #expect(BlockSize.blocks(coveringOffset: 0, length: 4096) == (BlockIndex(0), 1))
        #expect(BlockSize.blocks(coveringOffset: 4095, length: 2) == (BlockIndex(0), 2))
        #expect(BlockSize.blocks(coveringOffset: 8192, length: 1) == (BlockIndex(2), 1))
        #expect(BlockSize.blocks(coveringOffset: 100, length: 3 * 4096) == (BlockIndex(0), 4))
    }
}

@Suite struct ZstdTests {
    @Test func compressedFrameRoundTrips() throws {
        let input = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let packed = try input.withUnsafeBytes { try Zstd.compress($0) }
        #expect(packed.count < input.count / 10)
        let unpacked = try packed.withUnsafeBytes { try Zstd.decompress($0, maxSize: 1 << 20) }
        #expect(unpacked == input)
    }

    @Test func damagedFrameIsAnErrorNotACrash() throws {
        var packed = try [UInt8](repeating: 7, count: 10_000).withUnsafeBytes { try Zstd.compress($0) }
        packed[packed.count / 2] ^= 0xFF
        packed.removeLast(3)
        #expect(throws: LifeboatError.self) { try packed.withUnsafeBytes { try Zstd.decompress($0, maxSize: 1 << 20) } }
    }
}

@Suite struct DiskDigestTests {
    /// The test vector of Docs/formats/digest.md, computed independently with Python's xxhash
    /// (xxh3_128_intdigest): an 8 KiB disk, block 0 zeros, block 1 all 0x5A.
    @Test func theDocsTestVectorPinsTheDefinition() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = FilePath(dir + "/vector")
        let fd = try FileDescriptor.open(path, .readWrite, options: [.create], permissions: .ownerReadWrite)
        defer { try? fd.close() }
        _ = try fd.writeAll(toAbsoluteOffset: 0, [UInt8](repeating: 0, count: 4096) + [UInt8](repeating: 0x5A, count: 4096))
        #expect(DiskDigest.zeroBlockHash.description == "3ee8dc4f9e7ee49593d76fe148c689ba")
        #expect([UInt8](repeating: 0x5A, count: 4096).withUnsafeBytes { Hash128.of($0) }.description == "7ec22a805508a04eb7886b5fd99dda4e")
        #expect(try DiskDigest.root(ofImage: fd, sizeBytes: 8192).description == "404ac913a3a78161cf4e49947655db77")
    }

    @Test func imageRootSeesEveryBlockAndSkipsHolesCorrectly() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = FilePath(dir + "/img")
        let fd = try FileDescriptor.open(path, .readWrite, options: [.create], permissions: .ownerReadWrite)
        defer { try? fd.close() }
        let size: Int64 = 8 << 20
        try fd.resize(to: size)
        let empty = try DiskDigest.root(ofImage: fd, sizeBytes: size)
        // One byte in the middle of the last block changes the root; writing zeros back restores it.
        _ = try fd.writeAll(toAbsoluteOffset: size - 100, [0xAB])
        let changed = try DiskDigest.root(ofImage: fd, sizeBytes: size)
        #expect(changed != empty)
        _ = try fd.writeAll(toAbsoluteOffset: size - 100, [0])
        #expect(try DiskDigest.root(ofImage: fd, sizeBytes: size) == empty)
    }
}

@Suite(.timeLimit(.minutes(1))) struct StripedLockTests {
    /// Threads lock ranges that overlap and wrap around the stripe table from different
    /// starting points; inside, each marks its blocks busy and checks nobody else has marked
    /// them meanwhile. A broken stripe lock shows as an overlap; a deadlock hits the time limit.
    @Test func overlappingWrappedRangesAreMutuallyExclusiveAndDoNotDeadlock() async {
        let locks = StripedLocks()
        let busy = UnsafeMutablePointer<Int>.allocate(capacity: 1300)
        busy.initialize(repeating: 0, count: 1300)
        defer { busy.deallocate() }
        nonisolated(unsafe) let cells = busy
        let counts = Counts()
        await withTaskGroup(of: Void.self) { group in
            for t in 0..<8 {
                group.addTask {
                    for i in 0..<2000 {
                        let first = (t * 97 + i * 31) % 1000 + 200
                        let count = 1 + (i % 90)
                        locks.withBlocks(first: BlockIndex(UInt64(first)), count: count) {
                            for b in first..<(first + count) where cells[b] != 0 { counts.overlaps.withLock { $0 += 1 } }
                            for b in first..<(first + count) { cells[b] = t + 1 }
                            sched_yield()
                            for b in first..<(first + count) where cells[b] != t + 1 { counts.overlaps.withLock { $0 += 1 } }
                            for b in first..<(first + count) { cells[b] = 0 }
                            counts.entered.withLock { $0 += 1 }
                        }
                    }
                }
            }
        }
        #expect(counts.entered.withLock { $0 } == 16000)
        #expect(counts.overlaps.withLock { $0 } == 0)
    }

    final class Counts: Sendable {
        let overlaps = Mutex(0)
        let entered = Mutex(0)
    }
}

func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "lifeboat-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
