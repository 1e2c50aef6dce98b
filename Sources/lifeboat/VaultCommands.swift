import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatVault
import LifeboatVHD
import LifeboatIdentity
import LifeboatSite
import LifeboatWire
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// LIFEBOAT_VAULT, where `--vault` is not given (empty: not set).
func vaultFromEnvironment() -> String? {
    ProcessInfo.processInfo.environment["LIFEBOAT_VAULT"].flatMap { $0.isEmpty ? nil : $0 }
}

/// The vault key file's absolute path: `--key`, else LIFEBOAT_VAULT_KEY; nil when neither is given.
func vaultKeyFile(_ option: String?) -> String? {
    (option ?? ProcessInfo.processInfo.environment["LIFEBOAT_VAULT_KEY"].flatMap { $0.isEmpty ? nil : $0 }).map(absolutePath)
}

/// The vault key that file holds (`VaultKey.load`), nil when none is given.
func vaultKey(_ option: String?) throws -> VaultKey? {
    try vaultKeyFile(option).map { try VaultKey.load(FilePath($0)) }
}

/// `--vault`, defaulting from LIFEBOAT_VAULT: the vault directory as a whole (`vault enroll`,
/// `vault serve`).
struct VaultDirectoryOption: ParsableArguments {
    @Option(name: .long, help: "The vault directory (default: $LIFEBOAT_VAULT).")
    var vault: String?

    var path: String? { vault ?? vaultFromEnvironment() }

    /// The vault directory, made here if there is none yet (a new vault host).
    func openOrCreate(key: VaultKey? = nil) throws -> VaultHome {
        guard let path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
        return try VaultHome(root: FilePath(absolutePath(path)), create: true, key: key)
    }
}

/// Which group the readers (`points`, `export`, `mount`, `drill`, `vault verify`/`prune`) read:
/// `--vault DIR` (or LIFEBOAT_VAULT) with `--site NAME` where the vault holds several sites'
/// groups; or `--site DIR` alone, a site directory, whose vault is read.
struct VaultOption: ParsableArguments {
    @Option(name: .long, help: "The vault directory (default: $LIFEBOAT_VAULT).")
    var vault: String?
    @Option(name: .long, help: ArgumentHelp("With a vault: the site whose group to read, where the vault holds several. Without: a site directory, whose vault is read.",
                                            valueName: "name-or-dir"))
    var site: String?
    @Option(name: .long, help: ArgumentHelp("The key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY).", valueName: "file"))
    var key: String?

    /// `--vault`, else LIFEBOAT_VAULT — unless `--site` names a site directory: a site's own
    /// vault is what `--site DIR` reads, whatever the environment says.
    var vaultPath: String? {
        if let vault { return vault }
        if let site, FileManager.default.fileExists(atPath: site + "/site.json") { return nil }
        return vaultFromEnvironment()
    }

    /// A site directory whose vault is served on another machine, when that is what was named.
    func remoteSite() throws -> Site? {
        guard vaultPath == nil, let site else { return nil }
        let s = try Site.open(FilePath(site))
        return s.hasRemoteVault ? s : nil
    }

    func open() throws -> Vault {
        if let path = vaultPath { return try VaultHome(root: FilePath(path), key: try vaultKey(key)).group(site: site) }
        guard let site else { throw ValidationError("no vault given: pass --vault DIR (or --site DIR, a site) or set LIFEBOAT_VAULT") }
        let s = try Site.open(FilePath(site))
        guard let vault = s.config.vault else { throw LifeboatError(.notFound, "the site has no vault (lifeboat init --vault)", path: site) }
        guard !s.hasRemoteVault else {
            throw LifeboatError(.unsupported, "the site's vault is on another machine (\(vault)): `points --site` lists its points from here; "
                                + "mount, export, drill and vault upkeep run on the vault host (--vault DIR --site NAME)", path: site)
        }
        return try Vault(root: FilePath(vault))
    }
}

struct PointsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "points", abstract: "List the vault's recovery points.")
    @OptionGroup var vault: VaultOption
    @Option(help: "Show this disk's digest in the table (--json always has every disk's).") var disk: String?
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        if let site = try vault.remoteSite() {
            return try show(try RemoteVaultReplica(bundle: try SiteBundle.load(site.vaultBundlePath)).points(), from: site.config.vault ?? "")
        }
        let v = try vault.open()
        try show(try PointListing(v), from: v.root.string)
    }

    private func show(_ listing: PointListing, from vault: String) throws {
        if json { return try printJSON(listing.points) }
        print("vault \(vault): LSNs \(listing.baseLSN)…\(listing.lastLSN), \(listing.points.count) point(s)")
        if let disk, let p = listing.points.first, p.digests[disk] == nil {
            throw LifeboatError(.notFound, "the vault has no disk '\(disk)' (it has: \(p.digests.keys.sorted().joined(separator: ", ")))")
        }
        let time = ISO8601DateFormatter()
        let rows = listing.points.map { p -> [String] in
            [String(p.id ?? 0), p.lsn.description, p.kind.rawValue, time.string(from: p.time), p.label ?? "-",
             p.lastDrill.map { time.string(from: $0.testedAt) } ?? "-", p.lastDrill?.result.rawValue ?? "-"]
                + (disk.map { [p.digests[$0] ?? "-"] } ?? [])
        }
        printTable(["ID", "LSN", "KIND", "TIME", "LABEL", "TESTED AT", "RESULT"] + (disk.map { ["DIGEST (\($0))"] } ?? []), rows)
        for p in listing.points { if let note = p.note { print("  point \(p.id ?? 0): \(note)") } }
        for w in listing.resyncWindows ?? [] where w.endLSN.map({ $0 > listing.baseLSN }) ?? true {
            print("  no point after LSN \(w.gapAfter)\(w.endLSN.map { " until LSN \($0)" } ?? ""): \(w.description)")
        }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "export", abstract: "Write one disk at a recovery point to an image file.")
    @OptionGroup var vault: VaultOption
    @Option(help: "latest, latest-app, a point id, lsn:N or @TIME.") var point: String
    @Option(help: "The disk's name.") var disk: String
    @Option(help: "raw, vhd-fixed or vhd-dynamic.") var format = "raw"
    @Argument(help: "The output file (must not exist).") var output: String
    @Flag(help: "Print JSON.") var json = false

    struct Result: Encodable {
        var disk: String
        var lsn: UInt64
        var pointID: Int64?
        var format: String
        var output: String
        var sizeBytes: Int64
        var seconds: Double
    }

    func validate() throws {
        guard ["raw", "vhd-fixed", "vhd-dynamic"].contains(format) else {
            throw ValidationError("unknown format '\(format)': use raw, vhd-fixed or vhd-dynamic" + (format == "vhd" ? " (mount's vhd is a fixed VHD)" : ""))
        }
        guard output != "-" else { throw ValidationError("export writes a file, not standard output: name the output file") }
    }

    func run() throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) {
            throw LifeboatError(isDirectory.boolValue ? .invalidArgument : .alreadyExists,
                                isDirectory.boolValue ? "is a directory: name the output file" : "the output exists (export never overwrites)", path: output)
        }
        let v = try vault.open()
        let d = try v.disk(named: disk)
        let (lsn, point) = try PointSelector.resolve(point, in: v)
        if let point, case let digests = try point.digestMap(), !digests.isEmpty, digests[d.id] == nil {
            throw LifeboatError(.notFound, "disk '\(d.name)' did not exist at point \(point.id ?? 0) (LSN \(lsn)): it was added later", path: v.root.string)
        }
        let reader = try PointReader(vault: v, lsn: lsn, only: [d.id])
        let started = ContinuousClock.now
        let progress = Progress(what: "exporting \(d.name) at LSN \(lsn)", total: d.sizeBytes)
        try PartialOutput(output).write { path in
            let out: FileDescriptor
            do { out = try FileDescriptor.open(path, .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec], permissions: PrivateFiles.fileMode) } catch {
                throw LifeboatError.wrapping(error, "cannot create the output", path: output)
            }
            defer { try? out.close() }
            do {
                if let vhd = VHDWriter.Format(rawValue: format) {
                    try VHDWriter.write(vhd, sizeBytes: d.sizeBytes, to: out, read: { try reader.read(disk: d.id, at: $0, into: $1) }, progress: progress.update)
                } else {
                    try reader.exportRaw(disk: d, to: out, progress: progress.update)
                }
                try out.fullSync()
            } catch var e as LifeboatError {
                if e.path == nil { e.path = output }
                throw e
            } catch {
                throw LifeboatError.wrapping(error, "cannot write the export", path: output)
            }
        }
        progress.finish()
        let result = Result(disk: d.name, lsn: lsn.rawValue, pointID: point?.id, format: format, output: absolutePath(output), sizeBytes: d.sizeBytes,
                            seconds: started.duration(to: .now).inSeconds)
        if json { return try printJSON(result) }
        print("exported \(d.name) at LSN \(lsn) to \(output) (\(format), \(diskSize(d.sizeBytes)))")
    }
}

struct VaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vault", abstract: "Check, prune and serve the vault; enroll sites.",
                                                    subcommands: [Verify.self, Prune.self, EnrollCommand.self, ServeCommand.self, Keygen.self])

    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a new key to encrypt a served vault's data at rest (vault serve --key FILE).",
            discussion: """
                Writes 256 random bits as 64 hex digits to a new file, mode 0600; refuses to overwrite one. \
                Keep it outside the vault directory and back it up apart from the vault: without it the \
                vault's data cannot be read.
                """)
        @Argument(help: "The key file to make (must not exist).") var file: String

        func run() throws {
            let key = try VaultKey.create(at: FilePath(absolutePath(file)))
            print("vault key \(key.id) written to \(file)")
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Apply retention now (protect also applies it every minute).",
            discussion: """
                Keeps every point younger than --keep-all, then the newest point of each --every interval up to \
                --window, and always the newest point and the newest app-consistent point; merges older layers into \
                the bases. Given options are stored as the vault's policy (default 24h / 2h / 1h) unless --dry-run, \
                which shows what would go and changes nothing. Durations: 90s, 30m, 2h, 7d.
                """)
        @OptionGroup var vault: VaultOption
        @Option(help: "Retention window, e.g. 24h.") var window: String?
        @Option(help: "Keep every point younger than this, e.g. 2h.") var keepAll: String?
        @Option(help: "Beyond --keep-all, keep one point per interval, e.g. 1h.") var every: String?
        @Flag(help: "Show what would be pruned; change nothing (not even the stored policy).") var dryRun = false
        @Flag(help: "Print JSON.") var json = false

        struct Result: Encodable {
            var dryRun: Bool
            var policy: RetentionPolicy
            var removedPoints: [Int64]
            var keptForMounts: [Int64]
            var mergedLayers: Int
            var reclaimedBytes: Int64
            var baseLSN: UInt64
        }

        func validate() throws {
            for (name, value) in [("--window", window), ("--keep-all", keepAll), ("--every", every)] {
                if let value { _ = try parseDuration(value, what: "\(name) duration") }
            }
        }

        func run() throws {
            let v = try vault.open()
            var policy = try v.retentionPolicy()
            if let window { policy.window = try parseDuration(window) }
            if let keepAll { policy.keepAll = try parseDuration(keepAll) }
            if let every { policy.every = try parseDuration(every) }
            guard policy.keepAll <= policy.window else {
                throw LifeboatError(.invalidArgument, "retention needs --keep-all (\(describeDuration(policy.keepAll))) <= --window (\(describeDuration(policy.window)))")
            }
            if !dryRun && (window != nil || keepAll != nil || every != nil) { try v.setRetentionPolicy(policy) }
            let report = try v.prune(policy: policy, dryRun: dryRun)
            if json {
                return try printJSON(Result(dryRun: dryRun, policy: policy, removedPoints: report.removedPoints, keptForMounts: report.keptForMounts,
                                            mergedLayers: report.mergedLayers, reclaimedBytes: report.reclaimedBytes, baseLSN: report.baseLSN.rawValue))
            }
            if !report.keptForMounts.isEmpty {
                print("kept point(s) \(report.keptForMounts.map(String.init).joined(separator: ", ")): mounted (lifeboat mount or a drill holds them)")
            }
            let points = report.removedPoints.isEmpty ? "" : " (\(report.removedPoints.map(String.init).joined(separator: ", ")))"
            if dryRun {
                print("would prune \(report.removedPoints.count) point(s)\(points), merge \(report.mergedLayers) layer(s) into the bases and reclaim \(humanBytes(report.reclaimedBytes)); the vault would start at LSN \(report.baseLSN) (nothing changed)")
            } else {
                print("pruned \(report.removedPoints.count) point(s)\(points), merged \(report.mergedLayers) layer(s) into the bases, reclaimed \(humanBytes(report.reclaimedBytes)); the vault now starts at LSN \(report.baseLSN)")
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the catalog, every layer (index, checksums, every zstd frame) and every base block against its checksum; exit 65 if anything is damaged.",
            discussion: "A file that cannot be read for lack of permission stops the check with exit 77: it is not reported as damage.")
        @OptionGroup var vault: VaultOption
        @Flag(help: "Print JSON.") var json = false

        struct Result: Encodable {
            var vault: String
            var layers: Int
            var bytes: Int64
            var points: Int
            var basesScrubbed: Int
            var damaged: [String]
        }

        func run() throws {
            let v = try vault.open()
            let progress = Progress(what: "verifying \(v.root)", total: 0)
            let report = try VaultVerifier.verify(v) { done, total in progress.update(done, of: total) }
            progress.finish()
            if json {
                try printJSON(Result(vault: v.root.string, layers: report.layers, bytes: report.bytes, points: report.points, basesScrubbed: report.bases,
                                     damaged: report.problems.map(\.description)))
            } else {
                print("vault \(v.root): \(report.layers) layer(s), \(humanBytes(report.bytes)), \(report.points) point(s), \(report.bases) base(s) scrubbed")
                for p in report.problems { print("DAMAGED: \(p)") }
                if report.problems.isEmpty { print("ok") }
            }
            if !report.problems.isEmpty {
                throw LifeboatError(.corrupt, "\(report.problems.count) problem(s) found", path: v.root.string)
            }
        }
    }
}
