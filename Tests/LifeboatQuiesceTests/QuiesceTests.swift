import Foundation
import LifeboatCore
import LifeboatTestSupport
import Synchronization
import Testing

@testable import LifeboatQuiesce

#if canImport(Glibc)
import Glibc
#endif

/// An embedded freezer: records every freeze and thaw with its time, freezes nothing real.
final class RecordingFreezer: Freezer {
    enum Event: Equatable { case freeze(String), thaw(String), guardArmed, guardDisarmed }
    let events = Mutex<[(Event, ContinuousClock.Instant)]>([])
    let failFreeze: Set<String>

    init(failFreeze: Set<String> = []) { self.failFreeze = failFreeze }

    func freeze(_ target: FreezeTarget, deadline: ContinuousClock.Instant) -> String? {
        events.withLock { $0.append((.freeze(target.description), .now)) }
        return failFreeze.contains(target.description) ? "failed (exit 1): fsfreeze: \(target): Operation not supported" : nil
    }
    func thaw(_ target: FreezeTarget) -> String? {
        events.withLock { $0.append((.thaw(target.description), .now)) }
        return nil
    }
    func armThawGuard(_ targets: [FreezeTarget], at deadline: ContinuousClock.Instant) -> @Sendable () -> Void {
        events.withLock { $0.append((.guardArmed, .now)) }
        return { [self] in events.withLock { $0.append((.guardDisarmed, .now)) } }
    }
    var kinds: [Event] { events.withLock { $0.map(\.0) } }
    func time(of event: Event) -> ContinuousClock.Instant? { events.withLock { $0.first { $0.0 == event }?.1 } }
}

/// What `mark` was called with.
struct Marked { var appConsistent: Bool; var timeLeft: Duration }

/// What the hooks printed, as the CLI would show it.
final class Output: @unchecked Sendable {
    var text = ""
}

private func quiesce(_ plan: QuiescePlan, _ freezer: RecordingFreezer = RecordingFreezer(), output: Output = Output()) throws -> (QuiesceOutcome, Marked) {
    try Quiesce.run(plan, freezer: freezer, hookOutput: { stage, text in output.text += "\(stage):\(text)" }) { ok, left in
        Marked(appConsistent: ok, timeLeft: left)
    }
}

/// Alive and not a zombie (a killed orphan stays one until init reaps it).
private func isRunning(_ pid: Int32) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

private func elapsed(_ body: () throws -> Void) rethrows -> Duration {
    let start = ContinuousClock.now
    try body()
    return start.duration(to: .now)
}

@Suite(.timeLimit(.minutes(1)))
struct QuiesceTests {
    @Test func aHungWhileFrozenHookIsKilledAndTheFreezeThawedWithinTheTimeout() throws {
        let freezer = RecordingFreezer()
        let dir = try testDirectory("quiesce")
        // The hook and a child it starts both hang; both must die with the process group.
        let hook = "sleep 60 & echo $! > \(dir)/child; sleep 60"
        var result: (QuiesceOutcome, Marked)?
        let took = try elapsed { result = try quiesce(QuiescePlan(whileFrozen: [hook], filesystems: ["/fs"], timeout: .seconds(1)), freezer) }
        let (outcome, marked) = try #require(result)
        #expect(took < .seconds(10), "the hook hangs for 60 s; the window is 1 s")
        #expect(!marked.appConsistent)
        #expect(outcome.reason?.contains("timed out") == true)
        #expect(freezer.kinds == [.guardArmed, .freeze("/fs"), .thaw("/fs"), .guardDisarmed])
        let frozenFor = try #require(freezer.time(of: .freeze("/fs"))).duration(to: try #require(freezer.time(of: .thaw("/fs"))))
        #expect(frozenFor < .seconds(3), "thawed at the 1 s window's end, not after the hook's 60 s")
        let child = try #require(Int32(String(contentsOfFile: "\(dir)/child", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        // SIGKILL is delivered asynchronously: on a loaded machine the child may take a moment to go.
        for _ in 0..<100 where isRunning(child) { usleep(20_000) }
        #expect(!isRunning(child), "the hook's background child must be killed with its process group")
    }

    @Test func aHookThatWritesMoreThanAPipeHoldsFinishesAndItsOutputIsShownWhole() throws {
        let output = Output()
        var result: (QuiesceOutcome, Marked)?
        let took = try elapsed {
            result = try quiesce(QuiescePlan(pre: ["head -c 200000 /dev/zero | tr '\\0' x >&2; echo done"], filesystems: ["/fs"], timeout: .seconds(5)),
                                 output: output)
        }
        let (outcome, marked) = try #require(result)
        #expect(took < .seconds(10), "a full pipe used to hang this forever")
        #expect(outcome.reason == nil)
        #expect(marked.appConsistent)
        let text = output.text
        #expect(text.filter { $0 == "x" }.count == 200_000)
        #expect(text.hasSuffix("done\n"))
    }

    @Test func aHookThatStartsADaemonReturnsAtOnceAndTheDaemonLives() throws {
        let dir = try testDirectory("quiesce")
        var result: (QuiesceOutcome, Marked)?
        // The daemon keeps the hook's stdout open: waiting for end-of-output would block 20 s.
        let took = try elapsed { result = try quiesce(QuiescePlan(pre: ["sleep 20 & echo $! > \(dir)/daemon"], filesystems: ["/fs"], timeout: .seconds(3))) }
        let (outcome, _) = try #require(result)
        #expect(took < .seconds(10), "the daemon lives 20 s; the hook returns at once")
        #expect(outcome.reason == nil)
        let daemon = try #require(Int32(String(contentsOfFile: "\(dir)/daemon", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(isRunning(daemon), "a daemon a successful hook started is not ours to kill")
        kill(daemon, SIGKILL)
    }

    @Test func stdoutAndStderrOfEveryStageAreShown() throws {
        let output = Output()
        let (outcome, _) = try quiesce(
            QuiescePlan(pre: ["echo PRE-OUT; echo PRE-ERR >&2"], whileFrozen: ["echo WF-OUT; echo WF-ERR >&2"], post: ["echo POST-OUT; echo POST-ERR >&2"],
                        filesystems: ["/fs"], timeout: .seconds(5)), output: output)
        #expect(outcome.reason == nil)
        let text = output.text
        for line in ["pre:PRE-OUT", "PRE-ERR", "while-frozen:WF-OUT", "WF-ERR", "post:POST-OUT", "POST-ERR"] {
            #expect(text.contains(line), "missing \(line) in \(text)")
        }
    }

    @Test func nothingToFreezeAndNoHooksIsCrashConsistentAndSaysSo() throws {
        let freezer = RecordingFreezer()
        let (outcome, marked) = try quiesce(QuiescePlan(timeout: .seconds(5)), freezer)
        #expect(!marked.appConsistent)
        #expect(outcome.reason?.hasPrefix("nothing was quiesced") == true)
        #expect(freezer.kinds.isEmpty)
    }

    @Test func hooksAloneQuiesceADiskNoFilesystemOfWhichIsMountedHere() throws {
        let (outcome, marked) = try quiesce(QuiescePlan(pre: ["true"], timeout: .seconds(5)))
        #expect(marked.appConsistent)
        #expect(outcome.reason == nil)
    }

    @Test func aFailingPreHookSkipsTheFreezeAndNamesTheFailure() throws {
        let freezer = RecordingFreezer()
        let (outcome, marked) = try quiesce(QuiescePlan(pre: ["echo 'could not connect to server' >&2; exit 2"], filesystems: ["/fs"], timeout: .seconds(5)), freezer)
        #expect(!marked.appConsistent)
        #expect(outcome.reason == "pre-hook 'echo 'could not connect to server' >&2; exit 2' failed (exit 2): could not connect to server")
        #expect(freezer.kinds.isEmpty)
    }

    @Test func aFailedFreezeThawsWhatWasFrozenAndMarksCrashConsistent() throws {
        let freezer = RecordingFreezer(failFreeze: ["/b"])
        let (outcome, marked) = try quiesce(QuiescePlan(filesystems: ["/a", "/b", "/c"], timeout: .seconds(5)), freezer)
        #expect(!marked.appConsistent)
        #expect(outcome.reason?.hasPrefix("fsfreeze /b failed (exit 1)") == true)
        #expect(freezer.kinds == [.guardArmed, .freeze("/a"), .freeze("/b"), .thaw("/a"), .guardDisarmed])
        #expect(outcome.frozen == ["/a"])
    }

    @Test func aFailingPostHookIsAWarningAndThePointStandsAppConsistent() throws {
        let (outcome, marked) = try quiesce(QuiescePlan(post: ["exit 4"], filesystems: ["/fs"], timeout: .seconds(5)))
        #expect(marked.appConsistent)
        #expect(outcome.warnings == ["post-hook 'exit 4' failed (exit 4)"])
    }

    @Test func theMarkerGetsOnlyTheTimeLeftInTheFreezeWindow() throws {
        let (_, marked) = try quiesce(QuiescePlan(whileFrozen: ["sleep 1"], filesystems: ["/fs"], timeout: .seconds(3)))
        #expect(marked.appConsistent)
        #expect(marked.timeLeft < .seconds(2.1), "the hook's second is taken from the 3 s window")
        #expect(marked.timeLeft > .zero)
    }

    @Test func theThawGuardThawsAfterItsDeadlineUnlessDisarmed() throws {
        // The real guard process, running a stand-in fsfreeze that records its arguments.
        let dir = try testDirectory("guard")
        try "#!/bin/sh\necho \"$@\" >> \(dir)/calls\n".write(toFile: "\(dir)/fsfreeze", atomically: true, encoding: .utf8)
        chmod("\(dir)/fsfreeze", 0o755)
        try "#!/bin/sh\necho lifeboat \"$@\" >> \(dir)/calls\n".write(toFile: "\(dir)/lifeboat", atomically: true, encoding: .utf8)
        chmod("\(dir)/lifeboat", 0o755)
        let freezer = SystemFreezer(program: "\(dir)/fsfreeze", lifeboat: "\(dir)/lifeboat")
        let disarm = freezer.armThawGuard([.guest(socket: "/run/vm 1.sock"), .filesystem("/x y")], at: ContinuousClock.now + .seconds(1))
        let disarmed = freezer.armThawGuard([.filesystem("/never"), .guest(socket: "/never.sock")], at: ContinuousClock.now + .seconds(1))
        disarmed()
        sleep(3)
        disarm()
        #expect((try? String(contentsOfFile: "\(dir)/calls", encoding: .utf8)) == "lifeboat guest-agent thaw --socket /run/vm 1.sock\n--unfreeze /x y\n")
    }
}

@Suite(.timeLimit(.minutes(1)))
struct ChildProcessTests {
    @Test func exitStatusSignalAndMissingProgramAreToldApart() {
        #expect(ChildProcess.run(["/bin/sh", "-c", "exit 7"], deadline: .now + .seconds(5)).ending == .exited(7))
        #expect(ChildProcess.run(["/bin/sh", "-c", "kill -9 $$"], deadline: .now + .seconds(5)).ending == .killedBySignal(9))
        if case .couldNotStart = ChildProcess.run(["/nonexistent/program"], deadline: .now + .seconds(5)).ending {} else {
            Issue.record("a missing program must be 'could not start'")
        }
    }
}

/// The guest agent client against a stand-in agent on a unix socket, speaking QGA as the guest
/// program does (Images/recipes/guest/lifeboat-guest.c): it leaves junk before the sync's
/// delimiter, as an earlier client's unread answer would be.
@Suite(.timeLimit(.minutes(1)))
struct GuestAgentTests {
    final class StandIn: @unchecked Sendable {
        let path: String
        let fd: Int32
        let commands = Mutex<[String]>([])
        let silent: Bool

        init(_ path: String, silent: Bool = false) throws {
            self.path = path
            self.silent = silent
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
            let ok = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0 }
            }
            guard ok, listen(fd, 4) == 0 else { throw TestFailure("cannot listen on \(path)") }
            Thread { [self] in serve() }.start()
        }

        func serve() {
            while true {
                let c = accept(fd, nil, nil)
                guard c >= 0 else { return }
                var text = ""
                var byte: UInt8 = 0
                while read(c, &byte, 1) == 1 {
                    guard byte == UInt8(ascii: "\n") else { text.unicodeScalars.append(UnicodeScalar(byte)); continue }
                    commands.withLock { $0.append(text) }
                    if silent { continue }
                    if text.contains("guest-sync-delimited"), let id = text.split(separator: ":").last?.filter(\.isNumber) {
                        let answer = Array("{\"return\": 999}\n".utf8) + [0xFF] + Array("{\"return\": \(id)}\n".utf8)
                        _ = answer.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
                    } else if text.contains("guest-fsfreeze-freeze") {
                        _ = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"FIFREEZE /: Device or resource busy\"}}\n".withCString { write(c, $0, strlen($0)) }
                    } else {
                        _ = "{\"return\": \"thawed\"}\n".withCString { write(c, $0, strlen($0)) }
                    }
                    text = ""
                }
                close(c)
            }
        }
    }

    @Test func theClientSyncsPastJunkAndReportsTheGuestsError() throws {
        let dir = try testDirectory("qga")
        let agent = try StandIn(dir + "/qga.sock")
        let client = GuestAgent(socket: agent.path)
        #expect(try client.status(deadline: .now + .seconds(5)) == "thawed")
        let failure = client.freeze(deadline: .now + .seconds(5))
        #expect(failure?.contains("guest-fsfreeze-freeze failed in the guest: FIFREEZE /: Device or resource busy") == true, "\(failure ?? "nil")")
        #expect(agent.commands.withLock { $0 }.filter { $0.contains("guest-sync-delimited") }.count == 2)
    }

    @Test func aSilentOrMissingAgentIsAFailureAtTheDeadlineNotAHang() throws {
        let dir = try testDirectory("qga-silent")
        let agent = try StandIn(dir + "/qga.sock", silent: true)
        let start = ContinuousClock.now
        let failure = GuestAgent(socket: agent.path).freeze(deadline: .now + .seconds(1))
        #expect(failure?.contains("did not answer in time") == true, "\(failure ?? "nil")")
        #expect(start.duration(to: .now) < .seconds(3))
        let missing = GuestAgent(socket: dir + "/none.sock").freeze(deadline: .now + .seconds(1))
        #expect(missing?.contains("cannot reach the guest agent") == true, "\(missing ?? "nil")")

        // In a quiesce: the point is crash-consistent and says why.
        let (outcome, marked) = try Quiesce.run(QuiescePlan(guestAgents: [dir + "/none.sock"], timeout: .seconds(2)), freezer: SystemFreezer(lifeboat: "/bin/true")) { ok, left in
            Marked(appConsistent: ok, timeLeft: left)
        }
        #expect(!marked.appConsistent)
        #expect(outcome.reason?.hasPrefix("the guest's freeze failed: ") == true, "\(outcome.reason ?? "nil")")
    }
}
