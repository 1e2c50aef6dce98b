import LifeboatCore
import LifeboatSite
import LifeboatJournal
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `journal verify`: proves the journal by replaying it, in LSN order, onto each disk's content
/// just before the first local segment — the initial content while nothing has been shipped
/// away, else the vault's image at that LSN — and comparing the result with the primary block
/// by block; and checks every digest leaf against the primary's block. Run at a quiet moment.
public enum JournalVerifier {
    public struct DiskResult: Sendable {
        public var name: String
        public var blocks: Int
        /// Distinct blocks the journal writes.
        public var journaledBlocks: Int
        /// The first block where replay and primary differ, with the reason.
        public var firstMismatch: (block: Int, detail: String)?
        /// The first block whose digest leaf does not match the primary.
        public var firstDigestMismatch: Int?
        public var mismatchedBlocks: Int
        public var root: Hash128
    }

    public struct Result: Sendable {
        public var segments: Int
        public var records: Int
        public var lastLSN: LSN
        public var disks: [DiskResult]
        /// Records appended while the check ran (nil when none): then a difference may be a
        /// write that reached the journal and not yet the primary, or the other way round, and
        /// the check proves nothing either way.
        public var writesDuringCheck: UInt64?
        public var ok: Bool { disks.allSatisfy { $0.firstMismatch == nil && $0.firstDigestMismatch == nil } }
    }

    private struct Location {
        var segment: Int32
        var dataOffset: Int64
        var lsn: LSN
    }

    /// What every write changes: its primary's mtime (in ns). Markers and seals, which protect
    /// appends by itself, do not count: they change nothing the check compares.
    private static func fingerprint(_ site: Site) -> [String] {
        var st = stat()
        return site.config.disks.map { disk in
            let path = site.primaryPath(disk).string
            return stat(path, &st) == 0 ? "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)" : "missing"
        }
    }

    /// The write records in the journal after `lsn`.
    private static func writes(after lsn: LSN, in site: Site) throws -> UInt64 {
        var count: UInt64 = 0
        _ = try JournalDirectory.scanAll(site.journalDirectory, groupID: site.config.groupIDBytes, repairTornTail: false) { scan, _ in
            count += UInt64(scan.records.filter { $0.header.type == .write && $0.header.lsn > lsn }.count)
        }
        return count
    }

    /// `progress` gets (blocks compared, blocks in all).
    public static func verify(site: Site, progress: (Int64, Int64) -> Void = { _, _ in }) throws -> Result {
        let before = fingerprint(site)
        var result = try verifyOnce(site: site, progress: progress)
        let arrived = try writes(after: result.lastLSN, in: site)
        if arrived > 0 || fingerprint(site) != before {
            result.writesDuringCheck = max(1, arrived)
        }
        return result
    }

    private static func verifyOnce(site: Site, progress: (Int64, Int64) -> Void) throws -> Result {
        var latest: [UInt64: Location] = [:]
        var paths: [FilePath] = []
        let report = try JournalDirectory.scanAll(site.journalDirectory, groupID: site.config.groupIDBytes, repairTornTail: false) { scan, raw in
            let segment = Int32(paths.count)
            paths.append(scan.path)
            for record in scan.records where record.header.type == .write {
                let payload = record.payload(in: raw)
                let w = WritePayloadHeader.decode(payload)!
                let data = Int64(record.payloadOffset + JournalFormat.writePayloadHeaderSize)
                for k in 0..<Int(w.blockCount) {
                    let key = UInt64(w.disk.rawValue) << 40 | (w.firstBlock.rawValue + UInt64(k))
                    latest[key] = Location(segment: segment, dataOffset: data + Int64(k * BlockSize.bytes), lsn: record.header.lsn)
                }
            }
        }
        var segmentFDs: [FileDescriptor] = []
        defer { segmentFDs.forEach { try? $0.close() } }
        for path in paths { segmentFDs.append(try FileDescriptor.open(path, .readOnly)) }

        // Where replay starts: LSN 0 is each disk's initial content (SITE/disks/NAME.base);
        // after shipping dropped older segments, the vault holds the state before the first.
        let firstLocal = try JournalDirectory.segments(in: site.journalDirectory).first?.firstLSN ?? .zero
        var start: PointReader?
        if firstLocal > LSN(1) {
            guard let vaultPath = site.config.vault else {
                throw LifeboatError(.corrupt, "the journal starts at LSN \(firstLocal) and the site has no vault to hold what came before", path: site.journalDirectory.string)
            }
            guard !site.hasRemoteVault else {
                throw LifeboatError(.unsupported, "the journal starts at LSN \(firstLocal); what came before is in the vault at \(vaultPath), "
                                    + "which `journal verify` cannot read over the network yet (verify on the vault's host: `lifeboat vault verify`)")
            }
            start = try PointReader(vault: try Vault(root: FilePath(vaultPath)), lsn: LSN(firstLocal.rawValue - 1))
        }
        var results: [DiskResult] = []
        let total = site.config.disks.reduce(Int64(0)) { $0 + Int64($1.blockCount) }
        var before: Int64 = 0
        for disk in site.config.disks {
            let offset = before
            results.append(try verifyDisk(site: site, disk: disk, latest: latest, segmentFDs: segmentFDs, paths: paths, start: start) {
                progress(offset + $0, total)
            })
            before += Int64(disk.blockCount)
        }
        return Result(segments: report.segments, records: report.records, lastLSN: report.lastLSN, disks: results)
    }

    private static func verifyDisk(site: Site, disk: SiteConfig.Disk, latest: [UInt64: Location], segmentFDs: [FileDescriptor], paths: [FilePath],
                                   start: PointReader?, progress: (Int64) -> Void) throws -> DiskResult {
        let primary = try FileDescriptor.open(site.primaryPath(disk), .readOnly)
        defer { try? primary.close() }
        let base = try FileDescriptor.open(site.basePath(disk), .readOnly)
        defer { try? base.close() }
        let digest = try DigestMap(path: site.digestPath(disk), sizeBytes: disk.sizeBytes, rebuildFrom: nil)
        let batch = 256
        let bs = BlockSize.bytes
        let live = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * bs, alignment: bs)
        let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: batch * bs, alignment: bs)
        defer { live.deallocate(); expected.deallocate() }
        var result = DiskResult(name: disk.name, blocks: disk.blockCount, journaledBlocks: 0, mismatchedBlocks: 0, root: digest.root())
        var block = 0
        while block < disk.blockCount {
            let n = min(batch, disk.blockCount - block)
            let bytes = n * bs
            let at = Int64(block) * Int64(bs)
            try primary.readAll(at: at, into: UnsafeMutableRawBufferPointer(rebasing: live[0..<bytes]))
            if let start {
                for k in 0..<n {
                    try start.readBlock(disk: disk.diskID, block: BlockIndex(UInt64(block + k)),
                                        into: UnsafeMutableRawBufferPointer(rebasing: expected[(k * bs)..<((k + 1) * bs)]))
                }
            } else {
                try base.readAll(at: at, into: UnsafeMutableRawBufferPointer(rebasing: expected[0..<bytes]), zeroFillPastEOF: true)
            }
            for k in 0..<n {
                let b = block + k
                let slot = UnsafeMutableRawBufferPointer(rebasing: expected[(k * bs)..<((k + 1) * bs)])
                let location = latest[UInt64(disk.id) << 40 | UInt64(b)]
                if let location {
                    result.journaledBlocks += 1
                    try segmentFDs[Int(location.segment)].readAll(at: location.dataOffset, into: slot)
                }
                let actual = UnsafeRawBufferPointer(rebasing: live[(k * bs)..<((k + 1) * bs)])
                if !actual.elementsEqual(UnsafeRawBufferPointer(slot)) {
                    result.mismatchedBlocks += 1
                    if result.firstMismatch == nil {
                        let source = location.map { "its last journal write, LSN \($0.lsn) in \(paths[Int($0.segment)].lastComponent!) at offset \($0.dataOffset)" }
                            ?? (start == nil ? "the initial content (the journal never writes this block)" : "the vault's image before the first local segment")
                        result.firstMismatch = (b, "block \(b) (byte offset \(Int64(b) * Int64(bs))) of the primary differs from \(source)")
                    }
                }
                if result.firstDigestMismatch == nil && Hash128.of(actual) != digest.leaf(b) {
                    result.firstDigestMismatch = b
                }
            }
            block += n
            progress(Int64(block))
        }
        return result
    }
}
