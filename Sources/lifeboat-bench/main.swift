// Vault benchmarks (Harness/bench/vault.sh runs this in release mode):
//   ingest   — journal segments of 64 KiB writes of 2:1-compressible data: shipper-side zstd +
//              vault ingest, MB/s of journal data;
//   ship     — CPU seconds per GB of journal for shipping + ingest as the shipper did until issue
//              11 (zstd of the whole segment, decompressed again by the vault) and as it does now
//              (the segment as it lies; the vault compresses each write once), same data, one run;
//   reads    — point open time and random 4 KiB block read latency (warm) with 1×, 10× and
//              100× the layers, before and after compaction;
//   at-rest  — the same work in a plain and an encrypted vault, one run: ingest MB/s, random
//              4 KiB reads, the initial copy of a disk into its base and an export from it.
import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatVault
import SystemPackage

let group = [UInt8](0..<16)
let groupHex = group.map { String(format: "%02x", $0) }.joined()

func temporary() -> FilePath {
    let path = "/var/tmp/lifeboat-bench-" + UUID().uuidString.prefix(8)
    try! FileManager.default.createDirectory(atPath: path + "/journal", withIntermediateDirectories: true)
    return FilePath(path)
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = ContinuousClock.now
    try body()
    return start.duration(to: .now).inSeconds
}

/// 64 KiB of 2:1-compressible data: 32 KiB random, 32 KiB of zeros.
func payload(_ g: inout SystemRandomNumberGenerator) -> [UInt8] {
    var data = [UInt8](repeating: 0, count: 65536)
    data.withUnsafeMutableBytes { raw in for i in 0..<4096 { raw.storeBytes(of: g.next() as UInt64, toByteOffset: i * 8, as: UInt64.self) } }
    return data
}

func makeJournal(_ dir: FilePath, bytes: Int, diskBlocks: UInt64, segmentBytes: Int64, writeBytes: Int = 65536) throws -> [FilePath] {
    let (j, _) = try Journal.open(directory: dir.appending("journal"), groupID: group, configuration: .init(segmentBytes: segmentBytes))
    var g = SystemRandomNumberGenerator()
    // A pool of distinct payloads, larger than zstd's window, so no write repeats a recent one.
    let pool = (0..<256).map { _ in payload(&g) }
    for i in 0..<(bytes / writeBytes) {
        let block = UInt64.random(in: 0..<(diskBlocks - UInt64(writeBytes / 4096)), using: &g)
        let data = pool[i % pool.count]
        _ = try data[0..<writeBytes].withUnsafeBytes { try j.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(block), data: $0) }
    }
    try j.sealIfOlder(than: .zero)
    try j.close()
    return try JournalDirectory.segments(in: dir.appending("journal")).dropLast().map(\.path)
}

func makeVault(_ dir: FilePath, diskBytes: Int64, key: VaultKey? = nil) throws -> Vault {
    try FileManager.default.createDirectory(atPath: dir.string, withIntermediateDirectories: true)
    let vault = try Vault(root: dir.appending("vault"), create: true, key: key)
    let empty = dir.appending("empty")
    _ = FileManager.default.createFile(atPath: empty.string, contents: nil)
    try vault.addDisk(group: groupHex, id: DiskID(0), name: "d0", sizeBytes: diskBytes, initialContent: empty)
    return vault
}

func benchIngest() throws {
    let dir = temporary()
    defer { try? FileManager.default.removeItem(atPath: dir.string) }
    let total = 1 << 30
    let segments = try makeJournal(dir, bytes: total, diskBlocks: 1 << 18, segmentBytes: 64 << 20)
    let vault = try makeVault(dir, diskBytes: 1 << 30)
    let raw = try segments.map { try SegmentReader.load($0) }
    let compressor = ZstdCompressor(level: 1)
    var packed: [[UInt8]] = []
    let shipTime = try seconds {
        for r in raw {
            var out: [UInt8] = []
            _ = try r.withUnsafeBytes { try compressor.compress($0, appendingTo: &out) }
            packed.append(out)
        }
    }
    let ingestTime = try seconds {
        for (i, p) in packed.enumerated() { _ = try vault.ingest(compressedSegment: p, name: segments[i].string) }
    }
    let bytes = Double(raw.reduce(0) { $0 + $1.count })
    let wire = Double(packed.reduce(0) { $0 + $1.count })
    print(String(format: "ingest: %.0f MiB of journal in %d segments; shipper zstd %.0f MB/s, vault ingest %.0f MB/s, together %.0f MB/s; on the wire %.0f%%",
                 bytes / 1048576, raw.count, bytes / shipTime / 1e6, bytes / ingestTime / 1e6, bytes / (shipTime + ingestTime) / 1e6, wire / bytes * 100))
}

/// User + system CPU seconds of this process so far.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}

func benchShip() throws {
    let dir = temporary()
    defer { try? FileManager.default.removeItem(atPath: dir.string) }
    let total = 1 << 30
    let segments = try makeJournal(dir, bytes: total, diskBlocks: 1 << 18, segmentBytes: 64 << 20)
    let raw = try segments.map { try SegmentReader.load($0) }
    let gigabytes = Double(raw.reduce(0) { $0 + $1.count }) / 1e9
    for round in 1...2 {
        // Before: the shipper compressed the whole segment (zstd 1); the vault decompressed it,
        // then compressed each write again into its layer.
        let before = try makeVault(dir.appending("before-\(round)"), diskBytes: 1 << 30)
        let compressor = ZstdCompressor(level: 1)
        var cpu = cpuSeconds()
        var wall = try seconds {
            for (i, r) in raw.enumerated() {
                var packed: [UInt8] = []
                _ = try r.withUnsafeBytes { try compressor.compress($0, appendingTo: &packed) }
                _ = try before.ingest(compressedSegment: packed, name: segments[i].string)
            }
        }
        let beforeCPU = cpuSeconds() - cpu
        let beforeWall = wall
        // Now: the segment as it lies in the journal.
        let after = try makeVault(dir.appending("after-\(round)"), diskBytes: 1 << 30)
        cpu = cpuSeconds()
        wall = try seconds { for (i, r) in raw.enumerated() { _ = try after.ingest(segment: r, name: segments[i].string) } }
        let afterCPU = cpuSeconds() - cpu
        print(String(format: "ship+ingest, %.2f GB of journal (round %d): before %.2f CPU s/GB (%.0f MB/s), now %.2f CPU s/GB (%.0f MB/s): %.0f%% of the CPU",
                     gigabytes, round, beforeCPU / gigabytes, gigabytes * 1000 / beforeWall, afterCPU / gigabytes, gigabytes * 1000 / wall,
                     afterCPU / beforeCPU * 100))
    }
}

func benchReads(layers: Int) throws {
    let dir = temporary()
    defer { try? FileManager.default.removeItem(atPath: dir.string) }
    // Each layer: one 1 MiB segment of 4 KiB random writes over a 1 GiB disk.
    let diskBlocks: UInt64 = 1 << 18
    let segments = try makeJournal(dir, bytes: layers * 1_000_000, diskBlocks: diskBlocks, segmentBytes: 1 << 20, writeBytes: 4096)
    let vault = try makeVault(dir, diskBytes: Int64(diskBlocks) * 4096)
    for s in segments { _ = try vault.ingest(segment: try SegmentReader.load(s), name: s.string) }
    func measure(_ label: String) throws {
        let last = try vault.lsnRange().last
        var reader: PointReader!
        let open = try seconds { reader = try PointReader(vault: vault, lsn: last) }
        var block = [UInt8](repeating: 0, count: 4096)
        var g = SystemRandomNumberGenerator()
        for _ in 0..<2000 {  // warm-up
            try block.withUnsafeMutableBytes { try reader.readBlock(disk: DiskID(0), block: BlockIndex(UInt64.random(in: 0..<diskBlocks, using: &g)), into: $0) }
        }
        var times: [Double] = []
        for _ in 0..<20000 {
            let b = BlockIndex(UInt64.random(in: 0..<diskBlocks, using: &g))
            times.append(try seconds { try block.withUnsafeMutableBytes { try reader.readBlock(disk: DiskID(0), block: b, into: $0) } })
        }
        times.sort()
        let count = try vault.layerCount(upTo: last)
        print(String(format: "reads %-18@ %4d layers: open %.2f ms; random 4 KiB read p50 %.1f µs, p99 %.1f µs",
                     label as NSString, count, open * 1000, times[times.count / 2] * 1e6, times[times.count * 99 / 100] * 1e6))
    }
    try measure("(\(layers)×, raw)")
    try vault.compact()
    try measure("(\(layers)×, compacted)")
}

/// Point open time for sparse disks of 1 GiB and 64 GiB with the same 20 layers.
func benchOpen() throws {
    for size: Int64 in [1 << 30, 64 << 30] {
        let dir = temporary()
        defer { try? FileManager.default.removeItem(atPath: dir.string) }
        let segments = try makeJournal(dir, bytes: 20 * 1_000_000, diskBlocks: 1 << 18, segmentBytes: 1 << 20, writeBytes: 4096)
        let vault = try makeVault(dir, diskBytes: size)
        for s in segments { _ = try vault.ingest(segment: try SegmentReader.load(s), name: s.string) }
        let last = try vault.lsnRange().last
        var times: [Double] = []
        for _ in 0..<50 { times.append(try seconds { _ = try PointReader(vault: vault, lsn: last) }) }
        times.sort()
        print(String(format: "open: %3d GiB sparse disk, %d layers: median %.2f ms, max %.2f ms", size >> 30, try vault.layerCount(upTo: last), times[25] * 1000, times[49] * 1000))
    }
}

/// Encryption at rest against no encryption, same data, alternating, twice.
func benchAtRest() throws {
    let dir = temporary()
    defer { try? FileManager.default.removeItem(atPath: dir.string) }
    let segments = try makeJournal(dir, bytes: 512 << 20, diskBlocks: 1 << 18, segmentBytes: 64 << 20)
    let raw = try segments.map { try SegmentReader.load($0) }
    let bytes = Double(raw.reduce(0) { $0 + $1.count })
    let key = try VaultKey.create(at: dir.appending("vault.key"))
    // The initial content of a second disk: 256 MiB of 2:1-compressible data.
    let seed = dir.appending("seed.img")
    var g = SystemRandomNumberGenerator()
    let seedData = (0..<4096).flatMap { _ in payload(&g) }
    try Data(seedData).write(to: URL(fileURLWithPath: seed.string))
    for round in 1...2 {
        for (label, k) in [("plain", nil), ("encrypted", key)] as [(String, VaultKey?)] {
            let vault = try makeVault(dir.appending("\(label)-\(round)"), diskBytes: 1 << 30, key: k)
            let ingest = try seconds { for (i, r) in raw.enumerated() { _ = try vault.ingest(segment: r, name: segments[i].string) } }
            let reader = try PointReader(vault: vault, lsn: try vault.lsnRange().last)
            var block = [UInt8](repeating: 0, count: 4096)
            var times: [Double] = []
            for i in 0..<22000 {
                let b = BlockIndex(UInt64.random(in: 0..<(1 << 18), using: &g))
                let t = try seconds { try block.withUnsafeMutableBytes { try reader.readBlock(disk: DiskID(0), block: b, into: $0) } }
                if i >= 2000 { times.append(t) }
            }
            times.sort()
            let copy = try seconds {
                try vault.addDisk(group: groupHex, id: DiskID(1), name: "seeded", sizeBytes: Int64(seedData.count), initialContent: seed)
            }
            let out = dir.appending("export-\(label)-\(round)")
            let fd = try FileDescriptor.open(out, .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite)
            let export = try seconds { try PointReader(vault: vault, lsn: try vault.lsnRange().last).exportRaw(disk: try vault.disk(named: "seeded"), to: fd) }
            try fd.close()
            unlink(out.string)
            print(String(format: "at rest %-9@ (round %d): ingest %.0f MB/s; random 4 KiB read p50 %.1f µs, p99 %.1f µs; initial copy into the base %.0f MB/s; export from the base %.0f MB/s",
                         label as NSString, round, bytes / ingest / 1e6, times[times.count / 2] * 1e6, times[times.count * 99 / 100] * 1e6,
                         Double(seedData.count) / copy / 1e6, Double(seedData.count) / export / 1e6))
        }
    }
}

let what = CommandLine.arguments.dropFirst().first ?? "all"
if what == "at-rest" || what == "all" { try benchAtRest() }
if what == "open" || what == "all" { try benchOpen() }
if what == "ingest" || what == "all" { try benchIngest() }
if what == "ship" || what == "all" { try benchShip() }
if what == "reads" || what == "all" { for n in [10, 100, 1000] { try benchReads(layers: n) } }
