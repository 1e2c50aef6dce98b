import Foundation
import LifeboatCore
import LifeboatFUSE
import LifeboatPointView
import LifeboatVault
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The point mounted as a throwaway target inside the worker's namespaces, and the plan's
/// checks run on it, in this order: `digest` straight from the vault (before anything writes
/// to the overlay); the point mounted through FUSE with an overlay; each filesystem mounted
/// read-write on a loop device, which replays its journal onto the overlay; `fsck` on the
/// unmounted image; the filesystem mounted again for `files`, `sqlite` and `script`.
final class DrillTarget {
    let spec: WorkerSpec
    let ws: DrillWorkspace
    let cancellation: Cancellation
    let logger: Logger
    private var session: FUSESession?
    private var view: PointViewFilesystem?
    private var mounted: [String] = []
    /// Why a disk's filesystem is not mounted, by disk name.
    private var mountFailure: [String: String] = [:]

    init(spec: WorkerSpec, workspace: DrillWorkspace, cancellation: Cancellation, logger: Logger) {
        self.spec = spec
        self.ws = workspace
        self.cancellation = cancellation
        self.logger = logger
    }

    func image(_ disk: String) -> String { ws.targetDirectory + "/" + disk + ".img" }

    func runChecks() throws -> [DiskResult] {
        var results = spec.plan.disks.map { DiskResult(name: $0.name, filesystem: nil, checks: []) }
        var byIndex: [[Int: CheckResult]] = spec.plan.disks.map { _ in [:] }
        func collected() -> [DiskResult] {
            for i in results.indices { results[i].checks = byIndex[i].sorted { $0.key < $1.key }.map(\.value) }
            return results
        }
        let vault = try Vault(root: FilePath(spec.vault), key: try spec.vaultKey.map { try VaultKey.load(FilePath($0)) })
        for (i, disk) in spec.plan.disks.enumerated() {
            for (k, check) in disk.checks.enumerated() where check.kind == .digest {
                try cancellation.check()
                byIndex[i][k] = digest(disk: disk.name, check: check, vault: vault)
            }
        }
        if spec.plan.disks.contains(where: { $0.checks.contains { $0.kind != .digest } }) {
            do { try mountPoint(vault: vault) } catch let e as LifeboatError where e.code == .corrupt {
                // Damage in the vault is a finding about the point, not a broken drill.
                for (i, disk) in spec.plan.disks.enumerated() {
                    for (k, check) in disk.checks.enumerated() where byIndex[i][k] == nil {
                        byIndex[i][k] = CheckResult(name: check.name, kind: check.kind, status: .failed, seconds: 0,
                                                    message: "the point cannot be mounted: \(e)", outputTail: "")
                    }
                }
                return collected()
            }
            // Boots first: the guest must see the disk as the point holds it, before a mount
            // here replays its journal onto the overlay.
            for (i, disk) in spec.plan.disks.enumerated() {
                for (k, check) in disk.checks.enumerated() where check.kind == .boot {
                    try cancellation.check()
                    byIndex[i][k] = try boot(disk: disk.name, check: check)
                }
            }
            for (i, disk) in spec.plan.disks.enumerated() where disk.needsMount {
                let fs = try filesystem(of: disk)
                results[i].filesystem = fs?.rawValue
                if let fs { mountFilesystem(disk.name, fs) }
                for (k, check) in disk.checks.enumerated() where check.kind == .fsck {
                    guard let fs else {
                        byIndex[i][k] = CheckResult(name: check.name, kind: .fsck, status: .failed, seconds: 0, message: "no ext2/3/4 or XFS filesystem found on the disk", outputTail: "")
                        continue
                    }
                    if mounted.contains(ws.mountDirectory(disk.name)) { try unmount(ws.mountDirectory(disk.name)) }
                    byIndex[i][k] = try fsck(disk: disk.name, fs: fs, check: check)
                    mountFilesystem(disk.name, fs)
                }
            }
            for (i, disk) in spec.plan.disks.enumerated() {
                for (k, check) in disk.checks.enumerated() where byIndex[i][k] == nil {
                    try cancellation.check()
                    byIndex[i][k] = try run(check, disk: disk)
                }
            }
        }
        return collected()
    }

    private func mountPoint(vault: Vault) throws {
        let lsn = LSN(spec.point.lsn)
        let view = try PointViewFilesystem(vault: vault, lsn: lsn, vhd: false, overlayDirectory: FilePath(ws.overlayDirectory),
                                           excluding: Set(spec.dropped.map { LSN($0) }))
        self.view = view
        let session = try FUSESession(filesystem: view, mountpoint: ws.targetDirectory,
                                      options: ["fsname=lifeboat-drill", "subtype=lifeboat", "default_permissions"], logger: logger)
        try session.mount()
        session.start()
        self.session = session
        logger.info("point at LSN \(lsn) mounted at \(ws.targetDirectory) (overlay \(ws.overlayDirectory))")
    }

    /// The disk's filesystem: as the plan names it, or found from its superblock.
    private func filesystem(of disk: DiskPlan) throws -> FilesystemKind? {
        switch disk.filesystem {
        case .none: return nil
        case .ext4, .xfs: return disk.filesystem
        case .auto:
            guard let h = FileHandle(forReadingAtPath: image(disk.name)) else {
                throw LifeboatError(.io, "cannot open the target image", path: image(disk.name))
            }
            defer { try? h.close() }
            return FilesystemKind.detect([UInt8]((try? h.read(upToCount: 2048)) ?? Data()))
        }
    }

    /// Mounts the disk's filesystem read-write (the overlay takes the writes; a dirty journal
    /// is replayed). A failure is recorded for the checks that need the mount, not thrown: an
    /// unmountable filesystem is a finding about the point.
    private func mountFilesystem(_ disk: String, _ fs: FilesystemKind) {
        let dir = ws.mountDirectory(disk)
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // XFS refuses a second mount of one filesystem UUID anywhere on the machine, and the
        // primary may be mounted: nouuid.
        let options = fs == .xfs ? "loop,nouuid" : "loop"
        do {
            let r = try Subprocess.run(["/bin/mount", "-t", fs.rawValue, "-o", options, image(disk), dir],
                                       log: ws.log("mount-\(disk)"), timeout: 300, cancellation: cancellation)
            if r.succeeded {
                mounted.append(dir)
                mountFailure[disk] = nil
            } else {
                mountFailure[disk] = "mount -t \(fs.rawValue) failed (exit \(r.status)): \(lastLine(r.outputTail))"
            }
        } catch {
            mountFailure[disk] = "mount failed: \(error)"
        }
    }

    private func unmount(_ dir: String) throws {
        var attempts = 0
        while umount2(dir, 0) != 0 {
            attempts += 1
            guard errno == EBUSY, attempts < 100 else {
                throw LifeboatError.system(Errno(rawValue: errno), "cannot unmount", path: dir)
            }
            usleep(100_000)
        }
        mounted.removeAll { $0 == dir }
    }

    /// Unmounts the filesystems, then the point (retrying while the loop devices let go of
    /// their files), then deletes the overlay. Whatever fails here goes with the namespace.
    func tearDown() {
        for dir in mounted.reversed() {
            do { try unmount(dir) } catch {
                logger.warning("\(error); detaching it")
                umount2(dir, Int32(MNT_DETACH))
            }
        }
        mounted = []
        if let session {
            var unmounted = false
            for _ in 0..<100 {
                if (try? session.unmount()) != nil {
                    unmounted = true
                    break
                }
                usleep(100_000)
            }
            if !unmounted { umount2(ws.targetDirectory, Int32(MNT_DETACH)) }
            _ = session.waitUntilFinished(seconds: 10)
        }
        view?.discardOverlays()
    }

    // MARK: The checks

    private func digest(disk: String, check: CheckPlan, vault: Vault) -> CheckResult {
        let start = Date()
        func result(_ status: CheckResult.Status, _ message: String) -> CheckResult {
            CheckResult(name: check.name, kind: .digest, status: status, seconds: Date().timeIntervalSince(start), message: message, outputTail: "")
        }
        guard let expected = spec.digests[disk] else {
            // Nothing to compare against is not a pass: the check was asked for and proves nothing.
            return result(.failed, "no source digest of '\(disk)' at LSN \(spec.point.lsn): digests come with the points' markers "
                          + "(drill a point, not an LSN between points; a disk created after the point has none)")
        }
        do {
            let d = try vault.disk(named: disk)
            let reader = try PointReader(vault: vault, lsn: LSN(spec.point.lsn))
            let root = try reader.digestRoot(disk: d) { _ in
                try cancellation.check()
                if Date().timeIntervalSince(start) > check.timeout {
                    throw LifeboatError(.io, "timed out after \(describeDuration(check.timeout))")
                }
            }
            if root.description == expected { return result(.passed, "digest \(root) equals the source's") }
            return result(.failed, "digest of the image at the point is \(root); the source's at the marker is \(expected)")
        } catch {
            try? cancellation.check()
            return result(.failed, (error as? LifeboatError)?.description ?? "\(error)")
        }
    }

    private func fsck(disk: String, fs: FilesystemKind, check: CheckPlan) throws -> CheckResult {
        let argv = fs == .xfs ? ["/sbin/xfs_repair", "-n", "-f", image(disk)] : ["/sbin/e2fsck", "-f", "-n", image(disk)]
        let r = try Subprocess.run(argv, log: ws.log("\(disk)-\(check.name)"), timeout: check.timeout, cancellation: cancellation)
        try cancellation.check()
        let message = r.timedOut ? "timed out after \(describeDuration(check.timeout))"
            : r.status == 0 ? "\(argv[0].split(separator: "/").last!) found no problems"
            : "\(argv[0].split(separator: "/").last!) exit \(r.status): \(lastLine(r.outputTail))"
        return CheckResult(name: check.name, kind: .fsck, status: r.succeeded ? .passed : .failed, seconds: r.seconds, message: message, outputTail: r.outputTail)
    }

    private func boot(disk: String, check: CheckPlan) throws -> CheckResult {
        let boot = BootCheck(image: image(disk), options: check.boot!, timeout: check.timeout,
                             scratchDirectory: ws.directory, log: ws.log("\(disk)-\(check.name)"))
        let o = try boot.run(cancellation: cancellation)
        try cancellation.check()
        return CheckResult(name: check.name, kind: .boot, status: o.passed ? .passed : .failed, seconds: o.seconds,
                           message: o.message, outputTail: o.consoleTail, bootSeconds: o.bootSeconds)
    }

    private func run(_ check: CheckPlan, disk: DiskPlan) throws -> CheckResult {
        let dir = ws.mountDirectory(disk.name)
        let isMounted = mounted.contains(dir)
        if check.kind == .files || check.kind == .sqlite, !isMounted {
            let why = mountFailure[disk.name] ?? "no ext2/3/4 or XFS filesystem found on the disk"
            return CheckResult(name: check.name, kind: check.kind, status: .failed, seconds: 0, message: "filesystem not mounted: \(why)", outputTail: "")
        }
        switch check.kind {
        case .files:
            let r = try Subprocess.run(["/usr/bin/sha256sum", "--check", "--strict", "--quiet", check.manifest!], directory: dir,
                                       log: ws.log("\(disk.name)-\(check.name)"), timeout: check.timeout, cancellation: cancellation)
            try cancellation.check()
            let message = r.timedOut ? "timed out after \(describeDuration(check.timeout))"
                : r.succeeded ? "every file of \(check.manifest!) matches" : firstLine(r.outputTail)
            return CheckResult(name: check.name, kind: .files, status: r.succeeded ? .passed : .failed, seconds: r.seconds, message: message, outputTail: r.outputTail)
        case .sqlite:
            return SQLiteCheck.run(database: dir + "/" + check.database!, check: check)
        case .script:
            var env = ProcessInfo.processInfo.environment
            env["LIFEBOAT_POINT_ID"] = spec.point.id.map(String.init) ?? ""
            env["LIFEBOAT_POINT_LSN"] = String(spec.point.lsn)
            env["LIFEBOAT_POINT_TIME"] = spec.point.time.map { ISO8601DateFormatter().string(from: $0) } ?? ""
            env["LIFEBOAT_DISK"] = disk.name
            env["LIFEBOAT_IMAGE"] = image(disk.name)
            env["LIFEBOAT_TARGET"] = isMounted ? dir : ""
            for d in spec.plan.disks {
                env["LIFEBOAT_IMAGE_\(variableName(d.name))"] = image(d.name)
                env["LIFEBOAT_TARGET_\(variableName(d.name))"] = mounted.contains(ws.mountDirectory(d.name)) ? ws.mountDirectory(d.name) : ""
            }
            let r = try Subprocess.run(["/bin/sh", "-c", check.run!], environment: env, directory: spec.plan.directory,
                                       log: ws.log("\(disk.name)-\(check.name)"), timeout: check.timeout, cancellation: cancellation)
            try cancellation.check()
            let message = r.timedOut ? "timed out after \(describeDuration(check.timeout))"
                : r.succeeded ? "exit 0" : "exit \(r.status): \(lastLine(r.outputTail))"
            return CheckResult(name: check.name, kind: .script, status: r.succeeded ? .passed : .failed, seconds: r.seconds, message: message, outputTail: r.outputTail)
        case .digest, .fsck, .boot:
            preconditionFailure("run earlier")
        }
    }
}

/// `LIFEBOAT_TARGET_<NAME>`: the disk name upper-cased, anything but letters and digits as `_`.
func variableName(_ disk: String) -> String {
    String(disk.uppercased().unicodeScalars.map { CharacterSet.alphanumerics.contains($0) && $0.isASCII ? Character($0) : "_" })
}

/// The line of a tool's output that says what went wrong: the last one, skipping sign-offs
/// such as xfs_repair's "Exiting now." that carry nothing.
func lastLine(_ text: String) -> String {
    let lines = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    return lines.last { !["Exiting now.", "Exiting now"].contains($0) } ?? lines.last ?? ""
}

func firstLine(_ text: String) -> String {
    text.split(separator: "\n").first.map(String.init)?.trimmingCharacters(in: .whitespaces) ?? ""
}
