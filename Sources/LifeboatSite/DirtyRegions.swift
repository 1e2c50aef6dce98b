import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `SITE/state/dirty-regions`: which 1 MiB regions of each disk were written by journal records
/// that were dropped before the vault got them (the spool limit, decision 0010), and so must be
/// read again from the primaries and sent — a resync. While the file exists, the vault lacks
/// writes and the site marks no point. Format: Docs/formats/dirty-regions.md.
///
/// Crash safety comes from the order, not from the file's frequency: the shipper writes this
/// file (atomically: temp, fsync, rename) with the regions of the records it is about to drop
/// *before* it deletes their segments, and the file goes only once the marker that ends the
/// resync is durable in the journal. A crash in between leaves a superset: more to resync, never
/// a lost region.
public struct DirtyRegions: Equatable, Sendable {
    /// 256 blocks of 4 KiB: 1 MiB, DRBD's bitmap granularity is 4 KiB, but a resync re-reads a
    /// region whole, and 1 MiB keeps the file at 128 KiB per TiB.
    public static let regionShift = 8
    public static let regionBlocks = 1 << regionShift
    public static let regionBytes = Int64(regionBlocks) << BlockSize.shift
    static let magic: [UInt8] = Array("LBDIRTY1".utf8)
    static let version: UInt32 = 1

    /// What the vault was known to hold when the first records were dropped.
    public var gapAfter: LSN
    /// The last LSN dropped (the journal now starts after it).
    public var droppedThrough: LSN
    /// Written before the vault is told of the gap (`openResync`); from then on, the resync
    /// must run to its end marker — the vault makes no point until it sees one.
    public var announced: Bool
    /// Disk id → bitmap (bit i of byte i/8, least significant first: region i).
    public private(set) var bitmaps: [DiskID: [UInt8]]
    /// Disk id → its number of regions.
    public let regionCounts: [DiskID: Int]

    public init(disks: [(id: DiskID, blockCount: Int)], gapAfter: LSN) {
        self.gapAfter = gapAfter
        self.droppedThrough = gapAfter
        self.announced = false
        var counts: [DiskID: Int] = [:], maps: [DiskID: [UInt8]] = [:]
        for d in disks {
            let regions = (d.blockCount + Self.regionBlocks - 1) >> Self.regionShift
            counts[d.id] = regions
            maps[d.id] = [UInt8](repeating: 0, count: (regions + 7) / 8)
        }
        self.regionCounts = counts
        self.bitmaps = maps
    }

    /// Marks the regions of blocks `first ..< first + count` of `disk`; false for a disk or a
    /// block the map does not have.
    @discardableResult
    public mutating func mark(disk: DiskID, first: BlockIndex, count: Int) -> Bool {
        guard count > 0, let regions = regionCounts[disk] else { return false }
        let from = Int(first.rawValue) >> Self.regionShift
        let to = (Int(first.rawValue) + count - 1) >> Self.regionShift
        guard to < regions else { return false }
        for r in from...to { bitmaps[disk]![r >> 3] |= UInt8(1 << (r & 7)) }
        return true
    }

    /// The marked regions, by disk id then region, ascending.
    public var regions: [(disk: DiskID, region: Int)] {
        var out: [(DiskID, Int)] = []
        for disk in bitmaps.keys.sorted() {
            let map = bitmaps[disk]!
            for (i, byte) in map.enumerated() where byte != 0 {
                for bit in 0..<8 where byte & (1 << bit) != 0 { out.append((disk, i * 8 + bit)) }
            }
        }
        return out
    }

    public var regionCount: Int { bitmaps.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.nonzeroBitCount } } }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.put(Self.magic)
        w.put(Self.version)
        w.put(UInt32(Self.regionBlocks))
        w.put(gapAfter.rawValue)
        w.put(droppedThrough.rawValue)
        w.put(UInt8(announced ? 1 : 0))
        w.put(zeros: 3)
        w.put(UInt32(bitmaps.count))
        for disk in bitmaps.keys.sorted() {
            w.put(disk.rawValue)
            w.put(UInt32(regionCounts[disk]!))
            w.put(bitmaps[disk]!)
        }
        w.put(CRC32C.of(w.bytes))
        return w.bytes
    }

    /// The map as `encoded()` wrote it, every field checked; `path` names it in errors.
    public static func decode(_ bytes: [UInt8], path: FilePath) throws -> DirtyRegions {
        func damaged(_ what: String, _ offset: Int) -> LifeboatError {
            LifeboatError(.corrupt, "dirty-region map: \(what)", path: path.string, offset: Int64(offset))
        }
        guard bytes.count >= 44 else { throw damaged("\(bytes.count) bytes, shorter than its 44-byte header and checksum", 0) }
        let stored = bytes.withUnsafeBytes { $0.loadLE(UInt32.self, at: bytes.count - 4) }
        guard CRC32C.of(Array(bytes.dropLast(4))) == stored else { throw damaged("checksum mismatch", bytes.count - 4) }
        return try bytes.withUnsafeBytes { raw in
            var r = ByteReader(UnsafeRawBufferPointer(rebasing: raw[..<(raw.count - 4)]))
            guard r.get(count: 8) == magic else { throw damaged("not a dirty-region map (magic)", 0) }
            guard let v = r.get(UInt32.self), v == version else { throw damaged("version \(raw.loadLE(UInt32.self, at: 8)), this build reads \(version)", 8) }
            guard let blocks = r.get(UInt32.self), blocks == UInt32(regionBlocks) else {
                throw damaged("regions of \(raw.loadLE(UInt32.self, at: 12)) blocks, this build uses \(regionBlocks)", 12)
            }
            let gap = LSN(r.get(UInt64.self)!), dropped = LSN(r.get(UInt64.self)!)
            guard dropped >= gap else { throw damaged("dropped through LSN \(dropped), before the gap's start \(gap)", 24) }
            guard let flag = r.get(UInt8.self), flag <= 1, r.get(count: 3) == [0, 0, 0] else { throw damaged("bad announced flag or reserved bytes", 32) }
            let count = Int(r.get(UInt32.self)!)
            var disks: [(id: DiskID, blockCount: Int)] = [], maps: [DiskID: [UInt8]] = [:]
            for _ in 0..<count {
                let at = r.position
                guard let id = r.get(UInt32.self), let regions = r.get(UInt32.self), let map = r.get(count: (Int(regions) + 7) / 8) else {
                    throw damaged("disk entry cut short", at)
                }
                guard disks.last.map({ id > $0.id.rawValue }) ?? true else { throw damaged("disk \(id) out of order (ascending ids, each once)", at) }
                if regions % 8 != 0, let last = map.last, last >> (regions % 8) != 0 {
                    throw damaged("disk \(id) marks regions past its \(regions)", at + 8 + map.count - 1)
                }
                disks.append((DiskID(id), Int(regions) << regionShift))
                maps[DiskID(id)] = map
            }
            guard r.remaining == 0 else { throw damaged("\(r.remaining) bytes after the last disk", r.position) }
            var out = DirtyRegions(disks: disks, gapAfter: gap)
            out.droppedThrough = dropped
            out.announced = flag == 1
            out.bitmaps = maps
            return out
        }
    }

    public static func path(in state: FilePath) -> FilePath { state.appending("dirty-regions") }

    /// The map, or nil when there is none (nothing dropped).
    public static func load(from state: FilePath) throws -> DirtyRegions? {
        let path = Self.path(in: state)
        let bytes: [UInt8]
        do { bytes = try readWholeFile(path) } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw LifeboatError.system(error, "cannot read the dirty-region map", path: path.string)
        }
        return try decode(bytes, path: path)
    }

    public func save(in state: FilePath) throws {
        try writeFileAtomically(Self.path(in: state), encoded())
    }

    public static func remove(from state: FilePath) throws {
        let path = Self.path(in: state)
        guard unlink(path.string) == 0 || errno == ENOENT else {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot remove the dirty-region map", path: path.string)
        }
        try syncDirectory(state)
    }
}
