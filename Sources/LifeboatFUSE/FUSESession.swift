internal import CFuse3
import Foundation
import LifeboatCore
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A mounted libfuse session: mount, serve on worker threads, unmount. The loop runs on a
/// thread of its own (never inside a Swift Task). Stopping is an unmount: once the kernel
/// drops the connection the workers see ENODEV and the loop returns, after in-flight
/// requests have been answered.
public final class FUSESession: @unchecked Sendable {
    public let mountpoint: String
    private let box: FilesystemBox
    /// libfuse copies the table in fuse_session_new; kept here only so it outlives the call.
    private let ops: UnsafeMutablePointer<fuse_lowlevel_ops>
    private let session: OpaquePointer
    private var mounted = false
    private let finished = ConditionLock()
    private var loopResult: Int32?

    /// Creates the session. `options` are mount options (`-o` values) such as `ro`,
    /// `fsname=NAME`, `default_permissions`.
    public init(filesystem: any FUSEFilesystem, mountpoint: String, options: [String], logger: Logger) throws(LifeboatError) {
        self.mountpoint = mountpoint
        self.box = FilesystemBox(filesystem, logger: logger)
        self.ops = .allocate(capacity: 1)
        self.ops.initialize(to: makeOperations())
        let ops = self.ops
        let box = self.box
        var argv: [String] = ["lifeboat"]
        if !options.isEmpty { argv += ["-o", options.joined(separator: ",")] }
        var cStrings = argv.map { strdup($0) }
        defer { cStrings.forEach { free($0) } }
        let userdata = Unmanaged.passUnretained(box).toOpaque()
        let se = cStrings.withUnsafeMutableBufferPointer { argvPtr in
            cfuse_session_new(Int32(argvPtr.count), argvPtr.baseAddress, ops, userdata)
        }
        guard let se else {
            ops.deallocate()
            throw LifeboatError(.invalidArgument, "libfuse refused the session options \(options)")
        }
        self.session = se
    }

    deinit {
        if mounted { fuse_session_unmount(session) }
        fuse_session_destroy(session)
        ops.deallocate()
    }

    /// Mounts. Fails with one clear error when the mountpoint is missing, not a directory, or
    /// already a mount point, or when /dev/fuse cannot be opened.
    public func mount() throws(LifeboatError) {
        try Self.checkMountpointIsFree(mountpoint)
        guard access("/dev/fuse", R_OK | W_OK) == 0 else {
            throw LifeboatError(.permission, "cannot open /dev/fuse (run as root, with the fuse module loaded)", path: "/dev/fuse")
        }
        guard fuse_session_mount(session, mountpoint) == 0 else {
            throw LifeboatError(.io, "mount failed (libfuse printed the reason above)", path: mountpoint)
        }
        mounted = true
    }

    /// Serves requests with up to `maxThreads` workers until the filesystem is unmounted.
    /// Returns libfuse's result (0 after a clean unmount).
    public func run(maxThreads: UInt32 = 16) -> Int32 {
        let rc = cfuse_session_loop_mt(session, maxThreads)
        finished.withLock {
            loopResult = rc
            finished.broadcast()
        }
        return rc
    }

    /// Starts `run` on a dedicated thread.
    public func start(maxThreads: UInt32 = 16) {
        let thread = Thread { [self] in _ = self.run(maxThreads: maxThreads) }
        thread.start()
    }

    /// Waits up to `seconds` for the loop to end; true if it has.
    public func waitUntilFinished(seconds: Double) -> Bool {
        finished.withLock {
            if loopResult == nil { finished.wait(seconds: seconds) }
            return loopResult != nil
        }
    }

    public var isFinished: Bool { finished.withLock { loopResult != nil } }

    /// Unmounts (not lazily): fails with `.busy` while something still uses the filesystem,
    /// for example a loop device backed by one of its files, so nothing is cut off under a user.
    public func unmount() throws(LifeboatError) {
        if umount2(mountpoint, 0) != 0 {
            let e = Errno(rawValue: errno)
            if e == .invalidArgument { return }  // not mounted any more
            if e == .resourceBusy {
                let loops = LinuxDevices.loops(backedUnder: mountpoint).map { "\($0.device) backs \(URL(fileURLWithPath: $0.backing).lastPathComponent)" }
                throw LifeboatError(.busy, "still in use (" + (loops.isEmpty ? "an open file or a loop device on one of its files" : loops.joined(separator: ", "))
                                    + "); stop those users first", path: mountpoint)
            }
            throw LifeboatError.system(e, "unmount failed", path: mountpoint)
        }
        mounted = false
    }

    /// Checks that `path` is an existing directory with nothing mounted on it.
    public static func checkMountpointIsFree(_ path: String) throws(LifeboatError) {
        var st = Glibc.stat()
        guard stat(path, &st) == 0 else {
            let e = Errno(rawValue: errno)
            if e == .socketNotConnected {
                // What a killed protect or mount leaves: the kernel's mount, with nobody serving it.
                throw LifeboatError(.busy, "a dead FUSE mount is left here (the lifeboat that served it was killed): "
                                    + "unmount what uses it, then `umount -l \(path)`", path: path)
            }
            throw e == .noSuchFileOrDirectory ? LifeboatError(.notFound, "mountpoint does not exist", path: path)
                                              : LifeboatError.system(e, "cannot inspect the mountpoint", path: path)
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw LifeboatError(.invalidArgument, "mountpoint is not a directory", path: path)
        }
        var parent = Glibc.stat()
        if stat(path + "/..", &parent) == 0, parent.st_dev != st.st_dev || parent.st_ino == st.st_ino {
            throw LifeboatError(.busy, "mountpoint is already a mount point (something is mounted there)", path: path)
        }
        // Mounting over files would hide them until the unmount.
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: path), !entries.isEmpty {
            throw LifeboatError(.invalidArgument, "mountpoint is not empty (\(entries.count) entr\(entries.count == 1 ? "y" : "ies") would be hidden)", path: path)
        }
    }
}
