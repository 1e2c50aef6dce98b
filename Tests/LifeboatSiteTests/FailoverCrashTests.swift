import Foundation
import LifeboatCore
import LifeboatTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `kill -9` between every two durable steps of each transition (decision 0012), then the same
/// command again: it resumes, and the end state equals the uninterrupted run's. The process
/// kills itself at a named step (`LIFEBOAT_CRASH_AT`); each run starts from the same saved state
/// (site, vault and failed-over site copied back in place: their paths are in their files).
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct FailoverCrashTests {
    /// A site with its vault on this machine; its state saved and put back between runs.
    final class Lab {
        let t: TestSite
        var recovered: String { t.root + "/recovered" }
        var snapshot: String { t.root + "/snapshot" }
        var b: ProtectedSiteOnTheVaultHost?

        init() throws { t = try TestSite(disks: [("d0", "64M")], withVault: true) }

        func save() throws {
            try? FileManager.default.removeItem(atPath: snapshot)
            try FileManager.default.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
            for dir in ["site", "vault", "recovered"] where FileManager.default.fileExists(atPath: t.root + "/" + dir) {
                try check(run(["cp", "-a", t.root + "/" + dir, snapshot + "/" + dir]))
            }
        }

        func restore() throws {
            b?.stop()
            for dir in ["site", "vault", "recovered"] {
                try? FileManager.default.removeItem(atPath: t.root + "/" + dir)
                if FileManager.default.fileExists(atPath: snapshot + "/" + dir) { try check(run(["cp", "-a", snapshot + "/" + dir, t.root + "/" + dir])) }
            }
        }

        /// The command killed at `step`, then run again; its second output.
        /// `between` runs after the kill, before the second run (what the interrupted state says).
        func crashThenResume(_ step: String, _ arguments: [String], between: () throws -> Void = {}) throws -> CommandResult {
            var env = ProcessInfo.processInfo.environment
            env["LIFEBOAT_CRASH_AT"] = step
            let killed = try run([lifeboatBinary] + arguments, environment: env)
            #expect(killed.status == SIGKILL, "\(step): \(arguments.first ?? "") was not killed there (exit \(killed.status)): \(killed.stderr)")
            try between()
            env["LIFEBOAT_CRASH_AT"] = nil
            return try run([lifeboatBinary] + arguments, environment: env)
        }

        /// What must be equal after an interrupted and an uninterrupted run: the vault's
        /// generations (tokens aside), each site's generation file (tokens and times aside), its
        /// checkpoint and every disk's bytes.
        func state() throws -> String {
            var out = try sqlite(t.vault + "/catalog.sqlite",
                                "SELECT number, forkLSN, state, pointID, drainedLSN FROM generation ORDER BY number; SELECT lsn, kind FROM point ORDER BY lsn;") + "\n"
            for dir in [t.site, recovered] where FileManager.default.fileExists(atPath: dir + "/site.json") {
                let generation = (try? String(contentsOfFile: dir + "/state/generation.json", encoding: .utf8)) ?? "{}"
                let g = (try? JSONSerialization.jsonObject(with: Data(generation.utf8))) as? [String: Any] ?? [:]
                out += "\(dir): generation \(g["generation"] ?? 1) fork \(g["forkLSN"] ?? "-") replica \(g["replicaLSN"] ?? "-") fenced \(g["fenced"] != nil)\n"
                let checkpoint = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/state/checkpoint.json")))) as? [String: Any] ?? [:]
                out += "checkpoint \(checkpoint["appliedLSN"] ?? "-") clean \(checkpoint["cleanStop"] ?? "-") "
                out += try run(["sha256sum", dir + "/disks/d0.img"]).stdout.prefix(64) + "\n"
            }
            return out
        }

        /// Whether the running protect of `site` says, within 10 s, that generation `generation` fenced it.
        func fenced(_ site: String, by generation: Int) throws -> Bool {
            for _ in 0..<40 {
                let status = try lifeboat("status", "--site", site).stdout
                if status.contains("FENCED") && status.contains("the group is in generation \(generation)") { return true }
                usleep(250_000)
            }
            return false
        }

        func cleanup() {
            b?.stop()
            t.cleanup()
        }
    }

    /// Writes on the site, a point, more writes shipped, protect stopped: the state every test
    /// starts from. The failover goes to the first point: the second write is the old owner's
    /// own, after the fork.
    static func protectedSite(_ lab: Lab) throws -> Int {
        _ = try lab.t.startProtect(["--point-interval", "1"])
        try writeBytes(lab.t.image("d0"), at: 1 << 20, randomBytes(4 << 20, seed: 91))
        let first = try lab.t.checkpointInVault("--label", "first")
        try writeBytes(lab.t.image("d0"), at: 16 << 20, randomBytes(1 << 20, seed: 92))
        try lab.t.checkpointInVault("--label", "second")
        #expect(lab.t.protect?.stop() == 0)
        return first
    }

    /// From `protectedSite`: failed over to its first point, 2 MiB written on the failed-over
    /// site and a point there, committed; both sites stopped.
    static func failedOverToTheFirstPoint(_ lab: Lab) throws {
        let first = try protectedSite(lab)
        try check(lifeboat("failover", "--vault", lab.t.vault, "--point", String(first), "--to", lab.recovered, "--yes"))
        lab.b = ProtectedSiteOnTheVaultHost(site: lab.recovered, mountpoint: lab.t.root + "/mnt-b")
        try lab.b!.start()
        try writeBytes(lab.b!.image("d0"), at: 40 << 20, randomBytes(2 << 20, seed: 93))
        try lab.b!.checkpointInVault()
        lab.b!.stop()
        try check(lifeboat("failover", "commit", "--vault", lab.t.vault))
    }

    @Test func anUnplannedFailoverKilledAtAnyStepResumesToTheSameEnd() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        let first = try Self.protectedSite(lab)
        try lab.save()
        let command = ["failover", "--vault", lab.t.vault, "--point", String(first), "--to", lab.recovered, "--yes"]
        try check(run([lifeboatBinary] + command))
        let uninterrupted = try lab.state()
        for step in ["failover.prepared", "failover.forked"] {
            try lab.restore()
            let resumed = try lab.crashThenResume(step, command)
            #expect(resumed.status == 0 && resumed.stdout.contains("interrupted failover, finished now"), "\(step): \(resumed.stdout)\(resumed.stderr)")
            let after = try lab.state()
            #expect(after == uninterrupted, "\(step): \(after)\n---- uninterrupted:\n\(uninterrupted)")
        }
    }

    /// After a failover to the first point and writes on the failed-over site: re-protect of
    /// the old site killed at each step, run again: the same replica, equal to the newest point.
    @Test func aReprotectKilledAtAnyStepResumesToTheSameEnd() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        try Self.failedOverToTheFirstPoint(lab)
        try lab.save()
        let command = ["reprotect", "--site", lab.t.site, "--json"]
        let clean = try run([lifeboatBinary] + command)
        #expect(clean.status == 0, "\(clean.stdout)\(clean.stderr)")
        let report = (try? JSONSerialization.jsonObject(with: Data(clean.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(report["bytesMoved"] as? Int == 3 << 20, "the old owner's 1 MiB after the fork and the new owner's 2 MiB: \(clean.stdout)")
        let uninterrupted = try lab.state()
        #expect(try run(["cmp", lab.t.site + "/disks/d0.img", lab.recovered + "/disks/d0.img"]).status == 0)
        for step in ["reprotect.staged", "reprotect.planned", "reprotect.applied", "reprotect.kept"] {
            try lab.restore()
            let resumed = try lab.crashThenResume(step, command) {
                // Killed after its plan, the site says it is re-protecting; before it, nothing was switched.
                let status = try lifeboat("status", "--site", lab.t.site).stdout
                #expect(status.contains("re-protecting") == (step != "reprotect.staged"), "\(step): \(status)")
            }
            #expect(resumed.status == 0, "\(step): \(resumed.stdout)\(resumed.stderr)")
            let after = try lab.state()
            #expect(after == uninterrupted, "\(step): \(after)\n---- uninterrupted:\n\(uninterrupted)")
        }
    }

    /// A replica follows the group through a second failover: re-protected in generation 2, the
    /// failed-over site lost in turn, a new one in generation 3 — the replica catches up again,
    /// moving only what was written since it was last equal.
    @Test func aReplicaFollowsTheGroupThroughAnotherFailover() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        try Self.failedOverToTheFirstPoint(lab)
        try check(lifeboat("reprotect", "--site", lab.t.site))
        try lab.b!.start()
        try writeBytes(lab.b!.image("d0"), at: 44 << 20, randomBytes(1 << 20, seed: 99))
        try lab.b!.checkpointInVault()
        lab.b!.stop()
        let second = lab.t.root + "/recovered-again"
        try check(lifeboat("failover", "--vault", lab.t.vault, "--point", "latest", "--to", second, "--yes"))
        let c = ProtectedSiteOnTheVaultHost(site: second, mountpoint: lab.t.root + "/mnt-c")
        defer { c.stop() }
        try c.start()
        try writeBytes(c.image("d0"), at: 48 << 20, randomBytes(1 << 20, seed: 100))
        try c.checkpointInVault()
        c.stop()
        try check(lifeboat("failover", "commit", "--vault", lab.t.vault))
        let again = try lifeboat("reprotect", "--site", lab.t.site, "--json")
        let report = (try? JSONSerialization.jsonObject(with: Data(again.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(again.status == 0 && report["generation"] as? Int == 3 && report["bytesMoved"] as? Int == 2 << 20, "\(again.stdout)\(again.stderr)")
        #expect(try run(["cmp", lab.t.site + "/disks/d0.img", second + "/disks/d0.img"]).status == 0)
    }

    /// From a re-protected old site, with the failed-over site serving: a failback killed at each
    /// step, run again: the old site owns generation 3 with the failed-over site's final bytes.
    @Test func aFailbackKilledAtAnyStepResumesToTheSameEnd() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        try Self.failedOverToTheFirstPoint(lab)
        try check(lifeboat("reprotect", "--site", lab.t.site))
        try lab.save()
        /// The failed-over site serving again with the same last write, then the failback.
        func failback(crashingAt step: String?) throws -> CommandResult {
            try lab.restore()
            // The runs are compared LSN for LSN: the write is shipped under a point of the test's
            // before the failback, so neither a point of protect's own (interval) nor a seal by
            // age (which takes an LSN) can fall between it and the drain in one run and not another.
            try lab.b!.start(pointInterval: "600")
            try writeBytes(lab.b!.image("d0"), at: 50 << 20, randomBytes(1 << 20, seed: 95))
            try lab.b!.checkpointInVault()
            let command = ["failback", "--site", lab.t.site, "--yes"]
            let result = try step.map { try lab.crashThenResume($0, command) } ?? run([lifeboatBinary] + command)
            #expect(result.status == 0, "\(step ?? "uninterrupted"): \(result.stdout)\(result.stderr)\n\(lab.b!.process?.output ?? "")")
            #expect(try run(["cmp", lab.t.site + "/disks/d0.img", lab.recovered + "/disks/d0.img"]).status == 0, "\(step ?? "uninterrupted"): zero loss")
            #expect(try lab.fenced(lab.recovered, by: 3), "\(step ?? "uninterrupted"): the old owner is fenced at its next round")
            lab.b!.stop()
            return result
        }
        _ = try failback(crashingAt: nil)
        let uninterrupted = try lab.state()
        #expect(uninterrupted.contains("3|"), "\(uninterrupted)")
        for step in ["failback.asked", "reprotect.staged", "reprotect.planned", "reprotect.applied", "failback.caught-up", "failback.pending", "failback.took-over"] {
            _ = try failback(crashingAt: step)
            let after = try lab.state()
            #expect(after == uninterrupted, "\(step): \(after)\n---- uninterrupted:\n\(uninterrupted)")
        }
    }

    /// A failback whose catch-up fails after the owner drained (here A's disk cannot be opened
    /// for writing) withdraws itself: the owner serves writes again instead of waiting, drained,
    /// for `failover cancel`. Once mended, the failback runs again and loses nothing.
    @Test func aFailbackWhoseCatchUpFailsLetsTheOwnerServeAgain() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        try Self.failedOverToTheFirstPoint(lab)
        try check(lifeboat("reprotect", "--site", lab.t.site))
        try lab.b!.start(pointInterval: "600")
        try writeBytes(lab.b!.image("d0"), at: 50 << 20, randomBytes(1 << 20, seed: 97))
        let primary = lab.t.site + "/disks/d0.img"
        try check(run(["mv", primary, primary + ".aside"]))
        try FileManager.default.createDirectory(atPath: primary, withIntermediateDirectories: false)
        let failed = try lifeboat("failback", "--site", lab.t.site, "--yes")
        #expect(failed.status != 0 && failed.stderr.contains("the failback is withdrawn"), "\(failed.stdout)\(failed.stderr)")
        #expect(try Self.servesWrites(lab.b!.image("d0"), at: 60 << 20), "the owner serves writes again\n\(lab.b!.process?.output ?? "")")
        try FileManager.default.removeItem(atPath: primary)
        try check(run(["mv", primary + ".aside", primary]))
        let again = try lifeboat("failback", "--site", lab.t.site, "--yes")
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)\n\(lab.b!.process?.output ?? "")")
        #expect(try run(["cmp", primary, lab.recovered + "/disks/d0.img"]).status == 0, "zero loss, the write after the withdrawal too")
    }

    /// A replica whose disk is not what the history says (here a block changed behind its back,
    /// leaf and all): the failback's switch finds the digest unequal, claims nothing, withdraws,
    /// and records it; the next failback compares every block with the point, moves the ones that
    /// differ and ends equal to the owner, losing nothing.
    @Test func aReplicaUnequalToItsPointIsFoundAndHealedByTheNextFailback() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        try Self.failedOverToTheFirstPoint(lab)
        try check(lifeboat("reprotect", "--site", lab.t.site))
        let primary = lab.t.site + "/disks/d0.img"
        try writeBytes(primary, at: 60 << 20, randomBytes(4096, seed: 99))
        try Self.rehash(primary, sidecar: lab.t.site + "/disks/d0.digest")
        try lab.b!.start(pointInterval: "600")
        try writeBytes(lab.b!.image("d0"), at: 50 << 20, randomBytes(1 << 20, seed: 100))

        let found = try lifeboat("failback", "--site", lab.t.site, "--yes")
        #expect(found.status == 1 && found.stderr.contains("the disk differs from the history") && found.stderr.contains("the failback is withdrawn"),
                "\(found.stdout)\(found.stderr)")
        let generation = try String(contentsOfFile: lab.t.site + "/state/generation.json", encoding: .utf8)
        #expect(generation.contains("\"replicaDiffers\":true") || generation.contains("\"replicaDiffers\" : true"), "\(generation)")
        let serves = try Self.servesWrites(lab.b!.image("d0"), at: 62 << 20)
        let status = try lifeboat("status", "--site", lab.recovered).stdout
        #expect(serves, "the owner serves writes again\n\(status)\n\(lab.b!.process?.output ?? "")")

        let healed = try lifeboat("failback", "--site", lab.t.site, "--yes", "--json")
        #expect(healed.status == 0, "\(healed.stdout)\(healed.stderr)")
        let disk = (((try? JSONSerialization.jsonObject(with: Data(healed.stdout.utf8))) as? [String: Any])?["catchUp"] as? [String: Any])
            .flatMap { ($0["disks"] as? [[String: Any]])?.first } ?? [:]
        // The changed block, and the owner's write after the withdrawal: nothing else differed.
        #expect(disk["comparedWholeDisk"] as? Bool == true && disk["replacedHereBlocks"] as? Int == 2 && disk["digestEqual"] as? Bool == true, "\(disk)")
        #expect(try run(["cmp", primary, lab.recovered + "/disks/d0.img"]).status == 0, "equal to the owner's final point")
        #expect(!(try String(contentsOfFile: lab.t.site + "/state/generation.json", encoding: .utf8)).contains("replicaDiffers"))
    }

    /// Rewrites a disk's digest sidecar from its primary (as a disk changed with its leaves).
    static func rehash(_ primary: String, sidecar: String) throws {
        let fd = try FileDescriptor.open(primary, .readOnly)
        try fd.closeAfter {
            let blocks = Int(try fd.seek(offset: 0, from: .end) >> 12)
            var leaves = [UInt8](repeating: 0, count: blocks * DiskDigest.leafBytes)
            try leaves.withUnsafeMutableBytes { try DiskDigest.computeLeaves(ofImage: fd, blocks: blocks, into: $0.baseAddress!) }
            try Data(leaves).write(to: URL(fileURLWithPath: sidecar))
        }
    }

    /// The same for a planned failover whose failed-over site cannot be made (`--to` lies under
    /// a file): the source serves writes again, and nothing is left at `--to`.
    @Test func aPlannedFailoverThatCannotMakeItsSiteLetsTheSourceServeAgain() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        _ = try Self.protectedSite(lab)
        _ = try lab.t.startProtect(["--point-interval", "600"])
        try writeBytes(lab.t.image("d0"), at: 30 << 20, randomBytes(1 << 20, seed: 98))
        let file = lab.t.root + "/a-file"
        try Data().write(to: URL(fileURLWithPath: file))
        let failed = try lifeboat("failover", "--vault", lab.t.vault, "--planned", "--to", file + "/recovered", "--yes")
        #expect(failed.status != 0 && failed.stderr.contains("the planned failover is withdrawn"), "\(failed.stdout)\(failed.stderr)")
        #expect(try Self.servesWrites(lab.t.image("d0"), at: 40 << 20), "the source serves writes again\n\(lab.t.protect?.output ?? "")")
        let generation = try sqlite(lab.t.vault + "/catalog.sqlite", "SELECT number, state FROM generation ORDER BY number DESC LIMIT 1")
        #expect(generation.hasPrefix("1|") && !generation.contains("planned"), "\(generation)")
        #expect(lab.t.protect?.stop() == 0)
    }

    /// A planned failover killed after it made its site, then withdrawn (`failover cancel`): the
    /// source writes on past the drained point, so the site made for that point is never forked
    /// — the command run again refuses, and the group stays in generation 1.
    @Test func aSiteMadeForAWithdrawnPlanIsNeverForked() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        _ = try Self.protectedSite(lab)
        _ = try lab.t.startProtect(["--point-interval", "600"])
        let command = ["failover", "--vault", lab.t.vault, "--planned", "--to", lab.recovered, "--yes"]
        var env = ProcessInfo.processInfo.environment
        env["LIFEBOAT_CRASH_AT"] = "failover.prepared"
        #expect(try run([lifeboatBinary] + command, environment: env).status == SIGKILL)
        try check(lifeboat("failover", "cancel", "--vault", lab.t.vault))
        #expect(try Self.servesWrites(lab.t.image("d0"), at: 40 << 20), "the source serves writes again\n\(lab.t.protect?.output ?? "")")
        let again = try lifeboat(command)
        #expect(again.status == 75 && again.stderr.contains("the plan was withdrawn"), "\(again.stdout)\(again.stderr)")
        let generation = try sqlite(lab.t.vault + "/catalog.sqlite", "SELECT max(number) FROM generation")
        #expect(generation == "1", "\(generation)")
        #expect(lab.t.protect?.stop() == 0)
    }

    /// Whether a one-block write at `offset` is taken within 15 s (a drained owner sees a
    /// withdrawn plan at its next round with the vault).
    static func servesWrites(_ image: String, at offset: Int64) throws -> Bool {
        for _ in 0..<60 {
            if try writeErrno(image, at: offset) == 0 { return true }
            usleep(250_000)
        }
        return false
    }

    /// Before commit, the failed-over site goes back to the older point: its disks read as that
    /// point, its writes since are discarded (set aside), and the old site's re-protect then
    /// replaces what it wrote after the new fork too. Killed at each step, run again: the same.
    @Test func aChangeOfPointKilledAtAnyStepResumesToTheSameEnd() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        let first = try Self.protectedSite(lab)
        try check(lifeboat("failover", "--vault", lab.t.vault, "--point", "latest", "--to", lab.recovered, "--yes"))
        lab.b = ProtectedSiteOnTheVaultHost(site: lab.recovered, mountpoint: lab.t.root + "/mnt-b")
        try lab.b!.start()
        try writeBytes(lab.b!.image("d0"), at: 40 << 20, randomBytes(2 << 20, seed: 98))
        try lab.b!.checkpointInVault()
        lab.b!.stop()
        try lab.save()
        let atFirst = lab.t.root + "/first.raw"
        try check(lifeboat("export", "--vault", lab.t.vault, "--point", String(first), "--disk", "d0", atFirst))
        let command = ["failover", "change-point", "--vault", lab.t.vault, "--point", String(first), "--to", lab.recovered, "--yes"]
        try check(run([lifeboatBinary] + command))
        let uninterrupted = try lab.state()
        // Nothing to protect until it is finished; then the disks are the first point.
        for step in ["change-point.intent", "change-point.forked"] {
            try lab.restore()
            var env = ProcessInfo.processInfo.environment
            env["LIFEBOAT_CRASH_AT"] = step
            #expect(try run([lifeboatBinary] + command, environment: env).status == SIGKILL)
            let refused = try lifeboat("protect", lab.t.root + "/mnt-b", "--site", lab.recovered)
            #expect(refused.status == 75 && refused.stderr.contains("change of point was interrupted"), "\(step): \(refused.stderr)")
            try check(run([lifeboatBinary] + command))
            let after = try lab.state()
            #expect(after == uninterrupted, "\(step): \(after)\n---- uninterrupted:\n\(uninterrupted)")
        }
        try lab.b!.start()
        #expect(try run(["cmp", atFirst, lab.b!.image("d0")]).status == 0, "the failed-over disk is the first point again")
        lab.b!.stop()
        let again = try lifeboat(command)
        #expect(again.status == 64 && again.stderr.contains("not older than the failover's"), "\(again.stderr)")
        // The old site's own writes after the new fork (its second MiB) are replaced by re-protect.
        try check(lifeboat("failover", "commit", "--vault", lab.t.vault))
        let reprotect = try lifeboat("reprotect", "--site", lab.t.site, "--json")
        let disk = ((try? JSONSerialization.jsonObject(with: Data(reprotect.stdout.utf8))) as? [String: Any])?["disks"] as? [[String: Any]]
        #expect(reprotect.status == 0 && disk?.first?["replacedHereBlocks"] as? Int == 256, "\(reprotect.stdout)\(reprotect.stderr)")
        #expect(try run(["cmp", atFirst, lab.t.site + "/disks/d0.img"]).status == 0)
    }

    /// A planned failover killed at each step, run again: the failed-over site's disks are the
    /// source's at its final point, and the source is fenced.
    @Test func aPlannedFailoverKilledAtAnyStepResumesToTheSameEnd() throws {
        let lab = try Lab()
        defer { lab.cleanup() }
        _ = try Self.protectedSite(lab)
        try lab.save()
        func plannedFailover(crashingAt step: String?) throws {
            try lab.restore()
            _ = try lab.t.startProtect(["--point-interval", "600"])
            try writeBytes(lab.t.image("d0"), at: 30 << 20, randomBytes(1 << 20, seed: 96))
            try lab.t.checkpointInVault()  // shipped before the failover: see the failback's test
            let command = ["failover", "--vault", lab.t.vault, "--planned", "--to", lab.recovered, "--yes"]
            let result = try step.map { try lab.crashThenResume($0, command) } ?? run([lifeboatBinary] + command)
            #expect(result.status == 0, "\(step ?? "uninterrupted"): \(result.stdout)\(result.stderr)\n\(lab.t.protect?.output ?? "")")
            #expect(try lab.fenced(lab.t.site, by: 2), "\(step ?? "uninterrupted"): the source is fenced at its next round")
            #expect(lab.t.protect?.stop() == 0)
            let exported = lab.t.root + "/final.raw"
            unlink(exported)
            try check(lifeboat("export", "--vault", lab.t.vault, "--point", "latest", "--disk", "d0", exported))
            #expect(try run(["cmp", exported, lab.t.site + "/disks/d0.img"]).status == 0, "\(step ?? "uninterrupted"): zero loss")
        }
        try plannedFailover(crashingAt: nil)
        let uninterrupted = try lab.state()
        for step in ["failover.planned", "failover.prepared", "failover.forked"] {
            try plannedFailover(crashingAt: step)
            let after = try lab.state()
            #expect(after == uninterrupted, "\(step): \(after)\n---- uninterrupted:\n\(uninterrupted)")
        }
    }
}
