import CLinux
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The segment being appended to. A class so that a group-commit leader that is in the middle
/// of fdatasync keeps the descriptor open even if a rollover replaces the segment meanwhile.
final class OpenSegment: @unchecked Sendable {
    let fd: FileDescriptor
    /// Its name in the journal directory (`SegmentName`).
    let path: FilePath
    /// Where the file is while the seal before it is not durable: the spare's temporary name,
    /// which recovery removes. Moved to `path` once that seal is (`moveIntoPlace`). Journal lock.
    private(set) var provisionalPath: FilePath?
    let firstLSN: LSN
    let openedAt: ContinuousClock.Instant
    /// Offset of the next record (guarded by the journal's lock).
    var end: Int64
    var records = 0
    /// The bytes prepared for it (a spare's size): the journal seals the segment once its
    /// records reach this, since appends past it grow the file and every fdatasync would then
    /// commit filesystem metadata. `Int64.max` for a segment created without a spare.
    private(set) var capacity: Int64 = .max
    /// Where the last early writeback started (see `append`).
    var writebackStart: Int64 = 0
    static let writebackStride: Int64 = 4 << 20
    /// A zero-filled spare mapped shared (`adopt`, unless the workload syncs often:
    /// `SegmentPreparer.mapsAppends`): records of at most `mappedRecordLimit` bytes are copied
    /// into it instead of written with pwritev. Their pages are cached and the
    /// blocks written, so the copy faults at most once per page and never allocates; it saves a
    /// system call and the filesystem's per-page write path (4 KiB random writes: about a
    /// tenth more of them, Docs/benchmarks.md). Larger records go through pwritev: a page
    /// fault per page costs more than one system call for all of them.
    private var mapping: UnsafeMutableRawPointer?
    private var mappedBytes: Int64 = 0
    static let mappedRecordLimit = 64 << 10
    /// Held while `mapping` changes and while the preparer populates it (`populate`), so that
    /// a seal never unmaps pages under a populate in progress.
    private let mappingLock = ConditionLock()
    /// A populated spare's mapping (`SegmentPreparer.Spare.mapping`): its pages up to here are
    /// cached and writable; each writeback stride asks for the pages up to `populateAhead`
    /// past the tail. 0 for any other segment. Journal lock.
    private var populatedTo: Int64 = 0
    /// Pages are populated this far ahead of the tail, and no farther: every fdatasync of the
    /// segment writes back its dirty pages, the populated zeros ahead of the tail too.
    static let populateAhead: Int64 = 8 << 20
    /// The system's page: what madvise ranges are made of.
    static let pageBytes = Int64(sysconf(Int32(_SC_PAGESIZE)))

    init(fd: FileDescriptor, path: FilePath, firstLSN: LSN, end: Int64) {
        self.fd = fd
        self.path = path
        self.firstLSN = firstLSN
        self.end = end
        self.openedAt = .now
    }

    deinit {
        releaseMapping()
        try? fd.close()
    }

    var isMapped: Bool { mappingLock.withLock { mapping != nil } }

    /// Unmaps the segment: once sealed, on the preparer's thread (`SegmentPreparer.retire`: a
    /// munmap under the journal lock waited for a populate in progress and for the address
    /// space's lock, milliseconds at a time); after a failed append, at once (appends go through
    /// pwritev after).
    func releaseMapping() {
        mappingLock.withLock {
            if let mapping { munmap(mapping, Int(mappedBytes)) }
            mapping = nil
            mappedBytes = 0
        }
    }

    /// Brings the mapping's pages in `range` into the cache, writable (the preparer's thread;
    /// asked for by `takeWritebackDue`), a piece (`populatePiece`) at a time, yielding the CPU
    /// between, so that a failed append's `releaseMapping` waits for one piece at most. Stops if
    /// the mapping has been released meanwhile. A page the populate cannot bring in is left to
    /// fault on the copy, as without it.
    func populate(_ range: Range<Int64>) {
        var at = range.lowerBound
        while at < range.upperBound {
            let next = min(at + Self.populatePiece, range.upperBound)
            let released = mappingLock.withLock { () -> Bool in
                guard let mapping, next <= mappedBytes else { return true }
                _ = madvise(mapping.advanced(by: Int(at)), Int(next - at), MADV_POPULATE_WRITE)
                return false
            }
            if released { return }
            sched_yield()
            at = next
        }
    }

    /// How much one populate call brings in before the preparer yields its CPU: a reserved page
    /// costs 1.5–4 µs to populate, and a FUSE worker woken onto the preparer's CPU waited for the
    /// whole call — a MiB took 1–3 ms — until the scheduler preempted it (Docs/benchmarks.md).
    static let populatePiece: Int64 = 128 << 10

    /// Creates a segment whose header is durable before it is visible under its name:
    /// write `NAME.tmp`, fdatasync, rename, fsync the directory.
    static func create(in directory: FilePath, groupID: [UInt8], firstLSN: LSN) throws -> OpenSegment {
        let path = directory.appending(SegmentName.make(firstLSN: firstLSN))
        let header = SegmentHeader(groupID: groupID, firstLSN: firstLSN, createdNanos: wallClockNanos()).encoded()
        try writeFileAtomically(path, header)
        return try openForAppend(path, firstLSN: firstLSN, end: Int64(header.count))
    }

    /// Turns a prepared spare into the segment starting at `firstLSN`: header written into its
    /// first (cached) page; it keeps the spare's temporary name (`provisionalPath`) until the
    /// seal before it is durable (`moveIntoPlace`). The header, the name and the directory entry
    /// become durable with the next sync, before any record in it is acknowledged.
    static func adopt(_ spare: SegmentPreparer.Spare, in directory: FilePath, groupID: [UInt8], firstLSN: LSN) throws -> OpenSegment {
        let path = directory.appending(SegmentName.make(firstLSN: firstLSN))
        let header = SegmentHeader(groupID: groupID, firstLSN: firstLSN, createdNanos: wallClockNanos()).encoded()
        do {
            _ = try spare.fd.writeAll(toAbsoluteOffset: 0, header)
        } catch {
            if let mapping = spare.mapping { munmap(mapping, Int(spare.size)) }
            try? spare.fd.close()
            throw LifeboatError.wrapping(error, "cannot write a new segment's header", path: spare.path.string)
        }
        let segment = OpenSegment(fd: spare.fd, path: path, firstLSN: firstLSN, end: Int64(header.count))
        segment.provisionalPath = spare.path
        segment.capacity = spare.size
        if let mapping = spare.mapping {
            segment.mapping = mapping
            segment.mappedBytes = spare.size
            segment.populatedTo = spare.populatedBytes
        } else if spare.mapsAppends, spare.size > 0,
           let mapped = mmap(nil, Int(spare.size), PROT_READ | PROT_WRITE, MAP_SHARED, spare.fd.rawValue, 0), mapped != MAP_FAILED {
            segment.mapping = mapped
            segment.mappedBytes = spare.size
        }
        return segment
    }

    /// fdatasync of the segment once sealed (on the preparer's thread, or by whoever needs the
    /// seal durable first: `Journal.pendingSeal`).
    func syncSeal() throws(LifeboatError) {
        do {
            try FaultInjection.check(.sync, path: path)
            try fd.dataSync()
        } catch {
            throw LifeboatError.wrapping(error, "cannot sync sealed segment", path: path.string)
        }
    }

    /// Gives the segment its name in the journal (the seal before it is durable). The directory
    /// entry is durable after the next directory fsync (`Journal.sync`).
    func moveIntoPlace() throws {
        guard let provisional = provisionalPath else { return }
        do {
            try FaultInjection.check(.rename, path: path)
            if case .failure(let e) = syscallRetrying({ Glibc.rename(provisional.string, path.string) }) { throw e }
        } catch {
            throw LifeboatError.wrapping(error, "cannot put a new segment in place", path: path.string)
        }
        provisionalPath = nil
    }

    static func openForAppend(_ path: FilePath, firstLSN: LSN, end: Int64) throws -> OpenSegment {
        do {
            let fd = try FileDescriptor.open(path, .writeOnly, options: [.closeOnExec])
            return OpenSegment(fd: fd, path: path, firstLSN: firstLSN, end: end)
        } catch {
            throw LifeboatError.wrapping(error, "cannot open journal segment for append", path: path.string)
        }
    }

    /// Writes the iovecs at `end` (a copy into the mapping, or pwritev); on success `end` moves
    /// past them. On failure the partial record is cut off again (so the tail stays valid) and
    /// the errno is thrown. An injected `.write` fault (tests) writes only its first bytes, then
    /// fails.
    func append(_ iov: UnsafeBufferPointer<iovec>, total: Int) throws {
        let fdRaw = fd.rawValue
        let start = end
        var written = 0
        var result: Result<Int, Errno>
        if let fault = FaultInjection.take(.write, path: path), let first = iov.first {
            let n = min(fault.writtenBytes, first.iov_len)
            _ = syscallRetrying { Glibc.pwrite(fdRaw, first.iov_base, n, Int(start)) }
            result = .failure(fault.errno)
        } else if let mapping, total <= Self.mappedRecordLimit, start + Int64(total) <= mappedBytes {
            if clinux_copy_to_mapping(mapping.advanced(by: Int(start)), iov.baseAddress, Int32(iov.count)) == 0 {
                end = start + Int64(total)
                records += 1
                return
            }
            // SIGBUS: a page could not be read in or made writable. Unmapped and cut off below,
            // as after a failed pwritev.
            result = .failure(.ioError)
        } else {
            result = syscallRetrying { Glibc.pwritev(fdRaw, iov.baseAddress, Int32(iov.count), Int(start)) }
        }
        if case .success(let n) = result { written = n }
        // A short write (a full disk part-way) is finished piece by piece, or fails.
        while case .success = result, written < total {
            var skip = written
            for v in iov {
                if skip >= v.iov_len { skip -= v.iov_len; continue }
                let base = v.iov_base!.advanced(by: skip)
                let len = v.iov_len - skip
                result = syscallRetrying { Glibc.pwrite(fdRaw, base, len, Int(start) + written) }
                guard case .success(let n) = result, n > 0 else {
                    if case .success = result { result = .failure(Errno.noSpace) }
                    break
                }
                written += n
                break
            }
        }
        if case .failure(let e) = result {
            releaseMapping()  // the file shrinks below the mapping's end
            _ = syscallRetrying { Glibc.ftruncate(fdRaw, Int(start)) }
            throw e
        }
        end = start + Int64(total)
        records += 1
    }

    /// The range whose early writeback is due, if a full stride has been appended since the
    /// last one (RocksDB's wal_bytes_per_sync): a seal's fdatasync then waits for little, and
    /// writeback never arrives in one burst. The caller has it started off the write path.
    /// With a populated mapping, the pages to populate next come with it.
    func takeWritebackDue() -> (from: Int64, to: Int64, populate: Range<Int64>?)? {
        guard end - writebackStart >= Self.writebackStride else { return nil }
        defer { writebackStart = end }
        var populate: Range<Int64>?
        let ahead = min((end + Self.populateAhead) / Self.pageBytes * Self.pageBytes, mappedBytes)  // madvise wants whole pages
        if populatedTo > 0, mapping != nil, ahead > populatedTo {
            populate = populatedTo..<ahead
            populatedTo = ahead
        }
        return (writebackStart, end, populate)
    }

    /// Drops the mapping's page-table entries for the whole pages in `from..<to`, about to be
    /// written back and never copied into again (the tail only moves on). Writeback
    /// write-protects every mapped page it cleans, one TLB shootdown per page (with the copies
    /// running on the other CPU: a sixteenth of all samples on 4 KiB random writes); with the
    /// entries gone there is nothing to protect, and one flush covers the range. The pages stay
    /// in the cache, dirty (a shared file mapping hands its dirty bits to them). The preparer's
    /// thread, just before it starts the range's writeback: the madvise took 0.4 ms per 4 MiB
    /// under the journal lock, a thousandth of 4 KiB writes waiting for it.
    func unmapPages(from: Int64, to: Int64) {
        mappingLock.withLock {
            guard let mapping else { return }
            let page = Self.pageBytes
            let first = (from + page - 1) / page * page
            let last = min(to, mappedBytes) / page * page
            guard last > first else { return }
            _ = madvise(mapping.advanced(by: Int(first)), Int(last - first), MADV_DONTNEED)
        }
    }
}

func wallClockNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
