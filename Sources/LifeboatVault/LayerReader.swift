import LifeboatCore
import LifeboatJournal
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An open layer file: mapped read-only, header and index checked once at open (O(1) work
/// besides the index checksum), lookups by binary search in the mapped index.
public final class LayerReader: @unchecked Sendable {
    public let path: FilePath
    public let header: LayerHeader
    /// Offset and length in bytes of the Bloom filter.
    private let bloomRange: Range<Int>
    private let base: UnsafeRawPointer
    private let size: Int
    /// Opens the frames of a sealed layer (nil for a plain vault's).
    private let sealer: FrameSealer?

    /// Opens the layer at `path` of a vault whose frames `sealer` seals (nil: a plain vault). A
    /// sealed layer without a sealer, or a plain one with one, is refused: a plain layer in an
    /// encrypted vault was not written by it.
    public init(path: FilePath, sealer: FrameSealer?) throws {
        self.path = path
        self.sealer = sealer
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) } catch {
            throw LifeboatError.wrapping(error, "cannot open layer", path: path.string)
        }
        defer { try? fd.close() }
        let size = Int((try? fd.fileSize()) ?? 0)
        guard size >= LayerFormat.headerSize + LayerFormat.footerSize else {
            throw LifeboatError(.corrupt, "layer is truncated (\(size) bytes)", path: path.string, offset: Int64(size))
        }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd.rawValue, 0), map != MAP_FAILED else {
            throw LifeboatError.system(Errno(rawValue: errno), "cannot map layer", path: path.string)
        }
        self.base = UnsafeRawPointer(map)
        self.size = size
        let raw = UnsafeRawBufferPointer(start: base, count: size)
        do {
            (self.header, self.bloomRange) = try Self.validate(raw, path: path.string)
            if header.sealed && sealer == nil {
                throw LifeboatError(.permission, "the layer is encrypted and no vault key was given", path: path.string)
            }
            if !header.sealed && sealer != nil {
                throw LifeboatError(.corrupt, "the layer is not encrypted, in an encrypted vault (it was not written by this vault)", path: path.string, offset: 8)
            }
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }

    private var raw: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    func withRaw<T>(_ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T { try body(raw) }

    /// Checks the header, footer and index checksum. Every integer read from the file is
    /// untrusted: each is range-checked, and sums and products are computed with overflow
    /// checks, so a flipped bit is a `.corrupt` error with its offset, never a trap.
    static func validate(_ raw: UnsafeRawBufferPointer, path: String) throws -> (LayerHeader, Range<Int>) {
        func corrupt(_ what: String, at offset: Int) -> LifeboatError { LifeboatError(.corrupt, what, path: path, offset: Int64(offset)) }
        guard Array(raw[0..<8]) == LayerFormat.magic else { throw corrupt("not a Lifeboat layer (bad magic)", at: 0) }
        let version = raw.loadLE(UInt32.self, at: 8)
        guard version == LayerFormat.version || version == LayerFormat.sealedVersion else {
            throw LifeboatError(.unsupported, "layer format version \(version); this lifeboat reads versions \(LayerFormat.version) and \(LayerFormat.sealedVersion)",
                                path: path, offset: 8)
        }
        let headerSize = raw.loadLE(UInt32.self, at: 12)
        guard headerSize == UInt32(LayerFormat.headerSize) else { throw corrupt("header size is \(headerSize), not \(LayerFormat.headerSize)", at: 12) }
        let footer = raw.count - LayerFormat.footerSize
        guard Array(raw[(footer + 16)..<(footer + 24)]) == LayerFormat.endMagic else {
            throw corrupt("layer footer is missing (truncated layer?)", at: footer)
        }
        // Offsets and counts must lie inside the file, which is far below Int.max.
        let rawCount = raw.loadLE(UInt64.self, at: 48), rawIndex = raw.loadLE(UInt64.self, at: 56), rawWords = raw.loadLE(UInt64.self, at: footer)
        guard rawIndex >= UInt64(LayerFormat.headerSize), rawIndex <= UInt64(footer) else {
            throw corrupt("index offset \(rawIndex) is outside the file (\(raw.count) bytes)", at: 56)
        }
        guard rawCount <= UInt64(footer) / UInt64(LayerFormat.entrySize) else { throw corrupt("entry count \(rawCount) cannot fit the file", at: 48) }
        guard rawWords >= 1, rawWords <= UInt64(footer) / 8 else { throw corrupt("Bloom filter of \(rawWords) words cannot fit the file", at: footer) }
        let header = LayerHeader(
            groupID: Array(raw[16..<32]), firstLSN: LSN(raw.loadLE(UInt64.self, at: 32)), lastLSN: LSN(raw.loadLE(UInt64.self, at: 40)),
            entryCount: Int(rawCount), indexOffset: Int(rawIndex), sealed: version == LayerFormat.sealedVersion)
        let bloomBytes = Int(rawWords) * 8
        let bloomStart = header.indexOffset + header.entryCount * LayerFormat.entrySize  // both bounded by the file size above
        guard bloomStart + bloomBytes == footer else {
            throw corrupt("index offset \(header.indexOffset), \(header.entryCount) entries and the filter do not fit the file", at: 56)
        }
        guard header.firstLSN <= header.lastLSN else { throw corrupt("first LSN \(header.firstLSN) is after the last \(header.lastLSN)", at: 32) }
        let crc = CRC32C.extend(CRC32C.of(UnsafeRawBufferPointer(rebasing: raw[0..<LayerFormat.headerSize])),
                                UnsafeRawBufferPointer(rebasing: raw[header.indexOffset..<footer]))
        guard crc == raw.loadLE(UInt32.self, at: footer + 8) else {
            throw corrupt("layer header/index checksum mismatch", at: header.indexOffset)
        }
        return (header, bloomStart..<footer)
    }

    public func entry(_ i: Int) -> LayerEntry {
        LayerEntry.load(raw, at: header.indexOffset + i * LayerFormat.entrySize)
    }

    /// The newest version of `block` of `disk` with LSN ≤ `lsn` in this layer, if any.
    public func lookup(disk: DiskID, block: BlockIndex, atOrBefore lsn: LSN) -> LayerEntry? {
        guard LayerBloom.mayContain(UnsafeRawBufferPointer(rebasing: raw[bloomRange]), disk: disk, block: block) else { return nil }
        // First index whose key is > (disk, block, lsn); the candidate is just before it.
        var low = 0, high = header.entryCount
        while low < high {
            let mid = (low + high) / 2
            let e = entry(mid)
            if LayerEntry.precedes((disk, block, lsn), (e.disk, e.block, e.lsn)) { high = mid } else { low = mid + 1 }
        }
        guard low > 0 else { return nil }
        let e = entry(low - 1)
        return e.disk == disk && e.block == block ? e : nil
    }

    /// Decompresses the frame of `entry` and copies its block into `out` (4096 bytes).
    public func readBlock(_ entry: LayerEntry, into out: UnsafeMutableRawBufferPointer, scratch: inout [UInt8], decompressor: ZstdDecompressor) throws {
        try decompressFrame(of: entry, into: &scratch, decompressor: decompressor)
        copyBlock(entry, from: scratch, into: out)
    }

    /// Copies `entry`'s block out of its decompressed frame.
    func copyBlock(_ entry: LayerEntry, from frame: [UInt8], into out: UnsafeMutableRawBufferPointer) {
        frame.withUnsafeBytes { out.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[(entry.blockInFrame * BlockSize.bytes)..<((entry.blockInFrame + 1) * BlockSize.bytes)])) }
    }

    /// Decompresses `entry`'s whole frame into `scratch` (grown as needed).
    func decompressFrame(of entry: LayerEntry, into scratch: inout [UInt8], decompressor: ZstdDecompressor) throws {
        guard entry.frameOffset >= LayerFormat.headerSize, entry.frameOffset <= header.indexOffset, entry.frameLength <= header.indexOffset - entry.frameOffset else {
            throw LifeboatError(.corrupt, "index entry points outside the layer's frames", path: path.string, offset: Int64(entry.frameOffset))
        }
        let stored = UnsafeRawBufferPointer(rebasing: raw[entry.frameOffset..<(entry.frameOffset + entry.frameLength)])
        guard let sealer else { return try decompress(stored, of: entry, into: &scratch, decompressor: decompressor) }
        guard let opened = sealer.open(stored, disk: entry.disk, firstBlock: entry.block.rawValue &- UInt64(entry.blockInFrame), lsn: entry.lsn) else {
            throw LifeboatError(.corrupt, "frame of block \(entry.block) of disk \(entry.disk) at LSN \(entry.lsn) fails authentication (damaged, moved, or not this vault's)",
                                path: path.string, offset: Int64(entry.frameOffset))
        }
        try opened.withUnsafeBytes { try decompress(UnsafeRawBufferPointer($0), of: entry, into: &scratch, decompressor: decompressor) }
    }

    private func decompress(_ frame: UnsafeRawBufferPointer, of entry: LayerEntry, into scratch: inout [UInt8], decompressor: ZstdDecompressor) throws {
        // A frame holds one write record's data: at most the journal's payload limit.
        let contentSize = Int(clamping: ZstdFrame.contentSize(frame) ?? 0)
        guard contentSize >= (entry.blockInFrame + 1) * BlockSize.bytes, contentSize <= JournalFormat.maxPayload else {
            throw LifeboatError(.corrupt, "frame is smaller than its index entries say", path: path.string, offset: Int64(entry.frameOffset))
        }
        if scratch.count < contentSize { scratch = [UInt8](repeating: 0, count: contentSize) }
        do {
            try scratch.withUnsafeMutableBytes { try decompressor.decompress(frame, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<contentSize])) }
        } catch let e as LifeboatError {
            throw LifeboatError(.corrupt, e.message, path: path.string, offset: Int64(entry.frameOffset))
        }
    }

    /// Decodes every frame (zstd's checksums) and checks the index: what `vault verify` runs.
    public func verifyAll() throws {
        let decompressor = ZstdDecompressor()
        var scratch: [UInt8] = []
        var previous: LayerEntry?
        var out = [UInt8](repeating: 0, count: BlockSize.bytes)
        var checkedFrames = Set<Int>()
        for i in 0..<header.entryCount {
            let e = entry(i)
            if let p = previous, !LayerEntry.precedes((p.disk, p.block, p.lsn), (e.disk, e.block, e.lsn)) {
                throw LifeboatError(.corrupt, "layer index is not sorted at entry \(i)", path: path.string, offset: Int64(header.indexOffset + i * LayerFormat.entrySize))
            }
            guard e.lsn >= header.firstLSN, e.lsn <= header.lastLSN else {
                throw LifeboatError(.corrupt, "index entry \(i) has LSN \(e.lsn) outside the layer's range", path: path.string, offset: Int64(header.indexOffset + i * LayerFormat.entrySize))
            }
            // A filter that denies a block the index holds would hide that version from reads.
            guard LayerBloom.mayContain(UnsafeRawBufferPointer(rebasing: raw[bloomRange]), disk: e.disk, block: e.block) else {
                throw LifeboatError(.corrupt, "the layer's Bloom filter misses block \(e.block) of disk \(e.disk)", path: path.string, offset: Int64(bloomRange.lowerBound))
            }
            if checkedFrames.insert(e.frameOffset).inserted {
                try out.withUnsafeMutableBytes { try readBlock(e, into: $0, scratch: &scratch, decompressor: decompressor) }
            }
            previous = e
        }
    }
}
