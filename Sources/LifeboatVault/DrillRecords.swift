import Foundation
import GRDB
import LifeboatCore

/// How a drill ended. A value the catalog holds that is none of these does not decode.
public enum DrillResult: String, Codable, Sendable, CustomStringConvertible {
    case passed, failed
    /// The drill could not run to the end (infrastructure): no verdict on the point.
    case error

    public var description: String { rawValue }
}

/// One drill run, kept in the catalog with the point it tested (Docs/formats/vault.md, table
/// `drill`). `report` is the drill's JSON report, as `lifeboat drill --json` writes it.
public struct DrillRecord: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    public static let databaseTableName = "drill"
    public var id: Int64?
    /// The cataloged point drilled; nil for a bare LSN (`lsn:N`, crash-point exploration).
    public var pointID: Int64?
    public var lsn: LSN
    public var startedAt: Date
    public var finishedAt: Date
    public var result: DrillResult
    /// The plan file's path, as given.
    public var plan: String
    public var report: String
    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    public init(pointID: Int64?, lsn: LSN, startedAt: Date, finishedAt: Date, result: DrillResult, plan: String, report: String) {
        self.pointID = pointID
        self.lsn = lsn
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.result = result
        self.plan = plan
        self.report = report
    }
}

extension Vault {
    /// Records a finished drill. A plain catalog write: it does not take the writer lock, so a
    /// drill never waits for an ingest or a prune (SQLite serializes the transactions).
    public func record(drill: DrillRecord) throws {
        var row = drill
        try catalog.write { db in try row.insert(db) }
    }

    /// The latest drill of each point, by point id; `verdictsOnly` skips drills that ended in
    /// an infrastructure error (they say nothing about the point).
    public func latestDrills(verdictsOnly: Bool = false) throws -> [Int64: DrillRecord] {
        let rows = try catalog.read { db in
            try DrillRecord.filter(Column("pointID") != nil).order(Column("finishedAt"), Column("id")).fetchAll(db)
        }
        var out: [Int64: DrillRecord] = [:]
        for r in rows where !verdictsOnly || r.result != .error { if let p = r.pointID { out[p] = r } }
        return out
    }

    /// The newest point (highest LSN) whose latest verdict is a pass, with that drill: the
    /// verified recovery point. A later failed drill of the same point takes it away.
    public func verifiedPoint() throws -> (point: RecoveryPoint, drill: DrillRecord)? {
        let latest = try latestDrills(verdictsOnly: true)
        for p in try points().reversed() {
            if let id = p.id, let d = latest[id], d.result == .passed { return (p, d) }
        }
        return nil
    }

    /// The flush boundaries the vault holds in `range` (from the journal's flush records).
    public func flushLSNs(in range: ClosedRange<LSN>) throws -> [LSN] {
        try catalog.read { db in
            try Int64.fetchAll(db, sql: "SELECT lsn FROM flush WHERE lsn BETWEEN ? AND ? ORDER BY lsn",
                               arguments: [Int64(range.lowerBound.rawValue), Int64(range.upperBound.rawValue)])
        }.map { LSN(UInt64($0)) }
    }

    /// The writes with an LSN in `range`, oldest first, as (LSN, disk, first block, blocks):
    /// what a crash-point exploration shows around the first failing boundary.
    public func writes(in range: ClosedRange<LSN>, limit: Int = 64) throws -> [(lsn: LSN, disk: DiskID, block: BlockIndex, count: Int)] {
        var blocks: [(LSN, DiskID, BlockIndex)] = []
        for layer in try openLayers(try layerRows(upTo: range.upperBound).filter { LSN(UInt64($0.lastLSN)) >= range.lowerBound }) {
            for i in 0..<layer.header.entryCount {
                let e = layer.entry(i)
                if range.contains(e.lsn) { blocks.append((e.lsn, e.disk, e.block)) }
            }
        }
        blocks.sort { ($0.0, $0.1.rawValue, $0.2.rawValue) < ($1.0, $1.1.rawValue, $1.2.rawValue) }
        // One line per write record: consecutive blocks of one LSN and disk.
        var out: [(lsn: LSN, disk: DiskID, block: BlockIndex, count: Int)] = []
        for (lsn, disk, block) in blocks {
            if let last = out.last, last.lsn == lsn, last.disk == disk, last.block.rawValue + UInt64(last.count) == block.rawValue {
                out[out.count - 1].count += 1
            } else {
                if out.count == limit { break }
                out.append((lsn, disk, block, 1))
            }
        }
        return out
    }
}

extension Vault {
    /// The newest drill that passed, of any point (a failover warns when none is recent).
    public func lastPassedDrill() throws -> DrillRecord? {
        try catalog.read { db in
            try DrillRecord.filter(Column("result") == DrillResult.passed.rawValue).order(Column("finishedAt").desc).fetchOne(db)
        }
    }
}
