import LifeboatCore
import LifeboatSite
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One disk under protection: its primary file, its digest, and its live figures.
final class ProtectedDisk: @unchecked Sendable {
    let config: SiteConfig.Disk
    let primary: FileDescriptor
    let primaryPath: FilePath
    let digest: DigestMap
    let digestPath: FilePath
    /// LSN of the newest write to this disk.
    let lastLSN = Atomic<UInt64>(0)
    /// Set when the primary could not be written (the write is in the journal, so a restart
    /// replays it); shown by `status`.
    let primaryError = Mutex<String?>(nil)
    /// A failed-over disk still being filled from its recovery point (nil once filled).
    let backing: DiskBacking?

    var id: DiskID { config.diskID }
    var sizeBytes: Int64 { config.sizeBytes }

    init(site: Site, config: SiteConfig.Disk) throws {
        self.config = config
        self.primaryPath = site.primaryPath(config)
        self.digestPath = site.digestPath(config)
        do {
            primary = try FileDescriptor.open(primaryPath, .readWrite, options: [.closeOnExec])
        } catch {
            throw LifeboatError.wrapping(error, "cannot open the primary", path: primaryPath.string)
        }
        let size: Int64
        do { size = try primary.fileSize() } catch { throw LifeboatError.system(error, "cannot stat the primary", path: primaryPath.string) }
        guard size == config.sizeBytes else {
            try? primary.close()
            throw LifeboatError(.corrupt, "primary is \(size) bytes, site.json says \(config.sizeBytes)", path: primaryPath.string)
        }
        do {
            digest = try DigestMap(path: digestPath, sizeBytes: config.sizeBytes, rebuildFrom: nil)
            let fill = site.fillPath(config)
            if let recovery = site.config.recoveredFrom, access(fill.string, F_OK) == 0 {
                backing = try DiskBacking(path: fill, recovery: recovery, disk: config)
            } else {
                backing = nil
            }
        } catch {
            try? primary.close()
            throw error
        }
    }

    /// Whether every read can go straight to the primary.
    @inline(__always)
    var primaryHoldsAll: Bool { backing?.isComplete ?? true }

    /// The disk's bytes of whole blocks from `offset`: the primary's, or — for blocks a
    /// failed-over disk has not filled yet — its recovery point's.
    func readBlocks(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        if let backing, !backing.isComplete {
            return try backing.read(at: offset, into: buffer, primary: primary, primaryPath: primaryPath)
        }
        do { try primary.readAll(at: offset, into: buffer) } catch {
            throw LifeboatError.wrapping(error, "cannot read the primary", path: primaryPath.string, offset: offset)
        }
    }

    /// Starts reading the primary's block at `offset` into the page cache without waiting
    /// (a partial-block write will read it soon). Advice only: a failure costs nothing but
    /// the wait later; a disk still filling from its point reads elsewhere and is left alone.
    @inline(__always)
    func prefetchBlock(at offset: Int64) {
        guard primaryHoldsAll else { return }
        _ = posix_fadvise(primary.rawValue, off_t(offset), off_t(BlockSize.bytes), POSIX_FADV_WILLNEED)
    }

    deinit { try? primary.close() }

    /// Writes whole blocks to the primary and updates their digest leaves.
    @inline(__always)
    func apply(firstBlock: BlockIndex, data: UnsafeRawBufferPointer) throws {
        do {
            try FaultInjection.check(.write, path: primaryPath)
            try primary.writeAll(at: firstBlock.byteOffset.rawValue, from: data)
        } catch {
            let e = LifeboatError.wrapping(error, "primary write failed", path: primaryPath.string, offset: firstBlock.byteOffset.rawValue)
            primaryError.withLock { $0 = e.description }
            throw e
        }
        backing?.markFilled(first: Int(firstBlock.rawValue), count: data.count >> BlockSize.shift)
        rehash(firstBlock: firstBlock, data: data)
    }

    /// Updates the digest leaves of whole blocks that the primary holds.
    @inline(__always)
    func rehash(firstBlock: BlockIndex, data: UnsafeRawBufferPointer) {
        let first = Int(firstBlock.rawValue)
        for k in 0..<(data.count >> BlockSize.shift) {
            digest.update(first + k, with: UnsafeRawBufferPointer(rebasing: data[(k << BlockSize.shift)..<((k + 1) << BlockSize.shift)]))
        }
    }

    /// Makes the primary and the digest sidecar durable.
    func sync() throws {
        // The fill bitmap as it is before the sync names only blocks the sync makes durable.
        let filled = backing.map { ($0, $0.snapshot(), $0.isComplete) }
        do {
            try FaultInjection.check(.sync, path: primaryPath)
            try primary.dataSync()
        } catch {
            throw LifeboatError.wrapping(error, "primary fdatasync failed", path: primaryPath.string)
        }
        try digest.sync(path: digestPath)
        if let (backing, snapshot, complete) = filled { try backing.save(snapshot, complete: complete) }
    }
}
