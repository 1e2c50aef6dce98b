import LifeboatCore
import LifeboatSite
import Synchronization
import SystemPackage

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
        } catch {
            try? primary.close()
            throw error
        }
    }

    deinit { try? primary.close() }

    /// Writes whole blocks to the primary and updates their digest leaves.
    @inline(__always)
    func apply(firstBlock: BlockIndex, data: UnsafeRawBufferPointer) throws {
        do {
            try FaultInjection.check(.write, path: primaryPath)
            _ = try primary.writeAll(toAbsoluteOffset: firstBlock.byteOffset.rawValue, data)
        } catch {
            let e = LifeboatError.wrapping(error, "primary write failed", path: primaryPath.string, offset: firstBlock.byteOffset.rawValue)
            primaryError.withLock { $0 = e.description }
            throw e
        }
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
        do {
            try FaultInjection.check(.sync, path: primaryPath)
            try primary.dataSync()
        } catch {
            throw LifeboatError.wrapping(error, "primary fdatasync failed", path: primaryPath.string)
        }
        try digest.sync(path: digestPath)
    }
}
