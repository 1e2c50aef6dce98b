import Foundation
import LifeboatCore
import LifeboatJournal

/// A group's points as `points` shows them — on the vault host, or on a site host over the
/// wire (the vault service sends this as JSON): what `points --json` prints.
public struct PointListing: Codable, Sendable {
    /// The LSN range the group can present.
    public var baseLSN: LSN
    public var lastLSN: LSN
    public var points: [ListedPoint]
    /// Where the vault has no consistent state (a site's drop past its spool limit and the resync
    /// after it): no point inside. Absent from older vaults' answers.
    public var resyncWindows: [ResyncWindow]?

    public init(_ vault: Vault) throws {
        let names = Dictionary(uniqueKeysWithValues: try vault.disks().map { ($0.id, $0.name) })
        let drills = try vault.latestDrills()
        (baseLSN, lastLSN) = try vault.lsnRange()
        points = try vault.points().map { p in try ListedPoint(p, names: names, lastDrill: p.id.flatMap { drills[$0] }) }
        resyncWindows = try vault.resyncWindows()
    }
}

/// A point as `points --json` lists it: digests by disk name, no label as null, and its
/// latest drill.
public struct ListedPoint: Codable, Sendable {
    public struct Drill: Codable, Sendable {
        public var testedAt: Date
        public var result: DrillResult
        public var plan: String
    }
    public var id: Int64?
    public var lsn: LSN
    public var kind: PointKind
    public var time: Date
    public var label: String?
    public var note: String?
    public var digests: [String: String]
    public var lastDrill: Drill?

    init(_ p: RecoveryPoint, names: [DiskID: String], lastDrill: DrillRecord?) throws {
        id = p.id
        lsn = p.lsn
        kind = p.kind
        time = p.time
        label = p.label.isEmpty ? nil : p.label
        note = p.note
        digests = Dictionary(uniqueKeysWithValues: try p.digestMap().map { (names[$0.key] ?? "disk \($0.key.rawValue)", $0.value.description) })
        self.lastDrill = lastDrill.map { Drill(testedAt: $0.finishedAt, result: $0.result, plan: $0.plan) }
    }
}
