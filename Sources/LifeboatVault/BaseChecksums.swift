import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The block checksums of a base (Docs/formats/vault.md, "Base checksums"): `bases/DISKID.sums`
/// holds one little-endian UInt32 per 4096-byte block of the base, CRC-32C of the block XOR
/// CRC-32C of a zero block, so a zero block's entry is 0 and the file stays as sparse as the
/// base. Bases are rewritten in place by every prune, so without these a flipped bit in the
/// oldest data would be served silently; with them every base read is checked (point views,
/// exports, a drill's digest) and `vault verify` scrubs the bases.
///
/// The file is mapped: a prune sets the entries of the blocks it merges without a system call
/// each, and a reader looks entries up in place.
final class BaseChecksums {
    static let zeroBlockCRC: UInt32 = [UInt8](repeating: 0, count: BlockSize.bytes).withUnsafeBytes { CRC32C.of($0) }

    static func entry(of block: UnsafeRawBufferPointer) -> UInt32 { CRC32C.of(block) ^ zeroBlockCRC }

    static let what = "the base's block checksums"
    private let table: MappedBlockTable

    /// Maps an existing checksum file; its size must be exactly 4 bytes per block.
    init(path: FilePath, blocks: Int, writable: Bool) throws {
        table = try MappedBlockTable(path: path, blocks: blocks, entrySize: 4, writable: writable, what: Self.what)
    }

    func expected(_ block: Int) -> UInt32 { UInt32(littleEndian: table.entry(block).loadUnaligned(as: UInt32.self)) }

    func record(_ block: Int, _ bytes: UnsafeRawBufferPointer) {
        table.entry(block).storeBytes(of: Self.entry(of: bytes).littleEndian, as: UInt32.self)
    }

    /// The first block of `data` (whole blocks of the base from `firstBlock` on) whose content
    /// does not match its recorded checksum.
    func firstMismatch(in data: UnsafeRawBufferPointer, firstBlock: Int) -> Int? {
        for k in 0..<(data.count >> BlockSize.shift) {
            let block = UnsafeRawBufferPointer(rebasing: data[(k << BlockSize.shift)..<((k + 1) << BlockSize.shift)])
            if Self.entry(of: block) != expected(firstBlock + k) { return firstBlock + k }
        }
        return nil
    }

    /// The first block in `range` with a non-zero entry: a block that must read as zeros (a
    /// hole of the base) but was recorded with other content.
    func firstNonZero(in range: Range<Int>) -> Int? {
        range.first { expected($0) != 0 }
    }

    /// Writes the checksums to disk (after a prune's merge, before its catalog commit).
    func sync() throws { try table.sync(Self.what) }

    /// Computes the checksums of the base `base` (reading only its data extents) into a new
    /// file at `path`, durably.
    static func create(forBase base: FileDescriptor, blocks: Int, at path: FilePath) throws {
        try MappedBlockTable.create(at: path, blocks: blocks, entrySize: 4, what: what)
        let sums = try BaseChecksums(path: path, blocks: blocks, writable: true)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        try SparseImage.forEachDataPiece(of: base, sizeBytes: Int64(blocks) << Int64(BlockSize.shift), buffer: buffer) { at, bytes in
            for k in 0..<(bytes.count >> BlockSize.shift) {
                sums.record(Int(at >> Int64(BlockSize.shift)) + k, UnsafeRawBufferPointer(rebasing: bytes[(k << BlockSize.shift)..<((k + 1) << BlockSize.shift)]))
            }
        }
        try sums.sync()
    }
}

extension Vault {
    func baseChecksumsPath(_ disk: DiskID) -> FilePath { basesDirectory.appending("\(disk.rawValue).sums") }

    /// Bases of vaults made before format 3 have no checksums: they are computed once, from the
    /// bases as they are, under the writer lock (so no prune changes a base meanwhile).
    /// A missing base is left to `vault verify` and the readers to report.
    func createMissingBaseChecksums() throws {
        let fm = FileManager.default
        let missing = try disks().filter { !fm.fileExists(atPath: baseChecksumsPath($0.id).string) && fm.fileExists(atPath: basePath($0.id).string) }
        guard !missing.isEmpty else { return }
        try withWriterLock {
            for d in missing where !fm.fileExists(atPath: baseChecksumsPath(d.id).string) {
                let base: FileDescriptor
                do { base = try FileDescriptor.open(basePath(d.id), .readOnly, options: [.closeOnExec]) } catch {
                    throw LifeboatError.wrapping(error, "cannot open the base of disk '\(d.name)'", path: basePath(d.id).string)
                }
                defer { try? base.close() }
                let tmp = incomingDirectory.appending("\(d.id.rawValue).sums.\(getpid()).tmp")
                try BaseChecksums.create(forBase: base, blocks: d.blockCount, at: tmp)
                try renameDurably(tmp, baseChecksumsPath(d.id))
            }
        }
    }

    /// Scrubs every block of the base of `disk` that holds data against its checksum (and, in
    /// an encrypted vault, opens it with its seal): the first bad block, named with its byte
    /// offset in the base file, or nil.
    func verifyBase(_ disk: VaultDisk) throws -> LifeboatError? {
        let sums = try BaseChecksums(path: baseChecksumsPath(disk.id), blocks: disk.blockCount, writable: false)
        let seals = try baseSeals(disk, writable: false)
        let path = basePath(disk.id)
        let base: FileDescriptor
        do { base = try FileDescriptor.open(path, .readOnly, options: [.closeOnExec]) } catch {
            throw LifeboatError.wrapping(error, "cannot open the base of disk '\(disk.name)'", path: path.string)
        }
        defer { try? base.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        // Data is read and checked; a hole reads as zeros, so its entries must be 0 (a set
        // entry there means the base lost a block that was written).
        var bad: Int?
        var next = 0
        var unsealed: LifeboatError?
        func holes(_ range: Range<Int>) -> Int? { sums.firstNonZero(in: range) ?? seals?.firstSealed(in: range) }
        try SparseImage.forEachDataPiece(of: base, sizeBytes: disk.sizeBytes, buffer: buffer) { at, bytes in
            let first = Int(at >> Int64(BlockSize.shift))
            if bad == nil { bad = holes(next..<first) ?? sums.firstMismatch(in: bytes, firstBlock: first) }
            if bad == nil, unsealed == nil, let seals {
                // `bytes` lies in `buffer`, ours: blocks are opened where they were read.
                do {
                    try seals.open(blocks: UnsafeMutableRawBufferPointer(mutating: bytes), firstBlock: first) {
                        BaseSeals.failure(diskName: disk.name, block: $0, path: path)
                    }
                } catch let e as LifeboatError { unsealed = e }
            }
            next = first + bytes.count >> BlockSize.shift
        }
        if bad == nil { bad = holes(next..<disk.blockCount) }
        guard let bad else { return unsealed }
        return BaseChecksums.mismatch(diskName: disk.name, block: bad, path: path)
    }
}

extension BaseChecksums {
    /// The error for a base block that does not match its checksum: the disk, the block, and
    /// the base file with the block's byte offset in it.
    static func mismatch(diskName: String, block: Int, path: FilePath) -> LifeboatError {
        LifeboatError(.corrupt, "base of disk '\(diskName)': block \(block) does not match its checksum", path: path.string, offset: Int64(block) << Int64(BlockSize.shift))
    }
}

/// A base checksum file checked as the vault checks it (for the fuzz target): refused by the
/// size rule, or the first block recorded as non-zero.
public enum BaseChecksumFile {
    public static func check(path: FilePath, blocks: Int) throws -> Int? {
        try BaseChecksums(path: path, blocks: blocks, writable: false).firstNonZero(in: 0..<blocks)
    }
}
