import CLinux
import LifeboatCore
import LifeboatSite
import LifeboatVault
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What a failed-over disk's primary does not hold yet (decision 0012): the recovery point it
/// started from, read through the vault, and a bitmap of the blocks the primary holds — copied
/// from the point by the fill, or written since the failover. The disk is writable at once,
/// whatever its size; reads of the rest go to the point until the fill has copied everything.
///
/// Crash safety: a bit is set only after its block is in the primary; `snapshot()` is taken
/// before the primary's fdatasync and saved after it, so a saved bit always names a durable
/// block. A bit lost in a crash is read from the point again (the same bytes), or set again by
/// the journal's replay of the write that set it.
final class DiskBacking: @unchecked Sendable {
    let path: FilePath
    let diskID: DiskID
    let blockCount: Int
    private let words: UnsafeMutablePointer<UInt64>
    private let wordCount: Int
    private let unfilled: Atomic<Int>
    private let pool: PointReaderPool

    /// Opens the bitmap at `path` (created by the failover) and the point it reads from.
    init(path: FilePath, recovery: SiteConfig.Recovery, disk: SiteConfig.Disk) throws {
        self.path = path
        self.diskID = disk.diskID
        self.blockCount = disk.blockCount
        wordCount = (blockCount + 63) / 64
        let bytes: [UInt8]
        do { bytes = try readWholeFile(path) } catch {
            throw LifeboatError.system(error, "cannot read the fill bitmap of a failed-over disk", path: path.string)
        }
        guard bytes.count == wordCount * 8 else {
            throw LifeboatError(.corrupt, "the fill bitmap is \(bytes.count) bytes; a \(disk.sizeBytes)-byte disk needs \(wordCount * 8)", path: path.string)
        }
        words = .allocate(capacity: wordCount)
        var missing = 0
        let (wordCount, blockCount, words) = (self.wordCount, self.blockCount, self.words)
        bytes.withUnsafeBytes { raw in
            for i in 0..<wordCount {
                var w = raw.loadLE(UInt64.self, at: i * 8)
                if i == wordCount - 1 && blockCount % 64 != 0 { w |= ~0 << UInt64(blockCount % 64) }  // past the end: held
                words[i] = w
                missing += 64 - w.nonzeroBitCount
            }
        }
        unfilled = Atomic(missing)
        do {
            let vault = try Vault(root: FilePath(recovery.vault), key: try recovery.key())
            pool = try PointReaderPool(vault: vault, lsn: LSN(recovery.lsn), only: [disk.diskID])
        } catch {
            words.deallocate()
            throw LifeboatError.wrapping(error, "cannot open the recovery point of disk '\(disk.name)' (LSN \(recovery.lsn))", path: recovery.vault)
        }
    }

    deinit { words.deallocate() }

    var unfilledBlocks: Int { unfilled.load(ordering: .relaxed) }
    var isComplete: Bool { unfilled.load(ordering: .acquiring) == 0 }

    @inline(__always)
    func isFilled(_ block: Int) -> Bool {
        clinux_load_acquire_u64(words + (block >> 6)) & (1 << UInt64(block & 63)) != 0
    }

    /// The primary holds blocks `first ..< first+count` (written or copied): reads go there now.
    func markFilled(first: Int, count: Int) {
        var newly = 0
        var b = first
        while b < first + count {
            let inWord = min(64 - (b & 63), first + count - b)
            let mask: UInt64 = (inWord == 64 ? ~0 : ((1 << UInt64(inWord)) - 1)) << UInt64(b & 63)
            let before = clinux_fetch_or_release_u64(words + (b >> 6), mask)
            newly += (mask & ~before).nonzeroBitCount
            b += inWord
        }
        if newly > 0 { unfilled.subtract(newly, ordering: .releasing) }
    }

    /// The first block at or after `from` the primary lacks, if any.
    func firstUnfilled(from: Int) -> Int? {
        var i = from >> 6
        var w = i < wordCount ? clinux_load_acquire_u64(words + i) | ((1 << UInt64(from & 63)) - 1) : ~0
        while w == ~0 {
            i += 1
            guard i < wordCount else { return nil }
            w = clinux_load_acquire_u64(words + i)
        }
        let b = i * 64 + (~w).trailingZeroBitCount
        return b < blockCount ? b : nil
    }

    /// The bitmap as it is now, to be saved once the primary is synced (see the type's comment).
    func snapshot() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: wordCount * 8)
        out.withUnsafeMutableBytes { raw in
            for i in 0..<wordCount { raw.storeBytes(of: clinux_load_acquire_u64(words + i).littleEndian, toByteOffset: i * 8, as: UInt64.self) }
        }
        return out
    }

    /// Saves a snapshot taken before the primary's sync; once every block is filled, removes the
    /// bitmap instead (the disk is then an ordinary primary).
    func save(_ snapshot: [UInt8], complete: Bool) throws {
        if complete {
            guard unlink(path.string) == 0 || errno == ENOENT else {
                throw LifeboatError.system(Errno(rawValue: errno), "cannot remove the fill bitmap of a filled disk", path: path.string)
            }
            try syncDirectory(path.removingLastComponent())
        } else {
            try writeFileAtomically(path, snapshot)
        }
    }

    /// Fills `buffer` with the disk's bytes from `offset` (block-aligned, whole blocks): runs of
    /// blocks the primary holds from it, the others from the point.
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, primary: FileDescriptor, primaryPath: FilePath) throws {
        let firstBlock = Int(offset >> Int64(BlockSize.shift))
        let blocks = buffer.count >> BlockSize.shift
        var i = 0
        while i < blocks {
            let filled = isFilled(firstBlock + i)
            var j = i + 1
            while j < blocks && isFilled(firstBlock + j) == filled { j += 1 }
            let run = UnsafeMutableRawBufferPointer(rebasing: buffer[(i << BlockSize.shift)..<(j << BlockSize.shift)])
            let at = offset + Int64(i << BlockSize.shift)
            if filled {
                do { try primary.readAll(at: at, into: run) } catch {
                    throw LifeboatError.wrapping(error, "cannot read the primary", path: primaryPath.string, offset: at)
                }
            } else {
                try pool.with { reader in try reader.read(disk: diskID, at: at, into: run) }
            }
            i = j
        }
    }

    /// The point's bytes of blocks `first ..< first+count` (the fill's source).
    func readPoint(first: Int, into buffer: UnsafeMutableRawBufferPointer) throws {
        try pool.with { reader in try reader.read(disk: diskID, at: Int64(first) << BlockSize.shift, into: buffer) }
    }
}
