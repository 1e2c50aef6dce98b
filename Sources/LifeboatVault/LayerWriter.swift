import LifeboatCore
import LifeboatJournal

/// Builds a layer from a validated, sealed journal segment: each write record's data becomes one
/// zstd frame (sealed, in an encrypted vault), and each of its blocks an index entry. Markers
/// are returned for the catalog.
public struct LayerBuild {
    public var bytes: [UInt8]
    public var header: LayerHeader
    public var markers: [(lsn: LSN, marker: Marker)]
    /// The LSNs of the segment's flush records (crash-point exploration replays to these).
    public var flushes: [LSN]
    /// Distinct disks written, with the highest block touched (for checks against the catalog).
    public var highestBlock: [DiskID: BlockIndex]
}

public enum LayerWriter {
    public static func build(scan: SegmentScan, segment raw: UnsafeRawBufferPointer, compressor: ZstdCompressor, sealer: FrameSealer? = nil) throws -> LayerBuild {
        var bytes = [UInt8](repeating: 0, count: LayerFormat.headerSize)
        // Room for the frames at worst as large as the data (random data does not shrink) and
        // the index: the array never regrows, copying tens of MiB each time, as the layer is built.
        bytes.reserveCapacity(LayerFormat.headerSize + raw.count + raw.count / 64 + (raw.count >> BlockSize.shift) * LayerFormat.entrySize + 4096)
        var entries: [LayerEntry] = []
        var markers: [(LSN, Marker)] = []
        var flushes: [LSN] = []
        var highest: [DiskID: BlockIndex] = [:]
        var plainFrame: [UInt8] = []
        for record in scan.records {
            let payload = record.payload(in: raw)
            switch record.header.type {
            case .write:
                let w = WritePayloadHeader.decode(payload)!
                let data = UnsafeRawBufferPointer(rebasing: payload[JournalFormat.writePayloadHeaderSize...])
                let offset = bytes.count
                let length: Int
                if let sealer {
                    plainFrame.removeAll(keepingCapacity: true)
                    _ = try compressor.compress(data, appendingTo: &plainFrame)
                    length = try plainFrame.withUnsafeBytes {
                        try sealer.seal($0, disk: w.disk, firstBlock: w.firstBlock.rawValue, lsn: record.header.lsn, appendingTo: &bytes)
                    }
                } else {
                    length = try compressor.compress(data, appendingTo: &bytes)
                }
                for k in 0..<Int(w.blockCount) {
                    entries.append(LayerEntry(disk: w.disk, block: BlockIndex(w.firstBlock.rawValue + UInt64(k)), lsn: record.header.lsn,
                                              frameOffset: offset, frameLength: length, blockInFrame: k))
                }
                let last = BlockIndex(w.firstBlock.rawValue + UInt64(w.blockCount) - 1)
                highest[w.disk] = max(highest[w.disk] ?? last, last)
            case .marker:
                markers.append((record.header.lsn, Marker.decode(payload)!))
            case .flush:
                flushes.append(record.header.lsn)
            default:
                break
            }
        }
        entries.sort { LayerEntry.precedes(($0.disk, $0.block, $0.lsn), ($1.disk, $1.block, $1.lsn)) }
        let header = LayerHeader(groupID: scan.header.groupID, firstLSN: scan.header.firstLSN, lastLSN: scan.lastLSN,
                                 entryCount: entries.count, indexOffset: bytes.count, sealed: sealer != nil)
        finish(&bytes, header: header, entries: entries)
        return LayerBuild(bytes: bytes, header: header, markers: markers, flushes: flushes, highestBlock: highest)
    }

    /// Given the header space and the frames in `bytes`, writes the header, appends the sorted
    /// index and the footer.
    static func finish(_ bytes: inout [UInt8], header: LayerHeader, entries: [LayerEntry]) {
        bytes.replaceSubrange(0..<LayerFormat.headerSize, with: header.encoded())
        let indexStart = bytes.count
        bytes += [UInt8](repeating: 0, count: entries.count * LayerFormat.entrySize)
        bytes.withUnsafeMutableBytes { out in
            for (i, e) in entries.enumerated() { e.store(into: out, at: indexStart + i * LayerFormat.entrySize) }
        }
        // Entries are sorted, so the distinct (disk, block) pairs are the changes along the index.
        var keys: [(DiskID, BlockIndex)] = []
        for e in entries where keys.last.map({ $0.0 != e.disk || $0.1 != e.block }) ?? true { keys.append((e.disk, e.block)) }
        let bloom = LayerBloom.build(keys)
        var filter = ByteWriter()
        for word in bloom { filter.put(word) }
        bytes += filter.bytes
        let crc = bytes.withUnsafeBytes { raw in
            CRC32C.extend(CRC32C.of(UnsafeRawBufferPointer(rebasing: raw[0..<LayerFormat.headerSize])), UnsafeRawBufferPointer(rebasing: raw[indexStart...]))
        }
        var footer = ByteWriter()
        footer.put(UInt64(bloom.count))
        footer.put(crc)
        footer.put(UInt32(0))
        footer.put(LayerFormat.endMagic)
        bytes.append(contentsOf: footer.bytes)
    }
}
