import Foundation
import GRDB
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Who may write a group's history (decision 0012). A group's history is a line of LSNs; a
/// failover starts a new generation at a fork LSN, owned by the host that serves the disks from
/// then on. The vault takes records only from the owner of the current generation: an older
/// generation's host that comes back is refused (fenced) and fences itself.
public struct GroupGeneration: Codable, FetchableRecord, PersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "generation"
    public var number: Int64
    /// The token of the writer serving it: "" for the site that created the group (generation
    /// 1), else the random token of the site a failover made (kept in its `state/generation.json`).
    public var owner: String
    /// For people: which host and directory serve it.
    public var ownerName: String
    /// The LSN the generation's history continues after (0 for the first).
    public var forkLSN: LSN
    public var state: GroupState
    public var startedAt: Date
    /// The point the failover that started it chose, if one did.
    public var pointID: Int64?
    /// A planned failover (or failback) away from this generation: asked at, and the LSN of the
    /// owner's final marker once it has stopped serving writes and drained everything here.
    public var plannedAt: Date?
    public var drainedLSN: LSN?
}

/// A group's place in the failover lifecycle (Docs/decisions/0012).
public enum GroupState: String, Codable, Sendable, DatabaseValueConvertible {
    /// Written by its owner, replicated here.
    case protected
    /// A failover started this generation and is not committed: its point can still change.
    case failedOver = "failed over"
    /// The failover is final; protection goes on from the new owner.
    case committed
    /// A planned failover away from this generation is asked: its owner stops serving writes,
    /// marks a final point and drains; the next generation starts at exactly that point.
    case failoverPlanned = "failover planned"
}

/// What the vault says of one writer in one answer (`Vault.state(of:)`): the group it holds,
/// its disks, how far it holds this writer's records, and where the writer stands. A shipper's
/// full round asks once: a vault on another machine answers in one request where four
/// questions took four.
public struct WriterState: Sendable, Equatable {
    /// The protection group the vault holds, nil for a new vault.
    public var groupID: String?
    /// The disks the vault holds (initial replication done).
    public var diskIDs: Set<DiskID>
    /// As `Vault.heldThrough(for:)`.
    public var heldThrough: LSN
    /// As `Vault.standing(of:)`.
    public var standing: WriterStanding

    public init(groupID: String?, diskIDs: Set<DiskID>, heldThrough: LSN, standing: WriterStanding) {
        self.groupID = groupID
        self.diskIDs = diskIDs
        self.heldThrough = heldThrough
        self.standing = standing
    }
}

/// Where a writer stands in the group's history.
public enum WriterStanding: Sendable, Equatable {
    /// It owns the current generation: it serves writes and ships them.
    case owner
    /// It owns it, and a planned failover asks it to stop serving writes, mark a final point and drain.
    case drainAsked
    /// Another generation owns the group; the vault's words say which, since when, served by whom.
    case fenced(String)
}

/// What a writer says it is: the generation it serves and its owner token.
public struct WriterClaim: Sendable, Equatable, Codable {
    public var generation: Int64
    public var owner: String
    public init(generation: Int64, owner: String) {
        self.generation = generation
        self.owner = owner
    }
    /// The site that created the group, before any failover.
    public static let original = WriterClaim(generation: 1, owner: "")
}

/// A layer of an older generation past its fork: no point of the current generation reads it,
/// but it names the blocks the old owner wrote after the fork (what re-protect must replace).
struct ForsakenLayerRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "forsakenLayer"
    var generation: Int64
    /// Only its records after this LSN are forsaken (the rest is in the cut layer before the fork).
    var after: Int64
    var firstLSN: Int64
    var lastLSN: Int64
    var file: String
    var bytes: Int64
}

/// What a failover set aside: the old generation's history past the fork.
public struct ForkOutcome: Sendable {
    public var generation: GroupGeneration
    public var forsakenLayers: Int
    public var forsakenBytes: Int64
    public var forsakenPoints: Int
    /// The LSNs the vault held past the fork (the old owner's last ones), if any.
    public var forsakenLSNs: ClosedRange<UInt64>?
}

extension Vault {
    /// The group's current generation.
    public func generation() throws -> GroupGeneration {
        try catalog.read { db in try Self.currentGeneration(db) }
    }

    /// Every generation, oldest first.
    public func generations() throws -> [GroupGeneration] {
        try catalog.read { db in try GroupGeneration.order(Column("number")).fetchAll(db) }
    }

    static func currentGeneration(_ db: Database) throws -> GroupGeneration {
        guard let g = try GroupGeneration.order(Column("number").desc).fetchOne(db) else {
            throw LifeboatError(.corrupt, "the catalog has no generation row (format 7 keeps one per failover)", path: nil)
        }
        return g
    }

    /// Refuses a writer that is not the current generation's owner, naming both (writer lock held).
    func requireWriter(_ claim: WriterClaim, _ db: Database) throws {
        let current = try Self.currentGeneration(db)
        guard claim.generation == current.number && claim.owner == current.owner else {
            throw Self.fencedError(claim, current, root: root)
        }
    }

    /// Why `claim` may not write the group's history, nil when it may.
    public func fencedReason(for claim: WriterClaim) throws -> String? {
        try catalog.read { db in
            let current = try Self.currentGeneration(db)
            return claim.generation == current.number && claim.owner == current.owner ? nil : Self.fencedError(claim, current, root: root).message
        }
    }

    /// The LSN through which the vault holds `claim`'s records — what a site may delete its
    /// journal up to. The current owner: everything the vault holds. A writer of an older
    /// generation: only up to the fork that ended its generation, whatever later generations
    /// shipped since (their LSNs go on after the fork, and are not its records). Any other
    /// claim: nothing. So an answer that reaches a site after a failover it has not heard of yet
    /// (a round that asked "where do I stand" before the fork) cannot make it delete the records
    /// it wrote after the fork — the only copy of them, which re-protect moves back.
    public func heldThrough(for claim: WriterClaim) throws -> LSN {
        try catalog.read { db in try Self.heldThrough(for: claim, db) }
    }

    static func heldThrough(for claim: WriterClaim, _ db: Database) throws -> LSN {
        let last = try lsnRange(db).last
        let current = try currentGeneration(db)
        if claim.generation == current.number && claim.owner == current.owner { return last }
        guard let mine = try GroupGeneration.filter(Column("number") == claim.generation).fetchOne(db), mine.owner == claim.owner,
              let next = try GroupGeneration.filter(Column("number") == claim.generation + 1).fetchOne(db) else { return .zero }
        return min(last, next.forkLSN)
    }

    /// Where `claim` stands: owner, owner asked to drain, or fenced (and why).
    public func standing(of claim: WriterClaim) throws -> WriterStanding {
        try catalog.read { db in try standing(of: claim, db) }
    }

    private func standing(of claim: WriterClaim, _ db: Database) throws -> WriterStanding {
        let current = try Self.currentGeneration(db)
        guard claim.generation == current.number && claim.owner == current.owner else {
            return .fenced(Self.fencedError(claim, current, root: root).message)
        }
        return current.state == .failoverPlanned ? .drainAsked : .owner
    }

    /// All a writer asks before it ships, in one catalog read (one consistent answer): the
    /// group, the disks held, `heldThrough(for:)` and `standing(of:)`. The local replica and
    /// `vault serve`'s `state` answer both come from here.
    public func state(of claim: WriterClaim) throws -> WriterState {
        try catalog.read { db in
            WriterState(groupID: try GroupRow.fetchOne(db)?.id, diskIDs: Set(try VaultDisk.fetchAll(db).map(\.id)),
                        heldThrough: try Self.heldThrough(for: claim, db), standing: try standing(of: claim, db))
        }
    }

    static func fencedError(_ claim: WriterClaim, _ current: GroupGeneration, root: FilePath) -> LifeboatError {
        let when = ISO8601DateFormatter().string(from: current.startedAt)
        let why = claim.generation < current.number
            ? "this writer serves generation \(claim.generation); the group is in generation \(current.number) since a failover at LSN \(current.forkLSN) (\(when)), served by \(current.ownerName)"
            : "this writer claims generation \(claim.generation), which the vault did not start (current: \(current.number), served by \(current.ownerName))"
        return LifeboatError(.fenced, "\(why): this writer is fenced and must serve no more writes until it is re-protected", path: root.string)
    }

    /// The file name of a layer: its LSN range, and its generation past the first (a new
    /// generation's LSNs go on after the fork, and the old one's layers past it stay on disk
    /// under their own names). `tag` marks a layer cut at a fork.
    func layerFileName(first: LSN, last: LSN, generation: Int64, tag: String? = nil) -> String {
        var name = "\(hex16(first))-\(hex16(last))"
        if generation > 1 { name += "-g\(generation)" }
        if let tag { name += "-" + tag }
        return name + ".layer"
    }

    /// Unplanned failover (and the vault's step of a planned one): starts generation g+1,
    /// owned by `owner`, whose history continues after `lsn` (a point's). Every layer past the
    /// fork is set aside (forsaken: kept, read by no point), a layer spanning it is cut, points
    /// past it are removed — one catalog transaction under the writer lock, after the cut layer
    /// is written (a crash before the commit leaves the group as it was, with a stray file).
    /// Refused while an earlier failover is not committed, or for an LSN the vault cannot present.
    /// `planned`: the step of a planned failover whose owner drained at exactly `lsn` (the new
    /// generation is protected at once: nothing was lost, nothing to commit).
    public func fork(at lsn: LSN, pointID: Int64?, owner: String, ownerName: String, planned: Bool = false) throws -> ForkOutcome {
        try withWriterLock {
            let current = try generation()
            if planned {
                guard current.state == .failoverPlanned, current.drainedLSN == lsn else {
                    throw LifeboatError(.busy, "no planned failover drained at LSN \(lsn): the group is \(current.state.rawValue)"
                                        + (current.drainedLSN.map { ", drained at LSN \($0)" } ?? ""), path: root.string)
                }
            } else if current.state == .failoverPlanned {
                throw LifeboatError(.busy, "a planned failover of generation \(current.number) is under way (asked \(ISO8601DateFormatter().string(from: current.plannedAt ?? Date()))): "
                                    + "let it finish, or withdraw it (`lifeboat failover cancel`)", path: root.string)
            }
            guard current.state != .failedOver else {
                throw LifeboatError(.busy, "the group is already failed over (generation \(current.number), at LSN \(current.forkLSN), served by \(current.ownerName)): "
                                    + "commit it (`lifeboat failover commit`) or change its point (`lifeboat failover change-point`) first", path: root.string)
            }
            let (base, last) = try lsnRange()
            guard lsn >= base else {
                throw LifeboatError(.notFound, "LSN \(lsn) is older than what the vault can present (from \(base) on: the rest is merged into the bases)", path: root.string)
            }
            guard lsn <= last else { throw LifeboatError(.notFound, "LSN \(lsn) is past what the vault holds (\(last))", path: root.string) }
            if let target = try pendingPruneTarget(), target > lsn {
                throw LifeboatError(.busy, "a prune to LSN \(target) is under way past the fork: run `lifeboat vault prune` to finish it first", path: root.string)
            }
            let rows = try catalog.read { db in try LayerRow.filter(Column("lastLSN") > Int64(lsn.rawValue)).order(Column("firstLSN")).fetchAll(db) }
            let spanning = rows.first { $0.firstLSN <= Int64(lsn.rawValue) }
            let cut = try spanning.map { try cutLayer($0, through: lsn, generation: current.number) }
            return try catalog.write { db in
                let forsakenPoints = try setAside(rows, cut: cut, after: lsn, writtenBy: { _ in current.number }, db)
                let next = GroupGeneration(number: current.number + 1, owner: owner, ownerName: ownerName, forkLSN: lsn,
                                           state: planned ? .protected : .failedOver, startedAt: Date(), pointID: pointID)
                try next.insert(db)
                return ForkOutcome(generation: next, forsakenLayers: rows.count, forsakenBytes: rows.reduce(0) { $0 + $1.bytes },
                                   forsakenPoints: forsakenPoints, forsakenLSNs: last > lsn ? (lsn.rawValue + 1)...last.rawValue : nil)
            }
        }
    }

    /// Change point (before commit): moves the current, uncommitted failover's fork back to the
    /// older point at `lsn`, set aside with everything after it — what the failed-over site wrote
    /// since, and the old owner's records between the two points. Asked by the failed-over site
    /// (its claim); asked again at the same LSN, nothing more happens.
    public func changeFork(to lsn: LSN, pointID: Int64?, as writer: WriterClaim) throws -> ForkOutcome {
        try withWriterLock {
            var current = try generation()
            guard current.state == .failedOver else {
                throw LifeboatError(.invalidArgument, "no failover to change the point of: the group is \(current.state.rawValue) in generation \(current.number)", path: root.string)
            }
            try catalog.read { db in try requireWriter(writer, db) }
            if lsn == current.forkLSN { return ForkOutcome(generation: current, forsakenLayers: 0, forsakenBytes: 0, forsakenPoints: 0, forsakenLSNs: nil) }
            guard lsn < current.forkLSN else {
                throw LifeboatError(.invalidArgument, "a change of point goes to an older point than the failover's (LSN \(current.forkLSN)); LSN \(lsn) is not", path: root.string)
            }
            let (base, last) = try lsnRange()
            guard lsn >= base else { throw LifeboatError(.notFound, "LSN \(lsn) is older than what the vault can present (from \(base) on)", path: root.string) }
            let rows = try catalog.read { db in try LayerRow.filter(Column("lastLSN") > Int64(lsn.rawValue)).order(Column("firstLSN")).fetchAll(db) }
            let cut = try rows.first { $0.firstLSN <= Int64(lsn.rawValue) }.map { try cutLayer($0, through: lsn, generation: current.number) }
            return try catalog.write { db in
                // Rows up to the old fork were the old owner's; after it, the failed-over site's.
                let oldFork = Int64(current.forkLSN.rawValue)
                let points = try setAside(rows, cut: cut, after: lsn, writtenBy: { $0.firstLSN <= oldFork ? current.number - 1 : current.number }, db)
                // The old owner's records past the new fork: all of them are its own now.
                try db.execute(sql: "UPDATE forsakenLayer SET after = ? WHERE generation = ?", arguments: [Int64(lsn.rawValue), current.number - 1])
                current.forkLSN = lsn
                current.pointID = pointID
                try current.update(db)
                return ForkOutcome(generation: current, forsakenLayers: rows.count, forsakenBytes: rows.reduce(0) { $0 + $1.bytes },
                                   forsakenPoints: points, forsakenLSNs: last > lsn ? (lsn.rawValue + 1)...last.rawValue : nil)
            }
        }
    }

    /// Asks the current generation's owner to drain for a planned failover (or failback): from
    /// its next contact it serves no writes, marks a final point, ships everything and reports
    /// it (`reportDrained`). Refused while a failover is not committed.
    public func planFailover() throws -> GroupGeneration {
        try updatingCurrentGeneration { current, _ in
            if current.state == .failoverPlanned { return }  // asked again: the same plan
            guard current.state != .failedOver else {
                throw LifeboatError(.busy, "the group is failed over and not committed (generation \(current.number)): commit it first", path: root.string)
            }
            current.state = .failoverPlanned
            current.plannedAt = Date()
            current.drainedLSN = nil
        }
    }

    /// Takes a planned failover back before it forked: the owner serves writes again.
    public func withdrawPlannedFailover() throws -> GroupGeneration {
        try updatingCurrentGeneration { current, _ in
            guard current.state == .failoverPlanned else {
                throw LifeboatError(.invalidArgument, "no planned failover to withdraw: the group is \(current.state.rawValue)", path: root.string)
            }
            current.state = current.number == 1 || current.forkLSN == .zero ? .protected : .committed
            current.plannedAt = nil
            current.drainedLSN = nil
        }
    }

    /// The owner has stopped serving writes and the vault holds everything through its final
    /// marker at `lsn`: the planned failover may fork there.
    public func reportDrained(at lsn: LSN, as writer: WriterClaim) throws -> GroupGeneration {
        try updatingCurrentGeneration { current, db in
            try requireWriter(writer, db)
            guard current.state == .failoverPlanned else {
                throw LifeboatError(.invalidArgument, "no planned failover is waiting for a drain: the group is \(current.state.rawValue)", path: root.string)
            }
            // The final marker is a point here (only its segment's seal may follow it).
            guard try RecoveryPoint.filter(Column("lsn") == Int64(lsn.rawValue)).fetchCount(db) > 0 else {
                throw LifeboatError(.invalidArgument, "drained at LSN \(lsn), but the vault has no point there: ship the final marker first", path: root.string)
            }
            current.drainedLSN = lsn
        }
    }

    /// In the fork's transaction: `rows` (the layers past `lsn`) set aside as `writtenBy` says,
    /// the cut layer cataloged, the points, flush boundaries and resync windows past `lsn`
    /// deleted, the history ending at `lsn`. Returns the points deleted.
    private func setAside(_ rows: [LayerRow], cut: LayerRow?, after lsn: LSN, writtenBy: (LayerRow) -> Int64, _ db: Database) throws -> Int {
        for row in rows {
            try ForsakenLayerRow(generation: writtenBy(row), after: Int64(lsn.rawValue), firstLSN: row.firstLSN, lastLSN: row.lastLSN,
                                 file: row.file, bytes: row.bytes).insert(db)
            _ = try LayerRow.deleteOne(db, key: row.id)
        }
        if var cut { try cut.insert(db) }
        let points = try RecoveryPoint.filter(Column("lsn") > Int64(lsn.rawValue)).deleteAll(db)
        try db.execute(sql: "DELETE FROM flush WHERE lsn > ?", arguments: [Int64(lsn.rawValue)])
        try db.execute(sql: "DELETE FROM resync WHERE gapAfter >= ?", arguments: [Int64(lsn.rawValue)])
        try db.execute(sql: "UPDATE grp SET lastLSN = ?", arguments: [Int64(lsn.rawValue)])
        return points
    }

    /// The current generation changed by `change` in one transaction under the writer lock.
    private func updatingCurrentGeneration(_ change: (inout GroupGeneration, Database) throws -> Void) throws -> GroupGeneration {
        try withWriterLock {
            try catalog.write { db in
                var current = try Self.currentGeneration(db)
                try change(&current, db)
                try current.update(db)
                return current
            }
        }
    }

    /// Makes the current generation's failover final.
    public func commitFailover() throws -> GroupGeneration {
        try updatingCurrentGeneration { current, _ in
            guard current.state == .failedOver else {
                throw LifeboatError(.invalidArgument, "no failover to commit: the group is \(current.state.rawValue) in generation \(current.number)", path: root.string)
            }
            current.state = .committed
        }
    }

    /// The forsaken layers' LSN ranges past their forks, oldest first (what re-protect replaces).
    public func forsakenRanges() throws -> [(generation: Int64, lsns: ClosedRange<UInt64>, bytes: Int64)] {
        try catalog.read { db in try ForsakenLayerRow.order(Column("firstLSN")).fetchAll(db) }
            .map { ($0.generation, UInt64(max($0.firstLSN, $0.after + 1))...UInt64($0.lastLSN), $0.bytes) }
    }

    /// `row` rewritten with only its versions at or before `lsn` (frames copied whole, as
    /// compaction does), under its own name; written and renamed into place, not cataloged.
    private func cutLayer(_ row: LayerRow, through lsn: LSN, generation: Int64) throws -> LayerRow {
        let reader = try LayerReader(path: layerPath(row), sealer: try frameSealer())
        var bytes = [UInt8](repeating: 0, count: LayerFormat.headerSize)
        reader.withFrames { frames in bytes.append(contentsOf: frames) }
        var entries: [LayerEntry] = []
        for i in 0..<reader.header.entryCount {
            let e = reader.entry(i)
            if e.lsn <= lsn { entries.append(e) }
        }
        let first = LSN(UInt64(row.firstLSN))
        let header = LayerHeader(groupID: reader.header.groupID, firstLSN: first, lastLSN: lsn, entryCount: entries.count,
                                 indexOffset: bytes.count, sealed: reader.header.sealed)
        LayerWriter.finish(&bytes, header: header, entries: entries)
        let file = layerFileName(first: first, last: lsn, generation: generation, tag: "cut")
        let tmp = incomingDirectory.appending(file)
        try writeFileAtomically(tmp, bytes, bypassingCache: true)
        do { try renameDurably(tmp, layersDirectory.appending(file)) } catch {
            unlink(tmp.string)
            throw error
        }
        return LayerRow(id: nil, firstLSN: row.firstLSN, lastLSN: Int64(lsn.rawValue), file: file, bytes: Int64(bytes.count), entries: Int64(entries.count))
    }
}
