import Foundation
import LifeboatCore
import LifeboatTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Failover (issue 13, decision 0012) across test hosts: site A in a namespace shipping to
/// `vault serve` on the vault host B, which becomes the recovery host.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)),
       .enabled(if: canMount && canMakeNetworks, "needs root, /dev/fuse, iproute2 and nftables; CI runs it"))
struct FailoverTests {
    typealias Setup = NetworkVaultTests.Setup

    /// A's network cut while it goes on writing → unplanned failover on B to `latest` → B's disk
    /// is the point at once, writable, journaled and shipped as generation 2 → A comes back and is
    /// fenced (its writes refused, durably, and said why) → commit; the bad inputs change nothing.
    @Test func anUnplannedFailoverServesThePointAtOnceAndFencesTheOldSite() throws {
        let s = try Setup()
        defer { s.cleanup() }
        try check(s.net.run(in: "site", [lifeboatBinary, "init", "--site", s.t.site, "--vault", s.address, "--bundle", try s.enroll("branch")]))
        _ = try s.t.startProtect(["--point-interval", "1", "--seal-interval", "1"], launcher: s.net.command(in: "site", []))
        try writeBytes(s.t.image("d0"), at: 1 << 20, randomBytes(8 << 20, seed: 41))
        let chosen = try s.t.checkpointInVault("--label", "chosen")
        let atPoint = s.t.root + "/at-point.raw"
        try check(lifeboat("export", "--vault", s.vault, "--key", s.key, "--point", String(chosen), "--disk", "d0", atPoint))
        #expect(try run(["cmp", atPoint, s.t.site + "/disks/d0.img"]).status == 0)

        // A is cut off and keeps serving its workload (issue 12): these writes never reach B.
        try s.net.partition("site", true)
        try writeBytes(s.t.image("d0"), at: 20 << 20, randomBytes(1 << 20, seed: 42))

        // Unplanned failover on B, to the newest point B holds.
        let recovered = s.t.root + "/recovered"
        let report = try lifeboat("failover", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", "latest", "--to", recovered, "--yes", "--json")
        #expect(report.status == 0, "\(report.stdout)\(report.stderr)")
        let json = (try? JSONSerialization.jsonObject(with: Data(report.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(json["generation"] as? Int == 2 && json["pointID"] as? Int == chosen, "\(report.stdout)")
        #expect(report.stderr.contains("no passing drill in the last 180 days"), "\(report.stderr)")
        // Bad input changes nothing: a second failover while the first is not committed, a commit
        // of a site never failed over, a point selector that names nothing.
        let again = try lifeboat("failover", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", "latest", "--to", s.t.root + "/again", "--yes")
        #expect(again.status == 75 && again.stderr.contains("already failed over"), "\(again.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.t.root + "/again"))
        let unknown = try lifeboat("failover", "--vault", s.vault, "--key", s.key, "--site", "nobody", "--point", "latest", "--yes")
        #expect(unknown.status == 66 && unknown.stderr.contains("no group of site 'nobody'"), "\(unknown.stderr)")
        let ungated = try run(["/bin/sh", "-c", "\"$0\" failover --vault \"$1\" --key \"$2\" --site branch --point latest --to \"$3\" < /dev/null",
                               lifeboatBinary, s.vault, s.key, s.t.root + "/ungated"])
        #expect(ungated.status == 64 && ungated.stderr.contains("say --yes"), "\(ungated.stderr)")

        // B serves the point at once: the disk reads as the point, takes writes, and ships them
        // to the vault as generation 2; its first point after the fill equals the disk.
        let b = ProtectedSiteOnTheVaultHost(site: recovered, mountpoint: s.t.root + "/mnt-b")
        defer { b.stop() }
        try b.start()
        #expect(try run(["cmp", atPoint, b.image("d0")]).status == 0, "the failed-over disk reads as the point before any fill")
        try writeBytes(b.image("d0"), at: 40 << 20, randomBytes(2 << 20, seed: 43))
        let bPoint = try b.checkpointInVault()
        let exported = s.t.root + "/b-point.raw"
        try check(lifeboat("export", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", String(bPoint), "--disk", "d0", exported))
        #expect(try run(["cmp", exported, b.image("d0")]).status == 0, "generation 2's point equals the failed-over disk")

        // A comes back: at its first contact the vault refuses it and it fences itself — its
        // writes get EROFS, status says why, and the fence outlives a restart.
        try s.net.partition("site", false)
        let fenced = try s.status(within: 30) { $0.contains("FENCED") }
        #expect(fenced.contains("FENCED") && fenced.contains("the group is in generation 2"), "\(fenced)\n\(s.t.protect?.output ?? "")")
        #expect(try writeErrno(s.t.image("d0"), at: 30 << 20) == EROFS)
        #expect(s.t.protect?.stop() == 0)
        _ = try s.t.startProtect([], launcher: s.net.command(in: "site", []))
        #expect(try writeErrno(s.t.image("d0"), at: 30 << 20) == EROFS, "fenced again at once after a restart, before any contact")
        // A's writes after the fork never entered the history: the vault's points are A's up to
        // the fork, then B's.
        try check(lifeboat("export", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", String(chosen), "--disk", "d0", exported + ".2"))
        #expect(try run(["cmp", exported + ".2", atPoint]).status == 0)

        // Commit: final; a second one is refused, and so is a point older than the fork.
        try check(lifeboat("failover", "commit", "--vault", s.vault, "--key", s.key, "--site", "branch"))
        let twice = try lifeboat("failover", "commit", "--vault", s.vault, "--key", s.key, "--site", "branch")
        #expect(twice.status == 64 && twice.stderr.contains("no failover to commit"), "\(twice.stderr)")
        let older = try lifeboat("failover", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", "lsn:1", "--to", s.t.root + "/older", "--yes")
        #expect(older.status != 0 && (older.stderr.contains("older than generation 2's fork") || older.stderr.contains("outside what the vault holds")), "\(older.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.t.root + "/older"))
        b.stop()
        #expect(try lifeboat("vault", "verify", "--vault", s.vault, "--key", s.key, "--site", "branch").status == 0)
    }

    /// The whole lifecycle across hosts (issue 13): A protected over the network → A cut off,
    /// still writing → unplanned failover on B to `latest` → writes on B → A back, fenced →
    /// re-protect B→A over the wire (the bytes moved are the blocks changed on either side, not
    /// the disk) → planned failback (zero loss: A's disk equals B's final point, by digest and
    /// byte) → A protects again into the same vault → a drill of the newest point passes.
    @Test func theWholeLifecycleMovesOnlyWhatChangedAndLosesNothing() throws {
        let s = try Setup()
        defer { s.cleanup() }
        try check(s.net.run(in: "site", [lifeboatBinary, "init", "--site", s.t.site, "--vault", s.address, "--bundle", try s.enroll("branch")]))
        _ = try s.t.startProtect(["--point-interval", "1", "--seal-interval", "1"], launcher: s.net.command(in: "site", []))
        try writeBytes(s.t.image("d0"), at: 1 << 20, randomBytes(8 << 20, seed: 81))
        try s.t.checkpointInVault("--label", "before")
        try s.net.partition("site", true)
        try writeBytes(s.t.image("d0"), at: 20 << 20, randomBytes(1 << 20, seed: 82))  // A's own, after the fork: replaced later

        let recovered = s.t.root + "/recovered"
        try check(lifeboat("failover", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", "latest", "--to", recovered, "--yes"))
        let b = ProtectedSiteOnTheVaultHost(site: recovered, mountpoint: s.t.root + "/mnt-b")
        defer { b.stop() }
        try b.start()
        try writeBytes(b.image("d0"), at: 40 << 20, randomBytes(2 << 20, seed: 83))
        let bPoint = try b.checkpointInVault()
        try check(lifeboat("failover", "commit", "--vault", s.vault, "--key", s.key, "--site", "branch"))
        try s.net.partition("site", false)
        #expect(try s.status(within: 30) { $0.contains("FENCED") }.contains("FENCED"))
        #expect(try writeErrno(s.t.image("d0"), at: 30 << 20) == EROFS)
        #expect(s.t.protect?.stop() == 0)

        // Re-protect while the vault is out of reach: one clear line, nothing changed at A.
        try s.net.partition("site", true)
        let unreachable = try s.net.run(in: "site", [lifeboatBinary, "reprotect", "--site", s.t.site])
        #expect(unreachable.status == 74 && unreachable.stderr.contains("the vault at \(s.address)"), "\(unreachable.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.t.site + "/reprotect") && !FileManager.default.fileExists(atPath: s.t.site + "/kept"))
        try s.net.partition("site", false)

        // Re-protect B→A, on A's host over the wire: 1 MiB of A's own + 2 MiB of B's move, not 64 MiB.
        let reprotect = try s.net.run(in: "site", [lifeboatBinary, "reprotect", "--site", s.t.site, "--json"])
        let diagnosis = reprotect.status == 0 ? "" : try whereTheyDiffer(s, bPoint: bPoint, a: s.t.site + "/disks/d0.img", b: recovered + "/disks/d0.img")
        #expect(reprotect.status == 0, "\(reprotect.stdout)\(reprotect.stderr)\n\(diagnosis)")
        let rp = (try? JSONSerialization.jsonObject(with: Data(reprotect.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(rp["bytesMoved"] as? Int == 3 << 20, "\(reprotect.stdout)")
        let disk = (rp["disks"] as? [[String: Any]])?.first ?? [:]
        #expect(disk["replacedHereBlocks"] as? Int == 256 && disk["writtenThereBlocks"] as? Int == 512 && disk["digestEqual"] as? Bool == true, "\(disk)")
        #expect((rp["keptJournal"] as? String).map { FileManager.default.fileExists(atPath: $0) } == true, "A's own writes are kept, not deleted")

        // More writes on B, then the planned failback to A: B drains, A catches up, owns it again.
        try writeBytes(b.image("d0"), at: 50 << 20, randomBytes(1 << 20, seed: 84))
        let failback = try s.net.run(in: "site", [lifeboatBinary, "failback", "--site", s.t.site, "--yes", "--json"])
        #expect(failback.status == 0, "\(failback.stdout)\(failback.stderr)\n\(b.process?.output ?? "")")
        let fb = (try? JSONSerialization.jsonObject(with: Data(failback.stdout.utf8))) as? [String: Any] ?? [:]
        #expect(fb["generation"] as? Int == 3 && fb["digestsEqual"] as? Bool == true, "\(failback.stdout)")
        #expect(((fb["catchUp"] as? [String: Any])?["bytesMoved"] as? Int).map { $0 >= 1 << 20 && $0 < 4 << 20 } == true, "\(failback.stdout)")
        #expect(try writeErrno(b.image("d0"), at: 60 << 20) == EROFS, "B drained: it serves no more writes")
        #expect(try run(["cmp", b.image("d0"), s.t.site + "/disks/d0.img"]).status == 0, "zero loss: A's disk is B's at its final point")
        b.stop()

        // A protects again, into the same vault, in generation 3; the newest point passes a drill.
        _ = try s.t.startProtect(["--point-interval", "1", "--seal-interval", "1"], launcher: s.net.command(in: "site", []))
        try writeBytes(s.t.image("d0"), at: 60 << 20, randomBytes(1 << 20, seed: 85))
        let last = try s.t.checkpointInVault("--label", "home-again")
        let plan = s.t.root + "/plan.yaml"
        try "disks:\n  d0:\n    filesystem: none\n    checks:\n      - digest: {timeout: 5m}\n".write(toFile: plan, atomically: true, encoding: .utf8)
        let drill = try lifeboat("drill", plan, "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", String(last), "--work-dir", s.t.root + "/drills")
        #expect(drill.status == 0, "\(drill.stdout)\(drill.stderr)")
        try s.expectALastPointEqualToThePrimary("A's newest point after the failback equals its primary")
        #expect(try lifeboat("vault", "verify", "--vault", s.vault, "--key", s.key, "--site", "branch").status == 0)
    }

    /// The issue's workload through the lifecycle: ext4 on A's disk with a `fio --verify` file and
    /// a SQLite database, an app-consistent point, A cut off → unplanned failover to `latest-app`
    /// on B, where fio's data verifies and the database is whole, then grows → A back and fenced
    /// (its unmount's writes after the fork are its own) → re-protect → failback → on A, fio's
    /// data of both sides verifies, the database has B's rows, e2fsck is clean, a drill passes.
    @Test func anExt4AndSQLiteWorkloadSurvivesFailoverAndFailback() throws {
        let s = try Setup()
        defer { s.cleanup() }
        try check(s.net.run(in: "site", [lifeboatBinary, "init", "--site", s.t.site, "--vault", s.address, "--bundle", try s.enroll("branch")]))
        _ = try s.t.startProtect(["--point-interval", "1", "--seal-interval", "1"], launcher: s.net.command(in: "site", []))
        try check(run(["mkfs.ext4", "-q", "-F", s.t.image("d0")]))
        var dev = try s.t.attachLoop(s.t.image("d0"))
        try check(run(["mount", dev, s.t.fsMount]))
        func fio(_ file: String, write: Bool) throws -> CommandResult {
            try run(["fio", "--name=\(write ? "write" : "verify")", "--filename=\(file)", "--rw=\(write ? "write" : "read")", "--bs=64k", "--size=8M",
                     "--ioengine=psync", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--verify_state_save=0", "--output-format=terse"])
        }
        try check(fio(s.t.fsMount + "/a.fio", write: true))
        _ = try sqlite(s.t.fsMount + "/app.db", "CREATE TABLE orders(id INTEGER PRIMARY KEY, amount INTEGER); "
                    + "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) INSERT INTO orders(amount) SELECT i FROM n;")
        let app = try lifeboat("checkpoint", "--site", s.t.site, "--app-consistent", "--label", "app", "--json", "--timeout", "120s")
        #expect(app.status == 0 && app.stdout.contains("\"pointID\""), "\(app.stdout)\(app.stderr)")
        try s.net.partition("site", true)

        let recovered = s.t.root + "/recovered"
        try check(lifeboat("failover", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", "latest-app", "--to", recovered, "--yes"))
        let b = ProtectedSiteOnTheVaultHost(site: recovered, mountpoint: s.t.root + "/mnt-b")
        defer { b.stop() }
        try b.start()
        let bfs = s.t.root + "/fs-b"
        try FileManager.default.createDirectory(atPath: bfs, withIntermediateDirectories: true)
        let bdev = try s.t.attachLoop(b.image("d0"))
        try check(run(["mount", bdev, bfs]))
        #expect(try fio(bfs + "/a.fio", write: false).status == 0, "A's fio data verifies on B")
        #expect(try sqlite(bfs + "/app.db", "PRAGMA integrity_check; SELECT count(*) FROM orders;") == "ok\n1000")
        try check(fio(bfs + "/b.fio", write: true))
        _ = try sqlite(bfs + "/app.db", "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500) INSERT INTO orders(amount) SELECT i FROM n;")
        try check(run(["umount", bfs]))
        s.t.detachLoop(bdev)
        try b.checkpointInVault()
        try check(lifeboat("failover", "commit", "--vault", s.vault, "--key", s.key, "--site", "branch"))

        // A: its filesystem unmounted while cut off (those writes are its own, after the fork),
        // then back, fenced, stopped, re-protected.
        try check(run(["umount", s.t.fsMount]))
        s.t.detachLoop(dev)
        try s.net.partition("site", false)
        #expect(try s.status(within: 30) { $0.contains("FENCED") }.contains("FENCED"))
        #expect(s.t.protect?.stop() == 0)
        let reprotect = try s.net.run(in: "site", [lifeboatBinary, "reprotect", "--site", s.t.site])
        #expect(reprotect.status == 0, "\(reprotect.stdout)\(reprotect.stderr)")
        let failback = try s.net.run(in: "site", [lifeboatBinary, "failback", "--site", s.t.site, "--yes"])
        #expect(failback.status == 0 && failback.stdout.contains("zero loss"), "\(failback.stdout)\(failback.stderr)")
        b.stop()

        // Home again: both sides' data verify, the database has B's rows, the filesystem is clean.
        #expect(try run(["e2fsck", "-fn", s.t.site + "/disks/d0.img"]).status == 0, "A's ext4 after the failback is clean")
        _ = try s.t.startProtect(["--point-interval", "1", "--seal-interval", "1"], launcher: s.net.command(in: "site", []))
        dev = try s.t.attachLoop(s.t.image("d0"))
        try check(run(["mount", dev, s.t.fsMount]))
        #expect(try fio(s.t.fsMount + "/a.fio", write: false).status == 0)
        #expect(try fio(s.t.fsMount + "/b.fio", write: false).status == 0, "B's fio data verifies on A")
        #expect(try sqlite(s.t.fsMount + "/app.db", "PRAGMA integrity_check; SELECT count(*) FROM orders;") == "ok\n1500")
        let home = try lifeboat("checkpoint", "--site", s.t.site, "--app-consistent", "--label", "home", "--json", "--timeout", "120s")
        let homeID = ((try? JSONSerialization.jsonObject(with: Data(home.stdout.utf8))) as? [String: Any])?["pointID"] as? Int
        #expect(home.status == 0 && homeID != nil, "\(home.stdout)\(home.stderr)")
        try check(run(["umount", s.t.fsMount]))
        s.t.detachLoop(dev)
        let plan = s.t.root + "/plan.yaml"
        try "disks:\n  d0:\n    filesystem: ext4\n    checks:\n      - digest\n      - fsck\n      - sqlite: {database: app.db}\n".write(toFile: plan, atomically: true, encoding: .utf8)
        let drill = try lifeboat("drill", plan, "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", String(homeID ?? 0), "--work-dir", s.t.root + "/drills")
        #expect(drill.status == 0, "\(drill.stdout)\(drill.stderr)")
    }

    /// A failed-over disk is writable before it is filled: a 4 GiB disk with data spread over it
    /// reads as its point through the vault while the fill runs, takes a write, and the fill
    /// never overwrites it; no point is marked until the fill ends (the digest would be wrong).
    @Test func aLargeFailedOverDiskIsWritableBeforeItIsFilled() throws {
        let t = try TestSite(disks: [("big", "4G")], withVault: true)
        defer { t.cleanup() }
        _ = try t.startProtect(["--point-interval", "1"])
        for k in 0..<16 { try writeBytes(t.image("big"), at: Int64(k) << 28, randomBytes(1 << 20, seed: UInt64(50 + k))) }
        let chosen = try t.checkpointInVault()
        #expect(t.protect?.stop() == 0)
        let recovered = t.root + "/recovered"
        let started = Date()
        try check(lifeboat("failover", "--vault", t.vault, "--point", String(chosen), "--to", recovered, "--yes"))
        let b = ProtectedSiteOnTheVaultHost(site: recovered, mountpoint: t.root + "/mnt-b")
        defer { b.stop() }
        try b.start()
        let written = randomBytes(4096, seed: 70)
        try writeBytes(b.image("big"), at: (5 << 28) + 8192, written)
        let ready = Date().timeIntervalSince(started)
        #expect(ready < 10, "failover to the first acknowledged write took \(ready) s")
        let early = try lifeboat("checkpoint", "--site", recovered)
        #expect(early.status != 0 && early.stderr.contains("still being filled"), "\(early.stdout)\(early.stderr)")
        // Every piece reads as written, whether filled yet or not.
        for k in 0..<16 {
            var expected = randomBytes(1 << 20, seed: UInt64(50 + k))
            if k == 5 { expected.replaceSubrange(8192..<(8192 + 4096), with: written) }
            #expect(try readBytes(b.image("big"), at: Int64(k) << 28, count: 1 << 20) == expected, "piece \(k)")
        }
        // Once filled, a point; the fill kept the write.
        let filled = Date().addingTimeInterval(120)
        while FileManager.default.fileExists(atPath: recovered + "/disks/big.fill") && Date() < filled { usleep(200_000) }
        #expect(!FileManager.default.fileExists(atPath: recovered + "/disks/big.fill"))
        let point = try b.checkpointInVault()
        let exported = t.root + "/after.raw"
        try check(lifeboat("export", "--vault", t.vault, "--point", String(point), "--disk", "big", exported))
        #expect(try run(["cmp", exported, recovered + "/disks/big.img"]).status == 0)
        #expect(try readBytes(exported, at: (5 << 28) + 8192, count: 4096) == written)
    }
}

/// `protect` of a failed-over site on the vault host (outside any test namespace).
final class ProtectedSiteOnTheVaultHost {
    let site: String
    let mountpoint: String
    var process: ProtectProcess?

    init(site: String, mountpoint: String) {
        self.site = site
        self.mountpoint = mountpoint
    }

    /// `pointInterval`: how often protect marks a point by itself while there are writes; a test
    /// that compares the points of two runs sets it long, so that only its own points exist.
    func start(pointInterval: String = "1") throws {
        try FileManager.default.createDirectory(atPath: mountpoint, withIntermediateDirectories: true)
        process = try ProtectProcess(site: site, mountpoint: mountpoint, extra: ["--point-interval", pointInterval])
    }

    func image(_ name: String) -> String { mountpoint + "/" + name + ".img" }

    @discardableResult
    func checkpointInVault() throws -> Int {
        var last = CommandResult(status: 0, stdout: "", stderr: "")
        for _ in 0..<120 {  // the fill must end before a point can be marked
            last = try lifeboat("checkpoint", "--site", site, "--json", "--timeout", "60s")
            let json = (try? JSONSerialization.jsonObject(with: Data(last.stdout.utf8))) as? [String: Any] ?? [:]
            if last.status == 0, let id = json["pointID"] as? Int { return id }
            guard last.stderr.contains("still being filled") else { break }
            usleep(500_000)
        }
        throw TestFailure("no point on the failed-over site: \(last.stdout)\(last.stderr)\n\(process?.output ?? "")")
    }

    func stop() {
        _ = process?.stop()
        process = nil
        if isMounted(mountpoint) { _ = try? run(["umount", "-l", mountpoint]) }
    }
}

func writeBytes(_ path: String, at offset: Int64, _ bytes: [UInt8]) throws {
    let fd = try FileDescriptor.open(path, .writeOnly)
    try fd.closeAfter {
        _ = try fd.writeAll(toAbsoluteOffset: offset, bytes)
        guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
    }
}

func readBytes(_ path: String, at offset: Int64, count: Int) throws -> [UInt8] {
    let fd = try FileDescriptor.open(path, .readOnly)
    return try fd.closeAfter {
        var out = [UInt8](repeating: 0, count: count)
        _ = try out.withUnsafeMutableBytes { try fd.read(fromAbsoluteOffset: offset, into: $0) }
        return out
    }
}

/// The errno a one-block write gets, 0 when it is taken.
func writeErrno(_ path: String, at offset: Int64) throws -> Int32 {
    let fd = try FileDescriptor.open(path, .writeOnly)
    defer { try? fd.close() }
    do { _ = try fd.writeAll(toAbsoluteOffset: offset, [UInt8](repeating: 7, count: 4096)) } catch let e as Errno { return e.rawValue }
    return fsync(fd.rawValue) == 0 ? 0 : errno
}

/// For a failed re-protect's message: the 4 KiB blocks where B's point (exported), A's disk and
/// B's disk differ, so that a digest mismatch names the side that is wrong and where.
private func whereTheyDiffer(_ s: FailoverTests.Setup, bPoint: Int, a: String, b: String) throws -> String {
    let exported = s.t.root + "/diagnosis-point.raw"
    defer { unlink(exported) }
    let export = try lifeboat("export", "--vault", s.vault, "--key", s.key, "--site", "branch", "--point", String(bPoint), "--disk", "d0", exported)
    guard export.status == 0 else { return "(no export of point \(bPoint): \(export.stderr))" }
    func blocks(_ x: String, _ y: String) throws -> String {
        let out = try run(["cmp", "-l", x, y]).stdout
        let differing = Set(out.split(separator: "\n").compactMap { $0.split(separator: " ").first.flatMap { Int64($0) }.map { ($0 - 1) >> 12 } })
        return differing.isEmpty ? "equal" : "\(differing.count) blocks differ, first \(differing.sorted().prefix(8).map(String.init).joined(separator: ", "))"
    }
    return "point \(bPoint) vs A's disk: \(try blocks(exported, a)); point vs B's disk: \(try blocks(exported, b))"
}
