import Foundation
import GRDB
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Tiered retention, like ASR's: every point younger than `keepAll`, then the newest point of
/// each `every` interval up to `window`; older points go. The newest point and the newest
/// app-consistent point are always kept, however old (a vault idle for longer than its window
/// still has a point to recover to), and so is any point in `pinned` (mounted, being drilled,
/// or the newest one a drill verified).
public struct RetentionPolicy: Codable, Equatable, Sendable {
    public var window: TimeInterval = 24 * 3600
    public var keepAll: TimeInterval = 2 * 3600
    public var every: TimeInterval = 3600
    public init(window: TimeInterval = 24 * 3600, keepAll: TimeInterval = 2 * 3600, every: TimeInterval = 3600) {
        self.window = window
        self.keepAll = keepAll
        self.every = every
    }

    /// The ids of the points to keep.
    public func retained(_ points: [RecoveryPoint], now: Date, pinned: Set<Int64> = []) -> Set<Int64> {
        var keep = Set<Int64>()
        var buckets = Set<Int64>()
        for p in points.sorted(by: { $0.lsn > $1.lsn }) {
            guard let id = p.id else { continue }
            let age = now.timeIntervalSince(p.time)
            if age <= keepAll {
                keep.insert(id)
            } else if age <= window, buckets.insert(Int64((p.time.timeIntervalSince1970 / every).rounded(.down))).inserted {
                keep.insert(id)
            }
        }
        if let app = points.filter({ $0.kind == .appConsistent }).max(by: { $0.lsn < $1.lsn })?.id { keep.insert(app) }
        if let newest = points.max(by: { $0.lsn < $1.lsn })?.id { keep.insert(newest) }
        return keep.union(pinned.intersection(Set(points.compactMap(\.id))))
    }
}

public struct PruneReport: Sendable {
    public var removedPoints: [Int64] = []
    public var mergedLayers = 0
    public var reclaimedBytes: Int64 = 0
    public var baseLSN = LSN.zero
    /// Points retention would have dropped but a running mount or drill holds.
    public var keptForMounts: [Int64] = []
}

extension Vault {
    public func retentionPolicy() throws -> RetentionPolicy {
        try catalog.read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'retention'") else { return RetentionPolicy() }
            do { return try JSONDecoder().decode(RetentionPolicy.self, from: Data(text.utf8)) } catch {
                // Never a silent default: pruning by a policy the user did not set deletes points.
                throw LifeboatError(.corrupt, "the stored retention policy does not decode: \(text.prefix(80))", path: catalog.path, cause: error)
            }
        }
    }

    public func setRetentionPolicy(_ policy: RetentionPolicy) throws {
        let text = String(decoding: try JSONEncoder().encode(policy), as: UTF8.self)
        try catalog.write { db in try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES ('retention', ?)", arguments: [text]) }
    }

    /// Applies retention: drops the points the policy does not keep, then merges every layer
    /// that lies wholly below the oldest kept point into the bases and deletes it.
    ///
    /// Crash safety: the target base LSN is committed (with the point deletions) before any
    /// base is written, so reads below it are refused from then on; the layers stay until the
    /// merge is durable and a second commit moves the base. A prune interrupted anywhere is
    /// finished by the next one (the merge is idempotent: newest version ≤ target, from layers
    /// that still exist). Reads at kept points are right throughout: they find every block
    /// written since the old base in a layer before they ever look at a base.
    /// With `dryRun`, reports what would go (points, layers, bytes) and changes nothing.
    public func prune(now: Date = Date(), policy: RetentionPolicy? = nil, pinned: Set<Int64> = [], dryRun: Bool = false) throws -> PruneReport {
        try withWriterLock {
            let policy = try policy ?? retentionPolicy()
            let points = try self.points()
            // Points being served (mounted, drilled) stay, and so does every layer they need.
            let pinnedLSNs = pinnedLSNs()
            let pinnedIDs = Set(points.filter { pinnedLSNs.contains($0.lsn) }.compactMap(\.id))
            // The newest point a drill proved stays: it is what the verified RPO stands on.
            let proven = try verifiedPoint().flatMap(\.point.id).map { Set([$0]) } ?? []
            let keep = policy.retained(points, now: now, pinned: pinned.union(pinnedIDs).union(proven))
            let removed = points.compactMap(\.id).filter { !keep.contains($0) }
            let (base, last) = try lsnRange()
            let oldestKept = (points.filter { keep.contains($0.id ?? -1) }.map(\.lsn) + pinnedLSNs).min() ?? last
            let mergeable = try layerRows(upTo: last).filter { LSN(UInt64($0.lastLSN)) <= oldestKept }.sorted { $0.firstLSN < $1.firstLSN }
            let target = max(base, mergeable.last.map { LSN(UInt64($0.lastLSN)) } ?? base)
            var report = PruneReport(removedPoints: removed, baseLSN: target)
            report.keptForMounts = pinnedIDs.filter { !policy.retained(points, now: now).contains($0) }.sorted()
            if removed.isEmpty && mergeable.isEmpty { return report }
            if dryRun {
                report.mergedLayers = mergeable.count
                report.reclaimedBytes = mergeable.reduce(0) { $0 + $1.bytes }
                return report
            }

            try catalog.write { db in
                for id in removed { _ = try RecoveryPoint.deleteOne(db, key: id) }
                try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES ('pruneTarget', ?)", arguments: [String(target.rawValue)])
            }
            try mergeIntoBases(mergeable)
            try catalog.write { db in
                for row in mergeable { _ = try LayerRow.deleteOne(db, key: row.id) }
                try db.execute(sql: "UPDATE grp SET baseLSN = ?", arguments: [Int64(target.rawValue)])
                try db.execute(sql: "DELETE FROM flush WHERE lsn <= ?", arguments: [Int64(target.rawValue)])
                try db.execute(sql: "DELETE FROM meta WHERE key = 'pruneTarget'")
            }
            for row in mergeable {
                unlink(layerPath(row).string)
                report.reclaimedBytes += row.bytes
            }
            try? syncDirectory(layersDirectory)
            report.mergedLayers = mergeable.count
            return report
        }
    }

    /// Writes into each base the newest version of every block the layers hold (oldest layer
    /// first, so later versions win) and its checksum, then syncs the bases and checksums.
    /// Interrupted, the bases and checksums may disagree on merged blocks; no reader reads
    /// those from the base until the next prune has merged them again (they are in layers that
    /// every readable point still reads from).
    private func mergeIntoBases(_ layers: [LayerRow]) throws {
        var bases: [DiskID: FileDescriptor] = [:]
        var sums: [DiskID: BaseChecksums] = [:]
        var seals: [DiskID: BaseSeals] = [:]
        defer { bases.values.forEach { try? $0.close() } }
        for d in try disks() {
            bases[d.id] = try FileDescriptor.open(basePath(d.id), .writeOnly)
            sums[d.id] = try BaseChecksums(path: baseChecksumsPath(d.id), blocks: d.blockCount, writable: true)
            seals[d.id] = try baseSeals(d, writable: true)
        }
        let decompressor = ZstdDecompressor()
        var scratch: [UInt8] = []
        var block = [UInt8](repeating: 0, count: BlockSize.bytes)
        for layer in try openLayers(layers) {
            for i in 0..<layer.header.entryCount {
                let e = layer.entry(i)
                // Entries are sorted by (disk, block, LSN): only the last of a run matters.
                if i + 1 < layer.header.entryCount {
                    let next = layer.entry(i + 1)
                    if next.disk == e.disk && next.block == e.block { continue }
                }
                guard let fd = bases[e.disk] else { throw LifeboatError(.corrupt, "layer writes disk \(e.disk), which the vault does not have", path: layer.path.string) }
                try block.withUnsafeMutableBytes { try layer.readBlock(e, into: $0, scratch: &scratch, decompressor: decompressor) }
                // In an encrypted vault the base holds the version's ciphertext, named by its LSN.
                if let s = seals[e.disk] { try block.withUnsafeMutableBytes { try s.seal(block: Int(e.block.rawValue), lsn: e.lsn, $0) } }
                do {
                    try FaultInjection.check(.write, path: basePath(e.disk))
                    _ = try fd.writeAll(toAbsoluteOffset: e.block.byteOffset.rawValue, block)
                } catch {
                    throw LifeboatError.wrapping(error, "cannot merge into the base", path: basePath(e.disk).string, offset: e.block.byteOffset.rawValue)
                }
                block.withUnsafeBytes { sums[e.disk]?.record(Int(e.block.rawValue), $0) }
            }
        }
        for s in sums.values { try s.sync() }
        for s in seals.values { try s.sync() }
        for (disk, fd) in bases {
            do {
                try FaultInjection.check(.sync, path: basePath(disk))
                try fd.fullSync()
            } catch {
                throw LifeboatError.wrapping(error, "cannot sync the base", path: basePath(disk).string)
            }
        }
    }

    /// One writer at a time (the shipper's ingest, a prune from protect or from the CLI):
    /// an open-file-description lock on VAULT/lock, waited for.
    func withWriterLock<T>(_ body: () throws -> T) throws -> T {
        let path = root.appending("lock")
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readWrite, options: [.create, .closeOnExec], permissions: [.ownerReadWrite]) } catch {
            throw LifeboatError.wrapping(error, "cannot open the vault lock", path: path.string)
        }
        defer { try? fd.close() }
        do { try fd.lockExclusiveWaiting() } catch {
            throw LifeboatError.wrapping(error, "cannot lock the vault", path: path.string)
        }
        return try body()
    }
}

/// Pins: a running `lifeboat mount` (or drill) keeps its LSN readable. One file per process,
/// `VAULT/pins/PID-LSN`; pins of processes that no longer exist are ignored.
extension Vault {
    public struct Pin: Sendable { public let path: String }

    public func pin(lsn: LSN) throws -> Pin {
        let dir = root.appending("pins").string
        try PrivateFiles.makeDirectory(FilePath(dir))
        let path = dir + "/\(getpid())-\(lsn.rawValue)"
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw LifeboatError(.io, "cannot pin the point", path: path)
        }
        return Pin(path: path)
    }

    public func unpin(_ pin: Pin) { unlink(pin.path) }

    /// The LSNs live processes pin. A pin whose process is gone (a `kill -9` of a mount) is
    /// removed on the way, so that a later process with the same PID cannot revive it.
    func pinnedLSNs() -> [LSN] {
        let dir = root.appending("pins").string
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.compactMap { name in
            let parts = name.split(separator: "-")
            guard parts.count == 2, let pid = Int32(parts[0]), let lsn = UInt64(parts[1]) else { return nil }
            guard kill(pid, 0) == 0 || errno == EPERM else {
                unlink(dir + "/" + name)
                return nil
            }
            return LSN(lsn)
        }
    }
}
