import Foundation
import LifeboatCore
import SystemPackage
import LifeboatTestSupport
import Testing

@testable import LifeboatJournal

let groupID = [UInt8](repeating: 0xAB, count: 16)

func temporaryDirectory() throws -> FilePath { FilePath(try testDirectory("journal")) }

func blocks(_ fill: UInt8, count: Int = 1) -> [UInt8] { [UInt8](repeating: fill, count: count * BlockSize.bytes) }

/// Encodes one record with the production codec (for hand-made segments).
func encodeRecord(type: RecordType, lsn: LSN, payload: [UInt8]) -> [UInt8] {
    var record = [UInt8](repeating: 0, count: JournalFormat.recordHeaderSize)
    record.withUnsafeMutableBytes { RecordHeader(payloadCRC: CRC32C.of(payload), length: UInt32(payload.count), type: type, lsn: lsn).store(into: $0) }
    return record + payload
}

func writePayload(disk: UInt32, block: UInt64, data: [UInt8]) -> [UInt8] {
    var head = [UInt8](repeating: 0, count: JournalFormat.writePayloadHeaderSize)
    head.withUnsafeMutableBytes { WritePayloadHeader(disk: DiskID(disk), firstBlock: BlockIndex(block), blockCount: UInt32(data.count / 4096)).store(into: $0) }
    return head + data
}

/// Opens, appends `writes` single-block writes (fill = index), and stops without sealing.
@discardableResult
func journalWithWrites(_ dir: FilePath, writes: Int, segmentBytes: Int64 = 64 << 20) throws -> [ScannedRecord] {
    let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: segmentBytes))
    for i in 0..<writes {
        let data = blocks(UInt8(i & 0xFF))
        _ = try data.withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i)), data: $0) }
    }
    try journal.close()
    let last = try JournalDirectory.segments(in: dir).last!.path
    return try SegmentReader.scan(SegmentReader.load(last), path: last).records
}

func flipByte(_ path: FilePath, at offset: Int) throws {
    let fd = try FileDescriptor.open(path, .readWrite)
    defer { try? fd.close() }
    var byte: [UInt8] = [0]
    _ = try byte.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: Int64(offset), into: $0) }
    byte[0] ^= 0x40
    _ = try fd.writeAll(toAbsoluteOffset: Int64(offset), byte)
}

func appendBytes(_ path: FilePath, _ bytes: [UInt8]) throws {
    let fd = try FileDescriptor.open(path, .writeOnly, options: [.append])
    defer { try? fd.close() }
    _ = try fd.writeAll(bytes)
}

func newestSegment(_ dir: FilePath) throws -> FilePath { try JournalDirectory.segments(in: dir).last!.path }

@Suite struct JournalRecoveryTests {
    @Test func appendedRecordsReadBackInOrderWithTheirData() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        let a = try blocks(1, count: 3).withUnsafeBytes { try journal.appendWrite(disk: DiskID(2), firstBlock: BlockIndex(10), data: $0) }
        let f = try journal.appendFlush()
        let marker = Marker(kind: .appConsistent, timeNanos: 42, label: "pre-upgrade", digests: [DiskID(2): Hash128(high: 1, low: 2)])
        let m = try journal.appendMarker(marker)
        try journal.close()
        #expect([a, f, m] == [LSN(1), LSN(2), LSN(3)])

        var seen: [(RecordType, LSN)] = []
        try JournalDirectory.scanAll(dir, groupID: groupID, repairTornTail: false) { scan, raw in
            for r in scan.records {
                seen.append((r.header.type, r.header.lsn))
                let payload = UnsafeRawBufferPointer(rebasing: raw[r.payloadOffset..<(r.payloadOffset + Int(r.header.length))])
                if r.header.type == .write {
                    let w = WritePayloadHeader.decode(payload)!
                    #expect(w == WritePayloadHeader(disk: DiskID(2), firstBlock: BlockIndex(10), blockCount: 3))
                    #expect(payload[JournalFormat.writePayloadHeaderSize...].allSatisfy { $0 == 1 })
                }
                if r.header.type == .marker { #expect(Marker.decode(payload) == marker) }
            }
        }
        #expect(seen.map(\.0) == [.write, .flush, .marker])
    }

    /// A closed journal keeps no descriptor open under its directory (a segment sealed at the
    /// close used to stay open in the preparer's queue): the filesystem can be unmounted.
    @Test func aClosedJournalLeavesNoDescriptorOpen() throws {
        let dir = try temporaryDirectory()
        do {
            let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
            _ = try blocks(1).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(0), data: $0) }
            try journal.sealIfOlder(than: .zero)
            try journal.close()
        }
        let open = LinuxDevices.openFiles(under: dir.string)
        #expect(open.isEmpty, "still open: \(open)")
    }

    @Test func tornTailIsTruncatedAndReported() throws {
        let dir = try temporaryDirectory()
        let records = try journalWithWrites(dir, writes: 5)
        let segment = try newestSegment(dir)
        // Cut the last record in half, as a crash in the middle of its append would.
        let cut = records[4].offset + 1000
        let fd = try FileDescriptor.open(segment, .writeOnly)
        try fd.resize(to: Int64(cut))
        try fd.close()

        let (journal, report) = try Journal.open(directory: dir, groupID: groupID)
        let torn = try #require(report.tornTail)
        #expect(torn.segment == segment.string)
        #expect(torn.offset == records[4].offset)
        #expect(torn.bytes == 1000)
        #expect(FileManager.default.contents(atPath: torn.evidence)?.count == 1000)
        #expect(report.lastLSN == LSN(5))  // four writes survive, then the seal written on open (LSN 5)
        let next = try blocks(9).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(0), data: $0) }
        #expect(next == LSN(6))
        try journal.close()
        // The repaired journal reads back cleanly, with no torn tail left.
        let again = try JournalDirectory.scanAll(dir, groupID: groupID, repairTornTail: false) { _, _ in }
        #expect(again.tornTail == nil)
    }

    @Test func checksumFailureInTheLastRecordIsATornTail() throws {
        let dir = try temporaryDirectory()
        let records = try journalWithWrites(dir, writes: 3)
        try flipByte(try newestSegment(dir), at: records[2].payloadOffset + 2000)
        let (_, report) = try Journal.open(directory: dir, groupID: groupID)
        #expect(report.tornTail?.offset == records[2].offset)
        #expect(report.tornTail?.reason == "record payload checksum mismatch")
    }

    @Test func zeroPaddingAfterTheLastRecordIsACleanEnd() throws {
        let dir = try temporaryDirectory()
        try journalWithWrites(dir, writes: 2)
        try appendBytes(try newestSegment(dir), [UInt8](repeating: 0, count: 8192))
        let (_, report) = try Journal.open(directory: dir, groupID: groupID)
        #expect(report.tornTail == nil)
        #expect(report.records == 2)
    }

    @Test func midSegmentChecksumMismatchIsCorruption() throws {
        let dir = try temporaryDirectory()
        let records = try journalWithWrites(dir, writes: 6)
        let segment = try newestSegment(dir)
        try flipByte(segment, at: records[2].payloadOffset + 100)
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID) }
        #expect(error.code == .corrupt)
        #expect(error.path == segment.string)
        #expect(error.offset == Int64(records[2].offset))
        #expect(error.message.contains("record payload checksum mismatch"))
        // Nothing was cut off or rewritten: the evidence is untouched.
        #expect(!FileManager.default.fileExists(atPath: segment.string + ".broken"))
        #expect(try SegmentReader.load(segment).count == records[5].payloadOffset + 16 + 4096)
    }

    /// After a power loss the pages past the last fdatasync reach the disk in any order, so a
    /// hole can precede valid records that were never made durable: past the durable LSN it is
    /// a torn tail (cut, kept as evidence); at or before it, damage.
    @Test func holeBeforeValidRecordsIsATornTailOnlyPastTheDurableLSN() throws {
        let dir = try temporaryDirectory()
        let records = try journalWithWrites(dir, writes: 6)
        let segment = try newestSegment(dir)
        try flipByte(segment, at: records[2].payloadOffset + 100)  // LSN 3
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID, durableThrough: LSN(3)) }
        #expect(error.code == .corrupt)
        #expect(error.offset == Int64(records[2].offset))
        #expect(error.message.contains("LSN 3 was durable"))
        #expect(!FileManager.default.fileExists(atPath: segment.string + ".broken"))

        let (journal, report) = try Journal.open(directory: dir, groupID: groupID, durableThrough: LSN(2))
        defer { try? journal.close() }
        let torn = try #require(report.tornTail)
        #expect(torn.offset == records[2].offset)
        #expect(torn.reason.contains("never made durable"))
        #expect(report.lastLSN == LSN(3))  // two writes survive, then the seal written on open
        #expect(FileManager.default.fileExists(atPath: torn.evidence))
    }

    @Test func damagedHeaderInTheMiddleIsCorruptionNotATornTail() throws {
        let dir = try temporaryDirectory()
        let records = try journalWithWrites(dir, writes: 4)
        try flipByte(try newestSegment(dir), at: records[1].offset + 9)  // the length field
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID) }
        #expect(error.code == .corrupt)
        #expect(error.offset == Int64(records[1].offset))
    }

    @Test func damageAtTheEndOfASealedSegmentIsCorruption() throws {
        let dir = try temporaryDirectory()
        // 1 MiB segments: 300 writes of 4 KiB span several sealed segments.
        try journalWithWrites(dir, writes: 300, segmentBytes: 1 << 20)
        let first = try JournalDirectory.segments(in: dir).first!.path
        let scan = try SegmentReader.scan(SegmentReader.load(first), path: first)
        #expect(scan.end == .sealed)
        let lastWrite = scan.records[scan.records.count - 2]
        try flipByte(first, at: lastWrite.payloadOffset + 50)
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID) }
        #expect(error.code == .corrupt)
        #expect(error.path == first.string)
    }

    @Test func missingSegmentIsAnLSNGap() throws {
        let dir = try temporaryDirectory()
        try journalWithWrites(dir, writes: 600, segmentBytes: 1 << 20)
        let segments = try JournalDirectory.segments(in: dir)
        #expect(segments.count >= 3)
        try FileManager.default.removeItem(atPath: segments[1].path.string)
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID) }
        #expect(error.code == .corrupt)
        #expect(error.message.contains("LSN gap"))
    }

    @Test func unknownRecordTypeIsRefusedUnlessMarkedIgnorable() throws {
        for (type, refused) in [(UInt8(9), true), (UInt8(0x89), false)] {
            let dir = try temporaryDirectory()
            let records = try journalWithWrites(dir, writes: 2)
            let next = LSN(records.last!.header.lsn.rawValue + 1)
            try appendBytes(try newestSegment(dir), encodeRecord(type: RecordType(rawValue: type), lsn: next, payload: [1, 2, 3]))
            if refused {
                let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID) }
                #expect(error.code == .unsupported)
            } else {
                let (_, report) = try Journal.open(directory: dir, groupID: groupID)
                #expect(report.records == 3)
            }
        }
    }

    @Test func newerFormatVersionIsRefusedWithBothVersionsNamed() throws {
        let dir = try temporaryDirectory()
        try journalWithWrites(dir, writes: 1)
        let segment = try newestSegment(dir)
        var bytes = try SegmentReader.load(segment)
        bytes[8] = 2
        let crc = CRC32C.of(Array(bytes[0..<60]))
        bytes.withUnsafeMutableBytes { $0.storeLE(crc, at: 60) }
        try FileManager.default.removeItem(atPath: segment.string)
        try #require(FileManager.default.createFile(atPath: segment.string, contents: Data(bytes)))
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: groupID) }
        #expect(error.code == .unsupported)
        #expect(error.message.contains("version 2") && error.message.contains("version 1"))
    }

    @Test func segmentOfAnotherGroupIsRefused() throws {
        let dir = try temporaryDirectory()
        try journalWithWrites(dir, writes: 1)
        let error = try #require(throws: LifeboatError.self) { try Journal.open(directory: dir, groupID: [UInt8](repeating: 1, count: 16)) }
        #expect(error.code == .invalidArgument || error.code == .corrupt)
        #expect(error.message.contains("another protection group"), "\(error)")
        #expect(error.offset == 16)
    }

    @Test func aRecordAfterTheSealIsCorruption() throws {
        let dir = try temporaryDirectory()
        try journalWithWrites(dir, writes: 300, segmentBytes: 1 << 20)
        let first = try JournalDirectory.segments(in: dir).first!.path
        let scan = try SegmentReader.scan(SegmentReader.load(first), path: first)
        #expect(scan.end == .sealed)
        // A well-formed record written past the seal: nothing may follow a seal.
        let sealEnd = scan.validEnd
        let fd = try FileDescriptor.open(first, .writeOnly)
        _ = try fd.writeAll(toAbsoluteOffset: Int64(sealEnd), encodeRecord(type: .flush, lsn: LSN(scan.lastLSN.rawValue + 1), payload: []))
        try fd.close()
        let error = try #require(throws: LifeboatError.self) { try SegmentReader.scan(SegmentReader.load(first), path: first) }
        #expect(error.code == .corrupt)
        #expect(error.offset == Int64(sealEnd))
    }

    /// The shipper reads a sealed segment while the preparer trims its preallocated tail (found
    /// by the demo: "cannot read journal segment (Input/output error)", shipping paused for a
    /// round). The tail was zeros after the seal: the read sees the same segment. A segment cut
    /// into its records is not sealed (the shipper refuses it).
    @Test func aSealedSegmentTrimmedWhileItIsReadReadsWhole() throws {
        let dir = try temporaryDirectory()
        try journalWithWrites(dir, writes: 300, segmentBytes: 1 << 20)
        let first = try JournalDirectory.segments(in: dir).first!.path
        let sealEnd = try SegmentReader.scan(SegmentReader.load(first), path: first).validEnd
        let padded = FilePath(first.string + ".padded")
        var bytes = try SegmentReader.load(first)
        bytes += [UInt8](repeating: 0, count: 1 << 20)  // the preallocated tail, not trimmed yet
        try Data(bytes).write(to: URL(fileURLWithPath: padded.string))
        let trimmed = try SegmentReader.load(padded, thenDropCache: false) { truncate(padded.string, off_t(sealEnd)) }
        #expect(try SegmentReader.scan(trimmed, path: padded).end == .sealed)

        try Data(bytes).write(to: URL(fileURLWithPath: padded.string))
        let cut = try SegmentReader.load(padded, thenDropCache: false) { truncate(padded.string, off_t(sealEnd - 100)) }
        let cutEnd = try SegmentReader.scan(cut, path: padded).end
        #expect(cutEnd != .sealed, "a segment cut into its records is not taken as sealed")
    }

    @Test func anInterruptedSegmentCreationIsSetAsideAndTheJournalEndsBeforeIt() throws {
        let dir = try temporaryDirectory()
        let records = try journalWithWrites(dir, writes: 3)
        // `protect` sealed it at close; a new segment was renamed into place, its header never
        // written (all zeros), then the machine died.
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        try journal.close()
        let segments = try JournalDirectory.segments(in: dir)
        let next = LSN(records.last!.header.lsn.rawValue + 10)
        let broken = dir.appending(SegmentName.make(firstLSN: next))
        try #require(FileManager.default.createFile(atPath: broken.string, contents: Data(count: 1 << 20)))
        let (reopened, report) = try Journal.open(directory: dir, groupID: groupID)
        try reopened.close()
        #expect(report.tornTail?.reason == "interrupted segment creation (no header)")
        #expect(FileManager.default.fileExists(atPath: broken.string + ".broken"))
        #expect(try JournalDirectory.segments(in: dir).count >= segments.count)
        #expect(try !JournalDirectory.segments(in: dir).contains { $0.path == broken })
    }
}

@Suite struct MarkerTests {
    /// Found by the marker fuzz target: a payload naming one disk twice (or out of order)
    /// decoded, silently keeping one of two digests. It is malformed now.
    @Test func aMarkerWithADiskTwiceOrOutOfOrderDoesNotDecode() {
        let one = Marker(kind: .crashConsistent, timeNanos: 5, label: "x", digests: [DiskID(1): Hash128(high: 1, low: 1)]).encoded()
        var twice = Array(one.dropLast(24 + 4))   // up to the disk count
        var w = ByteWriter()
        w.put(UInt32(2))
        for (disk, high) in [(UInt32(1), UInt64(1)), (UInt32(1), UInt64(2))] { w.put(disk); w.put(high); w.put(UInt64(0)) }
        twice += w.bytes
        #expect(twice.withUnsafeBytes { Marker.decode($0) } == nil)
        var descending = Array(one.dropLast(24 + 4))
        var d = ByteWriter()
        d.put(UInt32(2))
        for disk in [UInt32(2), UInt32(1)] { d.put(disk); d.put(UInt64(1)); d.put(UInt64(0)) }
        descending += d.bytes
        #expect(descending.withUnsafeBytes { Marker.decode($0) } == nil)
        #expect(one.withUnsafeBytes { Marker.decode($0) } != nil)
    }

    @Test func aMarkerRoundTripsAtTheLabelLimitAndWithNonASCIILabels() {
        for label in ["", "Größe überprüft — ünïcödé ✓", String(repeating: "é", count: Marker.maxLabelBytes / 2),
                      String(repeating: "x", count: 70_000), String(repeating: "é", count: 40_000)] {
            let marker = Marker(kind: .appConsistent, timeNanos: 1, label: label, digests: [DiskID(3): Hash128(high: 1, low: 2)])
            let decoded = marker.encoded().withUnsafeBytes { Marker.decode($0) }
            // What is written always decodes; labels past the format's 65535 bytes are cut on a
            // character boundary (the CLI refuses labels over 1024 bytes before that).
            #expect(decoded != nil, "label of \(label.utf8.count) bytes")
            #expect(decoded.map { label.hasPrefix($0.label) } == true)
            if label.utf8.count <= Int(UInt16.max) { #expect(decoded?.label == label) }
        }
    }
}

@Suite struct JournalWriterTests {
    @Test func concurrentFlushesShareFdatasyncs() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        let threads = 8, perThread = 50
        // OS threads, as libfuse's workers are: blocking fdatasync has no place on Swift's
        // cooperative pool, which would also cap the concurrency at the core count.
        let workers = (0..<threads).map { t in
            Thread {
                for i in 0..<perThread {
                    _ = try? blocks(UInt8(t)).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(t * 1000 + i)), data: $0) }
                    try? journal.flush()
                }
            }
        }
        workers.forEach { $0.start() }
        while workers.contains(where: { !$0.isFinished }) { usleep(5000) }
        let stats = journal.stats
        #expect(stats.durableLSN == stats.appendedLSN)
        #expect(stats.appendedLSN == LSN(UInt64(threads * perThread * 2)))
        // Group commit: fewer fdatasyncs than flush requests.
        #expect(stats.syncs < threads * perThread)
        try journal.close()
    }

    @Test func segmentsRollBySizeAndByAge() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 1 << 20))
        for i in 0..<600 {
            _ = try blocks(1).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i)), data: $0) }
        }
        let segments = { try JournalDirectory.segments(in: dir).count }
        try journal.sync()  // the last roll's segment is named once the seal before it is durable
        let bySize = try segments()
        #expect(bySize == 3)  // 600 × 4.1 KiB ≈ 2.4 MiB in 1 MiB segments
        try journal.sealIfOlder(than: .zero)
        #expect(try segments() == bySize + 1)
        try journal.sealIfOlder(than: .zero)  // nothing new: no empty segment is sealed
        #expect(try segments() == bySize + 1)
        try journal.close()
        for entry in try JournalDirectory.segments(in: dir).dropLast() {
            #expect(try SegmentReader.scan(SegmentReader.load(entry.path), path: entry.path).end == .sealed)
        }
    }

    @Test(.enabled(if: geteuid() == 0, "mounts a tmpfs (needs root); CI runs it"))
    func failedAppendIsNotAcknowledgedAndLeavesNoPartialRecord() throws {
        // A 128 KiB tmpfs holds a few records, then ENOSPC: the append throws, and the segment
        // still scans cleanly afterwards (the partial record was cut off).
        let dir = try temporaryDirectory()
        try #require(mountTmpfs(dir, bytes: 128 << 10), "mount -t tmpfs failed")
        defer { _ = umount2(dir.string, 0) }
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        var acknowledged = 0
        var failure: LifeboatError?
        for i in 0..<100 {
            do {
                _ = try blocks(3, count: 2).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i)), data: $0) }
                acknowledged += 1
            } catch { failure = error as? LifeboatError; break }
        }
        #expect(failure?.code == .io)
        #expect(journal.stats.failure != nil)
        let segment = try newestSegment(dir)
        let scan = try SegmentReader.scan(SegmentReader.load(segment), path: segment)
        #expect(scan.records.count == acknowledged)
        #expect(scan.end == .open)
    }
}

/// A spare prepared for small records synced rarely is mapped with its first pages already
/// cached and writable, and each writeback stride asks for the pages ahead of the tail (done
/// here at once, as the preparer's thread does soon after): the copies of its appends take no
/// page fault (a zero-filled spare's fault once per page), and what they copied reads back.
@Test(.timeLimit(.minutes(1))) func appendsIntoAPopulatedSpareTakeNoPageFault() throws {
    let dir = try temporaryDirectory()
    let spare = try SegmentPreparer.prepare(dir.appending("spare"), size: 16 << 20, zeroFilled: true, mapped: true)
    try #require(spare.mapping != nil, "mapped and populated (MADV_POPULATE_WRITE, Linux 5.14 and later)")
    let segment = try OpenSegment.adopt(spare, in: dir, groupID: groupID, firstLSN: LSN(1))
    let recordBytes = BlockSize.bytes + 40
    let count = 3000  // about 12 MiB: past the first populated 8 MiB
    func faults() -> Int {
        var usage = rusage()
        getrusage(__rusage_who_t(1), &usage)  // RUSAGE_THREAD (glibc defines it only under _GNU_SOURCE)
        return usage.ru_minflt + usage.ru_majflt
    }
    var record = [UInt8](repeating: 0, count: recordBytes)
    var taken = 0  // by the appends' copies (the populate's own faults are the preparer's)
    var populated: [Range<Int64>] = []
    try record.withUnsafeMutableBytes { raw in
        for i in 0..<count {
            raw.storeBytes(of: UInt32(i), as: UInt32.self)
            var iov = iovec(iov_base: raw.baseAddress, iov_len: raw.count)
            let before = faults()
            try withUnsafePointer(to: &iov) { try segment.append(UnsafeBufferPointer(start: $0, count: 1), total: raw.count) }
            taken += faults() - before
            if let populate = segment.takeWritebackDue()?.populate {
                populated.append(populate)
                segment.populate(populate)
            }
        }
    }
    #expect(populated.count == 2 && populated.allSatisfy { $0.lowerBound % 4096 == 0 && $0.upperBound % 4096 == 0 }, "\(populated)")
    #expect(taken < count / 20, "\(taken) page faults for \(count) appends of \(recordBytes) bytes")
    let start = Int64(JournalFormat.segmentHeaderSize)
    for i in [0, 1, count / 2, count - 1] {
        var back = [UInt8](repeating: 0xFF, count: 4)
        _ = try back.withUnsafeMutableBytes { try segment.fd.read(fromAbsoluteOffset: start + Int64(i * recordBytes), into: $0) }
        #expect(back.withUnsafeBytes { $0.load(as: UInt32.self) } == UInt32(i))
    }
}

/// Appends into a zero-filled spare are copies into its shared mapping (small records) or
/// pwritev (large ones); both read back alike, and a mapping that faults fails the append
/// instead of the process.
@Suite(.timeLimit(.minutes(1))) struct MappedAppendTests {
    /// Rolls the journal until it appends into an adopted (mapped) spare.
    private func rollIntoMappedSpare(_ journal: Journal) throws {
        for _ in 0..<1000 where !journal.appendsThroughMapping {
            try journal.sealIfOlder(than: .zero)
            _ = try blocks(0xEE).withUnsafeBytes { try journal.appendWrite(disk: DiskID(9), firstBlock: BlockIndex(0), data: $0) }
            usleep(2000)  // the preparer zero-fills the next spare
        }
        try #require(journal.appendsThroughMapping, "no zero-filled spare was adopted")
    }

    @Test func smallAndLargeRecordsInAMappedSegmentReadBackWithTheirData() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 4 << 20))
        try rollIntoMappedSpare(journal)
        let firstMapped = journal.stats.appendedLSN
        // 1-block records (mapped copies) and 20-block ones (80 KiB: pwritev), interleaved,
        // up to the spare's end and across rolls.
        var expected: [LSN: (block: UInt64, count: Int, fill: UInt8)] = [:]
        for i in 0..<400 {
            let count = i % 7 == 3 ? 20 : 1
            let fill = UInt8(truncatingIfNeeded: i * 37 + 1)
            let lsn = try blocks(fill, count: count).withUnsafeBytes {
                try journal.appendWrite(disk: DiskID(1), firstBlock: BlockIndex(UInt64(i)), data: $0)
            }
            expected[lsn] = (UInt64(i), count, fill)
            if i == 200 { try journal.flush() }
        }
        try journal.close()
        var seen = 0
        try JournalDirectory.scanAll(dir, groupID: groupID, repairTornTail: false) { scan, bytes in
            for record in scan.records where record.header.lsn > firstMapped && record.header.type == .write {
                let want = try #require(expected[record.header.lsn])
                let payload = record.payload(in: bytes)
                let head = try #require(WritePayloadHeader.decode(payload))
                #expect(head.firstBlock == BlockIndex(want.block) && Int(head.blockCount) == want.count)
                let data = payload[JournalFormat.writePayloadHeaderSize...]
                #expect(data.count == want.count * BlockSize.bytes && data.allSatisfy { $0 == want.fill }, "LSN \(record.header.lsn)")
                seen += 1
            }
        }
        #expect(seen == expected.count)
    }

    /// A mapped segment larger than the early-writeback stride: the page-table entries behind
    /// the tail are dropped before each writeback (`OpenSegment.unmapPages`), and every record
    /// still reads back with its data, from the cache and after the cache is dropped.
    @Test func recordsBehindAnUnmappedStrideKeepTheirData() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 64 << 20))
        let stride = OpenSegment.writebackStride
        for round in 0..<40 where !(journal.appendsThroughMapping && journal.currentSegmentCapacity > stride + (1 << 20)) {
            // Segments of 5 MiB sealed by age: the spares grow to hold that much.
            for i in 0..<1300 {
                _ = try blocks(0xEE).withUnsafeBytes { try journal.appendWrite(disk: DiskID(9), firstBlock: BlockIndex(UInt64(round * 2000 + i)), data: $0) }
            }
            try journal.sealIfOlder(than: .zero)
            usleep(50_000)  // the preparer zero-fills the next spare
        }
        try #require(journal.appendsThroughMapping && journal.currentSegmentCapacity > stride + (1 << 20), "no mapped spare larger than a stride")
        let segment = journal.stats.currentSegmentPath
        let firstMapped = journal.stats.appendedLSN
        var expected: [LSN: UInt8] = [:]
        for i in 0..<Int((stride + (1 << 20)) / 4136) {
            let fill = UInt8(truncatingIfNeeded: i * 13 + 7)
            expected[try blocks(fill).withUnsafeBytes { try journal.appendWrite(disk: DiskID(1), firstBlock: BlockIndex(UInt64(i)), data: $0) }] = fill
        }
        #expect(journal.stats.currentSegmentPath == segment, "one segment, past a stride")
        try journal.close()
        for dropCache in [false, true] {
            if dropCache {
                let fd = try FileDescriptor.open(segment, .readOnly)
                _ = posix_fadvise(fd.rawValue, 0, 0, POSIX_FADV_DONTNEED)
                try fd.close()
            }
            var seen = 0
            try JournalDirectory.scanAll(dir, groupID: groupID, repairTornTail: false) { scan, bytes in
                for record in scan.records where record.header.lsn > firstMapped && record.header.type == .write {
                    let fill = try #require(expected[record.header.lsn])
                    let data = record.payload(in: bytes)[JournalFormat.writePayloadHeaderSize...]
                    #expect(data.allSatisfy { $0 == fill }, "LSN \(record.header.lsn)")
                    seen += 1
                }
            }
            #expect(seen == expected.count)
        }
    }

    /// A segment is sealed once its records reach the size of the spare it was made from, not
    /// only at the configured maximum: past the spare, appends would grow the file and every
    /// fdatasync commit filesystem metadata.
    @Test func aSegmentIsSealedWhenItFillsItsSpare() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 64 << 20))
        try rollIntoMappedSpare(journal)
        let capacity = journal.currentSegmentCapacity
        let segment = journal.stats.currentSegmentPath
        try #require(capacity < 64 << 20, "a spare sized after the small segments before it")
        let record = Int64(JournalFormat.recordHeaderSize + JournalFormat.writePayloadHeaderSize + BlockSize.bytes)
        for i in 0..<Int(capacity / record + 2) where journal.stats.currentSegmentPath == segment {
            _ = try blocks(1).withUnsafeBytes { try journal.appendWrite(disk: DiskID(1), firstBlock: BlockIndex(UInt64(i)), data: $0) }
        }
        #expect(journal.stats.currentSegmentPath != segment, "sealed at its spare's size")
        try journal.close()
        let scan = try SegmentReader.scan(SegmentReader.load(segment), path: segment)
        #expect(scan.end == .sealed)
        #expect(Int64(scan.validEnd) >= capacity && Int64(scan.validEnd) <= capacity + record + Int64(JournalFormat.recordHeaderSize))
    }

    /// A page of the mapping that cannot be faulted in (here: the file was cut short under the
    /// journal, so the page lies past its end) raises SIGBUS. The append fails with an I/O
    /// error, the process lives, and the journal goes on through pwritev.
    @Test func aFaultingMappingFailsTheAppendNotTheProcess() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 4 << 20))
        try rollIntoMappedSpare(journal)
        let segment = journal.stats.currentSegmentPath
        let end = journal.stats.currentSegmentBytes
        #expect(truncate(segment.string, off_t(end)) == 0)
        let error = #expect(throws: LifeboatError.self) {
            _ = try blocks(2, count: 2).withUnsafeBytes { try journal.appendWrite(disk: DiskID(1), firstBlock: BlockIndex(1), data: $0) }
        }
        #expect(error?.code == .io && error?.path == segment.string)
        #expect(!journal.appendsThroughMapping)
        let lsn = try blocks(3, count: 2).withUnsafeBytes { try journal.appendWrite(disk: DiskID(1), firstBlock: BlockIndex(1), data: $0) }
        try journal.flush()
        let scan = try SegmentReader.scan(SegmentReader.load(segment), path: segment)
        #expect(scan.end == .open)
        #expect(scan.records.suffix(2).map(\.header.lsn) == [lsn, lsn.next], "the write and its flush, after the failed one")
        try journal.close()
    }
}

func mountTmpfs(_ dir: FilePath, bytes: Int) -> Bool {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/mount")
    p.arguments = ["-t", "tmpfs", "-o", "size=\(bytes)", "tmpfs", dir.string]
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}

/// The seal's fdatasync off the write path (decision 0002): appends go on while it runs, a
/// sync finishes it first, and a crash before it is durable loses only what was never
/// acknowledged.
@Suite struct PendingSealTests {
    /// Fills the current segment (1 MiB segments) until it rolls into a prepared spare; returns
    /// the sealed one's path.
    func fillUntilRoll(_ journal: Journal, from block: inout UInt64) throws -> FilePath {
        for _ in 0..<2000 where !journal.spareIsReady { usleep(5000) }
        try #require(journal.spareIsReady, "the preparer made no spare")
        let sealed = journal.stats.currentSegmentPath
        while journal.stats.currentSegmentPath == sealed {
            _ = try blocks(UInt8(block & 0xFF)).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(block), data: $0) }
            block += 1
        }
        return sealed
    }

    @Test(.timeLimit(.minutes(1))) func appendsGoOnWhileASealIsSyncedAndASyncFinishesItFirst() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 1 << 20))
        defer { try? journal.close() }
        journal.holdSeals(true)
        var block: UInt64 = 0
        _ = try fillUntilRoll(journal, from: &block)
        let rolled = journal.stats
        #expect(rolled.durablySealedBefore < rolled.currentSegmentFirstLSN, "the seal is pending")
        #expect(rolled.durableLSN < LSN(rolled.currentSegmentFirstLSN.rawValue - 1), "its LSN is not durable yet")
        for _ in 0..<10 {  // the writes go on into the next segment meanwhile
            _ = try blocks(9).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(block), data: $0) }
            block += 1
        }
        #expect(journal.stats.durablySealedBefore < journal.stats.currentSegmentFirstLSN, "still pending: the preparer is held")
        try journal.sync()
        let synced = journal.stats
        #expect(synced.durablySealedBefore == synced.currentSegmentFirstLSN, "the sync made the seal durable first")
        #expect(synced.durableLSN == synced.appendedLSN)
        // Held again, the next seal is finished by the preparer once released.
        _ = try fillUntilRoll(journal, from: &block)
        #expect(journal.stats.durablySealedBefore < journal.stats.currentSegmentFirstLSN)
        journal.holdSeals(false)
        let deadline = ContinuousClock.now + .seconds(20)
        while journal.stats.durablySealedBefore < journal.stats.currentSegmentFirstLSN && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        let released = journal.stats
        #expect(released.durablySealedBefore == released.currentSegmentFirstLSN, "the preparer synced it")
        #expect(released.durableLSN >= LSN(released.currentSegmentFirstLSN.rawValue - 1), "through the seal's LSN")
    }

    /// A roll leaves the sealed segment's munmap to the preparer, which unmaps it before its
    /// seal's fdatasync: under the journal lock the munmap waited for a populate in progress
    /// and for the address space's lock (Docs/benchmarks.md).
    @Test(.timeLimit(.minutes(1))) func aSealedSegmentIsUnmappedByItsRetirementNotByTheRoll() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 1 << 20))
        defer { try? journal.close() }
        var block: UInt64 = 0
        for _ in 0..<1000 where !journal.appendsThroughMapping {
            try journal.sealIfOlder(than: .zero)
            _ = try blocks(0xEE).withUnsafeBytes { try journal.appendWrite(disk: DiskID(9), firstBlock: BlockIndex(0), data: $0) }
            usleep(2000)
        }
        try #require(journal.appendsThroughMapping, "no mapped spare was adopted")
        journal.holdSeals(true)
        _ = try fillUntilRoll(journal, from: &block)
        let sealed = try #require(journal.segmentPendingSeal)
        #expect(sealed.isMapped, "still mapped after the roll: the preparer unmaps it")
        journal.holdSeals(false)
        let deadline = ContinuousClock.now + .seconds(20)
        while journal.segmentPendingSeal != nil && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(journal.segmentPendingSeal == nil, "the preparer synced the seal")
        #expect(!sealed.isMapped, "and unmapped the segment first")
    }

    /// A retired segment's pages leave the page cache (written once, read rarely), all of them:
    /// the preparer drops them 4 MiB at a time, yielding its CPU between.
    @Test(.timeLimit(.minutes(1))) func aRetiredSegmentLeavesThePageCacheWhole() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 64 << 20))
        defer { try? journal.close() }
        let segment = journal.stats.currentSegmentPath
        for i in 0..<2600 {  // about 10.5 MiB: three pieces
            _ = try blocks(UInt8(i & 0xFF)).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(UInt64(i)), data: $0) }
        }
        try journal.sealIfOlder(than: .zero)
        let fd = try FileDescriptor.open(segment, .readOnly)
        defer { try? fd.close() }
        let size = Int(try fd.seek(offset: 0, from: .end))
        try #require(size > 10 << 20)
        // Counted without touching the pages: a fresh read-only mapping and mincore(2).
        func residentPages() -> Int {
            guard let mapping = mmap(nil, size, PROT_READ, MAP_SHARED, fd.rawValue, 0), mapping != MAP_FAILED else { return -1 }
            defer { munmap(mapping, size) }
            let pages = (size + 4095) / 4096
            var vector = [UInt8](repeating: 0, count: pages)
            guard mincore(mapping, size, &vector) == 0 else { return -1 }
            return vector.filter { $0 & 1 != 0 }.count
        }
        var resident = residentPages()
        let deadline = ContinuousClock.now + .seconds(10)
        while resident != 0 && ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.02)
            resident = residentPages()
        }
        #expect(resident == 0, "\(resident) of \(size / 4096) pages still cached")
    }

    /// Until the seal before it is durable, the new segment is not in the journal's namespace:
    /// it keeps the spare's temporary name, which recovery removes — the state a power loss
    /// before the seal's fdatasync leaves. None of its records was acknowledged; recovery goes
    /// on after the sealed one, and every segment it finds but the newest is sealed.
    @Test func theSegmentAfterAPendingSealKeepsItsTemporaryNameUntilTheSealIsDurable() throws {
        let dir = try temporaryDirectory()
        var (journal, _) = try Journal.open(directory: dir, groupID: groupID, configuration: .init(segmentBytes: 1 << 20))
        journal.holdSeals(true)
        var block: UInt64 = 0
        let sealed = try fillUntilRoll(journal, from: &block)
        for _ in 0..<5 {
            _ = try blocks(7).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(block), data: $0) }
            block += 1
        }
        let named = try JournalDirectory.segments(in: dir).map(\.path)
        #expect(named.last == sealed, "the new segment has no segment name yet")
        #expect(!FileManager.default.fileExists(atPath: journal.stats.currentSegmentPath.string))
        let sealLSN = LSN(journal.stats.currentSegmentFirstLSN.rawValue - 1)
        let appended = journal.stats.appendedLSN

        // A crash now: the journal is dropped unclosed (its preparer still syncs the seal on
        // the way out, but nothing names the new segment any more).
        journal = try Journal.open(directory: try temporaryDirectory(), groupID: groupID).0
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.string).filter { $0.hasSuffix(".prep") }
        #expect(!leftovers.isEmpty, "the new segment is still under its temporary name")
        var visitedLast = LSN.zero
        let report: RecoveryReport
        (journal, report) = try Journal.open(directory: dir, groupID: groupID) { scan, _ in visitedLast = scan.lastLSN }
        defer { try? journal.close() }
        #expect(report.lastLSN == sealLSN && visitedLast == sealLSN, "recovery ends at the seal: none of the \(appended.rawValue - sealLSN.rawValue) later records")
        #expect(try JournalDirectory.segments(in: dir).map(\.firstLSN).suffix(2) == [LSN(1), sealLSN.next], "the sealed one, then a new one after it")
        let next = try blocks(3).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(0), data: $0) }
        #expect(next == sealLSN.next)
        try journal.sync()

        // Released and synced, the segment after a seal takes its name.
        journal.holdSeals(true)
        let before = journal.stats.currentSegmentPath
        _ = try fillUntilRoll(journal, from: &block)
        #expect(journal.stats.currentSegmentPath != before)
        try journal.sync()
        #expect(FileManager.default.fileExists(atPath: journal.stats.currentSegmentPath.string), "named once the seal is durable")
        #expect(try JournalDirectory.segments(in: dir).last?.path == journal.stats.currentSegmentPath)
    }
}

/// Injected failures (FaultInjection, armed under each test's own directory): what the journal
/// does when the system fails it.
@Suite struct JournalFaultTests {
    @Test func aFailedFdatasyncPoisonsTheJournalAndNothingIsAcknowledgedAfter() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        defer { FaultInjection.disarm(under: dir.string) }
        _ = try blocks(1).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(0), data: $0) }
        try journal.flush()
        let durable = journal.stats.durableLSN
        _ = try blocks(2).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(1), data: $0) }
        FaultInjection.arm(.sync, under: dir.string, errno: .ioError)
        // fsyncgate: after a failed fdatasync the kernel may have dropped the dirty pages, so no
        // later sync can prove them durable: every later call fails, nothing more is acknowledged.
        let failed = #expect(throws: LifeboatError.self) { try journal.flush() }
        #expect(failed?.message.contains("fdatasync failed") == true)
        #expect(journal.stats.durableLSN == durable)
        #expect(throws: LifeboatError.self) { _ = try blocks(3).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(2), data: $0) } }
        #expect(throws: LifeboatError.self) { try journal.flush() }
        #expect(journal.stats.failure != nil)
    }

    /// A seal whose fdatasync fails poisons the journal like any failed sync: the segment may
    /// not be durable, so nothing after it is acknowledged — whichever thread ran the
    /// fdatasync (the preparer's, or the seal's caller, which waits for it).
    @Test func aFailedSealPoisonsTheJournal() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        defer { FaultInjection.disarm(under: dir.string) }
        _ = try blocks(1).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(0), data: $0) }
        try journal.flush()
        let durable = journal.stats.durableLSN
        // The fault hits the fdatasync of the segment being sealed, not the new one's creation.
        FaultInjection.arm(.sync, under: journal.stats.currentSegmentPath.string, errno: .ioError)
        let error = #expect(throws: LifeboatError.self) { try journal.sealIfOlder(than: .zero) }
        #expect(error?.message.contains("cannot sync sealed segment") == true)
        #expect(throws: LifeboatError.self) { _ = try blocks(2).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(1), data: $0) } }
        #expect(throws: LifeboatError.self) { try journal.sync() }
        #expect(journal.stats.failure?.message.contains("cannot sync sealed segment") == true, "status shows why")
        #expect(journal.stats.durableLSN == durable, "the seal's LSN never counted as durable")
    }

    @Test func aShortAppendIsCutOffAndNotAcknowledgedAndTheJournalGoesOn() throws {
        let dir = try temporaryDirectory()
        let (journal, _) = try Journal.open(directory: dir, groupID: groupID)
        defer { FaultInjection.disarm(under: dir.string) }
        _ = try blocks(1).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(0), data: $0) }
        FaultInjection.arm(.write, under: dir.string, errno: .noSpace, writtenBytes: 100)
        let error = #expect(throws: LifeboatError.self) {
            _ = try blocks(2).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(1), data: $0) }
        }
        #expect(error?.code == .io && error?.errno == .noSpace)
        // The partial record is gone: the segment scans clean with the acknowledged record only.
        let segment = try newestSegment(dir)
        var scan = try SegmentReader.scan(SegmentReader.load(segment), path: segment)
        #expect(scan.records.count == 1)
        #expect(scan.end == .open)
        // Space is back: the next write gets the LSN the failed one did not take.
        let lsn = try blocks(3).withUnsafeBytes { try journal.appendWrite(disk: DiskID(0), firstBlock: BlockIndex(1), data: $0) }
        #expect(lsn == LSN(scan.records[0].header.lsn.rawValue + 1))
        try journal.flush()
        scan = try SegmentReader.scan(SegmentReader.load(segment), path: segment)
        #expect(scan.records.count == 3)  // the two writes and the flush
        try journal.close()
    }
}

/// The segment preparer: spares are allocated zeros, sized from how much the last sealed
/// segment held (never above the configured maximum), written zeros after a synced segment and
/// only reserved (fallocate) after a streaming one.
@Suite(.timeLimit(.minutes(1))) struct SegmentPreparerTests {
    private func next(_ p: SegmentPreparer, lastSegmentBytes: Int64) throws -> SegmentPreparer.Spare {
        for _ in 0..<2000 {
            if let spare = p.take(lastSegmentBytes: lastSegmentBytes, filledItsSpare: false, records: 1000, syncs: 0) { return spare }
            usleep(5000)
        }
        throw LifeboatError(.io, "no spare was prepared within 10 s")
    }

    @Test func sparesAreAllocatedZerosSizedFromTheLastSegment() throws {
        let dir = try temporaryDirectory()
        let p = SegmentPreparer(directory: dir, maximumBytes: 4 << 20, dropsRetiredPages: true)
        try p.start()
        defer { p.stop() }
        // Whatever size each was asked for, every spare is the size it says, allocated, zeros.
        var sizes = Set<Int64>()
        for last in [Int64(3 << 20), 100 << 10, 700 << 10] {
            let spare = try next(p, lastSegmentBytes: last)
            defer { try? spare.fd.close() }
            sizes.insert(spare.size)
            var st = stat()
            #expect(fstat(spare.fd.rawValue, &st) == 0)
            #expect(Int64(st.st_size) == spare.size)
            #expect(Int64(st.st_blocks) * 512 >= spare.size, "allocated, so appends change no metadata")
            var tail = [UInt8](repeating: 1, count: 4096)
            _ = try tail.withUnsafeMutableBytes { try spare.fd.read(fromAbsoluteOffset: spare.size - 4096, into: $0) }
            #expect(tail.allSatisfy { $0 == 0 })
        }
        #expect(sizes.isSubset(of: [1 << 20, 4 << 20]))
        // The sizing rule: a quarter more than the last segment held, in whole MiB from 1 MiB to
        // the maximum; twice as much when that segment filled its spare.
        let rule = { SegmentPreparer.spareSize(afterSegmentOf: $0, filledItsSpare: false, maximum: 64 << 20) }
        #expect(rule(0) == 1 << 20 && rule(100 << 10) == 1 << 20 && rule(900 << 10) == 2 << 20)
        #expect(rule(3 << 20) == 4 << 20 && rule(30_000_000) == 36 << 20 && rule(1 << 40) == 64 << 20)
        let grown = { SegmentPreparer.spareSize(afterSegmentOf: $0, filledItsSpare: true, maximum: 64 << 20) }
        #expect(grown(1 << 20) == 2 << 20 && grown(3 << 20) == 6 << 20 && grown(40 << 20) == 64 << 20)
        // Zero-filled after small records or a segment synced at least every MiB; else reserved.
        let zeros = { SegmentPreparer.zeroFills(afterSegmentOf: 64 << 20, records: $0, syncs: $1) }
        #expect(zeros(16384, 0) && zeros(1024, 0), "4 KiB or 64 KiB writes")
        #expect(zeros(64, 64) && zeros(64, 16000), "1 MiB writes synced every MiB or more often")
        #expect(!zeros(64, 63) && !zeros(64, 0) && !zeros(1023, 0), "streaming: big writes, rare syncs")
        // Appends go through a mapping unless the last segment synced at least every 64 KiB.
        let maps = { SegmentPreparer.mapsAppends(afterSegmentOf: 64 << 20, syncs: $0) }
        #expect(maps(0) && maps(1023), "no syncs, or one per 64 KiB and more")
        #expect(!maps(1024) && !maps(16384), "a sync per 64 KiB or per 4 KiB write")
    }

    /// Every kind of spare (zero-filled, reserved, reserved and mapped with its pages
    /// populated) reads as zeros to its end and is allocated; only the zero-filled one has its
    /// blocks written (no unwritten extents for an fdatasync to convert).
    @Test func aReservedSpareReadsAsZerosAndIsAllocated() throws {
        let dir = try temporaryDirectory()
        for (zeroFilled, mapped) in [(true, false), (false, false), (true, true)] {
            let spare = try SegmentPreparer.prepare(dir.appending("spare-\(zeroFilled)-\(mapped)"), size: 2 << 20, zeroFilled: zeroFilled, mapped: mapped)
            defer {
                if let mapping = spare.mapping { munmap(mapping, Int(spare.size)) }
                try? spare.fd.close()
            }
            #expect((spare.mapping != nil) == mapped && spare.populatedBytes == (mapped ? 2 << 20 : 0))
            var st = stat()
            #expect(fstat(spare.fd.rawValue, &st) == 0)
            #expect(Int64(st.st_size) == 2 << 20)
            #expect(Int64(st.st_blocks) * 512 >= 2 << 20, "allocated, so appends allocate nothing")
            var all = [UInt8](repeating: 1, count: 2 << 20)
            _ = try all.withUnsafeMutableBytes { try spare.fd.read(fromAbsoluteOffset: 0, into: $0) }
            #expect(all.allSatisfy { $0 == 0 })
        }
    }
}
