import CLinux
import LifeboatCore
import LifeboatSite

/// Which regions of the disks may hold primary writes that the durable journal lacks — DRBD's
/// activity log, kept in the journal itself (Docs/decisions/0003).
///
/// A write appends its record and writes the primary (one after the other, or — a large write
/// to a warm region — at once, decision 0013); both go through the page cache, so
/// after a power loss the primary may hold a write whose record never reached the disk. The
/// rule that bounds where: a write to a *cold* region makes its record durable (a journal
/// sync) before it touches the primary. A region is warm while it was written in this
/// checkpoint epoch or the previous one; each checkpoint starts a new epoch, and saves the
/// regions written in the epoch it ends. After an unclean stop, recovery takes those regions
/// and every region that the durable records after the checkpoint write, and re-journals the
/// primary's content there: the journal then describes exactly what the primary holds.
///
/// Why that set covers every unjournaled primary write: such a write W came after the last
/// durable checkpoint m. If W's region was cold, W's own record was made durable first (and
/// lies after checkpoint m). If it was warm, the first write to that region since checkpoint
/// m's snapshot either was cold (its durable record lies after m) or found the region written
/// in the epoch that m ended — which m saved.
///
/// Thread safety: `touch` runs concurrently under the group's shared apply lock (relaxed
/// atomics per region); `advanceEpoch` runs under the exclusive one.
final class ActivityLog: @unchecked Sendable {
    /// 4 MiB regions, as DRBD's activity-log extents: a cold write costs one journal sync per
    /// region per two checkpoint intervals, and recovery re-reads at most this much per region.
    static let regionShift = 10
    static let regionBlocks = 1 << regionShift

    /// Per disk (by position), per region: the epoch of its last write (0: never).
    private let lastEpoch: [UnsafeMutablePointer<UInt32>]
    private let regionCounts: [Int]
    /// Changed only under the exclusive apply lock; read under the shared one.
    private var epoch: UInt32 = 1

    init(blockCounts: [Int]) {
        regionCounts = blockCounts.map { ($0 + Self.regionBlocks - 1) >> Self.regionShift }
        lastEpoch = regionCounts.map { count in
            let p = UnsafeMutablePointer<UInt32>.allocate(capacity: max(count, 1))
            p.initialize(repeating: 0, count: max(count, 1))
            return p
        }
    }

    deinit { lastEpoch.forEach { $0.deallocate() } }

    static func regions(first: BlockIndex, count: Int) -> ClosedRange<Int> {
        Int(first.rawValue) >> regionShift...(Int(first.rawValue) + count - 1) >> regionShift
    }

    /// Whether a write to these blocks needs its record durable before it reaches the primary.
    @inline(__always)
    func isCold(disk: Int, first: BlockIndex, count: Int) -> Bool {
        let slots = lastEpoch[disk]
        for r in Self.regions(first: first, count: count) {
            let last = clinux_load_u32(slots + r)
            if last == 0 || last + 1 < epoch { return true }
        }
        return false
    }

    /// Records a write to these blocks in the current epoch.
    @inline(__always)
    func touch(disk: Int, first: BlockIndex, count: Int) {
        let slots = lastEpoch[disk]
        for r in Self.regions(first: first, count: count) where clinux_load_u32(slots + r) != epoch {
            clinux_store_u32(slots + r, epoch)
        }
    }

    /// At a checkpoint's snapshot (exclusive apply lock): the regions written in the epoch
    /// that ends, per disk position; then starts the next epoch.
    func advanceEpoch() -> [[Int]] {
        let ending = epoch
        let written = regionCounts.indices.map { d in
            (0..<regionCounts[d]).filter { lastEpoch[d][$0] >= ending }
        }
        epoch += 1
        return written
    }
}
