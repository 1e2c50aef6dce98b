import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatDrill
import LifeboatVault
import SystemPackage

struct DrillCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill", abstract: "Test failover: check a recovery point in an isolated, throwaway target.",
        discussion: """
            `lifeboat drill PLAN` runs a plan (its options: `lifeboat drill run --help`). Exit 0 when every check passed, \
            1 when one failed, 70 when the drill could not run (infrastructure); 64 for a bad plan. Plans: Docs/operations.md.
            """,
        subcommands: [Run.self, DrillExploreCommand.self, DrillRecoveryPlanCommand.self, Cleanup.self], defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a drill plan on a recovery point (the default: `lifeboat drill PLAN`).")
        @Argument(help: "The plan file (YAML).") var plan: String
        @OptionGroup var vault: VaultOption
        @Option(help: "The point: latest, latest-app, an id, lsn:N or @TIME (default: the plan's, else latest).") var point: String?
        @Option(help: "Write a JUnit XML report here.") var junit: String?
        @Option(help: "Write the JSON report to this file.") var reportJSON: String?
        @Flag(help: "Print the JSON report instead of the text one.") var json = false
        @Flag(help: "Keep the targets mounted after the checks until Ctrl-C (for inspection).") var keep = false
        @Option(help: "Where drills keep their working directories (default: $LIFEBOAT_DRILL_DIR or /var/lib/lifeboat/drills).") var workDir: String?

        func validate() throws { try validateWorkDir(workDir) }

        func run() throws {
            let plan = try PlanParser.load(path: self.plan)
            let v = try vault.open()
            var options = Drill.Options(executable: lifeboatExecutable())
            options.point = point
            options.keep = keep
            if let workDir { options.workRoot = workDir }
            let r = try Drill.run(plan: plan, vault: v, options: options, logger: makeLogger())
            print(json ? String(decoding: try r.json(), as: UTF8.self) : r.text())
            if let junit { try writeReport(Data(r.junit().utf8), to: junit) }
            if let reportJSON { try writeReport(try r.json(), to: reportJSON) }
            try exitFor(r.result)
        }
    }

    struct Cleanup: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove what interrupted drills left behind (loop devices, overlays, pins, working directories).",
            discussion: "Drills still running are listed and left alone.")
        @Option(help: "The drills' working directory root (default: $LIFEBOAT_DRILL_DIR or /var/lib/lifeboat/drills).") var workDir: String?

        func run() throws {
            let (removed, running) = DrillWorkspace.cleanupAll(root: workDir ?? DrillWorkspace.defaultRoot)
            for line in removed { print(line) }
            for dir in running { print("still running, left alone: \(dir)") }
            if removed.isEmpty && running.isEmpty { print("nothing to clean up") }
        }
    }
}

/// `lifeboat drill-worker DIR`: the drill's inside half, started by `drill` in its namespaces.
struct DrillWorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "drill-worker", abstract: "Internal: the isolated half of a drill.", shouldDisplay: false)
    @Argument var directory: String

    func run() throws {
        let code = DrillWorker.run(directory: directory, logger: makeLogger())
        if code != 0 { throw ExitCode(code) }
    }
}

/// A drill's exit: 0 passed, 1 a check failed, 70 no verdict (Docs/operations.md).
func exitFor(_ result: DrillReport.Result?) throws {
    switch result {
    case .passed: return
    case .failed: throw ExitCode(Drill.exitFailedCheck)
    case .error, nil: throw ExitCode(Drill.exitInfrastructure)
    }
}

func writeReport(_ data: Data, to path: String) throws {
    do { try data.write(to: URL(fileURLWithPath: path)) } catch {
        let e = ((error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError).map { Errno(rawValue: Int32($0.code)) } ?? .ioError
        throw LifeboatError.system(e, "cannot write the report", path: path)
    }
}

/// A --work-dir that cannot hold a drill is a usage error, found before any point is pinned
/// or any result recorded.
func validateWorkDir(_ path: String?) throws {
    guard let path else { return }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
        throw ValidationError("--work-dir \(path) is not a directory")
    }
}

/// This binary, for the drill to start its worker with.
func lifeboatExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}
