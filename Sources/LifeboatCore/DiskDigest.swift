import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The source digest of a disk (Docs/formats/digest.md): a two-level hash tree.
///
/// - leaf i = XXH3-128 of block i (4096 bytes), stored as 16 bytes: high half LE, low half LE;
/// - chunk j = XXH3-128 of the leaf bytes of blocks [1024·j, 1024·j + 1024) (fewer in the last);
/// - root = XXH3-128 of all chunk hashes (16 bytes each, same order) followed by the disk size
///   in bytes as a little-endian UInt64.
///
/// The protect write path keeps the leaves current; a vault or a drill recomputes the root
/// from an image with `root(ofImage:)` and compares.
public enum DiskDigest {
    public static let leafBytes = 16
    public static let leavesPerChunk = 1024

    public static let zeroBlockHash: Hash128 = {
        let zeros = [UInt8](repeating: 0, count: BlockSize.bytes)
        return zeros.withUnsafeBytes { Hash128.of($0) }
    }()

    @inline(__always)
    public static func storeLeaf(_ h: Hash128, into leaves: UnsafeMutableRawPointer, block: Int) {
        let p = UnsafeMutableRawBufferPointer(start: leaves + block * leafBytes, count: leafBytes)
        p.storeLE(h.high, at: 0)
        p.storeLE(h.low, at: 8)
    }

    public static func chunkCount(blocks: Int) -> Int { (blocks + leavesPerChunk - 1) / leavesPerChunk }

    public static func chunkHash(leaves: UnsafeRawPointer, blocks: Int, chunk: Int) -> Hash128 {
        let first = chunk * leavesPerChunk
        let count = min(leavesPerChunk, blocks - first)
        return Hash128.of(UnsafeRawBufferPointer(start: leaves + first * leafBytes, count: count * leafBytes))
    }

    public static func root(chunks: UnsafeBufferPointer<Hash128>, sizeBytes: Int64) -> Hash128 {
        var bytes = [UInt8](repeating: 0, count: chunks.count * leafBytes + 8)
        bytes.withUnsafeMutableBytes { out in
            for (i, h) in chunks.enumerated() {
                out.storeLE(h.high, at: i * leafBytes)
                out.storeLE(h.low, at: i * leafBytes + 8)
            }
            out.storeLE(UInt64(sizeBytes), at: chunks.count * leafBytes)
        }
        return bytes.withUnsafeBytes { Hash128.of($0) }
    }

    /// Fills `leaves` (blocks × 16 bytes) with the hashes of the image's blocks, reading only
    /// its data extents (SEEK_DATA/SEEK_HOLE): holes hash as zero blocks without being read.
    public static func computeLeaves(ofImage fd: FileDescriptor, blocks: Int, into leaves: UnsafeMutableRawPointer) throws {
        let zero = zeroBlockHash
        for b in 0..<blocks { storeLeaf(zero, into: leaves, block: b) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        try SparseImage.forEachDataPiece(of: fd, sizeBytes: Int64(blocks) * Int64(BlockSize.bytes), buffer: buffer) { at, bytes in
            for k in 0..<(bytes.count / BlockSize.bytes) {
                let block = UnsafeRawBufferPointer(rebasing: bytes[(k * BlockSize.bytes)..<((k + 1) * BlockSize.bytes)])
                storeLeaf(Hash128.of(block), into: leaves, block: Int(at >> 12) + k)
            }
        }
    }

    /// The root of a whole raw image of `sizeBytes` (a multiple of 4096).
    public static func root(ofImage fd: FileDescriptor, sizeBytes: Int64) throws -> Hash128 {
        let blocks = Int(sizeBytes >> Int64(BlockSize.shift))
        let leaves = UnsafeMutableRawPointer.allocate(byteCount: max(blocks, 1) * leafBytes, alignment: 16)
        defer { leaves.deallocate() }
        try computeLeaves(ofImage: fd, blocks: blocks, into: leaves)
        return root(leaves: leaves, blocks: blocks, sizeBytes: sizeBytes)
    }

    /// The root over a full set of leaves (blocks × 16 bytes).
    public static func root(leaves: UnsafeRawPointer, blocks: Int, sizeBytes: Int64) -> Hash128 {
        let chunks = (0..<chunkCount(blocks: blocks)).map { chunkHash(leaves: leaves, blocks: blocks, chunk: $0) }
        return chunks.withUnsafeBufferPointer { root(chunks: $0, sizeBytes: sizeBytes) }
    }
}
