import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real-mount tests need root and /dev/fuse (CI has both). Elsewhere they are skipped, and
/// the skip says why.
public let canMount = geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0
public let mountSkipReason: Comment = "needs root and /dev/fuse (real FUSE mounts and loop devices); CI runs it"

/// The `lifeboat` binary built next to this test bundle.
public let lifeboatBinary = siblingBinary("lifeboat")

/// A binary of this package built next to this test bundle.
public func siblingBinary(_ name: String) -> String {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent(name).path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return ".build/debug/" + name
}

public struct CommandResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public init(status: Int32, stdout: String, stderr: String) {
        self.status = status
        self.stdout = stdout
        self.stderr = stderr
    }
}

/// Runs a command to completion, capturing its output.
@discardableResult
public func run(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: arguments[0].hasPrefix("/") ? arguments[0] : "/usr/bin/env")
    p.arguments = arguments[0].hasPrefix("/") ? Array(arguments.dropFirst()) : arguments
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return CommandResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self), stderr: String(decoding: e, as: UTF8.self))
}

public func lifeboat(_ arguments: String...) throws -> CommandResult { try run([lifeboatBinary] + arguments) }
public func lifeboat(_ arguments: [String]) throws -> CommandResult { try run([lifeboatBinary] + arguments) }

/// `sqlite3 DATABASE STATEMENT`'s output, trimmed. It waits up to 10 s for a lock (the CLI
/// waits for none: a read that meets a running daemon's write transaction fails with
/// "database is locked" and prints nothing), and a failure throws with
/// sqlite3's own words rather than returning an empty answer.
public func sqlite(_ database: String, _ statement: String) throws -> String {
    let r = try run(["sqlite3", "-cmd", ".timeout 10000", database, statement])
    guard r.status == 0 else { throw TestFailure("sqlite3 \(database) \(statement): exit \(r.status): \(r.stderr)") }
    return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

public func makeTemporaryDirectory(_ tag: String = "t") throws -> String {
    let path = "/tmp/lifeboat-\(tag)-" + UUID().uuidString.prefix(8)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

public func isMounted(_ path: String) -> Bool {
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
}

/// A test site with a mountpoint, removed (and anything left mounted undone) by `cleanup`.
public final class TestSite {
    public let root: String
    public var site: String { root + "/site" }
    public var mountpoint: String { root + "/mnt" }
    public var fsMount: String { root + "/fs" }
    public var protect: ProtectProcess?
    public var loopDevices: [String] = []

    public var vault: String { root + "/vault" }

    public init(disks: [(String, String)] = [("d0", "64M")], withVault: Bool = false) throws {
        root = try makeTemporaryDirectory("site")
        for dir in [mountpoint, fsMount] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try check(withVault ? lifeboat("init", "--site", site, "--vault", vault) : lifeboat("init", "--site", site))
        for (name, size) in disks { try check(lifeboat("disk", "create", name, "--size", size, "--site", site)) }
    }

    public func image(_ name: String) -> String { mountpoint + "/" + name + ".img" }

    /// `lifeboat checkpoint … --json` whose point must reach the vault before the test goes on
    /// (a drill of `latest` next, say): it may wait 3 minutes (a loaded CI machine ships a new
    /// disk's initial replication slowly), and a point that does not get there fails the test
    /// with why and protect's log. Returns the point's id in the vault.
    @discardableResult
    public func checkpointInVault(_ extra: String...) throws -> Int {
        let r = try lifeboat(["checkpoint", "--site", site, "--json", "--timeout", "180s"] + extra)
        let json = (try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8))) as? [String: Any] ?? [:]
        guard r.status == 0, let id = json["pointID"] as? Int else {
            throw TestFailure("checkpoint \(extra) did not reach the vault (exit \(r.status)): \(r.stdout)\(r.stderr)\nprotect's log:\n\(protect?.output ?? "")")
        }
        return id
    }

    /// `launcher` runs it through another program (`nsenter --net=…` on a test host).
    public func startProtect(_ extra: [String] = [], launcher: [String] = []) throws -> ProtectProcess {
        let p = try ProtectProcess(site: site, mountpoint: mountpoint, extra: extra, launcher: launcher)
        protect = p
        return p
    }

    public func attachLoop(_ file: String) throws -> String {
        let r = try run(["losetup", "-f", "--show", file])
        guard r.status == 0 else { throw TestFailure("losetup failed: \(r.stderr)") }
        let dev = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        loopDevices.append(dev)
        return dev
    }

    /// Detaches `dev` and waits until the kernel has really let go of its backing file:
    /// `losetup -d` succeeds at once but only marks the device for clearing while another
    /// opener (udev probing after an unmount) still holds it.
    public func detachLoop(_ dev: String) {
        for _ in 0..<50 {
            if (try? run(["losetup", "-d", dev]))?.status == 0 { break }
            usleep(100_000)
        }
        let backingFile = "/sys/block/\((dev as NSString).lastPathComponent)/loop/backing_file"
        for _ in 0..<100 where FileManager.default.fileExists(atPath: backingFile) { usleep(100_000) }
        loopDevices.removeAll { $0 == dev }
    }

    /// Undoes everything: filesystem mount, loop devices, protect, the FUSE mount, the files.
    public func cleanup() {
        if isMounted(fsMount) { _ = try? run(["umount", "-l", fsMount]) }
        for dev in loopDevices { detachLoop(dev) }
        protect?.stop()
        if isMounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// A running `lifeboat protect` child process.
public final class ProtectProcess {
    public let process = Process()
    public let mountpoint: String
    public let log: String

    public init(site: String, mountpoint: String, extra: [String], launcher: [String] = []) throws {
        self.mountpoint = mountpoint
        log = site + ".protect.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let argv = launcher + [lifeboatBinary, "protect", mountpoint, "--site", site] + extra
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        let handle = FileHandle(forWritingAtPath: log)!
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !isMounted(mountpoint) {
            guard process.isRunning, Date() < deadline else {
                throw TestFailure("protect did not mount: \(output)")
            }
            usleep(20_000)
        }
    }

    public var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait: the normal stop. Returns the exit status.
    @discardableResult
    public func stop() -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(30)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// kill -9, then detach the dead FUSE mount as an administrator would.
    public func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

public struct TestFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}

public func check(_ r: CommandResult) throws {
    guard r.status == 0 else { throw TestFailure("command failed (\(r.status)): \(r.stderr)\(r.stdout)") }
}


/// A flag one thread sets and another polls.
public final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    public init() {}
    public var isRaised: Bool { lock.withLock { raised } }
    public func raise() { lock.withLock { raised = true } }
}

/// The tests that use the machine itself — FUSE mounts, loop devices, protect and drill
/// processes — run one at a time across every suite and test target: `.serialized` orders
/// tests within one suite only, and two suites racing for `losetup -f` or sharing the CPU with
/// timing-sensitive crash tests fail at random. Apply to a suite: `@Suite(.exclusiveMachineUse)`.
/// A test's `.timeLimit` counts the wait for this lock too (a 2-minute limit once ran out behind
/// the other suites' tests): such suites take 10 minutes, longer than the whole run's exclusive part.
public struct ExclusiveMachineUse: SuiteTrait, TestTrait, TestScoping {
    public var isRecursive: Bool { true }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        guard !test.isSuite else { return try await function() }
        await MachineLock.shared.acquire()
        do {
            try await function()
        } catch {
            await MachineLock.shared.release()
            throw error
        }
        await MachineLock.shared.release()
    }
}

extension Trait where Self == ExclusiveMachineUse {
    public static var exclusiveMachineUse: Self { ExclusiveMachineUse() }
}

/// A FIFO lock for async code.
actor MachineLock {
    static let shared = MachineLock()
    private var held = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !held {
            held = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { held = false } else { waiters.removeFirst().resume() }
    }
}

/// A write load on a protected disk: a thread writing seeded random 64 KiB blocks at random
/// places of the first 64 MiB of `image`, each followed by fdatasync, until `stop()`.
public final class RandomWriter: @unchecked Sendable {
    private let stopFlag = StopFlag()
    private let thread: Thread

    public init(image: String, seed: UInt64) {
        let stopFlag = self.stopFlag
        thread = Thread {
            let fd = open(image, O_WRONLY)
            defer { close(fd) }
            var g = SplitMix(state: seed)
            while !stopFlag.isRaised {
                let data = randomBytes(65536, seed: g.next())
                _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, Int(g.next() % 1000) * 65536) }
                fdatasync(fd)
            }
        }
        thread.start()
    }

    /// Stops the load and waits until its last write has returned.
    public func stop() {
        stopFlag.raise()
        while !thread.isFinished { usleep(10_000) }
    }
}
