import ArgumentParser
import Foundation
import LifeboatCore
import LifeboatFailover
import LifeboatVault
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The manual gate of `failover` and of a recovery plan's groups: `--yes`, or "yes" typed at a
/// terminal; anything else changes nothing more.
func approveGate(_ what: String, yes: Bool) throws {
    if yes { return }
    guard isatty(STDIN_FILENO) == 1 else { throw ValidationError("\(what): say --yes to approve (no terminal to ask at)") }
    FileHandle.standardError.write(Data("\(what). Type yes to go on: ".utf8))
    guard readLine()?.trimmingCharacters(in: .whitespaces).lowercased() == "yes" else { throw LifeboatError(.invalidArgument, "not approved: nothing more was done") }
}

/// Prints a plan's run: a line per step, the RTO per group; writes JUnit; exits 1 if a step failed.
func finishPlanRun(_ plan: RecoveryPlan, _ reports: [PlanGroupReport], json: Bool, junit: String?) throws {
    if let junit { try writeFileAtomically(FilePath(junit), Array(RecoveryPlanRun.junit(plan, reports).utf8)) }
    if json { try printJSON(reports) } else {
        for r in reports {
            print("group \(r.name): \(r.passed ? "done" : "FAILED") (RTO \(String(format: "%.2f", r.rtoSeconds)) s)")
            for s in r.steps { print("  \(s.passed ? "ok  " : "FAIL") \(s.name) (\(String(format: "%.2f", s.seconds)) s)\(s.detail.isEmpty ? "" : ": " + s.detail)") }
        }
        let left = plan.groups.count - reports.count
        if left > 0 { print("\(left) group(s) not started") }
    }
    if !(reports.count == plan.groups.count && reports.allSatisfy(\.passed)) { throw ExitCode(1) }
}

/// `lifeboat drill recovery-plan PLAN`: a test failover of the whole plan — each group's sites
/// drilled in order (its `drill` plan, the point given), with its scripts and gates.
struct DrillRecoveryPlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recovery-plan",
        abstract: "Drill a recovery plan: each group's sites drilled in order with the group's drill plan, its scripts and gates; a report per group with its RTO.")
    @Argument(help: "The recovery plan (YAML; Docs/operations.md, \"Recovery plans\").") var plan: String
    @OptionGroup var vault: VaultDirectoryOption
    @Option(help: "The key file of an encrypted vault (default: $LIFEBOAT_VAULT_KEY).") var key: String?
    @Option(help: "The point of every site: latest, latest-app, @TIME (default: latest).") var point = "latest"
    @Option(help: "Write a JUnit XML report here: a test suite per group.") var junit: String?
    @Option(help: "Where drills keep their working directories (default: $LIFEBOAT_DRILL_DIR or /var/lib/lifeboat/drills).") var workDir: String?
    @Flag(help: "Approve every gate without asking.") var yes = false
    @Flag(help: "Print the groups' reports as JSON.") var json = false

    func run() throws {
        guard let root = vault.path else { throw ValidationError("no vault given: pass --vault DIR or set LIFEBOAT_VAULT") }
        let home = try VaultHome(root: FilePath(absolutePath(root)))
        let recovery = try RecoveryPlan.load(plan)
        try recovery.requireSites(known: try home.siteNames(), path: plan)
        for (i, g) in recovery.groups.enumerated() where g.drill == nil {
            throw LifeboatError(.invalidArgument, "field 'groups[\(i)].drill': group '\(g.name)' names no drill plan to drill its sites with", path: plan)
        }
        let me = CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0] : absolutePath(CommandLine.arguments[0])
        let reports = try RecoveryPlanRun.run(recovery, approve: { try approveGate($0, yes: yes) }) { site in
            let group = recovery.groups.first { $0.sites.contains(site) }!
            let drillPlan = (group.drill!.hasPrefix("/") ? group.drill! : recovery.directory + "/" + group.drill!)
            var argv = [me, "drill", drillPlan, "--vault", home.root.string, "--site", site, "--point", point]
            if let key = vaultKeyFile(key) { argv += ["--key", key] }
            if let workDir { argv += ["--work-dir", workDir] }
            let result = ChildProcess.run(argv, deadline: .now + .seconds(3600))
            guard result.succeeded else { throw LifeboatError(.mismatch, "the drill of site '\(site)' \(result.failure ?? "failed")") }
            return "drill passed"
        }
        try finishPlanRun(recovery, reports, json: json, junit: junit)
    }
}
