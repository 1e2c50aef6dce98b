import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A disk's digest sidecar (`NAME.digest`, the leaves of `DiskDigest`), memory-mapped and
/// updated on every write, plus the chunk hashes, kept in memory and recomputed lazily: a write
/// only marks its chunk dirty, and `root()` rehashes the dirty chunks (16 KiB each).
///
/// Concurrency: `update` for one block is serialized by the caller's block lock; `root()`
/// is exact only while no write is in flight (the group takes its apply lock exclusively).
public final class DigestMap: @unchecked Sendable {
    public let blockCount: Int
    public let sizeBytes: Int64
    private let fd: FileDescriptor
    private let leaves: UnsafeMutableRawPointer
    private let chunks: UnsafeMutableBufferPointer<Hash128>
    private let dirty: UnsafeMutableBufferPointer<UInt8>
    private let mappedBytes: Int

    /// Opens the sidecar at `path`, creating it from the primary's content when `rebuildFrom`
    /// is given (new disk, or a sidecar that cannot be trusted).
    public init(path: FilePath, sizeBytes: Int64, rebuildFrom primary: FileDescriptor?) throws {
        self.sizeBytes = sizeBytes
        self.blockCount = Int(sizeBytes >> Int64(BlockSize.shift))
        self.mappedBytes = blockCount * DiskDigest.leafBytes
        do {
            fd = try FileDescriptor.open(path, .readWrite, options: primary == nil ? [.closeOnExec] : [.create, .closeOnExec], permissions: PrivateFiles.fileMode)
            if primary == nil {
                guard try fd.fileSize() == Int64(mappedBytes) else {
                    try? fd.close()
                    throw LifeboatError(.corrupt, "digest sidecar has the wrong size for a \(sizeBytes)-byte disk", path: path.string)
                }
            } else {
                try fd.resize(to: Int64(mappedBytes))
            }
        } catch let e as LifeboatError {
            throw e
        } catch {
            throw LifeboatError.wrapping(error, "cannot open the digest sidecar", path: path.string)
        }
        guard let map = mmap(nil, mappedBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else {
            try? fd.close()
            throw LifeboatError.system(Errno(rawValue: errno), "cannot map the digest sidecar", path: path.string)
        }
        leaves = map
        let chunkCount = DiskDigest.chunkCount(blocks: blockCount)
        chunks = .allocate(capacity: chunkCount)
        chunks.initialize(repeating: .zero)
        dirty = .allocate(capacity: chunkCount)
        dirty.initialize(repeating: 1)
        if let primary {
            do { try DiskDigest.computeLeaves(ofImage: primary, blocks: blockCount, into: leaves) } catch {
                throw LifeboatError.wrapping(error, "cannot read the primary to build its digest", path: path.string)
            }
            try sync(path: path)
        }
    }

    deinit {
        munmap(leaves, mappedBytes)
        chunks.deallocate()
        dirty.deallocate()
        try? fd.close()
    }

    /// Hashes the 4096-byte `data` as block `block`'s new content.
    @inline(__always)
    public func update(_ block: Int, with data: UnsafeRawBufferPointer) {
        DiskDigest.storeLeaf(Hash128.of(data), into: leaves, block: block)
        dirty[block / DiskDigest.leavesPerChunk] = 1
    }

    public func leaf(_ block: Int) -> Hash128 {
        let p = UnsafeRawBufferPointer(start: leaves + block * DiskDigest.leafBytes, count: DiskDigest.leafBytes)
        return Hash128(high: p.loadLE(UInt64.self, at: 0), low: p.loadLE(UInt64.self, at: 8))
    }

    /// The disk's digest root.
    public func root() -> Hash128 {
        for i in 0..<chunks.count where dirty[i] != 0 {
            dirty[i] = 0
            chunks[i] = DiskDigest.chunkHash(leaves: leaves, blocks: blockCount, chunk: i)
        }
        return DiskDigest.root(chunks: UnsafeBufferPointer(chunks), sizeBytes: sizeBytes)
    }

    /// Writes the mapped leaves back to the file (msync MS_SYNC).
    public func sync(path: FilePath) throws {
        if msync(leaves, mappedBytes, MS_SYNC) != 0 {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot sync the digest sidecar", path: path.string)
        }
    }
}

extension DigestMap {
    /// Creates the sidecar of a disk whose every block is zero (a failed-over disk before its
    /// fill: its leaves are rewritten as the fill copies the point in), without reading anything.
    public static func createAllZero(path: FilePath, sizeBytes: Int64) throws {
        let blocks = Int(sizeBytes >> Int64(BlockSize.shift))
        let zeroLeaf = withUnsafeTemporaryAllocation(byteCount: BlockSize.bytes, alignment: BlockSize.bytes) { zero in
            zero.initializeMemory(as: UInt8.self, repeating: 0)
            return Hash128.of(UnsafeRawBufferPointer(zero))
        }
        let leavesPerBuffer = 1 << 18  // 4 MiB of leaves
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: leavesPerBuffer * DiskDigest.leafBytes, alignment: 16)
        defer { buffer.deallocate() }
        for i in 0..<leavesPerBuffer { DiskDigest.storeLeaf(zeroLeaf, into: buffer, block: i) }
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode) } catch {
            throw LifeboatError.wrapping(error, "cannot create the digest sidecar", path: path.string)
        }
        try fd.closeAfter {
            var done = 0
            while done < blocks {
                let n = min(leavesPerBuffer, blocks - done)
                do { _ = try fd.writeAll(toAbsoluteOffset: Int64(done * DiskDigest.leafBytes), UnsafeRawBufferPointer(start: buffer, count: n * DiskDigest.leafBytes)) } catch {
                    throw LifeboatError.wrapping(error, "cannot write the digest sidecar", path: path.string)
                }
                done += n
            }
            do { try fd.dataSync() } catch { throw LifeboatError.wrapping(error, "cannot sync the digest sidecar", path: path.string) }
        }
    }
}
