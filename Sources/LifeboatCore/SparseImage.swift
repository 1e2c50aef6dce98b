
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
            let fd = try FileDescriptor.open(path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: [.ownerReadWrite, .groupRead])
            defer { try? fd.close() }
            try fd.resize(to: sizeBytes)
            try fd.fullSync()
        } catch {
            throw LifeboatError.system(error as? Errno ?? .ioError, "cannot create", path: path.string)
        }
    }

    public static func copy(from source: FilePath, to destination: FilePath, sizeBytes: Int64, progress: (Int64) -> Void = { _ in }) throws {
        let input: FileDescriptor
        do { input = try FileDescriptor.open(source, .readOnly) } catch {
            throw LifeboatError.system(error as? Errno ?? .ioError, "cannot open the initial content", path: source.string)
        }
        defer { try? input.close() }
        let output: FileDescriptor
        do { output = try FileDescriptor.open(destination, .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite, .groupRead]) } catch {
            throw LifeboatError.system(error as? Errno ?? .ioError, "cannot create", path: destination.string)
        }
        defer { try? output.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        do {
            let end = min(sizeBytes, try input.fileSize())
            var offset: Int64 = 0
            while offset < end {
                let data = lseek(input.rawValue, Int(offset), seekData)
                if data < 0 { break }
                let hole = min(Int64(lseek(input.rawValue, data, seekHole)), end)
                var at = Int64(data) & ~Int64(65535)
                while at < hole {
                    let n = Int(min(Int64(buffer.count), hole - at))
                    let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<n])
                    try input.readAll(at: at, into: slice)
                    var piece = 0
                    while piece < n {
                        let len = min(65536, n - piece)
                        let bytes = UnsafeRawBufferPointer(rebasing: slice[piece..<(piece + len)])
                        if bytes.contains(where: { $0 != 0 }) { _ = try output.writeAll(toAbsoluteOffset: at + Int64(piece), bytes) }
                        piece += len
                    }
                    at += Int64(n)
                    progress(at)
                }
                offset = max(at, hole)
            }
            try output.resize(to: sizeBytes)
            try output.fullSync()
            progress(sizeBytes)
        } catch let e as LifeboatError {
            throw e
        } catch {
            throw LifeboatError.system(error as? Errno ?? .ioError, "copy failed", path: destination.string)
        }
    }
}
