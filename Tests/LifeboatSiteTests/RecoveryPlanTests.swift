import Foundation
import LifeboatCore
import LifeboatTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Recovery plans (issue 13): ordered groups of sites with scripts and gates, drilled as a whole
/// and failed over as a whole; a plan naming an unknown site, or a failing script, stops it.
@Suite(.serialized, .timeLimit(.minutes(10)), .enabled(if: canMount, mountSkipReason))
struct RecoveryPlanTests {
    @Test func aPlanIsDrilledThenFailedOverGroupByGroupWithItsScriptsAndGates() throws {
        let root = try makeTemporaryDirectory("plan")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let vault = root + "/vault"
        var sites: [TestSite] = []
        defer { sites.forEach { $0.cleanup() } }
        for (name, seed) in [("ledger", 101), ("web", 102)] {
            let t = try TestSite(disks: [])
            sites.append(t)
            try check(lifeboat("init", "--site", t.site + "2", "--vault", vault + "/sites/" + name))
            try check(lifeboat("disk", "create", "d0", "--size", "16M", "--site", t.site + "2"))
            let p = try ProtectProcess(site: t.site + "2", mountpoint: t.mountpoint, extra: [])
            try writeBytes(t.image("d0"), at: 0, randomBytes(2 << 20, seed: UInt64(seed)))
            try check(lifeboat("checkpoint", "--site", t.site + "2", "--timeout", "60s"))
            #expect(p.stop() == 0)
        }
        try "disks:\n  d0:\n    filesystem: none\n    checks:\n      - digest\n".write(toFile: root + "/d0.yaml", atomically: true, encoding: .utf8)
        let plan = root + "/plan.yaml"
        try """
            name: branch-office
            groups:
              - name: databases
                sites: [ledger]
                pre: echo pre-databases >> order.log
                post: echo post-databases >> order.log
                gate: the ledger answers
                drill: d0.yaml
              - name: web
                sites: [web]
                pre: echo pre-web >> order.log
                drill: d0.yaml
            """.write(toFile: plan, atomically: true, encoding: .utf8)

        // A drill of the plan: a test failover of every group, a JUnit suite per group.
        let junit = root + "/drill.xml"
        let drill = try lifeboat("drill", "recovery-plan", plan, "--vault", vault, "--yes", "--junit", junit, "--work-dir", root + "/drills")
        #expect(drill.status == 0, "\(drill.stdout)\(drill.stderr)")
        let xml = (try? String(contentsOfFile: junit, encoding: .utf8)) ?? ""
        #expect(xml.contains("<testsuite name=\"databases\"") && xml.contains("<testsuite name=\"web\"") && !xml.contains("<failure"), "\(xml)")
        #expect(try String(contentsOfFile: root + "/order.log", encoding: .utf8) == "pre-databases\npost-databases\npre-web\n")
        unlink(root + "/order.log")

        // Bad plans change nothing: an unknown site, a gate with no one to approve it, a failing script.
        let unknown = root + "/unknown.yaml"
        try "name: x\ngroups:\n  - name: g\n    sites: [ledger, nobody]\n".write(toFile: unknown, atomically: true, encoding: .utf8)
        let refused = try lifeboat("failover", "--plan", unknown, "--vault", vault, "--point", "latest", "--yes")
        #expect(refused.status == 66 && refused.stderr.contains("nobody") && refused.stderr.contains("nothing was done"), "\(refused.stderr)")
        let ungated = try run(["/bin/sh", "-c", "\"$0\" failover --plan \"$1\" --vault \"$2\" --point latest < /dev/null", lifeboatBinary, plan, vault])
        #expect(ungated.status == 64 && ungated.stderr.contains("say --yes"), "\(ungated.stderr)")
        let failing = root + "/failing.yaml"
        try "name: x\ngroups:\n  - name: first\n    sites: [ledger]\n    pre: exit 3\n  - name: second\n    sites: [web]\n".write(toFile: failing, atomically: true, encoding: .utf8)
        let stopped = try lifeboat("failover", "--plan", failing, "--vault", vault, "--point", "latest", "--yes")
        #expect(stopped.status == 1 && stopped.stdout.contains("FAIL pre: exit 3") && stopped.stdout.contains("1 group(s) not started"), "\(stopped.stdout)")
        #expect(!FileManager.default.fileExists(atPath: vault + "/recovered"), "nothing failed over")

        // The plan for real: group by group, each site's failover, the RTO per group.
        let real = try lifeboat("failover", "--plan", plan, "--vault", vault, "--point", "latest", "--yes", "--json", "--junit", root + "/failover.xml")
        #expect(real.status == 0, "\(real.stdout)\(real.stderr)")
        let groups = (try? JSONSerialization.jsonObject(with: Data(real.stdout.utf8))) as? [[String: Any]] ?? []
        #expect(groups.map { $0["name"] as? String } == ["databases", "web"] && groups.allSatisfy { ($0["rtoSeconds"] as? Double ?? 99) < 10 }, "\(real.stdout)")
        #expect(try String(contentsOfFile: root + "/order.log", encoding: .utf8) == "pre-databases\npost-databases\npre-web\n")
        for name in ["ledger", "web"] { #expect(FileManager.default.fileExists(atPath: vault + "/recovered/\(name)/site.json")) }
        let status = try lifeboat("status", "--vault", vault)
        #expect(status.stdout.contains("ledger") && status.stdout.contains("failed over"), "\(status.stdout)")

        // Back with the plan: the failed-over sites serving and pointed, committed; the old sites
        // re-protected; then failed back group by group on their host, zero loss each.
        var serving: [ProtectedSiteOnTheVaultHost] = []
        defer { serving.forEach { $0.stop() } }
        for name in ["ledger", "web"] {
            let b = ProtectedSiteOnTheVaultHost(site: vault + "/recovered/" + name, mountpoint: root + "/mnt-" + name)
            serving.append(b)
            try b.start()
            try writeBytes(b.image("d0"), at: 8 << 20, randomBytes(1 << 20, seed: 103))
            try b.checkpointInVault()
            try check(lifeboat("failover", "commit", "--vault", vault, "--site", name))
        }
        for t in sites { try check(lifeboat("reprotect", "--site", t.site + "2")) }
        unlink(root + "/order.log")
        let back = try lifeboat("failback", "--plan", plan, "--site-dir", "ledger=" + sites[0].site + "2", "--site-dir", "web=" + sites[1].site + "2",
                                "--yes", "--json")
        #expect(back.status == 0, "\(back.stdout)\(back.stderr)")
        #expect(try String(contentsOfFile: root + "/order.log", encoding: .utf8) == "pre-databases\npost-databases\npre-web\n")
        for (t, b) in zip(sites, serving) {
            #expect(try run(["cmp", t.site + "2/disks/d0.img", b.image("d0")]).status == 0, "zero loss: \(t.site)")
        }
        let missing = try lifeboat("failback", "--plan", plan, "--site-dir", "ledger=" + sites[0].site + "2", "--yes")
        #expect(missing.status == 66 && missing.stderr.contains("web"), "a plan site without its directory here: \(missing.stderr)")
    }
}
