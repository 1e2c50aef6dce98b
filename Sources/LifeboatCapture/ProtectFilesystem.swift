import Foundation
import LifeboatCore
import LifeboatSite
import LifeboatFUSE

#if canImport(Glibc)
import Glibc
#endif

/// The protected-disk filesystem: a root directory with one `NAME.img` file per disk of the
/// group. Reads come straight from the primary (the kernel splices them); writes go through
/// the group's write path; fsync is a journal flush. Sizes are fixed.
public final class ProtectFilesystem: FUSEFilesystem, @unchecked Sendable {
    private let group: ProtectionGroup
    private let names: [String: Int]
    private let modified: timespec
    /// For reads of a failed-over disk still being filled (assembled, not spliced).
    private let scratch = IdlePool(first: ScratchBuffer()) { ScratchBuffer() }

    public init(group: ProtectionGroup) {
        self.group = group
        self.names = Dictionary(uniqueKeysWithValues: group.disks.enumerated().map { ($1.config.name + ".img", $0) })
        let now = group.startedAt.timeIntervalSince1970
        self.modified = timespec(tv_sec: Int(now), tv_nsec: 0)
    }

    public var attributeTimeout: Double { 3600 }

    @inline(__always)
    private func diskIndex(_ inode: Inode) throws(FUSEError) -> Int {
        let index = Int(inode.rawValue) - 2
        guard index >= 0, index < group.disks.count else { throw .noEntry }
        return index
    }

    private func attributes(ofDisk index: Int) -> FileAttributes {
        FileAttributes(inode: Inode(UInt64(index + 2)), isDirectory: false, permissions: 0o600, size: group.disks[index].sizeBytes, modified: modified)
    }

    private var rootAttributes: FileAttributes {
        FileAttributes(inode: .root, isDirectory: true, permissions: 0o755, size: 4096, modified: modified)
    }

    public func lookup(parent: Inode, name: String) throws(FUSEError) -> FileAttributes {
        guard parent == .root, let index = names[name] else { throw .noEntry }
        return attributes(ofDisk: index)
    }

    public func getattr(_ inode: Inode) throws(FUSEError) -> FileAttributes {
        if inode == .root { return rootAttributes }
        return attributes(ofDisk: try diskIndex(inode))
    }

    public func truncate(_ inode: Inode, to size: Int64) throws(FUSEError) -> FileAttributes {
        let a = try getattr(inode)
        // A protected disk has a fixed size; O_TRUNC or a resize would destroy or reshape it.
        guard !a.isDirectory, size == a.size else { throw .notPermitted }
        return a
    }

    /// Every open goes around the kernel's page cache (decision 0014): a write's pages go from
    /// the writer straight into the request (the cached mode copies them into the FUSE file's
    /// cache first, on the writer's time, and keeps a third copy of the disk in memory beside
    /// the primary's and the journal's). Reads are served from the primary's page cache by splice.
    public func open(_ inode: Inode, flags: Int32) throws(FUSEError) -> OpenMode {
        _ = try diskIndex(inode)
        return .direct
    }

    public func read(_ inode: Inode, offset: Int64, size: Int, reply: (ReadSource) -> Void) throws(FUSEError) {
        let disk = group.disks[try diskIndex(inode)]
        let length = offset >= disk.sizeBytes ? 0 : Int(min(Int64(size), disk.sizeBytes - offset))
        if disk.primaryHoldsAll { return reply(.file(fd: disk.primary.rawValue, offset: offset, length: length)) }
        // A failed-over disk being filled: whole blocks, each from the primary or the point.
        let first = offset & ~Int64(BlockSize.bytes - 1)
        let end = (offset + Int64(length) + Int64(BlockSize.bytes) - 1) & ~Int64(BlockSize.bytes - 1)
        do {
            try scratch.with { scratch in
                try scratch.with(Int(end - first)) { buffer in
                    try disk.readBlocks(at: first, into: buffer)
                    reply(.bytes(UnsafeRawBufferPointer(rebasing: buffer[Int(offset - first)..<(Int(offset - first) + length)])))
                }
            }
        } catch {
            throw .from(error)
        }
    }

    public func write(_ inode: Inode, offset: Int64, data: UnsafeRawBufferPointer) throws(FUSEError) {
        let index = try diskIndex(inode)
        do {
            try group.write(disk: index, offset: offset, data: data)
        } catch let e as LifeboatError where e.code == .invalidArgument {
            throw FUSEError(ENOSPC, cause: e)  // past the end of the disk, as a block device answers
        } catch let e as LifeboatError where e.code == .fenced {
            throw FUSEError(EROFS, cause: e)  // another host writes the group's history now
        } catch {
            // Never acknowledged without being journaled: the writer sees EIO whatever failed
            // (a full journal is an I/O error of the disk, as a block device reports it); the
            // log and status say why.
            throw FUSEError(EIO, cause: error)
        }
    }

    public func fsync(_ inode: Inode, dataOnly: Bool) throws(FUSEError) {
        _ = try diskIndex(inode)
        do { try group.flush() } catch { throw FUSEError(EIO, cause: error) }
    }

    public func readdir(_ inode: Inode) throws(FUSEError) -> [DirectoryEntry] {
        guard inode == .root else { throw FUSEError(ENOTDIR) }
        var entries = [DirectoryEntry(name: ".", attributes: rootAttributes), DirectoryEntry(name: "..", attributes: rootAttributes)]
        for (i, disk) in group.disks.enumerated() {
            entries.append(DirectoryEntry(name: disk.config.name + ".img", attributes: attributes(ofDisk: i)))
        }
        return entries
    }

    public func statfs() -> (totalBytes: UInt64, freeBytes: UInt64) {
        (UInt64(group.disks.reduce(0) { $0 + $1.sizeBytes }), 0)
    }
}
