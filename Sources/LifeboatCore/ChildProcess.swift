import Foundation
internal import CLinux
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Runs outside commands (hooks, fsfreeze, checks): each in its own process group, so a timeout
/// or a stop kills everything it started; stop signals unblocked and at their defaults in the
/// child (our own are blocked in `protect`, `mount` and the drill).
public enum ChildProcess {
    /// How a command ended.
    public enum Ending: Equatable, Sendable {
        case exited(Int32)
        case killedBySignal(Int32)
        /// Ran past its deadline: its whole process group was killed.
        case timedOut
        case couldNotStart(String)
    }

    public struct Result: Sendable {
        public var ending: Ending
        public var seconds: Double
        /// The last few KiB of what it printed (stdout and stderr together).
        public var outputTail: String
        public var succeeded: Bool { ending == .exited(0) }

        /// "failed (exit 2): LAST LINE" — why it did not succeed, for a report; nil on success.
        public var failure: String? {
            let last = outputTail.split(separator: "\n").last.map { ": " + $0.trimmingCharacters(in: .whitespaces) } ?? ""
            switch ending {
            case .exited(0): return nil
            case .exited(let code): return "failed (exit \(code))\(last)"
            case .killedBySignal(let s): return "was killed by signal \(s)\(last)"
            case .timedOut: return "timed out after \(describeDuration(seconds)); its process group was killed\(last)"
            case .couldNotStart(let why): return "could not start: \(why)"
            }
        }
    }

    /// Runs `argv` until it exits or `deadline` passes, whichever comes first. Its stdout and
    /// stderr go to an unlinked temporary file that is read while it runs and handed to
    /// `output` in pieces as they appear: a command that writes a lot never blocks on a full
    /// pipe, and one that leaves a background process behind (a daemon started by a hook) is
    /// done when the command itself exits — that process is left alone, writing into the file.
    /// At the deadline the whole process group is killed with SIGKILL.
    public static func run(_ argv: [String], deadline: ContinuousClock.Instant, environment: [String: String]? = nil,
                           output: (String) -> Void = { _ in }) -> Result {
        let start = ContinuousClock.now
        var template = Array("/tmp/lifeboat-output-XXXXXX".utf8CString)
        let file = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard file >= 0 else { return Result(ending: .couldNotStart("cannot make a temporary file (\(Errno(rawValue: errno)))"), seconds: 0, outputTail: "") }
        template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
        _ = fcntl(file, F_SETFD, FD_CLOEXEC)
        defer { close(file) }

        let pid: Int32
        do { pid = try spawn(argv, environment: environment ?? ProcessInfo.processInfo.environment, outputFD: file) } catch {
            return Result(ending: .couldNotStart("\(error)"), seconds: 0, outputTail: "")
        }
        var readOffset: off_t = 0
        var tail: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        func drain() {
            while true {
                let n = chunk.withUnsafeMutableBytes { pread(file, $0.baseAddress, $0.count, readOffset) }
                guard n > 0 else { return }
                readOffset += off_t(n)
                output(String(decoding: chunk[0..<n], as: UTF8.self))
                tail.append(contentsOf: chunk[0..<n])
                if tail.count > 4096 { tail.removeFirst(tail.count - 4096) }
            }
        }

        // Woken by the exit or every 50 ms, to pass on output as it comes.
        var status: Int32 = 0
        var timedOut = false
        while true {
            if let s = waitForExit(pid, until: min(deadline, .now + .milliseconds(50))) {
                status = s
                break
            }
            drain()
            if ContinuousClock.now >= deadline {
                timedOut = true
                kill(-pid, SIGKILL)
                status = waitForExit(pid, until: .now + .seconds(365 * 86400)) ?? 0
                break
            }
        }
        drain()
        let ending: Ending
        if timedOut { ending = .timedOut } else if (status & 0x7f) == 0 { ending = .exited((status >> 8) & 0xff) } else { ending = .killedBySignal(status & 0x7f) }
        return Result(ending: ending, seconds: start.duration(to: .now).inSeconds, outputTail: String(decoding: tail, as: UTF8.self))
    }

    /// Waits for the child `pid` to exit, at most until `deadline`: woken by the exit itself
    /// (a pidfd), not by polling. Returns its waitpid status, or nil at the deadline (the child
    /// still runs).
    public static func waitForExit(_ pid: Int32, until deadline: ContinuousClock.Instant) -> Int32? {
        let exitFD = clinux_pidfd_open(pid)
        defer { if exitFD >= 0 { close(exitFD) } }
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid || (r < 0 && errno != EINTR) { return status }
            let left = ContinuousClock.now.duration(to: deadline)
            if left <= .zero { return nil }
            let ms = Int32(min(60_000, max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)))
            if exitFD >= 0 {
                var p = pollfd(fd: exitFD, events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, ms)
            } else {
                usleep(useconds_t(min(ms, 50)) * 1000)  // no pidfd (a kernel before 5.3)
            }
        }
    }

    /// Starts `argv` (a path, or a name looked up in PATH) in a new process group with stop
    /// signals unblocked and at their defaults; stdin is /dev/null; stdout and stderr go to
    /// `outputFD`, or stay ours when it is nil.
    public static func spawn(_ argv: [String], environment: [String: String] = ProcessInfo.processInfo.environment, directory: String? = nil,
                             outputFD: Int32?) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        if let outputFD {
            posix_spawn_file_actions_adddup2(&actions, outputFD, 1)
            posix_spawn_file_actions_adddup2(&actions, outputFD, 2)
        }
        if let directory { clinux_spawn_addchdir(&actions, directory) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { sigaddset(&defaults, s) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let cArgs = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            cArgs.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, &attributes, cArgs, cEnv)
        guard rc == 0 else { throw LifeboatError.system(Errno(rawValue: rc), "cannot run \(argv[0])", path: argv[0]) }
        return pid
    }
}
