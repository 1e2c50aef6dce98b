import Foundation
import LifeboatCore
import LifeboatShipping
import LifeboatWire
import LifeboatIdentity
import LifeboatSite
import LifeboatJournal
import Logging
import Synchronization
import SystemPackage

/// The disks of a site under protection, sharing one journal and one LSN space.
///
/// Write path (`write`): widen to whole 4 KiB blocks (reading the partial ones from the
/// primary), take the blocks' stripe locks, append to the journal (the LSN is assigned
/// there; a write to a cold region of the activity log waits for its record to be durable),
/// write the primary, update the digest leaves, release. Writes hold the apply lock shared; a
/// checkpoint takes it exclusively for an instant to read an LSN that every applied write is at
/// or below and to start a new activity epoch.
public final class ProtectionGroup: @unchecked Sendable {
    public struct Options: Sendable {
        public var segmentBytes: Int64 = 64 << 20
        public var sealInterval: Duration = .seconds(1)
        public var checkpointInterval: Duration = .seconds(5)
        /// A crash-consistent point is marked this often while there are writes.
        public var pointInterval: Duration = .seconds(3)
        /// Ship to the site's vault (off for an offline recovery, `journal recover`).
        public var ships = true
        /// How the journal prepares its spare segments (`--spare-fill`, for the power-loss harness).
        public var spareFill: SpareFill = .adaptive
        /// `--bandwidth`: the rate shipping may use towards a vault on another machine.
        public var bandwidth: BandwidthSchedule?
        /// `--spool-limit`: unshipped journal kept at most before dropping to a resync (nil: half
        /// the space free on the journal's file system at start; `Int64.max`: none).
        public var spoolLimit: Int64?
        public init() {}
    }

    public let site: Site
    /// Whether this site still writes its group's history (decision 0012): checked by every
    /// write, set by the shipper when the vault names a newer generation.
    let fence: SiteFence
    let journal: Journal
    let disks: [ProtectedDisk]
    private let activity: ActivityLog
    let stripes = StripedLocks()
    let applyLock = ReadWriteLock()
    private let siteLock: FileDescriptor
    private let options: Options
    let logger: Logger
    public let recovery: RecoveryReport
    public let replayedRecords: Int
    /// Blocks re-journaled from the primaries after an unclean stop (activity log).
    public private(set) var rejournaledBlocks = 0
    private let checkpointState = Mutex<(lsn: LSN, at: ContinuousClock.Instant)>((.zero, .now))
    private let markerState = Mutex<(lsn: LSN, at: ContinuousClock.Instant)>((.zero, .now))
    /// Every disk's digest root at the newest marker (or at the start): what `status` shows, so
    /// that its refresh never pauses the writes to compute roots.
    private let markedRoots = Mutex<(lsn: LSN, roots: [DiskID: Hash128])>((.zero, [:]))
    /// The first journaled write a primary failed to take: checkpoints stay below it, so that a
    /// restart replays it onto the primary.
    private let firstUnapplied = Mutex<LSN?>(nil)
    /// Writes whose primary took the blocks while their record failed (commitBesideTheJournal):
    /// disk position, first block, block count; re-journaled before the next marker or checkpoint.
    private let primaryAhead = Mutex<[(disk: Int, first: BlockIndex, count: Int)]>([])
    /// Helpers (one per core but one, at most four) that write a large write's primary beside its
    /// journal append (decision 0013).
    private let primaryWriters: PrimaryWriters
    /// Ships sealed segments to the site's vault, when it has one.
    private(set) var shipper: Shipper?
    /// Rung by the journal after each seal: wakes the shipper (which exists only later).
    private let sealedSegments = Doorbell()
    /// The spool limit's drops and the resync of what they lost, when shipping.
    private(set) var overflow: SpoolOverflow?
    private let resyncLoop = BackgroundLoop(name: "lifeboat-resync", interval: .milliseconds(50))
    /// Copies failed-over disks' recovery points into their primaries (ProtectionGroup+Fill).
    let fillLoop = BackgroundLoop(name: "lifeboat-fill", interval: .milliseconds(1))
    /// The fill's last failure, logged once (it is retried every pass).
    var fillError: String?
    private var fillBuffer: UnsafeMutableRawBufferPointer?
    /// Where the fill of each disk goes on from (the fill thread's own).
    var fillCursor: [Int] = []
    /// Where the resync stands: the job's generation and how many of its regions are in the journal.
    private var resyncCursor: (generation: UInt64, done: Int)?
    /// The resync's records the vault may not hold yet: the last LSN and the bytes of each region.
    private var resyncInFlight: [(lsn: LSN, bytes: Int64)] = []
    /// The resync's last failure, logged once (it is retried every pass).
    private var resyncError: String?
    let startedAt = Date()

    /// Takes the site lock, opens every disk, checks the whole journal, cuts a torn tail,
    /// replays onto the primaries every record after the last checkpoint, and checkpoints.
    public static func open(site: Site, options: Options = .init(), logger: Logger) throws -> ProtectionGroup {
        let lockFD = try site.lock(for: "starting another protect")
        do {
            return try ProtectionGroup(site: site, options: options, logger: logger, lockFD: lockFD)
        } catch {
            try? lockFD.close()
            throw error
        }
    }

    private init(site: Site, options: Options, logger: Logger, lockFD: FileDescriptor) throws {
        self.site = site
        self.options = options
        self.logger = logger
        self.siteLock = lockFD
        guard access(site.changePointIntentPath.string, F_OK) != 0 else {
            throw LifeboatError(.busy, "a change of point was interrupted: run `lifeboat failover change-point` again to finish it before protecting",
                                path: site.changePointIntentPath.string)
        }
        self.fence = try SiteFence(site: site)
        if let refusal = fence.refusal { logger.warning("\(refusal.message)") }
        let saved = try Checkpoint.load(from: site.stateDirectory)
        if !saved.cleanStop {
            logger.warning("the previous protect did not stop cleanly; recovering from the journal after LSN \(saved.appliedLSN)")
        }
        var opened: [ProtectedDisk] = []
        for config in site.config.disks { opened.append(try ProtectedDisk(site: site, config: config)) }
        let byID = Dictionary(uniqueKeysWithValues: opened.map { ($0.id, $0) })
        var replayed = 0
        var writtenSinceCheckpoint: [DiskID: Set<Int>] = [:]
        let ships = options.ships && site.config.vault != nil
        let sealed = sealedSegments
        let (journal, report) = try Journal.open(
            directory: site.journalDirectory, groupID: site.config.groupIDBytes,
            configuration: .init(segmentBytes: options.segmentBytes, keepsSealedSegmentsCached: ships, sealed: { sealed.ring() },
                                 spareFill: options.spareFill),
            durableThrough: saved.appliedLSN, startingAfter: saved.appliedLSN
        ) { (scan, raw) throws in
            for record in scan.records where record.header.type == .write {
                let payload = record.payload(in: raw)
                let write = WritePayloadHeader.decode(payload)!  // the scan validated it
                guard let disk = byID[write.disk] else {
                    throw LifeboatError(.corrupt, "write record for disk id \(write.disk), which the site does not have", path: scan.path.string, offset: Int64(record.offset))
                }
                guard (Int(write.firstBlock.rawValue) + Int(write.blockCount)) <= disk.config.blockCount else {
                    throw LifeboatError(.corrupt, "write record past the end of disk '\(disk.config.name)'", path: scan.path.string, offset: Int64(record.offset))
                }
                disk.lastLSN.store(record.header.lsn.rawValue, ordering: .relaxed)
                guard record.header.lsn > saved.appliedLSN else { continue }
                writtenSinceCheckpoint[write.disk, default: []].formUnion(ActivityLog.regions(first: write.firstBlock, count: Int(write.blockCount)))
                try disk.apply(firstBlock: write.firstBlock, data: UnsafeRawBufferPointer(rebasing: payload[JournalFormat.writePayloadHeaderSize...]))
                replayed += 1
            }
        }
        self.journal = journal
        self.disks = opened
        self.activity = ActivityLog(blockCounts: opened.map(\.config.blockCount))
        self.primaryWriters = try PrimaryWriters(count: min(4, max(1, ProcessInfo.processInfo.activeProcessorCount - 1)))
        self.recovery = report
        self.replayedRecords = replayed
        if let torn = report.tornTail {
            logger.warning("torn journal tail cut off: \(torn.segment) at offset \(torn.offset), \(torn.bytes) bytes (\(torn.reason)); kept in \(torn.evidence)")
        }
        if replayed > 0 { logger.notice("replayed \(replayed) journal records onto the primaries") }
        if !saved.cleanStop {
            try rejournal(regionsOf: saved, writtenSinceCheckpoint)
        }
        try checkpoint(clean: false)
        if disks.contains(where: { !$0.primaryHoldsAll }) {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.fillPieceBlocks << BlockSize.shift, alignment: BlockSize.bytes)
            fillCursor = [Int](repeating: 0, count: disks.count)
            nonisolated(unsafe) let scratch = buffer
            do { try fillLoop.start { [weak self] in self?.fillStep(buffer: scratch) } } catch {
                buffer.deallocate()
                throw error
            }
            fillBuffer = buffer
        }
        markerState.withLock { $0.lsn = journal.stats.appendedLSN }
        markedRoots.withLock { $0 = (journal.stats.appendedLSN, rootsWhilePaused()) }  // no writer yet
        guard options.spoolLimit == nil || !options.ships || site.config.vault != nil else {
            throw LifeboatError(.invalidArgument, "--spool-limit bounds the journal kept for a vault; this site has none")
        }
        if ships, let vault = site.config.vault {
            // A directory, or the vault on another machine through the site's bundle.
            let remote = site.hasRemoteVault
                ? try RemoteVaultReplica(bundle: try SiteBundle.load(site.vaultBundlePath), bandwidth: options.bandwidth, writer: fence.claim) : nil
            guard remote != nil || options.bandwidth == nil else {
                throw LifeboatError(.invalidArgument, "--bandwidth paces the wire to a vault on another machine; this site's vault is a directory (\(vault))")
            }
            let overflow = try SpoolOverflow(site: site, limit: try Self.spoolLimit(options.spoolLimit, journal: site.journalDirectory))
            self.overflow = overflow
            let target: any ReplicaTarget = try remote ?? LocalVaultReplica(root: FilePath(vault), logger: logger, writer: fence.claim, key: try site.config.recoveredFrom?.key())
            // A vault on this machine answers at once: a site a failover left is fenced before it
            // serves its first write (one on the network learns it at the shipper's first round).
            if remote == nil, case .fenced(let why)? = try? target.standing(), try fence.fence(why: why) {
                logger.critical("this site is fenced and serves no writes: \(why)")
            }
            let shipper = Shipper(site: site, target: target, journal: journal, logger: logger, pacer: remote?.pacer, overflow: overflow, fence: fence) {
                [weak self] in self?.checkpointState.withLock { $0.lsn } ?? .zero
            }
            shipper.drain = { [weak self] in try self?.drainForPlannedFailover() }
            self.shipper = shipper
            sealedSegments.answer { shipper.poke() }
            do {
                try shipper.start()
                try resyncLoop.start { [weak self] in self?.resyncStep() }
            } catch {
                shipper.stop()  // its vault's upkeep thread, if that one started
                throw error
            }
        }
    }

    /// The spool limit in bytes: as given, or half the space free on the journal's file system.
    static func spoolLimit(_ given: Int64?, journal: FilePath) throws -> Int64? {
        if let given { return given == .max ? nil : given }
        var st = statvfs()
        guard statvfs(journal.string, &st) == 0 else {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot read the free space of the journal's file system", path: journal.string)
        }
        return max(Int64(st.f_bavail) * Int64(st.f_frsize) / 2, 64 << 20)
    }

    deinit {
        fillLoop.stop()
        fillBuffer?.deallocate()
        try? siteLock.close()
    }

    // MARK: Write path

    /// Captures a write of `data` at byte `offset` of disk `index` (position in `disks`).
    @inline(__always)
    func write(disk index: Int, offset: Int64, data: UnsafeRawBufferPointer) throws {
        let disk = disks[index]
        guard offset >= 0, data.count > 0, offset + Int64(data.count) <= disk.sizeBytes else {
            throw LifeboatError(.invalidArgument, "write of \(data.count) bytes at \(offset) is outside the \(disk.sizeBytes)-byte disk")
        }
        let (first, count) = BlockSize.blocks(coveringOffset: offset, length: data.count)
        applyLock.lockShared()
        defer { applyLock.unlock() }
        if let refusal = fence.refusal { throw refusal }  // under the lock: see SiteFence.refusal
        try stripes.withBlocks(first: first, count: count) { () throws in
            let end = offset + Int64(data.count)
            let wholeFrom = (offset + Int64(BlockSize.bytes - 1)) & ~Int64(BlockSize.bytes - 1)
            let wholeTo = end & ~Int64(BlockSize.bytes - 1)
            guard wholeFrom < wholeTo else {
                // Within two blocks and none whole: read-modify-write them.
                return try commitPartial(index, offset: offset, data: data)
            }
            // The whole blocks go as they came; a partial block at either edge is read,
            // overlaid and committed on its own. The kernel sends a writer's buffer that is not
            // page-aligned (direct-io mode) as a request ending inside a block and a short one
            // for the rest: this keeps the bulk of it free of copies. The edge blocks' reads
            // are started first and the whole blocks committed while the device reads them
            // (a block not in the page cache is a device read on the request's path: 15% of a
            // sequential writer's speed). One write, up to three records, in any order (they
            // hold different blocks): no marker can fall between them (the apply lock is held
            // shared).
            if offset < wholeFrom { disk.prefetchBlock(at: wholeFrom - Int64(BlockSize.bytes)) }
            if wholeTo < end { disk.prefetchBlock(at: wholeTo) }
            try commit(index, first: BlockIndex(UInt64(wholeFrom) >> UInt64(BlockSize.shift)),
                       blocks: UnsafeRawBufferPointer(rebasing: data[Int(wholeFrom - offset)..<Int(wholeTo - offset)]))
            if offset < wholeFrom {
                try commitPartial(index, offset: offset, data: UnsafeRawBufferPointer(rebasing: data[..<Int(wholeFrom - offset)]))
            }
            if wholeTo < end {
                try commitPartial(index, offset: wholeTo, data: UnsafeRawBufferPointer(rebasing: data[Int(wholeTo - offset)...]))
            }
        }
    }

    /// A write within at most two blocks that covers neither whole: the blocks are read from
    /// the primary, overlaid and committed (a buffer on the stack: no allocation per request).
    private func commitPartial(_ index: Int, offset: Int64, data: UnsafeRawBufferPointer) throws {
        let disk = disks[index]
        let (first, count) = BlockSize.blocks(coveringOffset: offset, length: data.count)
        try withUnsafeTemporaryAllocation(byteCount: count << BlockSize.shift, alignment: BlockSize.bytes) { whole in
            do { try disk.readBlocks(at: first.byteOffset.rawValue, into: whole) } catch {
                throw LifeboatError.wrapping(error, "primary read for a partial-block write failed", path: disk.primaryPath.string, offset: first.byteOffset.rawValue)
            }
            let delta = Int(offset - first.byteOffset.rawValue)
            UnsafeMutableRawBufferPointer(rebasing: whole[delta..<(delta + data.count)]).copyMemory(from: data)
            try commit(index, first: first, blocks: UnsafeRawBufferPointer(whole))
        }
    }

    @inline(__always)
    private func commit(_ index: Int, first: BlockIndex, blocks: UnsafeRawBufferPointer) throws {
        let disk = disks[index]
        let count = blocks.count >> BlockSize.shift
        let cold = activity.isCold(disk: index, first: first, count: count)
        if !cold && count >= Self.besideTheJournalBlocks, let helper = primaryWriters.start(disk, first: first, data: blocks) {
            return try commitBesideTheJournal(index, first: first, blocks: blocks, helper: helper)
        }
        let lsn = try journal.appendWrite(disk: disk.id, firstBlock: first, data: blocks)
        if cold {
            // The record must be durable before the primary can hold the write (ActivityLog).
            try journal.sync()
        }
        activity.touch(disk: index, first: first, count: count)
        do { try disk.apply(firstBlock: first, data: blocks) } catch {
            firstUnapplied.withLock { $0 = min($0 ?? lsn, lsn) }
            throw error
        }
        disk.lastLSN.store(lsn.rawValue, ordering: .relaxed)
    }

    /// Writes from this size on, to a warm region, have their primary written by a helper while
    /// the record is appended (PrimaryWriters): 256 KiB, where the hand-over is under 1% of the work.
    static let besideTheJournalBlocks = 64

    /// The record appended while a helper writes the primary (a warm region: its order does not
    /// matter for recovery, ActivityLog). An append that fails after the primary took the
    /// blocks leaves the primary ahead of the journal; they are re-journaled from the primary
    /// before the next marker or checkpoint (`rejournalPrimaryAhead`), so that neither a point
    /// nor a clean stop claims a disk the journal does not hold.
    private func commitBesideTheJournal(_ index: Int, first: BlockIndex, blocks: UnsafeRawBufferPointer, helper: PrimaryWriters.Helper) throws {
        let disk = disks[index]
        activity.touch(disk: index, first: first, count: blocks.count >> BlockSize.shift)
        let appended = Result { try journal.appendWrite(disk: disk.id, firstBlock: first, data: blocks) }
        let applied = Result { try primaryWriters.wait(helper) }
        switch (appended, applied) {
        case (.success(let lsn), .success):
            disk.lastLSN.store(lsn.rawValue, ordering: .relaxed)
        case (.success(let lsn), .failure(let error)):
            firstUnapplied.withLock { $0 = min($0 ?? lsn, lsn) }
            throw error
        case (.failure(let error), _):
            primaryAhead.withLock { $0.append((index, first, blocks.count >> BlockSize.shift)) }
            throw error
        }
    }

    /// Appends, as fresh write records, the primary's content of the blocks whose record failed
    /// after a helper wrote them (under the exclusive apply lock: no write is in flight).
    private func rejournalPrimaryAhead() throws {
        let pending = primaryAhead.withLock { $0 }
        guard !pending.isEmpty else { return }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: pending.map(\.count).max()! << BlockSize.shift, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        for (index, first, count) in pending {
            let disk = disks[index]
            let blocks = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(count << BlockSize.shift)])
            try disk.readBlocks(at: first.byteOffset.rawValue, into: blocks)
            let lsn = try journal.appendWrite(disk: disk.id, firstBlock: first, data: UnsafeRawBufferPointer(blocks))
            disk.rehash(firstBlock: first, data: UnsafeRawBufferPointer(blocks))  // a failed helper may not have
            disk.lastLSN.store(lsn.rawValue, ordering: .relaxed)
            _ = primaryAhead.withLock { $0.removeFirst() }
        }
        logger.notice("re-journaled \(pending.count) write(s) whose records had failed after their blocks reached the primary")
    }

    /// fsync of an exposed file: every write acknowledged before it is durable in the journal.
    func flush() throws {
        try journal.flush()
    }

    // MARK: Checkpoints and background duties

    /// After an unclean stop: appends, as fresh write records, the primaries' content of every
    /// region the activity log names (the checkpoint's regions and those the replayed records
    /// write), so that the journal holds whatever the primaries hold — a write may have
    /// reached a primary while its record was lost with the power. Holes are skipped: a lost
    /// write is never a hole. Then the records are made durable.
    private func rejournal(regionsOf saved: Checkpoint, _ replayedRegions: [DiskID: Set<Int>]) throws {
        var regions = replayedRegions
        if let activity = saved.activity {
            guard activity.regionBlocks == ActivityLog.regionBlocks else {
                throw LifeboatError(.corrupt, "activity log regions of \(activity.regionBlocks) blocks, this build uses \(ActivityLog.regionBlocks)",
                                    path: Checkpoint.path(in: site.stateDirectory).string)
            }
            for (key, list) in activity.regions {
                guard let id = UInt32(key) else {
                    throw LifeboatError(.corrupt, "activity log disk id '\(key)' is not a number", path: Checkpoint.path(in: site.stateDirectory).string)
                }
                regions[DiskID(id), default: []].formUnion(list)
            }
        } else {
            logger.warning("the checkpoint predates the activity log: only the replayed regions are re-journaled; a primary may hold a write the journal lacks elsewhere")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        var blocks = 0
        for disk in disks {
            for region in (regions[disk.id] ?? []).sorted() {
                let start = Int64(region << ActivityLog.regionShift) << BlockSize.shift
                guard start < disk.sizeBytes else { continue }
                let end = min(disk.sizeBytes, start + Int64(ActivityLog.regionBlocks << BlockSize.shift))
                do {
                    // The holes' leaves are recomputed too: the digest sidecar is written back
                    // on its own, so after a power loss it can hold the leaf of a write the
                    // primary lost — and a lost write to a never-written block leaves a hole.
                    var next = start
                    try SparseImage.forEachDataPiece(of: disk.primary, sizeBytes: end, from: start, buffer: buffer) { at, bytes in
                        rehashAsZeros(disk, from: next, to: at)
                        let first = BlockIndex(UInt64(at >> BlockSize.shift))
                        let lsn = try journal.appendWrite(disk: disk.id, firstBlock: first, data: bytes)
                        disk.rehash(firstBlock: first, data: bytes)
                        disk.backing?.markFilled(first: Int(first.rawValue), count: bytes.count >> BlockSize.shift)  // the primary's now
                        disk.lastLSN.store(lsn.rawValue, ordering: .relaxed)
                        blocks += bytes.count >> BlockSize.shift
                        next = at + Int64(bytes.count)
                    }
                    rehashAsZeros(disk, from: next, to: end)
                } catch {
                    throw LifeboatError.wrapping(error, "cannot re-journal a region of the primary", path: disk.primaryPath.string, offset: start)
                }
            }
        }
        try journal.sync()
        rejournaledBlocks = blocks
        if blocks > 0 {
            logger.notice("re-journaled \(blocks) blocks of the primaries that may hold writes the journal lacked (activity log, \(regions.values.map(\.count).reduce(0, +)) regions)")
        }
    }

    /// Sets the digest leaves of the blocks in `from..<to` (a hole of the primary) to those of
    /// zero blocks.
    private func rehashAsZeros(_ disk: ProtectedDisk, from: Int64, to: Int64) {
        guard from < to else { return }
        withUnsafeTemporaryAllocation(byteCount: BlockSize.bytes, alignment: BlockSize.bytes) { zero in
            zero.initializeMemory(as: UInt8.self, repeating: 0)
            for block in Int(from >> BlockSize.shift)..<Int(to >> BlockSize.shift) {
                disk.digest.update(block, with: UnsafeRawBufferPointer(zero))
            }
        }
    }

    /// Makes the primaries and digests durable up to an LSN and records it, so that recovery
    /// replays only what follows. `clean` marks a normal stop.
    public func checkpoint(clean: Bool) throws {
        var (lsn, written) = try applyLock.withExclusive { () throws -> (LSN, [[Int]]) in
            try rejournalPrimaryAhead()
            return (journal.stats.appendedLSN, activity.advanceEpoch())
        }
        if let unapplied = firstUnapplied.withLock({ $0 }) { lsn = min(lsn, LSN(unapplied.rawValue - 1)) }
        try journal.sync()
        for disk in disks { try disk.sync() }
        var regions: [String: [Int]] = [:]
        for (disk, list) in zip(disks, written) where !list.isEmpty { regions[String(disk.id.rawValue)] = list }
        let saved = Checkpoint.Activity(regionBlocks: ActivityLog.regionBlocks, regions: regions)
        try Checkpoint(appliedLSN: lsn, cleanStop: clean, activity: saved).save(in: site.stateDirectory)
        checkpointState.withLock { $0 = (lsn, .now) }
    }

    /// Writes a recovery-point marker carrying every disk's digest at one cut: writes are
    /// paused (apply lock held exclusively) from the digests to the append, so the digests are
    /// exactly the disks' content at the marker's LSN. The marker is made durable and its
    /// segment sealed, so it ships at once.
    public func mark(_ kind: Marker.Kind, label: String) throws -> (lsn: LSN, digests: [DiskID: Hash128]) {
        if let why = overflow?.pointsPaused ?? fillingReason { throw LifeboatError(.busy, "no point now: \(why)") }
        return try appendMarker(kind, label: label, endsResync: false)
    }

    func appendMarker(_ kind: Marker.Kind, label: String, endsResync: Bool) throws -> (lsn: LSN, digests: [DiskID: Hash128]) {
        let (lsn, digests) = try applyLock.withExclusive { () throws -> (LSN, [DiskID: Hash128]) in
            try rejournalPrimaryAhead()
            let digests = rootsWhilePaused()
            let now = Int64(Date().timeIntervalSince1970 * 1e9)
            return (try journal.appendMarker(Marker(kind: kind, timeNanos: now, label: label, digests: digests, endsResync: endsResync)), digests)
        }
        markedRoots.withLock { $0 = (lsn, digests) }
        try journal.sync()
        try journal.sealIfOlder(than: .zero)  // rings the shipper
        // The seal took an LSN too: only writes after this count as "new" for the next point.
        let settled = journal.stats.appendedLSN
        markerState.withLock { $0 = (settled, .now) }
        return (lsn, digests)
    }

    /// Called a few times a second by `protect`: seals the segment by age, marks a
    /// crash-consistent point and checkpoints when due.
    public func tick() {
        do {
            let (markedLSN, markedAt) = markerState.withLock { $0 }
            if markedAt.duration(to: .now) >= options.pointInterval && journal.stats.appendedLSN > markedLSN && overflow?.pointsPaused == nil
                && fillingReason == nil {
                _ = try mark(.crashConsistent, label: "")
            }
            try journal.sealIfOlder(than: options.sealInterval)
            let (lsn, at) = checkpointState.withLock { $0 }
            if at.duration(to: .now) >= options.checkpointInterval && journal.stats.appendedLSN > lsn {
                try checkpoint(clean: false)
            }
        } catch {
            logger.error("\(error)")
        }
    }

    /// Drains: seals the last segment, checkpoints as a clean stop, ships what is sealed
    /// (when the vault is reachable), releases the site.
    public func close() throws {
        resyncLoop.stop()
        fillLoop.stop()
        try journal.sealIfOlder(than: .zero)
        try checkpoint(clean: true)
        shipper?.stop()
        try journal.close()
    }

    // MARK: Resync

    /// Unsent journal a resync lets build up before it waits for the shipper: it goes at the
    /// vault's pace, and never grows the spool towards its limit (a quarter of it at most).
    static func resyncWindow(spoolLimit: Int64?) -> Int64 { min(16 << 20, (spoolLimit ?? .max) / 4) }

    /// One pass of the resync (its own thread): appends dirty regions read from the primaries
    /// while the shipper has room, and once all are in, the marker that ends the resync.
    private func resyncStep() {
        guard let overflow, let shipper, let job = overflow.resyncJob() else {
            resyncCursor = nil
            resyncInFlight = []
            return
        }
        if resyncCursor?.generation != job.generation {
            if resyncCursor != nil { logger.notice("the resync starts again: more journal was dropped meanwhile") }
            resyncCursor = (job.generation, 0)
        }
        var done = resyncCursor!.done
        var appended = false
        do {
            while done < job.regions.count {
                let shipped = shipper.shippedLSN
                resyncInFlight.removeAll { $0.lsn <= shipped }
                let inFlight = resyncInFlight.reduce(0) { $0 + $1.bytes }
                guard !resyncLoop.isStopping, inFlight < Self.resyncWindow(spoolLimit: overflow.limit) else { break }
                let (disk, region) = job.regions[done]
                if let bytes = try resync(disk: disk, region: region) { resyncInFlight.append(bytes) }
                appended = true
                done += 1
                resyncCursor = (job.generation, done)
                overflow.resynced(done, generation: job.generation)
                if done % 8 == 0 { break }  // let the shipper's figures catch up
            }
            if appended { try journal.sync() }
            guard done == job.regions.count, !resyncLoop.isStopping else { return }
            let ended = try overflow.finish(generation: job.generation) {
                let (lsn, _) = try appendMarker(.crashConsistent, label: "", endsResync: true)
                logger.notice("resync done: \(job.regions.count) MiB read from the primaries; points resume at LSN \(lsn)")
            }
            if !ended { resyncCursor = nil }
            resyncError = nil
        } catch {
            let message = "resync: \(error)"
            if message != resyncError { logger.error("\(message)") }
            resyncError = message
        }
    }

    /// Appends region `region` of disk `disk` as it is in the primary now, in pieces small
    /// enough not to hold every writer: each piece is read and appended under its blocks'
    /// stripe locks, so no write to them falls between the read and the record. Holes are never
    /// written (the vault's base holds them as the disk's initial content).
    /// Returns the last record's LSN and the bytes appended, nil when the region is all holes.
    private func resync(disk id: DiskID, region: Int) throws -> (lsn: LSN, bytes: Int64)? {
        guard let disk = disks.first(where: { $0.id == id }) else { return nil }
        var last: (lsn: LSN, bytes: Int64)?
        let piece = 32  // blocks: 128 KiB
        let first = region << DirtyRegions.regionShift
        let end = min(first + DirtyRegions.regionBlocks, disk.config.blockCount)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: piece << BlockSize.shift, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        var block = first
        while block < end {
            let count = min(piece, end - block)
            let start = Int64(block) << BlockSize.shift
            applyLock.lockShared()
            defer { applyLock.unlock() }
            try stripes.withBlocks(first: BlockIndex(UInt64(block)), count: count) { () throws in
                do {
                    try SparseImage.forEachDataPiece(of: disk.primary, sizeBytes: start + (Int64(count) << BlockSize.shift), from: start, buffer: buffer) { at, bytes in
                        let lsn = try journal.appendWrite(disk: disk.id, firstBlock: BlockIndex(UInt64(at >> BlockSize.shift)), data: bytes)
                        last = (lsn, (last?.bytes ?? 0) + Int64(bytes.count))
                    }
                } catch {
                    throw LifeboatError.wrapping(error, "cannot resync a region of the primary", path: disk.primaryPath.string, offset: start)
                }
            }
            block += count
        }
        return last
    }

    /// Every disk's digest root at the newest marker, and the marker's LSN (free: no pause).
    public func digestsAtLastMarker() -> (lsn: LSN, roots: [DiskID: Hash128]) {
        markedRoots.withLock { $0 }
    }

    /// Every disk's root; the caller holds the apply lock exclusively (no write in flight).
    private func rootsWhilePaused() -> [DiskID: Hash128] {
        Dictionary(uniqueKeysWithValues: disks.map { ($0.id, $0.digest.root()) })
    }
}

/// A wake-up handed to a component before its receiver exists.
final class Doorbell: Sendable {
    private let receiver = Mutex<(@Sendable () -> Void)?>(nil)
    func answer(_ body: @escaping @Sendable () -> Void) { receiver.withLock { $0 = body } }
    func ring() { receiver.withLock { $0 }?() }
}
