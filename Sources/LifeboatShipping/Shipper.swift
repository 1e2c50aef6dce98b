import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatSite
import LifeboatVault
import Logging
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Ships the journal to the site's vault through a `ReplicaTarget`, in LSN order: sealed
/// segments, and — streaming (decision 0010) — the open segment's records as they become
/// durable, every `streamInterval`, so that the vault is a fraction of a second behind rather
/// than a seal interval. The vault holds what it is sent durably before it answers. A local
/// segment is deleted only once the vault holds it *and* a checkpoint covers it (recovery
/// replays the local journal after the checkpoint LSN, so those records must stay until the
/// primaries are durable past them).
///
/// A full round (after a seal, a `poke`, or a failure) lists the journal, seeds disks, ships
/// what the vault lacks and deletes what may go; between them, a streaming round only sends the
/// open segment's new durable bytes (one call). Idle, it reads one in-memory figure of the
/// journal per interval: no listing of the journal, no query of the vault.
/// While the vault is missing, unreachable, read-only or full, or rejects a
/// segment, segments stay local, `status` shows the lag and the reason, and shipping resumes by
/// itself.
public final class Shipper: @unchecked Sendable {
    private let site: Site
    private let journal: Journal
    private let target: any ReplicaTarget
    private let appliedLSN: @Sendable () -> LSN
    private let logger: Logger
    private let figures: Mutex<ShippingStatus>
    private let loop = BackgroundLoop(name: "lifeboat-shipper", interval: Shipper.streamInterval)
    /// How often the open segment's new durable records are sent: what streaming adds to the RPO.
    public static let streamInterval: Duration = .milliseconds(100)
    /// Streaming's place in the open segment: its first LSN, the offset of the next record to
    /// send and that record's LSN. Nil until a full round finds it (again, after any failure).
    private var stream: (segment: LSN, offset: Int64, next: LSN)?
    /// Full rounds with nothing new are held to once a second (a retry, a checkpoint to wait for).
    private var lastFullRound = ContinuousClock.now
    private let clock = Mutex(RecoveryPointClock())
    /// `--bandwidth`, when the target paces its sends.
    private let pacer: Pacer?
    /// `--spool-limit`: drops what the vault lacks past it, and the gap's resync state.
    private let overflow: SpoolOverflow?
    /// Enforces the spool limit on a thread of its own: a call to the vault that hangs until its
    /// deadline (a partition) must not let the journal grow past the limit meanwhile.
    private let spoolLoop = BackgroundLoop(name: "lifeboat-spool", interval: .seconds(1))
    /// The drop's last failure (logged once; the spool thread's own).
    private var lastDropError: String?
    private var lastError: String?
    private let poked = Atomic<Bool>(true)
    /// Rounds finished, counted and broadcast under `roundDone`, for `point(at:)`; and whether
    /// those waits are given up (protect is stopping).
    private let roundDone = ConditionLock()
    private var rounds = 0
    private var waitsAbandoned = false
    /// The last round left nothing local to ship or delete: only a seal wakes the next one.
    private var settled = false

    /// Set when the vault names a newer generation: the site stops serving writes and shipping.
    private let fence: SiteFence?
    /// A planned failover's drain (the group's): stops writes, appends the final marker, returns its LSN.
    public var drain: (() throws -> LSN?)?
    private var lastStandingCheck = ContinuousClock.now - .seconds(10)
    /// The standing the last full round's `state()` answered, and when: the once-a-second
    /// check takes it while it is under a second old instead of asking again (one request a
    /// second fewer to a vault on another machine while writes seal a segment a second).
    private var roundStanding: (standing: WriterStanding, at: ContinuousClock.Instant)?
    private var drainReported = false
    private var drainError: String?

    public init(site: Site, target: any ReplicaTarget, journal: Journal, logger: Logger, pacer: Pacer? = nil,
                overflow: SpoolOverflow? = nil, fence: SiteFence? = nil, appliedLSN: @escaping @Sendable () -> LSN) {
        self.pacer = pacer
        self.fence = fence
        self.overflow = overflow
        self.site = site
        self.journal = journal
        self.target = target
        self.logger = logger
        self.appliedLSN = appliedLSN
        self.figures = Mutex(ShippingStatus(vault: target.address))
    }

    public var current: ShippingStatus {
        var f = figures.withLock { $0 }
        f.maintenanceError = target.maintenanceError
        let durable = journal.stats.durableLSN
        let shipped = f.shippedLSN
        f.rpoSeconds = clock.withLock {
            $0.shipped(shipped)
            return $0.rpo(durable: durable, shipped: shipped)
        }.inSeconds
        if let pacer {
            f.bandwidth = pacer.schedule.text
            f.bandwidthNow = pacer.currentRate
            f.predictedRPOSeconds = pacer.currentRate.map { Double(f.pendingBytes) / $0 }
        }
        if let overflow {
            f.spoolLimit = overflow.limit
            (f.resyncPendingBytes, f.droppingSince) = overflow.figures
            f.pointsPaused = overflow.pointsPaused
        }
        return f
    }

    public func start() throws {
        try loop.start { [self] in self.round() }
        if overflow?.limit != nil {
            do { try spoolLoop.start { [self] in self.enforceSpoolLimit() } } catch {
                loop.stop()
                throw error
            }
        }
    }

    /// Stops after the segment in flight: a stop must not wait for a backlog (the rest is
    /// durable locally and ships at the next start).
    public func stop() {
        spoolLoop.stop()
        loop.stop()
        target.close()
    }

    /// A segment was sealed or a point marked: ship now.
    public func poke() {
        poked.store(true, ordering: .releasing)
        loop.poke()
    }

    private func round() {
        // A full round after a seal or a question (poke), and once a second while something is
        // left (a failure to retry, a shipped segment waiting for its checkpoint); in between,
        // streaming rounds while no failure is pending.
        let durable = journal.stats.durableLSN
        clock.withLock { $0.sample(durable: durable) }
        defer { checkStandingIfDue() }  // after the round: a full round's own answer serves
        // Fenced: the group's history is another host's now; nothing more goes to the vault.
        if let why = fence?.generation.fenced?.why {
            figures.withLock { $0.error = why }
            return
        }
        let wasPoked = poked.exchange(false, ordering: .acquiring)
        let full = wasPoked || ((!settled || lastError != nil) && lastFullRound.duration(to: .now) >= .seconds(1))
        if !full && (lastError != nil || !openSegmentMoved()) { return }
        defer {
            roundDone.withLock {
                rounds += 1
                roundDone.broadcast()
            }
        }
        do {
            if full {
                lastFullRound = .now
                try shipOnce()
            } else {
                try streamOnce()
            }
            if lastError != nil { logger.notice("shipping to \(target.address) resumed") }
            lastError = nil
            figures.withLock { $0.pausedSince = nil }
        } catch {
            let message = "\(error)"
            if let e = error as? LifeboatError, e.code == .fenced { fenceSite(e.message) }
            if message != lastError { logger.error("shipping paused: \(message)") }
            lastError = message
            stream = nil
            target.reset()
            // Paused: what waits keeps growing, and status must say so (never "0 B").
            let (segments, bytes) = waiting(after: figures.withLock { $0.shippedLSN })
            figures.withLock {
                $0.error = message
                if $0.pausedSince == nil { $0.pausedSince = Date() }
                $0.pendingSegments = segments
                $0.pendingBytes = bytes
            }
        }
    }

    /// Once a second, where the site stands in the group's history: fenced by a newer
    /// generation, asked to drain for a planned failover (then the final marker, and once the
    /// vault holds it, the report), or the owner again (a planned failover withdrawn: writes
    /// are served again). A vault out of reach is said by the rounds, not here.
    private func checkStandingIfDue() {
        guard let fence, lastStandingCheck.duration(to: .now) >= .seconds(1) else { return }
        lastStandingCheck = .now
        let standing: WriterStanding
        if let known = roundStanding, known.at.duration(to: .now) < .seconds(1) {
            standing = known.standing
        } else {
            guard let asked = try? target.standing() else { return }
            standing = asked
        }
        switch standing {
        case .fenced(let why):
            fenceSite(why)
        case .drainAsked:
            do {
                guard let final = try drain?() else { return }
                if figures.withLock({ $0.shippedLSN }) >= final {
                    if !drainReported {
                        try target.reportDrained(at: final)
                        drainReported = true
                        logger.notice("the vault holds everything through the final point at LSN \(final): ready for the planned failover")
                    }
                } else {
                    poke()  // ship the final marker now
                }
                drainError = nil
            } catch {
                let message = "\(error)"
                if message != drainError { logger.error("planned failover: \(message)") }
                drainError = message
            }
        case .owner:
            guard fence.generation.draining != nil else { return }
            do {
                try fence.stopDraining()
                drainReported = false
                logger.notice("the planned failover was withdrawn: writes are served again")
            } catch {
                logger.error("the planned failover was withdrawn, but the drain could not be cleared: \(error)")
            }
        }
    }

    /// The vault named a newer generation: fence the site (durably, then writes stop).
    private func fenceSite(_ why: String) {
        guard let fence else { return }
        do {
            if try fence.fence(why: why) { logger.critical("this site is fenced and serves no more writes: \(why)") }
        } catch {
            logger.critical("the vault fenced this site but the fence could not be recorded (\(error)); writes stop for this run: \(why)")
        }
    }

    /// The vault's id for the point marked at `lsn`, once shipping has brought it there (the
    /// note, if any, kept with it); or why it is not there: shipping paused, or not within
    /// `within`. `lifeboat checkpoint` asks this through the control socket, so that it never
    /// needs to reach the vault itself.
    public func point(at lsn: LSN, note: String?, within: Duration) -> (id: Int64?, notThere: String?) {
        let deadline = ContinuousClock.now + within
        let asked = roundDone.withLock { rounds }
        poke()
        while true {
            let seen = roundDone.withLock { rounds }
            let status = figures.withLock { $0 }
            if status.shippedLSN >= lsn {
                do {
                    guard let id = try target.point(at: lsn) else { return (nil, "the vault holds LSN \(lsn) but has no point there") }
                    if let note { try target.annotate(point: id, note: note) }
                    return (id, nil)
                } catch {
                    return (nil, "\(error)")
                }
            }
            // Paused by a round run since the question: an older error may be gone by now.
            if let paused = status.error, seen > asked { return (nil, "shipping is paused: \(paused)") }
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return (nil, "shipping has not brought it there within \(describeDuration(within.inSeconds))") }
            if roundDone.withLock({ waitsAbandoned }) { return (nil, "protect is stopping: the point ships when it runs again") }
            roundDone.withLock {
                while rounds == seen && !waitsAbandoned && ContinuousClock.now < deadline {
                    _ = roundDone.wait(seconds: ContinuousClock.now.duration(to: deadline).inSeconds)
                }
            }
        }
    }

    /// Ends every `point(at:)` wait at once (protect is stopping: the control socket's thread
    /// must not hold the stop for a whole wait).
    public func abandonPointWaits() {
        roundDone.withLock {
            waitsAbandoned = true
            roundDone.broadcast()
        }
    }

    /// One round: seed what the vault lacks, ship every sealed segment it does not hold, delete
    /// the local prefix that is both shipped and checkpointed.
    func shipOnce() throws {
        // The group first: another group's vault must not be compared by LSN, seeded or shipped to.
        // One question for the four (one request to a vault on another machine).
        let state = try target.state()
        if let group = state.groupID, group != site.config.groupID {
            throw Vault.belongsToAnotherGroup(group, not: site.config.groupID, root: FilePath(target.address))
        }
        roundStanding = (state.standing, .now)
        if case .fenced(let why) = state.standing { throw LifeboatError(.fenced, why, path: target.address) }
        try seedDisks(held: state.diskIDs)  // seeding registers disks; what the vault holds of the journal stays
        var shipped = state.heldThrough
        if let resume = try overflow?.announcement(vaultHolds: shipped) {
            // Records were dropped past the spool limit: the vault learns of the gap before the
            // records after it (it refuses a gap otherwise), and makes no point until the resync ends.
            shipped = try target.openResync(resumingAt: resume)
            logger.warning("the vault lacks LSNs up to \(resume.rawValue - 1), dropped past the spool limit: resyncing their regions from the primaries")
        }
        // Only segments whose seal is durable: a crash could still take the rest of one whose
        // seal is being synced (and the vault must never hold what the site may lose).
        let currentFirst = journal.stats.durablySealedBefore
        let local = try JournalDirectory.segments(in: journal.directory)
        let sealed = local.filter { $0.firstLSN < currentFirst }
        // Local segments are deleted as a prefix only, against one reading of the checkpoint:
        // a checkpoint landing mid-loop must not let a newer segment go while an older one
        // stays (that would leave an LSN gap, and recovery refuses a journal with a gap).
        let applied = appliedLSN()
        var deleting = true
        /// A segment may go once the vault holds it and a checkpoint covers it, in order only.
        func deleteIfMay(_ path: FilePath, lastLSN: LSN) {
            deleting = deleting && lastLSN <= shipped && lastLSN <= applied
            if deleting {
                unlink(path.string)
                try? syncDirectory(journal.directory)
            }
        }
        func shippedThrough(_ lsn: LSN) {
            shipped = lsn
            figures.withLock {
                $0.lastShippedAt = Date()
                $0.shippedLSN = lsn
            }
        }
        // The next segment to go whole, read and prepared while the vault takes this one.
        var prefetched: SegmentPrefetch?
        defer { _ = try? prefetched?.get() }  // never leave its thread reading behind
        // The segment sent whose answer has not come: the next one is sent before it is awaited,
        // so that the vault takes one off the wire while it ingests the other. The vault answers
        // from its catalog, read back after the ingest: only that is trusted before anything
        // local is deleted.
        var inFlight: (answer: PendingShip, path: FilePath, lastLSN: LSN)?
        func settle() throws {
            guard let sent = inFlight else { return }
            inFlight = nil
            shippedThrough(try sent.answer.held())
            deleteIfMay(sent.path, lastLSN: sent.lastLSN)
        }
        for (i, segment) in sealed.enumerated() {
            if loop.isStopping { break }
            let next = i + 1 < local.count ? local[i + 1].firstLSN : currentFirst
            let lastLSN = LSN(next.rawValue - 1)
            let sentThrough = inFlight?.lastLSN ?? shipped
            if lastLSN > sentThrough {
                if sentThrough >= segment.firstLSN {
                    // Partly in the vault (streamed while it was open): only the rest goes.
                    try settle()
                    guard let bytes = try Self.load(segment.path) else { break }
                    if let run = try Self.records(after: shipped, in: bytes, path: segment.path) {
                        shippedThrough(try target.append(records: Array(bytes[run.offset..<run.end]), firstLSN: run.first, name: segment.path.string))
                    }
                } else {
                    let ready = prefetched?.path == segment.path ? prefetched! : SegmentPrefetch(segment.path, target: target)
                    prefetched = i + 1 < sealed.count ? SegmentPrefetch(sealed[i + 1].path, target: target) : nil
                    guard let prepared = try ready.get() else { break }
                    let answer = try target.send(prepared, name: segment.path.string)
                    try settle()
                    inFlight = (answer, segment.path, lastLSN)
                    continue
                }
            }
            try settle()
            deleteIfMay(segment.path, lastLSN: lastLSN)
        }
        try settle()
        let before = shipped
        figures.withLock { $0.shippedLSN = before }
        try streamOnce(shipped: shipped)
        shipped = figures.withLock { $0.shippedLSN }
        let (pendingSegments, pendingBytes) = waiting(after: shipped)
        figures.withLock {
            $0.pendingSegments = pendingSegments
            $0.pendingBytes = pendingBytes
            $0.error = nil
        }
        settled = deleting && pendingSegments == 0  // every sealed segment shipped and gone
    }

    /// Past the spool limit — or while records are already being dropped and the vault still
    /// cannot take them — drops the checkpointed segments the vault lacks, keeping their regions
    /// (`SpoolOverflow`). Never touches what a crash recovery needs (after the checkpoint).
    ///
    /// It runs beside the shipper's rounds, and either may act on a segment the other is at: a
    /// segment dropped while being shipped still reaches the vault (its regions are resynced
    /// needlessly, or — the vault holding everything dropped — the map is discarded unannounced);
    /// one shipped and deleted is no longer listed here. The open segment is never dropped.
    private func enforceSpoolLimit() {
        guard let overflow, let limit = overflow.limit, !spoolLoop.isStopping else { return }
        let (shipped, failing) = figures.withLock { ($0.shippedLSN, $0.error != nil) }
        let (_, pending) = waiting(after: shipped)
        guard pending > limit || (overflow.isDropping && failing) else { return }
        do {
            let applied = appliedLSN()
            let currentFirst = journal.stats.durablySealedBefore  // never drop a segment a crash could still cut
            let local = try JournalDirectory.segments(in: journal.directory)
            var drop: [(path: FilePath, lastLSN: LSN)] = []
            for (i, segment) in local.enumerated() where segment.firstLSN < currentFirst {
                let next = i + 1 < local.count ? local[i + 1].firstLSN : currentFirst
                let last = LSN(next.rawValue - 1)
                guard last <= applied else { break }
                drop.append((segment.path, last))
            }
            guard let last = drop.last?.lastLSN, last > shipped else { return }
            if !overflow.isDropping {
                logger.warning("the spool limit (\(limit >> 20) MiB) is reached with \(pending >> 20) MiB unshipped: dropping journal the vault lacks and tracking the regions it wrote; no point until they are resynced")
            }
            try overflow.drop(drop, shipped: shipped, journal: journal.directory)
            let (segments, bytes) = waiting(after: shipped)
            figures.withLock {
                $0.pendingSegments = segments
                $0.pendingBytes = bytes
            }
            lastDropError = nil
        } catch {
            let message = "cannot drop journal past the spool limit: \(error)"
            if message != lastDropError { logger.error("\(message)") }
            lastDropError = message
        }
    }

    /// Everything up to this LSN is in the vault (as last answered).
    public var shippedLSN: LSN { figures.withLock { $0.shippedLSN } }

    /// A sealed segment's bytes, read once while the seal left it in the page cache (nobody
    /// reads it again); nil when it is gone — dropped past the spool limit meanwhile (the next
    /// round lists the journal again).
    static func load(_ path: FilePath) throws -> [UInt8]? {
        do { return try SegmentReader.load(path, thenDropCache: true) } catch where !FileManager.default.fileExists(atPath: path.string) {
            return nil
        }
    }

    /// Whether the open segment has durable records streaming has not sent.
    private func openSegmentMoved() -> Bool {
        let stats = journal.stats
        guard let stream, stream.segment == stats.currentSegmentFirstLSN else { return true }
        return stats.currentSegmentDurableBytes > stream.offset
    }

    /// Sends the open segment's durable records the vault does not hold (decision 0010,
    /// "Streaming"). Where it stands is kept between rounds; without it (a new segment, a
    /// reconnect), the durable prefix is read and the records after `shipped` — the vault's
    /// durable LSN — found in it: nothing lost, nothing sent twice.
    private func streamOnce(shipped known: LSN? = nil) throws {
        let stats = journal.stats
        let end = stats.currentSegmentDurableBytes
        let position: (offset: Int64, next: LSN)
        if let stream, stream.segment == stats.currentSegmentFirstLSN {
            position = (stream.offset, stream.next)
        } else {
            // The segment before the open one is sealed but its seal not yet durable: the full
            // round its durability pokes ships it; until then the open one's records would be a gap.
            guard stats.durablySealedBefore == stats.currentSegmentFirstLSN else { return }
            let shipped = try known ?? target.heldThrough()
            // A segment sealed since the last full round goes first, whole or its rest: the next
            // full round (its seal poked it) ships it; the open one's records would be a gap.
            guard shipped.next >= stats.currentSegmentFirstLSN else {
                poke()
                return
            }
            let prefix = try Self.read(stats.currentSegmentPath, from: 0, to: end)
            guard let run = try Self.records(after: shipped, in: prefix, path: stats.currentSegmentPath) else {
                stream = (stats.currentSegmentFirstLSN, end, LSN(max(stats.durableLSN.rawValue, stats.currentSegmentFirstLSN.rawValue - 1) + 1))
                figures.withLock { $0.shippedLSN = shipped }
                return
            }
            position = (Int64(run.offset), run.first)
        }
        guard end > position.offset else { return }
        let records = try Self.read(stats.currentSegmentPath, from: position.offset, to: end)
        let held = try target.append(records: records, firstLSN: position.next, name: stats.currentSegmentPath.string)
        // The stats' durable LSN is the last record of those bytes (both read under one lock).
        guard held >= stats.durableLSN else {
            stream = nil
            throw LifeboatError(.io, "the vault holds through LSN \(held) after a run of records ending at \(stats.durableLSN)")
        }
        stream = (stats.currentSegmentFirstLSN, end, stats.durableLSN.next)
        figures.withLock {
            $0.lastShippedAt = Date()
            $0.shippedLSN = held
            if $0.pendingSegments == 0 { $0.pendingBytes = max(0, stats.currentSegmentBytes - end) }
        }
    }

    /// The records of `bytes` (a segment, or its first bytes) after `held`: where they start,
    /// the first one's LSN, and where the last one ends. Nil when there are none.
    static func records(after held: LSN, in bytes: [UInt8], path: FilePath) throws -> (offset: Int, first: LSN, end: Int)? {
        let scan = try SegmentReader.scan(bytes, path: path)
        if case .tornTail(let offset, _, let reason, _) = scan.end {
            throw LifeboatError(.corrupt, "\(reason) in a journal segment being shipped", path: path.string, offset: Int64(offset))
        }
        guard let first = scan.records.first(where: { $0.header.lsn > held }) else { return nil }
        return (first.offset, first.header.lsn, scan.validEnd)
    }

    private static func read(_ path: FilePath, from: Int64, to: Int64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Int(to - from))
        do {
            let fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
            defer { try? fd.close() }
            try bytes.withUnsafeMutableBytes { try fd.readAll(at: from, into: $0, zeroFillPastEOF: false) }
        } catch let e as Errno {
            throw LifeboatError.system(e, "cannot read the open journal segment", path: path.string)
        }
        return bytes
    }

    /// What the vault does not hold yet: sealed segments past `shipped`, and the records of the
    /// open segment past it.
    private func waiting(after shipped: LSN) -> (segments: Int, bytes: Int64) {
        let stats = journal.stats
        let local = (try? JournalDirectory.segments(in: journal.directory)) ?? []
        var segments = 0
        var bytes: Int64 = 0
        for (i, segment) in local.enumerated() where segment.firstLSN < stats.currentSegmentFirstLSN {
            let next = i + 1 < local.count ? local[i + 1].firstLSN : stats.currentSegmentFirstLSN
            if next.rawValue - 1 > shipped.rawValue {
                segments += 1
                bytes += fileSize(segment.path) ?? 0
            }
        }
        if stats.appendedLSN >= stats.currentSegmentFirstLSN && stats.appendedLSN > shipped { bytes += stats.currentSegmentBytes }
        return (segments, bytes)
    }

    /// Initial replication of the disks the vault does not hold (`held`): each one's initial
    /// content becomes its base in the vault.
    private func seedDisks(held: Set<DiskID>) throws {
        for disk in site.config.disks where !held.contains(disk.diskID) {
            logger.notice("initial replication of \(disk.name) (\(disk.sizeBytes) bytes) to \(target.address)")
            var reported: Int64 = -1
            try target.addDisk(group: site.config.groupID, id: disk.diskID, name: disk.name, sizeBytes: disk.sizeBytes,
                              initialContent: site.basePath(disk)) { done in
                let percent = disk.sizeBytes == 0 ? 100 : done * 100 / disk.sizeBytes
                if percent != reported {
                    if percent / 10 != reported / 10 { logger.info("initial replication of \(disk.name): \(percent)%") }
                    reported = percent
                    figures.withLock { $0.initialReplication = "\(disk.name): \(percent)% of \(disk.sizeBytes >> 20) MiB" }
                }
            }
            figures.withLock { $0.initialReplication = nil }
        }
    }
}

/// One sealed segment read and prepared for the wire on a thread of its own, so that the site's
/// reading and compressing overlap the vault's ingest of the segment before (one request is in
/// flight at a time; the work around it need not wait).
final class SegmentPrefetch: @unchecked Sendable {
    let path: FilePath
    private var result: Result<PreparedSegment?, any Error> = .success(nil)
    private let done = DispatchSemaphore(value: 0)

    init(_ path: FilePath, target: any ReplicaTarget) {
        self.path = path
        DispatchQueue.global(qos: .utility).async { [self] in
            result = Result { try Shipper.load(path).map { try target.prepare(segment: $0) } }
            done.signal()  // publishes `result` to the waiter
        }
    }

    /// The prepared segment (nil: gone), once ready. Called once.
    func get() throws -> PreparedSegment? {
        done.wait()
        return try result.get()
    }
}
