import Foundation
import LifeboatCore

#if canImport(Glibc)
import Glibc
#endif

/// What `checkpoint --app-consistent` does before and around its marker.
public struct QuiescePlan: Sendable {
    /// Shell commands run before the freeze, in order; the first failure stops the quiesce.
    public var pre: [String] = []
    /// Shell commands run while the filesystems are frozen, before the marker.
    public var whileFrozen: [String] = []
    /// Shell commands run after the thaw; a failure is a warning (the point is already taken).
    public var post: [String] = []
    /// Mountpoints of the filesystems to freeze (those on the protected disks).
    public var filesystems: [String] = []
    /// Guest agent sockets of the virtual machines running on the protected disks: their
    /// filesystems are frozen from inside (`guest-fsfreeze-freeze`), first, and thawed last.
    public var guestAgents: [String] = []
    /// How long each pre and post hook may take, and how long the filesystems may stay frozen
    /// in all: the freeze, every while-frozen hook and the marker share this window.
    public var timeout: Duration = .seconds(30)

    public init(pre: [String] = [], whileFrozen: [String] = [], post: [String] = [], filesystems: [String] = [], guestAgents: [String] = [],
                timeout: Duration = .seconds(30)) {
        self.pre = pre
        self.whileFrozen = whileFrozen
        self.post = post
        self.filesystems = filesystems
        self.guestAgents = guestAgents
        self.timeout = timeout
    }

    /// What is frozen, in order: the guests, then this host's filesystems.
    var targets: [FreezeTarget] { guestAgents.map { .guest(socket: $0) } + filesystems.map { .filesystem($0) } }
}

/// Something a quiesce freezes: a filesystem mounted on this host, or the filesystems of a
/// virtual machine, through its guest agent.
public enum FreezeTarget: Sendable, Hashable, CustomStringConvertible {
    case filesystem(String)
    case guest(socket: String)

    /// The mountpoint, or `guest agent SOCKET`: how reports name it.
    public var description: String {
        switch self {
        case .filesystem(let mountpoint): mountpoint
        case .guest(let socket): "guest agent \(socket)"
        }
    }
}

/// What a quiesce achieved: the point is app-consistent only when every step succeeded inside
/// the freeze window; otherwise `reason` says what failed and the point is crash-consistent.
public struct QuiesceOutcome: Sendable {
    public var appConsistent: Bool { reason == nil }
    public var reason: String?
    /// What was frozen (and thawed): mountpoints, and `guest agent SOCKET` for guests.
    public var frozen: [String] = []
    /// From the first freeze to the last thaw.
    public var frozenSeconds: Double?
    /// Post-hook and thaw failures: the point stands, but the user must know.
    public var warnings: [String] = []

    public init() {}
}

/// Freezes and thaws filesystems and guests. `SystemFreezer` is the real one (fsfreeze(8), the
/// guest agent); tests drive the quiesce through an embedded one that records what happened and when.
public protocol Freezer: Sendable {
    /// Freezes `target`, giving up at `deadline`; nil on success, else why not.
    func freeze(_ target: FreezeTarget, deadline: ContinuousClock.Instant) -> String?
    /// Thaws it; nil on success, else why not.
    func thaw(_ target: FreezeTarget) -> String?
    /// Arms a guard, outside this process, that thaws `targets` at `deadline` even if this
    /// process is killed while they are frozen. Returns what disarms it.
    func armThawGuard(_ targets: [FreezeTarget], at deadline: ContinuousClock.Instant) -> @Sendable () -> Void
}

public enum Quiesce {
    /// Runs `plan` around `mark`: pre hooks, freeze, while-frozen hooks, `mark`, thaw, post
    /// hooks. `mark` is called exactly once, with whether the quiesce succeeded (the kind of
    /// point to write) and the time left in the freeze window. Whatever fails or hangs, every
    /// hook is killed with its whole process group at its deadline and the filesystems are
    /// thawed within the window; SIGINT and SIGTERM wait until the thaw. `hookOutput` gets what
    /// the hooks print (stage, text) while they run.
    public static func run<Mark>(_ plan: QuiescePlan, freezer: any Freezer, hookOutput: (String, String) -> Void = { _, _ in },
                                 mark: (_ appConsistent: Bool, _ timeLeft: Duration) throws -> Mark) throws -> (QuiesceOutcome, Mark) {
        var outcome = QuiesceOutcome()
        for hook in plan.pre where outcome.reason == nil {
            let r = ChildProcess.run(["/bin/sh", "-c", hook], deadline: .now + plan.timeout) { hookOutput("pre", $0) }
            if let failure = r.failure { outcome.reason = "pre-hook '\(hook)' \(failure)" }
        }
        if outcome.reason == nil && plan.targets.isEmpty && plan.pre.isEmpty && plan.whileFrozen.isEmpty {
            outcome.reason = "nothing was quiesced: no filesystem on a protected disk is mounted on this host and no guest agent or hooks "
                + "were given (a virtual machine's disk needs its guest agent: --guest-agent SOCKET)"
        }
        let result = try frozenSection(plan, freezer: freezer, outcome: &outcome, hookOutput: hookOutput, mark: mark)
        for hook in plan.post {
            let r = ChildProcess.run(["/bin/sh", "-c", hook], deadline: .now + plan.timeout) { hookOutput("post", $0) }
            if let failure = r.failure { outcome.warnings.append("post-hook '\(hook)' \(failure)") }
        }
        return (outcome, result)
    }

    /// Freeze, while-frozen hooks, mark, thaw: everything inside one window of `plan.timeout`.
    private static func frozenSection<Mark>(_ plan: QuiescePlan, freezer: any Freezer, outcome: inout QuiesceOutcome,
                                            hookOutput: (String, String) -> Void,
                                            mark: (Bool, Duration) throws -> Mark) throws -> Mark {
        let windowEnd = ContinuousClock.now + plan.timeout
        guard outcome.reason == nil else { return try mark(false, plan.timeout) }
        holdStopSignals(true)
        defer { holdStopSignals(false) }
        let targets = plan.targets
        let disarm = targets.isEmpty ? {} : freezer.armThawGuard(targets, at: windowEnd + .seconds(1))
        var frozen: [FreezeTarget] = []
        var frozenAt: ContinuousClock.Instant?
        defer {
            for target in frozen.reversed() {
                if let failure = freezer.thaw(target) { outcome.warnings.append("thaw of \(target) \(failure)") }
            }
            disarm()
            outcome.frozen = frozen.map(\.description)
            if let frozenAt { outcome.frozenSeconds = frozenAt.duration(to: .now).inSeconds }
        }
        for target in targets where outcome.reason == nil {
            if frozenAt == nil { frozenAt = .now }
            if let failure = freezer.freeze(target, deadline: windowEnd) {
                switch target {
                case .filesystem(let mountpoint): outcome.reason = "fsfreeze \(mountpoint) \(failure)"
                case .guest: outcome.reason = "the guest's freeze failed: \(failure)"
                }
            } else {
                frozen.append(target)
            }
        }
        for hook in plan.whileFrozen where outcome.reason == nil {
            let r = ChildProcess.run(["/bin/sh", "-c", hook], deadline: windowEnd) { hookOutput("while-frozen", $0) }
            if let failure = r.failure { outcome.reason = "while-frozen hook '\(hook)' \(failure)" }
        }
        let left = ContinuousClock.now.duration(to: windowEnd)
        if outcome.reason == nil && left <= .zero {
            outcome.reason = "the freeze window of \(describeDuration(plan.timeout.inSeconds)) ran out before the marker"
        }
        return try mark(outcome.reason == nil, outcome.reason == nil ? left : plan.timeout)
    }

    /// From the first freeze to the thaw, SIGINT and SIGTERM are held back: a frozen
    /// filesystem must never be left behind by an interrupted checkpoint.
    private static func holdStopSignals(_ hold: Bool) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
        pthread_sigmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &set, nil)
    }
}


/// The real freezer: fsfreeze(8) (FIFREEZE/FITHAW) for this host's filesystems, the guest
/// agent for guests, and a detached `sh` that thaws both at the window's end if this process
/// dies before it could.
public struct SystemFreezer: Freezer {
    /// The fsfreeze(8) to run (tests give a stand-in that records its calls).
    let program: String
    /// The lifeboat binary, which the thaw guard runs as `lifeboat guest-agent thaw`.
    let lifeboat: String

    public init(program: String = "fsfreeze", lifeboat: String = SystemFreezer.runningExecutable()) {
        self.program = program
        self.lifeboat = lifeboat
    }

    /// This process's executable (/proc/self/exe).
    public static func runningExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    public func freeze(_ target: FreezeTarget, deadline: ContinuousClock.Instant) -> String? {
        switch target {
        case .filesystem(let mountpoint): ChildProcess.run([program, "--freeze", mountpoint], deadline: deadline).failure
        case .guest(let socket): GuestAgent(socket: socket).freeze(deadline: deadline)
        }
    }

    public func thaw(_ target: FreezeTarget) -> String? {
        switch target {
        case .filesystem(let mountpoint): ChildProcess.run([program, "--unfreeze", mountpoint], deadline: .now + .seconds(30)).failure
        case .guest(let socket): GuestAgent(socket: socket).thaw(deadline: .now + .seconds(30))
        }
    }

    public func armThawGuard(_ targets: [FreezeTarget], at deadline: ContinuousClock.Instant) -> @Sendable () -> Void {
        let wait = max(1, Int(ContinuousClock.now.duration(to: deadline).inSeconds.rounded(.up)))
        // Its own process group, not killed with ours: it must outlive a `kill -9` of lifeboat.
        // Arguments: fs:MOUNTPOINT or guest:SOCKET.
        let script = """
            sleep "$1"; shift; program="$1"; lifeboat="$2"; shift 2
            for t in "$@"; do case "$t" in
              fs:*) "$program" --unfreeze "${t#fs:}" 2>/dev/null ;;
              guest:*) "$lifeboat" guest-agent thaw --socket "${t#guest:}" 2>/dev/null ;;
            esac; done
            """
        let arguments = targets.map { t -> String in
            switch t {
            case .filesystem(let mountpoint): "fs:" + mountpoint
            case .guest(let socket): "guest:" + socket
            }
        }
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        guard let pid = try? ChildProcess.spawn(["/bin/sh", "-c", script, "lifeboat-thaw-guard", String(wait), program, lifeboat] + arguments,
                                                outputFD: devNull >= 0 ? devNull : nil) else { return {} }
        return {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}
