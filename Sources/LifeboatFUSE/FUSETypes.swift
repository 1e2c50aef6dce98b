import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A FUSE inode number. 1 is the root (FUSE_ROOT_ID).
public struct Inode: RawRepresentable, Hashable, Sendable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static let root = Inode(1)
}

/// An errno for the kernel, and the error it stands for. Every error that crosses the FUSE
/// boundary is one of these; `from` is the one mapping from Lifeboat's errors, and the bridge
/// logs every answer that carries a cause (the kernel gets only the number).
public struct FUSEError: Error, Sendable {
    public var errno: Int32
    public var cause: (any Error)?
    public init(_ errno: Int32, cause: (any Error)? = nil) {
        self.errno = errno
        self.cause = cause
    }
    public static let noEntry = FUSEError(ENOENT)
    public static let readOnly = FUSEError(EROFS)
    public static let noSpace = FUSEError(ENOSPC)
    public static let notPermitted = FUSEError(EPERM)

    /// The errno for any error, keeping it as the cause: a LifeboatError by its code (and its
    /// own errno for system errors: ENOSPC stays ENOSPC), an Errno as itself, anything else EIO.
    public static func from(_ error: any Error) -> FUSEError {
        switch error {
        case let e as FUSEError: return e
        case let e as Errno: return FUSEError(e.rawValue, cause: e)
        case let e as LifeboatError:
            let errno: Int32 = switch e.code {
            case .io, .permission, .busy: e.errno?.rawValue ?? (e.code == .permission ? EACCES : e.code == .busy ? EBUSY : EIO)
            case .notFound: ENOENT
            case .alreadyExists: EEXIST
            case .invalidArgument: EINVAL
            case .unsupported: EOPNOTSUPP
            case .fenced: EROFS  // the disk's history belongs to another host now: read-only, as a fenced block device
            case .corrupt, .mismatch, .inconclusive, .degraded, .internalError: EIO
            }
            return FUSEError(errno, cause: e)
        default: return FUSEError(EIO, cause: error)
        }
    }
}

/// What getattr and lookup answer.
public struct FileAttributes: Sendable {
    public var inode: Inode
    public var isDirectory: Bool
    public var permissions: UInt32
    public var size: Int64
    public var modified: timespec

    public init(inode: Inode, isDirectory: Bool, permissions: UInt32, size: Int64, modified: timespec) {
        self.inode = inode
        self.isDirectory = isDirectory
        self.permissions = permissions
        self.size = size
        self.modified = modified
    }

    func stat() -> Glibc.stat {
        var st = Glibc.stat()
        st.st_ino = UInt(inode.rawValue)
        st.st_mode = (isDirectory ? S_IFDIR : S_IFREG) | permissions
        st.st_nlink = isDirectory ? 2 : 1
        st.st_size = Int(size)
        st.st_blksize = 4096
        st.st_blocks = Int((size + 511) / 512)
        st.st_mtim = modified
        st.st_ctim = modified
        st.st_atim = modified
        return st
    }
}

/// One directory entry for readdir.
public struct DirectoryEntry: Sendable {
    public var name: String
    public var attributes: FileAttributes
    public init(name: String, attributes: FileAttributes) {
        self.name = name
        self.attributes = attributes
    }
}

/// Where the bytes of a read come from.
public enum ReadSource {
    /// `length` bytes of file descriptor `fd` at `offset`: the kernel moves them (splice)
    /// without a copy through our memory.
    case file(fd: Int32, offset: Int64, length: Int)
    /// Bytes the filesystem produced; valid only during the reply.
    case bytes(UnsafeRawBufferPointer)
}
