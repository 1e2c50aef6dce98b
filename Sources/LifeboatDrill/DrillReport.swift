import Foundation
import LifeboatCore
import LifeboatJournal
import LifeboatVault

/// One check's outcome.
public struct CheckResult: Codable, Sendable {
    public enum Status: String, Codable, Sendable {
        case passed, failed
        /// Not applicable here (a `digest` at an LSN with no marker).
        case skipped
    }
    public var name: String
    public var kind: CheckKind
    public var status: Status
    public var seconds: Double
    /// One line: why it failed, or what it found.
    public var message: String
    /// The end of the check's output (at most 4 KiB); for `boot`, the console's.
    public var outputTail: String
    /// boot: seconds from qemu's start to the expected console line.
    public var bootSeconds: Double?

    public init(name: String, kind: CheckKind, status: Status, seconds: Double, message: String, outputTail: String, bootSeconds: Double? = nil) {
        self.name = name
        self.kind = kind
        self.status = status
        self.seconds = seconds
        self.message = message
        self.outputTail = outputTail
        self.bootSeconds = bootSeconds
    }
}

public struct DiskResult: Codable, Sendable {
    public var name: String
    /// The filesystem found or named (nil when not mounted).
    public var filesystem: String?
    public var checks: [CheckResult]
}

/// The point a drill ran on.
public struct DrilledPoint: Codable, Sendable {
    public var id: Int64?
    public var lsn: UInt64
    public var kind: PointKind?
    public var time: Date?
    public var label: String?
}

/// A drill's report: what `--json` writes, what the vault keeps, what the text and JUnit
/// renderings are made from.
public struct DrillReport: Codable, Sendable {
    public typealias Result = DrillResult
    public var plan: String
    public var vault: String
    public var point: DrilledPoint
    public var startedAt: Date
    public var finishedAt: Date
    /// Data a failover to this point would lose, as of the drill: drill start − point time.
    public var rpoSeconds: Double?
    /// Recovery time: drill start to every check done (cleanup not included).
    public var rtoSeconds: Double?
    public var result: Result
    public var error: String?
    public var disks: [DiskResult]

    public var checkCount: Int { disks.reduce(0) { $0 + $1.checks.count } }
    public var failedChecks: [(disk: String, check: CheckResult)] {
        disks.flatMap { d in d.checks.filter { $0.status == .failed }.map { (d.name, $0) } }
    }

    public func json() throws -> Data { try LifeboatJSON.encoder().encode(self) }

    public static func decode(_ data: Data) throws -> DrillReport { try LifeboatJSON.decoder().decode(DrillReport.self, from: data) }

    /// The human summary.
    public func text() -> String {
        let time = ISO8601DateFormatter()
        var what = point.id.map { "point \($0)" } ?? "LSN \(point.lsn)"
        if let kind = point.kind { what += " (\(kind)" + (point.label.map { $0.isEmpty ? "" : ", \"\($0)\"" } ?? "") + ")" }
        if let t = point.time { what += " at \(time.string(from: t))" }
        var lines = ["drill of \(what), LSN \(point.lsn): \(result.rawValue.uppercased())"]
        for d in disks {
            for c in d.checks {
                var line = "  " + pad(d.name, 12) + pad(c.name, 16) + pad(c.status.rawValue, 8) + pad(describeDuration(c.seconds), 10)
                if !c.message.isEmpty { line += c.message }
                lines.append(line)
            }
        }
        if let error { lines.append("error: \(error)") }
        let failed = failedChecks.count
        var summary = "\(checkCount) check(s), \(failed) failed"
        if let rpoSeconds { summary += "; RPO \(describeDuration(rpoSeconds))" }
        if let rtoSeconds { summary += "; RTO \(describeDuration(rtoSeconds))" }
        lines.append(summary)
        return lines.joined(separator: "\n")
    }

    /// JUnit XML: a testsuite per disk, a testcase per check; an infrastructure error is one
    /// errored testcase, so CI shows it rather than an empty green run.
    public func junit() -> String {
        let time = ISO8601DateFormatter()
        let total = checkCount + (result == .error ? 1 : 0)
        let seconds = rtoSeconds ?? finishedAt.timeIntervalSince(startedAt)
        var x = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        x += "<testsuites name=\"lifeboat drill \(xml(plan))\" tests=\"\(total)\" failures=\"\(failedChecks.count)\" errors=\"\(result == .error ? 1 : 0)\" time=\"\(fmt(seconds))\">\n"
        for d in disks {
            let failures = d.checks.filter { $0.status == .failed }.count
            let skipped = d.checks.filter { $0.status == .skipped }.count
            x += "  <testsuite name=\"\(xml(d.name))\" tests=\"\(d.checks.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"\(skipped)\" time=\"\(fmt(d.checks.reduce(0) { $0 + $1.seconds }))\" timestamp=\"\(time.string(from: startedAt))\">\n"
            x += "    <properties><property name=\"point\" value=\"\(point.id.map(String.init) ?? "")\"/><property name=\"lsn\" value=\"\(point.lsn)\"/></properties>\n"
            for c in d.checks {
                x += "    <testcase classname=\"lifeboat.drill.\(xml(d.name))\" name=\"\(xml(c.name))\" time=\"\(fmt(c.seconds))\">\n"
                if let boot = c.bootSeconds { x += "      <properties><property name=\"boot-seconds\" value=\"\(fmt(boot))\"/></properties>\n" }
                switch c.status {
                case .failed: x += "      <failure message=\"\(xml(c.message))\" type=\"\(c.kind.rawValue)\">\(xml(c.outputTail))</failure>\n"
                case .skipped: x += "      <skipped message=\"\(xml(c.message))\"/>\n"
                case .passed: break
                }
                if !c.outputTail.isEmpty { x += "      <system-out>\(xml(c.outputTail))</system-out>\n" }
                x += "    </testcase>\n"
            }
            x += "  </testsuite>\n"
        }
        if result == .error {
            x += "  <testsuite name=\"drill\" tests=\"1\" failures=\"0\" errors=\"1\" time=\"0\">\n"
            x += "    <testcase classname=\"lifeboat.drill\" name=\"infrastructure\" time=\"0\"><error message=\"\(xml(error ?? "error"))\"/></testcase>\n"
            x += "  </testsuite>\n"
        }
        return x + "</testsuites>\n"
    }

    private func fmt(_ s: Double) -> String { String(format: "%.3f", s) }
}

/// Text for XML attributes and content: the five entities, and control characters (invalid in
/// XML 1.0) dropped.
func xml(_ s: String) -> String {
    var out = ""
    for ch in s.unicodeScalars {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        case "\n", "\t", "\r": out.unicodeScalars.append(ch)
        default: if ch.value >= 0x20 && ch.value != 0xFFFE && ch.value != 0xFFFF { out.unicodeScalars.append(ch) }
        }
    }
    return out
}
