import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatJournal
import Logging
import SystemPackage
import Testing

@testable import LifeboatCapture
import LifeboatSite

/// Injected failures on the write path (FaultInjection, armed under each test's own site): the
/// writer gets EIO, nothing is acknowledged that is not journaled, and `status` says why.
@Suite struct WritePathFaultTests {
    let logger = Logger(label: "test")

    func makeSite() throws -> Site {
        var site = try Site.initialize(at: FilePath(try makeTemporaryDirectory("faults")))
        _ = try site.createDisk(name: "d0", sizeBytes: 16 << 20, from: nil)
        return site
    }

    @Test func aPrimaryWriteThatFailsIsJournaledNotAcknowledgedAndReplayedAtRestart() throws {
        let site = try makeSite()
        defer { FaultInjection.disarm(under: site.root.string); try? FileManager.default.removeItem(atPath: site.root.string) }
        let data = randomBytes(8192, seed: 5)
        do {
            let group = try ProtectionGroup.open(site: site, logger: logger)
            let fs = ProtectFilesystem(group: group)
            let before = group.journal.stats.appendedLSN
            FaultInjection.arm(.write, under: site.primaryPath(site.config.disks[0]).string, errno: .ioError)
            let error = #expect(throws: FUSEError.self) { try data.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: 4096, data: $0) } }
            #expect(error?.errno == EIO, "the writer sees EIO")
            #expect(group.journal.stats.appendedLSN > before, "the write is in the journal")
            let status = SiteStatus.live(group, mountpoint: "/m")
            #expect(status.disks[0].state == .error)
            #expect(status.disks[0].error?.contains("primary write failed") == true, "status says why")
            #expect(status.disks[0].error?.contains("Input/output error") == true)
            try group.close()
        }
        // The journal holds the write: a restart replays it (a failed write may land, as on a disk).
        let group = try ProtectionGroup.open(site: site, logger: logger)
        try group.close()
        let primary = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .readOnly)
        defer { try? primary.close() }
        var back = [UInt8](repeating: 0, count: 8192)
        _ = try back.withUnsafeMutableBytes { try primary.read(fromAbsoluteOffset: 4096, into: $0) }
        #expect(back == data, "the failed write was replayed")
        #expect(try JournalVerifier.verify(site: site).ok)
    }

    /// fsyncgate: a failed fdatasync of the journal fails the writer's fsync with EIO, and every
    /// later write and fsync too (nothing more is acknowledged); status names the failure.
    @Test func aFailedJournalSyncFailsTheFsyncAndEveryLaterWrite() throws {
        let site = try makeSite()
        defer { FaultInjection.disarm(under: site.root.string); try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        let fs = ProtectFilesystem(group: group)
        let block = randomBytes(4096, seed: 1)
        try block.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: 0, data: $0) }
        FaultInjection.arm(.sync, under: site.journalDirectory.string, errno: .ioError)
        let fsync = #expect(throws: FUSEError.self) { try fs.fsync(LifeboatFUSE.Inode(2), dataOnly: true) }
        #expect(fsync?.errno == EIO)
        let write = #expect(throws: FUSEError.self) { try block.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: 0, data: $0) } }
        #expect(write?.errno == EIO)
        let status = SiteStatus.live(group, mountpoint: "/m")
        #expect(status.journal.error?.contains("fdatasync failed") == true)
        #expect(status.disks[0].state == .error)
    }

    /// A full journal filesystem: the append fails part-way, the writer sees EIO, the partial
    /// record is cut off, and writes succeed again once there is space.
    @Test func aFullJournalFailsTheWriteWithEIOAndWritesResumeAfter() throws {
        let site = try makeSite()
        defer { FaultInjection.disarm(under: site.root.string); try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        let fs = ProtectFilesystem(group: group)
        let block = randomBytes(4096, seed: 2)
        FaultInjection.arm(.write, under: site.journalDirectory.string, errno: .noSpace, writtenBytes: 200)
        let error = #expect(throws: FUSEError.self) { try block.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: 8192, data: $0) } }
        #expect(error?.errno == EIO)
        #expect(SiteStatus.live(group, mountpoint: "/m").journal.error?.contains("No space left") == true, "status says why")
        try block.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: 8192, data: $0) }
        try fs.fsync(LifeboatFUSE.Inode(2), dataOnly: true)
        #expect(SiteStatus.live(group, mountpoint: "/m").journal.error == nil, "the error clears when writes succeed again")
        try group.close()
        #expect(try JournalVerifier.verify(site: site).ok)
    }

    /// A large write to a warm region has its primary written beside its journal append
    /// (PrimaryWriters): when the append fails, the primary already holds the blocks. They are
    /// re-journaled before the next point, whose digest is the primary's, and the journal
    /// replays to exactly the primary.
    @Test func aLargeWriteWhoseRecordFailsIsReJournaledBeforeTheNextPoint() throws {
        let site = try makeSite()
        defer { FaultInjection.disarm(under: site.root.string); try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        try randomBytes(4096, seed: 6).withUnsafeBytes { try group.write(disk: 0, offset: 0, data: $0) }  // region 0 is warm now
        let large = randomBytes(512 << 10, seed: 7)
        FaultInjection.arm(.write, under: site.journalDirectory.string, errno: .noSpace)
        #expect(throws: LifeboatError.self) { try large.withUnsafeBytes { try group.write(disk: 0, offset: 1 << 20, data: $0) } }
        let primary = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .readOnly)
        defer { try? primary.close() }
        var back = [UInt8](repeating: 0, count: large.count)
        _ = try back.withUnsafeMutableBytes { try primary.read(fromAbsoluteOffset: 1 << 20, into: $0) }
        #expect(back == large, "the helper wrote the primary while the append failed")
        let (_, digests) = try group.mark(.crashConsistent, label: "after")
        #expect(digests[site.config.disks[0].diskID] == (try DiskDigest.root(ofImage: primary, sizeBytes: 16 << 20)), "the point is the primary")
        try group.close()
        #expect(try JournalVerifier.verify(site: site).ok, "the journal holds what the primary holds")
    }

    /// A primary fdatasync that fails at a checkpoint leaves the previous checkpoint in force:
    /// recovery replays everything after it.
    @Test func aFailedPrimarySyncKeepsThePreviousCheckpoint() throws {
        let site = try makeSite()
        defer { FaultInjection.disarm(under: site.root.string); try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        let saved = try Checkpoint.load(from: site.stateDirectory)
        try randomBytes(65536, seed: 3).withUnsafeBytes { try group.write(disk: 0, offset: 0, data: $0) }
        FaultInjection.arm(.sync, under: site.primaryPath(site.config.disks[0]).string, errno: .ioError)
        let error = #expect(throws: LifeboatError.self) { try group.checkpoint(clean: false) }
        #expect(error?.message.contains("primary fdatasync failed") == true)
        #expect(try Checkpoint.load(from: site.stateDirectory) == saved)
    }
}

/// The activity log (decision 0003): which writes wait for their record to be durable, and what
/// recovery re-journals.
@Suite struct ActivityLogTests {
    let logger = Logger(label: "test")

    /// A write to a region not written in this checkpoint epoch or the previous one makes its
    /// record durable first (one journal sync); writes to warm regions do not.
    @Test func onlyWritesToColdRegionsWaitForTheJournal() throws {
        var site = try Site.initialize(at: FilePath(try makeTemporaryDirectory("al")))
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        _ = try site.createDisk(name: "d0", sizeBytes: 64 << 20, from: nil)
        let group = try ProtectionGroup.open(site: site, logger: logger)
        defer { try? group.close() }
        let region = Int64(ActivityLog.regionBlocks * 4096)
        let block = randomBytes(4096, seed: 1)
        func syncsFor(_ offset: Int64) throws -> Int {
            let before = group.journal.stats.syncs
            try block.withUnsafeBytes { try group.write(disk: 0, offset: offset, data: $0) }
            return group.journal.stats.syncs - before
        }
        #expect(try syncsFor(0) == 1, "cold region 0")
        #expect(try syncsFor(4096) == 0, "region 0 is warm")
        #expect(try syncsFor(region + 8192) == 1, "cold region 1")
        try group.checkpoint(clean: false)
        #expect(try Checkpoint.load(from: site.stateDirectory).activity?.regions == ["0": [0, 1]], "the regions written in the epoch the checkpoint ended")
        #expect(try syncsFor(8192) == 0, "region 0, written in the previous epoch, is still warm")
        try group.checkpoint(clean: false)
        #expect(try Checkpoint.load(from: site.stateDirectory).activity?.regions == ["0": [0]])
        try group.checkpoint(clean: false)
        #expect(try syncsFor(region) == 1, "region 1 has gone cold")
    }

    /// After an unclean stop, recovery re-journals the active regions: a write that reached the
    /// primary while its record was lost (simulated: the primary changed behind the journal's
    /// back) is journaled, so `journal verify` is identical; a change outside them is not.
    /// The digest sidecar is written back on its own: after a power loss it can hold the leaf of
    /// a write the primary lost, at a block that is still a hole. Recovery recomputes the leaves
    /// of the active regions' holes too (found by the power-loss harness: "digest leaf of block
    /// 873" differed while the data agreed).
    @Test func recoveryRecomputesTheLeavesOfHolesInActiveRegions() throws {
        var site = try Site.initialize(at: FilePath(try makeTemporaryDirectory("al")))
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        _ = try site.createDisk(name: "d0", sizeBytes: 64 << 20, from: nil)
        do {
            let group = try ProtectionGroup.open(site: site, logger: logger)
            try randomBytes(4096, seed: 1).withUnsafeBytes { try group.write(disk: 0, offset: 0, data: $0) }
            // No close: the power goes.
        }
        // The sidecar holds the leaf of a lost write to block 7 (still a hole in the primary).
        let sidecar = try DigestMap(path: site.digestPath(site.config.disks[0]), sizeBytes: 64 << 20, rebuildFrom: nil)
        randomBytes(4096, seed: 5).withUnsafeBytes { sidecar.update(7, with: $0) }
        try sidecar.sync(path: site.digestPath(site.config.disks[0]))
        do {
            let group = try ProtectionGroup.open(site: site, logger: logger)
            try group.close()
        }
        let verified = try JournalVerifier.verify(site: site)
        #expect(verified.ok, "first digest mismatch: \(verified.disks.compactMap(\.firstDigestMismatch))")
    }

    @Test func recoveryReJournalsTheActiveRegions() throws {
        var site = try Site.initialize(at: FilePath(try makeTemporaryDirectory("al")))
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        _ = try site.createDisk(name: "d0", sizeBytes: 64 << 20, from: nil)
        let region = Int64(ActivityLog.regionBlocks * 4096)
        do {
            let group = try ProtectionGroup.open(site: site, logger: logger)
            try randomBytes(8192, seed: 1).withUnsafeBytes { try group.write(disk: 0, offset: 0, data: $0) }
            // No close: the power goes. The checkpoint is the one written at start.
        }
        let primary = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .writeOnly)
        _ = try primary.writeAll(toAbsoluteOffset: 3 * 4096, randomBytes(4096, seed: 9))  // in active region 0
        try primary.close()
        do {
            let group = try ProtectionGroup.open(site: site, logger: logger)
            #expect(group.rejournaledBlocks == 3, "the data blocks of region 0: 0 and 1 (the journaled write), 3 (the lost one)")
            try group.close()
        }
        #expect(try JournalVerifier.verify(site: site).ok)

        // A primary change in a region that was never active is not re-journaled.
        do { _ = try ProtectionGroup.open(site: site, logger: logger) }  // an unclean stop with nothing written
        let again = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .writeOnly)
        _ = try again.writeAll(toAbsoluteOffset: 5 * region, randomBytes(4096, seed: 10))
        try again.close()
        do {
            let reopened = try ProtectionGroup.open(site: site, logger: logger)
            #expect(reopened.rejournaledBlocks == 0)
            try reopened.close()
        }
        #expect(try !JournalVerifier.verify(site: site).ok, "outside the activity log, a primary change is not journaled")
    }
}
