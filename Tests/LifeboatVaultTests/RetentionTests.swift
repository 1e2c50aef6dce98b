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
            let reader = try PointReader(vault: vault, lsn: LSN(UInt64(p.lsn)))
            for d in 0..<2 { #expect(try f.read(reader, disk: d) == f.state(disk: d, at: LSN(UInt64(p.lsn))), "point \(p.label) disk \(d)") }
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
        #expect(old.filter { keptOld.contains($0.id!) }.contains { $0.label == "m1099" && $0.kind == "app-consistent" })
        #expect(Self.policy.retained(points, now: Self.now.addingTimeInterval(10_000)).count == 1)  // only the newest app point
    }

    @Test func theNewestPointThatPassedADrillIsNeverPruned() throws {
        let (_, vault) = try ingested(seed: 13)
        let dropped = Set(try vault.points().compactMap(\.id)).subtracting(Self.policy.retained(try vault.points(), now: Self.now))
        let proven = try #require(try vault.points().filter { dropped.contains($0.id!) }.last)
        func drill(_ result: String) throws {
            try vault.record(drill: DrillRecord(pointID: proven.id, lsn: proven.lsn, startedAt: Self.now, finishedAt: Date(),
                                                result: result, plan: "p.yaml", report: "{}"))
        }
        try drill("passed")
        try drill("error")  // an infrastructure error says nothing about the point
        #expect(try vault.verifiedPoint()?.point.id == proven.id)
        _ = try vault.prune(now: Self.now, policy: Self.policy)
        #expect(try vault.points().contains { $0.id == proven.id }, "the verified point survives retention")
        #expect(try vault.flushLSNs(in: LSN(0)...LSN(UInt64.max >> 1)).allSatisfy { $0 > (try vault.lsnRange()).base })
        // A later failed drill takes the verification away, and then retention may drop it.
        try drill("failed")
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
        #expect(try vault.points().allSatisfy { LSN(UInt64($0.lsn)) >= base })
        try checkEveryPoint(f, vault)
        #expect(throws: LifeboatError.self) { _ = try PointReader(vault: vault, lsn: LSN(base.rawValue - 1)) }
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
        // Nothing more to do the second time.
        let again = try vault.prune(now: Self.now, policy: Self.policy)
        #expect(again.removedPoints.isEmpty && again.mergedLayers == 0)
    }

    @Test func aPruneInterruptedMidMergeLosesNothingAndTheNextOneFinishesIt() throws {
        let (f, vault) = try ingested(seed: 13)
        #expect(throws: LifeboatError.self) { _ = try vault.prune(now: Self.now, policy: Self.policy, interruptAfterLayers: 1) }
        // The target is committed: nothing below it can be read, everything kept reads right
        // although the bases are half merged.
        let reopened = try Vault(root: vault.root)
        try checkEveryPoint(f, reopened)
        let report = try reopened.prune(now: Self.now, policy: Self.policy)
        #expect(report.mergedLayers > 0)
        try checkEveryPoint(f, reopened)
        #expect(try VaultVerifier.verify(reopened).problems.isEmpty)
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
