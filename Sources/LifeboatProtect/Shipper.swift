import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatVault
import Logging
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Ships sealed journal segments to the site's vault, in LSN order, compressed with zstd; the
/// vault holds each durably before `ingest` returns. A local segment is deleted only once the
/// vault holds it *and* a checkpoint covers it (recovery replays the local journal after the
/// checkpoint LSN, so those records must stay until the primaries are durable past them).
///
/// While the vault is missing, unreachable, read-only or full, or rejects a segment, segments
/// stay local, `status` shows the lag and the reason, and shipping resumes by itself.
public final class Shipper: @unchecked Sendable {
    public struct Figures: Codable, Sendable {
        public var vault: String
        /// Everything up to this LSN is in the vault.
        public var shippedLSN: UInt64 = 0
        public var pendingSegments = 0
        public var pendingBytes: Int64 = 0
        public var lastShippedAt: Date?
        public var error: String?
        /// While a disk's initial content is being copied into the vault: which and how far.
        public var initialReplication: String?
        /// The last failure of retention or compaction (vault damage they met): shipping goes on.
        public var maintenanceError: String?
    }

    private let site: Site
    private let journal: Journal
    private let appliedLSN: @Sendable () -> LSN
    private let logger: Logger
    private let figures: Mutex<Figures>
    private let wake = ConditionLock()
    private var stopping = false
    private var thread: Thread?
    private var vault: Vault?
    private let compressor = ZstdCompressor(level: 1)
    /// Compaction runs beside shipping, so a big merge never delays the next point.
    private lazy var compactor = Compactor(vaultPath: current.vault) { [weak self] in self?.setMaintenanceError($0.map { "compaction: \($0)" }, "compaction") }
    private var lastPrune = ContinuousClock.now

    init(site: Site, vaultPath: String, journal: Journal, logger: Logger, appliedLSN: @escaping @Sendable () -> LSN) {
        self.site = site
        self.journal = journal
        self.logger = logger
        self.appliedLSN = appliedLSN
        self.figures = Mutex(Figures(vault: vaultPath))
    }

    var current: Figures { figures.withLock { $0 } }

    func start() {
        let t = Thread { [self] in self.loop() }
        t.name = "lifeboat-shipper"
        thread = t
        t.start()
        compactor.start()
    }

    /// Stops after the segment in flight: a stop must not wait for a backlog (the rest is
    /// durable locally and ships at the next start).
    func stop() {
        wake.withLock {
            stopping = true
            wake.broadcast()
        }
        while let t = thread, !t.isFinished { usleep(5000) }
        compactor.stop()
    }

    func poke() { wake.withLock { wake.broadcast() } }

    private func loop() {
        var lastError: String?
        while true {
            if wake.withLock({ stopping }) { return }
            do {
                try shipOnce()
                if lastError != nil { logger.notice("shipping to \(current.vault) resumed") }
                lastError = nil
            } catch {
                let message = "\(error)"
                if message != lastError { logger.error("shipping paused: \(message)") }
                lastError = message
                vault = nil
                // Paused: what waits keeps growing, and status must say so (never "0 B").
                let (segments, bytes) = waiting(after: LSN(current.shippedLSN))
                figures.withLock {
                    $0.error = message
                    $0.pendingSegments = segments
                    $0.pendingBytes = bytes
                }
            }
            wake.withLock { if !stopping { wake.wait(seconds: 0.25) } }
        }
    }

    func shipOnce() throws {
        let path = current.vault
        if vault == nil {
            vault = try Vault(root: FilePath(path))
            vault?.removeStaleIncoming()
        }
        guard let vault else { return }
        // The group first: another group's vault must not be compared by LSN, seeded or shipped to.
        if let group = try vault.groupID(), group != site.config.groupID {
            throw Vault.belongsToAnotherGroup(group, not: site.config.groupID, root: FilePath(path))
        }
        try seedDisks(vault)
        let currentFirst = journal.stats.currentSegmentFirstLSN
        let local = try JournalDirectory.segments(in: journal.directory)
        let sealed = local.filter { $0.firstLSN < currentFirst }
        var shipped = try vault.lsnRange().last
        var shippedSomething = false
        // Local segments are deleted as a prefix only, against one reading of the checkpoint:
        // a checkpoint landing mid-loop must not let a newer segment go while an older one
        // stays (that would leave an LSN gap, and recovery refuses a journal with a gap).
        let applied = appliedLSN()
        var deleting = true
        for (i, segment) in sealed.enumerated() {
            if wake.withLock({ stopping }) { break }
            let next = i + 1 < local.count ? local[i + 1].firstLSN : currentFirst
            let lastLSN = LSN(next.rawValue - 1)
            if lastLSN > shipped {
                let bytes = try SegmentReader.load(segment.path)
                var packed: [UInt8] = []
                packed.reserveCapacity(bytes.count / 2)
                _ = try bytes.withUnsafeBytes { try compressor.compress($0, appendingTo: &packed) }
                _ = try vault.ingest(compressedSegment: packed, name: segment.path.string)
                // Trust only the catalog, read back, before anything local is deleted.
                shipped = try vault.lsnRange().last
                shippedSomething = true
                let now = shipped.rawValue
                figures.withLock {
                    $0.lastShippedAt = Date()
                    $0.shippedLSN = now
                }
            }
            deleting = deleting && lastLSN <= shipped && lastLSN <= applied
            if deleting {
                unlink(segment.path.string)
                try? syncDirectory(journal.directory)
            }
        }
        let (pendingSegments, pendingBytes) = waiting(after: shipped)
        if shippedSomething { compactor.poke() }
        if lastPrune.duration(to: .now) >= .seconds(60) {
            lastPrune = .now
            // Damage met by retention (a corrupt layer or catalog value) is the vault's problem,
            // not shipping's: reported in status and the log, while segments keep shipping.
            do {
                let report = try vault.prune()
                if report.mergedLayers > 0 || !report.removedPoints.isEmpty {
                    logger.info("retention: pruned \(report.removedPoints.count) point(s), merged \(report.mergedLayers) layer(s); the vault starts at LSN \(report.baseLSN)")
                }
                setMaintenanceError(nil, "retention")
            } catch {
                setMaintenanceError("retention: \(error)", "retention")
            }
        }
        figures.withLock {
            $0.shippedLSN = shipped.rawValue
            $0.pendingSegments = pendingSegments
            $0.pendingBytes = pendingBytes
            $0.error = nil
        }
    }

    /// Records (and logs, once per new message) a failure of the vault's maintenance; nil
    /// clears the one of the same `task`.
    func setMaintenanceError(_ message: String?, _ task: String) {
        let isNew: Bool = figures.withLock { f in
            guard let message else {
                if f.maintenanceError?.hasPrefix(task) == true { f.maintenanceError = nil }
                return false
            }
            defer { f.maintenanceError = message }
            return f.maintenanceError != message
        }
        if isNew, let message { logger.error("\(message)") }
    }

    /// What the vault does not hold yet: sealed segments past `shipped`, and the records of the
    /// open segment (it ships once sealed).
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

    /// Initial replication: each disk's initial content becomes its base in the vault.
    private func seedDisks(_ vault: Vault) throws {
        let held = Set(try vault.disks().map(\.id))
        for disk in site.config.disks where !held.contains(disk.diskID) {
            logger.notice("initial replication of \(disk.name) (\(disk.sizeBytes) bytes) to \(vault.root)")
            var reported: Int64 = -1
            try vault.addDisk(group: site.config.groupID, id: disk.diskID, name: disk.name, sizeBytes: disk.sizeBytes,
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

func fileSize(_ path: FilePath) -> Int64? {
    var st = Glibc.stat()
    return stat(path.string, &st) == 0 ? Int64(st.st_size) : nil
}

/// Compacts the vault's layers on its own thread when the shipper says there is new data.
final class Compactor: @unchecked Sendable {
    private let vaultPath: String
    /// Called with the error of a failed run (damage met while merging), nil after a good one.
    private let report: (Error?) -> Void
    private let wake = ConditionLock()
    private var pending = false
    private var stopping = false
    private var thread: Thread?

    init(vaultPath: String, report: @escaping (Error?) -> Void) {
        self.vaultPath = vaultPath
        self.report = report
    }

    func start() {
        let t = Thread { [self] in self.loop() }
        t.name = "lifeboat-compactor"
        thread = t
        t.start()
    }

    func poke() {
        wake.withLock {
            pending = true
            wake.broadcast()
        }
    }

    /// Stops after the merge in flight (an unfinished merge is only a file in incoming/).
    func stop() {
        wake.withLock {
            stopping = true
            wake.broadcast()
        }
        while let t = thread, !t.isFinished { usleep(5000) }
    }

    private func loop() {
        while true {
            let go: Bool = wake.withLock {
                while !pending && !stopping { wake.wait() }
                pending = false
                return !stopping
            }
            guard go else { return }
            do {
                _ = try Vault(root: FilePath(vaultPath)).compact()
                report(nil)
            } catch {
                report(error)
            }
        }
    }
}
