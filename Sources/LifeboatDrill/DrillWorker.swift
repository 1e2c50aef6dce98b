import CLinux
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

/// The drill worker (`lifeboat drill-worker DIR`), started by the supervisor through
/// `unshare --mount --net --pid --fork --kill-child=TERM` (decision 0005): a private mount
/// namespace (the FUSE target and the loop-mounted filesystems are invisible outside and go with
/// the worker however it ends), a network namespace with only loopback, and a PID namespace
/// whose PID 1 it is (every process a check leaves dies with it). It mounts the point, runs the
/// plan's checks, writes `result.json`, unmounts. When the supervisor dies, `unshare` sends it
/// SIGTERM and it cleans up as for any stop signal. Stop signals must be blocked before any
/// thread starts (see main.swift).
public enum DrillWorker {
    public static func run(directory: String, logger: Logger) -> Int32 {
        let ws = DrillWorkspace(directory: directory)
        let cancellation = Cancellation()
        watchStopSignals(cancellation, logger: logger)
        var result = WorkerResult()
        do {
            let spec = try ws.load(WorkerSpec.self, from: ws.specPath)
            guard clinux_loopback_up() == 0 else {
                throw LifeboatError.system(Errno(rawValue: errno), "cannot bring up loopback in the drill's network namespace")
            }
            let target = DrillTarget(spec: spec, workspace: ws, cancellation: cancellation, logger: logger)
            defer { target.tearDown() }
            result.disks = try target.runChecks()
            result.checksDoneAt = Date()
            if spec.keep, cancellation.cancelledReason == nil {
                // Kept for inspection: the results are final, the targets stay until a signal.
                try? ws.save(result, to: ws.resultPath)
                cancellation.waitUntilCancelled()
            }
        } catch {
            result.error = (error as? LifeboatError)?.description ?? "\(error)"
        }
        if result.error == nil, result.checksDoneAt == nil, let reason = cancellation.cancelledReason { result.error = "drill stopped: \(reason)" }
        do { try ws.save(result, to: ws.resultPath) } catch {
            logger.error("cannot write the drill's result: \(error)")
            return 74
        }
        return 0
    }

    /// Stop signals (blocked in every thread) are taken by one thread, which cancels the drill:
    /// the running command's process group is killed, later steps are refused, and the normal
    /// unwinding unmounts everything.
    ///
    /// The worker is PID 1 of its namespace, and the kernel drops signals that PID 1 leaves at
    /// their default action: a handler (never run, the signals stay blocked) makes it take them.
    private static func watchStopSignals(_ cancellation: Cancellation, logger: Logger) {
        for s in [SIGINT, SIGTERM, SIGHUP] { signal(s) { _ in } }
        let thread = Thread {
            var set = sigset_t()
            sigemptyset(&set)
            for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
            var signal: Int32 = 0
            while sigwait(&set, &signal) != 0 {}
            logger.notice("signal \(signal): stopping the drill and cleaning up")
            cancellation.cancel("signal \(signal)")
        }
        thread.name = "drill-signals"
        thread.start()
    }
}
