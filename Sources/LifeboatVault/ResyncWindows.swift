import Foundation
import GRDB
import LifeboatCore
import LifeboatJournal

/// A stretch of the LSN space where the vault's content is not a state the disks were ever in
/// (decision 0010, "Spool limit"): a site past its spool limit dropped the unshipped records
/// after `gapAfter` up to `resumeAt` − 1, and resyncs the regions they wrote from its primaries
/// afterwards — in region order, not write order. Every LSN after `gapAfter` up to `endLSN`
/// (the marker that ends the resync; nil while it runs) is inside it: no point there, no
/// `lsn:N` read.
public struct ResyncWindow: Codable, FetchableRecord, MutablePersistableRecord, Sendable, Equatable {
    public static let databaseTableName = "resync"
    public var id: Int64?
    public var gapAfter: LSN
    public var resumeAt: LSN
    public var endLSN: LSN?
    public var openedAt: Date
    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    /// Whether the vault's state at `lsn` falls inside the window.
    public func contains(_ lsn: LSN) -> Bool {
        lsn > gapAfter && endLSN.map { lsn < $0 } ?? true
    }

    public var description: String {
        "the writes after LSN \(gapAfter) up to \(resumeAt.rawValue - 1) were dropped at the site and resynced "
            + (endLSN.map { "until LSN \($0)" } ?? "(resync still running)")
    }
}

extension Vault {
    /// The site dropped its unshipped records from the vault's held LSN up to `resumeAt` − 1
    /// and will send from `resumeAt` on, then resync what they wrote: the vault holds through
    /// `resumeAt` − 1 from now on (nothing to read there), and no point is made until the
    /// marker that ends the resync. Returns the LSN the vault holds through. Nothing missing
    /// (the vault holds those LSNs already): no window.
    public func openResync(resumingAt resumeAt: LSN, as writer: WriterClaim = .original) throws -> LSN {
        try withWriterLock {
            try catalog.read { db in try requireWriter(writer, db) }
            let (_, last) = try lsnRange()
            guard resumeAt.rawValue > 0, last < LSN(resumeAt.rawValue - 1) else { return last }
            guard try groupID() != nil else { throw LifeboatError(.invalidArgument, "the vault has no group yet (add its disks first)", path: root.string) }
            try catalog.write { db in
                var window = ResyncWindow(id: nil, gapAfter: last, resumeAt: resumeAt, endLSN: nil, openedAt: Date())
                try window.insert(db)
                try db.execute(sql: "UPDATE grp SET lastLSN = ?", arguments: [Int64(resumeAt.rawValue - 1)])
            }
            return LSN(resumeAt.rawValue - 1)
        }
    }

    /// Every resync window, oldest first.
    public func resyncWindows() throws -> [ResyncWindow] {
        try catalog.read { db in try ResyncWindow.order(Column("gapAfter")).fetchAll(db) }
    }

    /// Refuses an LSN inside a resync window: its state is not one the disks were ever in.
    public func requireConsistent(_ lsn: LSN) throws {
        if let w = try resyncWindows().first(where: { $0.contains(lsn) }) {
            throw LifeboatError(.notFound, "LSN \(lsn) is not a consistent state: \(w.description)", path: root.string)
        }
    }
}
