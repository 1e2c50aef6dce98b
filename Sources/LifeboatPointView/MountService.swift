import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatVault
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat mount`: serve a recovery point through FUSE until unmounted, then throw the
/// overlay away. The point is pinned in the vault while mounted, so retention skips it.
public enum MountService {
    public struct Options: Sendable {
        public var vhd = false
        public var overlay: String?
        public init() {}
    }

    /// Below this much free space an overlay directory is refused: an ext4 journal replay alone
    /// writes tens of megabytes.
    static let overlayMinimumFree: UInt64 = 64 << 20

    /// Checked before anything is opened, so that a non-root user is told why first.
    public static func requireRoot() throws {
        guard geteuid() == 0 else { throw LifeboatError(.permission, "mount must run as root (FUSE, loop devices)") }
    }

    public static func run(vault: Vault, selector: String, mountpoint: String, options: Options, logger: Logger) throws {
        try requireRoot()
        try FUSESession.checkMountpointIsFree(mountpoint)
        let (lsn, point) = try PointSelector.resolve(selector, in: vault)
        var overlay: FilePath?
        if let dir = options.overlay {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory) else {
                throw LifeboatError(.notFound, "overlay directory does not exist", path: dir)
            }
            guard isDirectory.boolValue else { throw LifeboatError(.invalidArgument, "the overlay must be a directory", path: dir) }
            var st = statvfs()
            guard statvfs(dir, &st) == 0 else { throw LifeboatError.system(Errno(rawValue: errno), "cannot inspect the overlay directory", path: dir) }
            let free = UInt64(st.f_bavail) * UInt64(st.f_frsize)
            guard free >= overlayMinimumFree else {
                throw LifeboatError(.io, "overlay directory has only \(free) bytes free (at least \(overlayMinimumFree) needed)", path: dir)
            }
            overlay = FilePath(dir)
        }
        let pin = try vault.pin(lsn: lsn)
        defer { vault.unpin(pin) }
        // A disk added after the point was not part of it: not shown (a point records a digest
        // for every disk it holds; an LSN between points has no such record and shows all).
        let held = try point.map { Set(try $0.digestMap().keys) }.flatMap { $0.isEmpty ? nil : $0 }
        let filesystem = try PointViewFilesystem(vault: vault, lsn: lsn, vhd: options.vhd, overlayDirectory: overlay, only: held)
        defer { filesystem.discardOverlays() }
        let session = try FUSESession(filesystem: filesystem, mountpoint: mountpoint,
                                      options: ["fsname=lifeboat-point", "subtype=lifeboat", "default_permissions"] + (overlay == nil ? ["ro"] : []), logger: logger)
        try session.mount()
        session.start()
        let what = point.map { "point \($0.id ?? 0) (\($0.kind))" } ?? "LSN \(lsn)"
        let mode = overlay == nil ? "read-only" : "writes to a throwaway overlay"
        logger.notice("serving \(what) at \(mountpoint), \(mode)")
        serveUntilUnmounted(session, mountpoint: mountpoint, logger: logger) {}
        logger.notice(overlay == nil ? "unmounted" : "unmounted; overlay discarded")
    }
}
