import LifeboatCore

extension PointReader {
    /// The source digest (Docs/formats/digest.md) of `disk` as this point presents it, read
    /// straight from the vault. A block that cannot be read (a damaged layer frame, a failing
    /// base) is named: the error says which block, its byte offset, and the vault file and
    /// offset at fault. `progress` gets the bytes hashed so far; it may throw to stop.
    public func digestRoot(disk: VaultDisk, progress: (Int64) throws -> Void = { _ in }) throws -> Hash128 {
        let blocks = disk.blockCount
        let batch = 256
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * BlockSize.bytes, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        let leaves = UnsafeMutableRawPointer.allocate(byteCount: max(blocks, 1) * DiskDigest.leafBytes, alignment: 16)
        defer { leaves.deallocate() }
        var block = 0
        while block < blocks {
            let n = min(batch, blocks - block)
            let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(n * BlockSize.bytes)])
            do {
                try read(disk: disk.id, at: Int64(block) * Int64(BlockSize.bytes), into: slice)
            } catch {
                throw firstUnreadableBlock(disk: disk, in: block..<(block + n), batchError: error)
            }
            for k in 0..<n {
                let data = UnsafeRawBufferPointer(rebasing: slice[(k * BlockSize.bytes)..<((k + 1) * BlockSize.bytes)])
                DiskDigest.storeLeaf(Hash128.of(data), into: leaves, block: block + k)
            }
            block += n
            try progress(Int64(block) * Int64(BlockSize.bytes))
        }
        return DiskDigest.root(leaves: leaves, blocks: blocks, sizeBytes: disk.sizeBytes)
    }

    /// Reads the blocks of a failed batch one by one to name the first that fails.
    private func firstUnreadableBlock(disk: VaultDisk, in range: Range<Int>, batchError: Error) -> LifeboatError {
        let one = UnsafeMutableRawBufferPointer.allocate(byteCount: BlockSize.bytes, alignment: BlockSize.bytes)
        defer { one.deallocate() }
        for b in range {
            do { try readBlock(disk: disk.id, block: BlockIndex(UInt64(b)), into: one) } catch {
                return LifeboatError(.corrupt, "disk '\(disk.name)' block \(b) (byte offset \(Int64(b) * Int64(BlockSize.bytes))) cannot be read: \(error)")
            }
        }
        return LifeboatError(.corrupt, "disk '\(disk.name)' blocks \(range.lowerBound)…\(range.upperBound - 1) cannot be read: \(batchError)")
    }
}
