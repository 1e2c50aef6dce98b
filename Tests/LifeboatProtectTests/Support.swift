import Foundation
import LifeboatCore
import SystemPackage
import Testing
@_exported import LifeboatTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Real-mount tests need root and /dev/fuse (CI has both). Elsewhere they are skipped, and
/// the skip says why.
let canMount = geteuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0
let mountSkipReason: Comment = "needs root and /dev/fuse (real FUSE mounts and loop devices); CI runs it"

/// The `lifeboat` binary built next to this test bundle.
let lifeboatBinary: String = {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    for candidate in [dir, dir.deletingLastPathComponent()] {
        let path = candidate.appendingPathComponent("lifeboat").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    return ".build/debug/lifeboat"
}()

struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a command to completion, capturing its output.
@discardableResult
func run(_ arguments: [String], environment: [String: String]? = nil) throws -> CommandResult {
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

func lifeboat(_ arguments: String...) throws -> CommandResult { try run([lifeboatBinary] + arguments) }

func makeTemporaryDirectory(_ tag: String = "t") throws -> String {
    let path = "/tmp/lifeboat-\(tag)-" + UUID().uuidString.prefix(8)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func isMounted(_ path: String) -> Bool {
    let mounts = (try? String(contentsOfFile: "/proc/mounts", encoding: .utf8)) ?? ""
    return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
}

/// A test site with a mountpoint, removed (and anything left mounted undone) by `cleanup`.
final class TestSite {
    let root: String
    var site: String { root + "/site" }
    var mountpoint: String { root + "/mnt" }
    var fsMount: String { root + "/fs" }
    var protect: ProtectProcess?
    var loopDevices: [String] = []

    var vault: String { root + "/vault" }

    init(disks: [(String, String)] = [("d0", "64M")], withVault: Bool = false) throws {
        root = try makeTemporaryDirectory("site")
        for dir in [mountpoint, fsMount] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        try check(withVault ? lifeboat("init", "--site", site, "--vault", vault) : lifeboat("init", "--site", site))
        for (name, size) in disks { try check(lifeboat("disk", "create", name, "--size", size, "--site", site)) }
    }

    func image(_ name: String) -> String { mountpoint + "/" + name + ".img" }

    func startProtect(_ extra: [String] = []) throws -> ProtectProcess {
        let p = try ProtectProcess(site: site, mountpoint: mountpoint, extra: extra)
        protect = p
        return p
    }

    func attachLoop(_ file: String) throws -> String {
        let r = try run(["losetup", "-f", "--show", file])
        guard r.status == 0 else { throw TestFailure("losetup failed: \(r.stderr)") }
        let dev = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        loopDevices.append(dev)
        return dev
    }

    /// Detaches `dev` and waits until the kernel has really let go of its backing file:
    /// `losetup -d` succeeds at once but only marks the device for clearing while another
    /// opener (udev probing after an unmount) still holds it.
    func detachLoop(_ dev: String) {
        for _ in 0..<50 {
            if (try? run(["losetup", "-d", dev]))?.status == 0 { break }
            usleep(100_000)
        }
        let backingFile = "/sys/block/\((dev as NSString).lastPathComponent)/loop/backing_file"
        for _ in 0..<100 where FileManager.default.fileExists(atPath: backingFile) { usleep(100_000) }
        loopDevices.removeAll { $0 == dev }
    }

    /// Undoes everything: filesystem mount, loop devices, protect, the FUSE mount, the files.
    func cleanup() {
        if isMounted(fsMount) { _ = try? run(["umount", "-l", fsMount]) }
        for dev in loopDevices { detachLoop(dev) }
        protect?.stop()
        if isMounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
        try? FileManager.default.removeItem(atPath: root)
    }
}

/// A running `lifeboat protect` child process.
final class ProtectProcess {
    let process = Process()
    let mountpoint: String
    let log: String

    init(site: String, mountpoint: String, extra: [String]) throws {
        self.mountpoint = mountpoint
        log = site + ".protect.log"
        FileManager.default.createFile(atPath: log, contents: nil)
        process.executableURL = URL(fileURLWithPath: lifeboatBinary)
        process.arguments = ["protect", mountpoint, "--site", site] + extra
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

    var output: String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }

    /// SIGTERM and wait: the normal stop. Returns the exit status.
    @discardableResult
    func stop() -> Int32 {
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
    func crash() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func check(_ r: CommandResult) throws {
    guard r.status == 0 else { throw TestFailure("command failed (\(r.status)): \(r.stderr)\(r.stdout)") }
}


/// A flag one thread sets and another polls.
final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    var isRaised: Bool { lock.withLock { raised } }
    func raise() { lock.withLock { raised = true } }
}
