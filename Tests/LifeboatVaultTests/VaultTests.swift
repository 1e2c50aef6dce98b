import Foundation
import LifeboatCore
import LifeboatJournal
import SystemPackage
import LifeboatTestSupport
import Testing

@testable import LifeboatVault

func temporaryDirectory() throws -> FilePath { FilePath(try testDirectory("vault")) }


/// A journal written with random block writes and markers, and the model of every write, so
/// that the state at any LSN can be computed independently of the vault.
struct Fixture {
    static let group = [UInt8](0..<16)
    static let groupHex = group.map { String(format: "%02x", $0) }.joined()
    static let blocksPerDisk = 256
    let root: FilePath
    var writes: [(lsn: LSN, disk: Int, block: Int, data: [UInt8])] = []
    var markers: [LSN] = []

    var journal: FilePath { root.appending("journal") }

    /// `endsResyncAt`: the marker at that record index carries the flag that ends a resync.
    init(records: Int, seed: UInt64, endsResyncAt: Int? = nil) throws {
        root = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: root.appending("journal").string, withIntermediateDirectories: true)
        let (j, _) = try Journal.open(directory: root.appending("journal"), groupID: Self.group, configuration: .init(segmentBytes: 1 << 20))
        var g = SplitMix(state: seed)
        for i in 0..<records {
            if i % 50 == 49 {
                let kind: Marker.Kind = i % 100 == 99 ? .appConsistent : .crashConsistent
                markers.append(try j.appendMarker(Marker(kind: kind, timeNanos: 1_700_000_000_000_000_000 + Int64(i) * 1_000_000_000, label: "m\(i)",
                                                         digests: [DiskID(0): Hash128(high: 1, low: UInt64(i))], endsResync: i == endsResyncAt)))
                continue
            }
            let disk = Int(g.next() % 2)
            let count = 1 + Int(g.next() % 4)
            let block = Int(g.next() % UInt64(Self.blocksPerDisk - count))
            var data = [UInt8](repeating: 0, count: count * 4096)
            for k in stride(from: 0, to: data.count, by: 8) { data.withUnsafeMutableBytes { $0.storeBytes(of: g.next(), toByteOffset: k, as: UInt64.self) } }
            let lsn = try data.withUnsafeBytes { try j.appendWrite(disk: DiskID(UInt32(disk)), firstBlock: BlockIndex(UInt64(block)), data: $0) }
            for k in 0..<count { writes.append((lsn, disk, block + k, Array(data[(k * 4096)..<((k + 1) * 4096)]))) }
        }
        try j.sealIfOlder(than: .zero)
        try j.close()
    }

    /// Disk `disk` after every write with LSN ≤ `lsn`, starting from zeros.
    func state(disk: Int, at lsn: LSN) -> [UInt8] {
        var image = [UInt8](repeating: 0, count: Self.blocksPerDisk * 4096)
        for w in writes where w.disk == disk && w.lsn <= lsn { image.replaceSubrange((w.block * 4096)..<((w.block + 1) * 4096), with: w.data) }
        return image
    }

    func sealedSegments() throws -> [(name: String, bytes: [UInt8])] {
        try JournalDirectory.segments(in: journal).compactMap { entry in
            let bytes = try SegmentReader.load(entry.path)
            return try SegmentReader.scan(bytes, path: entry.path).end == .sealed ? (entry.path.lastComponent!.string, bytes) : nil
        }
    }

    func makeVault(key: VaultKey? = nil) throws -> Vault {
        let vault = try Vault(root: root.appending("vault"), create: true, key: key)
        let empty = root.appending("empty.img")
        try #require(FileManager.default.createFile(atPath: empty.string, contents: nil))
        for d in 0..<2 {
            try vault.addDisk(group: Self.groupHex, id: DiskID(UInt32(d)), name: "d\(d)", sizeBytes: Int64(Self.blocksPerDisk * 4096), initialContent: empty)
        }
        return vault
    }

    func read(_ reader: PointReader, disk: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.blocksPerDisk * 4096)
        try out.withUnsafeMutableBytes { raw in
            for b in 0..<Self.blocksPerDisk {
                try reader.readBlock(disk: DiskID(UInt32(disk)), block: BlockIndex(UInt64(b)),
                                     into: UnsafeMutableRawBufferPointer(rebasing: raw[(b * 4096)..<((b + 1) * 4096)]))
            }
        }
        return out
    }
}

@Suite struct VaultTests {
    @Test func everyLSNPrefixReadsBackAsTheReplayOfTheJournal() throws {
        let f = try Fixture(records: 1200, seed: 1)
        let vault = try f.makeVault()
        let segments = try f.sealedSegments()
        #expect(segments.count >= 4)
        for s in segments {
            let packed = try s.bytes.withUnsafeBytes { try Zstd.compress($0) }
            guard case .ingested = try vault.ingest(compressedSegment: packed, name: s.name) else { Issue.record("not ingested"); return }
        }
        let (_, last) = try vault.lsnRange()
        var g = SplitMix(state: 9)
        let samples = [LSN(1), last] + (0..<8).map { _ in LSN(1 + g.next() % last.rawValue) }
        for lsn in samples {
            let reader = try PointReader(vault: vault, lsn: lsn)
            for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: lsn), "disk \(d) at LSN \(lsn)") }
        }
        // Markers became points, with their kinds and digests.
        let points = try vault.points()
        #expect(points.map { $0.lsn } == f.markers.filter { $0 <= last })
        #expect(points.contains { $0.kind == .appConsistent })
        #expect(try points.first?.digestMap()[DiskID(0)] == Hash128(high: 1, low: 49))
        // Export streams the same bytes.
        let out = f.root.appending("export.raw")
        let fd = try FileDescriptor.open(out, .readWrite, options: [.create], permissions: .ownerReadWrite)
        try PointReader(vault: vault, lsn: last).exportRaw(disk: try vault.disk(named: "d1"), to: fd)
        try fd.close()
        #expect(FileManager.default.contents(atPath: out.string).map(Array.init) == f.state(disk: 1, at: last))
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
    }

    /// The multi-block read that mounts, VHD export and digests use (base runs, holes, layer
    /// versions in one call) against the model, over random block-aligned ranges, with and
    /// without writes excluded (an exploration's crash states).
    @Test func multiBlockReadsMatchTheModelIncludingExcludedWrites() throws {
        let f = try Fixture(records: 800, seed: 12)
        let vault = try f.makeVault()
        for seg in try f.sealedSegments() { _ = try vault.ingest(segment: seg.bytes, name: seg.name) }
        let (_, last) = try vault.lsnRange()
        var g = SplitMix(state: 13)
        for round in 0..<12 {
            let lsn = LSN(1 + g.next() % last.rawValue)
            // Drop a few writes at or below the point, as an exploration does.
            let excluded = round % 2 == 0 ? [] : Set(f.writes.filter { $0.lsn <= lsn }.map(\.lsn).shuffled(using: &g).prefix(5))
            let reader = try PointReader(vault: vault, lsn: lsn, excluding: excluded)
            for d in 0..<2 {
                var model = [UInt8](repeating: 0, count: Fixture.blocksPerDisk * 4096)
                for w in f.writes where w.disk == d && w.lsn <= lsn && !excluded.contains(w.lsn) {
                    model.replaceSubrange((w.block * 4096)..<((w.block + 1) * 4096), with: w.data)
                }
                let first = Int(g.next() % UInt64(Fixture.blocksPerDisk))
                let count = 1 + Int(g.next() % UInt64(Fixture.blocksPerDisk - first))
                var out = [UInt8](repeating: 0xEE, count: count * 4096)
                try out.withUnsafeMutableBytes { try reader.read(disk: DiskID(UInt32(d)), at: Int64(first * 4096), into: $0) }
                #expect(out == Array(model[(first * 4096)..<((first + count) * 4096)]), "disk \(d) blocks \(first)+\(count) at LSN \(lsn), \(excluded.count) excluded")
            }
        }
    }

    @Test func aRepeatedSegmentIsAcknowledgedAndAGapIsRefused() throws {
        let f = try Fixture(records: 600, seed: 2)
        let vault = try f.makeVault()
        let segments = try f.sealedSegments()
        _ = try vault.ingest(segment: segments[0].bytes, name: segments[0].name)
        #expect(try vault.ingest(segment: segments[0].bytes, name: segments[0].name) == .alreadyHeld)
        let gap = #expect(throws: LifeboatError.self) { _ = try vault.ingest(segment: segments[2].bytes, name: segments[2].name) }
        #expect(gap?.message.contains("holds LSNs up to") == true)
    }

    /// Streaming: a segment arrives as runs of records cut anywhere between records, some sent
    /// twice (a resend after a lost answer), its seal last; the vault reads back every LSN as the
    /// model, holds each write once, and refuses a gap, a run cut inside a record and a damaged
    /// record, changing nothing.
    @Test func runsOfRecordsAreIngestedOnceEachAndBadRunsAreRefused() throws {
        let f = try Fixture(records: 400, seed: 21)
        let vault = try f.makeVault()
        let segment = try f.sealedSegments()[0]
        let scan = try SegmentReader.scan(segment.bytes, path: FilePath(segment.name))
        let cuts = [0, 3, 40, 41, 90, scan.records.count - 1, scan.records.count]  // record indexes where runs start
        func run(_ a: Int, _ b: Int) -> (bytes: [UInt8], first: LSN) {
            let start = scan.records[a].offset
            let end = b < scan.records.count ? scan.records[b].offset : scan.validEnd
            return (Array(segment.bytes[start..<end]), scan.records[a].header.lsn)
        }
        // A gap: the second run before the first.
        let early = run(cuts[1], cuts[2])
        let gap = #expect(throws: LifeboatError.self) { _ = try vault.ingest(records: early.bytes, firstLSN: early.first, name: "s") }
        #expect(gap?.message.contains("holds LSNs up to 0; this run of records starts at \(early.first)") == true)
        for i in 0..<(cuts.count - 1) {
            let r = run(cuts[i], cuts[i + 1])
            #expect(try vault.ingest(records: r.bytes, firstLSN: r.first, name: "s") != .alreadyHeld)
            if i == 2 {
                // Resent, and overlapping: only the records after the vault's LSN count.
                #expect(try vault.ingest(records: r.bytes, firstLSN: r.first, name: "s") == .alreadyHeld)
                let overlap = run(cuts[1], cuts[3] + 5)
                #expect(try vault.ingest(records: overlap.bytes, firstLSN: overlap.first, name: "s") != .alreadyHeld)
                let held = try vault.lsnRange().last
                #expect(held == scan.records[cuts[3] + 4].header.lsn)
            }
            if i == 3 {
                // Cut inside a record; then a record damaged in transit.
                var cut = run(cuts[4], cuts[5])
                cut.bytes.removeLast(7)
                let inside = #expect(throws: LifeboatError.self) { _ = try vault.ingest(records: cut.bytes, firstLSN: cut.first, name: "s") }
                #expect(inside?.code == .corrupt && inside?.offset != nil)
                var damaged = run(cuts[4], cuts[5])
                damaged.bytes[24 + 16 + 100] ^= 0x01  // the first record's data
                let bad = #expect(throws: LifeboatError.self) { _ = try vault.ingest(records: damaged.bytes, firstLSN: damaged.first, name: "s") }
                #expect(bad?.code == .corrupt && bad?.offset == 0, "\(String(describing: bad))")
                #expect(try vault.lsnRange().last == scan.records[cuts[4] - 1].header.lsn, "nothing changed")
            }
        }
        let (_, last) = try vault.lsnRange()
        #expect(last == scan.lastLSN, "through the seal record")
        var g = SplitMix(state: 22)
        for lsn in [last] + (0..<6).map({ _ in LSN(1 + g.next() % last.rawValue) }) {
            let reader = try PointReader(vault: vault, lsn: lsn)
            for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: lsn), "disk \(d) at LSN \(lsn)") }
        }
        #expect(try vault.points().map(\.lsn) == f.markers.filter { $0 <= last }, "each marker once")
        // The next sealed segment, whole, follows the streamed one.
        let next = try f.sealedSegments()[1]
        #expect(try vault.ingest(segment: next.bytes, name: next.name) != .alreadyHeld)
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
    }

    /// A site past its spool limit drops records and says so (`openResync`): the vault holds
    /// through the gap without a layer, makes no point of the markers that follow until the one
    /// that ends the resync (its note says why it is the first), refuses `lsn:N` inside the
    /// window, and `vault verify` takes the jump in the LSN chain as no damage.
    @Test func aResyncWindowHoldsNoPointUntilTheMarkerThatEndsIt() throws {
        let f = try Fixture(records: 400, seed: 23, endsResyncAt: 249)
        let vault = try f.makeVault()
        var records: [LSN: (bytes: [UInt8], seal: Bool)] = [:]
        for segment in try f.sealedSegments() {
            let scan = try SegmentReader.scan(segment.bytes, path: FilePath(segment.name))
            for (i, r) in scan.records.enumerated() {
                let end = i + 1 < scan.records.count ? scan.records[i + 1].offset : scan.validEnd
                records[r.header.lsn] = (Array(segment.bytes[r.offset..<end]), r.header.type == .seal)
            }
        }
        /// The records from `a` through `b`, in runs that end at each seal (as a site sends them).
        func send(_ a: UInt64, _ b: UInt64) throws {
            var run: [UInt8] = [], first = a
            for lsn in a...b {
                let r = try #require(records[LSN(lsn)])
                run += r.bytes
                if r.seal || lsn == b {
                    _ = try vault.ingest(records: run, firstLSN: LSN(first), name: "s")
                    run = []
                    first = lsn + 1
                }
            }
        }
        let m = f.markers.map(\.rawValue)
        let held = m[0] + 10
        try send(1, held)  // marker 0 is a point
        // The site drops the records after it up to past marker 1, and resumes there.
        let resume = LSN(m[1] + 6)
        #expect(try vault.openResync(resumingAt: resume) == LSN(resume.rawValue - 1))
        #expect(try vault.openResync(resumingAt: resume) == LSN(resume.rawValue - 1), "told twice: one window")
        #expect(try vault.resyncWindows().count == 1)
        try send(resume.rawValue, m[5] + 3)
        let points = try vault.points()
        #expect(points.map(\.lsn.rawValue) == [m[0], m[4], m[5]], "markers 2 and 3 are inside the window: no point")
        #expect(points[1].note?.contains("first point after a resync") == true && points[1].note?.contains("after LSN \(held)") == true, "\(points[1])")
        let window = try #require(try vault.resyncWindows().first)
        #expect(window.gapAfter == LSN(held) && window.resumeAt == resume && window.endLSN == LSN(m[4]))
        let inside = #expect(throws: LifeboatError.self) { _ = try PointSelector.resolve("lsn:\(resume.rawValue + 3)", in: vault) }
        #expect(inside?.message.contains("not a consistent state") == true, "\(String(describing: inside))")
        #expect(try PointSelector.resolve("lsn:\(m[4] + 2)", in: vault).lsn == LSN(m[4] + 2), "after the window")
        #expect(try VaultVerifier.verify(vault).problems.isEmpty, "the jump over the dropped LSNs is no damage")
        // A vault that holds the LSNs already opens no window.
        #expect(try vault.openResync(resumingAt: LSN(m[3])) == LSN(m[5] + 3))
        #expect(try vault.resyncWindows().count == 1)
    }

    /// `vault verify` on the vault host while `vault serve` streams runs in and compacts them
    /// (many small layers merged and deleted, points arriving): never a false alarm.
    @Test(.timeLimit(.minutes(2)))
    func verifyWhileRunsArriveAndCompactionMergesFindsNoDamage() throws {
        let f = try Fixture(records: 3000, seed: 23)
        let vault = try f.makeVault()
        let segments = try f.sealedSegments()
        let done = StopFlag()
        let writer = Thread {
            defer { done.raise() }
            for seg in segments {
                guard let scan = try? SegmentReader.scan(seg.bytes, path: FilePath(seg.name)) else { return }
                for start in stride(from: 0, to: scan.records.count, by: 7) {
                    let end = min(start + 7, scan.records.count)
                    let from = scan.records[start].offset
                    let to = end < scan.records.count ? scan.records[end].offset : scan.validEnd
                    _ = try? vault.ingest(records: Array(seg.bytes[from..<to]), firstLSN: scan.records[start].header.lsn, name: seg.name)
                    _ = try? vault.compact()
                }
            }
        }
        writer.start()
        var rounds = 0
        while !done.isRaised || rounds == 0 {
            let report = try VaultVerifier.verify(vault)
            #expect(report.problems.isEmpty, "round \(rounds): \(report.problems)")
            rounds += 1
        }
        #expect(try vault.lsnRange().last == (try SegmentReader.scan(segments.last!.bytes, path: FilePath("s")).lastLSN), "everything arrived")
        #expect(try vault.layerCount(upTo: try vault.lsnRange().last) < 40, "compaction merged the runs' layers")
    }

    @Test func aSegmentDamagedInTransitIsRejectedWithItsOffsetAndChangesNothing() throws {
        let f = try Fixture(records: 300, seed: 3)
        let vault = try f.makeVault()
        var segment = try f.sealedSegments()[0]
        let before = try vault.lsnRange()
        segment.bytes[64 + 24 + 16 + 1000] ^= 0x01  // inside the first record's data
        let error = #expect(throws: LifeboatError.self) { _ = try vault.ingest(segment: segment.bytes, name: segment.name) }
        #expect(error?.code == .corrupt)
        #expect(error?.path == segment.name)
        #expect(error?.offset != nil)
        #expect(try vault.lsnRange() == before)
        var packed = try segment.bytes.withUnsafeBytes { try Zstd.compress($0) }
        packed[packed.count / 2] ^= 0xFF
        #expect(throws: LifeboatError.self) { _ = try vault.ingest(compressedSegment: packed, name: segment.name) }
    }

    @Test func vaultVerifyNamesTheDamagedLayerAndOffset() throws {
        let f = try Fixture(records: 300, seed: 4)
        let vault = try f.makeVault()
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
        let layers = try FileManager.default.contentsOfDirectory(atPath: vault.layersDirectory.string).sorted()
        let path = vault.layersDirectory.appending(layers[0])
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path.string)))
        bytes[200] ^= 0x55  // inside the first zstd frame
        try Data(bytes).write(to: URL(fileURLWithPath: path.string))
        let problems = try VaultVerifier.verify(vault).problems
        #expect(problems.count == 1)
        #expect(problems.first?.error.path == path.string)
        #expect(problems.first?.error.offset == 64)
    }

    /// A version 1 catalog (before drills and base checksums) is migrated: drills can be recorded.
    @Test func aVersionOneVaultIsMigratedToTheCurrentVersion() throws {
        let root = try temporaryDirectory()
        _ = try Vault(root: root, create: true)
        try Catalog(path: root.appending("catalog.sqlite").string).db.write { db in
            try db.execute(sql: "DROP TABLE drill; DROP TABLE flush; DROP TABLE resync; ALTER TABLE point DROP COLUMN note; DELETE FROM grdb_migrations WHERE identifier IN ('v2', 'v3', 'v4', 'v5')")
            try db.execute(sql: "UPDATE meta SET value = '1' WHERE key = 'formatVersion'")
        }
        let vault = try Vault(root: root)
        let version = try vault.catalog.db.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'formatVersion'") }
        #expect(version == "5")
        #expect(try vault.resyncWindows().isEmpty)
        try vault.record(drill: DrillRecord(pointID: nil, lsn: .zero, startedAt: Date(), finishedAt: Date(), result: .passed, plan: "p", report: "{}"))
        #expect(try vault.flushLSNs(in: LSN(0)...LSN(10)).isEmpty)
    }

    @Test func aVaultWrittenByANewerVersionIsRefusedWithBothVersions() throws {
        let root = try temporaryDirectory()
        _ = try Vault(root: root, create: true)
        try Catalog(path: root.appending("catalog.sqlite").string).db.write { db in
            try db.execute(sql: "UPDATE meta SET value = '8' WHERE key = 'formatVersion'")
        }
        let error = #expect(throws: LifeboatError.self) { _ = try Vault(root: root) }
        #expect(error?.code == .unsupported)
        #expect(error?.message == "vault format version 8 is newer than this lifeboat's (7)")
        #expect(throws: LifeboatError.self) { _ = try Vault(root: try temporaryDirectory()) }
    }

    @Test func selectorsNameTheRightPointOrSayWhyNot() throws {
        let f = try Fixture(records: 600, seed: 5)
        let vault = try f.makeVault()
        #expect(throws: LifeboatError.self) { _ = try PointSelector.resolve("latest", in: vault) }
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        let points = try vault.points()
        #expect(try PointSelector.resolve("latest", in: vault).lsn == points.last!.lsn)
        #expect(try PointSelector.resolve("latest-app", in: vault).point?.kind == .appConsistent)
        #expect(try PointSelector.resolve("\(points[1].id!)", in: vault).lsn == points[1].lsn)
        #expect(try PointSelector.resolve("lsn:7", in: vault).lsn == LSN(7))
        // @TIME: the newest point at or before; marker i has time 1_700_000_000 + i seconds.
        #expect(try PointSelector.resolve("@2023-11-14T22:15:00Z", in: vault).point?.label == "m99")
        #expect(try PointSelector.resolve("@2023-11-14T22:14:40Z", in: vault).point?.label == "m49")
        for bad in ["newest", "lsn:x", "@yesterday", "lsn:999999"] {
            #expect(throws: LifeboatError.self) { _ = try PointSelector.resolve(bad, in: vault) }
        }
    }
}
