import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatCapture
import LifeboatSite
import LifeboatVault
import SystemPackage

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the site's protection state per disk; with --vault, every site's group on the vault host.")
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var site: SiteOption
    @Option(help: ArgumentHelp("On the vault host: every site's group in this vault — generation, failover state, owner, newest and verified point.",
                               valueName: "dir")) var vault: String?
    @Option(help: ArgumentHelp("With --vault: the key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY).", valueName: "file")) var key: String?

    func run() throws {
        if let vault { return try showVault(vault) }
        let s = try site.open()
        var status = try SiteStatus.read(s)
        var vaultError: String?
        if let path = s.config.vault, !s.hasRemoteVault {
            do {
                let vault = try Vault(root: FilePath(path))
                if let (p, drill) = try vault.verifiedPoint(), let id = p.id {
                    status.verified = .init(pointID: id, pointTime: p.time, drilledAt: drill.finishedAt, rpoSeconds: Date().timeIntervalSince(p.time))
                }
            } catch {
                vaultError = "\(error)"
            }
        }
        if json { return try printJSON(status) }
        var line = "site \(s.root): \(status.state.rawValue)"
        if let pid = status.pid, let mp = status.mountpoint { line += " (pid \(pid), mounted at \(mp))" }
        print(line)
        if let g = status.generation {
            if let fence = g.fenced {
                print("FENCED since \(ISO8601DateFormatter().string(from: fence.since)): writes are refused (EROFS): \(fence.why)")
            } else if g.generation > 1 || s.config.recoveredFrom != nil {
                print("generation \(g.generation) of the group's history (a failover's, from LSN \(g.forkLSN ?? 0))")
            }
        }
        if let transition = status.transition { print("\(transition)") }
        let unfilled = status.disks.reduce(Int64(0)) { $0 + ($1.unfilledBytes ?? 0) }
        if unfilled > 0 { print("filling from the recovery point: \(humanBytes(unfilled)) still read from the vault; no point until it ends") }
        let j = status.journal
        print("journal: LSN \(j.appendedLSN) appended, \(j.durableLSN) durable, \(humanBytes(j.bytes)) in \(j.segments) segment(s)")
        if let e = j.error { print("journal error: \(e)") }
        if status.shipping == nil, let vault = s.config.vault {
            print("vault \(vault): nothing shipped yet (protect ships to it)")
        }
        if let v = status.shipping {
            let lag = j.appendedLSN > v.shippedLSN ? j.appendedLSN.rawValue - v.shippedLSN.rawValue : 0
            print("vault \(v.vault): shipped up to LSN \(v.shippedLSN); lag \(lag) LSNs, \(v.pendingSegments) segment(s), \(humanBytes(v.pendingBytes)) waiting")
            if let rpo = v.rpoSeconds { print("RPO now: \(describeSeconds(rpo)) (the vault may lack writes made durable at most this long ago)") }
            if let text = v.bandwidth {
                let now = v.bandwidthNow.map { "\(humanBytes(Int64($0)))/s now" } ?? "unlimited now"
                let predicted = v.predictedRPOSeconds.map { "; what waits takes \(describeSeconds($0)) at that rate" } ?? ""
                print("bandwidth: \(now) (--bandwidth \(text))\(predicted)")
            }
            if let seeding = v.initialReplication { print("initial replication in progress: \(seeding)") }
            if let e = v.error {
                let since = v.pausedSince.map { " (since \(ISO8601DateFormatter().string(from: $0)))" } ?? ""
                print("shipping paused\(since): \(e)")
            }
            if let limit = v.spoolLimit {
                print("spool: \(humanBytes(v.pendingBytes)) unshipped of a \(humanBytes(limit)) limit (--spool-limit)")
            }
            if let since = v.droppingSince {
                print("resync: \(humanBytes(v.resyncPendingBytes ?? 0)) of dirty regions pending (journal dropped past the spool limit since \(ISO8601DateFormatter().string(from: since)))")
            }
            if let why = v.pointsPaused { print("points paused: \(why)") }
            if let e = v.maintenanceError { print("vault maintenance failing (shipping goes on): \(e)") }
        }
        if let v = status.verified {
            print("verified RPO: \(describeDuration(v.rpoSeconds)) (point \(v.pointID) passed a drill at \(ISO8601DateFormatter().string(from: v.drilledAt)))")
        } else if s.hasRemoteVault {
            print("verified RPO: not known here (drills run on the vault's host)")
        } else if s.config.vault != nil {
            print("verified RPO: none (no point has passed a drill\(vaultError.map { "; vault: \($0)" } ?? ""))")
        }
        // A running protect reports the digest at its newest point (computing it live would
        // pause the writes); a stopped site's is of the disk as it is.
        printTable(["DISK", "SIZE", "LAST LSN", "STATE", "DIGEST", "AT LSN"], status.disks.map {
            [$0.name, diskSize($0.sizeBytes), $0.lastLSN.map(String.init) ?? "-", $0.state.rawValue, $0.digest ?? "-",
             $0.digest == nil ? "-" : $0.digestAtLSN.map(String.init) ?? "now"]
        })
        for d in status.disks { if let e = d.error { print("  \(d.name): \(e)") } }
    }
}

struct JournalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "journal", abstract: "Inspect and recover the replication journal.", subcommands: [Verify.self, Recover.self])

    struct Recover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Recover a site after an unclean stop without serving it (what `protect` does first when it starts).",
            discussion: """
                Cuts a torn journal tail, replays the journal onto the primaries, re-journals the regions the activity \
                log names (a primary may hold writes whose records a power loss took), and stops cleanly. Nothing is \
                shipped. Like `drbdadm apply-al`: run it before reading the primaries while protect is stopped. \
                Exit 75 while protect runs, 65 on a damaged journal.
                """)
        @OptionGroup var site: SiteOption

        func run() throws {
            var options = ProtectionGroup.Options()
            options.ships = false
            let group = try ProtectionGroup.open(site: try site.open(), options: options, logger: makeLogger())
            try group.close()
            try SiteStatus.saveRecovered(group)
            print("recovered: \(group.replayedRecords) record(s) replayed, \(group.rejournaledBlocks) block(s) re-journaled, "
                  + "journal through LSN \(group.recovery.lastLSN); stopped cleanly")
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay the journal onto each disk's initial content and compare with the primary.",
            discussion: """
                Exit 0 when identical, 1 on a difference, 4 when writes arrived during the check (inconclusive: run it \
                again at a quiet moment), 65 on a damaged journal.
                """)
        @OptionGroup var site: SiteOption
        @Flag(help: "Print JSON.") var json = false

        struct Report: Encodable {
            struct Disk: Encodable {
                var name: String
                var blocks: Int
                var journaledBlocks: Int
                var mismatchedBlocks: Int
                var firstMismatch: String?
                var firstDigestMismatchBlock: Int?
                var digest: String
            }
            var result: String
            var segments: Int
            var records: Int
            var lastLSN: UInt64
            var writesDuringCheck: UInt64?
            var disks: [Disk]
        }

        func run() throws {
            let s = try site.open()
            let progress = Progress(what: "verifying the journal", total: 0, unit: "blocks")
            let r = try JournalVerifier.verify(site: s) { done, total in progress.update(done, of: total) }
            progress.finish()
            let verdict = r.writesDuringCheck != nil ? "inconclusive" : r.ok ? "identical" : "mismatch"
            if json {
                try printJSON(Report(result: verdict, segments: r.segments, records: r.records, lastLSN: r.lastLSN.rawValue, writesDuringCheck: r.writesDuringCheck,
                                     disks: r.disks.map { .init(name: $0.name, blocks: $0.blocks, journaledBlocks: $0.journaledBlocks, mismatchedBlocks: $0.mismatchedBlocks,
                                                                firstMismatch: $0.firstMismatch?.detail, firstDigestMismatchBlock: $0.firstDigestMismatch,
                                                                digest: $0.root.description) }))
            } else {
                print("journal: \(r.segments) segment(s), \(r.records) record(s), last LSN \(r.lastLSN)")
                for d in r.disks {
                    if let m = d.firstMismatch {
                        print("\(d.name): \(r.writesDuringCheck == nil ? "MISMATCH" : "differs") in \(d.mismatchedBlocks) block(s); first: \(m.detail)")
                    } else {
                        print("\(d.name): identical to the primary (\(d.blocks) blocks, \(d.journaledBlocks) written by the journal)")
                    }
                    if let b = d.firstDigestMismatch { print("\(d.name): digest sidecar disagrees with the primary at block \(b)") }
                    print("\(d.name): digest \(d.root)")
                }
            }
            if let n = r.writesDuringCheck {
                throw LifeboatError(.inconclusive, "inconclusive: \(n) write(s) arrived during the check; run it again at a quiet moment")
            }
            if !r.ok { throw LifeboatError(.mismatch, "the journal does not reproduce the primary") }
        }
    }
}

/// Seconds for a person: 0.3 s, 12 s, 4m10s.
func describeSeconds(_ seconds: Double) -> String {
    seconds < 10 ? String(format: "%.1f s", seconds) : describeDuration(seconds.rounded())
}

extension StatusCommand {
    /// `status --vault DIR`: one line per site's group (Docs/operations.md, "Failover").
    func showVault(_ path: String) throws {
        let home = try VaultHome(root: FilePath(absolutePath(path)), key: try vaultKey(key))
        var groups: [GroupStatus] = []
        if home.hasOwnGroup { groups.append(try GroupStatus(try home.group(site: nil), site: "(its own site)")) }
        for name in try home.siteNames() { groups.append(try GroupStatus(try home.siteGroup(name), site: name)) }
        if json { return try printJSON(groups) }
        print("vault \(home.root): \(groups.count) group(s)")
        let rows = groups.map { g -> [String] in
            [g.site, String(g.generation), g.state.rawValue + (g.drainedLSN.map { " (drained at \($0))" } ?? ""), g.owner, String(g.lastLSN.rawValue),
             g.newestPoint.map { "\($0.id) (\(describeDuration($0.ageSeconds)) old)" } ?? "-",
             g.verifiedPoint.map { "\($0.id) (\(describeDuration($0.ageSeconds)) old)" } ?? "none"]
        }
        printTable(["SITE", "GENERATION", "STATE", "WRITTEN BY", "LAST LSN", "NEWEST POINT", "VERIFIED POINT"], rows)
    }
}
