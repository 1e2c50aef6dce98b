import Foundation
import LifeboatCore
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Real FUSE mounts of `lifeboat protect`, with real ext4 on loop devices. Serialized: they
/// share the machine's loop devices and each one leaves nothing mounted behind.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct MountTests {
    @Test func ext4TreeOnALoopDeviceRoundTripsAndFsckIsClean() throws {
        let t = try TestSite(disks: [("d0", "256M"), ("d1", "32M")])
        defer { t.cleanup() }
        let protect = try t.startProtect()
        #expect(try FileManager.default.contentsOfDirectory(atPath: t.mountpoint).sorted() == ["d0.img", "d1.img"])
        try check(run(["mkfs.ext4", "-q", "-F", t.image("d0")]))
        let dev = try t.attachLoop(t.image("d0"))
        try check(run(["mount", dev, t.fsMount]))
        var files: [String: [UInt8]] = [:]
        for i in 0..<60 {
            let dir = t.fsMount + "/dir\(i % 7)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let data = randomBytes(1000 + i * 4099, seed: UInt64(i))
            try #require(FileManager.default.createFile(atPath: dir + "/file\(i)", contents: Data(data)))
            files["dir\(i % 7)/file\(i)"] = data
        }
        try check(run(["sync"]))
        try check(run(["umount", t.fsMount]))
        t.detachLoop(dev)
        let fsck = try run(["e2fsck", "-fn", t.image("d0")])
        #expect(fsck.status == 0, "e2fsck: \(fsck.stdout)")
        let dev2 = try t.attachLoop(t.image("d0"))
        try check(run(["mount", "-o", "ro", dev2, t.fsMount]))
        for (path, data) in files {
            #expect(FileManager.default.contents(atPath: t.fsMount + "/" + path).map(Array.init) == data, "\(path)")
        }
        try check(run(["umount", t.fsMount]))
        t.detachLoop(dev2)
        let status = try lifeboat("status", "--site", t.site, "--json")
        #expect(status.stdout.contains("\"state\" : \"protecting\""))
        #expect(protect.stop() == 0)
        #expect(!isMounted(t.mountpoint))
        #expect(protect.output.contains("stopped cleanly"))
        let verify = try lifeboat("journal", "verify", "--site", t.site)
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("d0: identical to the primary"))
    }

    @Test func stopWhileALoopDeviceHoldsADiskKeepsProtecting() throws {
        let t = try TestSite()
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let dev = try t.attachLoop(t.image("d0"))
        kill(protect.process.processIdentifier, SIGTERM)
        usleep(500_000)
        #expect(protect.process.isRunning)
        #expect(isMounted(t.mountpoint))
        #expect(protect.output.contains("still in use"))
        // Still serving: the loop device reads and writes through it.
        try check(run(["dd", "if=/dev/urandom", "of=\(dev)", "bs=64k", "count=16", "oflag=direct", "status=none"]))
        t.detachLoop(dev)
        #expect(protect.stop() == 0)
        #expect(!isMounted(t.mountpoint))
    }

    @Test func fioVerifyPassesOnTheExposedFile() throws {
        let t = try TestSite(disks: [("d0", "128M")])
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let fio = try run([
            "fio", "--name=verify", "--verify_state_save=0", "--filename=\(t.image("d0"))", "--rw=randwrite", "--bs=4k", "--size=64M",
            "--ioengine=psync", "--iodepth=1", "--numjobs=1", "--verify=crc32c", "--do_verify=1",
            "--fsync=32", "--verify_fatal=1", "--randrepeat=1", "--output-format=terse",
        ])
        #expect(fio.status == 0, "fio: \(fio.stderr)")
        let mixed = try run([
                        // Unaligned sizes from two writers, each in its own 16 MiB region.
            "fio", "--name=mixed", "--verify_state_save=0", "--filename=\(t.image("d0"))", "--rw=randwrite", "--bsrange=512-128k", "--size=16M", "--offset=80M",
            "--offset_increment=16M", "--ioengine=psync", "--numjobs=2", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1", "--output-format=terse",
        ])
        #expect(mixed.status == 0, "fio: \(mixed.stderr)")
        #expect(protect.stop() == 0)
        #expect(try lifeboat("journal", "verify", "--site", t.site).status == 0)
    }

    /// The exposed disks are opened around the kernel's page cache (decision 0014): a shared
    /// mapping is refused (ENODEV, only in that mode), a private one reads the disk, and a
    /// handle opened and read before another handle's write reads the new data.
    @Test func theDisksAreOpenedAroundThePageCache() throws {
        let t = try TestSite(disks: [("d0", "16M")])
        defer { t.cleanup() }
        let protect = try t.startProtect()
        let data = randomBytes(1 << 20, seed: 14)
        do {
            let reader = try FileDescriptor.open(t.image("d0"), .readOnly)
            let writer = try FileDescriptor.open(t.image("d0"), .readWrite)
            defer { try? reader.close(); try? writer.close() }  // before the stop: open files hold the mount
            var before = [UInt8](repeating: 0xFF, count: 4096)
            #expect(try before.withUnsafeMutableBytes { try reader.read(fromAbsoluteOffset: 8192, into: $0) } == 4096)
            #expect(before == [UInt8](repeating: 0, count: 4096))
            #expect(try writer.writeAll(toAbsoluteOffset: 0, data) == data.count)
            var after = [UInt8](repeating: 0, count: 4096)
            #expect(try after.withUnsafeMutableBytes { try reader.read(fromAbsoluteOffset: 8192, into: $0) } == 4096)
            #expect(after == Array(data[8192..<12288]), "the first handle reads what the second wrote")

            let shared = mmap(nil, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, writer.rawValue, 0)
            let sharedErrno = errno
            #expect(shared == MAP_FAILED && sharedErrno == ENODEV, "a shared mapping is refused in direct-io mode (errno \(sharedErrno))")
            if shared != MAP_FAILED { munmap(shared, 1 << 20) }
            let mapped = try #require(mmap(nil, 1 << 20, PROT_READ, MAP_PRIVATE, reader.rawValue, 0).flatMap { $0 == MAP_FAILED ? nil : $0 })
            defer { munmap(mapped, 1 << 20) }
            #expect(Array(UnsafeRawBufferPointer(start: mapped, count: 1 << 20)) == data, "a private mapping reads the disk")
        }
        #expect(protect.stop() == 0)
        #expect(try lifeboat("journal", "verify", "--site", t.site).status == 0)
    }
}
