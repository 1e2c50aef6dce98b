/// The operations a Lifeboat filesystem implements; the bridge turns each kernel request into
/// one call and each thrown `FUSEError` into `fuse_reply_err`. Calls arrive on libfuse's
/// worker threads, concurrently: implementations synchronize themselves. Operations that are
/// not listed answer ENOSYS (the kernel then stops asking for most of them).
public protocol FUSEFilesystem: AnyObject, Sendable {
    /// LOOKUP: the child `name` of directory `parent`. The kernel caches the answer for
    /// `entryTimeout` seconds.
    func lookup(parent: Inode, name: String) throws(FUSEError) -> FileAttributes

    /// GETATTR.
    func getattr(_ inode: Inode) throws(FUSEError) -> FileAttributes

    /// SETATTR with a new size (truncate): disks have fixed sizes, so implementations refuse
    /// size changes other than to the current size. Time and mode changes are accepted and ignored.
    func truncate(_ inode: Inode, to size: Int64) throws(FUSEError) -> FileAttributes

    /// OPEN: `flags` are the open(2) flags; throw EROFS to refuse writing. The answer says
    /// whether the kernel caches the file's data for this open.
    func open(_ inode: Inode, flags: Int32) throws(FUSEError) -> OpenMode

    /// READ: at most `size` bytes at `offset`; fewer only at end of file (the kernel takes a
    /// short read as EOF).
    func read(_ inode: Inode, offset: Int64, size: Int, reply: (ReadSource) -> Void) throws(FUSEError)

    /// WRITE: all of `data` at `offset`, returning only when it is captured as the
    /// filesystem's contract says. `data` is libfuse's buffer, valid during the call only.
    func write(_ inode: Inode, offset: Int64, data: UnsafeRawBufferPointer) throws(FUSEError)

    /// FSYNC: returns once every write acknowledged before it is durable.
    func fsync(_ inode: Inode, dataOnly: Bool) throws(FUSEError)

    /// READDIR of a directory: the whole listing (the bridge pages it).
    func readdir(_ inode: Inode) throws(FUSEError) -> [DirectoryEntry]

    /// STATFS: total and free bytes to report.
    func statfs() -> (totalBytes: UInt64, freeBytes: UInt64)

    /// How long the kernel may cache attributes and entries, in seconds.
    var attributeTimeout: Double { get }
}

/// How the kernel treats the data of one open file (Documentation/filesystems/fuse-io.rst).
public enum OpenMode: Sendable {
    /// Through the kernel's page cache, kept across opens: for content that changes only
    /// through this filesystem's own writes.
    case cached
    /// Around the page cache (FOPEN_DIRECT_IO): every read and write is a request, and a
    /// write's pages go from the writer to the request without a copy into the cache. No
    /// read-ahead; shared mmap is refused.
    case direct
}
