import Foundation
import LifeboatCore
import SystemPackage
import LifeboatTestSupport
import Testing

@testable import LifeboatVault

@Suite struct RetentionTests {
    /// Fixture markers: record i (i ≡ 49 mod 50) at time 1.7e9 + i s; app-consistent when i ≡ 99 mod 100.
    static let now = Date(timeIntervalSince1970: 1_700_000_000 + 1200)
    static let policy = RetentionPolicy(window: 600, keepAll: 200, every: 100)

    func ingested(seed: UInt64) throws -> (Fixture, Vault) {
        let f = try Fixture(records: 1200, seed: seed)
        let vault = try f.makeVault()
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        return (f, vault)
    }

    func checkEveryPoint(_ f: Fixture, _ vault: Vault) throws {
        for p in try vault.points() {
            let reader = try PointReader(vault: vault, lsn: p.lsn)
            for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: p.lsn), "point \(p.label) disk \(d)") }
        }
    }

    @Test func tiersKeepRecentPointsHourliesAndTheNewestAppConsistentOne() throws {
        let (_, vault) = try ingested(seed: 11)
        let points = try vault.points()
        let kept = Self.policy.retained(points, now: Self.now)
        let labels = Set(points.filter { kept.contains($0.id!) }.map(\.label))
        #expect(labels == ["m1199", "m1149", "m1099", "m1049", "m999", "m899", "m799", "m699"])
        // An old app-consistent point survives when it is the newest one.
        let old = points.filter { $0.label != "m1199" }
        let keptOld = Self.policy.retained(old, now: Self.now)
        #expect(old.filter { keptOld.contains($0.id!) }.contains { $0.label == "m1099" && $0.kind == .appConsistent })
        #expect(Self.policy.retained(points, now: Self.now.addingTimeInterval(10_000)).count == 1)  // only the newest app point
    }

    @Test func theNewestPointThatPassedADrillIsNeverPruned() throws {
        let (_, vault) = try ingested(seed: 13)
        let dropped = Set(try vault.points().compactMap(\.id)).subtracting(Self.policy.retained(try vault.points(), now: Self.now))
        let proven = try #require(try vault.points().filter { dropped.contains($0.id!) }.last)
        func drill(_ result: DrillResult) throws {
            try vault.record(drill: DrillRecord(pointID: proven.id, lsn: proven.lsn, startedAt: Self.now, finishedAt: Date(),
                                                result: result, plan: "p.yaml", report: "{}"))
        }
        try drill(.passed)
        try drill(.error)  // an infrastructure error says nothing about the point
        #expect(try vault.verifiedPoint()?.point.id == proven.id)
        _ = try vault.prune(now: Self.now, policy: Self.policy)
        #expect(try vault.points().contains { $0.id == proven.id }, "the verified point survives retention")
        #expect(try vault.flushLSNs(in: LSN(0)...LSN(UInt64.max >> 1)).allSatisfy { $0 > (try vault.lsnRange()).base })
        // A later failed drill takes the verification away, and then retention may drop it.
        try drill(.failed)
        #expect(try vault.verifiedPoint() == nil)
        _ = try vault.prune(now: Self.now, policy: Self.policy)
        #expect(try !vault.points().contains { $0.id == proven.id })
    }

    @Test func pruneMergesOldLayersAndEveryKeptPointStillReadsTheSame() throws {
        let (f, vault) = try ingested(seed: 12)
        let layersBefore = try vault.layerRows(upTo: try vault.lsnRange().last).count
        let report = try vault.prune(now: Self.now, policy: Self.policy)
        #expect(report.removedPoints.count == 16)
        #expect(report.mergedLayers > 0)
        #expect(try vault.layerRows(upTo: try vault.lsnRange().last).count == layersBefore - report.mergedLayers)
        let (base, _) = try vault.lsnRange()
        #expect(base == report.baseLSN && base > .zero)
        #expect(try vault.points().allSatisfy { $0.lsn >= base })
        try checkEveryPoint(f, vault)
        #expect(throws: LifeboatError.self) { _ = try PointReader(vault: vault, lsn: LSN(base.rawValue - 1)) }
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
        // Nothing more to do the second time.
        let again = try vault.prune(now: Self.now, policy: Self.policy)
        #expect(again.removedPoints.isEmpty && again.mergedLayers == 0)
    }

    /// A base write failing with EIO or ENOSPC part-way through the merge, or the bases' fsync
    /// failing (FaultInjection): the prune fails, nothing readable changes, the next one finishes.
    @Test(arguments: [(FaultInjection.Operation.write, Errno.ioError), (.write, .noSpace), (.sync, .ioError)])
    func aPruneWhoseMergeFailsLosesNothingAndTheNextOneFinishesIt(operation: FaultInjection.Operation, errno: Errno) throws {
        let (f, vault) = try ingested(seed: 13)
        let bases = vault.root.appending("bases").string
        FaultInjection.arm(operation, under: bases, errno: errno)
        defer { FaultInjection.disarm(under: bases) }
        let error = #expect(throws: LifeboatError.self) { _ = try vault.prune(now: Self.now, policy: Self.policy) }
        #expect(error?.errno == errno)
        #expect(error?.path?.hasPrefix(bases) == true, "the error names the base")
        // The target is committed: nothing below it can be read, everything kept reads right
        // although the bases are half merged.
        let reopened = try Vault(root: vault.root)
        try checkEveryPoint(f, reopened)
        let report = try reopened.prune(now: Self.now, policy: Self.policy)
        #expect(report.mergedLayers > 0)
        try checkEveryPoint(f, reopened)
        #expect(try VaultVerifier.verify(reopened).problems.isEmpty)
    }

    /// Prune leaves the oldest data in the bases, rewritten in place: a flipped byte there is
    /// named by `vault verify` (block, base file, byte offset) and refused by every reader; a
    /// block the base lost (a hole where data was recorded) too. Bases without checksums (made
    /// before format 3) get them when the vault is opened.
    @Test func baseDamageIsNamedByVerifyAndRefusedByReaders() throws {
        let (f, vault) = try ingested(seed: 21)
        #expect(try vault.prune(now: Self.now, policy: Self.policy).mergedLayers > 0)
        let verified = try VaultVerifier.verify(vault)
        #expect(verified.problems.isEmpty && verified.bases == 2)
        let disk = try vault.disk(named: "d0")
        let (baseLSN, _) = try vault.lsnRange()
        let state = f.state(disk: 0, at: baseLSN)
        let block = try #require((0..<Fixture.blocksPerDisk).last { b in state[(b * 4096)..<((b + 1) * 4096)].contains { $0 != 0 } })
        let path = vault.basePath(disk.id)
        let fd = try FileDescriptor.open(path, .readWrite)
        defer { try? fd.close() }
        let offset = Int64(block) * 4096
        func expectNamed(_ what: String) throws {
            let problems = try VaultVerifier.verify(vault).problems
            #expect(problems.count == 1, "\(what): \(problems)")
            #expect(problems.first?.error.path == path.string && problems.first?.error.offset == offset, "\(what): \(problems)")
            #expect(problems.first?.error.message == "base of disk 'd0': block \(block) does not match its checksum")
            let reader = try PointReader(vault: vault, lsn: baseLSN)
            let digest = #expect(throws: LifeboatError.self, "\(what): the digest reads the block") { _ = try reader.digestRoot(disk: disk) }
            #expect(digest?.message.contains("block \(block) (byte offset \(offset))") == true, "\(digest?.description ?? "")")
            #expect(throws: LifeboatError.self, "\(what): a read of the block") { _ = try f.read(reader, disk: 0) }
        }

        var byte: UInt8 = 0
        _ = try withUnsafeMutableBytes(of: &byte) { try fd.read(fromAbsoluteOffset: offset + 100, into: $0) }
        _ = try withUnsafeBytes(of: byte ^ 0x10) { try fd.write(toAbsoluteOffset: offset + 100, $0) }
        try expectNamed("a flipped byte")
        _ = try withUnsafeBytes(of: byte) { try fd.write(toAbsoluteOffset: offset + 100, $0) }
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
        let punch = try Process.run(URL(fileURLWithPath: "/usr/bin/fallocate"), arguments: ["--punch-hole", "--offset", "\(offset)", "--length", "4096", path.string])
        punch.waitUntilExit()
        #expect(punch.terminationStatus == 0)
        try expectNamed("a lost block")
        _ = try state.withUnsafeBytes { try fd.write(toAbsoluteOffset: offset, UnsafeRawBufferPointer(rebasing: $0[Int(offset)..<Int(offset + 4096)])) }
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)

        // A base without checksums gets them, from its content, at the next open.
        let sums = vault.baseChecksumsPath(disk.id)
        let recorded = try Data(contentsOf: URL(fileURLWithPath: sums.string))
        try FileManager.default.removeItem(atPath: sums.string)
        let reopened = try Vault(root: vault.root)
        #expect(try Data(contentsOf: URL(fileURLWithPath: sums.string)) == recorded)
        try checkEveryPoint(f, reopened)
    }
}

@Suite struct CompactionTests {
    @Test func compactionKeepsEveryVersionAndCutsTheLayerCount() throws {
        let f = try Fixture(records: 2600, seed: 21)
        let vault = try f.makeVault()
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        let (_, last) = try vault.lsnRange()
        let before = try vault.layerRows(upTo: last).count
        #expect(before >= Vault.compactionFanIn)
        let merges = try vault.compact()
        #expect(merges >= 1)
        let after = try vault.layerRows(upTo: last).count
        #expect(after == before - merges * (Vault.compactionFanIn - 1))
        #expect(after < Vault.compactionFanIn * 2)
        var g = SplitMix(state: 4)
        for lsn in [LSN(1), last] + (0..<6).map({ _ in LSN(1 + g.next() % last.rawValue) }) {
            let reader = try PointReader(vault: vault, lsn: lsn)
            for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: lsn), "disk \(d) at LSN \(lsn)") }
        }
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: vault.layersDirectory.string).count == after)
    }
}

extension CompactionTests {
    /// A prune that merges some of a compaction's inputs into the bases while the merged layer
    /// is being written: the compaction sees its run changed and discards its output; reads and
    /// verify stay right.
    @Test func aPruneRacingACompactionWinsAndNothingIsLostOrDoubled() throws {
        let f = try Fixture(records: 2600, seed: 22)
        let vault = try f.makeVault()
        for s in try f.sealedSegments() { _ = try vault.ingest(segment: s.bytes, name: s.name) }
        let (_, last) = try vault.lsnRange()
        let before = try vault.layerRows(upTo: last).count
        var pruned = PruneReport()
        let merges = try vault.compact {
            // Keep only the newest point: every layer below it goes into the bases now.
            if pruned.mergedLayers == 0 { pruned = try vault.prune(now: RetentionTests.now, policy: RetentionPolicy(window: 1, keepAll: 1, every: 1)) }
        }
        #expect(pruned.mergedLayers > 0)
        #expect(merges == 0, "the run changed under the merge: it is discarded")
        #expect(try vault.layerRows(upTo: last).count == before - pruned.mergedLayers)
        #expect(try FileManager.default.contentsOfDirectory(atPath: vault.incomingDirectory.string).isEmpty, "the discarded output is removed")
        let (base, _) = try vault.lsnRange()
        let reader = try PointReader(vault: vault, lsn: last)
        for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: last), "disk \(d) at LSN \(last)") }
        #expect(base > .zero)
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
    }
}

@Suite struct PinTests {
    @Test func aPinOfADeadProcessIsIgnoredAndALiveOneKeepsItsLSN() throws {
        let root = try temporaryDirectory()
        let vault = try Vault(root: root, create: true)
        let live = try vault.pin(lsn: LSN(42))
        // A process that has exited: its pin file is left behind as after a kill -9.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/true")
        try p.run()
        p.waitUntilExit()
        try #require(FileManager.default.createFile(atPath: root.appending("pins/\(p.processIdentifier)-7").string, contents: nil))
        #expect(vault.pinnedLSNs() == [LSN(42)])
        #expect(!FileManager.default.fileExists(atPath: root.appending("pins/\(p.processIdentifier)-7").string), "a dead process's pin is removed")
        vault.unpin(live)
        #expect(vault.pinnedLSNs().isEmpty)
    }
}
