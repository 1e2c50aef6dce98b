import Foundation
import FoundationXML
import LifeboatCore
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Drills end to end through the CLI: real namespaces, FUSE, loop devices, ext4, SQLite.
@Suite(.serialized, .exclusiveMachineUse, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct DrillTests {
    /// A protected site with ext4 on d0 (a file tree, a SQLite database) and a raw d1, an
    /// app-consistent point, a manifest of the tree; the filesystem stays mounted.
    final class DrillSite {
        let t: TestSite
        let drills: String
        var dev = ""
        var plans: String { t.root + "/plans" }

        init() throws {
            t = try TestSite(disks: [("d0", "128M"), ("d1", "16M")], withVault: true)
            drills = t.root + "/drills"
            try FileManager.default.createDirectory(atPath: plans, withIntermediateDirectories: true)
            _ = try t.startProtect(["--point-interval", "1", "--seal-interval", "1"])
            try check(run(["mkfs.ext4", "-q", "-F", t.image("d0")]))
            dev = try t.attachLoop(t.image("d0"))
            try check(run(["mount", dev, t.fsMount]))
            try check(run(["cp", "-r", "/usr/share/doc/e2fsprogs", t.fsMount + "/tree"]))
            try check(run(["sh", "-c", "cd \(t.fsMount) && find tree -type f -exec sha256sum {} + > \(plans)/tree.sha256"]))
            try makeDatabase(t.fsMount + "/app.db")
            try check(run(["sync"]))
            try t.checkpointInVault("--app-consistent", "--label", "drill")
        }

        func cleanup() { t.cleanup() }

        func plan(_ name: String, _ text: String) throws -> String {
            let path = plans + "/" + name + ".yaml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return path
        }

        func drill(_ args: String...) throws -> CommandResult {
            try run([lifeboatBinary, "drill"] + args + ["--vault", t.vault, "--work-dir", drills])
        }

        /// Nothing of any drill is left: no working directory, mount, loop device or worker.
        func expectNothingLeft(_ context: Comment) {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: drills)) ?? []
            #expect(entries.isEmpty, "working directories left: \(entries) — \(context)")
            let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
            #expect(!mounts.contains(drills), "a drill mount is left — \(context)")
            let loops = (try? run(["losetup", "-a"]))?.stdout ?? ""
            #expect(!loops.contains(drills), "a loop device is left: \(loops) — \(context)")
            let workers = (try? run(["pgrep", "-f", "drill-worker \(drills)"]))?.stdout ?? ""
            #expect(workers.isEmpty, "a worker (and its namespaces) is left: \(workers) — \(context)")
            let pins = (try? FileManager.default.contentsOfDirectory(atPath: t.vault + "/pins")) ?? []
            #expect(pins.isEmpty, "pins left: \(pins) — \(context)")
        }
    }

    static func makeDatabase(_ path: String) throws {
        try check(run(["sqlite3", path, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<5000) INSERT INTO t(v) SELECT hex(randomblob(64)) FROM c;"]))
    }

    /// A non-loopback IPv4 address of this machine, with a listener on it.
    static func listenOnHostAddress() throws -> (address: String, port: UInt16, fd: Int32)? {
        let r = try run(["sh", "-c", "ip -4 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -1"])
        let address = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !address.isEmpty else { return nil }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        inet_pton(AF_INET, address, &sin.sin_addr)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &sin) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { close(fd); return nil }
        return (address, UInt16(bigEndian: sin.sin_port), fd)
    }

    @Test func aDrillChecksEveryKindInIsolationReportsAndIsKept() throws {
        let s = try DrillSite()
        defer { s.cleanup() }
        let listener = try Self.listenOnHostAddress()
        defer { if let l = listener { close(l.fd) } }
        let reach = listener.map { "exec 3<>/dev/tcp/\($0.address)/\($0.port)" } ?? "exec 3<>/dev/tcp/192.0.2.1/80"
        if listener != nil { #expect(try run(["bash", "-c", reach]).status == 0, "the host address is reachable outside a drill") }
        let plan = try s.plan("full", """
            point: latest-app
            disks:
              d0:
                checks:
                  - digest
                  - fsck
                  - files: {manifest: tree.sha256}
                  - sqlite: {database: app.db}
                  - script: {name: only-loopback, run: 'test "$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " ")" = lo'}
                  - script: {name: app-files, run: 'test -s "$LIFEBOAT_TARGET/app.db" && test -d "$LIFEBOAT_TARGET_D0/tree" && test -b /dev/null -o -c /dev/null'}
                  - script: {name: writes-during-drill, run: 'sleep 3'}
              d1:
                filesystem: none
                checks:
                  - digest
                  - script: {name: raw-image, run: 'test "$(stat -c %s "$LIFEBOAT_IMAGE_D1")" = 16777216'}
            """)
        let netPlan = try s.plan("net", """
            disks:
              d1:
                filesystem: none
                checks:
                  - script: {name: reach-host, run: 'bash -c "\(reach)"'}
            """)
        // Protection goes on during the drill: this write lands while the drill runs.
        let junit = s.t.root + "/junit.xml", json = s.t.root + "/report.json"
        let drill = Process()
        drill.executableURL = URL(fileURLWithPath: lifeboatBinary)
        drill.arguments = ["drill", plan, "--vault", s.t.vault, "--work-dir", s.drills, "--junit", junit, "--report-json", json]
        let out = Pipe()
        drill.standardOutput = out
        drill.standardError = FileHandle.nullDevice
        try drill.run()
        usleep(1_500_000)
        let marker = [UInt8]("written during the drill \(UUID())".utf8) + [UInt8](repeating: 0, count: 4096)
        let h = try FileDescriptor.open(s.t.image("d1"), .readWrite)
        _ = try h.writeAll(toAbsoluteOffset: 8 << 20, marker[0..<4096])
        fsync(h.rawValue)
        try h.close()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        drill.waitUntilExit()
        #expect(drill.terminationStatus == 0, "\(text)")
        #expect(text.contains(": PASSED"), "\(text)")

        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any] ?? [:]
        #expect(report["result"] as? String == "passed")
        let point = report["point"] as? [String: Any] ?? [:]
        #expect(point["kind"] as? String == "app-consistent")
        #expect((report["rtoSeconds"] as? Double ?? -1) > 0 && (report["rpoSeconds"] as? Double ?? -1) > 0)
        let disks = report["disks"] as? [[String: Any]] ?? []
        let checks = disks.flatMap { $0["checks"] as? [[String: Any]] ?? [] }
        #expect(checks.map { $0["name"] as? String ?? "" } == ["digest", "fsck", "files", "sqlite", "only-loopback", "app-files", "writes-during-drill", "digest", "raw-image"])
        #expect(checks.allSatisfy { $0["status"] as? String == "passed" && $0["seconds"] is Double }, "\(checks)")
        #expect((checks[1]["outputTail"] as? String ?? "").contains("Pass 5"), "the fsck output tail is kept")
        #expect(disks.first?["filesystem"] as? String == "ext4")

        let xml = try XMLDocument(contentsOf: URL(fileURLWithPath: junit))
        #expect(try xml.nodes(forXPath: "/testsuites/testsuite").count == 2)
        #expect(try xml.nodes(forXPath: "/testsuites/testsuite[@name='d0']/testcase").count == 7)
        #expect(try xml.nodes(forXPath: "//failure").isEmpty)

        // Kept with the point; status shows the verified RPO.
        let points = try lifeboat("points", "--vault", s.t.vault, "--json")
        let listed = try JSONSerialization.jsonObject(with: Data(points.stdout.utf8)) as? [[String: Any]] ?? []
        let drilled = listed.first { ($0["id"] as? Int).map(Int64.init) == (point["id"] as? Int).map(Int64.init) }
        #expect((drilled?["lastDrill"] as? [String: Any])?["result"] as? String == "passed", "\(points.stdout)")
        let status = try lifeboat("status", "--site", s.t.site)
        #expect(status.stdout.contains("verified RPO: ") && !status.stdout.contains("verified RPO: none"), "\(status.stdout)")

        // The write made during the drill is in a later point.
        try s.t.checkpointInVault("--label", "after-drill")
        let export = s.t.root + "/d1-after.raw"
        try check(lifeboat("export", "--vault", s.t.vault, "--point", "latest", "--disk", "d1", export))
        let exported = try Data(contentsOf: URL(fileURLWithPath: export))
        #expect(exported[(8 << 20)..<((8 << 20) + 4096)] == Data(marker[0..<4096]), "a write made during the drill reached a later point")
        s.expectNothingLeft("after a passing drill")

        // Isolation: a check cannot reach a non-loopback address.
        let net = try s.drill(netPlan, "--point", "latest")
        #expect(net.status == 1, "\(net.stdout)\(net.stderr)")
        #expect(net.stdout.contains("Network is unreachable"), "\(net.stdout)")
        s.expectNothingLeft("after the network check")
    }

    /// XFS: the drill mounts a second copy of a filesystem whose primary is mounted (nouuid),
    /// replays its log, and runs xfs_repair -n.
    @Test func anXFSPointIsReplayedAndRepairChecked() throws {
        let t = try TestSite(disks: [("x0", "512M")], withVault: true)
        defer { t.cleanup() }
        _ = try t.startProtect(["--point-interval", "1", "--seal-interval", "1"])
        try check(run(["mkfs.xfs", "-q", "-f", t.image("x0")]))
        let dev = try t.attachLoop(t.image("x0"))
        try check(run(["mount", dev, t.fsMount]))
        try check(run(["cp", "-r", "/usr/share/doc/xfsprogs", t.fsMount + "/doc"]))
        try check(run(["sh", "-c", "cd \(t.fsMount) && find doc -type f -exec sha256sum {} + > \(t.root)/doc.sha256 && sync"]))
        // Crash-consistent with the filesystem mounted: the drill's mount must replay the log.
        try t.checkpointInVault("--label", "xfs")
        let plan = t.root + "/xfs.yaml"
        try "disks:\n  x0:\n    checks: [digest, fsck, {files: {manifest: doc.sha256}}]\n".write(toFile: plan, atomically: true, encoding: .utf8)
        let json = t.root + "/xfs.json"
        let r = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--point", "latest", "--report-json", json, "--work-dir", t.root + "/drills"])
        #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any] ?? [:]
        let disk = (report["disks"] as? [[String: Any]])?.first ?? [:]
        #expect(disk["filesystem"] as? String == "xfs")
        let fsck = (disk["checks"] as? [[String: Any]] ?? []).first { $0["name"] as? String == "fsck" }
        let fsckMessage = try #require(fsck?["message"] as? String, "\(disk)")
        #expect(fsckMessage.contains("xfs_repair"), "\(fsckMessage)")
        try check(run(["umount", t.fsMount]))
        t.detachLoop(dev)
    }

    @Test func aDamagedLayerFailsTheDigestNamingTheBlock() throws {
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        defer { t.cleanup() }
        _ = try t.startProtect(["--point-interval", "1", "--seal-interval", "1"])
        // One write of incompressible data: every frame in the vault is this write's.
        let h = try FileDescriptor.open(t.image("d0"), .readWrite)
        var state: UInt64 = 7
        let data = (0..<(1 << 20)).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
        _ = try h.writeAll(toAbsoluteOffset: 0, data)
        fsync(h.rawValue)
        try h.close()
        try t.checkpointInVault("--label", "before-damage")
        let plan = t.root + "/digest.yaml"
        try "disks:\n  d0:\n    filesystem: none\n    checks: [digest]\n".write(toFile: plan, atomically: true, encoding: .utf8)
        let drills = t.root + "/drills"
        let good = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--work-dir", drills])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")

        var damaged: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: t.vault + "/layers") {
            let path = t.vault + "/layers/" + name
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            guard size > 512 << 10 else { continue }
            let fd = try FileDescriptor.open(path, .readWrite)
            _ = try fd.writeAll(toAbsoluteOffset: 64 + 4096, [UInt8](repeating: 0xA5, count: 16))
            try fd.close()
            damaged.append(path)
        }
        #expect(!damaged.isEmpty)
        let junit = t.root + "/junit.xml"
        let bad = try run([lifeboatBinary, "drill", plan, "--vault", t.vault, "--work-dir", drills, "--junit", junit])
        #expect(bad.status == 1, "failed-check exit code: \(bad.stdout)\(bad.stderr)")
        #expect(bad.stdout.contains("block 0 (byte offset 0)"), "\(bad.stdout)")
        #expect(damaged.contains { bad.stdout.contains($0) }, "the damaged layer file is named: \(bad.stdout)")
        let xml = try XMLDocument(contentsOf: URL(fileURLWithPath: junit))
        #expect(try xml.nodes(forXPath: "//testcase[@name='digest']/failure").count == 1)
        let points = try lifeboat("points", "--vault", t.vault)
        #expect(points.stdout.contains("failed"), "\(points.stdout)")

        // Damage in a layer's index: the point cannot even be mounted; every check fails
        // (a finding about the point: exit 1, not an infrastructure error).
        for path in damaged {
            let fd = try FileDescriptor.open(path, .readWrite)
            let size = try fd.seek(offset: 0, from: .end)
            _ = try fd.writeAll(toAbsoluteOffset: size - 200, [UInt8](repeating: 0x5A, count: 8))
            try fd.close()
        }
        let both = t.root + "/both.yaml"
        try "disks:\n  d0:\n    filesystem: none\n    checks: [digest, {script: {run: 'true'}}]\n".write(toFile: both, atomically: true, encoding: .utf8)
        let index = try run([lifeboatBinary, "drill", both, "--vault", t.vault, "--work-dir", drills])
        #expect(index.status == 1, "\(index.stdout)\(index.stderr)")
        #expect(index.stdout.contains("the point cannot be mounted") && index.stdout.contains("checksum"), "\(index.stdout)")
    }

    @Test func interruptedDrillsLeaveNothingBehind() throws {
        let s = try DrillSite()
        defer { s.cleanup() }
        // Each start runs its own script line, so a process of an earlier start (or anything
        // else on the machine) cannot be taken for this one's: the drill is signalled only once
        // its workspace exists and its check is running inside it.
        var starts = 0
        func start() throws -> Process {
            starts += 1
            let marker = "sleep 60 & sleep 60\(starts)"
            let slow = try s.plan("slow-\(starts)", "disks:\n  d0:\n    checks:\n      - fsck\n      - script: {run: '\(marker)', timeout: 5m}\n")
            let p = Process()
            p.executableURL = URL(fileURLWithPath: lifeboatBinary)
            p.arguments = ["drill", slow, "--vault", s.t.vault, "--work-dir", s.drills]
            // The drill's report and errors, for the failure message: why it ended early.
            let output = s.t.root + "/drill-\(starts).out"
            _ = FileManager.default.createFile(atPath: output, contents: nil)
            let outputHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
            defer { try? outputHandle.close() }
            p.standardOutput = outputHandle
            p.standardError = outputHandle
            try p.run()
            // Until the script runs: the filesystem is mounted on a loop device by then.
            let deadline = Date().addingTimeInterval(120)
            var running = false
            while Date() < deadline, p.isRunning, !running {
                usleep(50_000)
                let workspaces = (try? FileManager.default.contentsOfDirectory(atPath: s.drills)) ?? []
                running = !workspaces.isEmpty && !((try? run(["pgrep", "-f", marker]))?.stdout.isEmpty ?? true)
            }
            try #require(running, """
                the drill's script is running in its workspace before it is signalled (start \(starts); \
                drill \(p.isRunning ? "still running" : "exited \(p.terminationStatus)")): \
                \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
                """)
            return p
        }
        // SIGTERM and SIGINT: the drill stops, cleans up and exits with the infrastructure code.
        for sig in [SIGTERM, SIGINT] {
            let p = try start()
            kill(p.processIdentifier, sig)
            p.waitUntilExit()
            #expect(p.terminationStatus == 70)
            s.expectNothingLeft("after signal \(sig)")
        }
        // kill -9 of the drill: its worker cleans up on its own; `drill cleanup` removes the rest.
        let p = try start()
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, !(try run(["pgrep", "-f", "drill-worker \(s.drills)"])).stdout.isEmpty { usleep(100_000) }
        let cleanup = try run([lifeboatBinary, "drill", "cleanup", "--work-dir", s.drills])
        #expect(cleanup.status == 0 && cleanup.stdout.contains("removed"), "\(cleanup.stdout)")
        s.expectNothingLeft("after kill -9 of the drill and drill cleanup")
        // kill -9 of the worker: the drill reports an infrastructure error and cleans up.
        let q = try start()
        let worker = try run(["pgrep", "-f", "drill-worker \(s.drills)"]).stdout.split(separator: "\n").first.map(String.init) ?? ""
        #expect(!worker.isEmpty)
        kill(pid_t(worker) ?? 0, SIGKILL)
        q.waitUntilExit()
        #expect(q.terminationStatus == 70)
        s.expectNothingLeft("after kill -9 of the worker")
        // --keep: once the checks are done the targets stay, past the plan's timeout (it bounds
        // the checks), inside the worker's namespaces the printed nsenter command enters; a stop
        // signal then ends the drill with its verdict and cleans up.
        // 10 s: the timeout also bounds the worker's start and the fsck, which a loaded CI
        // machine once stretched past 4 s (the drill then ended with no verdict, exit 70).
        let keepPlan = try s.plan("keep", "timeout: 10s\ndisks:\n  d0:\n    checks: [fsck]\n")
        let keepLog = s.t.root + "/keep.log"
        let keepReport = s.t.root + "/keep.report"
        try #require(FileManager.default.createFile(atPath: keepLog, contents: nil))
        try #require(FileManager.default.createFile(atPath: keepReport, contents: nil))
        let kept = Process()
        kept.executableURL = URL(fileURLWithPath: lifeboatBinary)
        kept.arguments = ["drill", keepPlan, "--keep", "--vault", s.t.vault, "--work-dir", s.drills]
        kept.standardOutput = FileHandle(forWritingAtPath: keepReport)
        kept.standardError = FileHandle(forWritingAtPath: keepLog)
        let keptOutput = { ((try? String(contentsOfFile: keepLog, encoding: .utf8)) ?? "") + ((try? String(contentsOfFile: keepReport, encoding: .utf8)) ?? "") }
        try kept.run()
        var notice = ""
        let keepDeadline = Date().addingTimeInterval(30)
        while Date() < keepDeadline, kept.isRunning, !notice.contains("targets kept") {
            usleep(100_000)
            notice = (try? String(contentsOfFile: keepLog, encoding: .utf8)) ?? ""
        }
        let enter = notice.firstRange(of: /nsenter -t (\d+) -m -n -p/).map { String(notice[$0]) } ?? ""
        #expect(!enter.isEmpty, "\(keptOutput())")
        #expect(notice.contains("checks done: PASSED (1 check(s), 0 failed)"), "the verdict comes when the checks end, before Ctrl-C: \(notice)")
        // Exactly the printed command (its PID namespace has its own /proc).
        let inside = try run(enter.split(separator: " ").map(String.init) + ["cat", "/proc/self/mountinfo"])
        #expect(inside.stdout.contains(s.drills + "/") && inside.stdout.contains("ext4"), "the kept target is mounted inside: \(inside.stdout)\(inside.stderr) — \(notice)")
        sleep(11)
        #expect(kept.isRunning, "a kept drill outlives the plan's timeout: \(keptOutput())")
        kill(kept.processIdentifier, SIGINT)
        kept.waitUntilExit()
        #expect(kept.terminationStatus == 0, "\(keptOutput())")
        s.expectNothingLeft("after --keep and a stop signal")
        // The plan's timeout and a check's timeout.
        let timeout = try s.plan("timeout", "timeout: 3s\ndisks:\n  d0:\n    checks:\n      - script: {run: 'sleep 60'}\n")
        let r = try s.drill(timeout)
        #expect(r.status == 70 && r.stdout.contains("timeout"), "\(r.stdout)")
        let checkTimeout = try s.plan("check-timeout", "disks:\n  d0:\n    checks:\n      - script: {run: 'sleep 60', timeout: 1s}\n")
        let c = try s.drill(checkTimeout)
        #expect(c.status == 1 && c.stdout.contains("timed out after"), "\(c.stdout)")
        s.expectNothingLeft("after timeouts")
    }

    @Test func aBadPlanIsRefusedBeforeAnythingIsMounted() throws {
        let s = try DrillSite()
        defer { s.cleanup() }
        let plan = try s.plan("bad", "disks:\n  d0:\n    checks: [digest]\n  nosuch:\n    checks: [digest]\n")
        let r = try s.drill(plan)
        #expect(r.status == 64, "\(r.stderr)")
        #expect(r.stderr.contains("line 4") && r.stderr.contains("no disk 'nosuch'") && r.stderr.contains(plan), "\(r.stderr)")
        let manifest = try s.plan("manifest", "disks:\n  d0:\n    checks:\n      - files: {manifest: missing.sha256}\n")
        let m = try s.drill(manifest)
        #expect(m.status == 64 && m.stderr.contains("line 4") && m.stderr.contains("missing.sha256"), "\(m.stderr)")
        let left = (try? FileManager.default.contentsOfDirectory(atPath: s.drills)) ?? []
        #expect(left.isEmpty, "nothing was started: \(left)")
    }

    /// A writer that breaks its own invariant at one fsync: exploration finds that boundary.
    /// A protected 16 MiB raw disk with a point, `writes` made on it, and a second point: the
    /// site and the two points' ids.
    static func explorationSite(_ writes: (FileDescriptor) throws -> Void) throws -> (TestSite, [Int]) {
        let t = try TestSite(disks: [("d0", "16M")], withVault: true)
        do {
            _ = try t.startProtect(["--point-interval", "60", "--seal-interval", "1"])
            try t.checkpointInVault("--label", "from")
            let h = try FileDescriptor.open(t.image("d0"), .readWrite)
            try h.closeAfter { try writes(h) }
            try t.checkpointInVault("--label", "to")
            let points = try lifeboat("points", "--vault", t.vault, "--json")
            let ids = (try JSONSerialization.jsonObject(with: Data(points.stdout.utf8)) as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
            guard ids.count == 2 else { throw TestFailure("expected the two points: \(points.stdout)") }
            return (t, ids)
        } catch {
            t.cleanup()
            throw error
        }
    }

    /// Writes `text` at the start of `block`, the rest of the block zeros.
    static func put(_ h: FileDescriptor, block: Int64, _ text: String) throws {
        _ = try h.writeAll(toAbsoluteOffset: block * 4096, Array(text.utf8) + [UInt8](repeating: 0, count: 4096 - text.utf8.count))
    }

    @Test func explorationFindsTheFirstFailingFlush() throws {
        let (t, ids) = try Self.explorationSite { h in
            for round in 1...12 {
                try Self.put(h, block: round == 7 ? 0 : Int64(round), round == 7 ? "BAD" : "GOOD \(round)")
                fsync(h.rawValue)
            }
        }
        defer { t.cleanup() }
        let plan = t.root + "/app.yaml"
        try "disks:\n  d0:\n    filesystem: none\n    checks:\n      - script: {name: no-bad-header, run: '! head -c 4096 \"$LIFEBOAT_IMAGE\" | grep -q BAD'}\n"
            .write(toFile: plan, atomically: true, encoding: .utf8)
        var found: [UInt64] = []
        for mode in ["--bisect", "--every-flush"] {
            let json = t.root + "/explore\(mode).json"
            let r = try run([lifeboatBinary, "drill", "explore", plan, "--vault", t.vault, "--from", String(ids[0]), "--to", String(ids[1]),
                             mode, "--report-json", json, "--work-dir", t.root + "/drills"])
            #expect(r.status == 1, "\(mode): \(r.stdout)\(r.stderr)")
            let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any] ?? [:]
            let bad = (report["firstFailingLSN"] as? NSNumber)?.uint64Value ?? 0
            let good = (report["lastPassingLSN"] as? NSNumber)?.uint64Value ?? 0
            let writes = report["writesBetween"] as? [[String: Any]] ?? []
            // Exactly the BAD write lies between the last passing and the first failing boundary.
            #expect(writes.count == 1, "\(mode): \(writes)")
            #expect((writes.first?["firstBlock"] as? NSNumber)?.intValue == 0)
            let writeLSN = (writes.first?["lsn"] as? NSNumber)?.uint64Value ?? 0
            #expect(good < writeLSN && writeLSN < bad, "\(mode): \(good) < \(writeLSN) < \(bad)")
            #expect(r.stdout.contains("first failing boundary: LSN \(bad)"))
            found.append(bad)
            if mode == "--bisect" { #expect((report["steps"] as? [Any])?.count ?? 99 <= 7, "bisection checks O(log n) boundaries") }
        }
        #expect(found[0] == found[1], "bisect and every-flush agree")
        // A sample checks that many boundaries, spread evenly, the last one being `to`.
        let sample = try run([lifeboatBinary, "drill", "explore", plan, "--vault", t.vault, "--from", String(ids[0]), "--to", String(ids[1]),
                              "--sample", "3", "--work-dir", t.root + "/drills"])
        #expect(sample.status == 1, "the `to` point is among the sampled boundaries and fails")
        #expect(sample.stdout.contains("explored 3 of"), "\(sample.stdout)")
    }

    /// A boundary that fails with every write kept is not blamed on dropped writes: the report
    /// says so and points to --every-flush.
    @Test func droppingUnflushedWritesDoesNotBlameThemForABoundaryThatFailsAnyway() throws {
        let (t, ids) = try Self.explorationSite { h in
            try Self.put(h, block: 1, "GOOD 1")
            fsync(h.rawValue)
            try Self.put(h, block: 0, "BAD")  // two writes in one flush interval, the boundary bad whatever is dropped
            try Self.put(h, block: 20, "OTHER")
            fsync(h.rawValue)
        }
        defer { t.cleanup() }
        let plan = t.root + "/app.yaml"
        try "disks:\n  d0:\n    filesystem: none\n    checks:\n      - script: {name: no-bad-header, run: '! head -c 4096 \"$LIFEBOAT_IMAGE\" | grep -q BAD'}\n"
            .write(toFile: plan, atomically: true, encoding: .utf8)
        let json = t.root + "/explore.json"
        let r = try run([lifeboatBinary, "drill", "explore", plan, "--vault", t.vault, "--from", String(ids[0]), "--to", String(ids[1]),
                         "--drop-unflushed", "10", "--seed", "3", "--report-json", json, "--work-dir", t.root + "/drills"])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        #expect(r.stdout.contains("fails with every write kept: dropping unflushed writes is not the cause"), "\(r.stdout)")
        #expect(!r.stdout.contains("relied on writes no flush had made durable"), "\(r.stdout)")
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any] ?? [:]
        #expect((report["firstFailingDropped"] as? [Any])?.isEmpty == true, "\(report)")
    }

    /// A writer that puts a record's data and then its commit mark with no flush between them
    /// passes at every flush boundary; a crash inside the interval can lose the data and keep
    /// the mark. `--drop-unflushed` checks those states and names the dropped write.
    @Test func droppingUnflushedWritesFindsAMissingFlush() throws {
        let (t, ids) = try Self.explorationSite { h in
            for round in 1...2 {
                try Self.put(h, block: 1, "DATA \(round)")
                try Self.put(h, block: 0, "COMMIT \(round)")  // the bug: no fsync between the data and its mark
                fsync(h.rawValue)
            }
        }
        defer { t.cleanup() }
        let script = t.root + "/committed-data-present.sh"
        try """
            c=$(head -c 4096 "$LIFEBOAT_IMAGE" | tr -d '\\000'); d=$(dd if="$LIFEBOAT_IMAGE" bs=4096 skip=1 count=1 2>/dev/null | tr -d '\\000')
            [ -z "$c" ] || [ "${c#COMMIT }" = "${d#DATA }" ] || { echo "mark '$c' without its data (block 1: '$d')"; exit 1; }
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let plan = t.root + "/app.yaml"
        try "disks:\n  d0:\n    filesystem: none\n    checks:\n      - script: {run: 'sh \(script)'}\n".write(toFile: plan, atomically: true, encoding: .utf8)
        func explore(_ mode: [String]) throws -> (CommandResult, [String: Any]) {
            let json = t.root + "/explore.json"
            let r = try run([lifeboatBinary, "drill", "explore", plan, "--vault", t.vault, "--from", String(ids[0]), "--to", String(ids[1]),
                             "--report-json", json, "--work-dir", t.root + "/drills"] + mode)
            return (r, try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any] ?? [:])
        }
        let (boundaries, _) = try explore(["--every-flush"])
        #expect(boundaries.status == 0, "every flush boundary is consistent: \(boundaries.stdout)\(boundaries.stderr)")
        let (r, report) = try explore(["--drop-unflushed", "10", "--seed", "7"])
        #expect(r.status == 1, "\(r.stdout)\(r.stderr)")
        // Two intervals of two writes: 2 × 2 states, all of them checkable, in order; the first
        // drops the first DATA write and keeps its COMMIT.
        let writes = report["writesBetween"] as? [[String: Any]] ?? []
        #expect(writes.map { ($0["firstBlock"] as? NSNumber)?.intValue } == [1, 0], "\(writes)")
        let dataLSN = (writes.first?["lsn"] as? NSNumber)?.uint64Value
        #expect((report["firstFailingDropped"] as? [NSNumber])?.map(\.uint64Value) == dataLSN.map { [$0] }, "\(report)")
        #expect(r.stdout.contains("first failing crash state") && r.stdout.contains("— dropped") && r.stdout.contains("mark 'COMMIT 1' without its data"), "\(r.stdout)")
        // The failing state, then its boundary with every write kept, which passes: only then
        // are the dropped writes blamed.
        #expect(r.stdout.contains("checked 2 of 4 crash states"), "\(r.stdout)")
        let steps = report["steps"] as? [[String: Any]] ?? []
        #expect(steps.count == 2)
        #expect(steps.last?["result"] as? String == "passed" && steps.last?["dropped"] == nil, "\(steps)")
    }
}
