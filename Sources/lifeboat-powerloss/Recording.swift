import LifeboatCore
import LifeboatJournal
import LifeboatCapture
import LifeboatSite
import SystemPackage

/// The block writes and flushes of the recorded site filesystem, in completion order: the
/// journal of the recorder site, whose disk `image` held that filesystem (on a loop device)
/// and whose disk `acks` received the workload's acknowledgements.
struct Recording {
    struct Write {
        var lsn: LSN
        var firstBlock: Int
        var blocks: Int
        var segment: Int
        var dataOffset: Int
    }

    /// Every segment's bytes (the recording is read once and replayed many times).
    let segments: [[UInt8]]
    let imageBytes: Int64
    /// Writes to the image disk, by LSN.
    let writes: [Write]
    /// Flush LSNs, ascending.
    let flushes: [LSN]
    /// The workload's start mark.
    let startLSN: LSN
    /// (LSN of the ack write, what it acknowledges), by LSN.
    let acks: [(lsn: LSN, entries: [AckBlock.Entry])]

    init(recorderSite: FilePath, imageDisk: String, ackDisk: String) throws {
        let site = try Site.open(recorderSite)
        guard let image = site.config.disks.first(where: { $0.name == imageDisk }) else {
            throw LifeboatError(.notFound, "the recorder site has no disk '\(imageDisk)'", path: recorderSite.string)
        }
        guard let ack = site.config.disks.first(where: { $0.name == ackDisk }) else {
            throw LifeboatError(.notFound, "the recorder site has no disk '\(ackDisk)'", path: recorderSite.string)
        }
        imageBytes = image.sizeBytes
        var segments: [[UInt8]] = []
        var writes: [Write] = []
        var flushes: [LSN] = []
        var acks: [(LSN, [AckBlock.Entry])] = []
        var start: LSN?
        _ = try JournalDirectory.scanAll(site.journalDirectory, groupID: site.config.groupIDBytes, repairTornTail: false) { scan, raw in
            let index = segments.count
            segments.append(Array(raw))
            for record in scan.records {
                switch record.header.type {
                case .flush:
                    flushes.append(record.header.lsn)
                case .write:
                    let payload = record.payload(in: raw)
                    let w = WritePayloadHeader.decode(payload)!  // the scan validated it
                    let dataOffset = record.payloadOffset + JournalFormat.writePayloadHeaderSize
                    if w.disk == image.diskID {
                        writes.append(Write(lsn: record.header.lsn, firstBlock: Int(w.firstBlock.rawValue), blocks: Int(w.blockCount),
                                            segment: index, dataOffset: dataOffset))
                    } else if w.disk == ack.diskID {
                        for k in 0..<Int(w.blockCount) {
                            let block = UnsafeRawBufferPointer(rebasing: raw[(dataOffset + k * 4096)..<(dataOffset + (k + 1) * 4096)])
                            switch AckBlock.decode(block) {
                            case .start?: start = record.header.lsn
                            case .acks(let entries)?: acks.append((record.header.lsn, entries))
                            case nil: break
                            }
                        }
                    }
                default:
                    break
                }
            }
        }
        guard let start else {
            throw LifeboatError(.notFound, "the recording has no workload start mark on disk '\(ackDisk)'", path: recorderSite.string)
        }
        guard flushes.contains(where: { $0 > start }) else {
            throw LifeboatError(.invalidArgument, "the recording has no flush after the workload's start: nothing says what was durable", path: recorderSite.string)
        }
        self.segments = segments
        self.writes = writes
        self.flushes = flushes
        self.acks = acks
        self.startLSN = start
    }

}
