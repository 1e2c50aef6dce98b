import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatVHD
import LifeboatVault
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A recovery point served through FUSE: one file per disk of the group, all at the point's
/// LSN, read lazily through the vault (nothing is copied at mount). `NAME.img` is the raw disk;
/// with `vhd`, `NAME.vhd` is a fixed VHD: the same bytes followed by a 512-byte footer made here.
///
/// Without an overlay every write is refused (EROFS). With one, writes go to a sparse
/// copy-on-write file per disk in the overlay directory, tracked by a block bitmap, and reads
/// prefer the overlay's blocks; the overlay is deleted at unmount, so the vault never changes.
public final class PointViewFilesystem: FUSEFilesystem, @unchecked Sendable {
    struct Disk {
        let vault: VaultDisk
        let fileName: String
        let fileSize: Int64
        let footer: [UInt8]?
        var overlay: Overlay?
    }

    final class Overlay: @unchecked Sendable {
        let path: FilePath
        let fd: FileDescriptor
        private let bits: Mutex<[UInt64]>
        init(path: FilePath, blocks: Int) throws {
            self.path = path
            fd = try FileDescriptor.open(path, .readWrite, options: [.create, .truncate, .closeOnExec], permissions: .ownerReadWrite)
            bits = Mutex([UInt64](repeating: 0, count: (blocks + 63) / 64))
        }
        func has(_ b: Int) -> Bool { bits.withLock { $0[b >> 6] & (1 << UInt64(b & 63)) != 0 } }
        func mark(_ b: Int) { bits.withLock { $0[b >> 6] |= 1 << UInt64(b & 63) } }
        func discard() {
            try? fd.close()
            unlink(path.string)
        }
    }

    private var disks: [Disk]
    private let workers: IdlePool<ViewWorker>
    private let modified: timespec
    /// Serializes overlay writes per filesystem (block read-modify-write); reads don't take it.
    private let writeLock = ConditionLock()

    /// `excluding`: write records to act as if they never happened (PointReader); `only`: the
    /// disks to serve (default: every disk of the vault).
    public init(vault: Vault, lsn: LSN, vhd: Bool, overlayDirectory: FilePath?, excluding: Set<LSN> = [], only: Set<DiskID>? = nil) throws {
        workers = try viewWorkers(vault: vault, lsn: lsn, excluding: excluding, only: only)
        let now = Date().timeIntervalSince1970
        modified = timespec(tv_sec: Int(now), tv_nsec: 0)
        disks = try vault.disks().filter { only?.contains($0.id) ?? true }.map { d in
            let footer = vhd ? VHDFooter(diskType: .fixed, size: UInt64(d.sizeBytes)).encoded() : nil
            var disk = Disk(vault: d, fileName: d.name + (vhd ? ".vhd" : ".img"), fileSize: d.sizeBytes + Int64(footer?.count ?? 0), footer: footer)
            if let overlayDirectory {
                let path = overlayDirectory.appending(".lifeboat-overlay-\(getpid())-\(d.name)")
                do { disk.overlay = try Overlay(path: path, blocks: d.blockCount) } catch {
                    throw LifeboatError.wrapping(error, "cannot create the overlay", path: path.string)
                }
            }
            return disk
        }
    }

    /// Deletes the overlays (at unmount).
    public func discardOverlays() { for d in disks { d.overlay?.discard() } }

    public var attributeTimeout: Double { 3600 }

    private func index(_ inode: LifeboatFUSE.Inode) throws(FUSEError) -> Int {
        let i = Int(inode.rawValue) - 2
        guard i >= 0, i < disks.count else { throw .noEntry }
        return i
    }

    private func attributes(_ i: Int) -> FileAttributes {
        FileAttributes(inode: LifeboatFUSE.Inode(UInt64(i + 2)), isDirectory: false, permissions: disks[i].overlay == nil ? 0o400 : 0o600,
                       size: disks[i].fileSize, modified: modified)
    }

    private var root: FileAttributes { FileAttributes(inode: .root, isDirectory: true, permissions: 0o755, size: 4096, modified: modified) }

    public func lookup(parent: LifeboatFUSE.Inode, name: String) throws(FUSEError) -> FileAttributes {
        guard parent == .root, let i = disks.firstIndex(where: { $0.fileName == name }) else { throw .noEntry }
        return attributes(i)
    }

    public func getattr(_ inode: LifeboatFUSE.Inode) throws(FUSEError) -> FileAttributes {
        inode == .root ? root : attributes(try index(inode))
    }

    public func truncate(_ inode: LifeboatFUSE.Inode, to size: Int64) throws(FUSEError) -> FileAttributes {
        let a = try getattr(inode)
        guard size == a.size else { throw disks[try index(inode)].overlay == nil ? .readOnly : .notPermitted }
        return a
    }

    public func open(_ inode: LifeboatFUSE.Inode, flags: Int32) throws(FUSEError) -> OpenMode {
        let i = try index(inode)
        if flags & O_ACCMODE != O_RDONLY && disks[i].overlay == nil { throw .readOnly }
        // The point never changes, and an overlay changes only through this filesystem.
        return .cached
    }

    public func read(_ inode: LifeboatFUSE.Inode, offset: Int64, size: Int, reply: (ReadSource) -> Void) throws(FUSEError) {
        let d = disks[try index(inode)]
        guard offset < d.fileSize, size > 0 else { return reply(.bytes(UnsafeRawBufferPointer(start: nil, count: 0))) }
        let length = Int(min(Int64(size), d.fileSize - offset))
        // Whole blocks covering the range, read into the worker's scratch, then the requested slice.
        let first = offset & ~Int64(BlockSize.bytes - 1)
        let end = (offset + Int64(length) + Int64(BlockSize.bytes) - 1) & ~Int64(BlockSize.bytes - 1)
        do {
            try workers.with { worker in
                try worker.scratch.with(Int(end - first)) { buffer in
                    try fill(d, from: first, into: buffer, reader: worker.reader)
                    reply(.bytes(UnsafeRawBufferPointer(rebasing: buffer[Int(offset - first)..<(Int(offset - first) + length)])))
                }
            }
        } catch {
            throw .from(error)  // a damaged base or layer: logged with disk, block, file and offset
        }
    }

    /// Disk bytes (overlay first, then the point), then the VHD footer past the disk's end.
    /// Runs of blocks not in the overlay go to the point in one call.
    private func fill(_ d: Disk, from offset: Int64, into buffer: UnsafeMutableRawBufferPointer, reader: PointReader) throws {
        let diskEnd = Int(max(0, min(Int64(buffer.count), d.vault.sizeBytes - offset)))
        var at = 0
        while at < diskEnd {
            let block = Int((offset + Int64(at)) >> Int64(BlockSize.shift))
            if let overlay = d.overlay, overlay.has(block) {
                try overlay.fd.readAll(at: offset + Int64(at), into: UnsafeMutableRawBufferPointer(rebasing: buffer[at..<(at + BlockSize.bytes)]))
                at += BlockSize.bytes
                continue
            }
            var end = at + BlockSize.bytes
            while end < diskEnd, !(d.overlay?.has(Int((offset + Int64(end)) >> Int64(BlockSize.shift))) ?? false) { end += BlockSize.bytes }
            let run = UnsafeMutableRawBufferPointer(rebasing: buffer[at..<end])
            try reader.read(disk: d.vault.id, at: offset + Int64(at), into: run)
            at = end
        }
        if diskEnd < buffer.count {
            let tail = UnsafeMutableRawBufferPointer(rebasing: buffer[diskEnd...])
            tail.initializeMemory(as: UInt8.self, repeating: 0)
            if let footer = d.footer, offset + Int64(diskEnd) == d.vault.sizeBytes { tail.copyBytes(from: footer) }
        }
    }

    public func write(_ inode: LifeboatFUSE.Inode, offset: Int64, data: UnsafeRawBufferPointer) throws(FUSEError) {
        let d = disks[try index(inode)]
        guard let overlay = d.overlay else { throw .readOnly }
        guard offset >= 0, offset + Int64(data.count) <= d.vault.sizeBytes else { throw .noSpace }
        writeLock.lock()
        defer { writeLock.unlock() }
        let first = offset & ~Int64(BlockSize.bytes - 1)
        let end = (offset + Int64(data.count) + Int64(BlockSize.bytes) - 1) & ~Int64(BlockSize.bytes - 1)
        do {
            try workers.with { worker in
                try worker.scratch.with(Int(end - first)) { buffer in
                    if offset != first || end != offset + Int64(data.count) { try fill(d, from: first, into: buffer, reader: worker.reader) }
                    UnsafeMutableRawBufferPointer(rebasing: buffer[Int(offset - first)..<(Int(offset - first) + data.count)]).copyMemory(from: data)
                    _ = try overlay.fd.writeAll(toAbsoluteOffset: first, UnsafeRawBufferPointer(buffer))
                }
            }
        } catch {
            throw .from(error)
        }
        for b in Int(first >> Int64(BlockSize.shift))..<Int(end >> Int64(BlockSize.shift)) { overlay.mark(b) }
    }

    /// The overlay is thrown away at unmount: nothing to make durable.
    public func fsync(_ inode: LifeboatFUSE.Inode, dataOnly: Bool) throws(FUSEError) { _ = try index(inode) }

    public func readdir(_ inode: LifeboatFUSE.Inode) throws(FUSEError) -> [DirectoryEntry] {
        guard inode == .root else { throw FUSEError(ENOTDIR) }
        return [DirectoryEntry(name: ".", attributes: root), DirectoryEntry(name: "..", attributes: root)]
            + disks.indices.map { DirectoryEntry(name: disks[$0].fileName, attributes: attributes($0)) }
    }

    public func statfs() -> (totalBytes: UInt64, freeBytes: UInt64) {
        (UInt64(disks.reduce(0) { $0 + $1.fileSize }), 0)
    }
}

/// What a FUSE worker thread borrows for one request: a point reader (not thread-safe: it keeps
/// a decompression context and the last frame) and a scratch buffer, so serving a read or an
/// overlay write allocates nothing.
final class ViewWorker {
    let reader: PointReader
    let scratch = ScratchBuffer()

    init(reader: PointReader) { self.reader = reader }
}

/// Idle workers, one made per concurrent FUSE thread on first need and reused after; the first
/// opens the point now, so a bad point fails the mount.
func viewWorkers(vault: Vault, lsn: LSN, excluding excluded: Set<LSN>, only: Set<DiskID>?) throws -> IdlePool<ViewWorker> {
    IdlePool(first: ViewWorker(reader: try PointReader(vault: vault, lsn: lsn, excluding: excluded, only: only))) {
        ViewWorker(reader: try PointReader(vault: vault, lsn: lsn, excluding: excluded, only: only))
    }
}
