import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatProtect
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Mark a recovery point now; with --app-consistent, quiesce first.",
        discussion: """
            --app-consistent runs the --pre hooks, freezes (fsfreeze) every filesystem on a loop device backed by \
            a protected disk, marks the point, thaws, and runs the --post hooks. The freeze is always thawed; \
            SIGINT and SIGTERM wait until it is. If a hook or a freeze fails, the point is marked crash-consistent \
            and the reason is kept in its label.
            """)

    @OptionGroup var site: SiteOption
    @Flag(help: "Quiesce the filesystems on the protected disks first.") var appConsistent = false
    @Option(help: "A label for the point.") var label = ""
    @Option(help: "A command run before the freeze (repeatable).") var pre: [String] = []
    @Option(help: "A command run after the thaw (repeatable).") var post: [String] = []
    @Option(help: "A command run while the filesystems are frozen, before the marker (repeatable): to snapshot other storage at the same instant.")
    var whileFrozen: [String] = []
    @Option(help: "Seconds each hook and the freeze may take.") var timeout = 30
    @Flag(help: "Print JSON.") var json = false

    struct Result: Encodable {
        var lsn: UInt64
        var kind: String
        var label: String
        var reason: String?
        var frozen: [String]
        var pointID: Int64?
        var digests: [String: String]
    }

    func run() throws {
        try reportingErrors {
            let s = try site.open()
            var kind = appConsistent ? "app-consistent" : "crash-consistent"
            var reason: String?
            var frozen: [String] = []
            let response: ControlResponse
            do {
                if appConsistent {
                    for hook in pre where reason == nil {
                        if let failure = runCommand(["/bin/sh", "-c", hook], timeout: timeout) { reason = "pre-hook '\(hook)' \(failure)" }
                    }
                }
                // From the first freeze to the thaw, SIGINT and SIGTERM are held back: a frozen
                // filesystem must never be left behind by an interrupted checkpoint.
                holdStopSignals(true)
                defer {
                    for mount in frozen.reversed() { _ = runCommand(["fsfreeze", "-u", mount], timeout: timeout) }
                    holdStopSignals(false)
                }
                if appConsistent && reason == nil {
                    let mountpoint = try SiteStatus.read(s).mountpoint ?? ""
                    for fs in ProtectedFilesystems.find(mountpoint: mountpoint) {
                        if let failure = runCommand(["fsfreeze", "-f", fs.mountpoint], timeout: timeout) {
                            reason = "fsfreeze \(fs.mountpoint) \(failure)"
                            break
                        }
                        frozen.append(fs.mountpoint)
                    }
                }
                if appConsistent && reason == nil {
                    for hook in whileFrozen where reason == nil {
                        if let failure = runCommand(["/bin/sh", "-c", hook], timeout: timeout) { reason = "while-frozen hook '\(hook)' \(failure)" }
                    }
                }
                if reason != nil { kind = "crash-consistent" }
                let text = reason.map { label.isEmpty ? "not app-consistent: \($0)" : "\(label) (not app-consistent: \($0))" } ?? label
                response = try sendControlRequest(site: s, ControlRequest(op: "mark", kind: kind, label: text))
            }
            for hook in post { if let failure = runCommand(["/bin/sh", "-c", hook], timeout: timeout) { warn("post-hook '\(hook)' \(failure)") } }
            guard response.ok, let lsn = response.lsn else { throw LifeboatError(.io, response.error ?? "protect refused the marker") }

            var pointID: Int64?
            if let vaultPath = s.config.vault {
                // The marker's segment is sealed at once; wait for the vault to hold it.
                let deadline = Date().addingTimeInterval(Double(timeout))
                while pointID == nil && Date() < deadline {
                    pointID = (try? Vault(root: FilePath(vaultPath)).points())?.last { $0.lsn == Int64(lsn) }?.id
                    if pointID == nil { usleep(100_000) }
                }
            }
            let result = Result(lsn: lsn, kind: kind, label: label, reason: reason, frozen: frozen, pointID: pointID, digests: response.digests ?? [:])
            if json { return try printJSON(result) }
            print("\(kind) point at LSN \(lsn)" + (pointID.map { ", point id \($0) in the vault" } ?? (s.config.vault == nil ? "" : "; not in the vault yet (shipping is behind)")))
            if !frozen.isEmpty { print("frozen and thawed: \(frozen.joined(separator: ", "))") }
            if let reason { print("not app-consistent: \(reason)") }
        }
    }
}

private func warn(_ text: String) { FileHandle.standardError.write(Data("lifeboat: warning: \(text)\n".utf8)) }

private func holdStopSignals(_ hold: Bool) {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &set, nil)
}

/// Runs a command with a time limit; nil on success, else what went wrong.
private func runCommand(_ arguments: [String], timeout: Int) -> String? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = arguments
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.standardError
    do { try p.run() } catch { return "could not start: \(error)" }
    let deadline = Date().addingTimeInterval(Double(timeout))
    while p.isRunning && Date() < deadline { usleep(10_000) }
    if p.isRunning {
        p.terminate()
        p.waitUntilExit()
        return "timed out after \(timeout) s"
    }
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    return p.terminationStatus == 0 ? nil : "failed (exit \(p.terminationStatus))" + (message.isEmpty ? "" : ": \(message)")
}
