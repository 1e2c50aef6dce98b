import Foundation
import GRDB
import LifeboatCore
import SystemPackage

/// Block extents of a disk: `[first, first+count)` runs, ascending, disjoint. What re-protect
/// moves (decision 0012) — named by the history, never found by scanning a disk.
public struct BlockExtents: Codable, Sendable, Equatable {
    public var runs: [[Int]]  // [first, count] pairs: compact in JSON, on the wire

    public init(blocks: Set<Int>) {
        var runs: [[Int]] = []
        for b in blocks.sorted() {
            if let last = runs.last, last[0] + last[1] == b { runs[runs.count - 1][1] += 1 } else { runs.append([b, 1]) }
        }
        self.runs = runs
    }

    public var blockCount: Int { runs.reduce(0) { $0 + $1[1] } }

    /// The runs cut into pieces of at most `maxBlocks`, in order: what is copied in one go.
    public func pieces(maxBlocks: Int) -> [(first: Int, count: Int)] {
        runs.flatMap { run in stride(from: run[0], to: run[0] + run[1], by: maxBlocks).map { ($0, min(maxBlocks, run[0] + run[1] - $0)) } }
    }
    public var blocks: Set<Int> { Set(runs.flatMap { $0[0]..<($0[0] + $0[1]) }) }
}

extension BlockExtents {
    /// By disk, keyed by the disk id in decimal: how the wire carries them (JSON).
    public static func byDecimalID(_ extents: [DiskID: BlockExtents]) -> [String: BlockExtents] {
        Dictionary(uniqueKeysWithValues: extents.map { (String($0.key.rawValue), $0.value) })
    }

    public static func byDiskID(_ extents: [String: BlockExtents]) throws -> [DiskID: BlockExtents] {
        var out: [DiskID: BlockExtents] = [:]
        for (key, value) in extents {
            guard let id = UInt32(key) else { throw LifeboatError(.corrupt, "a disk id '\(key.prefix(20))' that is not a number") }
            out[DiskID(id)] = value
        }
        return out
    }
}

extension Vault {
    /// The blocks the current history wrote in `(after, through]`, by disk: read from the layers'
    /// indexes (no block data).
    public func writtenBlocks(after: LSN, through: LSN) throws -> [DiskID: BlockExtents] {
        try withWriterLock {  // a compaction must not delete a layer between its row and its open
            let rows = try catalog.read { db in
                try LayerRow.filter(Column("lastLSN") > Int64(after.rawValue) && Column("firstLSN") <= Int64(through.rawValue)).fetchAll(db)
            }
            return Self.blocks(in: try openLayers(rows), after: after, through: through)
        }
    }

    /// The blocks an older generation's owner wrote past its fork and shipped here before it was
    /// fenced (the forsaken layers), by disk. Re-protect replaces them at that host.
    public func forsakenBlocks(generation: Int64) throws -> [DiskID: BlockExtents] {
        let rows = try catalog.read { db in try ForsakenLayerRow.filter(Column("generation") == generation).fetchAll(db) }
        guard let after = rows.map(\.after).min() else { return [:] }
        let sealer = try frameSealer()
        let readers = try rows.map { try LayerReader(path: layersDirectory.appending($0.file), sealer: sealer) }
        return Self.blocks(in: readers, after: LSN(UInt64(after)), through: LSN(UInt64.max >> 1))
    }

    private static func blocks(in layers: [LayerReader], after: LSN, through: LSN) -> [DiskID: BlockExtents] {
        var found: [DiskID: Set<Int>] = [:]
        for layer in layers {
            for i in 0..<layer.header.entryCount {
                let e = layer.entry(i)
                if e.lsn > after && e.lsn <= through { found[e.disk, default: []].insert(Int(e.block.rawValue)) }
            }
        }
        return found.mapValues { BlockExtents(blocks: $0) }
    }
}
