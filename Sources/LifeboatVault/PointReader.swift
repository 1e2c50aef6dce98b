import LifeboatCore
import SystemPackage

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
    private let decompressor = ZstdDecompressor()
    private var scratch: [UInt8] = []

    public init(vault: Vault, lsn: LSN) throws {
        let (base, last) = try vault.lsnRange()
        guard lsn >= base, lsn <= last else {
            throw LifeboatError(.notFound, "LSN \(lsn) is outside what the vault holds (\(base)…\(last))", path: vault.root.string)
        }
        self.lsn = lsn
        self.disks = try vault.disks()
        self.layers = try vault.layerRows(upTo: lsn).map { try LayerReader(path: vault.layerPath($0)) }
        var bases: [DiskID: FileDescriptor] = [:]
        for d in disks {
            do { bases[d.id] = try FileDescriptor.open(vault.basePath(d.id), .readOnly, options: [.closeOnExec]) } catch {
                bases.values.forEach { try? $0.close() }
                throw LifeboatError.system(error as? Errno ?? .ioError, "cannot open the base of disk '\(d.name)'", path: vault.basePath(d.id).string)
            }
        }
        self.bases = bases
    }

    deinit { bases.values.forEach { try? $0.close() } }

    /// Reads block `block` of `disk` at this point into `out` (4096 bytes).
    public func readBlock(disk: DiskID, block: BlockIndex, into out: UnsafeMutableRawBufferPointer) throws {
        for layer in layers {
            if let entry = layer.lookup(disk: disk, block: block, atOrBefore: lsn) {
                try layer.readBlock(entry, into: out, scratch: &scratch, decompressor: decompressor)
                return
            }
        }
        guard let base = bases[disk] else { throw LifeboatError(.notFound, "no disk \(disk) in this vault") }
        do { try base.readAll(at: block.byteOffset.rawValue, into: out, zeroFillPastEOF: true) } catch {
            throw LifeboatError.system(error as? Errno ?? .ioError, "base read failed", offset: block.byteOffset.rawValue)
        }
    }

    /// Fills `buffer` with the disk's bytes at `offset` (both multiples of 4096).
    public func read(disk: DiskID, at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let block = BlockIndex(UInt64((offset + Int64(done)) >> Int64(BlockSize.shift)))
            try readBlock(disk: disk, block: block, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + BlockSize.bytes)]))
            done += BlockSize.bytes
        }
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
                    throw LifeboatError.system(error as? Errno ?? .ioError, "export write failed", offset: Int64(block + k) * Int64(BlockSize.bytes))
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
            throw LifeboatError.system(error as? Errno ?? .ioError, "export sync failed")
        }
    }
}
