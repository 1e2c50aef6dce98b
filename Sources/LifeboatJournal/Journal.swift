import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The replication journal of one protection group: appends records with consecutive LSNs,
/// makes them durable with group commit, and rolls segments by size and by age.
///
/// Thread safety: every method may be called from any thread. Appends are serialized by one
/// lock (they are page-cache writes); `sync` runs fdatasync outside the lock, and callers that
/// arrive while one is running wait for it and then, if still needed, run one more for all of
/// them: many concurrent fsyncs cost one or two fdatasyncs. A seal's fdatasync runs outside
/// the lock too, on the segment preparer's thread (`pendingSeal`, decision 0002).
public final class Journal: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// A segment is sealed once it holds this many bytes.
        public var segmentBytes: Int64 = 64 << 20
        /// Sealed segments stay in the page cache for a reader that comes at once (the shipper):
        /// dropping them at the seal would make it read every byte back from the disk. Without
        /// one, they are dropped (written once, read rarely).
        public var keepsSealedSegmentsCached = false
        /// Called once each seal is durable (with the journal's lock held: keep it to a wake-up).
        public var sealed: (@Sendable () -> Void)?
        /// How spare segments are prepared (`SegmentPreparer`): by the last segment's writes, or
        /// always one way (the power-loss harness proves each way on its own).
        public var spareFill: SpareFill = .adaptive

        public init(segmentBytes: Int64 = 64 << 20, keepsSealedSegmentsCached: Bool = false, sealed: (@Sendable () -> Void)? = nil,
                    spareFill: SpareFill = .adaptive) {
            self.segmentBytes = segmentBytes
            self.keepsSealedSegmentsCached = keepsSealedSegmentsCached
            self.sealed = sealed
            self.spareFill = spareFill
        }
    }

    public struct Stats: Sendable {
        public var appendedLSN: LSN
        public var durableLSN: LSN
        public var syncs: Int
        public var failure: LifeboatError?
        /// First LSN of the segment being appended to: every segment before it is sealed.
        public var currentSegmentFirstLSN: LSN
        /// Every segment that starts before this LSN is sealed *and durable*: what may be shipped
        /// whole. `currentSegmentFirstLSN`, or the first LSN of the segment before it while that
        /// one's seal is still being synced (`pendingSeal`).
        public var durablySealedBefore: LSN
        /// Bytes of records in that segment (its file is preallocated: its size says nothing).
        public var currentSegmentBytes: Int64
        /// The segment's file, and how many of its bytes (header included) are durable: a
        /// record boundary, what streaming may send (never a record a crash could still take back).
        public var currentSegmentPath: FilePath
        public var currentSegmentDurableBytes: Int64
    }

    public let directory: FilePath
    public let groupID: [UInt8]
    private let configuration: Configuration
    private let lock = ConditionLock()
    private var current: OpenSegment
    /// The segment sealed last, while its seal is not known durable: its fdatasync runs on the
    /// preparer's thread, off the write path, and a `sync` or the next roll finishes it first if
    /// it has not (decision 0002). At most one; meanwhile the current segment, the one after it,
    /// keeps its spare's temporary name (`OpenSegment.provisionalPath`).
    private var pendingSeal: (segment: OpenSegment, lsn: LSN)?
    /// A segment was renamed into place since the last directory fsync.
    private var needsDirectorySync = false
    private let preparer: SegmentPreparer
    private var nextLSN: LSN
    private var durableLSN: LSN
    /// Bytes of `current` durable (a record boundary; the header alone at its start).
    private var durableBytes: Int64 = Int64(JournalFormat.segmentHeaderSize)
    private var syncing = false
    private var syncs = 0
    /// `syncs` when the current segment started: how often it was synced decides how its
    /// successor is prepared (`SegmentPreparer.zeroFills`).
    private var syncsAtSegmentStart = 0
    /// Set after an fdatasync or seal fails: the page cache may have dropped our data
    /// (fsync errors are not retryable), so nothing more is acknowledged until a restart
    /// re-reads the journal from disk.
    private var failure: LifeboatError?
    /// The last append error (a full disk, say); appends may succeed again later.
    private var lastAppendError: LifeboatError?

    /// Opens a journal directory (creating it if new), checks every segment, cuts a torn tail
    /// off the newest one, hands every valid record to `visit` (recovery replays from it),
    /// seals the newest segment if it was left open, and starts a fresh segment.
    /// `durableThrough`: the newest LSN known durable (see `JournalDirectory.scanAll`).
    public static func open(
        directory: FilePath, groupID: [UInt8], configuration: Configuration = .init(), durableThrough: LSN? = nil,
        startingAfter: LSN = .zero,
        visit: (SegmentScan, UnsafeRawBufferPointer) throws -> Void = { _, _ in }
    ) throws -> (Journal, RecoveryReport) {
        try removeTemporaryFiles(directory)
        var last: SegmentScan?
        var report = try JournalDirectory.scanAll(directory, groupID: groupID, repairTornTail: true, durableThrough: durableThrough) { (scan, raw) throws in
            try visit(scan, raw)
            last = scan
        }
        // An empty journal starts after `startingAfter`: a failed-over site's history goes on
        // after its fork (decision 0012), in the same LSN line as the vault's.
        var nextLSN = startingAfter.next
        if let last {
            nextLSN = last.lastLSN.next
            if last.end != .sealed {
                // Seal the segment the previous run left open, so that every segment but the
                // newest is sealed (the reader's rule). The seal uses one LSN.
                let seg = try OpenSegment.openForAppend(last.path, firstLSN: last.header.firstLSN, end: Int64(last.validEnd))
                try Journal.appendSeal(to: seg, lsn: nextLSN)
                do { try seg.fd.dataSync() } catch { throw LifeboatError.wrapping(error, "cannot sync sealed segment", path: seg.path.string) }
                nextLSN = nextLSN.next
                report.lastLSN = LSN(nextLSN.rawValue - 1)
            }
        }
        let segment = try OpenSegment.create(in: directory, groupID: groupID, firstLSN: nextLSN)
        let journal = try Journal(directory: directory, groupID: groupID, configuration: configuration, current: segment, nextLSN: nextLSN)
        return (journal, report)
    }

    private init(directory: FilePath, groupID: [UInt8], configuration: Configuration, current: OpenSegment, nextLSN: LSN) throws {
        self.directory = directory
        self.groupID = groupID
        self.configuration = configuration
        self.current = current
        self.nextLSN = nextLSN
        self.durableLSN = LSN(nextLSN.rawValue - 1)
        self.preparer = SegmentPreparer(directory: directory, maximumBytes: configuration.segmentBytes,
                                        dropsRetiredPages: !configuration.keepsSealedSegmentsCached, fill: configuration.spareFill)
        try preparer.start()
    }

    // MARK: Appends

    /// Appends a write record of `data.count / 4096` blocks starting at `firstBlock`.
    /// The payload checksum is computed before the lock is taken (it does not depend on the LSN).
    @inline(__always)
    public func appendWrite(disk: DiskID, firstBlock: BlockIndex, data: UnsafeRawBufferPointer) throws -> LSN {
        let blocks = UInt32(data.count >> BlockSize.shift)
        let headerBytes = JournalFormat.recordHeaderSize + JournalFormat.writePayloadHeaderSize
        return try withUnsafeTemporaryAllocation(byteCount: headerBytes, alignment: 8) { (head) throws -> LSN in
            let payloadHead = UnsafeMutableRawBufferPointer(rebasing: head[JournalFormat.recordHeaderSize...])
            WritePayloadHeader(disk: disk, firstBlock: firstBlock, blockCount: blocks).store(into: payloadHead)
            let crc = CRC32C.extend(CRC32C.of(UnsafeRawBufferPointer(payloadHead)), data)
            return try withUnsafeTemporaryAllocation(of: iovec.self, capacity: 2) { (iov) throws -> LSN in
                iov[0] = iovec(iov_base: head.baseAddress, iov_len: headerBytes)
                iov[1] = iovec(iov_base: UnsafeMutableRawPointer(mutating: data.baseAddress), iov_len: data.count)
                return try append(type: .write, payloadCRC: crc, payloadLength: headerBytes - JournalFormat.recordHeaderSize + data.count,
                                  header: head, iov: UnsafeBufferPointer(iov))
            }
        }
    }

    /// Appends a flush record: the boundary a crash-point explorer replays to.
    public func appendFlush() throws -> LSN {
        try appendSmall(type: .flush, payload: [])
    }

    public func appendMarker(_ marker: Marker) throws -> LSN {
        try appendSmall(type: .marker, payload: marker.encoded())
    }

    private func appendSmall(type: RecordType, payload: [UInt8]) throws -> LSN {
        let crc = CRC32C.of(payload)
        var record = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
        record.append(contentsOf: payload)
        return try record.withUnsafeMutableBytes { (raw) throws -> LSN in
            try withUnsafeTemporaryAllocation(of: iovec.self, capacity: 1) { (iov) throws -> LSN in
                iov[0] = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                return try append(type: type, payloadCRC: crc, payloadLength: payload.count, header: raw, iov: UnsafeBufferPointer(iov))
            }
        }
    }

    /// Under the lock: assigns the LSN, stores the record header (first 24 bytes of `header`),
    /// writes, and rolls the segment when it is full.
    private func append(type: RecordType, payloadCRC: UInt32, payloadLength: Int,
                        header: UnsafeMutableRawBufferPointer, iov: UnsafeBufferPointer<iovec>) throws -> LSN {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
        let lsn = nextLSN
        RecordHeader(payloadCRC: payloadCRC, length: UInt32(payloadLength), type: type, lsn: lsn).store(into: header)
        let segment = current  // one retain for the append, not one per use of `current`
        do {
            try segment.append(iov, total: JournalFormat.recordHeaderSize + payloadLength)
            if let due = segment.takeWritebackDue() { preparer.startWriteback(segment, from: due.from, to: due.to, populate: due.populate) }
        } catch {
            let e = LifeboatError.wrapping(error, "journal append failed", path: segment.path.string, offset: segment.end)
            lastAppendError = e
            throw e
        }
        lastAppendError = nil
        nextLSN = lsn.next
        if segment.end >= min(configuration.segmentBytes, segment.capacity) {
            try rollLocked()
        }
        return lsn
    }

    private static func appendSeal(to segment: OpenSegment, lsn: LSN) throws {
        var record = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
        try record.withUnsafeMutableBytes { (raw) throws in
            RecordHeader(payloadCRC: CRC32C.of([]), length: 0, type: .seal, lsn: lsn).store(into: raw)
            try withUnsafeTemporaryAllocation(of: iovec.self, capacity: 1) { (iov) throws in
                iov[0] = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
                do { try segment.append(UnsafeBufferPointer(iov), total: raw.count) } catch {
                    throw LifeboatError.wrapping(error, "cannot append seal record", path: segment.path.string, offset: segment.end)
                }
            }
        }
    }

    // MARK: Segments

    /// Seals the current segment (its seal record) and starts the next one, from the
    /// preparer's spare when one is ready. Lock held. The seal's fdatasync is not waited for
    /// here — it stalled every writer for milliseconds, a few times a second under load — but
    /// run on the preparer's thread (`pendingSeal`), and the new segment keeps the spare's
    /// temporary name until the seal is durable; a `sync` finishes the seal first. So on disk,
    /// as before, every segment but the newest is sealed and durable: a crash before the seal
    /// is durable leaves the new segment under a name recovery removes, and none of its records
    /// was acknowledged (Docs/decisions/0002).
    private func rollLocked() throws {
        if let pending = pendingSeal {
            // A segment filled before the last seal's fdatasync ended (rare): finish that one
            // first, here, so that at most one seal is ever pending.
            try sealNowLocked(pending.segment)
        }
        let old = current
        let sealLSN = nextLSN
        do {
            try Journal.appendSeal(to: old, lsn: sealLSN)
        } catch {
            let e = LifeboatError.wrapping(error, "cannot seal segment", path: old.path.string)
            poison(e)
            throw e
        }
        nextLSN = sealLSN.next
        pendingSeal = (old, sealLSN)  // its mapping is released by the preparer (`retire`)
        do {
            let syncedInSegment = syncs - syncsAtSegmentStart
            syncsAtSegmentStart = syncs
            if let spare = preparer.take(lastSegmentBytes: old.end, filledItsSpare: old.end >= old.capacity,
                                         records: old.records, syncs: syncedInSegment) {
                current = try OpenSegment.adopt(spare, in: directory, groupID: groupID, firstLSN: nextLSN)
                preparer.retire(old, end: old.end) { [weak self] error in self?.sealSynced(old, error: error) }
            } else {
                // No spare ready: the new segment is created under its own name, so the seal
                // must be durable first (the old way, under the lock; rare).
                try sealNowLocked(old)
                preparer.retire(old, end: old.end, synced: nil)  // durable already
                current = try OpenSegment.create(in: directory, groupID: groupID, firstLSN: nextLSN)
            }
            durableBytes = Int64(JournalFormat.segmentHeaderSize)
        } catch {
            let e = (error as? LifeboatError) ?? LifeboatError(.io, "\(error)", path: directory.string)
            poison(e)
            throw e
        }
        lock.broadcast()
    }

    /// Syncs `segment`'s seal under the lock and records it durable; poisons on failure.
    private func sealNowLocked(_ segment: OpenSegment) throws {
        do { try segment.syncSeal() } catch {
            poison(error)
            throw error
        }
        sealBecameDurableLocked(segment)
        if let failure { throw failure }
    }

    /// The preparer's fdatasync of a sealed segment ended.
    private func sealSynced(_ segment: OpenSegment, error: LifeboatError?) {
        lock.withLock {
            if let error { poison(error) } else { sealBecameDurableLocked(segment) }
        }
    }

    /// `segment`'s seal is durable: every LSN through it is (the segments before it were
    /// before it was sealed), and the segment after it — the current one — takes its name
    /// (a rename under the lock, once per seal; its directory entry is made durable by the
    /// next sync, before any of its records is acknowledged). Lock held; once per seal,
    /// whoever synced it.
    private func sealBecameDurableLocked(_ segment: OpenSegment) {
        guard failure == nil, let pending = pendingSeal, pending.segment === segment else { return }
        if current.provisionalPath != nil {
            do { try current.moveIntoPlace() } catch {
                poison(error as? LifeboatError ?? LifeboatError(.io, "\(error)", path: current.path.string))
                return
            }
            needsDirectorySync = true
        }
        pendingSeal = nil
        if pending.lsn > durableLSN { durableLSN = pending.lsn }
        lock.broadcast()
        configuration.sealed?()
    }

    /// Makes the pending seal durable now, its fdatasync outside the lock, if there is one.
    private func finishPendingSeal() throws {
        guard let pending = lock.withLock({ pendingSeal?.segment }) else { return }
        do { try pending.syncSeal() } catch {
            lock.withLock { poison(error) }
            throw error
        }
        try lock.withLock { () throws in
            sealBecameDurableLocked(pending)
            if let failure { throw failure }  // the rename failed, or the preparer's fdatasync of it did
        }
    }

    /// Nothing more is acknowledged until a restart re-reads the journal (fsyncgate: after a
    /// failed fdatasync the page cache may have dropped our data). Lock held; the first reason stays.
    private func poison(_ error: LifeboatError) {
        if failure == nil { failure = error }
        lock.broadcast()
    }

    /// Seals the current segment if it holds records and is at least `age` old: shipping
    /// needs a sealed segment at least this often while there are writes. Returns once the
    /// seal is durable (its fdatasync outside the lock: writers go on meanwhile).
    public func sealIfOlder(than age: Duration) throws {
        try finishPendingSeal()
        try lock.withLock { () throws in
            guard failure == nil, current.records > 0, current.openedAt.duration(to: .now) >= age else { return }
            try rollLocked()
        }
        try finishPendingSeal()
    }

    // MARK: Durability

    /// Returns once every record appended before the call is durable (group commit).
    public func sync() throws {
        lock.lock()
        defer { lock.unlock() }
        let target = LSN(nextLSN.rawValue - 1)
        while durableLSN < target {
            if let failure { throw failure }
            if syncing {
                lock.wait()
                continue
            }
            syncing = true
            if let sealed = pendingSeal?.segment {
                // A seal still being synced goes first: nothing after it is durable before it
                // is, and the segment after it must have its name. Then look again (another
                // seal may be pending by then).
                lock.unlock()
                let synced = Result { () throws(LifeboatError) in try sealed.syncSeal() }
                lock.lock()
                syncing = false
                switch synced {
                case .success: sealBecameDurableLocked(sealed)
                case .failure(let error): poison(error)
                }
                lock.broadcast()
                continue
            }
            let segment = current
            let directorySync = needsDirectorySync
            needsDirectorySync = false
            let goal = LSN(nextLSN.rawValue - 1)
            let goalBytes = segment.end
            lock.unlock()
            var syncError: (Errno, FilePath)?
            do {
                try FaultInjection.check(.sync, path: segment.path)
                try segment.fd.dataSync()
            } catch { syncError = (error as? Errno ?? .ioError, segment.path) }
            if syncError == nil && directorySync {
                // The segment was renamed into place: its directory entry must be durable too.
                do { try syncDirectory(directory) } catch { syncError = (error as? Errno ?? .ioError, directory) }
            }
            lock.lock()
            syncing = false
            syncs += 1
            if let (errno, path) = syncError {
                poison(.system(errno, "journal fdatasync failed; nothing more is acknowledged until restart", path: path.string))
            } else if failure == nil && goal > durableLSN {
                durableLSN = goal
                if current === segment { durableBytes = max(durableBytes, goalBytes) }
            }
            lock.broadcast()
        }
    }

    /// Appends a flush record and makes everything up to it durable.
    public func flush() throws {
        _ = try appendFlush()
        try sync()
    }

    /// Tests: the preparer leaves seals pending while `hold` is set (a `sync` still finishes them).
    func holdSeals(_ hold: Bool) { preparer.holdRetirements(hold) }

    /// Whether the preparer has a spare ready for the next roll (tests).
    var spareIsReady: Bool { preparer.hasSpare }

    /// Whether small records are copied into the current segment's mapping (tests).
    var appendsThroughMapping: Bool { lock.withLock { current.isMapped } }

    /// The sealed segment whose seal is not durable yet, if any (tests).
    var segmentPendingSeal: OpenSegment? { lock.withLock { pendingSeal?.segment } }

    /// The bytes prepared for the current segment, at which it is sealed (tests).
    var currentSegmentCapacity: Int64 { lock.withLock { current.capacity } }

    public var stats: Stats {
        lock.withLock {
            Stats(appendedLSN: LSN(nextLSN.rawValue - 1), durableLSN: durableLSN, syncs: syncs, failure: failure ?? lastAppendError,
                  currentSegmentFirstLSN: current.firstLSN, durablySealedBefore: pendingSeal?.segment.firstLSN ?? current.firstLSN,
                  currentSegmentBytes: current.end,
                  currentSegmentPath: current.path, currentSegmentDurableBytes: durableBytes)
        }
    }

    /// Syncs what was appended and closes the current segment (left open: the next `open`
    /// seals it). Further appends fail.
    deinit { preparer.stop() }

    public func close() throws {
        defer { preparer.stop() }
        try sync()
        lock.withLock {
            if failure == nil { failure = LifeboatError(.io, "journal is closed", path: directory.string) }
        }
    }

    private static func removeTemporaryFiles(_ directory: FilePath) throws {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: directory.string)) ?? []
        where entry.hasSuffix(".tmp") || entry.hasSuffix(".prep") {
            try? FileManager.default.removeItem(atPath: directory.appending(entry).string)
        }
    }
}
