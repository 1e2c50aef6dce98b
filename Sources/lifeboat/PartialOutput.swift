import Foundation
import LifeboatCore
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Undo for work a stop signal must not leave half done. While `run` runs, SIGINT, SIGTERM
/// and SIGHUP go to a watcher thread, which runs the cleanup and exits with 128 + the signal,
/// as the shell reports a killed command.
enum InterruptCleanup {
    private static let pending = Mutex<(@Sendable () -> Void)?>(nil)
    private static let watcherStarted = Mutex(false)

    static func run<T>(cleanup: @escaping @Sendable () -> Void, _ body: () throws -> T) rethrows -> T {
        startWatcher()
        pending.withLock { $0 = cleanup }
        defer { pending.withLock { $0 = nil } }
        return try body()
    }

    /// Blocks the stop signals in this thread (and so in every thread it starts later) and
    /// takes them on a thread of their own. Called first thing in `main` for the commands that
    /// use it: a thread started before (a dispatch worker of the catalog's SQLite queue) would
    /// otherwise take a signal with its default action and skip the cleanup.
    static func startWatcher() {
        guard watcherStarted.withLock({ started in defer { started = true }; return !started }) else { return }
        var set = sigset_t()
        sigemptyset(&set)
        for s in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let signals = set
        let watcher = Thread {
            var signal: Int32 = 0
            var waitSet = signals
            while sigwait(&waitSet, &signal) != 0 {}
            pending.withLock { cleanup in cleanup?() }
            _exit(128 + signal)
        }
        watcher.name = "lifeboat-signals"
        watcher.start()
    }
}

/// A file a command writes that must not be left half-written: it is written under a
/// temporary name beside its final one and linked into place only when complete; on an error
/// or a stop signal it is removed. `link(2)` refuses to replace a file that appeared meanwhile.
struct PartialOutput {
    let finalPath: String
    let temporaryPath: String

    init(_ path: String) {
        finalPath = path
        let url = URL(fileURLWithPath: path)
        temporaryPath = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).lifeboat-\(getpid()).partial").path
    }

    /// Runs `body`, which writes `temporaryPath`; then moves it into place.
    func write(_ body: (String) throws -> Void) throws {
        let temporary = temporaryPath
        try InterruptCleanup.run(cleanup: { unlink(temporary) }) {
            do {
                try body(temporaryPath)
                guard link(temporaryPath, finalPath) == 0 else {
                    throw LifeboatError.system(Errno(rawValue: errno), "cannot put the output in place", path: finalPath)
                }
                unlink(temporaryPath)
            } catch {
                unlink(temporaryPath)
                throw error
            }
        }
    }
}
