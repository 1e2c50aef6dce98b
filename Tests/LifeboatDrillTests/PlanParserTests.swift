import Foundation
import LifeboatCore
import Testing
@testable import LifeboatDrill

@Suite struct PlanParserTests {
    @Test func fullPlan() throws {
        let plan = try PlanParser.parse("""
            point: latest-app
            timeout: 10m
            disks:
              disk0:
                filesystem: ext4
                checks:
                  - digest
                  - fsck: {timeout: 2m}
                  - files: {manifest: app.sha256}
                  - sqlite: {database: var/app.db}
                  - script: {run: "test -d $LIFEBOAT_TARGET/etc", name: etc-exists, timeout: 30s}
              raw1:
                filesystem: none
                checks: [digest, script: {run: "true"}]
            """, path: "/plans/p.yaml")
        #expect(plan.point == "latest-app")
        #expect(plan.timeout == 600)
        #expect(plan.disks.map(\.name) == ["disk0", "raw1"])
        let d = plan.disks[0]
        #expect(d.filesystem == .ext4 && d.needsMount)
        #expect(d.checks.map(\.name) == ["digest", "fsck", "files", "sqlite", "etc-exists"])
        #expect(d.checks[1].timeout == 120 && d.checks[0].timeout == CheckPlan.defaultTimeout(.digest))
        #expect(d.checks[2].manifest == "app.sha256" && d.checks[3].database == "var/app.db")
        #expect(d.checks[4].run == "test -d $LIFEBOAT_TARGET/etc" && d.checks[4].timeout == 30)
        #expect(d.checks[3].line == 10)
        #expect(plan.disks[1].filesystem == .none && !plan.disks[1].needsMount)
        #expect(plan.directory == "/plans")
    }

    /// Each bad plan gets one error naming the line and the field.
    @Test(arguments: [
        ("disks:\n  d:\n    checks:\n      - fsk\n", "line 4: unknown check 'fsk'"),
        ("disks:\n  d:\n    checks:\n      - files: {timeout: 1m}\n", "line 4: check 'files' of disk 'd': missing field 'manifest'"),
        ("disks:\n  d:\n    checks:\n      - fsck: {timeout: soon}\n", "line 4: field 'disks.d.checks.fsck.timeout': 'soon' is not a duration"),
        ("disks:\n  d:\n    checks:\n      - fsck: {timout: 1m}\n", "line 4: unknown field 'timout' in check 'fsck'"),
        ("disks:\n  d:\n    checks:\n      - script: {run: [a, b]}\n", "line 4: field 'disks.d.checks.script.run' must be text, not a list"),
        ("point: latest\n", "line 1: missing field 'disks'"),
        ("disks:\n  d:\n    filesystem: ntfs\n    checks: [digest]\n", "line 3: field 'disks.d.filesystem': unknown filesystem 'ntfs'"),
        ("disks:\n  d:\n    checks: digest\n", "line 3: field 'disks.d.checks' must be a list"),
        ("disks:\n  d:\n    checks: [digest, digest]\n", "line 3: disk 'd' has two checks named 'digest'"),
        ("disks:\n  d:\n    filesystem: none\n    checks: [fsck]\n", "line 4: check 'fsck' needs a filesystem"),
        ("disks:\n  d:\n    chekcs: [fsck]\n", "line 3: unknown field 'chekcs' in disk 'd'"),
        ("disks: [\n", "not valid YAML: line 2"),
        ("timeout: 5x\ndisks:\n  d:\n    checks: [digest]\n", "line 1: field 'timeout': '5x' is not a duration"),
        // Found by the drill-plan fuzz target: Yams' base-60 integers trap on overflow.
        ("version: 2222222222222222222:22\ndisks:\n  d:\n    checks: [digest]\n", "line 1: field 'version' must be a whole number"),
        ("timeout: .inf\ndisks:\n  d:\n    checks: [digest]\n", "line 1: field 'timeout': '.inf' is not a duration"),
    ])
    func badPlans(text: String, expected: String) {
        do {
            _ = try PlanParser.parse(text, path: "bad.yaml")
            Issue.record("accepted: \(text)")
        } catch let e as LifeboatError {
            #expect(e.code == .invalidArgument)
            #expect(e.path == "bad.yaml")
            #expect(e.message.contains(expected), "\(e.message)")
        } catch {
            Issue.record("\(error)")
        }
    }
}
