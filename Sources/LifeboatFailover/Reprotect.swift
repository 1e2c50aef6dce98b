import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatSite
import LifeboatVault
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a re-protect (or a failback's catch-up) moved and proved.
public struct ReprotectReport: Codable, Sendable {
    public struct DiskFigures: Codable, Sendable {
        public var name: String
        public var sizeBytes: Int64
        /// Blocks this site wrote after the fork (its journal, and what it shipped before it was
        /// fenced): replaced by the history's.
        public var replacedHereBlocks: Int
        /// Blocks the current history wrote since this site's disk was last equal to it.
        public var writtenThereBlocks: Int
        /// The union, moved: bytes and runs.
        public var movedBytes: Int64
        public var extents: Int
        /// The disk's digest root after the switch, and whether it equals the point's.
        public var digest: String
        public var digestEqual: Bool
        /// Every block was compared with the point's, because the last switch found the disk
        /// unequal to its point: `movedBytes` are the blocks that differed.
        public var comparedWholeDisk: Bool?
    }
    public var site: String
    public var generation: Int64
    /// The point the disks equal now.
    public var lsn: LSN
    public var pointID: Int64?
    public var disks: [DiskFigures]
    public var bytesMoved: Int64
    public var diskBytes: Int64
    public var seconds: Double
    /// Where this site's journal went, holding the writes it made after the fork (never deleted).
    public var keptJournal: String?
    /// A re-protect interrupted after its switch and finished by this run.
    public var resumed: Bool
}

/// Re-protect (decision 0012): a site whose disks left the group's history — the old owner a
/// failover fenced — or fell behind it — a replica — becomes equal to the history's newest point
/// by moving only the blocks that differ, which the history names: the blocks written in the
/// current generation since the disks were last equal, and those this site wrote after the fork
/// (its journal, and the layers it shipped that the failover set aside). Nothing is scanned —
/// unless the last switch found a disk unequal to its point (`replicaDiffers`): then every block
/// of the point is read and compared, since the history's account did not hold for that disk.
/// The blocks are staged beside the disks first; a durable plan then switches to them, and a
/// crash before the plan leaves the disks as they were, after it finishes the switch (redo).
public enum Reprotect {
    /// `SITE/reprotect/`: the staged blocks (`NAME.staged`) and `plan.json`.
    static func directory(_ site: Site) -> FilePath { site.root.appending("reprotect") }
    static func planPath(_ site: Site) -> FilePath { directory(site).appending("plan.json") }
    /// Blocks read, staged and switched in one go: 1 MiB (a `readPoint` over the wire).
    static let pieceBlocks = 256

    struct Plan: Codable {
        var generation: Int64
        var lsn: LSN
        var pointID: Int64?
        var digests: [String: String]
        var extents: [String: BlockExtents]
        var figures: [ReprotectReport.DiskFigures]
        /// What `generation.json` says once the switch is done.
        var becomes: SiteGeneration
        var diskBytes: Int64
    }

    /// Makes `site` a replica of the current generation at its newest point. Protect must be
    /// stopped (the site lock is taken).
    public static func run(site: Site, history: VaultHistory, logger: Logger) throws -> ReprotectReport {
        let lock = try site.lock(for: "re-protecting it")
        defer { try? lock.close() }
        let started = ContinuousClock.now
        if let plan = try loadPlan(site) { return try finish(site, plan, started: started, resumed: true) }
        let current = try history.currentGeneration()
        let mine = try SiteGeneration.load(site)
        let (since, own) = try divergence(site, mine: mine, current: current, history: history)
        let listing = try history.pointListing()
        guard let point = listing.points.last(where: { $0.lsn >= current.forkLSN && $0.lsn >= since }) else {
            throw LifeboatError(.notFound, "generation \(current.number) has no point yet to re-protect to (its site marks one once its disks are filled)",
                                path: site.root.string)
        }
        let why = "a replica of generation \(current.number) (served by \(current.ownerName)) at LSN \(point.lsn): it serves no writes; `lifeboat failback` makes it the owner again"
        let becomes = SiteGeneration(generation: current.number, owner: "", forkLSN: current.forkLSN.rawValue,
                                     fenced: .init(since: Date(), why: why), replicaLSN: point.lsn.rawValue)
        let plan = try stage(site, history: history, to: point, since: since, own: own, generation: current.number, becomes: becomes,
                             compareWholeDisks: mine.replicaDiffers == true)
        return try finish(site, plan, started: started, resumed: false)
    }

    /// Where `site`'s disks left the history, and the blocks it wrote on its own since: a replica
    /// of the current generation is equal at its replica LSN; the fenced owner of the generation
    /// before is equal up to the fork, plus its own writes past it. `mine`: the site's
    /// `generation.json`.
    static func divergence(_ site: Site, mine: SiteGeneration, current: GroupGeneration, history: VaultHistory) throws -> (LSN, [DiskID: Set<Int>]) {
        guard try Checkpoint.load(from: site.stateDirectory).cleanStop else {
            throw LifeboatError(.busy, "the site did not stop cleanly: run `lifeboat protect` once to recover it (it stays fenced), stop it, then re-protect",
                                path: site.root.string)
        }
        if let replica = mine.replicaLSN.map({ LSN($0) }) {
            if mine.generation == current.number { return (replica, [:]) }
            // A replica of the generation before a newer failover: behind its fork, it only
            // catches up; past it, it holds what that generation wrote after the fork.
            if mine.generation == current.number - 1 {
                guard replica > current.forkLSN else { return (replica, [:]) }
                return (current.forkLSN, try history.forsakenBlocks(generation: mine.generation).mapValues(\.blocks))
            }
        }
        guard mine.fenced != nil || mine.generation != current.number || mine.owner != current.owner else {
            throw LifeboatError(.invalidArgument, "this site writes the group's current generation (\(current.number)): there is nothing to re-protect",
                                path: site.root.string)
        }
        guard mine.generation == current.number - 1 else {
            throw LifeboatError(.unsupported, "this site wrote generation \(mine.generation) and the group is in generation \(current.number): "
                                + "re-protect moves a site one generation on; make a new site from a point instead (`lifeboat failover`)", path: site.root.string)
        }
        var own: [DiskID: Set<Int>] = [:]
        for (disk, extents) in try history.forsakenBlocks(generation: mine.generation) { own[disk, default: []].formUnion(extents.blocks) }
        for (disk, blocks) in try journalWrites(site, after: current.forkLSN) { own[disk, default: []].formUnion(blocks) }
        return (current.forkLSN, own)
    }

    /// The blocks the site's own journal wrote after `lsn`, by disk (records' headers only).
    static func journalWrites(_ site: Site, after lsn: LSN) throws -> [DiskID: Set<Int>] {
        var found: [DiskID: Set<Int>] = [:]
        _ = try JournalDirectory.scanAll(site.journalDirectory, groupID: site.config.groupIDBytes, repairTornTail: false) { scan, raw in
            for record in scan.records where record.header.type == .write && record.header.lsn > lsn {
                guard let write = WritePayloadHeader.decode(record.payload(in: raw)) else { continue }
                let first = Int(write.firstBlock.rawValue)
                found[write.disk, default: []].formUnion(first..<(first + Int(write.blockCount)))
            }
        }
        return found
    }

    /// Writes the point's bytes of every block to move into `SITE/reprotect/NAME.staged`, makes
    /// them durable, then the plan: from here the switch happens whatever stops it.
    /// `compareWholeDisks`: the history's account of what changed cannot be trusted here (the last
    /// switch left a disk unequal to its point), so every block is read from the point and
    /// compared, and the blocks that differ move — a full resync, as `drbdadm verify` would
    /// follow with.
    static func stage(_ site: Site, history: VaultHistory, to point: ListedPoint, since: LSN, own: [DiskID: Set<Int>],
                      generation: Int64, becomes: SiteGeneration, compareWholeDisks: Bool = false) throws -> Plan {
        let dir = directory(site)
        try? FileManager.default.removeItem(atPath: dir.string)  // an interrupted staging: start again
        try PrivateFiles.makeDirectory(dir)
        let written = since < point.lsn && !compareWholeDisks ? try history.writtenBlocks(after: since, through: point.lsn) : [:]
        var extents: [String: BlockExtents] = [:]
        var figures: [ReprotectReport.DiskFigures] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pieceBlocks << BlockSize.shift, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        for disk in site.config.disks {
            let there = written[disk.diskID]?.blocks ?? []
            let here = own[disk.diskID] ?? []
            let staged = dir.appending(disk.name + ".staged")
            let fd = try FileDescriptor.open(staged, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode)
            let moving = try fd.closeAfter {
                try fd.resize(to: disk.sizeBytes)
                let moving = compareWholeDisks ? try stageDiffering(site, disk, history: history, at: point.lsn, into: fd, buffer: buffer)
                                               : try stageBlocks(there.union(here), of: disk, history: history, at: point.lsn, into: fd, buffer: buffer)
                try fd.dataSync()
                return moving
            }
            extents[disk.name] = moving
            figures.append(.init(name: disk.name, sizeBytes: disk.sizeBytes, replacedHereBlocks: compareWholeDisks ? moving.blockCount : here.count,
                                 writtenThereBlocks: there.count, movedBytes: Int64(moving.blockCount) << BlockSize.shift, extents: moving.runs.count,
                                 digest: "", digestEqual: false, comparedWholeDisk: compareWholeDisks ? true : nil))
        }
        let plan = Plan(generation: generation, lsn: point.lsn, pointID: point.id, digests: point.digests, extents: extents, figures: figures,
                        becomes: becomes, diskBytes: site.config.disks.reduce(0) { $0 + $1.sizeBytes })
        CrashPoint.reached("reprotect.staged")
        try StateFile.write(plan, to: planPath(site))
        CrashPoint.reached("reprotect.planned")
        return plan
    }

    /// Reads `blocks` of `disk` at the point into the staged file.
    static func stageBlocks(_ blocks: Set<Int>, of disk: SiteConfig.Disk, history: VaultHistory, at lsn: LSN, into staged: FileDescriptor,
                            buffer: UnsafeMutableRawBufferPointer) throws -> BlockExtents {
        let moving = BlockExtents(blocks: blocks)
        for (block, n) in moving.pieces(maxBlocks: pieceBlocks) {
            let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(n << BlockSize.shift)])
            let offset = Int64(block) << BlockSize.shift
            try history.read(pointAt: lsn, disk: disk.diskID, offset: offset, into: piece)
            _ = try staged.writeAll(toAbsoluteOffset: offset, UnsafeRawBufferPointer(piece))
        }
        return moving
    }

    /// Reads every block of `disk` at the point and stages those that differ from the primary.
    static func stageDiffering(_ site: Site, _ disk: SiteConfig.Disk, history: VaultHistory, at lsn: LSN, into staged: FileDescriptor,
                               buffer: UnsafeMutableRawBufferPointer) throws -> BlockExtents {
        let mine = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count, alignment: BlockSize.bytes)
        defer { mine.deallocate() }
        let primary = try FileDescriptor.open(site.primaryPath(disk), .readOnly, options: [.closeOnExec])
        return try primary.closeAfter {
            var differing = Set<Int>()
            let blocks = Int(disk.sizeBytes >> BlockSize.shift)
            for first in stride(from: 0, to: blocks, by: pieceBlocks) {
                let n = min(pieceBlocks, blocks - first)
                let bytes = n << BlockSize.shift
                let offset = Int64(first) << BlockSize.shift
                let theirs = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<bytes])
                try history.read(pointAt: lsn, disk: disk.diskID, offset: offset, into: theirs)
                try primary.readAll(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: mine[0..<bytes]))
                for k in 0..<n {
                    let range = (k << BlockSize.shift)..<((k + 1) << BlockSize.shift)
                    guard memcmp(theirs.baseAddress! + range.lowerBound, mine.baseAddress! + range.lowerBound, BlockSize.bytes) != 0 else { continue }
                    differing.insert(first + k)
                    _ = try staged.writeAll(toAbsoluteOffset: offset + Int64(range.lowerBound), UnsafeRawBufferPointer(rebasing: theirs[range]))
                }
            }
            return BlockExtents(blocks: differing)
        }
    }

    static func loadPlan(_ site: Site) throws -> Plan? { try StateFile.read(Plan.self, at: planPath(site), what: "the re-protect plan") }

    /// The switch (idempotent: run again after any interruption): the staged blocks into the
    /// primaries and their digest leaves, durable; the digests compared with the point's; the
    /// journal kept aside; the checkpoint at the point; `generation.json`; the plan removed.
    static func finish(_ site: Site, _ plan: Plan, started: ContinuousClock.Instant, resumed: Bool) throws -> ReprotectReport {
        var figures = plan.figures
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pieceBlocks << BlockSize.shift, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        for disk in site.config.disks {
            let staged = try FileDescriptor.open(directory(site).appending(disk.name + ".staged"), .readOnly, options: [.closeOnExec])
            let primary = try FileDescriptor.open(site.primaryPath(disk), .writeOnly, options: [.closeOnExec])
            let digest = try DigestMap(path: site.digestPath(disk), sizeBytes: disk.sizeBytes, rebuildFrom: nil)
            try staged.closeAfter {
                try primary.closeAfter {
                    for (block, n) in plan.extents[disk.name]?.pieces(maxBlocks: pieceBlocks) ?? [] {
                        let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(n << BlockSize.shift)])
                        let offset = Int64(block) << BlockSize.shift
                        try staged.readAll(at: offset, into: piece)
                        _ = try primary.writeAll(toAbsoluteOffset: offset, UnsafeRawBufferPointer(piece))
                        for k in 0..<n {
                            digest.update(block + k, with: UnsafeRawBufferPointer(rebasing: piece[(k << BlockSize.shift)..<((k + 1) << BlockSize.shift)]))
                        }
                    }
                    try primary.dataSync()
                }
            }
            try digest.sync(path: site.digestPath(disk))
            if let j = figures.firstIndex(where: { $0.name == disk.name }) {
                figures[j].digest = digest.root().description
                figures[j].digestEqual = plan.digests[disk.name] == figures[j].digest
            }
        }
        CrashPoint.reached("reprotect.applied")
        let kept = try keepJournal(site, generation: plan.generation)
        CrashPoint.reached("reprotect.kept")
        try Checkpoint(appliedLSN: plan.lsn, cleanStop: true).save(in: site.stateDirectory)
        // A disk unequal to its point is not a replica the history can account for: say so in
        // `generation.json`, and the next re-protect or failback compares every block.
        var becomes = plan.becomes
        if figures.contains(where: { !$0.digestEqual }) { becomes.replicaDiffers = true }
        try becomes.save(site)
        try FileManager.default.removeItem(atPath: directory(site).string)
        try syncDirectory(site.root)
        let report = ReprotectReport(site: site.root.string, generation: plan.generation, lsn: plan.lsn, pointID: plan.pointID, disks: figures,
                                     bytesMoved: figures.reduce(0) { $0 + $1.movedBytes }, diskBytes: plan.diskBytes,
                                     seconds: started.duration(to: .now).inSeconds, keptJournal: kept, resumed: resumed)
        if let unequal = figures.first(where: { !$0.digestEqual }) {
            throw LifeboatError(.mismatch, "after the switch, disk '\(unequal.name)' has digest \(unequal.digest), the point at LSN \(plan.lsn) has "
                                + "\(plan.digests[unequal.name] ?? "none"): the disk differs from the history outside what was moved; the next re-protect "
                                + "or failback compares every block with the point", path: site.root.string)
        }
        return report
    }

    /// Moves the journal aside (`SITE/kept/journal-gN-TIME`), never deleting it: it holds what
    /// this site wrote after the fork; the next protect starts a new one after the point.
    static func keepJournal(_ site: Site, generation: Int64) throws -> String? {
        let segments = try JournalDirectory.segments(in: site.journalDirectory)
        guard !segments.isEmpty else { return nil }
        let keptDir = site.root.appending("kept")
        try PrivateFiles.makeDirectory(keptDir)
        let stamp = ISO8601DateFormatter().string(from: Date()).replacingOccurrences(of: ":", with: "")
        let target = keptDir.appending("journal-g\(generation - 1)-\(stamp)")
        guard rename(site.journalDirectory.string, target.string) == 0 else {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot keep the journal aside", path: site.journalDirectory.string)
        }
        try PrivateFiles.makeDirectory(site.journalDirectory)
        try syncDirectory(site.root)
        return target.string
    }
}
