import Foundation
import LifeboatCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The CLI's answers to bad input: one clear line on stderr, a documented exit code
/// (Docs/operations.md), and nothing changed.
@Suite(.exclusiveMachineUse, .timeLimit(.minutes(10))) struct CLITests {
    @Test func siteAndDiskErrorsAreOneLineWithTheirExitCodes() throws {
        let dir = try makeTemporaryDirectory("cli")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let site = dir + "/site"

        let missing = try lifeboat("disk", "list", "--site", site)
        #expect(missing.status == 66)
        #expect(missing.stderr == "lifeboat: error: \(site): no site here (run `lifeboat init --site \(site)` first)\n")

        try check(lifeboat("init", "--site", site))
        let again = try lifeboat("init", "--site", site)
        #expect(again.status == 73)

        let odd = try lifeboat("disk", "create", "d0", "--size", "1000001", "--site", site)
        #expect(odd.status == 64)
        #expect(odd.stderr == "lifeboat: error: disk size 1000001 is not a multiple of 4 KiB\n")

        let notASize = try lifeboat("disk", "create", "d0", "--size", "lots", "--site", site)
        #expect(notASize.status == 64)
        #expect(notASize.stderr.contains("'lots' is not a size"))

        try check(lifeboat("disk", "create", "d0", "--size", "4M", "--site", site))
        let exists = try lifeboat("disk", "create", "d0", "--size", "4M", "--site", site)
        #expect(exists.status == 73)
        #expect(exists.stderr == "lifeboat: error: \(site): disk 'd0' already exists in this site\n")

        let list = try lifeboat("disk", "list", "--site", site)
        #expect(list.stdout == """
            NAME  SIZE     ID  SOURCE
            d0    4.0 MiB  0   -

            """)
        // LIFEBOAT_SITE stands in for --site.
        var env = ProcessInfo.processInfo.environment
        env["LIFEBOAT_SITE"] = site
        let viaEnv = try run([lifeboatBinary, "disk", "list", "--json"], environment: env)
        #expect(viaEnv.status == 0 && viaEnv.stdout.contains("\"name\" : \"d0\""))
        let noSite = try run([lifeboatBinary, "status"], environment: env.filter { $0.key != "LIFEBOAT_SITE" })
        #expect(noSite.status == 64 && noSite.stderr.contains("pass --site DIR or set LIFEBOAT_SITE"))
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func protectRefusesBadMountpointsAndNonRoot() throws {
        let t = try TestSite(disks: [("d0", "4M")])
        defer { t.cleanup() }
        let missing = try lifeboat("protect", t.root + "/nope", "--site", t.site)
        #expect(missing.status == 66)
        #expect(missing.stderr == "lifeboat: error: \(t.root)/nope: mountpoint does not exist\n")

        try check(run(["mount", "-t", "tmpfs", "tmpfs", t.mountpoint]))
        let busy = try lifeboat("protect", t.mountpoint, "--site", t.site)
        try check(run(["umount", t.mountpoint]))
        #expect(busy.status == 75)
        #expect(busy.stderr.contains("already a mount point"))

        let user = try run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", lifeboatBinary, "protect", t.mountpoint, "--site", t.site])
        #expect(user.status == 77)
        #expect(user.stderr.contains("must run as root"))

        // No /dev/fuse: a private mount namespace with an empty /dev.
        let noFuse = try run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                              "mount -t tmpfs none /dev && exec \(lifeboatBinary) protect \(t.mountpoint) --site \(t.site)"])
        #expect(noFuse.status == 77)
        #expect(noFuse.stderr.contains("/dev/fuse"))

        let running = try t.startProtect()
        let second = try lifeboat("protect", t.root + "/fs", "--site", t.site)
        #expect(second.status == 75)
        #expect(second.stderr.contains("in use by a running `lifeboat protect`"))
        #expect(running.stop() == 0)
        #expect(!isMounted(t.mountpoint) && !isMounted(t.root + "/fs"))
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func corruptRecordInTheMiddleStopsProtectWithFileAndOffset() throws {
        let t = try TestSite(disks: [("d0", "16M")])
        defer { t.cleanup() }
        let p = try t.startProtect()
        try check(run(["dd", "if=/dev/urandom", "of=\(t.image("d0"))", "bs=4k", "count=64", "conv=notrunc,fsync", "status=none"]))
        #expect(p.stop() == 0)
        let segment = try FileManager.default.contentsOfDirectory(atPath: t.site + "/journal").filter { $0.hasSuffix(".seg") }.sorted()
            .first { (try? FileManager.default.attributesOfItem(atPath: t.site + "/journal/" + $0)[.size] as? Int ?? 0) ?? 0 > 100_000 }!
        let path = t.site + "/journal/" + segment
        // Record 2 of the segment starts at 64 + 4136; flip a byte inside its data.
        let fd = open(path, O_RDWR)
        var b: UInt8 = 0
        pread(fd, &b, 1, 64 + 4136 + 24 + 16 + 100)
        b ^= 0xFF
        pwrite(fd, &b, 1, 64 + 4136 + 24 + 16 + 100)
        close(fd)
        let refused = try lifeboat("protect", t.mountpoint, "--site", t.site)
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("lifeboat: error: \(path): at offset \(64 + 4136): record payload checksum mismatch"))
        #expect(!isMounted(t.mountpoint))
        let verify = try lifeboat("journal", "verify", "--site", t.site)
        #expect(verify.status == 65)
    }

    @Test(.enabled(if: canMount, mountSkipReason))
    func fullJournalFailsWritesWithEIOAndStatusSaysWhy() throws {
        let t = try TestSite(disks: [("d0", "64M")])
        defer { t.cleanup() }
        let journal = t.site + "/journal"
        try FileManager.default.removeItem(atPath: journal)
        try FileManager.default.createDirectory(atPath: journal, withIntermediateDirectories: false)
        try check(run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", journal]))
        defer { _ = try? run(["umount", "-l", journal]) }
        let p = try t.startProtect(["--segment-size", "16M"])
        let fd = open(t.image("d0"), O_WRONLY)
        let data = [UInt8](repeating: 0x42, count: 65536)
        var written = 0
        var failure: Int32 = 0
        while written < 32 << 20 {
            let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, written) }
            if n < 0 { failure = errno; break }
            written += n
        }
        close(fd)
        #expect(failure == EIO)
        #expect(written < 4 << 20)
        usleep(1_500_000)  // status.json is refreshed every second
        let status = try lifeboat("status", "--site", t.site)
        #expect(status.stdout.contains("journal error:") && status.stdout.contains("No space left on device"), "\(status.stdout)")
        #expect(p.stop() == 0)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/qemu-img"), "needs qemu-img (Harness/setup.sh installs qemu-utils)"))
    func diskCreateImportsAVHDMadeByQemu() throws {
        let dir = try makeTemporaryDirectory("import")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Images/fixtures/qemu-dynamic.vhd").standardized.path
        try check(lifeboat("init", "--site", dir + "/site"))
        let created = try lifeboat("disk", "create", "vm", "--from", fixture, "--site", dir + "/site")
        #expect(created.status == 0, "\(created.stderr)")
        #expect(created.stdout.contains("4.0 MiB"))
        try check(run(["qemu-img", "convert", "-f", "vpc", "-O", "raw", fixture, dir + "/oracle.raw"]))
        #expect(try run(["cmp", dir + "/site/disks/vm.img", dir + "/oracle.raw"]).status == 0)
        #expect(try run(["cmp", dir + "/site/disks/vm.base", dir + "/oracle.raw"]).status == 0)
        // A truncated VHD is refused with the field named, and no disk is added.
        let broken = dir + "/broken.vhd"
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixture)))
        bytes[bytes.count - 512 + 70] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: broken))
        let refused = try lifeboat("disk", "create", "bad", "--from", broken, "--site", dir + "/site")
        #expect(refused.status == 65)
        #expect(refused.stderr.contains("footer checksum"))
        #expect(try lifeboat("disk", "list", "--site", dir + "/site").stdout.contains("bad") == false)
    }
}
