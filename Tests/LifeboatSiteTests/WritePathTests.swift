import Foundation
import LifeboatCore
import LifeboatFUSE
@testable import LifeboatJournal
import LifeboatVault
import LifeboatVHD
import Logging
import Synchronization
import SystemPackage
import Testing

@testable import LifeboatCapture
import LifeboatPointView
@testable import LifeboatShipping
import LifeboatSite

/// The write path driven in process, without a mount (the filesystem object is called as
/// libfuse would call it).
@Suite struct WritePathTests {
    let logger = Logger(label: "test")

    func makeSite(sizes: [Int64] = [16 << 20]) throws -> Site {
        let dir = try makeTemporaryDirectory("wp")
        var site = try Site.initialize(at: FilePath(dir))
        for (i, size) in sizes.enumerated() { _ = try site.createDisk(name: "d\(i)", sizeBytes: size, from: nil) }
        return site
    }

    func readAll(_ fs: ProtectFilesystem, inode: LifeboatFUSE.Inode, size: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        try fs.read(inode, offset: 0, size: size) { source in
            guard case .file(let fd, let offset, let length) = source else { return }
            _ = out.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, Int(offset)) }
        }
        return out
    }

    @Test func unalignedAndPartialWritesLandInJournalPrimaryAndDigest() throws {
        let site = try makeSite()
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        let fs = ProtectFilesystem(group: group)
        let disk = LifeboatFUSE.Inode(2)
        var shadow = [UInt8](repeating: 0, count: 16 << 20)
        var g = SplitMix(state: 7)
        for i in 0..<300 {
            let length = [1, 511, 4096, 5000, 65536, 131_072 + 3, (1 << 20) - 16][Int(g.next() % 7)]
            let offset = Int(g.next() % UInt64(shadow.count - length))
            let data = randomBytes(length, seed: UInt64(i))
            try data.withUnsafeBytes { try fs.write(disk, offset: Int64(offset), data: $0) }
            shadow.replaceSubrange(offset..<(offset + length), with: data)
        }
        try fs.fsync(disk, dataOnly: true)
        #expect(try readAll(fs, inode: disk, size: shadow.count) == shadow)
        // The digest kept on the write path equals the digest recomputed from the image.
        let live = try group.mark(.crashConsistent, label: "").digests[DiskID(0)]
        let primary = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .readOnly)
        defer { try? primary.close() }
        #expect(live == (try DiskDigest.root(ofImage: primary, sizeBytes: 16 << 20)))
        try group.close()
        let verify = try JournalVerifier.verify(site: site)
        #expect(verify.ok)
        #expect(verify.disks[0].journaledBlocks > 0)
    }

    /// `status` shows each disk's digest at the newest point, with its LSN: the refresh (every
    /// second) never pauses the writes to compute live roots.
    @Test func statusShowsTheDigestAtTheNewestPoint() throws {
        let site = try makeSite()
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        defer { try? group.close() }
        try randomBytes(8192, seed: 1).withUnsafeBytes { try group.write(disk: 0, offset: 0, data: $0) }
        let (lsn, digests) = try group.mark(.crashConsistent, label: "")
        try randomBytes(4096, seed: 2).withUnsafeBytes { try group.write(disk: 0, offset: 1 << 20, data: $0) }
        let status = SiteStatus.live(group, mountpoint: "/m")
        #expect(status.disks[0].digest == digests[DiskID(0)]?.description)
        #expect(status.disks[0].digestAtLSN == lsn)
        let primary = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .readOnly)
        defer { try? primary.close() }
        #expect(status.disks[0].digest != (try DiskDigest.root(ofImage: primary, sizeBytes: 16 << 20)).description,
                "the live root moved on; status did not compute it")
    }

    @Test func writesOutsideTheDiskAndResizesAreRefused() throws {
        let site = try makeSite()
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        let fs = ProtectFilesystem(group: group)
        let past = [UInt8](repeating: 1, count: 8192)
        let error = #expect(throws: FUSEError.self) { try past.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: (16 << 20) - 4096, data: $0) } }
        #expect(error?.errno == ENOSPC)
        let resize = #expect(throws: FUSEError.self) { _ = try fs.truncate(LifeboatFUSE.Inode(2), to: 0) }
        #expect(resize?.errno == EPERM, "a resize is refused with EPERM (Docs/operations.md)")
        #expect(try fs.truncate(LifeboatFUSE.Inode(2), to: 16 << 20).size == 16 << 20)
        #expect(throws: FUSEError.self) { _ = try fs.lookup(parent: .root, name: "nope.img") }
        #expect(try fs.readdir(.root).map(\.name) == [".", "..", "d0.img"])
        try group.close()
    }

    @Test func recoveryReplaysWritesThePrimaryLost() throws {
        let site = try makeSite(sizes: [8 << 20, 4 << 20])
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        var expected: [[UInt8]] = []
        do {
            let group = try ProtectionGroup.open(site: site, logger: logger)
            for (i, size) in [8 << 20, 4 << 20].enumerated() {
                let data = randomBytes(size, seed: UInt64(100 + i))
                for off in stride(from: 0, to: size, by: 1 << 20) {
                    try data[off..<(off + (1 << 20))].withUnsafeBytes { try group.write(disk: i, offset: Int64(off), data: $0) }
                }
                expected.append(data)
            }
            try group.flush()
            // Dropped without close(): a crash. The checkpoint on disk predates the writes.
        }
        // Simulate primaries that never got the writes (a crash before write-back).
        for disk in site.config.disks {
            let fd = try FileDescriptor.open(site.primaryPath(disk), .writeOnly)
            try fd.resize(to: 0)
            try fd.resize(to: disk.sizeBytes)
            try fd.close()
        }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        #expect(group.replayedRecords == 12)
        try group.close()
        for (i, disk) in site.config.disks.enumerated() {
            #expect(FileManager.default.contents(atPath: site.primaryPath(disk).string).map(Array.init) == expected[i])
        }
        #expect(try JournalVerifier.verify(site: site).ok)
    }

    @Test func aSecondProtectOnTheSameSiteIsRefused() throws {
        let site = try makeSite()
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        let error = #expect(throws: LifeboatError.self) { _ = try ProtectionGroup.open(site: site, logger: logger) }
        #expect(error?.code == .busy)
        var again = site
        #expect(throws: LifeboatError.self) { _ = try again.createDisk(name: "late", sizeBytes: 1 << 20, from: nil) }
        try group.close()
    }

    @Test func verifyNamesTheFirstBlockThatDiffers() throws {
        let site = try makeSite()
        defer { try? FileManager.default.removeItem(atPath: site.root.string) }
        let group = try ProtectionGroup.open(site: site, logger: logger)
        try randomBytes(1 << 20, seed: 3).withUnsafeBytes { try group.write(disk: 0, offset: 0, data: $0) }
        try group.close()
        // Change block 77 of the primary behind the journal's back.
        let fd = try FileDescriptor.open(site.primaryPath(site.config.disks[0]), .writeOnly)
        _ = try fd.writeAll(toAbsoluteOffset: 77 * 4096 + 5, [0xEE, 0xEE])
        try fd.close()
        let result = try JournalVerifier.verify(site: site)
        #expect(!result.ok)
        #expect(result.disks[0].firstMismatch?.block == 77)
        #expect(result.disks[0].firstMismatch?.detail.contains("LSN") == true)
        #expect(result.disks[0].firstDigestMismatch == 77)
    }

    @Test func diskCreatedFromAnImageStartsWithItsContentAndRejectsBadSizes() throws {
        let dir = try makeTemporaryDirectory("img")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let image = dir + "/source.raw"
        let content = randomBytes(3 << 20, seed: 11) + [UInt8](repeating: 0, count: 1 << 20)
        try #require(FileManager.default.createFile(atPath: image, contents: Data(content)))
        var site = try Site.initialize(at: FilePath(dir + "/site"))
        let disk = try site.createDisk(name: "imported", sizeBytes: nil, from: FilePath(image))
        #expect(disk.sizeBytes == 4 << 20)
        #expect(FileManager.default.contents(atPath: site.primaryPath(disk).string).map(Array.init) == content)
        #expect(FileManager.default.contents(atPath: site.basePath(disk).string).map(Array.init) == content)
        let tooSmall = #expect(throws: LifeboatError.self) { _ = try site.createDisk(name: "small", sizeBytes: 1 << 20, from: FilePath(image)) }
        #expect(tooSmall?.code == .invalidArgument)
        let exists = #expect(throws: LifeboatError.self) { _ = try site.createDisk(name: "imported", sizeBytes: 1 << 20, from: nil) }
        #expect(exists?.code == .alreadyExists)
        #expect(throws: LifeboatError.self) { _ = try site.createDisk(name: "../evil", sizeBytes: 1 << 20, from: nil) }
    }
}

/// The control socket's request handling, without a socket: malformed, unknown and oversized
/// requests are refused with the reason and never reach the marker.
@Suite struct ControlRequestTests {
    private func answer(_ text: String, complete: Bool = true) -> (ControlResponse, marked: Bool) {
        let (response, marked, _) = answerRecordingPoint(text, complete: complete)
        return (response, marked)
    }

    /// Also what the point handler was asked: LSN, note, wait.
    private func answerRecordingPoint(_ text: String, complete: Bool = true) -> (ControlResponse, marked: Bool, asked: (LSN, String?, Duration)?) {
        var marked = false
        var asked: (LSN, String?, Duration)?
        let handlers = ControlHandlers(mark: { _, _ in
            marked = true
            return (LSN(7), [DiskID(0): Hash128(high: 1, low: 2)])
        }, point: { lsn, note, wait in
            asked = (lsn, note, wait)
            return lsn == LSN(7) ? (42, nil) : (nil, "shipping is paused: the vault is full")
        })
        let response = ControlProtocol.answer(line: Array(text.utf8), complete: complete, handlers: handlers)
        return (response, marked, asked)
    }

    @Test func aPointRequestIsAnsweredWithTheVaultsIdOrWhyNot() throws {
        let request = String(decoding: try JSONEncoder().encode(ControlRequest.point(at: LSN(7), note: "not app-consistent: x", within: .seconds(30))), as: UTF8.self)
        let (found, marked, asked) = answerRecordingPoint(request)
        #expect(!marked && found.ok && found.pointID == 42 && found.notInVault == nil && found.lsn == 7)
        #expect(asked?.0 == LSN(7) && asked?.1 == "not app-consistent: x" && asked?.2 == .seconds(30))
        let (missing, _, _) = answerRecordingPoint(#"{"op":"point","lsn":9,"waitMilliseconds":0}"#)
        #expect(missing.ok && missing.pointID == nil && missing.notInVault == "shipping is paused: the vault is full")
    }

    @Test func aWellFormedMarkIsAnsweredWithItsLSNAndDigests() {
        let (r, marked) = answer(#"{"op":"mark","kind":"app-consistent","label":"x"}"#)
        #expect(marked && r.ok && r.lsn == 7)
        #expect(r.digests == ["0": "00000000000000010000000000000002"])
    }

    @Test(arguments: [
        (#"{"op":"mark","kind":"app-consistent""#, "request is not valid"),
        (#"{"op":"erase","kind":"label","label":""}"#, "unknown op 'erase' (known: mark, point)"),
        (#"{"op":"mark","kind":"app-consistant","label":""}"#, "unknown point kind 'app-consistant'"),
        (#"{"op":"mark","label":""}"#, "field 'kind': a mark request needs the point's kind"),
        (#"{"op":"point","waitMilliseconds":10}"#, "field 'lsn': a point request needs the marker's LSN"),
        (#"{"op":"point","lsn":0}"#, "field 'lsn'"),
        (#"{"op":"point","lsn":5,"waitMilliseconds":-1}"#, "field 'waitMilliseconds': -1 is not from 0 to 3600000"),
        (#"{"op":"point","lsn":5,"waitMilliseconds":99999999999}"#, "field 'waitMilliseconds'"),
    ])
    func badRequestsAreRefusedWithTheReason(text: String, reason: String) {
        let (r, marked, asked) = answerRecordingPoint(text)
        #expect(!marked && asked == nil && !r.ok)
        #expect(r.error?.contains(reason) == true, "\(r.error ?? "")")
    }

    @Test func anOversizedOrUnterminatedRequestIsRefused() {
        let long = #"{"op":"mark","kind":"label","label":""# + String(repeating: "x", count: 70_000) + #""}"#
        #expect(answer(long, complete: false).0.error?.contains("longer than 65536 bytes") == true)
        #expect(answer(#"{"op":"mark""#, complete: false).0.error?.contains("not ended by a newline") == true)
        let label = #"{"op":"mark","kind":"label","label":""# + String(repeating: "x", count: 2000) + #""}"#
        let (r, marked) = answer(label)
        #expect(!marked && r.error?.contains("at most 1024") == true)
    }
}

/// The point view driven in process, as libfuse would call it (no mount, no root): overlay
/// writes at any alignment, reads that prefer the overlay, the VHD footer at the disk's end,
/// and refusals.
@Suite struct PointViewInProcessTests {
    /// A vault whose one disk's base is `content` (no layers: the point is LSN 0).
    private func view(_ content: [UInt8], vhd: Bool, overlay: Bool) throws -> (PointViewFilesystem, String) {
        let dir = try makeTemporaryDirectory("pv")
        try Data(content).write(to: URL(fileURLWithPath: dir + "/initial.raw"))
        let vault = try Vault(root: FilePath(dir + "/vault"), create: true)
        try vault.addDisk(group: "00112233445566778899aabbccddeeff", id: DiskID(0), name: "d0", sizeBytes: Int64(content.count),
                          initialContent: FilePath(dir + "/initial.raw"))
        try FileManager.default.createDirectory(atPath: dir + "/overlay", withIntermediateDirectories: true)
        return (try PointViewFilesystem(vault: vault, lsn: .zero, vhd: vhd, overlayDirectory: overlay ? FilePath(dir + "/overlay") : nil), dir)
    }

    private func read(_ fs: PointViewFilesystem, _ offset: Int64, _ size: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        try fs.read(LifeboatFUSE.Inode(2), offset: offset, size: size) { source in
            if case .bytes(let b) = source { out = Array(b) } else { Issue.record("a point view answers with bytes") }
        }
        return out
    }

    @Test func unalignedOverlayWritesReadBackExactlyAndTheBaseIsUntouched() throws {
        let content = randomBytes(64 * 4096, seed: 21)
        let (fs, dir) = try view(content, vhd: false, overlay: true)
        defer { fs.discardOverlays(); try? FileManager.default.removeItem(atPath: dir) }
        var model = content
        var g = SplitMix(state: 22)
        for _ in 0..<40 {
            let offset = Int(g.next() % UInt64(content.count - 1))
            let length = 1 + Int(g.next() % UInt64(min(3 * 4096 + 7, content.count - offset)))
            let data = randomBytes(length, seed: g.next())
            try data.withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: Int64(offset), data: $0) }
            model.replaceSubrange(offset..<(offset + length), with: data)
            let probe = Int(g.next() % UInt64(content.count - 5000))
            #expect(try read(fs, Int64(probe), 5000) == Array(model[probe..<(probe + 5000)]))
        }
        #expect(try read(fs, 0, content.count) == model)
        #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/vault/bases/0.img")) == Data(content), "the vault never changes")
        // Past the disk's end: refused as a block device refuses it.
        let past = #expect(throws: FUSEError.self) { try [UInt8](repeating: 1, count: 10).withUnsafeBytes { try fs.write(LifeboatFUSE.Inode(2), offset: Int64(content.count - 5), data: $0) } }
        #expect(past?.errno == ENOSPC)
    }

    @Test func theVHDFooterFollowsTheDiskAndReadsAcrossTheBoundaryAreExact() throws {
        let content = randomBytes(16 * 4096, seed: 23)
        let (fs, dir) = try view(content, vhd: true, overlay: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let size = Int64(content.count)
        #expect(try fs.getattr(LifeboatFUSE.Inode(2)).size == size + 512)
        let across = try read(fs, size - 100, 612)
        #expect(Array(across.prefix(100)) == Array(content.suffix(100)))
        let footer = try VHDFooter.decode(across[100...], what: "view", offset: size)
        #expect(footer.diskType == .fixed && footer.currentSize == UInt64(size))
        #expect(try read(fs, size + 10, 4096) == Array(across.suffix(502)), "a read past the end is short")
        #expect(try read(fs, size + 512, 4096).isEmpty)
        let opened = #expect(throws: FUSEError.self) { try fs.open(LifeboatFUSE.Inode(2), flags: O_RDWR) }
        #expect(opened?.errno == EROFS, "the view refuses writing itself, not only the kernel's -o ro")
        #expect((try? fs.lookup(parent: .root, name: "d0.img")) == nil, "with --format vhd the file is NAME.vhd")
    }
}

/// A site with one 16 MiB disk and a journal of `writes` single-block writes in 1 MiB
/// segments, and a vault claimed by the site's group (or by `vaultGroup`).
/// Waits until every seal is durable and so every segment named (the preparer syncs a seal
/// off the write path, decision 0002), without making the open segment's records durable.
func waitForDurableSeals(_ journal: Journal) throws {
    for _ in 0..<2000 where journal.stats.durablySealedBefore < journal.stats.currentSegmentFirstLSN { usleep(5000) }
    try #require(journal.stats.durablySealedBefore == journal.stats.currentSegmentFirstLSN, "a seal stayed pending")
}

struct ShippingFixture {
    let dir: String
    let site: Site
    let journal: Journal

    init(writes: Int, vaultGroup: String? = nil) throws {
        dir = try makeTemporaryDirectory("ship")
        var site = try Site.initialize(at: FilePath(dir + "/site"), vault: dir + "/vault")
        _ = try site.createDisk(name: "d0", sizeBytes: 16 << 20, from: nil)
        self.site = site
        try Vault(root: FilePath(dir + "/vault"), create: true).claim(group: vaultGroup ?? site.config.groupID)
        (journal, _) = try Journal.open(directory: site.journalDirectory, groupID: site.config.groupIDBytes, configuration: .init(segmentBytes: 1 << 20))
        for i in 0..<writes {
            _ = try [UInt8](repeating: UInt8(i & 0xFF), count: 4096).withUnsafeBytes {
                try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i % 4000)), data: $0)
            }
        }
        try waitForDurableSeals(journal)
    }

    func remove() {
        try? journal.close()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// The shipper's deletion rule, in process: a local segment goes only once the vault holds it
/// *and* the primaries' checkpoint covers it, and only as a prefix (recovery refuses a gap).
@Suite struct ShipperDeletionTests {
    @Test func segmentsGoOnlyWhenShippedAndCheckpointedAndOnlyAsAPrefix() throws {
        let f = try ShippingFixture(writes: 1200)
        defer { f.remove() }
        let (dir, site, journal) = (f.dir, f.site, f.journal)
        let before = try JournalDirectory.segments(in: site.journalDirectory)
        #expect(before.count >= 4)
        // The checkpoint covers only the first two segments.
        let applied = LSN(before[2].firstLSN.rawValue - 1)
        let shipper = Shipper(site: site, target: try LocalVaultReplica(root: FilePath(dir + "/vault"), logger: Logger(label: "test")), journal: journal,
                              logger: Logger(label: "test")) { applied }
        defer { shipper.stop() }
        try shipper.shipOnce()
        let after = try JournalDirectory.segments(in: site.journalDirectory)
        #expect(after.map(\.firstLSN) == Array(before.dropFirst(2)).map(\.firstLSN), "exactly the checkpointed, shipped prefix went")
        let vault = try Vault(root: FilePath(dir + "/vault"))
        #expect(try vault.lsnRange().last >= LSN(before.last!.firstLSN.rawValue - 1), "every sealed segment shipped")
        #expect(shipper.current.pendingSegments == 0)
        #expect(shipper.current.error == nil)
    }

    /// A vault that cannot take what is shipped — a write fails with ENOSPC part-way, an fsync
    /// with EIO, the rename of a new base (initial replication) or of a layer into place with
    /// EIO (FaultInjection) — keeps nothing, not even a temporary file, and the source keeps its
    /// segments; then shipping resumes and nothing is missing.
    @Test(arguments: [(FaultInjection.Operation.write, Errno.noSpace, "vault"), (.sync, .ioError, "vault"),
                      (.rename, .ioError, "vault/bases"), (.rename, .ioError, "vault/layers")])
    func aFailedIngestKeepsTheSegmentsAndShippingResumes(operation: FaultInjection.Operation, errno: Errno, under: String) throws {
        let dir = try makeTemporaryDirectory("ship")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var site = try Site.initialize(at: FilePath(dir + "/site"), vault: dir + "/vault")
        _ = try site.createDisk(name: "d0", sizeBytes: 16 << 20, from: nil)
        try Vault(root: FilePath(dir + "/vault"), create: true).claim(group: site.config.groupID)
        let (journal, _) = try Journal.open(directory: site.journalDirectory, groupID: site.config.groupIDBytes, configuration: .init(segmentBytes: 1 << 20))
        defer { try? journal.close() }
        for i in 0..<800 {
            _ = try [UInt8](repeating: UInt8(i & 0xFF), count: 4096).withUnsafeBytes {
                try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i % 4000)), data: $0)
            }
        }
        try waitForDurableSeals(journal)
        let before = try JournalDirectory.segments(in: site.journalDirectory)
        FaultInjection.arm(operation, under: dir + "/" + under, errno: errno, writtenBytes: 1000)
        defer { FaultInjection.disarm(under: dir + "/" + under) }
        let shipper = Shipper(site: site, target: try LocalVaultReplica(root: FilePath(dir + "/vault"), logger: Logger(label: "test")), journal: journal,
                              logger: Logger(label: "test")) { LSN(1 << 40) }
        defer { shipper.stop() }
        let error = #expect(throws: LifeboatError.self) { try shipper.shipOnce() }
        #expect(error?.errno == errno)
        #expect(try JournalDirectory.segments(in: site.journalDirectory).map(\.firstLSN) == before.map(\.firstLSN), "the source keeps every segment")
        #expect(try Vault(root: FilePath(dir + "/vault")).lsnRange().last == .zero, "the vault took nothing")
        let leftover = try FileManager.default.contentsOfDirectory(atPath: dir + "/vault/incoming")
        #expect(leftover == [], "no temporary file left")
        try shipper.shipOnce()
        let vault = try Vault(root: FilePath(dir + "/vault"))
        #expect(try vault.lsnRange().last == LSN(before.last!.firstLSN.rawValue - 1), "every sealed segment shipped after the failure")
        #expect(try VaultVerifier.verify(vault).problems.isEmpty)
        #expect(try JournalDirectory.segments(in: site.journalDirectory).count == 1, "then the shipped, checkpointed ones go")
    }

    /// A round that heard "owner" before a failover and asks what the vault holds after it
    /// (the race CI caught: the old site deleted its own writes after the fork, the only copy of
    /// them, and re-protect could no longer replace them). The vault answers for this writer's
    /// records — through the fork — not with the new generation's LSNs, so only what the history
    /// holds of it goes.
    @Test func aWriterThatHearsOfAFailoverLateKeepsItsRecordsPastTheFork() throws {
        let f = try ShippingFixture(writes: 1200)
        defer { f.remove() }
        let (dir, site, journal) = (f.dir, f.site, f.journal)
        let segments = try JournalDirectory.segments(in: site.journalDirectory)
        #expect(segments.count >= 4)
        let vault = try Vault(root: FilePath(dir + "/vault"))
        let zeros = dir + "/zeros.img"
        #expect(FileManager.default.createFile(atPath: zeros, contents: nil) && truncate(zeros, 16 << 20) == 0)
        try vault.addDisk(group: site.config.groupID, id: site.config.disks[0].diskID, name: "d0", sizeBytes: 16 << 20, initialContent: FilePath(zeros))
        for s in segments.prefix(2) { _ = try vault.ingest(segment: try readWholeFile(s.path), name: s.path.string) }
        let fork = LSN(segments[2].firstLSN.rawValue - 1)
        let token = String(repeating: "b", count: 32)
        _ = try vault.fork(at: fork, pointID: nil, owner: token, ownerName: "recovery host")
        // The failed-over site writes on, in generation 2, past every LSN the old one has.
        try FileManager.default.createDirectory(atPath: dir + "/b-journal", withIntermediateDirectories: false)
        let (b, _) = try Journal.open(directory: FilePath(dir + "/b-journal"), groupID: site.config.groupIDBytes,
                                      configuration: .init(segmentBytes: 1 << 20), durableThrough: fork, startingAfter: fork)
        for i in 0..<1500 {
            _ = try [UInt8](repeating: 7, count: 4096).withUnsafeBytes { try b.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i % 4000)), data: $0) }
        }
        try b.sealIfOlder(than: .zero)
        try b.close()
        for s in try JournalDirectory.segments(in: FilePath(dir + "/b-journal")).dropLast() {  // the last is open
            _ = try vault.ingest(segment: try readWholeFile(s.path), name: s.path.string, as: WriterClaim(generation: 2, owner: token))
        }
        #expect(try vault.lsnRange().last > LSN(segments.last!.firstLSN.rawValue))
        #expect(try vault.heldThrough(for: .original) == fork)
        #expect(try vault.heldThrough(for: WriterClaim(generation: 2, owner: token)) == vault.lsnRange().last)
        // The one-read answer says the same, for each writer.
        let disk: Set<DiskID> = [site.config.disks[0].diskID]
        #expect(try vault.state(of: WriterClaim(generation: 2, owner: token))
                == WriterState(groupID: site.config.groupID, diskIDs: disk, heldThrough: vault.lsnRange().last, standing: .owner))
        let old = try vault.state(of: .original)
        #expect(old.groupID == site.config.groupID && old.diskIDs == disk && old.heldThrough == fork)
        #expect(old.standing == (try vault.standing(of: .original)) && old.standing != .owner, "the old writer is fenced")

        let shipper = Shipper(site: site, target: StaleOwner(try LocalVaultReplica(root: FilePath(dir + "/vault"), logger: Logger(label: "test"))),
                              journal: journal, logger: Logger(label: "test")) { LSN(1 << 40) }
        defer { shipper.stop() }
        _ = try? shipper.shipOnce()  // its first record past the fork is refused: fenced
        let after = try JournalDirectory.segments(in: site.journalDirectory)
        #expect(after.map(\.firstLSN) == Array(segments.dropFirst(2)).map(\.firstLSN), "only what the history holds of it went")
    }

    /// A full round asks the vault one question (`state()`) where it asked four: one request,
    /// not four, to a vault on another machine.
    @Test func aFullRoundAsksTheVaultOneQuestion() throws {
        let f = try ShippingFixture(writes: 1200)
        defer { f.remove() }
        try f.journal.sealIfOlder(than: .zero)
        let counting = QuestionCounter(try LocalVaultReplica(root: FilePath(f.dir + "/vault"), logger: Logger(label: "test")))
        let shipper = Shipper(site: f.site, target: counting, journal: f.journal, logger: Logger(label: "test")) { LSN(1 << 40) }
        defer { shipper.stop() }
        try shipper.shipOnce()
        #expect(counting.asked.withLock { $0 } == ["state"])
        #expect(try Vault(root: FilePath(f.dir + "/vault")).lsnRange().last > .zero, "the round shipped")
    }

    /// A segment whose seal is still being synced is not shipped: a crash could still take its
    /// tail, and the vault must never hold what the site may lose. Once the seal is durable, it goes.
    @Test func aSegmentIsShippedOnlyOnceItsSealIsDurable() throws {
        let f = try ShippingFixture(writes: 0)
        defer { f.remove() }
        f.journal.holdSeals(true)
        for _ in 0..<2000 where !f.journal.spareIsReady { usleep(5000) }  // without one a seal is synced at once
        try #require(f.journal.spareIsReady)
        let first = f.journal.stats.currentSegmentPath
        var block: UInt64 = 0
        while f.journal.stats.currentSegmentPath == first {  // 1 MiB segments: fill one until it rolls
            _ = try [UInt8](repeating: 1, count: 4096).withUnsafeBytes { try f.journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(block), data: $0) }
            block += 1
        }
        let shipper = Shipper(site: f.site, target: try LocalVaultReplica(root: FilePath(f.dir + "/vault"), logger: Logger(label: "test")),
                              journal: f.journal, logger: Logger(label: "test")) { LSN(1 << 40) }
        defer { shipper.stop() }
        try shipper.shipOnce()
        let vault = try Vault(root: FilePath(f.dir + "/vault"))
        #expect(try vault.lsnRange().last == .zero, "nothing of the segment whose seal is pending")
        f.journal.holdSeals(false)
        try f.journal.sync()
        try shipper.shipOnce()
        #expect(try vault.lsnRange().last == LSN(f.journal.stats.currentSegmentFirstLSN.rawValue - 1), "all of it, seal included, once durable")
    }

    /// The once-a-second standing check takes the answer a full round got under a second ago:
    /// while writes seal a segment every quarter second, the shipper asks the vault `state`
    /// (once a round) and never `standing` beside it.
    @Test(.timeLimit(.minutes(1))) func theStandingCheckTakesAFreshRoundsAnswer() throws {
        let f = try ShippingFixture(writes: 1)
        defer { f.remove() }
        let counting = QuestionCounter(try LocalVaultReplica(root: FilePath(f.dir + "/vault"), logger: Logger(label: "test")))
        let shipper = Shipper(site: f.site, target: counting, journal: f.journal, logger: Logger(label: "test"),
                              fence: try SiteFence(site: f.site)) { LSN(1 << 40) }
        defer { shipper.stop() }
        try shipper.start()
        for i in 0..<10 {  // 2.5 s: the standing check falls due twice
            _ = try [UInt8](repeating: UInt8(i), count: 4096).withUnsafeBytes {
                try f.journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i)), data: $0)
            }
            try f.journal.sync()
            try f.journal.sealIfOlder(than: .zero)
            shipper.poke()
            Thread.sleep(forTimeInterval: 0.25)
        }
        let asked = counting.asked.withLock { $0 }
        #expect(asked.filter { $0 == "state" }.count >= 5, "full rounds ran: \(asked)")
        #expect(!asked.contains("standing"), "\(asked)")
    }

    @Test func aVaultOfAnotherGroupIsNeverShippedTo() throws {
        let f = try ShippingFixture(writes: 1, vaultGroup: "ffffffffffffffffffffffffffffffff")
        defer { f.remove() }
        let (dir, site, journal) = (f.dir, f.site, f.journal)
        try journal.sealIfOlder(than: .zero)
        let shipper = Shipper(site: site, target: try LocalVaultReplica(root: FilePath(dir + "/vault"), logger: Logger(label: "test")), journal: journal,
                              logger: Logger(label: "test")) { LSN(100) }
        defer { shipper.stop() }
        let error = #expect(throws: LifeboatError.self) { try shipper.shipOnce() }
        #expect(error?.message.contains("belongs to protection group ffffffffffffffffffffffffffffffff") == true)
        #expect(try Vault(root: FilePath(dir + "/vault")).disks().isEmpty, "nothing seeded into another group's vault")
        #expect(try JournalDirectory.segments(in: site.journalDirectory).count >= 1, "nothing local deleted")
    }
}

/// A replica target that passes every call to a real one: tests override what they change.
class ForwardingTarget: ReplicaTarget, @unchecked Sendable {
    let real: any ReplicaTarget
    init(_ real: any ReplicaTarget) { self.real = real }
    var address: String { real.address }
    func groupID() throws -> String? { try real.groupID() }
    func heldThrough() throws -> LSN { try real.heldThrough() }
    func standing() throws -> WriterStanding { try real.standing() }
    func state() throws -> ReplicaState { try real.state() }
    func addDisk(group: String, id: DiskID, name: String, sizeBytes: Int64, initialContent: FilePath, progress: (Int64) -> Void) throws {
        try real.addDisk(group: group, id: id, name: name, sizeBytes: sizeBytes, initialContent: initialContent, progress: progress)
    }
    func reportDrained(at lsn: LSN) throws { try real.reportDrained(at: lsn) }
    func prepare(segment: [UInt8]) throws -> PreparedSegment { try real.prepare(segment: segment) }
    func send(_ segment: PreparedSegment, name: String) throws -> PendingShip { try real.send(segment, name: name) }
    func append(records: [UInt8], firstLSN: LSN, name: String) throws -> LSN { try real.append(records: records, firstLSN: firstLSN, name: name) }
    func openResync(resumingAt: LSN) throws -> LSN { try real.openResync(resumingAt: resumingAt) }
    func point(at lsn: LSN) throws -> Int64? { try real.point(at: lsn) }
    func annotate(point id: Int64, note: String) throws { try real.annotate(point: id, note: note) }
    var maintenanceError: String? { real.maintenanceError }
    func reset() { real.reset() }
    func close() { real.close() }
}

/// A replica target whose first answer on standing says "owner": the answer to a question
/// asked before a failover, arriving after it. Everything else is the vault's own answer.
final class StaleOwner: ForwardingTarget, @unchecked Sendable {
    private var answeredOnce = false
    override func standing() throws -> WriterStanding {
        if answeredOnce { return try real.standing() }
        answeredOnce = true
        return .owner
    }
    override func state() throws -> ReplicaState {
        var state = try real.state()
        if !answeredOnce {
            answeredOnce = true
            state.standing = .owner
        }
        return state
    }
}

/// A replica target that notes which of the vault's questions it is asked (the answers
/// are the vault's own).
final class QuestionCounter: ForwardingTarget, @unchecked Sendable {
    let asked = Mutex<[String]>([])
    override func groupID() throws -> String? { asked.withLock { $0.append("groupID") }; return try real.groupID() }
    override func heldThrough() throws -> LSN { asked.withLock { $0.append("heldThrough") }; return try real.heldThrough() }
    override func standing() throws -> WriterStanding { asked.withLock { $0.append("standing") }; return try real.standing() }
    override func state() throws -> ReplicaState { asked.withLock { $0.append("state") }; return try real.state() }
}
