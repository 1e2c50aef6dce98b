import Foundation
import LifeboatCore
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// kill -9 of `protect` at random moments under an fsync-ing load, then restart: every write
/// whose fsync returned must be there (the dm-log-writes "md5 at mark" oracle, applied to
/// our own acknowledgements), nothing may appear that was never written, and the journal must
/// still replay to the primary.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct CrashTests {
    /// Block b's content for write number `seq`: b and seq in the first 16 bytes, then bytes
    /// derived from both, so a torn or misplaced block never passes for another.
    static func pattern(block: Int, seq: UInt64) -> [UInt8] {
        var bytes = randomBytes(4096, seed: seq &* 0x1000_0000 &+ UInt64(block))
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt64(block), toByteOffset: 0, as: UInt64.self)
            $0.storeBytes(of: seq, toByteOffset: 8, as: UInt64.self)
        }
        return bytes
    }

    /// What the writers were told: per block, every seq issued and the newest seq acknowledged.
    final class Ledger: @unchecked Sendable {
        let lock = NSLock()
        var issued: [Int: Set<UInt64>] = [:]
        var acked: [Int: UInt64] = [:]
        var acknowledgedWrites = 0
    }

    /// Writers: each owns a range of blocks, writes one block, fdatasyncs, records the ack;
    /// stops at the first error (the daemon is gone).
    static func runWriters(file: String, threads: Int, blocksPerThread: Int, ledger: Ledger, seqBase: UInt64) -> [Thread] {
        (0..<threads).map { t in
            let thread = Thread {
                let fd = open(file, O_RDWR)
                guard fd >= 0 else { return }
                defer { close(fd) }
                var g = SplitMix(state: seqBase + UInt64(t))
                var seq = seqBase + UInt64(t) << 32
                while true {
                    seq += 1
                    let block = t * blocksPerThread + Int(g.next() % UInt64(blocksPerThread))
                    let data = pattern(block: block, seq: seq)
                    _ = ledger.lock.withLock { ledger.issued[block, default: []].insert(seq) }
                    let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, block * 4096) }
                    guard n == 4096, fdatasync(fd) == 0 else { return }
                    ledger.lock.withLock {
                        ledger.acked[block] = seq
                        ledger.acknowledgedWrites += 1
                    }
                }
            }
            thread.start()
            return thread
        }
    }

    static func waitFor(_ threads: [Thread]) {
        while threads.contains(where: { !$0.isFinished }) { usleep(10_000) }
    }

    @Test func acknowledgedRawWritesSurviveKillNineAtManyPoints() throws {
        let t = try TestSite(disks: [("d0", "64M")])
        defer { t.cleanup() }
        let ledger = Ledger()
        var g = SplitMix(state: 2026)
        for round in 0..<6 {
            let protect = try t.startProtect(["--segment-size", "1M"])
            let writers = Self.runWriters(file: t.image("d0"), threads: 4, blocksPerThread: 2048, ledger: ledger, seqBase: UInt64(round) << 40)
            usleep(useconds_t(200_000 + g.next() % 1_000_000))
            protect.crash()
            Self.waitFor(writers)
            try check(run(["umount", "-l", t.mountpoint]))

            let restarted = try t.startProtect()
            #expect(restarted.output.contains("did not stop cleanly"))
            let fd = open(t.image("d0"), O_RDONLY)
            var block = [UInt8](repeating: 0, count: 4096)
            for (b, seq) in ledger.lock.withLock({ ledger.acked }) {
                _ = block.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, b * 4096) }
                let (foundBlock, foundSeq) = block.withUnsafeBytes { ($0.load(fromByteOffset: 0, as: UInt64.self), $0.load(fromByteOffset: 8, as: UInt64.self)) }
                #expect(foundBlock == UInt64(b), "round \(round): block \(b) holds block \(foundBlock)'s data")
                #expect(foundSeq >= seq, "round \(round): block \(b) lost acknowledged write \(seq) (has \(foundSeq))")
                #expect(ledger.issued[b]?.contains(foundSeq) == true && block == Self.pattern(block: b, seq: foundSeq),
                        "round \(round): block \(b) holds data that was never written")
            }
            close(fd)  // an open file keeps the mount busy, and protect then refuses to stop
            #expect(restarted.stop() == 0)
        }
        #expect(ledger.acknowledgedWrites > 100)
        let verify = try lifeboat("journal", "verify", "--site", t.site)
        #expect(verify.status == 0, "\(verify.stdout)")
    }

    /// `journal recover`: refused while protect runs; after a kill -9, replays the journal and
    /// re-journals the active regions (the 1 MiB written: 256 blocks) without serving, stops
    /// cleanly, and the journal then verifies identical; `status` says stopped, the disk's last
    /// LSN is the recovered one, and what waits to ship includes the re-journaled records.
    @Test func journalRecoverAfterAKillReplaysAndReJournalsWithoutServing() throws {
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let fd = open(t.image("d0"), O_RDWR)
        let data = randomBytes(1 << 20, seed: 42)
        #expect(data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4 << 20) } == 1 << 20)
        #expect(fsync(fd) == 0)
        close(fd)
        let busy = try lifeboat("journal", "recover", "--site", t.site)
        #expect(busy.status == 75, "refused while protect runs: \(busy.stderr)")
        protect.crash()
        try check(run(["umount", "-l", t.mountpoint]))
        let recovered = try lifeboat("journal", "recover", "--site", t.site)
        #expect(recovered.status == 0, "\(recovered.stderr)")
        #expect(recovered.stdout.contains("256 block(s) re-journaled"), "\(recovered.stdout)")
        #expect(recovered.stderr.contains("did not stop cleanly"))
        let verify = try lifeboat("journal", "verify", "--site", t.site)
        #expect(verify.status == 0, "\(verify.stdout)")
        let status = try lifeboat("status", "--site", t.site, "--json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])
        #expect(json["state"] as? String == "stopped")
        let journal = try #require(json["journal"] as? [String: Any])
        let disk = try #require((json["disks"] as? [[String: Any]])?.first)
        let appended = try #require(journal["appendedLSN"] as? Int)
        #expect((disk["lastLSN"] as? Int ?? 0) > appended - 4, "the last LSN of the disk is the re-journaled one (then a seal and markers)")
        let shipping = try #require(json["shipping"] as? [String: Any])
        let shipped = try #require(shipping["shippedLSN"] as? Int)
        if shipped < appended {
            #expect((shipping["pendingBytes"] as? Int ?? 0) > 0, "the records not yet shipped are waiting, not 0 B: \(status.stdout)")
        }
        let again = try lifeboat("journal", "recover", "--site", t.site)
        #expect(again.stdout.contains("0 block(s) re-journaled"), "after a clean stop there is nothing to re-journal: \(again.stdout)")
    }

    @Test func fsyncedExt4FilesSurviveKillNineAndFsckIsClean() throws {
        let t = try TestSite(disks: [("d0", "256M")])
        defer { t.cleanup() }
        var p = try t.startProtect()
        try check(run(["mkfs.ext4", "-q", "-F", t.image("d0")]))
        var acked: [String: [UInt8]] = [:]
        var g = SplitMix(state: 99)
        for round in 0..<3 {
            let dev = try t.attachLoop(t.image("d0"))
            try check(run(["mount", dev, t.fsMount]))
            let done = Mutex<[String: [UInt8]]>([:])
            let fsMount = t.fsMount
            let writer = Thread {
                let dirfd = open(fsMount, O_RDONLY | O_DIRECTORY)
                defer { close(dirfd) }
                for i in 0..<100_000 {
                    let name = "r\(round)-f\(i)"
                    let data = randomBytes(4096 + (i * 7919) % 60_000, seed: UInt64(round * 1_000_000 + i))
                    let fd = open(fsMount + "/" + name, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
                    guard fd >= 0 else { return }
                    let n = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    let synced = n == data.count && fsync(fd) == 0 && fsync(dirfd) == 0
                    close(fd)
                    guard synced else { return }
                    done.withLock { $0[name] = data }
                }
            }
            writer.start()
            usleep(useconds_t(500_000 + g.next() % 1_000_000))
            p.crash()
            Self.waitFor([writer])
            acked.merge(done.withLock { $0 }) { $1 }
            try check(run(["umount", "-l", t.fsMount]))
            t.detachLoop(dev)
            try check(run(["umount", "-l", t.mountpoint]))

            p = try t.startProtect()
            // Mounting replays ext4's own journal; then every fsynced file must be intact.
            let dev2 = try t.attachLoop(t.image("d0"))
            try check(run(["mount", dev2, t.fsMount]))
            for (name, data) in acked {
                #expect(FileManager.default.contents(atPath: t.fsMount + "/" + name).map(Array.init) == data, "round \(round): \(name)")
            }
            try check(run(["umount", t.fsMount]))
            t.detachLoop(dev2)
            let fsck = try run(["e2fsck", "-fn", t.image("d0")])
            #expect(fsck.status == 0, "round \(round) e2fsck: \(fsck.stdout)")
        }
        #expect(acked.count > 10)
        #expect(p.stop() == 0)
        #expect(try lifeboat("journal", "verify", "--site", t.site).status == 0)
    }

    /// fio's own crash oracle: the write phase saves which writes completed (verify_state_save)
    /// when the daemon dies under it; after the restart a verify-only pass checks exactly those.
    @Test func fioVerifyStateHoldsAcrossKillNine() throws {
        let t = try TestSite(disks: [("d0", "64M")])
        defer { t.cleanup() }
        var g = SplitMix(state: 5)
        /// The running protect's appended LSN (`status --json`), once it says it is protecting.
        func appendedWhileProtecting() throws -> Int? {
            let r = try lifeboat("status", "--site", t.site, "--json")
            guard let json = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
                  json["state"] as? String == "protecting" else { return nil }
            return (json["journal"] as? [String: Any])?["appendedLSN"] as? Int
        }
        for round in 0..<3 {
            let protect = try t.startProtect()
            var started: Int?
            let ready = Date().addingTimeInterval(60)
            while started == nil, Date() < ready {
                started = try appendedWhileProtecting()
                if started == nil { usleep(100_000) }
            }
            let before = try #require(started, "round \(round): status says protecting")
            let job = ["fio", "--name=crash\(round)", "--filename=\(t.image("d0"))", "--rw=randwrite", "--bs=4k", "--size=32M",
                       "--verify=crc32c", "--ioengine=psync", "--randseed=\(round + 1)"]
            let writer = Process()
            writer.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            writer.arguments = job + ["--do_verify=0", "--fsync=1", "--verify_state_save=1", "--time_based", "--runtime=60"]
            writer.currentDirectoryURL = URL(fileURLWithPath: t.root)
            writer.standardOutput = FileHandle.nullDevice
            writer.standardError = FileHandle.nullDevice
            try writer.run()
            // The kill falls while fio writes, not while it starts (seconds on a loaded CI
            // machine): a fio whose file went away before its first write saves no state.
            let writing = Date().addingTimeInterval(60)
            while Date() < writing, try (appendedWhileProtecting() ?? 0) < before + 100 { usleep(100_000) }
            usleep(useconds_t(g.next() % 1_000_000))
            protect.crash()
            writer.waitUntilExit()
            try check(run(["umount", "-l", t.mountpoint]))
            #expect(FileManager.default.fileExists(atPath: t.root + "/local-crash\(round)-0-verify.state"))

            let restarted = try t.startProtect()
            let verifier = Process()
            verifier.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            verifier.arguments = job + ["--verify_only", "--verify_state_load=1", "--verify_fatal=1"]
            verifier.currentDirectoryURL = URL(fileURLWithPath: t.root)
            let out = Pipe()
            verifier.standardOutput = out
            verifier.standardError = out
            try verifier.run()
            let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            verifier.waitUntilExit()
            #expect(verifier.terminationStatus == 0, "round \(round): fio verify failed: \(text)")
            #expect(restarted.stop() == 0)
        }
    }
}
