import Foundation
import LifeboatCore
import SystemPackage
import Yams

/// A recovery plan (Docs/operations.md, "Recovery plans"): ordered groups of sites, each with
/// scripts run before and after it and a manual gate, for `failover --plan` and
/// `drill --recovery-plan`:
///
/// ```yaml
/// name: branch-office
/// groups:
///   - name: databases
///     sites: [ledger, orders]
///     pre: ./stop-replication.sh     # sh -c, in the plan's directory; a failure stops the plan
///     post: ./check-databases.sh
///     gate: "the databases answer"   # asked after the group (--yes approves)
///     drill: databases.yaml          # the drill plan of these sites (drill --recovery-plan)
///     timeout: 10m                   # each script's
///   - name: web
///     sites: [web]
/// ```
public struct RecoveryPlan: Codable, Sendable {
    public struct Group: Codable, Sendable {
        public var name: String
        public var sites: [String]
        public var pre: String?
        public var post: String?
        public var gate: String?
        public var drill: String?
        public var timeout: String?
    }

    public var name: String
    public var groups: [Group]
    /// Where the plan file is: scripts and drill plans are relative to it.
    public var directory: String = "."

    enum CodingKeys: String, CodingKey { case name, groups }

    /// Reads and checks a plan: every error names the file and the field; nothing runs before.
    public static func load(_ path: String) throws -> RecoveryPlan {
        let text: String
        do { text = String(decoding: try readWholeFile(FilePath(path)), as: UTF8.self) } catch {
            throw LifeboatError.system(error, "cannot read the recovery plan", path: path)
        }
        var plan: RecoveryPlan
        do { plan = try YAMLDecoder().decode(RecoveryPlan.self, from: text) } catch let e as DecodingError {
            throw LifeboatError(.invalidArgument, "not a recovery plan", path: path, cause: e)
        } catch {
            throw LifeboatError(.invalidArgument, "not valid YAML: \(error)", path: path)
        }
        plan.directory = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        guard !plan.groups.isEmpty else { throw LifeboatError(.invalidArgument, "field 'groups': the plan has no group", path: path) }
        var seen: Set<String> = []
        for (i, g) in plan.groups.enumerated() {
            guard !g.sites.isEmpty else { throw LifeboatError(.invalidArgument, "field 'groups[\(i)].sites': group '\(g.name)' names no site", path: path) }
            for site in g.sites {
                do { try SiteName.validate(site) } catch let e as LifeboatError {
                    throw LifeboatError(.invalidArgument, "field 'groups[\(i)].sites': \(e.message)", path: path)
                }
                guard seen.insert(site).inserted else {
                    throw LifeboatError(.invalidArgument, "field 'groups[\(i)].sites': site '\(site)' is in the plan twice", path: path)
                }
            }
            if let t = g.timeout {
                do { _ = try parseDuration(t) } catch {
                    throw LifeboatError(.invalidArgument, "field 'groups[\(i)].timeout': \(error.message)", path: path)
                }
            }
        }
        return plan
    }

    /// Refuses a plan naming a site the vault holds no group of (all named at once).
    public func requireSites(known: [String], path: String) throws {
        let unknown = groups.flatMap(\.sites).filter { !known.contains($0) }
        guard unknown.isEmpty else {
            throw LifeboatError(.notFound, "the plan names site(s) the vault holds no group of: \(unknown.joined(separator: ", ")) "
                                + "(it has: \(known.isEmpty ? "none" : known.joined(separator: ", "))); nothing was done", path: path)
        }
    }
}

/// What one group of a plan did: `failover --plan` and `drill --recovery-plan` print these (text,
/// JSON, JUnit: a test suite per group, a test case per site and script).
public struct PlanGroupReport: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public var name: String
        public var passed: Bool
        public var seconds: Double
        public var detail: String
    }
    public var name: String
    public var steps: [Step]
    /// From the group's start to its last site ready (or drilled): the group's RTO.
    public var rtoSeconds: Double
    public var passed: Bool { steps.allSatisfy(\.passed) }
}

public enum RecoveryPlanRun {
    /// Runs the plan's groups in order: `pre`, then `each` for every site, then `post`, then the
    /// gate (`approve`); the first failure stops the plan (later groups are not started).
    public static func run(_ plan: RecoveryPlan, approve: (String) throws -> Void,
                           each: (String) throws -> String) throws -> [PlanGroupReport] {
        var reports: [PlanGroupReport] = []
        for group in plan.groups {
            let started = ContinuousClock.now
            var report = PlanGroupReport(name: group.name, steps: [], rtoSeconds: 0)
            defer { reports.append(report) }
            let timeout = group.timeout.flatMap { try? parseDuration($0) } ?? 600
            func script(_ name: String, _ command: String?) {
                guard let command else { return }
                let t = ContinuousClock.now
                let result = ChildProcess.run(["/bin/sh", "-c", "cd \"$0\" && " + command, plan.directory],
                                              deadline: .now + .milliseconds(Int64(timeout * 1000)))
                report.steps.append(.init(name: "\(name): \(command)", passed: result.succeeded, seconds: t.duration(to: .now).inSeconds,
                                          detail: result.failure ?? result.outputTail.split(separator: "\n").last.map(String.init) ?? ""))
            }
            script("pre", group.pre)
            if report.passed {
                for site in group.sites {
                    let t = ContinuousClock.now
                    do {
                        let detail = try each(site)
                        report.steps.append(.init(name: "site \(site)", passed: true, seconds: t.duration(to: .now).inSeconds, detail: detail))
                    } catch {
                        report.steps.append(.init(name: "site \(site)", passed: false, seconds: t.duration(to: .now).inSeconds, detail: "\(error)"))
                        break
                    }
                }
                report.rtoSeconds = started.duration(to: .now).inSeconds
            }
            if report.passed { script("post", group.post) }
            guard report.passed else { return reports + [report] }
            if let gate = group.gate {
                do { try approve("group '\(group.name)' done — gate: \(gate)") } catch {
                    report.steps.append(.init(name: "gate: \(gate)", passed: false, seconds: 0, detail: "\(error)"))
                    return reports + [report]
                }
                report.steps.append(.init(name: "gate: \(gate)", passed: true, seconds: 0, detail: "approved"))
            }
        }
        return reports
    }

    /// JUnit XML: a test suite per group, a test case per step (site, script, gate).
    public static func junit(_ plan: RecoveryPlan, _ reports: [PlanGroupReport]) -> String {
        func esc(_ s: String) -> String {
            s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
                .replacingOccurrences(of: "\"", with: "&quot;")
        }
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"\(esc(plan.name))\">\n"
        for r in reports {
            xml += "  <testsuite name=\"\(esc(r.name))\" tests=\"\(r.steps.count)\" failures=\"\(r.steps.filter { !$0.passed }.count)\" time=\"\(String(format: "%.3f", r.rtoSeconds))\">\n"
            for s in r.steps {
                xml += "    <testcase name=\"\(esc(s.name))\" time=\"\(String(format: "%.3f", s.seconds))\""
                xml += s.passed ? "/>\n" : ">\n      <failure message=\"\(esc(s.detail))\"/>\n    </testcase>\n"
            }
            xml += "  </testsuite>\n"
        }
        return xml + "</testsuites>\n"
    }
}
