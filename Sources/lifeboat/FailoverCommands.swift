import ArgumentParser
import Foundation
import LifeboatCapture
import LifeboatCore
import LifeboatFailover
import LifeboatIdentity
import LifeboatWire
import LifeboatSite
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat failover`: on the vault host, make a recovery point the live, protected disks of a
/// site (decision 0012), then `commit` it.
struct FailoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failover",
        abstract: "Fail a site over to a recovery point on the vault host, or commit that failover.",
        subcommands: [Start.self, ChangePointCommand.self, Commit.self, Cancel.self],
        defaultSubcommand: Start.self)

    /// How recent a passed drill must be for a failover not to be warned (ASR warns likewise).
    static let drillAgeWarning: TimeInterval = 180 * 86_400

    struct Start: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start",
            abstract: "Unplanned failover: the site's disks become a point of the vault, writable and protected at once.",
            discussion: """
                Run on the vault host. The vault starts the group's next generation at the point: from \
                then on it takes writes only from the site this makes (at --to), and the old site is \
                fenced — its writes are refused — as soon as it reaches the vault. The disks are not \
                copied first: they read the point until a background fill has copied it. With \
                --mount, protection starts at once in the foreground, as `lifeboat protect`.
                """)

        @OptionGroup var vault: VaultDirectoryOption
        @Option(help: ArgumentHelp("The site whose group fails over (its name in the vault; not needed where the vault holds one group).", valueName: "name")) var site: String?
        @Option(help: ArgumentHelp("The point: latest, latest-processed, latest-app, an id, lsn:N or @TIME (unplanned failover).", valueName: "selector")) var point: String?
        @Flag(help: "Planned failover: the source stops serving writes, marks a final point and drains; the failover is at exactly that point (zero loss).") var planned = false
        @Option(help: ArgumentHelp("How long a planned failover waits for the source to drain before it is withdrawn.", valueName: "duration")) var drainTimeout = "120s"
        @Option(help: ArgumentHelp("Where the failed-over site is made (default: VAULT/recovered/NAME).", valueName: "dir")) var to: String?
        @Option(help: ArgumentHelp("Serve the disks here as NAME.img and protect them (foreground, as `lifeboat protect`).", valueName: "dir")) var mount: String?
        @Option(help: ArgumentHelp("The key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY); the failed-over site keeps its path.", valueName: "file")) var key: String?
        @Option(help: ArgumentHelp("A recovery plan: its groups' sites failed over in order, with their scripts and gates (each to VAULT/recovered/NAME).",
                                   valueName: "file")) var plan: String?
        @Option(help: ArgumentHelp("With --plan: write a JUnit XML report here (a test suite per group).", valueName: "file")) var junit: String?
        @Flag(help: "Approve the failover (and a plan's gates) without asking (scripts, CI).") var yes = false
        @Flag(help: "Print the report as JSON.") var json = false

        func validate() throws {
            if let site { try SiteName.validate(site) }
            if plan != nil && (site != nil || to != nil || mount != nil) { throw ValidationError("--plan names its sites: --site, --to and --mount do not go with it") }
            switch (planned, point) {
            case (false, nil) where plan == nil: throw ValidationError("say which point to fail over to (--point latest, …), or --planned")
            case (true, .some): throw ValidationError("a planned failover is at the source's final point: --point does not go with --planned")
            default: break
            }
            _ = try parseDuration(drainTimeout, what: "drain timeout")
        }

        func run() throws {
            if mount != nil { try ProtectService.requireRoot() }
            guard let root = vault.path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
            let home = try VaultHome(root: FilePath(absolutePath(root)), key: try vaultKey(key))
            if let plan { return try runPlan(plan, home) }
            let group = try home.group(site: site)
            let name = site ?? "site"
            let target = FilePath(absolutePath(to ?? home.root.appending("recovered").appending(name).string))
            try warnWithoutRecentDrill(group, name)
            let report: FailoverReport
            if planned {
                try approveGate("About to fail site '\(name)' over, planned: its source stops serving writes now", yes: yes)
                report = try Failover.planned(vault: group, site: name, to: target, hostName: Failover.hostName(), keyFile: vaultKeyFile(key),
                                              timeout: .milliseconds(Int64(try parseDuration(drainTimeout) * 1000))) { line in
                    if !json { print(line) }
                }
            } else {
                try approveGate("About to fail site '\(name)' over to point '\(point ?? "")' (the old site will be fenced)", yes: yes)
                report = try Failover.unplanned(vault: group, site: name, point: point ?? "latest", to: target, hostName: Failover.hostName(), keyFile: vaultKeyFile(key))
            }
            if json { try printJSON(report) } else { printReport(report) }
            if let mount {
                fflush(nil)
                try ProtectService.run(site: try Site.open(target), mountpoint: absolutePath(mount), options: .init(), logger: makeLogger())
            }
        }

        /// `--plan`: every site of every group, in order, with the group's scripts and gate.
        private func runPlan(_ path: String, _ home: VaultHome) throws {
            let recovery = try RecoveryPlan.load(path)
            try recovery.requireSites(known: try home.siteNames(), path: path)
            for site in recovery.groups.flatMap(\.sites) { try warnWithoutRecentDrill(try home.siteGroup(site), site) }
            try approveGate("About to fail over plan '\(recovery.name)' (\(recovery.groups.flatMap(\.sites).count) sites; their old hosts will be fenced)", yes: yes)
            let reports = try RecoveryPlanRun.run(recovery, approve: { try approveGate($0, yes: yes) }) { site in
                let group = try home.siteGroup(site)
                let target = FilePath(home.root.appending("recovered").appending(site).string)
                let r = planned
                    ? try Failover.planned(vault: group, site: site, to: target, hostName: Failover.hostName(), keyFile: vaultKeyFile(key),
                                           timeout: .milliseconds(Int64(try parseDuration(drainTimeout) * 1000)))
                    : try Failover.unplanned(vault: group, site: site, point: point ?? "latest", to: target, hostName: Failover.hostName(), keyFile: vaultKeyFile(key))
                return "generation \(r.generation) from LSN \(r.forkLSN) at \(r.recoveredSite)"
            }
            try finishPlanRun(recovery, reports, json: json, junit: junit)
        }

        private func warnWithoutRecentDrill(_ group: Vault, _ site: String) throws {
            let passed = try group.lastPassedDrill()
            guard let passed, Date().timeIntervalSince(passed.finishedAt) <= FailoverCommand.drillAgeWarning else {
                let when = passed.map { "the last passed \(ISO8601DateFormatter().string(from: $0.finishedAt))" } ?? "none ever passed"
                return printWarning("site '\(site)' has no passing drill in the last 180 days (\(when)): this recovery is unproven")
            }
        }

        private func printReport(_ r: FailoverReport) {
            let time = ISO8601DateFormatter()
            print("site \(r.site) failed over\(r.resumed ? " (an interrupted failover, finished now)" : ""): generation \(r.generation), from LSN \(r.forkLSN)")
            if let id = r.pointID {
                let age = r.pointAgeSeconds.map { ", \(describeDuration($0)) old" } ?? ""
                print("  point \(id) (\(r.pointKind ?? "?"), \(r.pointTime.map { time.string(from: $0) } ?? "?")\(age))")
            }
            if let digests = r.finalDigests {
                print("  zero loss: the source served no write after this point; its digests there: "
                      + digests.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            }
            if r.forsakenLSNs > 0 {
                print("  set aside: \(r.forsakenLSNs) LSNs the vault held past the point (\(r.forsakenPoints) points), kept for re-protect")
            }
            print("  served by the site at \(r.recoveredSite) (ready in \(String(format: "%.2f", r.seconds)) s)")
            if mount == nil { print("  protect it: lifeboat protect --site \(r.recoveredSite) MOUNTPOINT") }
        }
    }

    struct ChangePointCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "change-point",
            abstract: "Before commit: make the failed-over disks an older point, discarding what was written on them since.",
            discussion: "Run on the vault host with the failed-over site's protect stopped; the writes discarded stay in the vault, set aside, and its journal is kept.")
        @OptionGroup var vault: VaultDirectoryOption
        @Option(help: ArgumentHelp("The site whose failover it is (not needed where the vault holds one group).", valueName: "name")) var site: String?
        @Option(help: ArgumentHelp("The older point: an id, lsn:N, @TIME, latest-app.", valueName: "selector")) var point: String
        @Option(help: ArgumentHelp("The failed-over site (default: VAULT/recovered/NAME).", valueName: "dir")) var to: String?
        @Option(help: ArgumentHelp("The key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY).", valueName: "file")) var key: String?
        @Flag(help: "Approve without asking (scripts, CI).") var yes = false
        @Flag(help: "Print JSON.") var json = false

        func validate() throws { if let site { try SiteName.validate(site) } }

        func run() throws {
            guard let root = vault.path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
            let home = try VaultHome(root: FilePath(absolutePath(root)), key: try vaultKey(key))
            let target = FilePath(absolutePath(to ?? home.root.appending("recovered").appending(site ?? "site").string))
            try approveGate("A change of point discards what was written on the failed-over disks since the failover", yes: yes)
            let r = try ChangePoint.run(vault: try home.group(site: site), site: target, point: point)
            if json { return try printJSON(r) }
            print("site \(site ?? "site"): the failover is now at LSN \(r.forkLSN)\(r.pointID.map { " (point \($0))" } ?? "")\(r.resumed ? " (an interrupted change, finished now)" : "")")
            print("  set aside: \(r.forsakenLSNs) LSNs past it (\(r.forsakenPoints) points); the failed-over disks read the new point until filled")
            print("  protect it: lifeboat protect --site \(target) MOUNTPOINT")
        }
    }

    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Withdraw a planned failover that has not forked yet: the source serves writes again.")
        @OptionGroup var vault: VaultDirectoryOption
        @Option(help: ArgumentHelp("The site (not needed where the vault holds one group).", valueName: "name")) var site: String?
        @Option(help: ArgumentHelp("The key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY).", valueName: "file")) var key: String?

        func validate() throws { if let site { try SiteName.validate(site) } }

        func run() throws {
            guard let root = vault.path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
            let g = try VaultHome(root: FilePath(absolutePath(root)), key: try vaultKey(key)).group(site: site).withdrawPlannedFailover()
            print("site \(site ?? "site"): planned failover withdrawn; generation \(g.number) is \(g.state.rawValue) again")
        }
    }

    struct Commit: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "commit", abstract: "Make the site's failover final.")
        @OptionGroup var vault: VaultDirectoryOption
        @Option(help: ArgumentHelp("The site whose failover to commit (not needed where the vault holds one group).", valueName: "name")) var site: String?
        @Option(help: ArgumentHelp("The key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY).", valueName: "file")) var key: String?
        @Flag(help: "Print JSON.") var json = false

        func validate() throws { if let site { try SiteName.validate(site) } }

        func run() throws {
            guard let root = vault.path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
            let g = try Failover.commit(vault: try VaultHome(root: FilePath(absolutePath(root)), key: try vaultKey(key)).group(site: site))
            if json { return try printJSON(g) }
            print("site \(site ?? "site"): failover committed (generation \(g.number), from LSN \(g.forkLSN), served by \(g.ownerName))")
        }
    }
}

/// The group's history as the site directory `site` reaches it: its vault on the network (its
/// bundle) or the directory it ships to.
func history(for site: Site) throws -> VaultHistory {
    guard let vault = site.config.vault else { throw LifeboatError(.notFound, "the site has no vault (lifeboat init --vault)", path: site.root.string) }
    if site.hasRemoteVault { return try RemoteVaultReplica(bundle: try SiteBundle.load(site.vaultBundlePath), writer: try SiteGeneration.load(site).claim) }
    return LocalHistory(vault: try Vault(root: FilePath(vault), key: try site.config.recoveredFrom?.key()))
}

/// `lifeboat reprotect --site DIR`: a site a failover left behind becomes a replica of the
/// group's current generation, moving only what differs.
struct ReprotectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reprotect",
        abstract: "Make a fenced site (the host a failover left) a replica of the group's current history, moving only the blocks that differ.",
        discussion: """
            Run on that site's host with protect stopped. The blocks to move are named by the history — \
            those written since the failover, and those this site wrote after it (its journal, kept aside \
            afterwards) — never found by scanning the disks. They are staged beside the disks, then \
            switched to at once: an interruption leaves the disks as they were, or is finished by running \
            it again. Afterwards the disks' digests equal the newest point's.
            """)
    @OptionGroup var site: SiteOption
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        let s = try site.open()
        let report = try Reprotect.run(site: s, history: try history(for: s), logger: makeLogger())
        if json { return try printJSON(report) }
        printReprotect(report, what: "re-protected")
    }
}

func printReprotect(_ r: ReprotectReport, what: String) {
    print("site \(r.site) \(what)\(r.resumed ? " (an interrupted switch, finished now)" : ""): a replica of generation \(r.generation) at LSN \(r.lsn)"
          + (r.pointID.map { " (point \($0))" } ?? ""))
    print("moved \(humanBytes(r.bytesMoved)) of \(humanBytes(r.diskBytes)) in \(String(format: "%.2f", r.seconds)) s")
    for d in r.disks {
        let which = d.comparedWholeDisk == true ? "every block compared with the point, \(d.replacedHereBlocks) differed"
            : "\(d.writtenThereBlocks) block(s) written since, \(d.replacedHereBlocks) block(s) of this site's own after the fork replaced"
        print("  \(d.name): \(humanBytes(d.movedBytes)) in \(d.extents) extent(s) — \(which); digest \(d.digest) \(d.digestEqual ? "= the point's" : "≠ THE POINT'S")")
    }
    if let kept = r.keptJournal { print("this site's journal (its writes after the fork) is kept in \(kept)") }
}

/// `lifeboat failback --site DIR`: a planned failover back to a re-protected site.
struct FailbackCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "failback",
        abstract: "Fail back to a re-protected site: the current owner drains, this site catches up to its final point and owns the group again.",
        discussion: """
            Run on the re-protected site's host with protect stopped. Zero loss: the current owner stops \
            serving writes before its final point, and this site's disks are shown equal to that point by \
            their digests. Then start `lifeboat protect` here: it ships to the same vault, as before the failover.
            """)
    @OptionGroup var site: SiteOption
    @Option(help: ArgumentHelp("How long to wait for the current owner to drain before the failback is withdrawn.", valueName: "duration")) var drainTimeout = "120s"
    @Option(help: ArgumentHelp("A recovery plan: its groups' sites failed back in order, with their scripts and gates; each site's directory on this host given by --site-dir.",
                               valueName: "file")) var plan: String?
    @Option(name: .customLong("site-dir"), help: ArgumentHelp("With --plan: NAME=DIR, the directory of the plan's site NAME on this host (one per site).",
                                                               valueName: "name=dir")) var siteDirs: [String] = []
    @Option(help: ArgumentHelp("With --plan: write a JUnit XML report here (a test suite per group).", valueName: "file")) var junit: String?
    @Flag(help: "Approve the failback (and a plan's gates) without asking (scripts, CI).") var yes = false
    @Flag(help: "Print the report as JSON.") var json = false

    func validate() throws {
        _ = try parseDuration(drainTimeout, what: "drain timeout")
        if plan == nil && !siteDirs.isEmpty { throw ValidationError("--site-dir goes with --plan") }
        for d in siteDirs where !d.contains("=") { throw ValidationError("--site-dir '\(d)': use NAME=DIR") }
    }

    private var timeout: Duration { get throws { .milliseconds(Int64(try parseDuration(drainTimeout) * 1000)) } }

    func run() throws {
        if let plan { return try runPlan(plan) }
        let s = try site.open()
        try approveGate("About to fail back to \(s.root): the current owner stops serving writes", yes: yes)
        let report = try Failback.run(site: s, history: try history(for: s), drainTimeout: try timeout,
                                      logger: makeLogger()) { line in if !json { print(line) } }
        if json { return try printJSON(report) }
        printReprotect(report.catchUp, what: "caught up")
        print("site \(s.root) owns generation \(report.generation) from LSN \(report.forkLSN)\(report.digestsEqual ? "; zero loss: its digests equal the final point's" : "")")
        print("protect it: lifeboat protect --site \(s.root) MOUNTPOINT")
    }

    /// `--plan`: the plan's sites, each a directory on this host, failed back group by group.
    private func runPlan(_ path: String) throws {
        let recovery = try RecoveryPlan.load(path)
        var dirs: [String: String] = [:]
        for d in siteDirs {
            let (name, dir) = (String(d.prefix { $0 != "=" }), String(d.drop { $0 != "=" }.dropFirst()))
            dirs[name] = dir
        }
        try recovery.requireSites(known: dirs.keys.sorted(), path: path)
        let sites = try dirs.mapValues { try Site.open(FilePath($0)) }
        try approveGate("About to fail back plan '\(recovery.name)' (\(recovery.groups.flatMap(\.sites).count) sites: each current owner stops serving writes)", yes: yes)
        let reports = try RecoveryPlanRun.run(recovery, approve: { try approveGate($0, yes: yes) }) { name in
            let s = sites[name]!
            let r = try Failback.run(site: s, history: try history(for: s), drainTimeout: try timeout, logger: makeLogger())
            guard r.digestsEqual else { throw LifeboatError(.mismatch, "site '\(name)': its digests differ from the final point's") }
            return "generation \(r.generation) from LSN \(r.forkLSN), \(humanBytes(r.catchUp.bytesMoved)) moved, zero loss"
        }
        try finishPlanRun(recovery, reports, json: json, junit: junit)
    }
}
