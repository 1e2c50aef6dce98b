/// A block-aligned buffer as large as the largest request FUSE sends (1 MiB, the negotiated
/// max_write and max pages) plus a block at each end for unaligned requests: a FUSE worker
/// borrows one (from an `IdlePool`) so that serving a request allocates nothing.
public final class ScratchBuffer {
    public static let bytes = (1 << 20) + 2 * BlockSize.bytes
    private let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: ScratchBuffer.bytes, alignment: BlockSize.bytes)

    public init() {}
    deinit { storage.deallocate() }

    /// `count` bytes of scratch; a request larger than FUSE ever sends gets its own buffer.
    public func with<T>(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> T) rethrows -> T {
        if count <= storage.count { return try body(UnsafeMutableRawBufferPointer(rebasing: storage[0..<count])) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        return try body(buffer)
    }
}
