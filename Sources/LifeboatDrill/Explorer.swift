import Foundation
import LifeboatCore
import LifeboatVault
import Logging

/// `lifeboat drill explore`: the dm-log-writes method (shared/reference §4) on the vault.
/// Between two points, the disks are reconstructed at flush boundaries — every one, an even
/// sample, or a bisection — and the plan's checks run at each, in a fresh isolated target;
/// the report names the first failing boundary, the last passing one, and the writes between
/// them. A flush boundary is the LSN of a journal flush record (an fsync the application saw
/// complete): every write before it is on the disk, none after it.
public enum Explorer {
    public enum Mode: Sendable {
        case everyFlush
        case sample(Int)
        case bisect
        /// Crash states inside flush intervals (reference §4.4, "skip"): `count` of them, from `seed`.
        case dropUnflushed(count: Int, seed: UInt64)
    }

    public struct Step: Codable, Sendable {
        public var lsn: UInt64
        public var result: DrillReport.Result
        /// `disk/check: message` for each failed check, or the infrastructure error.
        public var findings: [String]
        public var seconds: Double
        /// The unflushed writes (LSNs) left out of this crash state (`--drop-unflushed`).
        public var dropped: [UInt64]?
    }

    public struct Write: Codable, Sendable {
        public var lsn: UInt64
        public var disk: String
        public var firstBlock: UInt64
        public var blocks: Int
    }

    public struct Report: Codable, Sendable {
        public var plan: String
        public var fromLSN: UInt64
        public var toLSN: UInt64
        public var mode: String
        /// Flush boundaries in (from, to], `to` included.
        public var boundaries: Int
        /// With `--drop-unflushed`: how many crash states the flush intervals hold in all
        /// (Int.max standing for "more than that").
        public var crashStates: Int?
        public var steps: [Step]
        public var firstFailingLSN: UInt64?
        /// With `--drop-unflushed`: the writes the first failing crash state left out.
        public var firstFailingDropped: [UInt64]?
        public var lastPassingLSN: UInt64?
        /// The writes after the last passing boundary up to the first failing one.
        public var writesBetween: [Write]
        public var error: String?

        public var result: DrillReport.Result { error != nil ? .error : firstFailingLSN != nil ? .failed : .passed }

        public func text() -> String {
            var lines = [crashStates.map { "checked \(steps.count) of \($0 == Int.max ? "over 2^62" : String($0)) crash state\($0 == 1 ? "" : "s") inside the flush intervals in LSN \(fromLSN)…\(toLSN) (\(mode))" }
                ?? "explored \(steps.count) of \(boundaries) flush boundar\(boundaries == 1 ? "y" : "ies") in LSN \(fromLSN)…\(toLSN) (\(mode))"]
            for s in steps {
                let dropped = s.dropped.map { "without " + Self.list($0) + " " } ?? ""
                lines.append("  LSN " + pad(String(s.lsn), 10) + pad(s.result.rawValue, 8) + pad(describeDuration(s.seconds), 10) + dropped + s.findings.joined(separator: "; "))
            }
            if let error { lines.append("error: \(error)") }
            if let bad = firstFailingLSN, let dropped = firstFailingDropped, dropped.isEmpty {
                lines.append("the flush boundary LSN \(bad) fails with every write kept: dropping unflushed writes is not the cause; "
                             + "`drill explore --every-flush` finds the first failing boundary")
            } else if let bad = firstFailingLSN, let dropped = firstFailingDropped {
                lines.append("first failing crash state: LSN \(bad) without the unflushed \(Self.list(dropped)): the application relied on writes no flush had made durable")
                lines.append("writes since the previous flush (\(writesBetween.count)\(writesBetween.count == 64 ? "+" : "")):")
                for w in writesBetween {
                    lines.append("  LSN \(w.lsn): \(w.disk) blocks \(w.firstBlock)…\(w.firstBlock + UInt64(w.blocks) - 1) (byte offset \(w.firstBlock * 4096), \(w.blocks * 4) KiB)" + (dropped.contains(w.lsn) ? " — dropped" : ""))
                }
            } else if let bad = firstFailingLSN {
                lines.append("first failing boundary: LSN \(bad); last passing: LSN \(lastPassingLSN.map(String.init) ?? "none")")
                lines.append("writes between them (\(writesBetween.count)\(writesBetween.count == 64 ? "+" : "")):")
                for w in writesBetween {
                    lines.append("  LSN \(w.lsn): \(w.disk) blocks \(w.firstBlock)…\(w.firstBlock + UInt64(w.blocks) - 1) (byte offset \(w.firstBlock * 4096), \(w.blocks * 4) KiB)")
                }
            } else if crashStates == 0 {
                lines.append("no flush interval holds two or more writes: no crash state to check")
            } else if error == nil {
                lines.append(crashStates == nil ? "no checked boundary failed" : "no checked crash state failed")
            }
            return lines.joined(separator: "\n")
        }

        public func json() throws -> Data { try LifeboatJSON.encoder().encode(self) }

        static func list(_ lsns: [UInt64]) -> String {
            (lsns.count == 1 ? "write LSN " : "writes LSN ") + lsns.map(String.init).joined(separator: ", ")
        }
    }

    public static func run(plan original: DrillPlan, vault: Vault, from: String, to: String, mode: Mode,
                           options: Drill.Options, logger: Logger) throws -> Report {
        var plan = original
        try Drill.validate(&plan, vault: vault)
        let (fromLSN, _) = try PointSelector.resolve(from, in: vault)
        let (toLSN, _) = try PointSelector.resolve(to, in: vault)
        guard fromLSN < toLSN else {
            throw LifeboatError(.invalidArgument, "--from (LSN \(fromLSN)) must come before --to (LSN \(toLSN))")
        }
        // The states inside a resync window were never the disks' (regions come back in region
        // order): exploring across one would report failures of states that never existed.
        if let w = try vault.resyncWindows().first(where: { $0.gapAfter >= fromLSN && $0.gapAfter < toLSN || $0.contains(fromLSN) }) {
            throw LifeboatError(.invalidArgument, "LSNs \(fromLSN)…\(toLSN) cross a resync window (\(w.description)): explore between points on one side of it")
        }
        try Drill.checkPrerequisites()
        var boundaries = try vault.flushLSNs(in: fromLSN.next...toLSN)
        if boundaries.last != toLSN { boundaries.append(toLSN) }
        let modeName: String
        switch mode {
        case .everyFlush: modeName = "every-flush"
        case .sample(let n): modeName = "sample of \(n)"
        case .bisect: modeName = "bisect"
        case .dropUnflushed(let n, let seed): modeName = "at most \(n) state\(n == 1 ? "" : "s") asked for, seed \(seed)"
        }
        var report = Report(plan: plan.path, fromLSN: fromLSN.rawValue, toLSN: toLSN.rawValue, mode: modeName, boundaries: boundaries.count,
                            steps: [], writesBetween: [])
        let names = Dictionary(uniqueKeysWithValues: try vault.disks().map { ($0.id, $0.name) })

        func check(_ lsn: LSN, dropping dropped: [LSN]? = nil) -> Bool? {
            let start = Date()
            let without = dropped.map { " without " + Report.list($0.map(\.rawValue)) } ?? ""
            logger.notice("checking LSN \(lsn)\(without)")
            let spec = WorkerSpec(vault: vault.root.string, vaultKey: vault.atRest.keyPath?.string, point: DrilledPoint(id: nil, lsn: lsn.rawValue), plan: plan, digests: [:], keep: false,
                                  dropped: dropped?.map(\.rawValue) ?? [])
            let (result, failure) = Drill.runWorker(spec: spec, vault: vault, lsn: lsn, options: options, timeout: plan.timeout, logger: logger)
            var step = Step(lsn: lsn.rawValue, result: .passed, findings: [], seconds: Date().timeIntervalSince(start), dropped: dropped?.map(\.rawValue))
            if let error = failure ?? result?.error {
                step.result = .error
                step.findings = [error]
                report.error = "at LSN \(lsn): \(error)"
            } else {
                for d in result?.disks ?? [] {
                    for c in d.checks where c.status == .failed { step.findings.append("\(d.name)/\(c.name): \(c.message)") }
                }
                step.result = step.findings.isEmpty ? .passed : .failed
            }
            report.steps.append(step)
            return step.result == .error ? nil : step.result == .passed
        }

        var lastPassing: LSN? = fromLSN
        var firstFailing: LSN?
        var writesFrom: LSN?  // where the writes shown with the first failure start, when not after lastPassing
        switch mode {
        case .everyFlush, .sample:
            var chosen = boundaries
            if case .sample(let n) = mode, n < boundaries.count {
                chosen = (1...n).map { boundaries[Int((Double($0) * Double(boundaries.count) / Double(n)).rounded()) - 1] }
            }
            for lsn in chosen {
                guard let passed = check(lsn) else { break }
                if passed {
                    if firstFailing == nil { lastPassing = lsn }
                } else if firstFailing == nil {
                    firstFailing = lsn
                }
            }
        case .bisect:
            // Assumes a boundary that fails stays failing later on (as xfstests' bisection does).
            guard let toPasses = check(toLSN) else { break }
            if toPasses { break }
            guard let fromPasses = check(fromLSN) else { break }
            if !fromPasses {
                firstFailing = fromLSN
                lastPassing = nil
                break
            }
            var lo = -1, hi = boundaries.count - 1
            while hi - lo > 1 {
                let mid = (lo + hi) / 2
                guard let passed = check(boundaries[mid]) else { break }
                if passed { lo = mid } else { hi = mid }
            }
            if report.error == nil {
                firstFailing = boundaries[hi]
                lastPassing = lo >= 0 ? boundaries[lo] : fromLSN
            }
        case .dropUnflushed(let count, let seed):
            let writes = try vault.writes(in: fromLSN.next...toLSN, limit: .max)  // in LSN order
            let intervals = CrashStates.intervals(opening: fromLSN, closings: boundaries, writes: writes.map(\.lsn))
            report.crashStates = CrashStates.total(intervals)
            for state in CrashStates.choose(from: intervals, count: count, seed: seed) {
                guard let passed = check(state.closingLSN, dropping: state.dropped) else { break }
                if !passed {
                    firstFailing = state.closingLSN
                    // Blame the dropped writes only if the boundary with every write passes:
                    // a boundary that fails anyway is not about unflushed writes.
                    guard let boundaryPasses = check(state.closingLSN) else { break }
                    report.firstFailingDropped = boundaryPasses ? state.dropped.map(\.rawValue) : []
                    lastPassing = nil  // not a boundary search: no passing state is implied
                    writesFrom = intervals.first { $0.closingLSN == state.closingLSN }?.writes.first
                    break
                }
            }
        }
        if let bad = firstFailing {
            report.firstFailingLSN = bad.rawValue
            report.lastPassingLSN = lastPassing?.rawValue
            let after = writesFrom ?? lastPassing.map { $0.next } ?? LSN(1)
            if after <= bad {
                report.writesBetween = try vault.writes(in: after...bad).map {
                    Write(lsn: $0.lsn.rawValue, disk: names[$0.disk] ?? "\($0.disk)", firstBlock: $0.block.rawValue, blocks: $0.count)
                }
            }
        }
        return report
    }
}

/// The crash states `drill explore --drop-unflushed` checks. Inside a flush interval — after
/// one flush, before the next — a crash may lose any of the writes made since the first
/// flush: a state keeps everything up to the opening flush and drops a proper, non-empty
/// subset of the interval's writes. When all such states number at most `count`, each is
/// checked; otherwise `count` are drawn at random from `seed` (the same seed over the same
/// vault draws the same states, so a failure can be replayed).
