import Foundation
import LifeboatCore
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Lifeboat never harms the workload and never claims protection that is not there: each test
/// is one way it used to (../shared/findings/2026-11-30-*.md).
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)))
struct TrustTests {
    private static func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func protectOutlivesItsLogPipeClosing() throws {
        let t = try TestSite(disks: [("d0", "16M")])
        defer { t.cleanup() }
        // protect's stderr is a pipe whose reader is gone: every log line now gets EPIPE.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        close(fds[0])
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lifeboatBinary)
        p.arguments = ["protect", t.mountpoint, "--site", t.site]
        p.standardError = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        defer {
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
            _ = try? run(["umount", "-l", t.mountpoint])
        }
        let deadline = Date().addingTimeInterval(20)
        while !isMounted(t.mountpoint) && p.isRunning && Date() < deadline { usleep(20_000) }
        #expect(isMounted(t.mountpoint))
        // A checkpoint makes protect log a line; then writes must still be served.
        try check(lifeboat("checkpoint", "--site", t.site, "--label", "after-the-pipe-closed"))
        let fd = open(t.image("d0"), O_WRONLY)
        let block = [UInt8](repeating: 7, count: 4096)
        #expect(block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 0) } == 4096)
        #expect(fsync(fd) == 0)
        close(fd)
        #expect(p.isRunning, "protect must not die of SIGPIPE")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(!isMounted(t.mountpoint), "a stop with a closed log pipe still unmounts cleanly")
    }

    @Test func aSecondSiteOnAVaultOfAnotherGroupIsRefusedAndLeavesNothing() throws {
        let dir = try makeTemporaryDirectory("groups")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let a = try lifeboat("init", "--site", dir + "/a", "--vault", dir + "/v")
        #expect(a.status == 0)
        let group = try #require(a.stdout.split(separator: "(protection group ").last?.prefix(32)).description
        let b = try lifeboat("init", "--site", dir + "/b", "--vault", dir + "/v")
        #expect(b.status == 73)
        #expect(b.stderr.hasPrefix("lifeboat: error: \(dir)/v: the vault belongs to protection group \(group); this site is group "), "\(b.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/b"), "a refused init leaves no site")
        // A failed init leaves no vault either.
        let c = try lifeboat("init", "--site", "/proc/nope", "--vault", dir + "/v2")
        #expect(c.status == 66)
        #expect(!FileManager.default.fileExists(atPath: dir + "/v2"), "a failed init leaves no vault")
        // Init again on a site that ships to that vault already: nothing to do is an error.
        let again = try lifeboat("init", "--site", dir + "/a", "--vault", dir + "/v")
        #expect(again.status == 73)
        #expect(again.stderr.contains("already ships to this vault"))
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func sitesAndVaultsArePrivateAndAnUnprivilegedUserReadsNothing() throws {
        let old = umask(0)
        defer { umask(old) }
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        defer { t.cleanup() }
        chmod(t.root, 0o755)
        let protect = try t.startProtect()
        let fd = open(t.image("d0"), O_WRONLY)
        let secret = [UInt8](repeating: 0x5A, count: 65536)
        #expect(secret.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) } == 65536)
        #expect(fsync(fd) == 0)
        close(fd)
        try check(lifeboat("checkpoint", "--site", t.site))
        func asNobody(_ command: [String]) throws -> CommandResult {
            try run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command)
        }
        // Every file under the site and the vault, as a local user: nothing can be opened.
        let files = try run(["find", t.site, t.vault, "-type", "f"]).stdout.split(separator: "\n").map(String.init)
        #expect(files.count > 10)
        for file in files {
            #expect(try asNobody(["head", "-c", "1", file]).status != 0, "\(file) is readable by others")
        }
        for (path, mode) in [(t.site, 0o700), (t.vault, 0o700), (t.site + "/site.json", 0o600), (t.vault + "/catalog.sqlite", 0o600)] {
            var st = stat()
            #expect(stat(path, &st) == 0 && Int(st.st_mode & 0o777) == mode, "\(path)")
        }
        // Read-only commands say "permission denied" (77), never "not running" or "damaged".
        let status = try asNobody([lifeboatBinary, "status", "--site", t.site])
        #expect(status.status == 77, "\(status.stdout)\(status.stderr)")
        #expect(!status.stdout.contains("stopped"))
        let verify = try asNobody([lifeboatBinary, "vault", "verify", "--vault", t.vault])
        #expect(verify.status == 77)
        #expect(!verify.stdout.contains("DAMAGED"))
        let checkpoint = try asNobody([lifeboatBinary, "checkpoint", "--site", t.site])
        #expect(checkpoint.status == 77)
        // An older site made readable is tightened when opened.
        chmod(t.site, 0o755)
        chmod(t.site + "/site.json", 0o644)
        try check(lifeboat("status", "--site", t.site))
        var st = stat()
        #expect(stat(t.site, &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(stat(t.site + "/site.json", &st) == 0 && st.st_mode & 0o777 == 0o600)
        #expect(protect.stop() == 0)
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func journalVerifyDuringWritesIsInconclusiveNotAMismatch() throws {
        let t = try TestSite(disks: [("d0", "64M")])
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let writer = RandomWriter(image: t.image("d0"), seed: 5)
        usleep(300_000)
        let during = try lifeboat("journal", "verify", "--site", t.site, "--json")
        writer.stop()
        #expect(during.status == 4, "\(during.stderr)")
        #expect(Self.json(during.stdout)["result"] as? String == "inconclusive")
        #expect(during.stderr.contains("write(s) arrived during the check"))
        #expect(!during.stdout.contains("MISMATCH"))
        let quiet = try lifeboat("journal", "verify", "--site", t.site)
        #expect(quiet.status == 0, "\(quiet.stdout)\(quiet.stderr)")
        #expect(protect.stop() == 0)
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func anAppConsistentCheckpointWithNothingToQuiesceIsCrashConsistentAndExits3() throws {
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let dev = try t.attachLoop(t.image("d0"))  // a VM's disk: a block device, nothing mounted here
        let r = try lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--label", "before-upgrade", "--json")
        #expect(r.status == 3)
        let result = Self.json(r.stdout)
        #expect(result["kind"] as? String == "crash-consistent")
        #expect((result["notAppConsistentBecause"] as? String)?.hasPrefix("nothing was quiesced") == true)
        #expect(result["pointID"] != nil)
        let points = try lifeboat("points", "--vault", t.vault, "--json")
        #expect(!points.stdout.contains("\"app-consistent\""), "no point may claim app-consistency")
        t.detachLoop(dev)
        #expect(protect.stop() == 0)
    }

    @Test func anInterruptedDiskImportLeavesNothingAndTheNameStaysFree() throws {
        let dir = try makeTemporaryDirectory("import")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check(lifeboat("init", "--site", dir + "/site"))
        let image = dir + "/big.raw"
        // Real data (not a hole) so the copy takes a while.
        try check(run(["dd", "if=/dev/urandom", "of=\(image)", "bs=1M", "count=512", "status=none"]))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: lifeboatBinary)
        p.arguments = ["disk", "create", "big", "--from", image, "--site", dir + "/site"]
        try p.run()
        // Interrupt once the copy is under way (the primary has data, the disk is not yet in site.json).
        let primary = dir + "/site/disks/big.img"
        for _ in 0..<500 {
            if let size = (try? FileManager.default.attributesOfItem(atPath: primary))?[.size] as? Int, size > 0 { break }
            usleep(2000)
        }
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        #expect(p.terminationStatus == 128 + SIGINT, "interrupted, not finished (make the image bigger if the copy won)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/site/disks").isEmpty)
        try check(lifeboat("disk", "create", "big", "--size", "1M", "--site", dir + "/site"))
    }

    @Test func aTruncatedDynamicVHDIsRefusedNotImportedAsRaw() throws {
        let dir = try makeTemporaryDirectory("vhd")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check(lifeboat("init", "--site", dir + "/site"))
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Images/fixtures/qemu-dynamic.vhd").path
        let whole = try Data(contentsOf: URL(fileURLWithPath: fixture))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: dir + "/truncated.vhd"))
        let r = try lifeboat("disk", "create", "t", "--from", dir + "/truncated.vhd", "--size", "8M", "--site", dir + "/site")
        #expect(r.status == 65)
        #expect(r.stderr.contains("truncated dynamic VHD"))
        #expect(!r.stderr.contains("--size"))
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func diskRemoveRefusesWhatRecoveryNeedsAndRemovesTheRest() throws {
        let t = try TestSite(disks: [("d0", "16M"), ("mistake", "16M")])
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let busy = try lifeboat("disk", "remove", "mistake", "--site", t.site)
        #expect(busy.status == 75)
        #expect(busy.stderr.contains("in use by a running `lifeboat protect`"))
        let fd = open(t.image("d0"), O_WRONLY)
        let block = [UInt8](repeating: 1, count: 4096)
        #expect(block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 0) } == 4096)
        close(fd)
        #expect(protect.stop() == 0)
        let journaled = try lifeboat("disk", "remove", "d0", "--site", t.site)
        #expect(journaled.status == 75)
        #expect(journaled.stderr.contains("the local journal holds 1 write(s) to disk 'd0'"), "\(journaled.stderr)")
        try check(lifeboat("disk", "remove", "mistake", "--site", t.site))
        #expect(!FileManager.default.fileExists(atPath: t.site + "/disks/mistake.img"))
        #expect(try lifeboat("disk", "list", "--site", t.site).stdout.contains("mistake") == false)
        let unknown = try lifeboat("disk", "remove", "mistake", "--site", t.site)
        #expect(unknown.status == 66)
        #expect(unknown.stderr.contains("(it has: d0)"))
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func pruneDryRunChangesNothingAndAMountedReadOfADamagedBaseIsLogged() throws {
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect(["--point-interval", "0.3", "--seal-interval", "0.2"])
        let fd = open(t.image("d0"), O_WRONLY)
        for i in 0..<20 {
            let data = randomBytes(4096, seed: UInt64(i))
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, (i % 4) * 4096) }
            fdatasync(fd)
            usleep(100_000)
        }
        close(fd)
        try check(lifeboat("checkpoint", "--site", t.site))
        #expect(protect.stop() == 0)
        let before = try lifeboat("points", "--vault", t.vault, "--json").stdout
        let dry = try lifeboat("vault", "prune", "--vault", t.vault, "--window", "1s", "--keep-all", "1s", "--every", "1s", "--dry-run", "--json")
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect((Self.json(dry.stdout)["removedPoints"] as? [Any])?.isEmpty == false, "\(dry.stdout)")
        #expect(try lifeboat("points", "--vault", t.vault, "--json").stdout == before, "a dry run removes nothing")
        // Damage a block of the base that the newest point reads from the base (block 100: never written).
        let base = t.vault + "/bases/0.img"
        let b = open(base, O_WRONLY)
        var x: UInt8 = 0xFF
        #expect(pwrite(b, &x, 1, 100 * 4096 + 17) == 1)
        close(b)
        let view = t.root + "/view"
        try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
        let log = t.root + "/mount.log"
        try #require(FileManager.default.createFile(atPath: log, contents: nil))
        let m = Process()
        m.executableURL = URL(fileURLWithPath: lifeboatBinary)
        m.arguments = ["mount", view, "--vault", t.vault, "--point", "latest"]
        m.standardError = FileHandle(forWritingAtPath: log)
        try m.run()
        defer {
            if m.isRunning { kill(m.processIdentifier, SIGTERM) }
            m.waitUntilExit()
            if isMounted(view) { _ = try? run(["umount", "-l", view]) }
        }
        let deadline = Date().addingTimeInterval(20)
        while !isMounted(view) && m.isRunning && Date() < deadline { usleep(20_000) }
        let read = try run(["dd", "if=\(view)/d0.img", "of=/dev/null", "bs=4096", "skip=100", "count=1", "iflag=direct", "status=none"])
        #expect(read.status != 0, "a damaged block is never served")
        kill(m.processIdentifier, SIGTERM)
        m.waitUntilExit()
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("block 100 does not match its checksum"), "the mount's log names the damage: \(text)")
    }

    @Test func aDamagedCatalogIsExit65ThroughTheOnePrinter() throws {
        let dir = try makeTemporaryDirectory("catalog")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check(lifeboat("init", "--site", dir + "/site", "--vault", dir + "/v"))
        try check(run(["sqlite3", dir + "/v/catalog.sqlite", "DROP TABLE point"]))
        for command in [["points"], ["vault", "verify"]] {
            let r = try lifeboat(command + ["--vault", dir + "/v"])
            #expect(r.status == 65, "\(command): \(r.stderr)")
            #expect(r.stderr.hasPrefix("lifeboat: error: \(dir)/v/catalog.sqlite: cannot read the vault catalog: no such table: point"), "\(r.stderr)")
        }
    }

    @Test func oneDurationSyntaxEverywhereAndNonFiniteValuesAreRefused() throws {
        let dir = try makeTemporaryDirectory("durations")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try check(lifeboat("init", "--site", dir + "/site"))
        for (args, message) in [
            (["protect", dir, "--site", dir + "/site", "--point-interval", "inf"], "'inf' is not a point interval"),
            (["protect", dir, "--site", dir + "/site", "--seal-interval", "1e300"], "'1e300' is not a seal interval"),
            (["protect", dir, "--site", dir + "/site", "--segment-size", "100T"], "--segment-size must be between 1M and 4G"),
            (["checkpoint", "--site", dir + "/site", "--timeout", "0s"], "the timeout must be greater than 0"),
            (["checkpoint", "--site", dir + "/site", "--pre", "true"], "--pre, --while-frozen, --post and --guest-agent work only with --app-consistent"),
        ] {
            let r = try lifeboat(args)
            #expect(r.status == 64, "\(args): \(r.stderr)")
            #expect(r.stderr.hasPrefix("lifeboat: error: ") && r.stderr.contains(message), "\(args): \(r.stderr)")
            #expect(!r.stderr.contains("Swift runtime failure"))
        }
        // Both forms are accepted: the checkpoint then fails only because nothing runs.
        for timeout in ["30", "30s", "0.5m"] {
            let r = try lifeboat("checkpoint", "--site", dir + "/site", "--timeout", timeout)
            #expect(r.status == 66, "\(timeout): \(r.stderr)")
        }
    }
}
