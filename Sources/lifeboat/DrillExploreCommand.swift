import ArgumentParser
import Foundation
import LifeboatDrill

struct DrillExploreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "explore", abstract: "Check the disks at the flush boundaries between two points (or crash states inside them); report the first that fails.",
        discussion: "Exit 0 when no checked state failed, 1 when one did, 70 on an infrastructure error. `digest` checks are skipped (no source digest between markers).")
    @Argument(help: "The plan file (YAML).") var plan: String
    @OptionGroup var vault: VaultOption
    @Option(help: "The point to start after (a selector).") var from: String
    @Option(help: "The point to end at (a selector).") var to: String
    @Flag(help: "Check every flush boundary (the default).") var everyFlush = false
    @Option(help: "Check N boundaries spread evenly.") var sample: Int?
    @Flag(help: "Bisect to the first failing boundary.") var bisect = false
    @Option(help: ArgumentHelp("Check N crash states inside flush intervals: what was flushed is kept, a random part of the writes since is dropped (every such state when there are at most N).", valueName: "N"))
    var dropUnflushed: Int?
    @Option(help: "Seed for --drop-unflushed (printed in the report; the same seed replays the same states).") var seed: UInt64?
    @Option(help: "Write the JSON report to this file.") var reportJSON: String?
        @Flag(help: "Print the JSON report instead of the text one.") var json = false
    @Option(help: "Where drills keep their working directories.") var workDir: String?

    func validate() throws {
        if [everyFlush, sample != nil, bisect, dropUnflushed != nil].filter({ $0 }).count > 1 {
            throw ValidationError("choose one of --every-flush, --sample N, --bisect, --drop-unflushed N")
        }
        if let sample, sample < 1 { throw ValidationError("--sample takes a positive number") }
        if let dropUnflushed, dropUnflushed < 1 { throw ValidationError("--drop-unflushed takes a positive number") }
        if seed != nil && dropUnflushed == nil { throw ValidationError("--seed goes with --drop-unflushed") }
        try validateWorkDir(workDir)
    }

    func run() throws {
        let plan = try PlanParser.load(path: self.plan)
        let v = try vault.open()
        var options = Drill.Options(executable: lifeboatExecutable())
        if let workDir { options.workRoot = workDir }
        let mode: Explorer.Mode = bisect ? .bisect
            : sample.map { .sample($0) }
            ?? dropUnflushed.map { .dropUnflushed(count: $0, seed: seed ?? UInt64.random(in: 1...999_999)) }
            ?? .everyFlush
        let report = try Explorer.run(plan: plan, vault: v, from: from, to: to, mode: mode, options: options, logger: makeLogger())
        print(json ? String(decoding: try report.json(), as: UTF8.self) : report.text())
        if let reportJSON { try writeReport(try report.json(), to: reportJSON) }
        try exitFor(report.result)
    }
}
