import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One valid record found by a scan: where it is and what its header says.
public struct ScannedRecord: Sendable {
    public var offset: Int
    public var header: RecordHeader
    public var payloadOffset: Int { offset + JournalFormat.recordHeaderSize }

    /// The record's payload in `segment`, the bytes the scan read.
    public func payload(in segment: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: segment[payloadOffset..<(payloadOffset + Int(header.length))])
    }
}

/// How a segment's valid records end.
public enum SegmentEnd: Equatable, Sendable {
    /// A seal record closes the segment (only zeros may follow it).
    case sealed
    /// Valid records run to EOF (or to zero padding): the segment was being appended to.
    case open
    /// The last record is incomplete or fails its checksum: what a crash in the middle of an
    /// append leaves. `recordAfter` is the offset of a valid record header with a later LSN
    /// further on, if any: after a power loss the pages past the last fdatasync may reach the
    /// disk in any order, so a hole can precede records that were written but never made
    /// durable — or the bytes were damaged. Only the journal's durable LSN tells the two
    /// apart (`JournalDirectory.scanAll`). Only acceptable in the newest segment.
    case tornTail(offset: Int, bytes: Int, reason: String, recordAfter: Int?)
}

/// The result of reading one segment file start to end.
public struct SegmentScan: Sendable {
    public var path: FilePath
    public var header: SegmentHeader
    public var records: [ScannedRecord]
    public var end: SegmentEnd
    /// Offset just past the last valid record.
    public var validEnd: Int
    /// LSN of the last valid record, or firstLSN − 1 when there is none.
    public var lastLSN: LSN
}

/// Reads and validates segments. A record at offset X is valid if and only if: its header
/// checksum matches, its reserved bytes are zero, its LSN is one more than the previous
/// record's (the segment header's first LSN for the first record), its payload fits in the
/// file and matches the payload checksum, its type is known or ignorable, and a write
/// record's payload is a well-formed block run. The first invalid record ends the valid
/// data; the scan reports it as a torn tail, with the offset of any valid record header
/// with a later LSN after it (the reader of the directory decides whether that is damage).
public enum SegmentReader {
    /// Reads the whole file; segments are bounded in size (the writer's limit). `thenDropCache`:
    /// the caller is the file's last reader (the shipper), so its pages leave the cache.
    public static func load(_ path: FilePath, thenDropCache: Bool = false) throws -> [UInt8] {
        try load(path, thenDropCache: thenDropCache, afterSizing: {})
    }

    /// `afterSizing` runs between the size and the read: where a test trims the file as the
    /// preparer would.
    static func load(_ path: FilePath, thenDropCache: Bool, afterSizing: () -> Void) throws -> [UInt8] {
        do {
            let fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec])
            defer { try? fd.close() }
            let size = Int(try fd.fileSize())
            afterSizing()
            var bytes = [UInt8](repeating: 0, count: size)
            // The preparer trims a sealed segment's preallocated tail (zeros after the seal) off
            // the writer's path, and may do so while this reads it: bytes gone past the new end
            // read as the zeros they were. A segment cut short of its records fails the scan.
            try bytes.withUnsafeMutableBytes { buf in try fd.readAll(at: 0, into: buf, zeroFillPastEOF: true) }
            if thenDropCache { _ = posix_fadvise(fd.rawValue, 0, 0, POSIX_FADV_DONTNEED) }
            return bytes
        } catch let e as Errno {
            throw LifeboatError.system(e, "cannot read journal segment", path: path.string)
        } catch {
            throw LifeboatError(.io, "\(error)", path: path.string)
        }
    }

    public static func scan(_ bytes: [UInt8], path: FilePath) throws -> SegmentScan {
        try bytes.withUnsafeBytes { raw in try scan(raw, path: path) }
    }

    public static func scan(_ raw: UnsafeRawBufferPointer, path: FilePath) throws -> SegmentScan {
        let name = path.string
        let header = try SegmentHeader.decode(raw, path: name)
        var records: [ScannedRecord] = []
        var pos = JournalFormat.segmentHeaderSize
        var expect = header.firstLSN
        while true {
            if pos == raw.count {
                return SegmentScan(path: path, header: header, records: records, end: .open, validEnd: pos, lastLSN: LSN(expect.rawValue - 1))
            }
            switch checkRecord(raw, at: pos, expecting: expect, path: name) {
            case .valid(let h):
                records.append(ScannedRecord(offset: pos, header: h))
                pos += JournalFormat.recordHeaderSize + Int(h.length)
                expect = expect.next
                if h.type == .seal {
                    if let junk = firstNonZero(raw, from: pos) {
                        throw LifeboatError(.corrupt, "data after the seal record", path: name, offset: Int64(junk))
                    }
                    return SegmentScan(path: path, header: header, records: records, end: .sealed, validEnd: pos, lastLSN: h.lsn)
                }
            case .unsupported(let message):
                throw LifeboatError(.unsupported, message, path: name, offset: Int64(pos))
            case .invalid(let reason):
                let last = LSN(expect.rawValue - 1)
                if firstNonZero(raw, from: pos) == nil {
                    return SegmentScan(path: path, header: header, records: records, end: .open, validEnd: pos, lastLSN: last)
                }
                let later = laterValidHeader(raw, after: pos, minimumLSN: expect)
                let end = SegmentEnd.tornTail(offset: pos, bytes: raw.count - pos, reason: reason, recordAfter: later)
                return SegmentScan(path: path, header: header, records: records, end: end, validEnd: pos, lastLSN: last)
            }
        }
    }

    private enum Check {
        case valid(RecordHeader)
        case invalid(String)
        case unsupported(String)
    }

    private static func checkRecord(_ raw: UnsafeRawBufferPointer, at pos: Int, expecting lsn: LSN, path: String) -> Check {
        let rest = UnsafeRawBufferPointer(rebasing: raw[pos...])
        guard rest.count >= JournalFormat.recordHeaderSize else { return .invalid("record header is cut short (\(rest.count) bytes)") }
        guard let h = RecordHeader.decode(rest) else { return .invalid("record header checksum mismatch") }
        guard h.lsn == lsn else { return .invalid("record LSN \(h.lsn) where \(lsn) was expected") }
        let len = Int(h.length)
        guard len <= JournalFormat.maxPayload, len <= rest.count - JournalFormat.recordHeaderSize else {
            return .invalid("record payload of \(len) bytes runs past the end of the file")
        }
        let payload = UnsafeRawBufferPointer(rebasing: rest[JournalFormat.recordHeaderSize..<JournalFormat.recordHeaderSize + len])
        guard CRC32C.of(payload) == h.payloadCRC else { return .invalid("record payload checksum mismatch") }
        if !h.type.isKnown && !h.type.isIgnorable {
            return .unsupported("record type \(h.type.rawValue) is not known to this lifeboat and not marked ignorable")
        }
        switch h.type {
        case .write where WritePayloadHeader.decode(payload) == nil:
            return .invalid("malformed write record payload")
        case .marker where Marker.decode(payload) == nil:
            return .invalid("malformed marker record payload")
        case .flush where len != 0, .seal where len != 0:
            return .invalid("\(h.type) record with a payload")
        default:
            return .valid(h)
        }
    }

    /// Preallocated segments end in megabytes of zeros: compare 64 KiB at a time with memcmp,
    /// and look byte by byte only inside a chunk that is not all zero.
    private static func firstNonZero(_ raw: UnsafeRawBufferPointer, from: Int) -> Int? {
        var i = from
        while i < raw.count {
            let n = min(zeroChunk.count, raw.count - i)
            if memcmp(raw.baseAddress! + i, zeroChunk.baseAddress!, n) != 0 {
                for j in i..<(i + n) where raw[j] != 0 { return j }
            }
            i += n
        }
        return nil
    }

    nonisolated(unsafe) private static let zeroChunk: UnsafeRawBufferPointer = {  // immutable after init
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 16)
        p.initializeMemory(as: UInt8.self, repeating: 0)
        return UnsafeRawBufferPointer(p)
    }()

    private static func laterValidHeader(_ raw: UnsafeRawBufferPointer, after pos: Int, minimumLSN: LSN) -> Int? {
        var i = pos + 1
        while i + JournalFormat.recordHeaderSize <= raw.count {
            if let h = RecordHeader.decode(UnsafeRawBufferPointer(rebasing: raw[i...])), h.lsn >= minimumLSN { return i }
            i += 1
        }
        return nil
    }
}
