import CLinux
import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// How spare segments are prepared: zero-filled or only reserved (and populated, for a mapped
/// segment), chosen per segment from the last one's writes (`adaptive`), or always one way
/// (`zeros`: zero-filled for every small-record segment, mapped or not).
public enum SpareFill: String, Sendable, CaseIterable {
    case adaptive, zeros, reserved
}

/// Keeps the next segment file ready in the background (etcd's file pipeline), so that the
/// write path never allocates. For small writes or a synced workload (the last segment's
/// records averaged at most 64 KiB, or it saw an fsync at least every MiB) the spare is
/// zero-filled through the page cache and synced, so appends overwrite cached, written blocks:
/// an fdatasync after an append then writes data only (no filesystem metadata commit: neither
/// size, allocation nor extent state change), and a small append finds its page in the cache.
/// For streaming (big writes, rare fsyncs) it is only allocated (fallocate: reserved, unwritten
/// blocks that read as zeros): zero-filling would write every journaled byte twice, to the
/// cache and to the disk (measured on 1 MiB sequential writes: this thread took half of
/// protect's CPU), while the extents' conversion costs one metadata commit per seal. For
/// small writes synced rarely (the segments whose appends go through a mapping) it is
/// reserved too, and mapped with its pages brought into the cache writable ahead of the tail
/// (`prepare(…, mapped: true)`): the copies take no page fault, and no zero is written ahead
/// of need.
///
/// It also starts the early writeback of the open segment (`sync_file_range`, every 4 MiB
/// appended): submitting that I/O took 7% of protect's CPU on the write path itself on 1 MiB
/// writes. And it retires sealed segments: makes the seal durable (the fdatasync the journal's
/// lock no longer waits for, `Journal.pendingSeal`), then cuts the unused zero tail and, unless
/// a reader comes for them at once (the shipper, which drops them after reading), drops their
/// pages from the cache.
final class SegmentPreparer: @unchecked Sendable {
    struct Spare {
        let fd: FileDescriptor
        let path: FilePath
        let size: Int64
        /// Written with zeros and cached (not only reserved): appends may go through a mapping.
        let zeroFilled: Bool
        /// Reserved and already mapped shared, its first `populatedBytes` cached and writable
        /// (`prepare(…, mapped: true)`): appends are copies that take no page fault. The
        /// segment that adopts it unmaps it.
        var mapping: UnsafeMutableRawPointer? = nil
        /// How much of `mapping` is populated (the rest is, as the tail comes near it).
        var populatedBytes: Int64 = 0
        /// Decided when taken (`mapsAppends`): small records are copied into a shared mapping.
        var mapsAppends = false
    }

    private let directory: FilePath
    private let maximumBytes: Int64
    private let lock = ConditionLock()
    private var spare: Spare?
    private var wantedBytes: Int64
    private var wantsZeros = true
    private var wantsMapping = false
    /// Told how a retired segment's fdatasync went (nil: its seal is durable).
    typealias SealSynced = @Sendable (LifeboatError?) -> Void
    private var retiring: [(OpenSegment, Int64, SealSynced?)] = []
    private var writebacks: [(OpenSegment, from: Int64, to: Int64, populate: Range<Int64>?)] = []
    private var stopping = false
    /// Tests: retirements (and so the seals' fdatasyncs) wait while set.
    private var holdingRetirements = false
    private var thread: JoinableThread?
    private var counter = 0
    private let dropsRetiredPages: Bool
    private let fill: SpareFill

    init(directory: FilePath, maximumBytes: Int64, dropsRetiredPages: Bool, fill: SpareFill = .adaptive) {
        self.directory = directory
        self.maximumBytes = maximumBytes
        self.wantedBytes = min(maximumBytes, 8 << 20)
        self.dropsRetiredPages = dropsRetiredPages
        self.fill = fill
        self.wantsZeros = fill != .reserved
    }

    func start() throws {
        thread = try JoinableThread(name: "lifeboat-segment-preparer") { [self] in self.loop() }
    }

    /// Takes the prepared spare, if one is ready, and asks for the next one sized from how
    /// much the segment being sealed held (so a lightly written journal does not zero-fill
    /// full-size segments every seal interval), zero-filled unless that segment streamed.
    func take(lastSegmentBytes: Int64, filledItsSpare: Bool, records: Int, syncs: Int) -> Spare? {
        lock.withLock {
            wantedBytes = Self.spareSize(afterSegmentOf: lastSegmentBytes, filledItsSpare: filledItsSpare, maximum: maximumBytes)
            switch fill {
            case .adaptive: wantsZeros = Self.zeroFills(afterSegmentOf: lastSegmentBytes, records: records, syncs: syncs)
            case .zeros: wantsZeros = true
            case .reserved: wantsZeros = false
            }
            let maps = Self.mapsAppends(afterSegmentOf: lastSegmentBytes, syncs: syncs)
            wantsMapping = fill == .adaptive && wantsZeros && maps
            var taken = spare
            if let prepared = spare {
                taken?.mapsAppends = prepared.mapping != nil || (prepared.zeroFilled && maps)
            }
            spare = nil
            lock.broadcast()
            return taken
        }
    }

    /// Whether appends to a zero-filled spare go through a mapping (`OpenSegment`): not when
    /// the segment before it was synced at least every 64 KiB. Each sync's writeback
    /// write-protects the tail page, so the next copy faults again; with a sync per 4 KiB write
    /// that cost a tenth of the rate (Docs/benchmarks.md).
    static func mapsAppends(afterSegmentOf lastSegmentBytes: Int64, syncs: Int) -> Bool {
        syncs == 0 || lastSegmentBytes / Int64(syncs) > 64 << 10
    }

    /// A quarter more than the sealed segment held (rounded up to whole MiB, between 1 MiB and
    /// the maximum), or twice as much when it filled its spare (sealed for its size, not its
    /// age: the writes come faster than the last spare was sized for). Every byte of a
    /// zero-filled spare is written to the disk once more, and whatever is unused is cut off at
    /// retirement: with an fsync per 4 KiB write, spares twice the need zero-filled more bytes
    /// than the records themselves (~67 against ~30 MB a second), and every fdatasync's flush
    /// waits for what is in flight.
    static func spareSize(afterSegmentOf lastSegmentBytes: Int64, filledItsSpare: Bool, maximum: Int64) -> Int64 {
        let mib: Int64 = 1 << 20
        let wanted = filledItsSpare ? 2 * lastSegmentBytes : lastSegmentBytes + lastSegmentBytes / 4
        return min(max(mib, (wanted + mib - 1) / mib * mib), maximum)
    }

    /// Whether the next spare is zero-filled: the segment before it held records of at most
    /// 64 KiB on average, or saw an fsync at least every MiB (1 MiB streaming writes: neither).
    static func zeroFills(afterSegmentOf lastSegmentBytes: Int64, records: Int, syncs: Int) -> Bool {
        (records > 0 && lastSegmentBytes / Int64(records) <= 64 << 10) || (syncs > 0 && lastSegmentBytes / Int64(syncs) <= 1 << 20)
    }

    /// Starts writeback of `from..<to` of the open segment soon, on this thread, then populates
    /// `populate` of its mapping (the pages the next appends copy into).
    func startWriteback(_ segment: OpenSegment, from: Int64, to: Int64, populate: Range<Int64>? = nil) {
        lock.withLock {
            writebacks.append((segment, from, to, populate))
            lock.broadcast()
        }
    }

    /// Whether a spare is ready to be taken (tests).
    var hasSpare: Bool { lock.withLock { spare != nil } }

    /// Tests: holds retirements (the seals' fdatasyncs) back while `hold` is set.
    func holdRetirements(_ hold: Bool) {
        lock.withLock {
            holdingRetirements = hold
            lock.broadcast()
        }
    }

    /// Unmaps a sealed segment and makes it durable (fdatasync; `synced` is told how it went —
    /// nil: the seal is durable already), then cuts it to its used length and drops its cached
    /// pages. Seals go before any spare is prepared.
    func retire(_ segment: OpenSegment, end: Int64, synced: SealSynced?) {
        lock.withLock {
            retiring.append((segment, end, synced))
            lock.broadcast()
        }
    }

    /// Stops the thread, retires what is queued, and removes the unused spare. Idempotent
    /// (close and deinit both call it): the spare's descriptor is closed exactly once, since a
    /// second close could hit a descriptor number another thread has been given since.
    func stop() {
        lock.withLock {
            stopping = true
            lock.broadcast()
        }
        thread?.join()
        thread = nil  // the thread's closure holds this object: drop the cycle
        let (leftover, unretired) = lock.withLock {
            defer { spare = nil; retiring = []; writebacks = [] }
            return (spare, retiring)
        }
        // Segments sealed just before the stop: retire them here (their seals made durable), so
        // that their descriptors close now rather than with the last reference (a filesystem
        // can then be unmounted).
        for (segment, end, synced) in unretired { retireNow(segment, end: end, synced: synced) }
        if let leftover {
            if let mapping = leftover.mapping { munmap(mapping, Int(leftover.size)) }
            try? leftover.fd.close()
            unlink(leftover.path.string)
        }
    }

    private func loop() {
        while true {
            var job: (OpenSegment, Int64, SealSynced?)?
            var size: Int64 = 0
            var zeros = true
            var mapped = false
            lock.lock()
            while !stopping && writebacks.isEmpty && (retiring.isEmpty || holdingRetirements) && spare != nil { lock.wait() }
            if stopping {
                lock.unlock()
                return
            }
            // Writebacks first: a segment's are all queued before its retirement.
            let writeback = writebacks.isEmpty ? nil : writebacks.removeFirst()
            if writeback == nil {
                if !retiring.isEmpty && !holdingRetirements {
                    job = retiring.removeFirst()
                } else if spare == nil {
                    (size, zeros, mapped) = (wantedBytes, wantsZeros, wantsMapping)
                } else {
                    lock.unlock()
                    continue  // only held retirements are queued: wait again
                }
            }
            lock.unlock()

            if let (segment, from, to, populate) = writeback {
                segment.unmapPages(from: from, to: to)
                _ = clinux_start_writeback(segment.fd.rawValue, from, to - from)
                if let populate { segment.populate(populate) }
                continue
            }

            if let (segment, end, synced) = job {
                retireNow(segment, end: end, synced: synced)
                continue
            }
            counter += 1
            let path = directory.appending("spare-\(counter).prep")
            guard let prepared = try? Self.prepare(path, size: size, zeroFilled: zeros, mapped: mapped) else {
                // A full disk, say: the writer creates segments itself meanwhile; try again
                // after a pause, or at once when a segment is sealed or the journal stops.
                lock.withLock { if !stopping && retiring.isEmpty && writebacks.isEmpty { lock.wait(seconds: 0.1) } }
                continue
            }
            lock.withLock {
                spare = prepared
                if stopping { lock.broadcast() }
            }
        }
    }

    private func retireNow(_ segment: OpenSegment, end: Int64, synced: SealSynced?) {
        segment.releaseMapping()  // before the cut below: no mapped page may lie past the end
        if let synced {
            do { try segment.syncSeal() } catch {
                synced(error)
                return  // the journal is poisoned: nothing more to do with it
            }
            synced(nil)
        }
        _ = try? segment.fd.resize(to: end)
        if dropsRetiredPages {
            // Piece by piece, yielding between: dropping a whole segment's pages took up to 5 ms
            // in one call, with any request woken onto this CPU waiting for it.
            let piece: Int64 = 4 << 20
            var at: Int64 = 0
            repeat {
                let length = end - at > piece ? piece : 0  // the last piece: to the end of the file
                _ = posix_fadvise(segment.fd.rawValue, off_t(at), off_t(length), POSIX_FADV_DONTNEED)
                sched_yield()
                at += piece
            } while at < end
        }
    }

    /// A spare of `size` bytes at `path`: zero-filled, or only reserved — and then, if `mapped`
    /// (small records, rare syncs), mapped with its first pages brought into the cache
    /// writable, the rest as the tail nears them (`OpenSegment.populateAhead`), so that the
    /// copies of appends take no page fault (a fault per page was half of an append's time on
    /// 4 KiB random writes, Docs/benchmarks.md) and zeros go to the disk only where a sync
    /// finds them populated ahead of the tail: they are dirty pages over unwritten extents.
    /// A kernel without MADV_POPULATE_WRITE (Linux < 5.14) gets a zero-filled spare.
    static func prepare(_ path: FilePath, size: Int64, zeroFilled: Bool, mapped: Bool = false) throws -> Spare {
        let fd = try FileDescriptor.open(path, .readWrite, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode)
        do {
            if !zeroFilled || mapped {
                let rc = posix_fallocate(fd.rawValue, 0, off_t(size))
                guard rc == 0 else { throw Errno(rawValue: rc) }
                try fd.dataSync()
                if !mapped { return Spare(fd: fd, path: path, size: size, zeroFilled: false) }
                let populated = min(size, OpenSegment.populateAhead)
                if let mapping = populatedMapping(fd, size: size, populating: populated) {
                    return Spare(fd: fd, path: path, size: size, zeroFilled: false, mapping: mapping, populatedBytes: populated)
                }
            }
            let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
            defer { zeros.deallocate() }
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            // Page-sized writes on purpose: ext4 (Linux ≥ 6.16) builds large folios from large
            // writes, and every later small append into a large folio walks all of its buffer
            // heads (measured: a third of protect's CPU on 4 KiB random writes). Page-sized
            // folios keep each append's cost independent of how the spare was filled.
            var at: Int64 = 0
            let page = UnsafeRawBufferPointer(rebasing: zeros[0..<4096])
            while at < size {
                try fd.writeAll(at: at, from: page)
                at += 4096
                if at % OpenSegment.populatePiece == 0 { sched_yield() }  // as the populate does
            }
            try fd.dataSync()
        } catch {
            try? fd.close()
            unlink(path.string)
            throw error
        }
        return Spare(fd: fd, path: path, size: size, zeroFilled: true)
    }

    /// The file mapped shared with its first `populating` bytes cached and writable, or nil.
    /// Advised random first, so the faults bring in page-sized folios (see the zero-fill above).
    private static func populatedMapping(_ fd: FileDescriptor, size: Int64, populating: Int64) -> UnsafeMutableRawPointer? {
        guard let mapping = mmap(nil, Int(size), PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0), mapping != MAP_FAILED else { return nil }
        guard madvise(mapping, Int(size), MADV_RANDOM) == 0 else {
            munmap(mapping, Int(size))
            return nil
        }
        var at: Int64 = 0
        while at < populating {  // in pieces, yielding between (`OpenSegment.populatePiece`)
            let length = min(OpenSegment.populatePiece, populating - at)
            guard madvise(mapping.advanced(by: Int(at)), Int(length), MADV_POPULATE_WRITE) == 0 else {
                munmap(mapping, Int(size))
                return nil
            }
            sched_yield()
            at += length
        }
        return mapping
    }
}
