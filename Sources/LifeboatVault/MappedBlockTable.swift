import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A file of one fixed-size entry per block of a base, mapped: what the base's checksums
/// (`BaseChecksums`, 4 bytes) and seals (`BaseSeals`, 24 bytes) are. A prune sets entries without
/// a system call each, a reader looks them up in place; its size must be exactly entries × size.
final class MappedBlockTable {
    let path: FilePath
    let blocks: Int
    let entrySize: Int
    /// Nil for a table of no blocks (mmap refuses length 0).
    let map: UnsafeMutableRawPointer?

    /// Maps the table at `path`; `what` names it in errors ("the base's block checksums").
    init(path: FilePath, blocks: Int, entrySize: Int, writable: Bool, what: String) throws {
        self.path = path
        self.blocks = blocks
        self.entrySize = entrySize
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, writable ? .readWrite : .readOnly, options: [.closeOnExec]) } catch {
            throw LifeboatError.wrapping(error, "cannot open \(what)", path: path.string)
        }
        defer { try? fd.close() }
        let size = (try? fd.fileSize()) ?? -1
        guard size == Int64(blocks) * Int64(entrySize) else {
            throw LifeboatError(.corrupt, "\(what): the file is \(size) bytes, \(blocks * entrySize) expected (\(entrySize) per block)", path: path.string)
        }
        guard blocks > 0 else { map = nil; return }
        let p = mmap(nil, blocks * entrySize, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd.rawValue, 0)
        guard let p, p != MAP_FAILED else {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot map \(what)", path: path.string)
        }
        map = p
    }

    deinit { if let map { munmap(map, blocks * entrySize) } }

    /// Makes a table of `blocks` zero entries (a sparse file).
    static func create(at path: FilePath, blocks: Int, entrySize: Int, what: String) throws {
        do {
            let fd = try FileDescriptor.open(path, .readWrite, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode)
            defer { try? fd.close() }
            try fd.resize(to: Int64(blocks) * Int64(entrySize))
        } catch {
            throw LifeboatError.wrapping(error, "cannot create \(what)", path: path.string)
        }
    }

    /// The entry of `block`, in place.
    func entry(_ block: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: map! + block * entrySize, count: entrySize)
    }

    /// Writes the entries to disk (a prune: after its merge, before its catalog commit).
    func sync(_ what: String) throws {
        guard let map else { return }
        if msync(map, blocks * entrySize, MS_SYNC) != 0 {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot write \(what)", path: path.string)
        }
    }
}
