import Foundation
import GRDB
import LifeboatCore
import LifeboatJournal

#if canImport(Glibc)
import Glibc
#endif

/// The vault catalog (`VAULT/catalog.sqlite`, SQLite through GRDB): what the vault holds.
/// Block data never goes in here — only one row per layer, point and disk (the per-block index
/// lives in each layer's footer; Docs/formats/vault.md).
struct Catalog {
    static let formatVersion = 7
    let db: DatabaseQueue
    let path: String

    init(path: String) throws {
        var config = Configuration()
        config.busyMode = .timeout(10)
        do { db = try DatabaseQueue(path: path, configuration: config) } catch {
            throw Self.error(error, "cannot open the vault catalog", path: path)
        }
        self.path = path
        chmod(path, mode_t(PrivateFiles.fileMode.rawValue))  // SQLite creates it 0644 & ~umask
        try checkVersion(path: path)
        var migrator = DatabaseMigrator()
        // Forward-only, named migrations; a vault written by a newer lifeboat is refused above.
        migrator.registerMigration("v1") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.execute(sql: "INSERT INTO meta(key, value) VALUES ('formatVersion', '1')")
            try db.create(table: "grp") { t in
                t.primaryKey("id", .text)
                t.column("baseLSN", .integer).notNull()
                t.column("lastLSN", .integer).notNull()
                t.column("createdAt", .datetime).notNull()
            }
            try db.create(table: "disk") { t in
                t.column("diskID", .integer).notNull().primaryKey()
                t.column("name", .text).notNull().unique()
                t.column("sizeBytes", .integer).notNull()
            }
            try db.create(table: "layer") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("firstLSN", .integer).notNull().unique()
                t.column("lastLSN", .integer).notNull()
                t.column("file", .text).notNull()
                t.column("bytes", .integer).notNull()
                t.column("entries", .integer).notNull()
            }
            try db.create(table: "point") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("lsn", .integer).notNull().indexed()
                t.column("kind", .text).notNull()
                t.column("time", .datetime).notNull()
                t.column("label", .text).notNull()
                t.column("digests", .text).notNull()
            }
        }
        // v2: drill results kept with their points, and the journal's flush boundaries (what a
        // crash-point exploration replays to).
        migrator.registerMigration("v2") { db in
            try db.create(table: "drill") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("pointID", .integer).indexed()
                t.column("lsn", .integer).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("finishedAt", .datetime).notNull()
                t.column("result", .text).notNull()
                t.column("plan", .text).notNull()
                t.column("report", .text).notNull()
            }
            try db.create(table: "flush") { t in
                t.primaryKey("lsn", .integer)
            }
            try db.execute(sql: "UPDATE meta SET value = '2' WHERE key = 'formatVersion'")
        }
        // v3: every base has block checksums (bases/DISKID.sums, BaseChecksums). The catalog does
        // not change; the version keeps older lifeboats, which would prune without updating
        // them, away. Vault.init computes them for bases made before.
        migrator.registerMigration("v3") { db in
            try db.execute(sql: "UPDATE meta SET value = '3' WHERE key = 'formatVersion'")
        }
        // v4: a point can carry a note beside the user's label: why a checkpoint that asked
        // for app-consistency got a crash-consistent point.
        migrator.registerMigration("v4") { db in
            try db.alter(table: "point") { t in t.add(column: "note", .text) }
            try db.execute(sql: "UPDATE meta SET value = '4' WHERE key = 'formatVersion'")
        }
        // v5: resync windows — LSNs whose writes the vault never got (a site past its spool
        // limit dropped them and resyncs their regions), and where the resync ended.
        migrator.registerMigration("v5") { db in
            try db.create(table: "resync") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("gapAfter", .integer).notNull()
                t.column("resumeAt", .integer).notNull()
                t.column("endLSN", .integer)
                t.column("openedAt", .datetime).notNull()
            }
            try db.execute(sql: "UPDATE meta SET value = '5' WHERE key = 'formatVersion'")
        }
        // v6: encryption at rest — meta `keyID` names the key a group's data is sealed with
        // (layers of version 2, bases/DISKID.seal). The version alone changes: an older lifeboat
        // would read an encrypted base as if it were the disk.
        migrator.registerMigration("v6") { db in
            try db.execute(sql: "UPDATE meta SET value = '6' WHERE key = 'formatVersion'")
        }
        // v7: generations (decision 0012) — who may write the group's history, from which fork
        // LSN on, in which failover state; and the layers a failover set aside (an older
        // generation's records past its fork). Layers of a generation past the first carry it in
        // their file names. Existing groups are in generation 1, written by their own site.
        migrator.registerMigration("v7") { db in
            try db.create(table: "generation") { t in
                t.primaryKey("number", .integer)
                t.column("owner", .text).notNull()
                t.column("ownerName", .text).notNull()
                t.column("forkLSN", .integer).notNull()
                t.column("state", .text).notNull()
                t.column("startedAt", .datetime).notNull()
                t.column("pointID", .integer)
                t.column("plannedAt", .datetime)
                t.column("drainedLSN", .integer)
            }
            try db.execute(sql: "INSERT INTO generation(number, owner, ownerName, forkLSN, state, startedAt) VALUES (1, '', 'its own site', 0, 'protected', ?)",
                           arguments: [Date()])
            try db.create(table: "forsakenLayer") { t in
                t.column("generation", .integer).notNull()
                t.column("after", .integer).notNull()
                t.column("firstLSN", .integer).notNull()
                t.column("lastLSN", .integer).notNull()
                t.column("file", .text).notNull()
                t.column("bytes", .integer).notNull()
            }
            try db.execute(sql: "UPDATE meta SET value = '7' WHERE key = 'formatVersion'")
        }
        do { try migrator.migrate(db) } catch {
            throw Self.error(error, "cannot migrate the vault catalog", path: path)
        }
    }

    /// Every read and write of the catalog: a SQLite failure becomes a LifeboatError whose code
    /// says what it means for the user (damage, permission, busy), never a raw GRDB error.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try db.read(body) } catch { throw Self.error(error, "cannot read the vault catalog", path: path) }
    }

    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try db.write(body) } catch { throw Self.error(error, "cannot write the vault catalog", path: path) }
    }

    /// SQLite result codes (https://sqlite.org/rescode.html) as Lifeboat error codes.
    static func error(_ error: any Error, _ what: String, path: String) -> LifeboatError {
        if error is RowDecodingError || error is DecodingError {
            // A row the records cannot decode (a point kind that is none of ours, say) is damage.
            return LifeboatError(.corrupt, "\(what): a row does not decode", path: path, cause: error)
        }
        guard let e = error as? DatabaseError else { return LifeboatError.wrapping(error, what, path: path) }
        let code: LifeboatError.Code
        switch e.resultCode {
        case .SQLITE_CORRUPT, .SQLITE_NOTADB, .SQLITE_SCHEMA: code = .corrupt
        case .SQLITE_ERROR where (e.message ?? "").hasPrefix("no such"): code = .corrupt  // a table or column of the format is gone
        case .SQLITE_PERM, .SQLITE_READONLY, .SQLITE_AUTH: code = .permission
        case .SQLITE_CANTOPEN: code = access(path, R_OK | W_OK) != 0 && errno == EACCES ? .permission : .io
        case .SQLITE_BUSY, .SQLITE_LOCKED: code = .busy
        default: code = .io
        }
        return LifeboatError(code, "\(what): \(e.message ?? "SQLite error \(e.resultCode.rawValue)")", path: path)
    }

    private func checkVersion(path: String) throws {
        let version: String? = try? db.read { db in
            guard try db.tableExists("meta") else { return nil }
            return try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'formatVersion'")
        }
        if let version, let v = Int(version), v > Self.formatVersion {
            throw LifeboatError(.unsupported, "vault format version \(v) is newer than this lifeboat's (\(Self.formatVersion))", path: path)
        }
    }
}

struct GroupRow: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "grp"
    var id: String
    var baseLSN: Int64
    var lastLSN: Int64
    var createdAt: Date
}

public struct VaultDisk: Codable, FetchableRecord, PersistableRecord, Sendable {
    public static let databaseTableName = "disk"
    public var diskID: Int64
    public var name: String
    public var sizeBytes: Int64
    public var id: DiskID { DiskID(UInt32(diskID)) }
    public var blockCount: Int { Int(sizeBytes >> Int64(BlockSize.shift)) }
}

struct LayerRow: Codable, FetchableRecord, MutablePersistableRecord {
    static let databaseTableName = "layer"
    var id: Int64?
    var firstLSN: Int64
    var lastLSN: Int64
    var file: String
    var bytes: Int64
    var entries: Int64
    mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

/// A recovery point: a cut of every disk of the group at one LSN.
public struct RecoveryPoint: Codable, FetchableRecord, MutablePersistableRecord, Sendable {
    public static let databaseTableName = "point"
    public var id: Int64?
    public var lsn: LSN
    public var kind: PointKind
    public var time: Date
    public var label: String
    /// JSON object: disk id → digest root (32 hex digits).
    public var digests: String
    /// What the tool adds about the point (never the user's label): e.g. why it is not
    /// app-consistent although that was asked for.
    public var note: String?
    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }

    /// The digests by disk. A value that does not decode is vault damage, never "no digests":
    /// a drill would otherwise pass without comparing anything.
    public func digestMap() throws -> [DiskID: Hash128] {
        do { return try Self.decodeDigests(digests) } catch var e as LifeboatError {
            e.message = "point \(id ?? 0): " + e.message
            throw e
        }
    }

    /// The catalog's encoding of a point's digests: a JSON object, decimal disk id → 32 hex digits.
    public static func decodeDigests(_ text: String) throws -> [DiskID: Hash128] {
        let damaged = LifeboatError(.corrupt, "the catalog's digests value is not a JSON object of disk id → 32 hex digits: \(text.prefix(80))")
        guard let raw = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else { throw damaged }
        var out: [DiskID: Hash128] = [:]
        for (k, v) in raw {
            guard let d = UInt32(k), let h = Hash128(hex: v) else { throw damaged }
            out[DiskID(d)] = h
        }
        return out
    }
}

/// An LSN in the catalog is an INTEGER column. A negative value is damage: it does not decode.
extension LSN: DatabaseValueConvertible {
    public var databaseValue: DatabaseValue { Int64(rawValue).databaseValue }
    public static func fromDatabaseValue(_ value: DatabaseValue) -> LSN? {
        Int64.fromDatabaseValue(value).flatMap { $0 >= 0 ? LSN(UInt64($0)) : nil }
    }
}
