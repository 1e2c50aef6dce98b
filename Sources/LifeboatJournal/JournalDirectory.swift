import Foundation
import LifeboatCore
import SystemPackage

/// What a journal's directory holds, read and checked end to end.
public struct RecoveryReport: Sendable {
    public var segments = 0
    public var records = 0
    public var lastLSN = LSN.zero
    /// A torn tail that was cut off: the segment, the offset, the bytes cut and where they were kept.
    public var tornTail: (segment: String, offset: Int, bytes: Int, reason: String, evidence: String)?
}

/// Walks a journal directory: lists the segments in LSN order and checks each one and the
/// chain between them (group, LSN continuity, every segment but the newest sealed).
public enum JournalDirectory {
    public static func segments(in directory: FilePath) throws -> [(firstLSN: LSN, path: FilePath)] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.string)
        } catch {
            throw LifeboatError(.notFound, "cannot list the journal directory", path: directory.string)
        }
        return names.compactMap { name in SegmentName.parse(name).map { ($0, directory.appending(name)) } }
            .sorted { $0.0 < $1.0 }
    }

    /// Reads every segment in order, checks it, and hands each to `visit` with its bytes. A
    /// torn tail in the newest segment is accepted and reported in the scan (`repairTornTail`
    /// decides whether it is cut off here); anything else wrong throws, naming file and offset.
    ///
    /// A torn tail followed by valid records is what a power loss leaves when the pages after
    /// the last fdatasync reached the disk out of order — none of those records was
    /// acknowledged, since an fdatasync would have written the hole too — or damage. It is
    /// accepted when the hole lies past `durableThrough` (the newest LSN known durable, the
    /// checkpoint's), damage otherwise; nil: always damage (the reader does not know).
    @discardableResult
    public static func scanAll(
        _ directory: FilePath, groupID: [UInt8], repairTornTail: Bool, durableThrough: LSN? = nil,
        visit: (SegmentScan, UnsafeRawBufferPointer) throws -> Void
    ) throws -> RecoveryReport {
        var report = RecoveryReport()
        var list = try segments(in: directory)
        if let newest = list.last, try isInterruptedCreation(newest.path) {
            // A segment renamed into place whose header never became durable. Its predecessor
            // was sealed and synced before it was created, and no record in it was acknowledged
            // (a sync makes its header durable first): set it aside, the journal ends before it.
            let evidence = repairTornTail ? try setAside(newest.path) : ""
            report.tornTail = (newest.path.string, 0, 0, "interrupted segment creation (no header)", evidence)
            list.removeLast()
        }
        var previous: SegmentScan?
        for (index, entry) in list.enumerated() {
            let isNewest = index == list.count - 1
            let bytes = try SegmentReader.load(entry.path)
            let scan = try SegmentReader.scan(bytes, path: entry.path)
            let name = entry.path.string
            guard scan.header.groupID == groupID else {
                throw LifeboatError(.corrupt, "segment belongs to another protection group", path: name, offset: 16)
            }
            guard scan.header.firstLSN == entry.firstLSN else {
                throw LifeboatError(.corrupt, "segment header says first LSN \(scan.header.firstLSN), its name says \(entry.firstLSN)", path: name, offset: 32)
            }
            if let previous {
                guard scan.header.firstLSN == previous.lastLSN.next else {
                    throw LifeboatError(
                        .corrupt, "LSN gap: previous segment ends at LSN \(previous.lastLSN), this one starts at \(scan.header.firstLSN) (a segment is missing)",
                        path: name, offset: 32)
                }
            }
            switch scan.end {
            case .sealed: break
            case .open:
                guard isNewest else {
                    throw LifeboatError(.corrupt, "segment is not sealed but newer segments follow it", path: name, offset: Int64(scan.validEnd))
                }
            case .tornTail(let offset, let count, var reason, let later):
                guard isNewest else {
                    throw LifeboatError(.corrupt, "\(reason) in a segment that newer segments follow", path: name, offset: Int64(offset))
                }
                if let later {
                    let holeLSN = scan.lastLSN.next
                    guard let durableThrough, holeLSN > durableThrough else {
                        throw LifeboatError(
                            .corrupt, "\(reason) (record LSN \(holeLSN)); a valid record follows at offset \(later)"
                                + (durableThrough.map { ", and LSN \($0) was durable" } ?? "") + ", so this is damage, not a torn tail",
                            path: name, offset: Int64(offset))
                    }
                    reason += "; the valid records after it at offset \(later) were written out of order and never made durable"
                }
                if repairTornTail {
                    let evidence = try cutTornTail(entry.path, bytes: bytes, at: offset)
                    report.tornTail = (name, offset, count, reason, evidence)
                } else {
                    report.tornTail = (name, offset, count, reason, "")
                }
            }
            try bytes.withUnsafeBytes { (raw) throws in try visit(scan, raw) }
            report.segments += 1
            report.records += scan.records.count
            report.lastLSN = scan.lastLSN
            previous = scan
        }
        return report
    }

    static func isInterruptedCreation(_ path: FilePath) throws -> Bool {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readOnly) } catch { return false }
        defer { try? fd.close() }
        var head = [UInt8](repeating: 0, count: JournalFormat.segmentHeaderSize)
        let n = (try? head.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: 0, into: $0) }) ?? 0
        return head[0..<n].allSatisfy { $0 == 0 }
    }

    static func setAside(_ path: FilePath) throws -> String {
        let evidence = path.string + ".broken"
        do { try FileManager.default.moveItem(atPath: path.string, toPath: evidence) } catch {
            throw LifeboatError(.io, "cannot set aside an interrupted segment: \(error)", path: path.string)
        }
        return evidence
    }

    /// Keeps the torn bytes as evidence (`NAME.broken`, never overwritten) and truncates the
    /// segment to its last valid record, both made durable before the journal is appended to.
    static func cutTornTail(_ path: FilePath, bytes: [UInt8], at offset: Int) throws -> String {
        var evidence = FilePath(path.string + ".broken")
        var n = 1
        while FileManager.default.fileExists(atPath: evidence.string) {
            evidence = FilePath(path.string + ".broken.\(n)")
            n += 1
        }
        try writeFileAtomically(evidence, Array(bytes[offset...]))
        do {
            let fd = try FileDescriptor.open(path, .writeOnly)
            defer { try? fd.close() }
            try fd.resize(to: Int64(offset))
            try fd.fullSync()
        } catch let e as Errno {
            throw LifeboatError.system(e, "cannot truncate the torn tail", path: path.string, offset: Int64(offset))
        } catch {
            throw LifeboatError(.io, "\(error)", path: path.string)
        }
        return evidence.string
    }
}
