internal import CLinux
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The one helper every raw system call goes through (swift-system's FileDescriptor covers the
/// rest): retries EINTR, captures errno at once, and treats EBADF on our own descriptor as a bug.
@inline(__always)
public func syscallRetrying<T: FixedWidthInteger>(_ body: () -> T) -> Result<T, Errno> {
    while true {
        let rc = body()
        if rc >= 0 { return .success(rc) }
        let err = Errno(rawValue: errno)
        if err == .interrupted { continue }
        precondition(err != .badFileDescriptor, "EBADF on an owned descriptor: a Lifeboat bug")
        return .failure(err)
    }
}

extension FileDescriptor {
    /// Writes `bytes` from offset 0 of this new, empty file with O_DIRECT set on it for the
    /// write: through an aligned buffer of 4 MiB, the last block padded with zeros and the
    /// file then cut to `bytes.count`. Where the filesystem refuses O_DIRECT (EINVAL), written
    /// through the page cache instead. Durable only after an fsync, as any write. Returns
    /// whether the bytes went past the cache.
    @discardableResult
    public func writeAllPastTheCache(_ bytes: [UInt8]) throws -> Bool {
        let fd = rawValue
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | clinux_o_direct) == 0 else {
            _ = try writeAll(bytes)
            return false
        }
        defer { _ = fcntl(fd, F_SETFL, flags) }
        let block = 4096, chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(chunk, (bytes.count + block - 1) / block * block), alignment: block)
        defer { buffer.deallocate() }
        do {
            try bytes.withUnsafeBytes { source in
                var offset = 0
                while offset < source.count {
                    let n = min(chunk, source.count - offset)
                    let padded = (n + block - 1) / block * block
                    buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + n)]))
                    if padded > n { memset(buffer.baseAddress! + n, 0, padded - n) }
                    _ = try writeAll(toAbsoluteOffset: Int64(offset), UnsafeRawBufferPointer(rebasing: buffer[0..<padded]))
                    offset += n
                }
            }
            if bytes.count % block != 0 { try resize(to: Int64(bytes.count)) }
        } catch Errno.invalidArgument {
            // Alignment this device does not take: all of it again, through the cache.
            _ = fcntl(fd, F_SETFL, flags)
            try resize(to: 0)
            _ = try writeAll(toAbsoluteOffset: 0, bytes)
            return false
        }
        return true
    }

    /// fdatasync(2): data and the metadata needed to read it back are durable.
    public func dataSync() throws {
        let fd = rawValue
        if case .failure(let e) = syscallRetrying({ Glibc.fdatasync(fd) }) { throw e }
    }

    /// fsync(2).
    public func fullSync() throws {
        let fd = rawValue
        if case .failure(let e) = syscallRetrying({ Glibc.fsync(fd) }) { throw e }
    }

    /// Writes all of `buffer` at `offset` (pwrite, again after a short write). Not swift-system's
    /// `writeAll(toAbsoluteOffset:)`: that one is generic over a byte sequence and runs
    /// unspecialized from here, with metadata lookups on every write of the write path.
    @inline(__always)
    public func writeAll(at offset: Int64, from buffer: UnsafeRawBufferPointer) throws(Errno) {
        let fd = rawValue
        var done = 0
        while done < buffer.count {
            let rest = buffer.count - done
            switch syscallRetrying({ Glibc.pwrite(fd, buffer.baseAddress! + done, rest, off_t(offset) + off_t(done)) }) {
            case .success(0): throw Errno.ioError  // no progress on a regular file: never loop on it
            case .success(let n): done += n
            case .failure(let e): throw e
            }
        }
    }

    /// Reads exactly `buffer.count` bytes at `offset`, or throws; a short file reads as zeros
    /// only when `zeroFillPastEOF` is set (sparse images shorter than their nominal size).
    public func readAll(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer, zeroFillPastEOF: Bool = false) throws {
        var done = 0
        while done < buffer.count {
            let n = try read(fromAbsoluteOffset: offset + Int64(done), into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 {
                guard zeroFillPastEOF else { throw Errno.ioError }
                buffer.baseAddress!.advanced(by: done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            done += n
        }
    }

    /// An exclusive, non-blocking open-file-description lock on the whole file (fcntl
    /// F_OFD_SETLK; flock(2) does not import, its name clashes with `struct flock`). Released
    /// when this descriptor is closed or the process dies. False when another holder has it.
    public func tryLockExclusive() throws -> Bool {
        var lock = Glibc.flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        let fd = rawValue
        switch syscallRetrying({ fcntl(fd, clinux_f_ofd_setlk, &lock) }) {
        case .success: return true
        case .failure(.resourceTemporarilyUnavailable), .failure(.permissionDenied): return false
        case .failure(let e): throw e
        }
    }

    /// An exclusive open-file-description lock on the whole file, waited for (F_OFD_SETLKW).
    public func lockExclusiveWaiting() throws(Errno) {
        var lock = Glibc.flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        let fd = rawValue
        if case .failure(let e) = syscallRetrying({ fcntl(fd, clinux_f_ofd_setlkw, &lock) }) { throw e }
    }

    /// Size from fstat(2).
    public func fileSize() throws(Errno) -> Int64 {
        var st = Glibc.stat()
        let fd = rawValue
        if case .failure(let e) = syscallRetrying({ Glibc.fstat(fd, &st) }) { throw e }
        return Int64(st.st_size)
    }
}

/// fsync of a directory: makes a create, rename or unlink inside it durable.
public func syncDirectory(_ path: FilePath) throws {
    let fd = try FileDescriptor.open(path, .readOnly, options: [.directory])
    defer { try? fd.close() }
    try FaultInjection.check(.syncDirectory, path: path)
    try fd.fullSync()
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
/// On failure the temp file is removed (a full disk gets its space back) and `path` is as it was
/// — unless only the directory fsync failed, when it may already be the new file.
///
/// `bypassingCache`: written past the page cache (O_DIRECT), for large files written once and
/// not read soon — the vault's layers, where copying into the page cache was a third of the
/// ingest's CPU (Docs/benchmarks.md). A filesystem that refuses O_DIRECT gets it through the cache.
///
/// `durable: false`: atomic (a reader sees the old file or the new one) but not synced — for a
/// file rewritten every second whose loss in a power cut costs nothing (the running protect's
/// status), whose two fsyncs (device cache flushes) held protect's tick thread 0.5 s in every 3 s
/// under streaming writes (Docs/benchmarks.md).
public func writeFileAtomically(_ path: FilePath, _ bytes: [UInt8], bypassingCache: Bool = false, durable: Bool = true) throws(LifeboatError) {
    let tmp = FilePath(path.string + ".tmp")
    var renamed = false
    defer { if !renamed { _ = unlink(tmp.string) } }
    do {
        let fd = try FileDescriptor.open(tmp, .writeOnly, options: [.create, .truncate, .closeOnExec], permissions: PrivateFiles.fileMode)
        do {
            if let fault = FaultInjection.take(.write, path: path) {
                _ = try fd.writeAll(bytes.prefix(fault.writtenBytes))
                throw fault.errno
            }
            if bypassingCache { try fd.writeAllPastTheCache(bytes) } else { _ = try fd.writeAll(bytes) }
            if durable {
                try FaultInjection.check(.sync, path: path)
                try fd.fullSync()
            }
            try fd.close()
        } catch {
            try? fd.close()
            throw error
        }
        try FaultInjection.check(.rename, path: path)
        if case .failure(let e) = syscallRetrying({ Glibc.rename(tmp.string, path.string) }) { throw e }
        renamed = true
        if durable { try syncDirectory(path.removingLastComponent()) }
    } catch let e as Errno {
        throw .system(e, "cannot write file atomically", path: path.string)
    } catch {
        throw LifeboatError.wrapping(error, "cannot write file atomically", path: path.string)
    }
}

extension FileDescriptor {
    /// The first data byte at or after `offset` (lseek SEEK_DATA), or nil when only a hole
    /// follows (ENXIO). Any other failure is an error: taking it for "no more data" would read
    /// real data as zeros.
    public func nextData(at offset: Int64) throws(Errno) -> Int64? {
        let fd = rawValue
        switch syscallRetrying({ Glibc.lseek(fd, off_t(offset), clinux_seek_data) }) {
        case .success(let at): return Int64(at)
        case .failure(.noSuchAddressOrDevice): return nil
        case .failure(let e): throw e
        }
    }

    /// The first hole at or after `offset` (lseek SEEK_HOLE; the file's end counts as one).
    public func nextHole(at offset: Int64) throws(Errno) -> Int64 {
        let fd = rawValue
        switch syscallRetrying({ Glibc.lseek(fd, off_t(offset), clinux_seek_hole) }) {
        case .success(let at): return Int64(at)
        case .failure(let e): throw e
        }
    }
}

/// The whole content of a small file (configuration, state), with the errno of what failed.
public func readWholeFile(_ path: FilePath) throws(Errno) -> [UInt8] {
    let fd: Int32
    switch syscallRetrying({ Glibc.open(path.string, O_RDONLY | O_CLOEXEC) }) {
    case .success(let opened): fd = opened
    case .failure(let e): throw e
    }
    defer { Glibc.close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let result = chunk.withUnsafeMutableBytes { buffer in syscallRetrying({ Glibc.read(fd, buffer.baseAddress, buffer.count) }) }
        switch result {
        case .success(0): return bytes
        case .success(let n): bytes.append(contentsOf: chunk[0..<n])
        case .failure(let e): throw e
        }
    }
}

extension FileDescriptor {
    /// Whether another open file description holds a lock on this file (F_OFD_GETLK); works
    /// on a read-only descriptor, so it needs no write access.
    public func isLockedElsewhere() throws -> Bool {
        var lock = Glibc.flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        let fd = rawValue
        if case .failure(let e) = syscallRetrying({ fcntl(fd, clinux_f_ofd_getlk, &lock) }) { throw e }
        return lock.l_type != Int16(F_UNLCK)
    }
}

/// The size of the file at `path`, nil when it cannot be stat'ed (gone, say): for figures
/// in status, never for decisions about data.
public func fileSize(_ path: FilePath) -> Int64? {
    var st = Glibc.stat()
    return stat(path.string, &st) == 0 ? Int64(st.st_size) : nil
}
