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
    /// How long each pre and post hook may take, and how long the filesystems may stay frozen
    /// in all: the freeze, every while-frozen hook and the marker share this window.
    public var timeout: Duration = .seconds(30)

    public init(pre: [String] = [], whileFrozen: [String] = [], post: [String] = [], filesystems: [String] = [], timeout: Duration = .seconds(30)) {
        self.pre = pre
        self.whileFrozen = whileFrozen
        self.post = post
        self.filesystems = filesystems
        self.timeout = timeout
    }
}

/// What a quiesce achieved: the point is app-consistent only when every step succeeded inside
/// the freeze window; otherwise `reason` says what failed and the point is crash-consistent.
public struct QuiesceOutcome: Sendable {
    public var appConsistent: Bool { reason == nil }
    public var reason: String?
    /// The filesystems that were frozen (and thawed).
    public var frozen: [String] = []
    /// From the first freeze to the last thaw.
    public var frozenSeconds: Double?
    /// Post-hook and thaw failures: the point stands, but the user must know.
    public var warnings: [String] = []

    public init() {}
}

/// Freezes and thaws filesystems. `FSFreeze` is the real one (fsfreeze(8)); tests drive the
/// quiesce through an embedded one that records what happened and when.
public protocol Freezer: Sendable {
    /// Freezes the filesystem at `mountpoint`, giving up at `deadline`; nil on success, else why not.
    func freeze(_ mountpoint: String, deadline: ContinuousClock.Instant) -> String?
    /// Thaws it; nil on success, else why not.
    func thaw(_ mountpoint: String) -> String?
    /// Arms a guard, outside this process, that thaws `mountpoints` at `deadline` even if this
    /// process is killed while they are frozen. Returns what disarms it.
    func armThawGuard(_ mountpoints: [String], at deadline: ContinuousClock.Instant) -> @Sendable () -> Void
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
        if outcome.reason == nil && plan.filesystems.isEmpty && plan.pre.isEmpty && plan.whileFrozen.isEmpty {
            outcome.reason = "nothing was quiesced: no filesystem on a protected disk is mounted on this host and no hooks were given "
                + "(a virtual machine's disk needs a hook, e.g. the guest agent's guest-fsfreeze-freeze)"
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
        let disarm = plan.filesystems.isEmpty ? {} : freezer.armThawGuard(plan.filesystems, at: windowEnd + .seconds(1))
        var frozen: [String] = []
        var frozenAt: ContinuousClock.Instant?
        defer {
            for mountpoint in frozen.reversed() {
                if let failure = freezer.thaw(mountpoint) { outcome.warnings.append("thaw of \(mountpoint) \(failure)") }
            }
            disarm()
            outcome.frozen = frozen
            if let frozenAt { outcome.frozenSeconds = frozenAt.duration(to: .now).inSeconds }
        }
        for mountpoint in plan.filesystems where outcome.reason == nil {
            if frozenAt == nil { frozenAt = .now }
            if let failure = freezer.freeze(mountpoint, deadline: windowEnd) {
                outcome.reason = "fsfreeze \(mountpoint) \(failure)"
            } else {
                frozen.append(mountpoint)
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


/// The real freezer: fsfreeze(8) (FIFREEZE/FITHAW), and a detached `sh` that thaws at the
/// window's end if this process dies before it could.
public struct FSFreeze: Freezer {
    /// The fsfreeze(8) to run (tests give a stand-in that records its calls).
    let program: String

    public init(program: String = "fsfreeze") { self.program = program }

    public func freeze(_ mountpoint: String, deadline: ContinuousClock.Instant) -> String? {
        ChildProcess.run([program, "--freeze", mountpoint], deadline: deadline).failure
    }

    public func thaw(_ mountpoint: String) -> String? {
        ChildProcess.run([program, "--unfreeze", mountpoint], deadline: .now + .seconds(30)).failure
    }

    public func armThawGuard(_ mountpoints: [String], at deadline: ContinuousClock.Instant) -> @Sendable () -> Void {
        let wait = max(1, Int(ContinuousClock.now.duration(to: deadline).inSeconds.rounded(.up)))
        // Its own process group, not killed with ours: it must outlive a `kill -9` of lifeboat.
        let script = "sleep \"$1\"; shift; program=\"$1\"; shift; for m in \"$@\"; do \"$program\" --unfreeze \"$m\" 2>/dev/null; done"
        let devNull = open("/dev/null", O_WRONLY | O_CLOEXEC)
        defer { if devNull >= 0 { close(devNull) } }
        guard let pid = try? ChildProcess.spawn(["/bin/sh", "-c", script, "lifeboat-thaw-guard", String(wait), program] + mountpoints,
                                                outputFD: devNull >= 0 ? devNull : nil) else { return {} }
        return {
            kill(-pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }
}
