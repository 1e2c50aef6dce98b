import Foundation
import LifeboatCore
import SystemPackage

/// `vault verify`: the catalog against the files, every layer end to end (header, index order
/// and checksum, every zstd frame with its checksum), the LSN chain, the bases' sizes, and
/// every base block against its checksum (a scrub).
public enum VaultVerifier {
    public struct Problem: Sendable, CustomStringConvertible {
        public var error: LifeboatError
        public var description: String { error.description }
    }

    public struct Report: Sendable {
        public var layers = 0
        public var bases = 0
        public var points = 0
        public var bytes: Int64 = 0
        public var problems: [Problem] = []

        /// A file that could not be read for lack of permission is not damage: the whole
        /// verification stops with that error (exit 77), it never reports DAMAGED.
        mutating func add(_ error: LifeboatError) throws {
            guard error.code != .permission else { throw error }
            problems.append(Problem(error: error))
        }
    }

    /// `progress` gets (bytes checked, bytes to check): layers, then bases.
    public static func verify(_ vault: Vault, progress: (Int64, Int64) -> Void = { _, _ in }) throws -> Report {
        var report = Report()
        try vault.checkDataKey()
        // One consistent view, taken under the writer lock for an instant (a catalog read and an
        // open of each layer): the range, the layers — mapped, so that a compaction that merges
        // and deletes them meanwhile does not pull them from under the check — the points and
        // a pending prune. `vault serve` goes on ingesting, compacting and pruning during the
        // long part, reading every byte; what arrived after the view is not checked this time.
        let (base, last, layers, points, prunePending, disks, windows) = try vault.withWriterLock {
            let (base, last) = try vault.lsnRange()
            let rows = try vault.layerRows(upTo: last)
            let sealer = rows.isEmpty ? nil : try vault.frameSealer()
            let layers = rows.reversed().map { row in (row, Result { try LayerReader(path: vault.layerPath(row), sealer: sealer) }) }
            return (base, last, layers, try vault.points(), try vault.pendingPruneTarget(), try vault.disks(), try vault.resyncWindows())
        }
        // The LSNs a site dropped (resync windows) are held without a layer: the chain jumps them.
        let jumps = Dictionary(windows.map { ($0.gapAfter.next, $0.resumeAt) }, uniquingKeysWith: max)
        let total = layers.reduce(Int64(0)) { $0 + $1.0.bytes } + disks.reduce(Int64(0)) { $0 + $1.sizeBytes }
        var done: Int64 = 0
        var expected = base.next
        for (row, opened) in layers {
            report.layers += 1
            report.bytes += row.bytes
            let path = vault.layerPath(row)
            while let resume = jumps[expected], LSN(UInt64(row.firstLSN)) >= resume { expected = resume }
            if LSN(UInt64(row.firstLSN)) != expected {
                report.problems.append(Problem(error: LifeboatError(.corrupt, "LSN gap: layer starts at \(row.firstLSN), \(expected) expected", path: path.string)))
            }
            expected = LSN(UInt64(row.lastLSN)).next
            do {
                let layer = try opened.get()
                if layer.header.firstLSN.rawValue != UInt64(row.firstLSN) || layer.header.lastLSN.rawValue != UInt64(row.lastLSN) {
                    throw LifeboatError(.corrupt, "layer header says LSNs \(layer.header.firstLSN)…\(layer.header.lastLSN), the catalog \(row.firstLSN)…\(row.lastLSN)", path: path.string, offset: 32)
                }
                try layer.verifyAll()
            } catch let e as LifeboatError {
                try report.add(e)
            }
            done += row.bytes
            progress(done, total)
        }
        if let target = prunePending {
            report.problems.append(Problem(error: LifeboatError(.io, "a prune to LSN \(target) was interrupted and its bases are half merged (not scrubbed); `lifeboat vault prune` finishes it", path: vault.root.string)))
        }
        for disk in disks {
            let path = vault.basePath(disk.id)
            let size = (try? FileManager.default.attributesOfItem(atPath: path.string)[.size] as? Int64) ?? nil
            if size != disk.sizeBytes {
                report.problems.append(Problem(error: LifeboatError(.corrupt, "base of disk '\(disk.name)' is \(size.map(String.init) ?? "missing"), \(disk.sizeBytes) bytes expected", path: path.string)))
                continue
            }
            guard prunePending == nil else { continue }
            report.bases += 1
            do {
                // A prune may be merging into the base as it is read: a mismatch is damage only
                // if it is still there with the writers held off.
                if try vault.verifyBase(disk) != nil, let damage = try vault.withWriterLock({ try vault.verifyBase(disk) }) {
                    report.problems.append(Problem(error: damage))
                }
            } catch let e as LifeboatError {
                try report.add(e)
            }
            done += disk.sizeBytes
            progress(done, total)
        }
        for p in points {
            report.points += 1
            if p.lsn < base || p.lsn > last {
                report.problems.append(Problem(error: LifeboatError(.corrupt, "point \(p.id ?? 0) at LSN \(p.lsn) is outside \(base)…\(last)", path: vault.root.string)))
            } else if let w = windows.first(where: { $0.contains(p.lsn) }) {
                report.problems.append(Problem(error: LifeboatError(.corrupt, "point \(p.id ?? 0) at LSN \(p.lsn) is inside a resync window: \(w.description)", path: vault.root.string)))
            }
        }
        return report
    }
}
