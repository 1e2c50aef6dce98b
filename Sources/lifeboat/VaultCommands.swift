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
    @Option(help: "Show this disk's digest.") var disk: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        do {
            let v = try vault.open()
            let diskID = try disk.map { try v.disk(named: $0).id }
            let points = try v.points()
            let drills = try v.latestDrills()
            if json {
                return try printJSON(points.map { p in ListedPoint(point: p, lastDrill: p.id.flatMap { drills[$0] }.map(ListedPoint.Drill.init)) })
            }
            let (base, last) = try v.lsnRange()
            print("vault \(v.root): LSNs \(base)…\(last), \(points.count) point(s)")
            print(pad("ID", 6) + pad("LSN", 10) + pad("KIND", 18) + pad("TIME", 22) + pad("LABEL", 16) + pad("TESTED AT", 22) + pad("RESULT", 8) + (disk.map { "DIGEST (\($0))" } ?? ""))
            let time = ISO8601DateFormatter()
            for p in points {
                let digest = try diskID.flatMap { try p.digestMap()[$0]?.description } ?? ""
                let drill = p.id.flatMap { drills[$0] }
                print(pad(String(p.id ?? 0), 6) + pad(String(p.lsn), 10) + pad(p.kind, 18) + pad(time.string(from: p.time), 22) + pad(p.label.isEmpty ? "-" : p.label, 16)
                      + pad(drill.map { time.string(from: $0.finishedAt) } ?? "-", 22) + pad(drill?.result ?? "-", 8) + digest)
            }
        }
    }
}

/// A point as `points --json` lists it: the catalog row and its latest drill.
struct ListedPoint: Encodable {
    struct Drill: Encodable {
        var testedAt: Date
        var result: String
        var plan: String
        init(_ r: DrillRecord) {
            testedAt = r.finishedAt
            result = r.result
            plan = r.plan
        }
    }
    var point: RecoveryPoint
    var lastDrill: Drill?

    func encode(to encoder: Encoder) throws {
        try point.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encodeIfPresent(lastDrill, forKey: .lastDrill)
    }
    enum Key: String, CodingKey { case lastDrill }
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
