import Foundation
import LifeboatCore
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `lifeboat mount`: recovery points served through FUSE, read-only or on a throwaway overlay.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct PointViewTests {
    /// A running `lifeboat mount`.
    final class PointMount {
        let process = Process()
        let mountpoint: String
        init(vault: String, point: String, at mountpoint: String, extra: [String] = []) throws {
            self.mountpoint = mountpoint
            process.executableURL = URL(fileURLWithPath: lifeboatBinary)
            process.arguments = ["mount", mountpoint, "--vault", vault, "--point", point] + extra
            process.standardError = FileHandle.nullDevice
            try process.run()
            let deadline = Date().addingTimeInterval(20)
            while !isMounted(mountpoint) {
                guard process.isRunning, Date() < deadline else { throw TestFailure("lifeboat mount did not mount") }
                usleep(20_000)
            }
        }
        func stop() -> Int32 {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
            return process.terminationStatus
        }

        /// After a failed test: nothing may stay mounted or running (a loop device on the view
        /// would refuse the normal stop, so the mount is detached first).
        func cleanup() {
            guard process.isRunning else { return }
            _ = try? run(["umount", "-l", mountpoint])
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    /// A site with a vault, ext4 on d0, files, an app-consistent point, then more writes and a
    /// crash-consistent point taken while the filesystem is mounted and busy.
    static func prepared() throws -> (TestSite, ProtectProcess, String) {
        let t = try TestSite(disks: [("d0", "64M")], withVault: true)
        let protect = try t.startProtect()
        try check(run(["mkfs.ext4", "-q", "-F", t.image("d0")]))
        let dev = try t.attachLoop(t.image("d0"))
        try check(run(["mount", dev, t.fsMount]))
        for i in 0..<20 { try #require(FileManager.default.createFile(atPath: t.fsMount + "/before-\(i)", contents: Data(randomBytes(50_000, seed: UInt64(i))))) }
        try check(lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--label", "app"))
        for i in 0..<20 { try #require(FileManager.default.createFile(atPath: t.fsMount + "/after-\(i)", contents: Data(randomBytes(50_000, seed: UInt64(100 + i))))) }
        try check(lifeboat("checkpoint", "--site", t.site, "--label", "crash"))
        return (t, protect, dev)
    }

    @Test func aMountedPointEqualsItsExportAndRefusesWrites() throws {
        let (t, protect, _) = try Self.prepared()
        defer { t.cleanup() }
        let view = t.root + "/view"
        try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
        let m = try PointMount(vault: t.vault, point: "latest-app", at: view)
        defer { m.cleanup() }
        try check(lifeboat("export", "--vault", t.vault, "--point", "latest-app", "--disk", "d0", t.root + "/app.raw"))
        #expect(try run(["cmp", view + "/d0.img", t.root + "/app.raw"]).status == 0)
        #expect(open(view + "/d0.img", O_WRONLY) == -1 && errno == EROFS)
        // Mounting disturbs nothing: protection, shipping and new points go on meanwhile.
        try #require(FileManager.default.createFile(atPath: t.fsMount + "/during-mount", contents: Data(randomBytes(10_000, seed: 9))))
        let during = try lifeboat("checkpoint", "--site", t.site, "--label", "during-mount", "--json")
        #expect(during.status == 0 && during.stdout.contains("\"pointID\""), "\(during.stdout)\(during.stderr)")
        #expect(try run(["cmp", view + "/d0.img", t.root + "/app.raw"]).status == 0, "the mounted point did not move")
        // The app-consistent filesystem mounts read-only with no overlay at all.
        let dev = try t.attachLoop(view + "/d0.img")
        let ro = t.root + "/ro"
        try FileManager.default.createDirectory(atPath: ro, withIntermediateDirectories: true)
        try check(run(["mount", "-o", "ro", dev, ro]))
        #expect(FileManager.default.contents(atPath: ro + "/before-3").map(Array.init) == randomBytes(50_000, seed: 3))
        try check(run(["umount", ro]))
        t.detachLoop(dev)
        #expect(m.stop() == 0)
        #expect(!isMounted(view))
        _ = protect
    }

    @Test func aCrashConsistentExt4ReplaysOntoTheOverlayAndFsckIsClean() throws {
        let (t, _, _) = try Self.prepared()
        defer { t.cleanup() }
        let view = t.root + "/view", overlay = t.root + "/overlay", fs = t.root + "/replayed"
        for d in [view, overlay, fs] { try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true) }
        // The crash-consistent point by id: protect goes on taking points, so "latest" may move.
        let points = try JSONSerialization.jsonObject(with: Data(lifeboat("points", "--vault", t.vault, "--json").stdout.utf8)) as? [[String: Any]]
        let point = try #require(points?.last?["id"] as? Int).description
        try check(lifeboat("export", "--vault", t.vault, "--point", point, "--disk", "d0", t.root + "/before.raw"))
        let m = try PointMount(vault: t.vault, point: point, at: view, extra: ["--overlay", overlay])
        defer { m.cleanup() }
        let dev = try t.attachLoop(view + "/d0.img")
        try check(run(["mount", dev, fs]))  // ext4 journal replay writes into the overlay
        #expect(FileManager.default.contents(atPath: fs + "/before-5").map(Array.init) == randomBytes(50_000, seed: 5))
        try check(run(["umount", fs]))
        let fsck = try run(["e2fsck", "-fn", dev])
        #expect(fsck.status == 0, "\(fsck.stdout)")
        t.detachLoop(dev)
        // Unaligned writes (partial blocks read-modify-written, one larger than a FUSE request,
        // one ending at the disk's end) read back exactly once the page cache is dropped.
        let image = view + "/d0.img"
        var model = try Array(Data(contentsOf: URL(fileURLWithPath: image)))
        let fd = open(image, O_RDWR)
        #expect(fd >= 0)
        for (offset, count, seed) in [(12_345, 5_000, 1), ((3 << 20) - 100, (1 << 20) + 300, 2), ((64 << 20) - 10, 10, 3)] {
            let bytes = randomBytes(count, seed: UInt64(seed))
            #expect(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) } == count)
            model.replaceSubrange(offset..<(offset + count), with: bytes)
        }
        #expect(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0)
        var readBack = [UInt8](repeating: 0, count: model.count)
        #expect(readBack.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) } == model.count)
        let overlayIsExact = readBack == model  // a Bool: a failure must not print 64 MiB
        #expect(overlayIsExact, "the overlay holds exactly what was written over the point")
        close(fd)
        #expect(m.stop() == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: overlay).isEmpty, "the overlay is thrown away")
        // The point itself never changed.
        try check(lifeboat("export", "--vault", t.vault, "--point", point, "--disk", "d0", t.root + "/after.raw"))
        #expect(try run(["cmp", t.root + "/before.raw", t.root + "/after.raw"]).status == 0)
    }

    @Test func theVHDViewIsIdenticalForQemuAndAMountedPointIsNotPruned() throws {
        let (t, _, _) = try Self.prepared()
        defer { t.cleanup() }
        let view = t.root + "/view"
        try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
        let m = try PointMount(vault: t.vault, point: "latest-app", at: view, extra: ["--format", "vhd"])
        defer { m.cleanup() }
        try check(lifeboat("export", "--vault", t.vault, "--point", "latest-app", "--disk", "d0", t.root + "/app.raw"))
        #expect(try run(["qemu-img", "compare", "-f", "raw", "-F", "vpc", t.root + "/app.raw", view + "/d0.vhd"]).status == 0)
        #expect(try run(["vhdiinfo", view + "/d0.vhd"]).stdout.contains("(67108864 bytes)"))
        // A policy that would drop it: the mounted point stays, and prune says why.
        let list = try lifeboat("points", "--vault", t.vault, "--json")
        let appID = (try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]] ?? []).first { $0["kind"] as? String == "app-consistent" }?["id"] as? Int
        try check(lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--label", "newer"))
        usleep(1_100_000)
        let prune = try lifeboat("vault", "prune", "--vault", t.vault, "--window", "1s", "--keep-all", "1s", "--every", "1s")
        #expect(prune.stdout.contains("kept point(s) \(appID ?? -1): mounted"), "\(prune.stdout)")
        // And it still reads back exactly after the prune.
        #expect(try run(["qemu-img", "compare", "-f", "raw", "-F", "vpc", t.root + "/app.raw", view + "/d0.vhd"]).status == 0)
        #expect(m.stop() == 0)
    }

    @Test func badMountsSayWhyAndLeaveNothingMounted() throws {
        let (t, _, _) = try Self.prepared()
        defer { t.cleanup() }
        let view = t.root + "/view"
        try FileManager.default.createDirectory(atPath: view, withIntermediateDirectories: true)
        let unknown = try lifeboat("mount", view, "--vault", t.vault, "--point", "9999")
        #expect(unknown.status == 66 && unknown.stderr.contains("no point with id 9999"))
        let full = t.root + "/tiny"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        try check(run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", full]))
        defer { _ = try? run(["umount", full]) }
        let noRoom = try lifeboat("mount", view, "--vault", t.vault, "--point", "latest", "--overlay", full)
        #expect(noRoom.status == 74 && noRoom.stderr.contains("bytes free"))
        let busy = try lifeboat("mount", full, "--vault", t.vault, "--point", "latest")
        #expect(busy.status == 75 && busy.stderr.contains("already a mount point"))
        #expect(!isMounted(view))
    }
}
