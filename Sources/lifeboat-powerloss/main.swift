import ArgumentParser
import Foundation
import LifeboatCore
import SystemPackage

/// `lifeboat-powerloss`: the two halves of Harness/power-loss.sh.
struct PowerLoss: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboat-powerloss", abstract: "Power-loss harness: a recorded workload and the check of its crash states.",
        subcommands: [WorkloadCommand.self, CheckCommand.self])
}

struct WorkloadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "workload", abstract: "Write to protected disks with fdatasyncs; acknowledge each on the ack disk.")
    @Option(help: "A protected disk (repeat; the order names them to `check`).") var disk: [String]
    @Option(help: "The recorder's ack disk.") var acks: String
    @Option var writers = 4
    @Option var seconds = 20.0
    @Option var seed: UInt64 = 1
    @Option(help: "Writes per fdatasync, on average.") var syncEvery = 3

    func run() throws {
        try Workload(disks: disk.map { FilePath($0) }, acks: FilePath(acks), writers: writers, seconds: seconds, seed: seed, syncEvery: max(1, syncEvery)).run()
    }
}

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Check crash states of the recorded site filesystem; exit 1 when one loses anything.")
    @Option(help: "The recorder site.") var recorder: String
    @Option(help: "The recorder's disk that held the site filesystem.") var image = "sitefs"
    @Option(help: "The recorder's ack disk.") var acks = "acks"
    @Option(help: "The site inside the filesystem (relative path).") var site = "site"
    @Option(help: "The vault inside the filesystem (relative path).") var vault = "vault"
    @Option(help: "The workload's disks, in its order (repeat).") var disk: [String]
    @Option(help: "How many crash states: every flush boundary, the rest inside flush intervals.") var states = 1000
    @Option var seed: UInt64 = 1
    @Option(help: "A directory for the images (tmpfs is fastest).") var work: String
    @Option(help: "Where to mount each state: where the filesystem was mounted when recorded (the site names its vault by absolute path).") var mountpoint: String
    @Option(help: "Keep the first failing states' images here.") var keepFailures: String?
    @Option(help: ArgumentHelp("Check only every K-th state from the I-th (0-based), for K checkers in parallel, each in its own mount namespace.", valueName: "I/K"))
    var shard = "0/1"
    @Flag(help: "Stop at the first state that loses something.") var failFast = false

    func validate() throws {
        let parts = shard.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, parts[0] >= 0, parts[0] < parts[1] else { throw ValidationError("--shard takes I/K with 0 <= I < K") }
    }

    func run() throws {
        let started = ContinuousClock.now
        let recording = try Recording(recorderSite: FilePath(recorder), imageDisk: image, ackDisk: acks)
        let check = CrashStateCheck(recording: recording, siteInImage: site, vaultInImage: vault, diskNames: disk, work: FilePath(work), mountpoint: FilePath(mountpoint),
                                    keepFailures: keepFailures.map { FilePath($0) })
        let (all, boundaries, inside) = check.states(count: states, seed: seed)
        let parts = shard.split(separator: "/").compactMap { Int($0) }
        let chosen = all.enumerated().filter { $0.offset % parts[1] == parts[0] }.map(\.element)
        print("recording: \(recording.writes.count) block writes, \(recording.flushes.count) flushes, \(recording.acks.count) acknowledged fdatasyncs; "
              + "checking \(all.count) crash states (\(boundaries) flush boundaries, \(inside) inside flush intervals, seed \(seed))"
              + (parts[1] > 1 ? ", shard \(shard): \(chosen.count) of them" : ""))
        var lastPrint = ContinuousClock.now
        let (checked, findings) = try check.run(chosen, failFast: failFast) { done, lost in
            if lastPrint.duration(to: .now) > .seconds(30) || done == chosen.count {
                lastPrint = .now
                FileHandle.standardError.write(Data("  \(done)/\(chosen.count) states, \(lost) lost, \(describeDuration(started.duration(to: .now).inSeconds))\n".utf8))
            }
        }
        let total = check.phases.value.values.reduce(0, +)
        print("time per state: " + check.phases.value.sorted { $0.value > $1.value }
            .map { "\($0.key) \(Int(($0.value / Double(max(1, checked)) * 1000).rounded())) ms" }.joined(separator: ", ")
            + " (\(Int((total / Double(max(1, checked)) * 1000).rounded())) ms)")
        for (state, finding) in findings.prefix(10) { print("LOST \(state.name): \(finding)") }
        print("\(checked) crash states, \(findings.count) lost (\(describeDuration(started.duration(to: .now).inSeconds)))")
        if !findings.isEmpty { throw ExitCode(1) }
    }
}

PowerLoss.main()
