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

/// An errno for the kernel. Every error that crosses the FUSE boundary is one of these.
public struct FUSEError: Error, Sendable {
    public var errno: Int32
    public init(_ errno: Int32) { self.errno = errno }
    public static let noEntry = FUSEError(ENOENT)
    public static let io = FUSEError(EIO)
    public static let readOnly = FUSEError(EROFS)
    public static let notSupported = FUSEError(EOPNOTSUPP)
    public static let noSpace = FUSEError(ENOSPC)
    public static let invalid = FUSEError(EINVAL)
    public static let notPermitted = FUSEError(EPERM)
    public static let isDirectory = FUSEError(EISDIR)
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
