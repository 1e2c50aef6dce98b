import Foundation
import LifeboatCore
import Synchronization
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Protect with a vault, end to end: shipping, app-consistent points, exports, outages.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct ShippingTests {
    /// Writes files with fsync into `directory` until `stop` is set.
    static func fileLoad(_ directory: String, stop: StopFlag) -> Thread {
        let t = Thread {
            var i = 0
            while !stop.isRaised {
                let data = randomBytes(8192 + (i * 7919) % 100_000, seed: UInt64(i))
                let fd = open(directory + "/load-\(i % 40)", O_CREAT | O_WRONLY | O_TRUNC, 0o644)
                guard fd >= 0 else { return }
                _ = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                fsync(fd)
                close(fd)
                i += 1
            }
        }
        t.start()
        return t
    }

    static func waitFor(_ t: Thread) { while !t.isFinished { usleep(10_000) } }

    @Test func appConsistentPointExportsExactlyTheFrozenState() throws {
        let t = try TestSite(disks: [("d0", "128M"), ("d1", "64M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect()
        try check(run(["mkfs.ext4", "-q", "-F", t.image("d0")]))
        let dev = try t.attachLoop(t.image("d0"))
        try check(run(["mount", dev, t.fsMount]))
        let stop = StopFlag()
        let load = Self.fileLoad(t.fsMount, stop: stop)
        // Meanwhile a raw disk of the same group takes an fio write+verify load.
        let fio = Process()
        fio.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        fio.arguments = ["fio", "--name=load", "--verify_state_save=0", "--filename=\(t.image("d1"))", "--rw=randwrite", "--bs=16k", "--size=48M",
                         "--ioengine=psync", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--fsync=8", "--output-format=terse"]
        fio.standardOutput = FileHandle.nullDevice
        try fio.run()
        usleep(800_000)
        let frozenCopy = t.root + "/frozen.img"
        let checkpoint = try lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--label", "test", "--json",
                                      "--pre", "true", "--post", "true",
                                      "--while-frozen", "cp --sparse=always \(t.site)/disks/d0.img \(frozenCopy)")
        stop.raise()
        Self.waitFor(load)
        fio.waitUntilExit()
        #expect(fio.terminationStatus == 0, "fio --verify failed through the checkpoint")
        #expect(checkpoint.status == 0, "\(checkpoint.stderr)")
        let result = try JSONSerialization.jsonObject(with: Data(checkpoint.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(result["kind"] as? String == "app-consistent")
        #expect((result["frozen"] as? [String]) == [t.fsMount])
        #expect(result["pointID"] != nil, "the point reached the vault: \(checkpoint.stdout)\nprotect's log:\n\(protect.output)")

        let exported = t.root + "/export.raw"
        try check(lifeboat("export", "--vault", t.vault, "--point", "latest-app", "--disk", "d0", "--format", "raw", exported))
        #expect(try run(["cmp", exported, frozenCopy]).status == 0, "export at the app-consistent point equals the frozen copy")
        // The point's digest, taken on the write path at the marker, equals the exported image's.
        let digest = (result["digests"] as? [String: String])?["d0"]
        let fd = try FileDescriptor.open(exported, .readOnly)
        defer { try? fd.close() }
        #expect(digest == (try DiskDigest.root(ofImage: fd, sizeBytes: 128 << 20)).description)
        // A frozen filesystem is clean: no journal replay needed.
        #expect(try run(["e2fsck", "-fn", exported]).status == 0)
        // The raw disk at the same point (same cut, same LSN) matches its digest too.
        let raw1 = t.root + "/export-d1.raw"
        try check(lifeboat("export", "--vault", t.vault, "--point", "latest-app", "--disk", "d1", raw1))
        let fd1 = try FileDescriptor.open(raw1, .readOnly)
        defer { try? fd1.close() }
        #expect((result["digests"] as? [String: String])?["d1"] == (try DiskDigest.root(ofImage: fd1, sizeBytes: 64 << 20)).description)

        try check(run(["umount", t.fsMount]))
        t.detachLoop(dev)
        #expect(protect.stop() == 0)
        #expect(try lifeboat("vault", "verify", "--vault", t.vault).status == 0)
        let verify = try lifeboat("journal", "verify", "--site", t.site)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
    }

    @Test func aVaultOutageInTheMiddleOfAWriteLoadLosesNothing() throws {
        let t = try TestSite(disks: [("d0", "64M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let writer = RandomWriter(image: t.image("d0"), seed: 77)
        usleep(1_500_000)
        try check(run(["mv", t.vault, t.vault + ".away"]))
        usleep(3_000_000)
        let during = try lifeboat("status", "--site", t.site)
        #expect(during.stdout.contains("shipping paused"), "\(during.stdout)")
        #expect(protect.process.isRunning)
        // A checkpoint during the outage: the point is marked (in the journal), and protect's
        // shipper says why it is not in the vault, at once rather than at the timeout.
        let start = Date()
        let paused = try lifeboat("checkpoint", "--site", t.site, "--label", "outage", "--json", "--timeout", "20s")
        #expect(paused.status == 0, "\(paused.stderr)")
        #expect(paused.stdout.contains("\"notInVaultBecause\" : \"shipping is paused: "), "\(paused.stdout)")
        #expect(!paused.stdout.contains("\"pointID\""), "\(paused.stdout)")
        #expect(Date().timeIntervalSince(start) < 10, "a paused shipper is said at once, not after the 20 s wait")
        try check(run(["mv", t.vault + ".away", t.vault]))
        // Back: the next checkpoint gets the vault's id for its point, from protect.
        let back = try lifeboat("checkpoint", "--site", t.site, "--label", "back", "--json", "--timeout", "60s")
        let backJSON = try JSONSerialization.jsonObject(with: Data(back.stdout.utf8)) as? [String: Any] ?? [:]
        let id = try #require(backJSON["pointID"] as? Int, "\(back.stdout)\(back.stderr)")
        let listed = try JSONSerialization.jsonObject(with: Data(try lifeboat("points", "--vault", t.vault, "--json").stdout.utf8)) as? [[String: Any]] ?? []
        #expect(listed.first { $0["id"] as? Int == id }?["label"] as? String == "back", "the id names the vault's point of that checkpoint")
        writer.stop()
        // Shipping catches up by itself: wait until the vault holds everything written.
        var shipped = 0, appended = -1
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline {
            let status = try lifeboat("status", "--site", t.site, "--json")
            let json = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any] ?? [:]
            shipped = (json["shipping"] as? [String: Any])?["shippedLSN"] as? Int ?? 0
            appended = (json["journal"] as? [String: Any])?["appendedLSN"] as? Int ?? -1
            if shipped == appended { break }
            usleep(500_000)
        }
        #expect(shipped == appended, "everything shipped after the outage")
        #expect(protect.stop() == 0)
        let exported = t.root + "/last.raw"
        try check(lifeboat("export", "--vault", t.vault, "--point", "lsn:\(shipped)", "--disk", "d0", exported))
        #expect(try run(["cmp", exported, t.site + "/disks/d0.img"]).status == 0)
        #expect(try lifeboat("vault", "verify", "--vault", t.vault).status == 0)
    }

    @Test func aFailedHookGivesACrashConsistentPointWithTheReasonAndThawsEverything() throws {
        let t = try TestSite(disks: [("d0", "64M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect()
        try check(run(["mkfs.ext4", "-q", "-F", t.image("d0")]))
        let dev = try t.attachLoop(t.image("d0"))
        try check(run(["mount", dev, t.fsMount]))
        // The while-frozen hook fails after the freeze: the point must not claim app-consistency,
        // and the filesystem must be thawed (a write to it succeeds right after).
        let r = try lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--label", "nightly", "--json",
                             "--while-frozen", "echo broken >&2; exit 3")
        #expect(r.status == 3, "a quiesce that failed is not a success: \(r.stderr)")
        #expect(r.stderr.contains("lifeboat: error: the point is crash-consistent, not app-consistent: while-frozen hook 'echo broken >&2; exit 3' failed (exit 3): broken"))
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(json["kind"] as? String == "crash-consistent")
        #expect((json["notAppConsistentBecause"] as? String)?.contains("exit 3") == true)
        #expect((json["frozen"] as? [String]) == [t.fsMount])
        let write = try run(["timeout", "5", "dd", "if=/dev/zero", "of=\(t.fsMount)/after", "bs=4k", "count=1", "conv=fsync", "status=none"])
        #expect(write.status == 0, "the filesystem was left frozen")
        let points = try lifeboat("points", "--vault", t.vault, "--json")
        #expect(points.stdout.contains("\"label\" : \"nightly\""), "the reason is reported, not written into the user's label")
        #expect(points.stdout.contains("\"note\" : \"not app-consistent: while-frozen hook 'echo broken >&2; exit 3' failed (exit 3): broken\""),
                "the reason is kept with the point, in a field of its own: \(points.stdout)")
        #expect(!points.stdout.contains("\"app-consistent\""))
        // A failing pre-hook: nothing is frozen at all.
        let pre = try lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--json", "--pre", "false")
        let preJSON = try JSONSerialization.jsonObject(with: Data(pre.stdout.utf8)) as? [String: Any] ?? [:]
        #expect(preJSON["kind"] as? String == "crash-consistent")
        #expect((preJSON["frozen"] as? [String]) == [])
        try check(run(["umount", t.fsMount]))
        t.detachLoop(dev)
        #expect(protect.stop() == 0)
    }

    /// Every point's marker digest (taken on the write path) must equal its export's digest.
    static func checkEveryPoint(_ t: TestSite, sizeBytes: Int64, _ context: String) throws -> Int {
        let list = try lifeboat("points", "--vault", t.vault, "--json")
        let points = try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]] ?? []
        for p in points {
            let id = p["id"] as? Int ?? -1
            let digests = p["digests"] as? [String: String] ?? [:]
            let out = t.root + "/point-\(id).raw"
            try check(lifeboat("export", "--vault", t.vault, "--point", String(id), "--disk", "d0", out))
            let fd = try FileDescriptor.open(out, .readOnly)
            #expect(try DiskDigest.root(ofImage: fd, sizeBytes: sizeBytes).description == digests["d0"], "\(context): point \(id)")
            try fd.close()
            unlink(out)
        }
        return points.count
    }

    @Test func killNineDuringPruneLosesNoRetainedPoint() throws {
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect(["--point-interval", "0.3", "--seal-interval", "0.2"])
        let fd = open(t.image("d0"), O_WRONLY)
        var g = SplitMix(state: 8)
        let until = Date().addingTimeInterval(4)
        while Date() < until {
            let data = randomBytes(16384, seed: g.next())
            _ = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, Int(g.next() % 1000) * 16384) }
            fdatasync(fd)
        }
        close(fd)
        try check(lifeboat("checkpoint", "--site", t.site, "--label", "last"))
        #expect(protect.stop() == 0)
        let before = try Self.checkEveryPoint(t, sizeBytes: 16 << 20, "before")
        #expect(before > 5)
        // Kill prunes at different moments; after each, every remaining point must still be exact.
        for delay in [2_000, 10_000, 30_000, 80_000] as [useconds_t] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: lifeboatBinary)
            p.arguments = ["vault", "prune", "--vault", t.vault, "--window", "2s", "--keep-all", "1s", "--every", "1s"]
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            usleep(delay)
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            _ = try Self.checkEveryPoint(t, sizeBytes: 16 << 20, "after kill at \(delay) µs")
        }
        // The policy again: a killed prune may have died before it stored its options (a loaded
        // machine takes longer than the longest delay to start one), and the default keeps 24 h.
        try check(lifeboat("vault", "prune", "--vault", t.vault, "--window", "2s", "--keep-all", "1s", "--every", "1s"))
        let after = try Self.checkEveryPoint(t, sizeBytes: 16 << 20, "after the final prune")
        #expect(after >= 1 && after < before)
        #expect(try lifeboat("vault", "verify", "--vault", t.vault).status == 0)
    }
}
