import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatSite

#if canImport(Glibc)
import Glibc
#endif

extension SiteStatus {
    /// The live status of a running group.
    static func live(_ group: ProtectionGroup, mountpoint: String) -> SiteStatus {
        let stats = group.journal.stats
        let marked = group.digestsAtLastMarker()  // computing live roots would pause every write
        let disks = group.disks.map { d in
            let error = d.primaryError.withLock { $0 }
            var disk = Disk(name: d.config.name, sizeBytes: d.sizeBytes, lastLSN: LSN(d.lastLSN.load(ordering: .relaxed)),
                            state: error == nil && stats.failure == nil ? .protected : .error, digest: marked.roots[d.id]?.description,
                            digestAtLSN: marked.lsn, error: error)
            if let backing = d.backing, !backing.isComplete { disk.unfilledBytes = Int64(backing.unfilledBlocks) << BlockSize.shift }
            return disk
        }
        let local = (try? JournalDirectory.segments(in: group.journal.directory)) ?? []
        var status = SiteStatus(
            state: .protecting, pid: getpid(), mountpoint: mountpoint, updatedAt: Date(),
            journal: JournalFigures(appendedLSN: stats.appendedLSN, durableLSN: stats.durableLSN,
                                    bytes: local.reduce(0) { $0 + (fileSize($1.path) ?? 0) },
                                    segments: local.count, error: stats.failure?.description),
            disks: disks, shipping: group.shipper?.current)
        status.generation = group.fence.generation
        return status
    }

    /// After an offline recovery (`journal recover`): the recovered group's figures — each
    /// disk's last LSN, the journal — as a stopped site, keeping the shipping figures of the
    /// last running protect (nothing shipped since).
    public static func saveRecovered(_ group: ProtectionGroup) throws {
        let previous = (try? readWholeFile(path(in: group.site))).flatMap { try? SiteConfig.decoder.decode(SiteStatus.self, from: Data($0)) }
        var status = live(group, mountpoint: "")
        status.state = .stopped
        status.pid = nil
        status.mountpoint = nil
        status.shipping = previous?.shipping
        for i in status.disks.indices where status.disks[i].state == .protected { status.disks[i].state = .stopped }
        try status.save(in: group.site)
    }
}
