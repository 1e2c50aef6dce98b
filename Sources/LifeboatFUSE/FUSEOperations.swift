internal import CFuse3
import LifeboatCore
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The C side of the bridge: a `fuse_lowlevel_ops` table of non-capturing closures. Each one
/// copies its C arguments, finds the filesystem through the request's userdata (never through
/// a global), calls it, and replies exactly once.
final class FilesystemBox {
    let filesystem: any FUSEFilesystem
    let logger: Logger
    init(_ filesystem: any FUSEFilesystem, logger: Logger) {
        self.filesystem = filesystem
        self.logger = logger
    }
}

/// Answers `req` with the errno for `error`, and logs what that errno stands for whenever it
/// carries a cause or is EIO: the kernel's caller sees only a number.
private func replyError(_ req: fuse_req_t?, _ operation: StaticString, _ error: any Error) {
    let e = FUSEError.from(error)
    if e.cause != nil || e.errno == EIO {
        box(req).logger.error("\(operation): answered \(Errno(rawValue: e.errno)): \(e.cause.map { "\($0)" } ?? "no cause given")")
    }
    let rc = fuse_reply_err(req, e.errno)
    if rc != 0 { box(req).logger.warning("\(operation): the kernel did not take the reply (\(Errno(rawValue: -rc)))") }
}

@inline(__always)
private func box(_ req: fuse_req_t?) -> FilesystemBox {
    Unmanaged<FilesystemBox>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
}

private func replyEntry(_ req: fuse_req_t?, _ attributes: FileAttributes, timeout: Double) {
    var entry = fuse_entry_param()
    entry.ino = attributes.inode.rawValue
    entry.generation = 1
    entry.attr = attributes.stat()
    entry.attr_timeout = timeout
    entry.entry_timeout = timeout
    fuse_reply_entry(req, &entry)
}

private func replyAttributes(_ req: fuse_req_t?, _ attributes: FileAttributes, timeout: Double) {
    var st = attributes.stat()
    fuse_reply_attr(req, &st, timeout)
}

func makeOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()

    ops.`init` = { userdata, conn in
        guard let conn else { return }
        // Reads answered from a file descriptor go to /dev/fuse by splice when the kernel
        // supports it (fuse_common.h: FUSE_CAP_SPLICE_WRITE, FUSE_CAP_SPLICE_MOVE).
        for cap in [UInt32(FUSE_CAP_SPLICE_WRITE), UInt32(FUSE_CAP_SPLICE_MOVE)] where conn.pointee.capable & cap != 0 {
            conn.pointee.want |= cap
        }
        // No writeback cache: a write must reach the journal before it is acknowledged to the
        // writer, which the kernel's write-back cache would do first (FUSE_CAP_WRITEBACK_CACHE).
        conn.pointee.want &= ~UInt32(FUSE_CAP_WRITEBACK_CACHE)
        // Writes up to 1 MiB per request (the kernel negotiates max_pages from this).
        conn.pointee.max_write = 1 << 20
        conn.pointee.max_readahead = 1 << 20
    }

    ops.lookup = { req, parent, name in
        let fs = box(req).filesystem
        do {
            let attributes = try fs.lookup(parent: Inode(parent), name: String(cString: name!))
            replyEntry(req, attributes, timeout: fs.attributeTimeout)
        } catch { replyError(req, "lookup", error) }
    }

    ops.getattr = { req, ino, _ in
        let fs = box(req).filesystem
        do { replyAttributes(req, try fs.getattr(Inode(ino)), timeout: fs.attributeTimeout) } catch { replyError(req, "getattr", error) }
    }

    ops.setattr = { req, ino, attr, toSet, _ in
        let fs = box(req).filesystem
        do {
            let attributes: FileAttributes
            if toSet & FUSE_SET_ATTR_SIZE != 0 {
                attributes = try fs.truncate(Inode(ino), to: Int64(attr!.pointee.st_size))
            } else {
                attributes = try fs.getattr(Inode(ino))
            }
            replyAttributes(req, attributes, timeout: fs.attributeTimeout)
        } catch { replyError(req, "setattr", error) }
    }

    ops.open = { req, ino, fi in
        let fs = box(req).filesystem
        do {
            switch try fs.open(Inode(ino), flags: fi!.pointee.flags) {
            case .cached: fi!.pointee.keep_cache = 1
            case .direct: fi!.pointee.direct_io = 1
            }
            fuse_reply_open(req, fi)
        } catch { replyError(req, "open", error) }
    }

    ops.read = { req, ino, size, offset, _ in
        let fs = box(req).filesystem
        // Exactly one reply: the first `reply` call answers; a second is a bug and is dropped;
        // none at all (neither a reply nor a throw) would hang the kernel's request, so EIO.
        var replied = false
        do {
            try fs.read(Inode(ino), offset: Int64(offset), size: size) { source in
                guard !replied else { return box(req).logger.error("read: the filesystem replied twice; the second reply was dropped") }
                replied = true
                switch source {
                case .file(let fd, let at, let length):
                    cfuse_reply_fd(req, fd, off_t(at), length)
                case .bytes(let bytes):
                    fuse_reply_buf(req, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
                }
            }
            if !replied { replyError(req, "read", FUSEError(EIO, cause: LifeboatError(.internalError, "the filesystem returned without a reply"))) }
        } catch {
            if !replied { replyError(req, "read", error) }
        }
    }

    ops.write = { req, ino, buf, size, offset, _ in
        let fs = box(req).filesystem
        do {
            try fs.write(Inode(ino), offset: Int64(offset), data: UnsafeRawBufferPointer(start: buf, count: size))
            fuse_reply_write(req, size)
        } catch { replyError(req, "write", error) }
    }

    ops.fsync = { req, ino, datasync, _ in
        let fs = box(req).filesystem
        do {
            try fs.fsync(Inode(ino), dataOnly: datasync != 0)
            fuse_reply_err(req, 0)
        } catch { replyError(req, "fsync", error) }
    }

    // FLUSH comes on every close(2): it is not a durability request, so it does nothing.
    ops.flush = { req, _, _ in fuse_reply_err(req, 0) }
    ops.release = { req, _, _ in fuse_reply_err(req, 0) }

    ops.opendir = { req, ino, fi in
        let fs = box(req).filesystem
        do {
            let attributes = try fs.getattr(Inode(ino))
            guard attributes.isDirectory else { throw FUSEError(ENOTDIR) }
            fuse_reply_open(req, fi)
        } catch { replyError(req, "opendir", error) }
    }

    ops.readdir = { req, ino, size, offset, _ in
        let fs = box(req).filesystem
        do {
            let entries = try fs.readdir(Inode(ino))
            // The listing is small (one file per disk): rebuilt per call and paged by offset,
            // the index of the next entry, as fuse_add_direntry's contract says.
            var buffer = [CChar](repeating: 0, count: size)
            var used = 0
            var index = Int(offset)
            while index < entries.count {
                var st = entries[index].attributes.stat()
                let need = buffer.withUnsafeMutableBufferPointer { b in
                    fuse_add_direntry(req, b.baseAddress! + used, size - used, entries[index].name, &st, off_t(index + 1))
                }
                if need > size - used { break }
                used += need
                index += 1
            }
            buffer.withUnsafeBufferPointer { b in _ = fuse_reply_buf(req, b.baseAddress, used) }
        } catch { replyError(req, "readdir", error) }
    }

    ops.releasedir = { req, _, _ in fuse_reply_err(req, 0) }

    ops.statfs = { req, _ in
        let (total, free) = box(req).filesystem.statfs()
        var st = statvfs()
        st.f_bsize = 4096
        st.f_frsize = 4096
        st.f_blocks = UInt(total / 4096)
        st.f_bfree = UInt(free / 4096)
        st.f_bavail = UInt(free / 4096)
        st.f_namemax = 255
        fuse_reply_statfs(req, &st)
    }

    return ops
}

