import Foundation
import GRDB
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Tiered compaction (LSM): whenever `fanIn` consecutive layers sit at the same size tier, they
/// are merged into one layer holding every version of every block (frames copied as they are,
/// indexes merged), so a point read searches O(log N) layers instead of one per shipped segment.
/// Tier t holds layers of up to 8^t × 1 MiB. Retention later merges whole old layers into the
/// bases; compaction never drops a version.
extension Vault {
    public static let compactionFanIn = 8

    static func tier(of bytes: Int64) -> Int {
        var t = 0
        var limit: Int64 = 1 << 20
        while bytes > limit && t < 12 {
            limit *= Int64(compactionFanIn)
            t += 1
        }
        return t
    }

    /// Merges runs of same-tier layers until none is left; returns how many merges it did.
    @discardableResult
    /// `beforeCommit` runs after a merged layer is written and before it is committed: the
    /// seam through which a test lets a prune race the merge.
    public func compact(beforeCommit: () throws -> Void = {}) throws -> Int {
        var merges = 0
        while let run = try nextRun() {
            guard try merge(run, beforeCommit: beforeCommit) else { break }
            merges += 1
        }
        return merges
    }

    private func nextRun() throws -> [LayerRow]? {
        let layers = try catalog.read { db in try LayerRow.order(Column("firstLSN")).fetchAll(db) }
        var start = 0
        while start < layers.count {
            let t = Self.tier(of: layers[start].bytes)
            var end = start
            while end < layers.count && Self.tier(of: layers[end].bytes) == t { end += 1 }
            if end - start >= Self.compactionFanIn { return Array(layers[start..<(start + Self.compactionFanIn)]) }
            start = end
        }
        return nil
    }

    /// Writes the merged layer to `incoming/` without holding the writer lock (inputs are
    /// immutable), then, under the lock, checks that every input is still cataloged (a prune may
    /// have merged some into the bases meanwhile), renames it into place, swaps the rows in one
    /// transaction, and deletes the inputs. A crash before the commit leaves the inputs in force.
    /// Returns false when the run changed under it (the output is discarded).
    private func merge(_ run: [LayerRow], beforeCommit: () throws -> Void) throws -> Bool {
        let readers = try openLayers(run)
        var bytes = [UInt8](repeating: 0, count: LayerFormat.headerSize)
        var entries: [LayerEntry] = []
        for reader in readers {
            // Frames are copied whole; only their offsets change.
            let framesStart = LayerFormat.headerSize
            let framesEnd = reader.header.indexOffset
            let shift = bytes.count - framesStart
            reader.withFrames { frames in bytes.append(contentsOf: frames) }
            for i in 0..<reader.header.entryCount {
                var e = reader.entry(i)
                guard e.frameOffset >= framesStart, e.frameOffset <= framesEnd, e.frameLength <= framesEnd - e.frameOffset else {
                    throw LifeboatError(.corrupt, "index entry \(i) points outside the frames", path: reader.path.string)
                }
                e.frameOffset += shift
                entries.append(e)
            }
        }
        entries.sort { LayerEntry.precedes(($0.disk, $0.block, $0.lsn), ($1.disk, $1.block, $1.lsn)) }
        let first = LSN(UInt64(run.first!.firstLSN)), last = LSN(UInt64(run.last!.lastLSN))
        let header = LayerHeader(groupID: readers[0].header.groupID, firstLSN: first, lastLSN: last, entryCount: entries.count, indexOffset: bytes.count,
                                 sealed: readers[0].header.sealed)
        LayerWriter.finish(&bytes, header: header, entries: entries)
        let file = layerFileName(first: first, last: last, generation: try generation().number)
        let tmp = incomingDirectory.appending("compacting-" + file)
        try writeFileAtomically(tmp, bytes, bypassingCache: true)  // written once, read at a point's read
        try beforeCommit()
        return try withWriterLock {
            let ids = Set(try catalog.read { db in try LayerRow.fetchAll(db) }.compactMap(\.id))
            guard run.allSatisfy({ ids.contains($0.id ?? -1) }) else {
                unlink(tmp.string)
                return false
            }
            do { try renameDurably(tmp, layersDirectory.appending(file)) } catch {
                unlink(tmp.string)
                throw error
            }
            try catalog.write { db in
                for row in run { _ = try LayerRow.deleteOne(db, key: row.id) }
                var merged = LayerRow(id: nil, firstLSN: Int64(first.rawValue), lastLSN: Int64(last.rawValue), file: file,
                                      bytes: Int64(bytes.count), entries: Int64(entries.count))
                try merged.insert(db)
            }
            for row in run { unlink(layerPath(row).string) }
            try? syncDirectory(layersDirectory)
            return true
        }
    }
}

extension LayerReader {
    /// The frame region (everything between the header and the index).
    func withFrames<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        try withRaw { raw in try body(UnsafeRawBufferPointer(rebasing: raw[LayerFormat.headerSize..<header.indexOffset])) }
    }
}
