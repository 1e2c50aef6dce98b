import Crypto
import Foundation
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The seals of an encrypted vault's base (Docs/formats/vault.md, "Encryption at rest"): each
/// data block of `bases/DISKID.img` is stored as its AES-256-GCM ciphertext (the same 4096
/// bytes, so the base keeps its layout and prune still rewrites blocks in place), and
/// `bases/DISKID.seal` holds per block what opens it: the LSN of the version stored (u64) and
/// the tag (16 bytes), 24 bytes, little-endian.
///
/// ```
/// base key = HKDF-SHA256(vault key, salt: group id, info: "lifeboat base v1" ‖ disk u32), 32 bytes
/// nonce    = block u64 (its low 5 bytes) ‖ LSN u64 (its low 7 bytes)
/// ```
///
/// A block's version is named by (block, LSN), and one LSN wrote one content: the nonce never
/// repeats with another plaintext, and a prune redone after a crash writes the very same
/// ciphertext. An entry of zeros is a block stored as zeros (a hole of the sparse base): it
/// reads as zeros; a zero-filled block with a set entry is a lost block.
///
/// Mapped (`MappedBlockTable`), like the checksums beside it.
final class BaseSeals {
    static let entrySize = 24
    static let info = Array("lifeboat base v1".utf8)

    static let what = "the base's seals"
    private let table: MappedBlockTable
    private let key: SymmetricKey

    init(path: FilePath, blocks: Int, writable: Bool, key: VaultKey, groupID: [UInt8], disk: DiskID) throws {
        var info = Self.info
        withUnsafeBytes(of: disk.rawValue.littleEndian) { info += $0 }
        self.key = key.derive(salt: groupID, info: info)
        table = try MappedBlockTable(path: path, blocks: blocks, entrySize: Self.entrySize, writable: writable, what: Self.what)
    }

    /// Makes an empty (all-hole) seal file for `blocks` blocks.
    static func create(at path: FilePath, blocks: Int) throws {
        try MappedBlockTable.create(at: path, blocks: blocks, entrySize: entrySize, what: what)
    }

    private var path: FilePath { table.path }
    private func entry(_ block: Int) -> UnsafeMutableRawBufferPointer { table.entry(block) }

    private func isEmpty(_ block: Int) -> Bool { entry(block).allSatisfy { $0 == 0 } }

    private func nonce(block: Int, lsn: UInt64) throws -> AES.GCM.Nonce {
        guard UInt64(block) < 1 << 40, lsn < 1 << 56 else {
            throw LifeboatError(.unsupported, "block \(block) at LSN \(lsn) is past what a sealed base can name (2^40 blocks, 2^56 LSNs)", path: path.string)
        }
        var bytes = [UInt8](repeating: 0, count: 12)
        for k in 0..<5 { bytes[k] = UInt8(truncatingIfNeeded: UInt64(block) >> (8 * UInt64(k))) }
        for k in 0..<7 { bytes[5 + k] = UInt8(truncatingIfNeeded: lsn >> (8 * UInt64(k))) }
        return try AES.GCM.Nonce(data: bytes)
    }

    /// Encrypts `bytes` (the plaintext of `block` as of `lsn`) in place and records its seal.
    func seal(block: Int, lsn: LSN, _ bytes: UnsafeMutableRawBufferPointer) throws {
        let box: AES.GCM.SealedBox
        do { box = try AES.GCM.seal(UnsafeRawBufferPointer(bytes), using: key, nonce: try nonce(block: block, lsn: lsn.rawValue)) } catch let e as LifeboatError {
            throw e
        } catch {
            throw LifeboatError(.internalError, "cannot encrypt block \(block) of a base", path: path.string, cause: error)
        }
        box.ciphertext.withUnsafeBytes { bytes.copyMemory(from: $0) }
        let e = entry(block)
        e.storeBytes(of: lsn.rawValue.littleEndian, toByteOffset: 0, as: UInt64.self)
        box.tag.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: e[8..<24]).copyMemory(from: $0) }
    }

    /// Decrypts the stored `bytes` of `block` in place; a block that fails authentication (or
    /// is zeros where a version was sealed, or data where none was) is the error `damage` makes.
    func open(block: Int, _ bytes: UnsafeMutableRawBufferPointer, damage: (Int) -> LifeboatError) throws {
        if isEmpty(block) {
            guard bytes.allSatisfy({ $0 == 0 }) else { throw damage(block) }
            return
        }
        let e = entry(block)
        let lsn = UInt64(littleEndian: e.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        guard let box = try? AES.GCM.SealedBox(nonce: try nonce(block: block, lsn: lsn), ciphertext: UnsafeRawBufferPointer(bytes),
                                               tag: UnsafeRawBufferPointer(rebasing: e[8..<24])),
              let plain = try? AES.GCM.open(box, using: key) else { throw damage(block) }
        plain.withUnsafeBytes { bytes.copyMemory(from: $0) }
    }

    /// Opens each block of `data` (whole blocks of the base from `firstBlock` on) in place.
    func open(blocks data: UnsafeMutableRawBufferPointer, firstBlock: Int, damage: (Int) -> LifeboatError) throws {
        for k in 0..<(data.count >> BlockSize.shift) {
            try open(block: firstBlock + k, UnsafeMutableRawBufferPointer(rebasing: data[(k << BlockSize.shift)..<((k + 1) << BlockSize.shift)]), damage: damage)
        }
    }

    /// The first block in `range` with a seal: a block that reads as a hole but was written.
    func firstSealed(in range: Range<Int>) -> Int? { range.first { !isEmpty($0) } }

    /// Writes the seals to disk (with the checksums, before a prune's catalog commit).
    func sync() throws { try table.sync(Self.what) }
}

extension BaseSeals {
    /// The error for a base block that does not open with its seal: the disk, the block, and
    /// the base file with the block's byte offset in it.
    static func failure(diskName: String, block: Int, path: FilePath) -> LifeboatError {
        LifeboatError(.corrupt, "base of disk '\(diskName)': block \(block) fails authentication (damaged, or not sealed with this vault's key)",
                      path: path.string, offset: Int64(block) << Int64(BlockSize.shift))
    }
}

extension BaseSeals {
    /// Copies the raw image `source` to a new base at `destination`, each non-zero block sealed
    /// as the version of LSN 0 (the content before any journaled write); zero blocks stay holes
    /// with empty seals. The plaintext is never written: a vault's files hold only ciphertext.
    func copySealing(from source: FilePath, to destination: FilePath, sizeBytes: Int64, progress: (Int64) -> Void) throws {
        let input: FileDescriptor
        do { input = try FileDescriptor.open(source, .readOnly, options: [.closeOnExec]) } catch {
            throw LifeboatError.wrapping(error, "cannot open the initial content", path: source.string)
        }
        defer { try? input.close() }
        let output: FileDescriptor
        do { output = try FileDescriptor.open(destination, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode) } catch {
            throw LifeboatError.wrapping(error, "cannot create", path: destination.string)
        }
        defer { try? output.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: BlockSize.bytes)
        defer { buffer.deallocate() }
        do {
            try SparseImage.forEachDataPiece(of: input, sizeBytes: sizeBytes, buffer: buffer) { at, piece in
                // `piece` lies in `buffer`, ours: blocks are sealed where they were read.
                let bytes = UnsafeMutableRawBufferPointer(mutating: piece)
                let first = Int(at >> Int64(BlockSize.shift))
                var k = 0
                let count = bytes.count >> BlockSize.shift
                func slot(_ i: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: bytes[(i << BlockSize.shift)..<((i + 1) << BlockSize.shift)]) }
                while k < count {
                    if slot(k).allSatisfy({ $0 == 0 }) { k += 1; continue }
                    var end = k
                    while end < count, !slot(end).allSatisfy({ $0 == 0 }) {
                        try seal(block: first + end, lsn: .zero, slot(end))
                        end += 1
                    }
                    _ = try output.writeAll(toAbsoluteOffset: at + Int64(k << BlockSize.shift), UnsafeRawBufferPointer(rebasing: bytes[(k << BlockSize.shift)..<(end << BlockSize.shift)]))
                    k = end
                }
                progress(at + Int64(piece.count))
            }
            try output.resize(to: sizeBytes)
            try output.fullSync()
            try sync()
            progress(sizeBytes)
        } catch {
            throw LifeboatError.wrapping(error, "cannot copy the initial content", path: destination.string)
        }
    }
}
