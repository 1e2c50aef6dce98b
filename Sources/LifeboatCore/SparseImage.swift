
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Sparse raw image copies: only data extents are read (SEEK_DATA/SEEK_HOLE), and all-zero
/// 64 KiB runs stay holes in the copy.
public enum SparseImage {
    /// A new, empty sparse image of `sizeBytes` (durable).
    public static func create(_ path: FilePath, sizeBytes: Int64) throws {
        do {
            let fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: PrivateFiles.fileMode)
            defer { try? fd.close() }
            try fd.resize(to: sizeBytes)
            try fd.fullSync()
        } catch {
            throw LifeboatError.wrapping(error, "cannot create", path: path.string)
        }
    }

    public static func copy(from source: FilePath, to destination: FilePath, sizeBytes: Int64, progress: (Int64) -> Void = { _ in }) throws {
        let input: FileDescriptor
        do { input = try FileDescriptor.open(source, .readOnly) } catch {
            throw LifeboatError.wrapping(error, "cannot open the initial content", path: source.string)
        }
        defer { try? input.close() }
        let output: FileDescriptor
        do { output = try FileDescriptor.open(destination, .writeOnly, options: [.create, .truncate], permissions: PrivateFiles.fileMode) } catch {
            throw LifeboatError.wrapping(error, "cannot create", path: destination.string)
        }
        defer { try? output.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        do {
            try forEachDataPiece(of: input, sizeBytes: sizeBytes, alignment: 65536, buffer: buffer) { at, bytes in
                var piece = 0
                while piece < bytes.count {
                    let len = min(65536, bytes.count - piece)
                    let run = UnsafeRawBufferPointer(rebasing: bytes[piece..<(piece + len)])
                    if run.contains(where: { $0 != 0 }) { _ = try output.writeAll(toAbsoluteOffset: at + Int64(piece), run) }
                    piece += len
                }
                progress(at + Int64(bytes.count))
            }
            try output.resize(to: sizeBytes)
            try output.fullSync()
            progress(sizeBytes)
        } catch let e as LifeboatError {
            throw e
        } catch {
            throw LifeboatError.wrapping(error, "copy failed", path: destination.string)
        }
    }

    /// Calls `body` with consecutive pieces of the first `sizeBytes` of `fd` that cover every
    /// data extent (SEEK_DATA/SEEK_HOLE): holes are skipped without being read. A piece starts
    /// at a multiple of `alignment` and is at most `buffer.count` bytes (`buffer` holds it);
    /// bytes past the file's end read as zero.
    /// With `from`, the walk starts there (a multiple of `alignment`).
    public static func forEachDataPiece(of fd: FileDescriptor, sizeBytes: Int64, from start: Int64 = 0, alignment: Int64 = 4096,
                                        buffer: UnsafeMutableRawBufferPointer,
                                        _ body: (Int64, UnsafeRawBufferPointer) throws -> Void) throws {
        let fileEnd = min(sizeBytes, try fd.fileSize())
        var offset = start
        while offset < fileEnd {
            guard let dataStart = try fd.nextData(at: offset) else { break }  // only a hole follows
            let holeStart = min(try fd.nextHole(at: dataStart), fileEnd)
            var at = dataStart & ~(alignment - 1)
            let end = min(sizeBytes, (holeStart + alignment - 1) & ~(alignment - 1))
            while at < end {
                let n = Int(min(Int64(buffer.count), end - at))
                let piece = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
                try fd.readAll(at: at, into: piece, zeroFillPastEOF: true)
                try body(at, UnsafeRawBufferPointer(piece))
                at += Int64(n)
            }
            offset = max(at, holeStart)
        }
    }
}

extension SparseImage {
    /// Whether every byte is zero (a piece a sparse file keeps as a hole).
    public static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        let words = bytes.count / 8
        while i < words {
            if bytes.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) != 0 { return false }
            i += 1
        }
        for j in (words * 8)..<bytes.count where bytes[j] != 0 { return false }
        return true
    }
}
