import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatSite
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The spool limit (decision 0010, "Spool limit, never stalling production"). The local journal
/// is the spool while the vault cannot take it; past `--spool-limit` of unshipped journal, the
/// shipper drops checkpointed segments the vault lacks instead of letting the journal fill the
/// disk, keeping only which 1 MiB regions their records wrote (`DirtyRegions`, written durably
/// before any segment goes). Writes never wait for any of it.
///
/// When the vault is back, the shipper tells it of the gap (`openResync`); the protection group
/// then resyncs: it reads every dirty region from the primaries, appends it to the journal as
/// ordinary write records, and ends with a marker flagged `endsResync` — the first point after
/// the gap. No point is marked from the first drop until then: a state between would be no state
/// the disks were ever in. A drop during a resync (a second outage) restarts it (`generation`).
public final class SpoolOverflow: @unchecked Sendable {
    /// Unshipped journal bytes past which segments are dropped; nil: no limit.
    public let limit: Int64?
    private let state: FilePath
    private let disks: [(id: DiskID, blockCount: Int)]
    /// Held across a drop (map written, segments deleted) and across the end of a resync (the
    /// generation checked, the end marker appended, the map removed): the two never interleave.
    private let transition = NSLock()
    private let current: Mutex<(map: DirtyRegions?, generation: UInt64, since: Date?, resynced: Int)>

    public init(site: Site, limit: Int64?) throws {
        self.limit = limit
        self.state = site.stateDirectory
        self.disks = site.config.disks.map { ($0.diskID, $0.blockCount) }
        let map = try DirtyRegions.load(from: site.stateDirectory)
        current = Mutex((map, 0, map == nil ? nil : Date(), 0))
    }

    /// Why points are not marked now, or nil.
    public var pointsPaused: String? {
        current.withLock { c in
            c.map.map { m in
                "the vault lacks writes dropped past the spool limit (LSNs \(m.gapAfter.next)…\(m.droppedThrough)); "
                    + (m.announced ? "points resume when the resync of \(m.regionCount - min(c.resynced, m.regionCount)) MiB ends" : "points resume after a resync once the vault is reachable")
            }
        }
    }

    /// What `status` shows: bytes of regions left to resync, since when journal is being dropped.
    public var figures: (resyncPendingBytes: Int64, droppingSince: Date?) {
        current.withLock { c in
            guard let m = c.map else { return (0, nil) }
            return (Int64(max(0, m.regionCount - c.resynced)) * DirtyRegions.regionBytes, c.since)
        }
    }

    /// Whether journal has been dropped (a map exists) and not yet resynced.
    public var isDropping: Bool { current.withLock { $0.map != nil } }

    /// The LSN the vault must be told the journal resumes at, when it holds less than what was
    /// dropped; the map is first marked announced, durably (so a crash after the vault heard it
    /// still ends the resync with its marker). Nil: nothing to announce.
    public func announcement(vaultHolds held: LSN) throws -> LSN? {
        try transition.withLock {
            guard var map = current.withLock({ $0.map }) else { return nil }
            if held >= map.droppedThrough {
                // The vault got every dropped record after all (an answer lost before the drop):
                // no gap. Unless it was told of one, nothing needs resyncing.
                if !map.announced {
                    try DirtyRegions.remove(from: state)
                    current.withLock { $0 = (nil, $0.generation + 1, nil, 0) }
                }
                return nil
            }
            if !map.announced {
                map.announced = true
                try map.save(in: state)
                let announced = map
                current.withLock { $0.map = announced }
            }
            return map.droppedThrough.next
        }
    }

    /// Drops `segments` (a prefix of the journal, oldest first, each with its last LSN): the
    /// regions their records after `shipped` write go into the map, the map is written durably,
    /// then the segments are deleted.
    func drop(_ segments: [(path: FilePath, lastLSN: LSN)], shipped: LSN, journal: FilePath) throws {
        guard let last = segments.last?.lastLSN else { return }
        try transition.withLock {
            var map = current.withLock { $0.map } ?? DirtyRegions(disks: disks, gapAfter: shipped)
            for segment in segments {
                let bytes = try SegmentReader.load(segment.path, thenDropCache: true)
                let scan = try SegmentReader.scan(bytes, path: segment.path)
                try bytes.withUnsafeBytes { raw in
                    for record in scan.records where record.header.type == .write && record.header.lsn > shipped {
                        let payload = record.payload(in: raw)
                        guard let write = WritePayloadHeader.decode(payload), map.mark(disk: write.disk, first: write.firstBlock, count: Int(write.blockCount)) else {
                            throw LifeboatError(.corrupt, "a write record the dirty-region map cannot take (disk or block unknown)", path: segment.path.string, offset: Int64(record.offset))
                        }
                    }
                }
            }
            map.droppedThrough = max(map.droppedThrough, last)
            try map.save(in: state)
            let saved = map
            current.withLock {
                if $0.since == nil { $0.since = Date() }
                $0 = (saved, $0.generation + 1, $0.since, 0)
            }
            for segment in segments { unlink(segment.path.string) }
            try? syncDirectory(journal)
        }
    }

    /// The regions to resync, in order, and the generation they belong to: only once the vault
    /// has been told of the gap.
    public func resyncJob() -> (generation: UInt64, regions: [(disk: DiskID, region: Int)])? {
        current.withLock { c in
            guard let map = c.map, map.announced else { return nil }
            return (c.generation, map.regions)
        }
    }

    /// `done` regions of the job of `generation` are in the journal (status).
    public func resynced(_ done: Int, generation: UInt64) {
        current.withLock { if $0.generation == generation { $0.resynced = done } }
    }

    /// Ends the resync of `generation` if no drop came since: `appendEndMarker` makes the marker
    /// durable, then the map goes. False when a drop came (the resync starts again).
    public func finish(generation: UInt64, appendEndMarker: () throws -> Void) throws -> Bool {
        try transition.withLock {
            guard current.withLock({ $0.generation == generation && $0.map != nil }) else { return false }
            try appendEndMarker()
            try DirtyRegions.remove(from: state)
            current.withLock { $0 = (nil, $0.generation + 1, nil, 0) }
            return true
        }
    }
}
