import Foundation
import GRDB
import LifeboatCore
import LifeboatJournal
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The replica store of one protection group (Docs/formats/vault.md):
///
/// ```
/// VAULT/catalog.sqlite          group, disks, layers, points (Catalog)
/// VAULT/bases/DISKID.img        each disk's content at the group's base LSN (sparse raw)
/// VAULT/bases/DISKID.sums       a CRC-32C per block of that base (BaseChecksums)
/// VAULT/layers/FIRST-LAST.layer one per ingested journal segment (LayerFormat)
/// VAULT/incoming/               layers being written
/// ```
public final class Vault: @unchecked Sendable {
    public let root: FilePath
    let catalog: Catalog
    /// How the group's data is kept at rest: plain, or encrypted with a key this process holds
    /// or lacks (`VaultAtRest`).
    public let atRest: VaultAtRest

    var basesDirectory: FilePath { root.appending("bases") }
    var layersDirectory: FilePath { root.appending("layers") }
    var incomingDirectory: FilePath { root.appending("incoming") }
    func basePath(_ disk: DiskID) -> FilePath { basesDirectory.appending("\(disk.rawValue).img") }

    /// Opens the vault at `root`, creating it when `create` is set and there is none. With
    /// `key` and `create` (its writer), a group that holds no disk yet is made encrypted with it
    /// (for good); a group
    /// encrypted with another key is refused; a plain group stays plain (the caller decides
    /// whether that is acceptable). An encrypted group opened without its key lists its points
    /// but refuses to read or write data.
    public init(root: FilePath, create: Bool = false, key: VaultKey? = nil) throws {
        self.root = root
        let catalogPath = root.appending("catalog.sqlite").string
        var st = stat()
        if stat(catalogPath, &st) != 0 {
            let e = Errno(rawValue: errno)
            guard e == .noSuchFileOrDirectory || e == .notDirectory else { throw LifeboatError.system(e, "cannot open the vault", path: root.string) }
            guard create else { throw LifeboatError(.notFound, "no vault here", path: root.string) }
            for dir in ["", "bases", "layers", "incoming"] { try PrivateFiles.makeDirectory(root.appending(dir)) }
        }
        PrivateFiles.tighten(root)
        catalog = try Catalog(path: catalogPath)
        atRest = try VaultAtRest.settle(catalog, key: key, adopt: create, root: root)
        try createMissingBaseChecksums()
    }

    /// Removes what an interrupted ingest left in `incoming/`. Only the vault's single writer
    /// (the shipper) calls this, once, before its first ingest: readers open the vault freely
    /// while an ingest is writing there.
    public func removeStaleIncoming() {
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: incomingDirectory.string)) ?? [] {
            try? fm.removeItem(atPath: incomingDirectory.appending(name).string)
        }
    }

    // MARK: Group and disks

    /// The group this vault replicates, if one was registered.
    public func groupID() throws -> String? {
        try catalog.read { db in try GroupRow.fetchOne(db)?.id }
    }

    /// Makes this vault `group`'s (a vault holds one protection group): registers it when the
    /// vault has none yet, refuses when it has another, naming both.
    public func claim(group: String) throws {
        try withWriterLock {
            try catalog.write { db in
                if let existing = try GroupRow.fetchOne(db) {
                    guard existing.id == group else { throw Vault.belongsToAnotherGroup(existing.id, not: group, root: root) }
                    return
                }
                try GroupRow(id: group, baseLSN: 0, lastLSN: 0, createdAt: Date()).insert(db)
            }
        }
    }

    /// The refusal of a vault that belongs to another protection group, naming both.
    public static func belongsToAnotherGroup(_ existing: String, not group: String, root: FilePath) -> LifeboatError {
        LifeboatError(.alreadyExists, "the vault belongs to protection group \(existing); this site is group \(group) "
                      + "(a vault holds one protection group: give this site a vault of its own)", path: root.string)
    }

    public func disks() throws -> [VaultDisk] {
        try catalog.read { db in try VaultDisk.order(Column("diskID")).fetchAll(db) }
    }

    public func disk(named name: String) throws -> VaultDisk {
        guard let d = try disks().first(where: { $0.name == name }) else {
            let known = try disks().map(\.name).joined(separator: ", ")
            throw LifeboatError(.notFound, "the vault has no disk '\(name)' (it has: \(known.isEmpty ? "none" : known))", path: root.string)
        }
        return d
    }

    /// The LSN range the vault can present: [base, last].
    /// Below `base` nothing can be read: merged into the bases, or being merged (a prune's
    /// committed target).
    public func lsnRange() throws -> (base: LSN, last: LSN) {
        try catalog.read { db in try Self.lsnRange(db) }
    }

    /// `lsnRange()` inside a read the caller holds.
    static func lsnRange(_ db: Database) throws -> (base: LSN, last: LSN) {
        guard let g = try GroupRow.fetchOne(db) else { return (.zero, .zero) }
        let target = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'pruneTarget'").flatMap { UInt64($0) } ?? 0
        return (LSN(max(UInt64(g.baseLSN), target)), LSN(UInt64(g.lastLSN)))
    }

    /// The LSN an interrupted prune committed to merge the bases up to, if one has not finished.
    public func pendingPruneTarget() throws -> LSN? {
        let value: String? = try catalog.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'pruneTarget'") }
        return value.flatMap { UInt64($0) }.map { LSN($0) }
    }

    /// Registers the group (first call) and adds a disk whose content before any journaled
    /// write is the raw image `initialContent` (its base): the initial replication. `progress`
    /// is called with bytes copied so far.
    public func addDisk(group: String, id: DiskID, name: String, sizeBytes: Int64, initialContent: FilePath,
                        progress: (Int64) -> Void = { _ in }) throws {
        if let existing = try groupID(), existing != group { throw Vault.belongsToAnotherGroup(existing, not: group, root: root) }
        if let d = try disks().first(where: { $0.id == id }) {
            guard d.name == name, d.sizeBytes == sizeBytes else {
                throw LifeboatError(.alreadyExists, "the vault has disk id \(id) as '\(d.name)' (\(d.sizeBytes) bytes)", path: root.string)
            }
            return  // already seeded
        }
        let tmp = incomingDirectory.appending("\(id.rawValue).img.tmp")
        let sumsTmp = incomingDirectory.appending("\(id.rawValue).sums.tmp")
        let sealTmp = incomingDirectory.appending("\(id.rawValue).seal.tmp")
        defer { unlink(tmp.string); unlink(sumsTmp.string); unlink(sealTmp.string) }  // gone once renamed; on failure, the space comes back
        if let key = try atRest.key(root: root) {
            try BaseSeals.create(at: sealTmp, blocks: Int(sizeBytes >> Int64(BlockSize.shift)))
            try BaseSeals(path: sealTmp, blocks: Int(sizeBytes >> Int64(BlockSize.shift)), writable: true, key: key, groupID: Hex.bytes(group), disk: id)
                .copySealing(from: initialContent, to: tmp, sizeBytes: sizeBytes, progress: progress)
        } else {
            try SparseImage.copy(from: initialContent, to: tmp, sizeBytes: sizeBytes, progress: progress)
        }
        // The checksums land first: a base is never there without them.
        do {
            let base = try FileDescriptor.open(tmp, .readOnly, options: [.closeOnExec])
            defer { try? base.close() }
            try BaseChecksums.create(forBase: base, blocks: Int(sizeBytes >> Int64(BlockSize.shift)), at: sumsTmp)
        } catch let e as Errno {
            throw LifeboatError.system(e, "cannot read the new base", path: tmp.string)
        }
        try renameDurably(sumsTmp, baseChecksumsPath(id))
        if atRest.isEncrypted { try renameDurably(sealTmp, baseSealsPath(id)) }
        try renameDurably(tmp, basePath(id))
        try catalog.write { db in
            if try GroupRow.fetchOne(db) == nil {
                try GroupRow(id: group, baseLSN: 0, lastLSN: 0, createdAt: Date()).insert(db)
            }
            try VaultDisk(diskID: Int64(id.rawValue), name: name, sizeBytes: sizeBytes).insert(db)
        }
    }

    // MARK: Ingest

    public enum IngestOutcome: Equatable, Sendable {
        case ingested(layerBytes: Int, points: Int)
        /// The vault already holds this segment (a retry after a lost acknowledgement).
        case alreadyHeld
    }

    /// Ingests one sealed journal segment, compressed with zstd as the shipper sends it. The
    /// segment is checked end to end before anything is written; the vault holds it durably
    /// when this returns (layer fsynced and renamed, catalog committed).
    public func ingest(compressedSegment: [UInt8], name: String, as writer: WriterClaim = .original) throws -> IngestOutcome {
        try ingest(segment: try Self.decompress(compressedSegment, what: "shipped segment", name: name), name: name, as: writer)
    }

    /// A run of records (`ingest(records:firstLSN:name:)`) as the wire carries it, zstd-compressed.
    public func ingest(compressedRecords: [UInt8], firstLSN: LSN, name: String, as writer: WriterClaim = .original) throws -> IngestOutcome {
        try ingest(records: try Self.decompress(compressedRecords, what: "the run of records from LSN \(firstLSN)", name: name), firstLSN: firstLSN, name: name, as: writer)
    }

    private static func decompress(_ bytes: [UInt8], what: String, name: String) throws -> [UInt8] {
        do { return try bytes.withUnsafeBytes { try Zstd.decompress($0, maxSize: 1 << 31) } } catch let e as LifeboatError {
            throw LifeboatError(.corrupt, "\(what) does not decompress: \(e.message)", path: name)
        }
    }

    /// `writer`: who sends it; refused (fenced) unless the owner of the current generation.
    public func ingest(segment raw: [UInt8], name: String, as writer: WriterClaim = .original) throws -> IngestOutcome {
        try withWriterLock { try ingestLocked(segment: raw, name: name, as: writer) }
    }

    private func ingestLocked(segment raw: [UInt8], name: String, as writer: WriterClaim) throws -> IngestOutcome {
        let scan = try SegmentReader.scan(raw, path: FilePath(name))
        if case .tornTail(let offset, _, let reason, _) = scan.end {
            throw LifeboatError(.corrupt, "\(reason) in a shipped segment", path: name, offset: Int64(offset))
        }
        guard scan.end == .sealed else {
            throw LifeboatError(.corrupt, "segment is not sealed: only sealed segments are shipped", path: name, offset: Int64(scan.validEnd))
        }
        guard let group = try groupID() else { throw LifeboatError(.invalidArgument, "the vault has no group yet (add its disks first)", path: root.string) }
        guard scan.header.groupID == Hex.bytes(group) else {
            throw LifeboatError(.invalidArgument, "segment belongs to another protection group", path: name, offset: 16)
        }
        return try ingestLocked(scan: scan, raw: raw, name: name, what: "segment", as: writer)
    }

    /// Ingests a run of journal records as they lie in a segment, from `firstLSN` on: what
    /// streaming sends as records become durable at the site (decision 0010, "Streaming"). Whole
    /// records with consecutive LSNs, each checked by its own checksums; it may end with the
    /// segment's seal record. Records the vault holds already are dropped (a resend after a lost
    /// answer), so nothing goes twice into a layer or a point; a gap is refused naming both LSNs.
    /// Durable when this returns, like a segment's ingest.
    public func ingest(records raw: [UInt8], firstLSN: LSN, name: String, as writer: WriterClaim = .original) throws -> IngestOutcome {
        try withWriterLock {
            guard let group = try groupID() else { throw LifeboatError(.invalidArgument, "the vault has no group yet (add its disks first)", path: root.string) }
            // The run read as the segment it comes from would be: a header naming this group and
            // its first LSN, then the records. Offsets in errors are the run's own.
            let header = SegmentHeader(groupID: Hex.bytes(group), firstLSN: firstLSN, createdNanos: 0).encoded()
            let segment = header + raw
            let scan = try SegmentReader.scan(segment, path: FilePath(name))
            let headerBytes = Int64(header.count)
            if case .tornTail(let offset, _, let reason, _) = scan.end {
                throw LifeboatError(.corrupt, "\(reason) in a streamed run of records from LSN \(firstLSN)", path: name, offset: Int64(offset) - headerBytes)
            }
            guard scan.validEnd == segment.count else {
                throw LifeboatError(.corrupt, "a streamed run of records from LSN \(firstLSN) ends inside a record", path: name, offset: Int64(scan.validEnd) - headerBytes)
            }
            return try ingestLocked(scan: scan, raw: segment, name: name, what: "run of records", as: writer)
        }
    }

    /// Writer lock held, `scan` checked: drops the records the vault holds, builds the layer of
    /// the rest, commits it with its points.
    private func ingestLocked(scan whole: SegmentScan, raw: [UInt8], name: String, what: String, as writer: WriterClaim) throws -> IngestOutcome {
        // The writer first: a fenced host's records are refused even when the vault holds them.
        let generation = try catalog.read { db in
            try requireWriter(writer, db)
            return try Self.currentGeneration(db).number
        }
        let (_, last) = try lsnRange()
        if whole.lastLSN <= last { return .alreadyHeld }
        guard whole.header.firstLSN <= last.next else {
            throw LifeboatError(.invalidArgument, "the vault holds LSNs up to \(last); this \(what) starts at \(whole.header.firstLSN)",
                                path: name, offset: what == "segment" ? 32 : nil)
        }
        var scan = whole
        scan.records.removeAll { $0.header.lsn <= last }
        scan.header.firstLSN = last.next
        let sealer = try frameSealer()
        let build = try raw.withUnsafeBytes { try LayerWriter.build(scan: scan, segment: $0, compressor: ZstdCompressor(), sealer: sealer) }
        let disks = Dictionary(uniqueKeysWithValues: try self.disks().map { ($0.id, $0) })
        for (disk, highest) in build.highestBlock {
            guard let d = disks[disk], Int(highest.rawValue) < d.blockCount else {
                throw LifeboatError(.invalidArgument, "segment writes disk \(disk) block \(highest), which the vault does not have", path: name)
            }
        }
        let file = layerFileName(first: scan.header.firstLSN, last: scan.lastLSN, generation: generation)
        let tmp = incomingDirectory.appending(file)
        // Past the page cache: nothing reads a new layer soon, and copying it into the cache was
        // a third of the ingest's CPU (Docs/benchmarks.md).
        try writeFileAtomically(tmp, build.bytes, bypassingCache: true)
        do { try renameDurably(tmp, layersDirectory.appending(file)) } catch {
            unlink(tmp.string)  // a full disk gets the space back; the segment stays at the source
            throw error
        }
        try catalog.write { db in
            var layer = LayerRow(id: nil, firstLSN: Int64(scan.header.firstLSN.rawValue), lastLSN: Int64(scan.lastLSN.rawValue), file: file,
                                 bytes: Int64(build.bytes.count), entries: Int64(build.header.entryCount))
            try layer.insert(db)
            try Self.publishPoints(build.markers, db)
            for lsn in build.flushes {
                try db.execute(sql: "INSERT OR IGNORE INTO flush(lsn) VALUES (?)", arguments: [Int64(lsn.rawValue)])
            }
            try db.execute(sql: "UPDATE grp SET lastLSN = ?", arguments: [Int64(scan.lastLSN.rawValue)])
        }
        return .ingested(layerBytes: build.bytes.count, points: build.markers.count)
    }

    /// The markers of an ingested run become points — except inside an open resync window,
    /// where the disks' state is not one they were ever in: those markers are not points. The
    /// marker that ends the resync closes the window and is its first point.
    private static func publishPoints(_ markers: [(lsn: LSN, marker: Marker)], _ db: Database) throws {
        var open = try ResyncWindow.filter(Column("endLSN") == nil).fetchAll(db)
        for (lsn, marker) in markers {
            var point = RecoveryPoint(marker: marker, lsn: lsn)
            if let first = open.first {
                guard marker.endsResync else { continue }
                try db.execute(sql: "UPDATE resync SET endLSN = ? WHERE endLSN IS NULL", arguments: [Int64(lsn.rawValue)])
                point.note = "the first point after a resync: the vault missed the writes after LSN \(first.gapAfter) and got their regions again"
                open = []
            }
            try point.insert(db)
        }
    }

    // MARK: Points

    /// Every point, oldest first. A row whose kind or digests do not decode is vault damage.
    public func points() throws -> [RecoveryPoint] {
        let points = try catalog.read { db in try RecoveryPoint.order(Column("lsn"), Column("id")).fetchAll(db) }
        for p in points { _ = try p.digestMap() }  // a kind that is none of ours did not decode
        return points
    }

    /// Keeps `note` with point `id` (a checkpoint's reason for not being app-consistent).
    public func annotate(point id: Int64, note: String) throws {
        try catalog.write { db in try db.execute(sql: "UPDATE point SET note = ? WHERE id = ?", arguments: [note, id]) }
    }

    /// How many layers hold data for LSNs up to `lsn` (what a point read searches).
    public func layerCount(upTo lsn: LSN) throws -> Int { try layerRows(upTo: lsn).count }

    func layerRows(upTo lsn: LSN) throws -> [LayerRow] {
        try catalog.read { db in
            try LayerRow.filter(Column("firstLSN") <= Int64(lsn.rawValue)).order(Column("firstLSN").desc).fetchAll(db)
        }
    }

    func layerPath(_ row: LayerRow) -> FilePath { layersDirectory.appending(row.file) }

    func renameDurably(_ from: FilePath, _ to: FilePath) throws {
        if let fault = FaultInjection.take(.rename, path: to) {
            throw LifeboatError.system(fault.errno, "cannot move into place", path: to.string)
        }
        guard rename(from.string, to.string) == 0 else {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot move into place", path: to.string)
        }
        try syncDirectory(to.removingLastComponent())
    }
}

extension RecoveryPoint {
    init(marker: Marker, lsn: LSN) {
        let kind = marker.pointKind
        let digests = Dictionary(uniqueKeysWithValues: marker.digests.map { (String($0.key.rawValue), $0.value.description) })
        let json = String(decoding: (try? JSONEncoder().encode(digests)) ?? Data("{}".utf8), as: UTF8.self)
        self.init(id: nil, lsn: lsn, kind: kind, time: Date(timeIntervalSince1970: Double(marker.timeNanos) / 1e9),
                  label: marker.label, digests: json, note: nil)
    }
}

func hex16(_ lsn: LSN) -> String { Hex.padded(lsn.rawValue) }
