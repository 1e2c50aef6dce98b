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

    @Test func bootOptions() throws {
        let plan = try PlanParser.parse("""
            disks:
              vm:
                filesystem: none
                checks:
                  - boot: {expect: "LIFEBOAT-PROBE ok", fail-on: FAILED, memory: 1G, cpus: 2, accelerator: tcg, timeout: 90s}
                  - boot: {name: direct, expect: up, kernel: k/vmlinuz, initrd: k/initrd.img, append: "console=ttyS0", memory: 512MiB}
            """, path: "/plans/vm.yaml")
        let checks = plan.disks[0].checks
        #expect(!plan.disks[0].needsMount)
        var first = BootOptions(expect: "LIFEBOAT-PROBE ok")
        first.failOn = "FAILED"
        first.memoryMiB = 1024
        first.cpus = 2
        first.accelerator = .tcg
        #expect(checks[0].boot == first && checks[0].timeout == 90)
        #expect(checks[1].name == "direct" && checks[1].boot?.kernel == "k/vmlinuz" && checks[1].boot?.initrd == "k/initrd.img")
        #expect(checks[1].boot?.append == "console=ttyS0" && checks[1].boot?.memoryMiB == 512 && checks[1].boot?.accelerator == .auto)
        #expect(checks[1].timeout == CheckPlan.defaultTimeout(.boot))
        // A disk with a filesystem and only boot checks is not mounted either.
        let auto = try PlanParser.parse("disks:\n  vm:\n    checks: [digest, boot: {expect: x}]\n", path: "p.yaml")
        #expect(!auto.disks[0].needsMount)
    }

    @Test func bootQemuArgumentsKeepThePointReadOnlyAndTheMachineOffline() {
        var options = BootOptions(expect: "x")
        options.kernel = "/k/vmlinuz"
        options.initrd = "/k/initrd.img"
        options.append = "console=ttyS0"
        let argv = BootCheck(image: "/d/target/vm.img", options: options, timeout: 10, scratchDirectory: "/d", log: "/d/log").arguments(accelerator: "tcg")
        #expect(argv.contains("file=/d/target/vm.img,format=raw,if=virtio,snapshot=on"))
        #expect(argv.joined(separator: " ").contains("-nic none") && argv.contains("-nodefaults") && argv.contains("-no-reboot"))
        #expect(argv.joined(separator: " ").contains("-kernel /k/vmlinuz -initrd /k/initrd.img -append console=ttyS0"))
        #expect(argv.joined(separator: " ").contains("-accel tcg") && !argv.contains("host"))
    }

    @Test func consoleLinesDropTerminalControlAndKeepATail() {
        var console = ConsoleLines()
        let lines = console.append(ArraySlice(Array("\u{1B}c\u{1B}[?7l\u{1B}[2J\u{1B}[0mSeaBIOS (version 1.16)\r\nLIFEBOAT-PRO".utf8)))
        #expect(lines == ["SeaBIOS (version 1.16)"])
        #expect(console.append(ArraySlice(Array("BE ok records=3\r\n".utf8))) == ["LIFEBOAT-PROBE ok records=3"])
        #expect(console.lastLine == "LIFEBOAT-PROBE ok records=3")
        _ = console.append(ArraySlice([UInt8](repeating: UInt8(ascii: "x"), count: 10_000)))
        #expect(console.tail.utf8.count == Subprocess.tailBytes)
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
        ("disks:\n  d:\n    checks:\n      - boot: {timeout: 1m}\n", "line 4: check 'boot' of disk 'd': missing field 'expect'"),
        ("disks:\n  d:\n    checks:\n      - boot\n", "line 4: check 'boot' of disk 'd': missing field 'expect'"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ok, accelerator: hvf}\n", "line 4: field 'disks.d.checks.boot.accelerator': unknown accelerator 'hvf' (use auto, kvm, tcg)"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ok, memory: 12}\n", "line 4: field 'disks.d.checks.boot.memory': '12' is not a memory size from 64M to 64G"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ok, memory: lots}\n", "field 'disks.d.checks.boot.memory': 'lots' is not a memory size"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ok, cpus: 0}\n", "line 4: field 'disks.d.checks.boot.cpus': 0 is not from 1 to 64"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ok, initrd: i.img}\n", "line 4: field 'disks.d.checks.boot.initrd' needs 'kernel'"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ''}\n", "line 4: field 'disks.d.checks.boot.expect' is empty"),
        ("disks:\n  d:\n    checks:\n      - boot: {expect: ok, fail-on: ''}\n", "line 4: field 'disks.d.checks.boot.fail-on' is empty"),
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
