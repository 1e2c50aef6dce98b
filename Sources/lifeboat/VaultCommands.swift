import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatVault
import LifeboatVHD
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `--vault`, defaulting from LIFEBOAT_VAULT.
struct VaultOption: ParsableArguments {
    @Option(name: .long, help: "The vault directory (default: $LIFEBOAT_VAULT).")
    var vault: String?

    func open() throws -> Vault {
        let path = vault ?? ProcessInfo.processInfo.environment["LIFEBOAT_VAULT"].flatMap { $0.isEmpty ? nil : $0 }
        guard let path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
        return try Vault(root: FilePath(path))
    }
}

struct PointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "points", abstract: "List the vault's recovery points.")
    @OptionGroup var vault: VaultOption
    @Option(help: "Show this disk's digest in the table (--json always has every disk's).") var disk: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let v = try vault.open()
        let disks = try v.disks()
        let diskID = try disk.map { try v.disk(named: $0).id }
        let names = Dictionary(uniqueKeysWithValues: disks.map { ($0.id, $0.name) })
        let points = try v.points()
        let drills = try v.latestDrills()
        if json {
            return try printJSON(try points.map { p in
                try ListedPoint(p, names: names, lastDrill: p.id.flatMap { drills[$0] })
            })
        }
        let (base, last) = try v.lsnRange()
        print("vault \(v.root): LSNs \(base)…\(last), \(points.count) point(s)")
        let time = ISO8601DateFormatter()
        let rows = try points.map { p -> [String] in
            let drill = p.id.flatMap { drills[$0] }
            return [String(p.id ?? 0), String(p.lsn), p.kind, time.string(from: p.time), p.label.isEmpty ? "-" : p.label,
                    drill.map { time.string(from: $0.finishedAt) } ?? "-", drill?.result ?? "-"]
                + (try diskID.map { [try p.digestMap()[$0]?.description ?? "-"] } ?? [])
        }
        printTable(["ID", "LSN", "KIND", "TIME", "LABEL", "TESTED AT", "RESULT"] + (disk.map { ["DIGEST (\($0))"] } ?? []), rows)
    }
}

/// A point as `points --json` lists it: digests by disk name, no label as null, and its
/// latest drill.
struct ListedPoint: Encodable {
    struct Drill: Encodable {
        var testedAt: Date
        var result: String
        var plan: String
    }
    var id: Int64?
    var lsn: Int64
    var kind: String
    var time: Date
    var label: String?
    var digests: [String: String]
    var lastDrill: Drill?

    init(_ p: RecoveryPoint, names: [DiskID: String], lastDrill: DrillRecord?) throws {
        id = p.id
        lsn = p.lsn
        kind = p.kind
        time = p.time
        label = p.label.isEmpty ? nil : p.label
        digests = Dictionary(uniqueKeysWithValues: try p.digestMap().map { (names[$0.key] ?? "disk \($0.key.rawValue)", $0.value.description) })
        self.lastDrill = lastDrill.map { Drill(testedAt: $0.finishedAt, result: $0.result, plan: $0.plan) }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write one disk at a recovery point to an image file.")
    @OptionGroup var vault: VaultOption
    @Option(help: "latest, latest-app, a point id, lsn:N or @TIME.") var point: String
    @Option(help: "The disk's name.") var disk: String
    @Option(help: "raw, vhd-fixed or vhd-dynamic.") var format = "raw"
    @Argument(help: "The output file (must not exist).") var output: String

    func validate() throws {
        guard ["raw", "vhd-fixed", "vhd-dynamic"].contains(format) else {
            throw ValidationError("unknown format '\(format)': use raw, vhd-fixed or vhd-dynamic")
        }
    }

    func run() throws {
        do {
            let v = try vault.open()
            let d = try v.disk(named: disk)
            let (lsn, _) = try PointSelector.resolve(point, in: v)
            let reader = try PointReader(vault: v, lsn: lsn)
            let out: FileDescriptor
            do { out = try FileDescriptor.open(output, .writeOnly, options: [.create, .exclusiveCreate], permissions: PrivateFiles.fileMode) } catch {
                throw LifeboatError.system(error as? Errno ?? .ioError, "cannot create the output", path: output)
            }
            defer { try? out.close() }
            let terminal = isatty(STDERR_FILENO) == 1
            var shown = -1
            let progress = { (done: Int64) in
                let percent = Int(done * 100 / max(d.sizeBytes, 1))
                if terminal && percent != shown {
                    shown = percent
                    FileHandle.standardError.write(Data("\rexporting \(d.name) at LSN \(lsn): \(percent)%".utf8))
                }
            }
            do {
                if let vhd = VHDWriter.Format(rawValue: format) {
                    try VHDWriter.write(vhd, sizeBytes: d.sizeBytes, to: out, read: { try reader.read(disk: d.id, at: $0, into: $1) }, progress: progress)
                } else {
                    try reader.exportRaw(disk: d, to: out, progress: progress)
                }
            } catch {
                unlink(output)
                throw error
            }
            if terminal { FileHandle.standardError.write(Data("\n".utf8)) }
            print("exported \(d.name) at LSN \(lsn) to \(output) (\(format), \(humanBytes(d.sizeBytes)))")
        }
    }
}

/// Durations as `90s`, `30m`, `2h`, `7d`.
struct VaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vault", abstract: "Check and prune the vault.", subcommands: [Verify.self, Prune.self])

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply retention now (protect also applies it every minute).",
            discussion: "Keeps every point younger than --keep-all, then the newest point of each --every interval up to --window, and always the newest point and the newest app-consistent point; merges older layers into the bases. Given options are stored as the vault's policy (default 24h / 2h / 1h).")
        @OptionGroup var vault: VaultOption
        @Option(help: "Retention window, e.g. 24h.") var window: String?
        @Option(help: "Keep every point younger than this, e.g. 2h.") var keepAll: String?
        @Option(help: "Beyond --keep-all, keep one point per interval, e.g. 1h.") var every: String?

        func run() throws {
            do {
                let v = try vault.open()
                var policy = try v.retentionPolicy()
                if let window { policy.window = try parseDuration(window) }
                if let keepAll { policy.keepAll = try parseDuration(keepAll) }
                if let every { policy.every = try parseDuration(every) }
                guard policy.keepAll <= policy.window, policy.every > 0 else {
                    throw LifeboatError(.invalidArgument, "retention needs keep-all <= window and every > 0")
                }
                if window != nil || keepAll != nil || every != nil { try v.setRetentionPolicy(policy) }
                let report = try v.prune(policy: policy)
                if !report.keptForMounts.isEmpty {
                    print("kept point(s) \(report.keptForMounts.map(String.init).joined(separator: ", ")): mounted (lifeboat mount holds them)")
                }
                print("pruned \(report.removedPoints.count) point(s), merged \(report.mergedLayers) layer(s) into the bases, reclaimed \(humanBytes(report.reclaimedBytes)); the vault now starts at LSN \(report.baseLSN)")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the catalog, every layer (index, checksums, every zstd frame) and every base block against its checksum; exit 65 if anything is damaged.")
        @OptionGroup var vault: VaultOption

        func run() throws {
            do {
                let v = try vault.open()
                let report = try VaultVerifier.verify(v)
                print("vault \(v.root): \(report.layers) layer(s), \(humanBytes(report.bytes)), \(report.points) point(s), \(report.bases) base(s) scrubbed")
                for p in report.problems { print("DAMAGED: \(p)") }
                if !report.problems.isEmpty {
                    throw LifeboatError(.corrupt, "\(report.problems.count) problem(s) found", path: v.root.string)
                }
                print("ok")
            }
        }
    }
}
