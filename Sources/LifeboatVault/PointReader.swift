import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Every disk of the group as it was at one LSN. Opening maps the layers that start at or
/// before the LSN (newest first) and opens the bases: no block data is read. A block is the
/// newest version with LSN ≤ the point's in the newest layer that has one, else the base's.
///
/// Not thread-safe (it keeps a decompression context and scratch buffer); open one per reader.
public final class PointReader {
    public let lsn: LSN
    public let disks: [VaultDisk]
    private let layers: [LayerReader]
    private let bases: [DiskID: FileDescriptor]
    private let baseSums: [DiskID: BaseChecksums]
    /// An encrypted vault's base seals (none in a plain vault).
    private let baseSeals: [DiskID: BaseSeals]
    private let basePaths: [DiskID: FilePath]
    private let decompressor = ZstdDecompressor()
    /// The last decompressed frame and where it came from: a write record's frame holds all its
    /// blocks (up to 1 MiB), so a sequential reader decompresses each frame once, not per block.
    private var frame: [UInt8] = []
    private var frameKey: (layer: ObjectIdentifier, offset: Int)?

    private func copy(_ entry: LayerEntry, of layer: LayerReader, into out: UnsafeMutableRawBufferPointer) throws {
        let key = (ObjectIdentifier(layer), entry.frameOffset)
        if frameKey == nil || frameKey! != key {
            frameKey = nil
            try layer.decompressFrame(of: entry, into: &frame, decompressor: decompressor)
            frameKey = key
        }
        layer.copyBlock(entry, from: frame, into: out)
    }

    /// Write records (by LSN) this reader acts as if they never happened: the crash states a
    /// drill exploration builds by dropping writes that no flush had made durable yet.
    private let excluded: Set<LSN>

    /// The newest version of `block` at this point, in the newest layer that has one, skipping
    /// excluded writes (their block then reads as it was before them).
    private func newestEntry(disk: DiskID, block: BlockIndex) -> (LayerEntry, LayerReader)? {
        var bound = lsn
        for layer in layers {
            while let entry = layer.lookup(disk: disk, block: block, atOrBefore: bound) {
                guard excluded.contains(entry.lsn) else { return (entry, layer) }
                guard entry.lsn.rawValue > 0 else { return nil }
                bound = LSN(entry.lsn.rawValue - 1)
            }
        }
        return nil
    }

    /// `only`: the disks to open (default: all); a reader of one disk never touches the others' files.
    public init(vault: Vault, lsn: LSN, excluding excluded: Set<LSN> = [], only: Set<DiskID>? = nil) throws {
        self.excluded = excluded
        let (base, last) = try vault.lsnRange()
        guard lsn >= base, lsn <= last else {
            throw LifeboatError(.notFound, "LSN \(lsn) is outside what the vault holds (\(base)…\(last))", path: vault.root.string)
        }
        self.lsn = lsn
        self.disks = try vault.disks().filter { only?.contains($0.id) ?? true }
        self.layers = try vault.openLayers(try vault.layerRows(upTo: lsn))
        var bases: [DiskID: FileDescriptor] = [:]
        for d in disks {
            do { bases[d.id] = try FileDescriptor.open(vault.basePath(d.id), .readOnly, options: [.closeOnExec]) } catch {
                bases.values.forEach { try? $0.close() }
                throw LifeboatError.wrapping(error, "cannot open the base of disk '\(d.name)'", path: vault.basePath(d.id).string)
            }
        }
        self.bases = bases
        baseSums = try Dictionary(uniqueKeysWithValues: disks.map { d in
            (d.id, try BaseChecksums(path: vault.baseChecksumsPath(d.id), blocks: d.blockCount, writable: false))
        })
        basePaths = Dictionary(uniqueKeysWithValues: disks.map { ($0.id, vault.basePath($0.id)) })
        baseSeals = try Dictionary(uniqueKeysWithValues: disks.compactMap { d in try vault.baseSeals(d, writable: false).map { (d.id, $0) } })
    }

    /// Base bytes are checked against the base's block checksums as they are read: damage in
    /// the oldest data is an error naming the block, never served.
    /// In an encrypted vault they are then opened in place with their seals.
    private func checkBase(disk: DiskID, _ data: UnsafeMutableRawBufferPointer, firstBlock: Int) throws {
        if let sums = baseSums[disk], let bad = sums.firstMismatch(in: UnsafeRawBufferPointer(data), firstBlock: firstBlock) {
            throw baseDamage(disk: disk, block: bad)
        }
        try baseSeals[disk]?.open(blocks: data, firstBlock: firstBlock) {
            BaseSeals.failure(diskName: disks.first { $0.id == disk }?.name ?? "\(disk)", block: $0, path: basePaths[disk] ?? "")
        }
    }

    private func baseDamage(disk: DiskID, block: Int) -> LifeboatError {
        BaseChecksums.mismatch(diskName: disks.first { $0.id == disk }?.name ?? "\(disk)", block: block, path: basePaths[disk] ?? "")
    }

    deinit { bases.values.forEach { try? $0.close() } }

    /// Reads block `block` of `disk` at this point into `out` (4096 bytes).
    public func readBlock(disk: DiskID, block: BlockIndex, into out: UnsafeMutableRawBufferPointer) throws {
        if let (entry, layer) = newestEntry(disk: disk, block: block) {
            try copy(entry, of: layer, into: out)
            return
        }
        guard let base = bases[disk] else { throw LifeboatError(.notFound, "no disk \(disk) in this vault") }
        do { try base.readAll(at: block.byteOffset.rawValue, into: out, zeroFillPastEOF: true) } catch {
            throw LifeboatError.wrapping(error, "base read failed", path: basePaths[disk]?.string, offset: block.byteOffset.rawValue)
        }
        try checkBase(disk: disk, out, firstBlock: Int(block.rawValue))
    }

    /// Fills `buffer` with the disk's bytes at `offset` (both multiples of 4096). Blocks that
    /// no layer holds are read from the base in one pread per contiguous run.
    public func read(disk: DiskID, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        guard let base = bases[disk] else { throw LifeboatError(.notFound, "no disk \(disk) in this vault") }
        let count = buffer.count >> BlockSize.shift
        let first = UInt64(offset >> Int64(BlockSize.shift))
        var runStart: Int?
        func flushRun(upTo end: Int) throws {
            guard let start = runStart else { return }
            runStart = nil
            var from = offset + Int64(start << BlockSize.shift)
            let to = offset + Int64(end << BlockSize.shift)
            // Holes of the sparse base are zero-filled here: reading them would make the kernel
            // zero a page-cache page for each one and copy it out (most of an export's time).
            let data: Int64?
            do { data = try base.nextData(at: from) } catch {
                throw LifeboatError.system(error, "cannot find the base's data extents", path: basePaths[disk]?.string, offset: from)
            }
            let zeroTo = data.map { min(to, $0 & ~Int64(BlockSize.bytes - 1)) } ?? to
            if zeroTo > from {
                UnsafeMutableRawBufferPointer(rebasing: buffer[Int(from - offset)..<Int(zeroTo - offset)]).initializeMemory(as: UInt8.self, repeating: 0)
                // A hole's blocks must have been recorded as zero blocks.
                let holes = Int(from >> Int64(BlockSize.shift))..<Int(zeroTo >> Int64(BlockSize.shift))
                if let bad = baseSums[disk]?.firstNonZero(in: holes) ?? baseSeals[disk]?.firstSealed(in: holes) {
                    throw baseDamage(disk: disk, block: bad)
                }
                from = zeroTo
            }
            guard from < to else { return }
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[Int(from - offset)..<Int(to - offset)])
            do { try base.readAll(at: from, into: slice, zeroFillPastEOF: true) } catch {
                throw LifeboatError.wrapping(error, "base read failed", offset: from)
            }
            try checkBase(disk: disk, slice, firstBlock: Int(from >> Int64(BlockSize.shift)))
        }
        for k in 0..<count {
            let block = BlockIndex(first + UInt64(k))
            if let (entry, layer) = newestEntry(disk: disk, block: block) {
                try flushRun(upTo: k)
                try copy(entry, of: layer, into: UnsafeMutableRawBufferPointer(rebasing: buffer[(k << BlockSize.shift)..<((k + 1) << BlockSize.shift)]))
            } else if runStart == nil {
                runStart = k
            }
        }
        try flushRun(upTo: count)
    }

    /// Streams the whole disk to `output` as raw, writing only non-zero blocks (the output is
    /// sparse; its size is set to the disk's). `progress` gets the bytes done so far.
    public func exportRaw(disk: VaultDisk, to output: FileDescriptor, progress: (Int64) -> Void = { _ in }) throws {
        let batch = 256
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * BlockSize.bytes, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        var block = 0
        while block < disk.blockCount {
            let n = min(batch, disk.blockCount - block)
            for k in 0..<n {
                let slot = UnsafeMutableRawBufferPointer(rebasing: buffer[(k * BlockSize.bytes)..<((k + 1) * BlockSize.bytes)])
                try readBlock(disk: disk.id, block: BlockIndex(UInt64(block + k)), into: slot)
            }
            var k = 0
            while k < n {
                // Write runs of non-zero blocks; zero blocks stay holes.
                let slot = { (i: Int) in UnsafeRawBufferPointer(rebasing: buffer[(i * BlockSize.bytes)..<((i + 1) * BlockSize.bytes)]) }
                if slot(k).allSatisfy({ $0 == 0 }) { k += 1; continue }
                var end = k + 1
                while end < n && !slot(end).allSatisfy({ $0 == 0 }) { end += 1 }
                let run = UnsafeRawBufferPointer(rebasing: buffer[(k * BlockSize.bytes)..<(end * BlockSize.bytes)])
                do { _ = try output.writeAll(toAbsoluteOffset: Int64(block + k) * Int64(BlockSize.bytes), run) } catch {
                    throw LifeboatError.wrapping(error, "export write failed", offset: Int64(block + k) * Int64(BlockSize.bytes))
                }
                k = end
            }
            block += n
            progress(Int64(block) * Int64(BlockSize.bytes))
        }
        do {
            try output.resize(to: disk.sizeBytes)
            try output.fullSync()
        } catch {
            throw LifeboatError.wrapping(error, "export sync failed")
        }
    }
}
