import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatCapture
import LifeboatSite
import LifeboatQuiesce
import LifeboatVault
import SystemPackage

struct CheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Mark a recovery point now; with --app-consistent, quiesce first.",
        discussion: """
            --app-consistent runs the --pre hooks, freezes the guests of the --guest-agent sockets \
            (guest-fsfreeze-freeze) and every filesystem on a loop device backed by a protected disk \
            (fsfreeze), runs the --while-frozen hooks, marks the point, thaws, and runs the --post hooks. \
            Each hook runs in its own process group, killed whole at --timeout; the filesystems stay frozen at \
            most --timeout in all (a guard process thaws them even if lifeboat is killed). If a hook or a freeze \
            fails, or nothing could be quiesced (no filesystem mounted here and no hooks), the point is marked \
            crash-consistent, the reason is printed, and the exit status is 3.
            """)

    @OptionGroup var site: SiteOption
    @Flag(help: "Quiesce the filesystems on the protected disks first.") var appConsistent = false
    @Option(help: "A label for the point (at most 1024 bytes).") var label = ""
    @Option(help: "A command run before the freeze (repeatable).") var pre: [String] = []
    @Option(help: "A command run after the thaw (repeatable).") var post: [String] = []
    @Option(help: "A command run while the filesystems are frozen, before the marker (repeatable): to snapshot other storage at the same instant.")
    var whileFrozen: [String] = []
    @Option(help: ArgumentHelp("The qemu guest agent socket of a virtual machine running on a protected disk (repeatable): its filesystems are frozen from inside.",
                               valueName: "socket"))
    var guestAgent: [String] = []
    @Option(help: "How long each hook may take, and the filesystems may stay frozen in all (e.g. 30s, 2m).") var timeout = "30s"
    @Flag(help: "Print JSON.") var json = false

    struct Result: Encodable {
        var lsn: UInt64
        var kind: PointKind
        var label: String?
        var notAppConsistentBecause: String?
        var frozen: [String]
        var frozenSeconds: Double?
        var pointID: Int64?
        var notInVaultBecause: String?
        var digests: [String: String]
        var warnings: [String]
    }

    func validate() throws {
        _ = try parseDuration(timeout, what: "timeout")
        guard label.utf8.count <= Marker.maxLabelBytes else {
            throw ValidationError("the label is \(label.utf8.count) bytes; at most \(Marker.maxLabelBytes)")
        }
        if !appConsistent && !(pre.isEmpty && post.isEmpty && whileFrozen.isEmpty && guestAgent.isEmpty) {
            throw ValidationError("--pre, --while-frozen, --post and --guest-agent work only with --app-consistent")
        }
    }

    func run() throws {
        let s = try site.open()
        let window = Duration.milliseconds(Int64(try parseDuration(timeout, what: "timeout") * 1000))
        guard try s.isProtectRunning() else {
            throw LifeboatError(.notFound, "no running `lifeboat protect` for this site", path: s.root.string)
        }
        func mark(_ kind: PointKind, within: Duration) throws -> ControlResponse {
            let response = try sendControlRequest(site: s, .mark(kind, label: label), timeout: within)
            guard response.ok, response.lsn != nil else {
                throw LifeboatError(response.code.flatMap(LifeboatError.Code.init(rawValue:)) ?? .io, response.error ?? "protect refused the marker")
            }
            return response
        }
        var outcome = QuiesceOutcome()
        let response: ControlResponse
        if appConsistent {
            let plan = QuiescePlan(pre: pre, whileFrozen: whileFrozen, post: post,
                                   filesystems: ProtectedFilesystems.find(mountpoint: try SiteStatus.read(s).mountpoint ?? "").map(\.mountpoint),
                                   guestAgents: guestAgent.map(absolutePath), timeout: window)
            (outcome, response) = try Quiesce.run(plan, freezer: SystemFreezer(), hookOutput: { _, text in
                FileHandle.standardError.write(Data(text.utf8))
            }) { ok, left in try mark(ok ? .appConsistent : .crashConsistent, within: max(left, .seconds(1))) }
        } else {
            response = try mark(.crashConsistent, within: window)
        }
        let lsn = response.lsn ?? 0
        // protect's shipper says when the point is in the vault, and keeps the note with it.
        let note = outcome.reason.map { "not app-consistent: \($0)" }
        let found = try sendControlRequest(site: s, .point(at: LSN(lsn), note: note, within: window), timeout: window + .seconds(10))
        guard found.ok else { throw LifeboatError(.io, found.error ?? "protect did not answer where the point is") }
        let (pointID, notInVault) = (found.pointID, found.notInVault)
        let names = Dictionary(uniqueKeysWithValues: s.config.disks.map { (String($0.id), $0.name) })
        let kind: PointKind = appConsistent && outcome.appConsistent ? .appConsistent : .crashConsistent
        let result = Result(lsn: lsn, kind: kind, label: label.isEmpty ? nil : label, notAppConsistentBecause: outcome.reason,
                            frozen: outcome.frozen, frozenSeconds: outcome.frozenSeconds, pointID: pointID, notInVaultBecause: notInVault,
                            digests: Dictionary(uniqueKeysWithValues: (response.digests ?? [:]).map { (names[$0.key] ?? $0.key, $0.value) }),
                            warnings: outcome.warnings)
        for w in outcome.warnings { printWarning(w) }
        if json {
            try printJSON(result)
        } else {
            print("\(kind) point at LSN \(lsn)" + (pointID.map { ", point id \($0) in the vault" } ?? notInVault.map { "; not in the vault: \($0)" } ?? ""))
            if !outcome.frozen.isEmpty { print("frozen and thawed: \(outcome.frozen.joined(separator: ", "))") }
        }
        if let reason = outcome.reason {
            throw LifeboatError(.degraded, "the point is crash-consistent, not app-consistent: \(reason)")
        }
    }
}
