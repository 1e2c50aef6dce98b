import Foundation
import LifeboatCore
import LifeboatVault
import Logging
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat drill`: the supervisor. It checks the plan against the vault, pins the point,
/// starts the worker in fresh mount and network namespaces, forwards stop signals, enforces
/// the plan's timeout, and, however the worker ends, cleans the workspace (loop devices, the
/// overlay, the pin), builds the report and records it in the vault.
///
/// Exit codes (Docs/operations.md): 0 every check passed, 1 a check failed, 70 the drill could
/// not run to the end (infrastructure: no verdict on the point); bad plans and unknown points
/// exit with the usual input codes (64, 66) before anything is mounted.
public enum Drill {
    public static let exitFailedCheck: Int32 = 1
    public static let exitInfrastructure: Int32 = 70

    public struct Options: Sendable {
        /// Overrides the plan's point selector.
        public var point: String?
        public var keep = false
        public var workRoot = DrillWorkspace.defaultRoot
        /// The lifeboat binary, which runs `drill-worker`.
        public var executable: String
        public init(executable: String) { self.executable = executable }
    }

    /// Everything a plan can get wrong against this vault, with the plan's line: found before
    /// anything is mounted. Relative manifest paths become absolute (the worker runs elsewhere).
    public static func validate(_ plan: inout DrillPlan, vault: Vault) throws {
        let names = try vault.disks().map(\.name)
        for (i, disk) in plan.disks.enumerated() {
            guard names.contains(disk.name) else {
                throw LifeboatError(.invalidArgument, "line \(disk.line): field 'disks': the vault has no disk '\(disk.name)' (it has: \(names.joined(separator: ", ")))", path: plan.path)
            }
            for (k, check) in disk.checks.enumerated() {
                if var boot = check.boot {
                    try resolveBootFiles(&boot, plan: plan, line: check.line, field: "disks.\(disk.name).checks.boot")
                    plan.disks[i].checks[k].boot = boot
                }
                guard let manifest = check.manifest else { continue }
                let path = manifest.hasPrefix("/") ? manifest : plan.directory + "/" + manifest
                guard FileManager.default.isReadableFile(atPath: path) else {
                    throw LifeboatError(.invalidArgument, "line \(check.line): field 'disks.\(disk.name).checks.files.manifest': cannot read \(path)", path: plan.path)
                }
                plan.disks[i].checks[k].manifest = path
            }
        }
    }

    /// The boot check's files (firmware, kernel, initrd) relative to the plan's directory, made
    /// absolute and found readable; qemu found executable.
    static func resolveBootFiles(_ boot: inout BootOptions, plan: DrillPlan, line: Int, field: String) throws {
        guard access(BootCheck.qemu, X_OK) == 0 else {
            throw LifeboatError(.unsupported, "line \(line): the boot check needs \(BootCheck.qemu) (Debian package qemu-system-x86)", path: plan.path)
        }
        func resolve(_ path: String?, _ key: String) throws -> String? {
            guard let path else { return nil }
            let absolute = path.hasPrefix("/") ? path : plan.directory + "/" + path
            guard FileManager.default.isReadableFile(atPath: absolute) else {
                throw LifeboatError(.invalidArgument, "line \(line): field '\(field).\(key)': cannot read \(absolute)", path: plan.path)
            }
            return absolute
        }
        boot.firmware = try resolve(boot.firmware, "firmware")
        boot.kernel = try resolve(boot.kernel, "kernel")
        boot.initrd = try resolve(boot.initrd, "initrd")
    }

    /// A plan that declares ext4 or XFS for a disk whose superblock at the point says the other
    /// is a plan error, found before anything is mounted or recorded (not a failed fsck).
    static func checkDeclaredFilesystems(_ plan: DrillPlan, vault: Vault, lsn: LSN) throws {
        let disks = try vault.disks()
        for disk in plan.disks where disk.filesystem == .ext4 || disk.filesystem == .xfs {
            guard let d = disks.first(where: { $0.name == disk.name }) else { continue }
            var head = [UInt8](repeating: 0, count: BlockSize.bytes)
            let reader = try PointReader(vault: vault, lsn: lsn, only: [d.id])
            try head.withUnsafeMutableBytes { try reader.readBlock(disk: d.id, block: BlockIndex(0), into: $0) }
            if let found = FilesystemKind.detect(head), found != disk.filesystem {
                throw LifeboatError(.invalidArgument, "line \(disk.line): field 'disks.\(disk.name).filesystem': the plan says \(disk.filesystem.rawValue), "
                                    + "but the disk's superblock at LSN \(lsn) is \(found.rawValue)", path: plan.path)
            }
        }
    }

    /// Runs the plan on one point. Throws only before the drill starts (bad plan, unknown
    /// point, not root); from then on every outcome is a report (`.error` for infrastructure).
    public static func run(plan original: DrillPlan, vault: Vault, options: Options, logger: Logger) throws -> DrillReport {
        var plan = original
        try validate(&plan, vault: vault)
        let (lsn, point): (LSN, RecoveryPoint?)
        do { (lsn, point) = try PointSelector.resolve(options.point ?? plan.point ?? "latest", in: vault) } catch var e as LifeboatError {
            if options.point == nil, plan.point != nil, e.code == .invalidArgument {
                e.message = "field 'point': " + e.message
                e.path = plan.path
            }
            throw e
        }
        try checkDeclaredFilesystems(plan, vault: vault, lsn: lsn)
        try checkPrerequisites()
        let drilled = DrilledPoint(id: point?.id, lsn: lsn.rawValue, kind: point?.kind, time: point?.time, label: point?.label)
        let disks = Dictionary(uniqueKeysWithValues: try vault.disks().map { ($0.id, $0.name) })
        let digests = Dictionary(uniqueKeysWithValues: (try point?.digestMap() ?? [:]).compactMap { k, v in disks[k].map { ($0, v.description) } })
        let spec = WorkerSpec(vault: vault.root.string, vaultKey: vault.atRest.keyPath?.string, point: drilled, plan: plan, digests: digests, keep: options.keep)

        let startedAt = Date()
        logger.notice("drill \(plan.path) on \(point.map { "point \($0.id ?? 0) (\($0.kind))" } ?? "LSN \(lsn)") at LSN \(lsn)")
        let (result, failure) = runWorker(spec: spec, vault: vault, lsn: lsn, options: options, timeout: plan.timeout, logger: logger)
        let finishedAt = Date()
        var report = DrillReport(plan: plan.path, vault: vault.root.string, point: drilled, startedAt: startedAt, finishedAt: finishedAt,
                                 rpoSeconds: point.map { startedAt.timeIntervalSince($0.time) },
                                 rtoSeconds: result?.checksDoneAt.map { $0.timeIntervalSince(startedAt) },
                                 result: .passed, error: failure ?? result?.error, disks: result?.disks ?? [])
        report.result = report.error != nil ? .error : report.failedChecks.isEmpty ? .passed : .failed
        if report.error != nil { report.rtoSeconds = nil }
        do {
            try vault.record(drill: DrillRecord(pointID: point?.id, lsn: lsn, startedAt: startedAt, finishedAt: finishedAt,
                                                result: report.result, plan: plan.path, report: String(decoding: try report.json(), as: UTF8.self)))
        } catch {
            logger.error("cannot record the drill in the vault: \(error)")
            if report.result != .failed {
                report.result = .error
                report.error = "cannot record the drill in the vault: \(error)"
            }
        }
        return report
    }

    static func checkPrerequisites() throws {
        guard geteuid() == 0 else { throw LifeboatError(.permission, "drill must run as root (namespaces, FUSE, loop devices)") }
        guard access("/dev/fuse", R_OK | W_OK) == 0 else { throw LifeboatError(.permission, "no usable /dev/fuse", path: "/dev/fuse") }
        for tool in ["/usr/bin/unshare", "/usr/bin/setpriv", "/bin/mount", "/sbin/losetup"] where access(tool, X_OK) != 0 {
            throw LifeboatError(.unsupported, "\(tool) is missing (Debian package util-linux / mount)", path: tool)
        }
    }

    /// Starts the worker in its namespaces and waits for it; returns its result, or why there
    /// is none. Cleans the workspace whatever happened.
    static func runWorker(spec: WorkerSpec, vault: Vault, lsn: LSN, options: Options, timeout: TimeInterval,
                          logger: Logger) -> (WorkerResult?, String?) {
        let ws: DrillWorkspace
        do { ws = try DrillWorkspace.create(root: options.workRoot) } catch { return (nil, "\(error)") }
        var record = DrillWorkspace.Record(supervisorPID: getpid(), workerPID: nil, vault: vault.root.string, pin: nil)
        defer {
            for line in ws.cleanup() { logger.debug("cleanup: \(line)") }
        }
        let pid: pid_t
        do {
            try ws.save(record, to: ws.recordPath)
            // Prune merges no layer past the pin. With dropped writes the target also reads
            // older versions, so the pin goes before the first of them: merged into the base,
            // a dropped write could no longer be left out.
            let pinned = spec.dropped.min().map { LSN($0 - 1) }.map { min($0, lsn) } ?? lsn
            record.pin = try vault.pin(lsn: pinned).path
            try ws.save(record, to: ws.recordPath)
            try ws.save(spec, to: ws.specPath)
            // setpriv: unshare dies with us; --kill-child: the worker then gets SIGTERM and
            // cleans up. The worker is PID 1 of its own PID namespace, so when it ends, however
            // it ends, the kernel kills every process a check left behind.
            pid = try Subprocess.spawn(["/usr/bin/setpriv", "--pdeathsig", "KILL", "--",
                                        "/usr/bin/unshare", "--mount", "--net", "--pid", "--fork", "--kill-child=TERM", "--mount-proc",
                                        "--propagation", "private", "--", options.executable, "drill-worker", ws.directory], log: nil)
            record.workerPID = workerPID(forkedBy: pid)
            try ws.save(record, to: ws.recordPath)
        } catch {
            return (nil, "cannot start the drill: \(error)")
        }
        let keptNotice = spec.keep ? { [ws, worker = record.workerPID] in
            guard FileManager.default.fileExists(atPath: ws.resultPath) else { return false }
            // The verdict now, not only after Ctrl-C: the inspection may take a while.
            let checks = ((try? ws.load(WorkerResult.self, from: ws.resultPath))?.disks ?? []).flatMap(\.checks)
            let failed: [String] = checks.filter { $0.status == .failed }.map(\.name)
            let verdict: String = failed.isEmpty ? "PASSED" : "FAILED"
            let which: String = failed.isEmpty ? "" : ": " + failed.joined(separator: ", ")
            logger.notice("checks done: \(verdict) (\(checks.count) check(s), \(failed.count) failed\(which))")
            logger.notice("targets kept under \(ws.directory): enter with `nsenter -t \(worker.map(String.init) ?? "?") -m -n -p`, stop the drill (Ctrl-C) to clean up")
            return true
        } : nil
        let stopReason = superviseWorker(pid, worker: record.workerPID, timeout: timeout, logger: logger, whileWaiting: keptNotice)
        guard FileManager.default.fileExists(atPath: ws.resultPath) else {
            return (nil, stopReason ?? "the drill worker ended without a result (see the messages above)")
        }
        do {
            let result = try ws.load(WorkerResult.self, from: ws.resultPath)
            // With --keep a stop signal is how a finished drill ends: the verdict stands.
            if spec.keep, result.checksDoneAt != nil, result.error == nil { return (result, nil) }
            return (result, stopReason)
        } catch {
            return (nil, "\(error)")
        }
    }

    /// The worker's PID (outside its namespace): the child `unshare --fork` made.
    static func workerPID(forkedBy unshare: pid_t) -> pid_t? {
        for _ in 0..<500 {
            let text = (try? String(contentsOfFile: "/proc/\(unshare)/task/\(unshare)/children", encoding: .utf8)) ?? ""
            if let pid = text.split(separator: " ").first.flatMap({ pid_t($0) }) { return pid }
            if !processExists(unshare) { return nil }
            usleep(10_000)
        }
        return nil
    }

    /// Waits for the worker, taking stop signals (blocked in every thread, main.swift) with
    /// sigtimedwait: a signal or the deadline sends it SIGTERM (it unmounts and exits), and a
    /// minute later SIGKILL (its namespaces go with it). Returns why it was stopped, if it was.
    /// `whileWaiting` runs each turn until it returns true (the --keep notice); from then on
    /// the deadline no longer applies.
    static func superviseWorker(_ pid: pid_t, worker: pid_t?, timeout: TimeInterval, logger: Logger,
                                whileWaiting: (() -> Bool)? = nil) -> String? {
        var whileWaiting = whileWaiting
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        var deadline = Date().addingTimeInterval(timeout)
        var stopReason: String?
        var termSentAt: Date?
        var killed = false
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno == ECHILD) {
                if r == pid, status != 0, stopReason == nil {
                    return "the drill worker failed (exit \(Subprocess.exitStatus(status)))"
                }
                return stopReason
            }
            if let w = whileWaiting, w() {
                // Kept: the plan's timeout bounded the checks; the targets stay until a stop signal.
                whileWaiting = nil
                deadline = .distantFuture
            }
            var wait = timespec(tv_sec: 0, tv_nsec: 100_000_000)
            let signal = sigtimedwait(&set, nil, &wait)
            if stopReason == nil {
                if signal > 0 {
                    stopReason = "interrupted by signal \(signal)"
                } else if Date() > deadline {
                    stopReason = "the drill ran past the plan's timeout (\(describeDuration(timeout)))"
                }
                if let stopReason {
                    logger.notice("\(stopReason): stopping the drill")
                    // unshare ignores SIGTERM; killing it makes it send the worker SIGTERM.
                    if let worker { kill(worker, SIGTERM) } else { kill(pid, SIGKILL) }
                    termSentAt = Date()
                }
            }
            if let t = termSentAt, !killed, Date().timeIntervalSince(t) > 60 {
                logger.warning("the drill worker did not stop within a minute: killing it")
                if let worker { kill(worker, SIGKILL) }
                kill(pid, SIGKILL)
                killed = true
            }
        }
    }
}
