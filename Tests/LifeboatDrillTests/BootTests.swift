import Foundation
import FoundationXML
import LifeboatCore
import SystemPackage
import Testing

@testable import LifeboatDrill

#if canImport(Glibc)
import Glibc
#endif

let canBoot = canMount && access("/usr/bin/qemu-system-x86_64", X_OK) == 0 && access("/usr/bin/extlinux", X_OK) == 0
let bootSkipReason: Comment = "needs root, /dev/fuse, qemu-system-x86 and extlinux (Harness/setup.sh installs them); CI runs it"

/// Machines: the sample machine (Images/recipes/sample-machine.sh) runs on a protected disk
/// under its own write load, and drills boot its points in qemu (issue 14).
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)), .enabled(if: canBoot, bootSkipReason))
struct BootTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// The sample machine's disk, built (or copied from the recipe's cache) into `path`.
    static func sampleMachine(_ path: String) throws {
        try check(run(["bash", repository + "/Images/recipes/sample-machine.sh", path]))
    }

    /// A qemu process running a disk (KVM where it really runs guests, else TCG, as the boot
    /// check chooses), its serial console in a file.
    final class Guest {
        let process = Process()
        let console: String

        /// With `agent`, the machine has a guest agent channel at that socket.
        init(disk: String, console: String, agent: String? = nil) throws {
            self.console = console
            _ = FileManager.default.createFile(atPath: console, contents: nil)
            process.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-system-x86_64")
            process.arguments = ["-machine", "q35", "-accel", BootCheck.accelerator(.auto), "-m", "256", "-nodefaults", "-no-user-config", "-display", "none",
                                 "-monitor", "none", "-serial", "file:" + console, "-nic", "none", "-no-reboot",
                                 "-drive", "file=\(disk),format=raw,if=virtio"]
            if let agent {
                process.arguments! += ["-device", "virtio-serial", "-chardev", "socket,path=\(agent),server=on,wait=off,id=qga0",
                                       "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
            }
            // qemu's own messages (not the guest's) go beside the console.
            _ = FileManager.default.createFile(atPath: console + ".qemu", contents: nil)
            process.standardOutput = FileHandle(forWritingAtPath: console + ".qemu")
            process.standardError = process.standardOutput
            try process.run()
        }

        var output: String { (try? String(contentsOfFile: console, encoding: .utf8)) ?? "" }

        /// Waits until the console has a line containing `text`; false at the deadline or if qemu ended.
        func waitFor(_ text: String, seconds: Double) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                if output.contains(text) { return true }
                guard process.isRunning else { return output.contains(text) }
                usleep(100_000)
            }
            return false
        }

        /// kill -9: the machine's power cut.
        func powerCut() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    /// A protected site whose disks are copies of the sample machine, with one point ("fresh")
    /// in the vault.
    static func machineSite(names: [String]) throws -> TestSite {
        let t = try TestSite(disks: [], withVault: true)
        do {
            try sampleMachine(t.root + "/machine.img")
            for name in names { try check(lifeboat("disk", "create", name, "--from", t.root + "/machine.img", "--site", t.site)) }
            _ = try t.startProtect(["--point-interval", "1", "--seal-interval", "1"])
            try t.checkpointInVault("--label", "fresh")
            return t
        } catch {
            t.cleanup()
            throw error
        }
    }

    static func plan(_ dir: String, _ checks: String) throws -> String {
        let path = dir + "/boot.yaml"
        try "disks:\n  machine:\n    filesystem: none\n    checks:\n\(checks)".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static func report(_ path: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any] ?? [:]
    }

    static func checks(_ report: [String: Any]) -> [[String: Any]] {
        ((report["disks"] as? [[String: Any]])?.first?["checks"] as? [[String: Any]]) ?? []
    }

    static func noQemuLeft(_ context: Comment) {
        let left = (try? run(["pgrep", "-f", "qemu-system-x86_64"]))?.stdout ?? ""
        #expect(left.isEmpty, "a qemu process is left: \(left) — \(context)")
    }

    @Test func aMachineOnAProtectedDiskBootsFromEveryPointTakenUnderItsLoad() throws {
        let t = try TestSite(disks: [], withVault: true)
        var guests: [Guest] = []
        defer {
            for g in guests { g.powerCut() }
            t.cleanup()
        }
        try Self.sampleMachine(t.root + "/machine.img")
        try check(lifeboat("disk", "create", "machine", "--from", t.root + "/machine.img", "--site", t.site))
        _ = try t.startProtect(["--point-interval", "1", "--seal-interval", "1"])

        // The machine writes its ledger (an fdatasync per 4 KiB record) while points are taken.
        let first = try Guest(disk: t.image("machine"), console: t.root + "/console-1.log")
        guests.append(first)
        #expect(first.waitFor("LIFEBOAT-WORKLOAD 256", seconds: 60), "the guest did not start writing: \(first.output)")
        usleep(3_000_000)
        // protect dies under the machine (its disk's power cut), then the machine.
        t.protect?.crash()
        first.powerCut()
        _ = try run(["umount", "-l", t.mountpoint])
        _ = try t.startProtect(["--point-interval", "1", "--seal-interval", "1"])

        // The machine boots again from the recovered disk: its journal replays, its probe passes.
        let agent = t.root + "/qga.sock"
        let second = try Guest(disk: t.image("machine"), console: t.root + "/console-2.log", agent: agent)
        guests.append(second)
        #expect(second.waitFor("LIFEBOAT-PROBE ok", seconds: 60), "the recovered disk does not boot clean: \(second.output)")
        #expect(!second.output.contains("FAILED"), "\(second.output)")
        #expect(second.waitFor("LIFEBOAT-WORKLOAD", seconds: 30), "\(second.output)")
        usleep(1_000_000)
        // App-consistent under the load: the guest's filesystem frozen from inside.
        let app = try lifeboat("checkpoint", "--site", t.site, "--app-consistent", "--guest-agent", agent, "--label", "app", "--json")
        #expect(app.status == 0, "\(app.stdout)\(app.stderr)")
        #expect(app.stdout.contains("\"kind\" : \"app-consistent\"") && app.stdout.contains("guest agent \(agent)"), "\(app.stdout)")
        #expect(try lifeboat("guest-agent", "status", "--socket", agent).stdout == "thawed\n", "the guest is thawed after the point")
        usleep(2_000_000)
        second.powerCut()
        try t.checkpointInVault("--label", "after-power-cut")
        #expect(t.protect?.stop() == 0)

        let listed = try lifeboat("points", "--vault", t.vault, "--json")
        let points = (try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]]) ?? []
        #expect(points.count >= 4, "points taken under the load: \(listed.stdout)")
        let plan = try Self.plan(t.root, "      - boot: {expect: 'LIFEBOAT-PROBE ok', fail-on: 'FAILED', timeout: 90s}\n")
        var records: [Int] = []
        var replayed = 0
        var appPoints = 0
        for point in points {
            let id = point["id"] as? Int ?? 0
            let json = t.root + "/report-\(id).json"
            let r = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--point", String(id), "--report-json", json, "--work-dir", t.root + "/drills"])
            #expect(r.status == 0, "point \(id) does not boot to a passing probe: \(r.stdout)\(r.stderr)")
            let boot = Self.checks(try Self.report(json)).first ?? [:]
            let tail = boot["outputTail"] as? String ?? ""
            if tail.contains("journal=replayed") { replayed += 1 }
            if point["kind"] as? String == "app-consistent" {
                #expect(tail.contains("LIFEBOAT-BOOT journal=clean"), "the app-consistent point boots without a journal replay: \(tail)")
                appPoints += 1
            }
            if let n = tail.split(separator: "\n").first(where: { $0.contains("LIFEBOAT-PROBE ok") })?
                .split(separator: " ").first(where: { $0.hasPrefix("records=") }).flatMap({ Int($0.dropFirst(8)) }) {
                records.append(n)
            }
            #expect(boot["bootSeconds"] as? Double != nil, "\(boot)")
        }
        #expect(records.count == points.count, "every point's probe counted its records: \(records)")
        // The points were taken under the load: later points hold more of the ledger.
        #expect(records == records.sorted() && (records.last ?? 0) > (records.first ?? 0), "records by point: \(records)")
        #expect(replayed > 0, "no point needed a journal replay: the cuts were not taken mid-write")
        #expect(appPoints == 1)
        Self.noQemuLeft("after the drills")
    }

    @Test func aGuestThatNeverPrintsTheLineFailsAtTheTimeoutAndLeavesNothing() throws {
        let t = try Self.machineSite(names: ["machine"])
        defer { t.cleanup() }
        let plan = try Self.plan(t.root, "      - boot: {expect: 'A-LINE-NO-GUEST-PRINTS', timeout: 6s}\n")
        let junit = t.root + "/junit.xml"
        let json = t.root + "/report.json"
        let drills = t.root + "/drills"
        let start = Date()
        let r = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--junit", junit, "--report-json", json, "--work-dir", drills])
        #expect(r.status == 1, "a failed check: \(r.stdout)\(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 30, "the check ended at its timeout")
        let boot = Self.checks(try Self.report(json)).first ?? [:]
        #expect((boot["message"] as? String ?? "").contains("no console line containing 'A-LINE-NO-GUEST-PRINTS' within 6.00 s under "), "\(boot)")
        // The console's tail is in the report: what the machine did print.
        #expect((boot["outputTail"] as? String ?? "").contains("LIFEBOAT-PROBE ok"), "\(boot)")
        let xml = try XMLDocument(contentsOf: URL(fileURLWithPath: junit))
        #expect(try xml.nodes(forXPath: "//testcase[@name='boot']/failure").count == 1)
        Self.noQemuLeft("after a timed-out boot")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: drills)) ?? []).isEmpty, "the drill's workspace is gone")

        // fail-on ends the check at once, on the guest's own line.
        let failing = try Self.plan(t.root, "      - boot: {expect: 'A-LINE-NO-GUEST-PRINTS', fail-on: 'LIFEBOAT-BOOT', timeout: 60s}\n")
        let f = try run([lifeboatBinary, "drill", failing, "--vault", t.vault, "--report-json", json, "--work-dir", drills])
        #expect(f.status == 1, "\(f.stdout)\(f.stderr)")
        #expect(f.stdout.contains("the guest printed: LIFEBOAT-BOOT journal=clean"), "\(f.stdout)")
        Self.noQemuLeft("after a fail-on line")

        // Direct kernel boot: the plan's kernel and initramfs (relative to the plan), no boot loader.
        for file in ["vmlinuz", "initrd.img"] {
            _ = try run(["debugfs", "-R", "dump /boot/\(file) \(t.root)/\(file)", t.root + "/machine.img"])
            try #require(FileManager.default.fileExists(atPath: t.root + "/" + file))
        }
        let direct = try Self.plan(t.root, "      - boot: {expect: 'LIFEBOAT-PROBE ok', kernel: vmlinuz, initrd: initrd.img, append: 'console=ttyS0 quiet', timeout: 60s}\n")
        let d = try run([lifeboatBinary, "drill", direct, "--vault", t.vault, "--report-json", json, "--work-dir", drills])
        #expect(d.status == 0, "\(d.stdout)\(d.stderr)")
        let tail = Self.checks(try Self.report(json)).first?["outputTail"] as? String ?? ""
        #expect(tail.contains("LIFEBOAT-PROBE ok") && !tail.contains("SYSLINUX"), "\(tail)")
        // A kernel the plan names but that is not there: a plan error before anything runs.
        try "disks:\n  machine:\n    filesystem: none\n    checks:\n      - boot: {expect: x, kernel: nowhere/vmlinuz}\n"
            .write(toFile: direct, atomically: true, encoding: .utf8)
        let missing = try run([lifeboatBinary, "drill", direct, "--vault", t.vault, "--work-dir", drills])
        #expect(missing.status == 64 && missing.stderr.contains("field 'disks.machine.checks.boot.kernel': cannot read \(t.root)/nowhere/vmlinuz"), "\(missing.stderr)")
        Self.noQemuLeft("after a direct kernel boot")
    }

    @Test func twoMachinesOfOnePlanBootInPlanOrder() throws {
        let t = try Self.machineSite(names: ["web", "db"])
        defer { t.cleanup() }
        let plan = t.root + "/two.yaml"
        try """
            disks:
              db:
                filesystem: none
                checks: [{boot: {expect: 'LIFEBOAT-PROBE ok', timeout: 60s}}]
              web:
                filesystem: none
                checks: [{boot: {expect: 'LIFEBOAT-PROBE ok', timeout: 60s}}]
            """.write(toFile: plan, atomically: true, encoding: .utf8)
        let json = t.root + "/two.json"
        let r = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--report-json", json, "--work-dir", t.root + "/drills"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let report = try Self.report(json)
        let disks = (report["disks"] as? [[String: Any]]) ?? []
        #expect(disks.map { $0["name"] as? String ?? "" } == ["db", "web"])
        #expect(disks.allSatisfy { (($0["checks"] as? [[String: Any]])?.first?["status"] as? String) == "passed" }, "\(disks)")
        Self.noQemuLeft("after two boots")
    }

    @Test func aPointDamagedInTheVaultFailsTheBootWithTheConsoleTail() throws {
        let t = try Self.machineSite(names: ["machine"])
        defer { t.cleanup() }
        #expect(t.protect?.stop() == 0)
        let plan = try Self.plan(t.root, "      - boot: {expect: 'LIFEBOAT-PROBE ok', fail-on: 'FAILED', timeout: 20s}\n")
        let drills = t.root + "/drills"
        let good = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--work-dir", drills])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")

        // The disk was imported into the vault's base image: damage the kernel's blocks there.
        let kernel = try run(["debugfs", "-R", "blocks /boot/vmlinuz", t.root + "/machine.img"])
        let blocks = kernel.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }).compactMap { Int($0) }
        try #require(blocks.count > 100, "the kernel's blocks: \(kernel.stdout.prefix(200))\(kernel.stderr)")
        let bases = try FileManager.default.contentsOfDirectory(atPath: t.vault + "/bases").filter { $0.hasSuffix(".img") }
        let base = try #require(bases.first.map { t.vault + "/bases/" + $0 }, "the vault's base images: \(bases)")
        let fd = try FileDescriptor.open(base, .readWrite)
        for block in blocks.prefix(64) { _ = try fd.writeAll(toAbsoluteOffset: Int64(block) * 4096 + 512, [UInt8](repeating: 0xA5, count: 64)) }
        try fd.close()

        let json = t.root + "/report.json"
        let bad = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--report-json", json, "--work-dir", drills])
        #expect(bad.status == 1, "a damaged point fails its boot: \(bad.stdout)\(bad.stderr)")
        let boot = Self.checks(try Self.report(json)).first ?? [:]
        #expect(boot["status"] as? String == "failed", "\(boot)")
        let tail = boot["outputTail"] as? String ?? ""
        #expect(tail.contains("SYSLINUX") && !tail.contains("LIFEBOAT-PROBE"), "the console tail shows how far it got: \(boot)")
        Self.noQemuLeft("after a failed boot")
    }
}
