import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatSite
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat protect`: recover, mount, serve until asked to stop, drain, unmount.
///
/// Signals: SIGINT, SIGTERM and SIGHUP are blocked in every thread (call `StopSignals.block()`
/// first thing in `main`, before any thread exists) and taken here with sigtimedwait, so no
/// handler runs on a libfuse worker. A stop signal unmounts without MNT_DETACH: while a loop
/// device or an open file still uses a disk, the unmount fails with EBUSY and protection goes
/// on (cutting a live disk off would turn into I/O errors in its user); the next signal tries
/// again. `fusermount3 -u` from outside stops it the same way.
public enum ProtectService {
    /// Checked before anything is opened, so that a non-root user is told why first.
    public static func requireRoot() throws {
        guard geteuid() == 0 else {
            throw LifeboatError(.permission, "protect must run as root (it mounts a FUSE filesystem and serves loop devices)")
        }
    }

    public static func run(site: Site, mountpoint: String, options: ProtectionGroup.Options, logger: Logger) throws {
        try requireRoot()
        guard !site.config.disks.isEmpty else {
            throw LifeboatError(.invalidArgument, "the site has no disks (add one with `lifeboat disk create`)", path: site.root.string)
        }
        try FUSESession.checkMountpointIsFree(mountpoint)
        let group = try ProtectionGroup.open(site: site, options: options, logger: logger)
        let session: FUSESession
        do {
            session = try FUSESession(
                filesystem: ProtectFilesystem(group: group), mountpoint: mountpoint,
                options: ["fsname=lifeboat:\(site.root.lastComponent?.string ?? "site")", "subtype=lifeboat", "default_permissions"], logger: logger)
            try session.mount()
        } catch {
            try? group.close()
            throw error
        }
        session.start()
        let control = try? ControlServer(site: site, group: group, mountpoint: mountpoint, logger: logger)
        do { try control?.start() } catch {
            logger.warning("\(error)")
            control?.stop()
        }
        if control == nil { logger.warning("no control socket: `lifeboat checkpoint` cannot reach this protect") }
        logger.notice("protecting \(site.config.disks.count) disk(s) at \(mountpoint): \(site.config.disks.map { $0.name + ".img" }.joined(separator: ", "))")
        try? SiteStatus.live(group, mountpoint: mountpoint).save(in: site)

        var lastStatus = ContinuousClock.now
        serveUntilUnmounted(session, mountpoint: mountpoint, logger: logger) {
            group.tick()
            if lastStatus.duration(to: .now) >= .seconds(1) {
                try? SiteStatus.live(group, mountpoint: mountpoint).save(in: site)
                lastStatus = .now
            }
        }
        control?.stop()
        logger.notice("unmounted; draining the journal")
        try group.close()
        var final = SiteStatus.live(group, mountpoint: mountpoint)
        final.state = .stopped
        final.pid = nil
        final.disks = final.disks.map { var d = $0; d.state = d.error == nil ? .stopped : .error; return d }
        try? final.save(in: site)
        logger.notice("stopped cleanly at LSN \(final.journal.appendedLSN)")
    }
}
