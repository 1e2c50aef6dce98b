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
    }

    public struct Step: Codable, Sendable {
        public var lsn: UInt64
        public var result: DrillReport.Result
        /// `disk/check: message` for each failed check, or the infrastructure error.
        public var findings: [String]
        public var seconds: Double
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
        public var steps: [Step]
        public var firstFailingLSN: UInt64?
        public var lastPassingLSN: UInt64?
        /// The writes after the last passing boundary up to the first failing one.
        public var writesBetween: [Write]
        public var error: String?

        public var result: DrillReport.Result { error != nil ? .error : firstFailingLSN != nil ? .failed : .passed }

        public func text() -> String {
            var lines = ["explored \(steps.count) of \(boundaries) flush boundar\(boundaries == 1 ? "y" : "ies") in LSN \(fromLSN)…\(toLSN) (\(mode))"]
            for s in steps {
                lines.append("  LSN " + pad(String(s.lsn), 10) + pad(s.result.rawValue, 8) + pad(describeDuration(s.seconds), 10) + s.findings.joined(separator: "; "))
            }
            if let error { lines.append("error: \(error)") }
            if let bad = firstFailingLSN {
                lines.append("first failing boundary: LSN \(bad); last passing: LSN \(lastPassingLSN.map(String.init) ?? "none")")
                lines.append("writes between them (\(writesBetween.count)\(writesBetween.count == 64 ? "+" : "")):")
                for w in writesBetween {
                    lines.append("  LSN \(w.lsn): \(w.disk) blocks \(w.firstBlock)…\(w.firstBlock + UInt64(w.blocks) - 1) (byte offset \(w.firstBlock * 4096), \(w.blocks * 4) KiB)")
                }
            } else if error == nil {
                lines.append("no checked boundary failed")
            }
            return lines.joined(separator: "\n")
        }

        public func json() throws -> Data { try ReportJSON.encoder().encode(self) }
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
        try Drill.checkPrerequisites()
        var boundaries = try vault.flushLSNs(in: fromLSN.next...toLSN)
        if boundaries.last != toLSN { boundaries.append(toLSN) }
        let modeName: String
        switch mode {
        case .everyFlush: modeName = "every flush"
        case .sample(let n): modeName = "sample of \(n)"
        case .bisect: modeName = "bisect"
        }
        var report = Report(plan: plan.path, fromLSN: fromLSN.rawValue, toLSN: toLSN.rawValue, mode: modeName, boundaries: boundaries.count,
                            steps: [], writesBetween: [])
        let names = Dictionary(uniqueKeysWithValues: try vault.disks().map { ($0.id, $0.name) })

        func check(_ lsn: LSN) -> Bool? {
            let start = Date()
            logger.notice("checking LSN \(lsn)")
            let spec = WorkerSpec(vault: vault.root.string, point: DrilledPoint(id: nil, lsn: lsn.rawValue), plan: plan, digests: [:], keep: false)
            let (result, failure) = Drill.runWorker(spec: spec, vault: vault, lsn: lsn, options: options, timeout: plan.timeout, logger: logger)
            var step = Step(lsn: lsn.rawValue, result: .passed, findings: [], seconds: Date().timeIntervalSince(start))
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
        }
        if let bad = firstFailing {
            report.firstFailingLSN = bad.rawValue
            report.lastPassingLSN = lastPassing?.rawValue
            let after = lastPassing.map { $0.next } ?? LSN(1)
            if after <= bad {
                report.writesBetween = try vault.writes(in: after...bad).map {
                    Write(lsn: $0.lsn.rawValue, disk: names[$0.disk] ?? "\($0.disk)", firstBlock: $0.block.rawValue, blocks: $0.count)
                }
            }
        }
        return report
    }
}
