import LifeboatCore
import LifeboatSite

/// The fill of failed-over disks (decision 0012): a background thread copies each disk's
/// recovery point into its primary, block runs the primary does not hold yet, so that reads
/// stop going to the vault. The disks are writable throughout; a write to a block first makes
/// it the primary's (`DiskBacking`), and the fill never overwrites it: the point is read outside
/// any lock, then copied under the blocks' stripe locks only where the bitmap still says unfilled.
extension ProtectionGroup {
    /// Blocks copied per step: 1 MiB, the same piece a FUSE write brings.
    static let fillPieceBlocks = 256

    /// Why no point can be marked now: a failed-over disk is still filling (its digest leaves
    /// of the blocks not copied yet are not the disk's), nil otherwise.
    var fillingReason: String? {
        let left = disks.reduce(0) { $0 + ($1.backing?.unfilledBlocks ?? 0) }
        guard left > 0 else { return nil }
        return "the failed-over disks are still being filled from their recovery point (\((left << BlockSize.shift) >> 20) MiB left); points resume when it ends"
    }

    /// One pass: copies pieces until the disks are filled, the loop stops, or ~50 ms went by.
    func fillStep(buffer: UnsafeMutableRawBufferPointer) {
        let started = ContinuousClock.now
        for (i, disk) in disks.enumerated() {
            guard let backing = disk.backing, !backing.isComplete else { continue }
            while !fillLoop.isStopping && started.duration(to: .now) < .milliseconds(50) {
                guard let first = backing.firstUnfilled(from: fillCursor[i]) ?? backing.firstUnfilled(from: 0) else { break }
                let count = min(Self.fillPieceBlocks, disk.config.blockCount - first)
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(count << BlockSize.shift)])
                do {
                    try backing.readPoint(first: first, into: piece)
                    try copyUnfilled(disk, backing, first: first, count: count, from: piece)
                    fillError = nil
                } catch {
                    let message = "fill of disk '\(disk.config.name)' at block \(first): \(error)"
                    if message != fillError { logger.error("\(message)") }
                    fillError = message
                    return  // tried again at the next pass
                }
                fillCursor[i] = first + count
            }
            if backing.isComplete { logger.notice("disk '\(disk.config.name)' is filled from its recovery point: reads no longer go to the vault") }
            return
        }
    }

    /// Under the blocks' locks: the runs still unfilled go to the primary (all-zero blocks need
    /// no write: the primary is sparse), their digest leaves are set, and they are marked filled.
    private func copyUnfilled(_ disk: ProtectedDisk, _ backing: DiskBacking, first: Int, count: Int, from piece: UnsafeMutableRawBufferPointer) throws {
        applyLock.lockShared()
        defer { applyLock.unlock() }
        try stripes.withBlocks(first: BlockIndex(UInt64(first)), count: count) { () throws in
            var b = 0
            while b < count {
                guard !backing.isFilled(first + b) else { b += 1; continue }
                var e = b + 1
                while e < count && !backing.isFilled(first + e) { e += 1 }
                let run = UnsafeRawBufferPointer(rebasing: piece[(b << BlockSize.shift)..<(e << BlockSize.shift)])
                let at = BlockIndex(UInt64(first + b))
                if SparseImage.isZero(run) {
                    backing.markFilled(first: first + b, count: e - b)  // the primary's hole is these zeros, and so are their leaves
                } else {
                    try disk.apply(firstBlock: at, data: run)
                }
                b = e
            }
        }
    }
}
