import Foundation
import LifeboatCore
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

extension Site {
    /// Makes the site a failover serves the group's disks from (decision 0012): the vault's
    /// disks, same ids, names and sizes; each primary an empty sparse file, its digest that of
    /// zeros and its fill bitmap empty (`NAME.fill`: the disk reads its recovery point until the
    /// fill has copied it); `generation.json` claims `generation` as owner `owner`; it ships to
    /// the group's vault directory and its journal goes on after the fork. Nothing is copied: the
    /// time this takes does not grow with the disks' data. `site.json` is written last: a crash
    /// before leaves no site (a failover run again prepares it anew).
    public static func prepareRecovered(at root: FilePath, groupID: String, disks: [VaultDisk], recovery: SiteConfig.Recovery,
                                        generation: SiteGeneration) throws -> Site {
        let fm = FileManager.default
        if fm.fileExists(atPath: root.appending("site.json").string) {
            throw LifeboatError(.alreadyExists, "a site already exists here", path: root.string)
        }
        for dir in ["", "disks", "journal", "state"] { try PrivateFiles.makeDirectory(root.appending(dir)) }
        let now = Date()
        let configs = disks.map { d in
            SiteConfig.Disk(id: d.id.rawValue, name: d.name, sizeBytes: d.sizeBytes, createdAt: now, source: "failover from \(recovery.vault) at LSN \(recovery.lsn)")
        }
        var site = Site(root: root, config: SiteConfig(version: SiteConfig.currentVersion, groupID: groupID, createdAt: now, disks: configs,
                                                       nextDiskID: (configs.map(\.id).max() ?? 0) + 1, vault: recovery.vault))
        site.config.recoveredFrom = recovery
        for disk in configs {
            let primary = site.primaryPath(disk)
            do {
                let fd = try FileDescriptor.open(primary, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode)
                try fd.closeAfter {
                    try fd.resize(to: disk.sizeBytes)
                    try fd.dataSync()  // its size survives a power loss: the fork names this site next
                }
            } catch {
                throw LifeboatError.wrapping(error, "cannot create the primary", path: primary.string)
            }
            try DigestMap.createAllZero(path: site.digestPath(disk), sizeBytes: disk.sizeBytes)
            try writeFileAtomically(site.fillPath(disk), [UInt8](repeating: 0, count: (disk.blockCount + 63) / 64 * 8))
        }
        try Checkpoint(appliedLSN: LSN(recovery.lsn), cleanStop: true).save(in: site.stateDirectory)
        try generation.save(site)
        try syncDirectory(site.disksDirectory)
        try site.save()
        return site
    }
}

extension Site {
    /// `state/change-point.json`: a change of point begun and not finished (decision 0012):
    /// `protect` refuses to serve the disks until `failover change-point` has finished it.
    public var changePointIntentPath: FilePath { stateDirectory.appending("change-point.json") }

    /// A failed-over site's disks made the recovery point `recovery` again, from nothing: every
    /// primary emptied (all holes), its digest of zeros, its fill bitmap empty, the checkpoint at
    /// the new fork, and `site.json` naming it — written last. Idempotent. The journal must have
    /// been set aside first (its records are past the old fork).
    public mutating func resetRecovered(to recovery: SiteConfig.Recovery) throws {
        for disk in config.disks {
            let primary = primaryPath(disk)
            do {
                let fd = try FileDescriptor.open(primary, .writeOnly, options: [.closeOnExec])
                try fd.closeAfter {
                    try fd.resize(to: 0)
                    try fd.resize(to: disk.sizeBytes)
                    try fd.dataSync()
                }
            } catch {
                throw LifeboatError.wrapping(error, "cannot empty the primary", path: primary.string)
            }
            try DigestMap.createAllZero(path: digestPath(disk), sizeBytes: disk.sizeBytes)
            try writeFileAtomically(fillPath(disk), [UInt8](repeating: 0, count: (disk.blockCount + 63) / 64 * 8))
        }
        try Checkpoint(appliedLSN: LSN(recovery.lsn), cleanStop: true).save(in: stateDirectory)
        var generation = try SiteGeneration.load(self)
        generation.forkLSN = recovery.lsn
        try generation.save(self)
        config.recoveredFrom = recovery
        try save()
    }
}
