import Foundation
import CLinux
import LifeboatCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Set when a drill must stop (a signal, the drill's deadline): the running command's process
/// group is killed and every later step is refused.
public final class Cancellation: @unchecked Sendable {
    private let lock = ConditionLock()
    private var reason: String?
    private var runningGroup: pid_t = 0

    public init() {}

    public var cancelledReason: String? { lock.withLock { reason } }

    public func cancel(_ why: String) {
        lock.withLock {
            if reason == nil { reason = why }
            if runningGroup > 0 { kill(-runningGroup, SIGKILL) }
            lock.broadcast()
        }
    }

    /// Blocks until `cancel` is called (a kept drill waits here for its stop signal).
    public func waitUntilCancelled() {
        lock.withLock { while reason == nil { lock.wait() } }
    }

    func check() throws {
        if let reason = cancelledReason { throw LifeboatError(.io, "drill stopped: \(reason)") }
    }

    /// Records the process group now running (0: none); false when the drill is already stopped.
    func running(_ group: pid_t) -> Bool {
        lock.withLock {
            runningGroup = group
            return reason == nil
        }
    }
}

/// What a command did: its exit status (128 + signal when killed), whether it ran out of
/// time, how long it took, and the end of its output.
struct CommandResult {
    var status: Int32
    var timedOut: Bool
    var seconds: Double
    var outputTail: String
    var succeeded: Bool { status == 0 && !timedOut }
}

/// Runs commands for a drill: each in its own process group (a timeout or a signal kills the
/// whole group), with stdout and stderr to a log file, stop signals unblocked, and
/// `setpriv --pdeathsig KILL` so the command dies with the worker even outside a PID namespace
/// (inside the drill's, the kernel kills whatever is left when the worker ends).
enum Subprocess {
    static let tailBytes = 4096

    static func run(_ argv: [String], environment: [String: String] = ProcessInfo.processInfo.environment, directory: String? = nil,
                    log: String, timeout: TimeInterval, cancellation: Cancellation) throws -> CommandResult {
        try cancellation.check()
        let start = Date()
        let pid = try spawn(["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] + argv, environment: environment, directory: directory, log: log)
        if !cancellation.running(pid) { kill(-pid, SIGKILL) }
        defer { _ = cancellation.running(0) }

        var timedOut = false
        var status = ChildProcess.waitForExit(pid, until: .now + .milliseconds(Int64(min(timeout, 365 * 86400) * 1000)))
        if status == nil {
            timedOut = true
            kill(-pid, SIGKILL)
            status = ChildProcess.waitForExit(pid, until: .now + .seconds(365 * 86400))
        }
        kill(-pid, SIGKILL)  // anything the command left running in its group
        return CommandResult(status: exitStatus(status ?? 0), timedOut: timedOut, seconds: Date().timeIntervalSince(start), outputTail: tail(of: log))
    }

    /// Starts `argv` in its own process group (ChildProcess.spawn); stdout and stderr are
    /// appended to `log`, or stay ours when `log` is nil.
    static func spawn(_ argv: [String], environment: [String: String] = ProcessInfo.processInfo.environment, directory: String? = nil,
                      log: String?) throws -> pid_t {
        guard let log else { return try ChildProcess.spawn(argv, environment: environment, directory: directory, outputFD: nil) }
        let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw LifeboatError.system(Errno(rawValue: errno), "cannot open the command's log", path: log) }
        defer { close(fd) }
        return try ChildProcess.spawn(argv, environment: environment, directory: directory, outputFD: fd)
    }

    /// The shell's exit status for a waitpid status: the code, or 128 + the signal.
    static func exitStatus(_ status: Int32) -> Int32 { (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f) }

    static func tail(of path: String) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > UInt64(tailBytes) ? size - UInt64(tailBytes) : 0)
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
