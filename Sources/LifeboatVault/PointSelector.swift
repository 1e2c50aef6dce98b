import Foundation
import LifeboatCore

/// Point selectors: `latest`, `latest-app`, a point id, `lsn:N`, `@2026-11-24T10:00:00Z`.
public enum PointSelector {
    /// The LSN a selector names, and the cataloged point when it names one.
    public static func resolve(_ text: String, in vault: Vault) throws -> (lsn: LSN, point: RecoveryPoint?) {
        let points = try vault.points()
        func pick(_ p: RecoveryPoint?, _ what: String) throws -> (LSN, RecoveryPoint?) {
            guard let p else { throw LifeboatError(.notFound, "no point matches '\(text)': \(what)", path: vault.root.string) }
            return (p.lsn, p)
        }
        switch text.lowercased() {
        case "latest", "latest-processed":
            // The vault processes what it receives as it ingests it (a layer and its points are
            // committed before the answer): the latest point is the latest processed one.
            return try pick(points.last, "the vault has no points yet")
        case "latest-app":
            return try pick(points.last { $0.kind == .appConsistent }, "the vault has no app-consistent point")
        default:
            break
        }
        if text.hasPrefix("lsn:") {
            guard let n = UInt64(text.dropFirst(4)) else {
                throw LifeboatError(.invalidArgument, "'\(text)' is not a point selector: lsn:N takes a number")
            }
            let (base, last) = try vault.lsnRange()
            guard LSN(n) >= base, LSN(n) <= last else {
                throw LifeboatError(.notFound, "LSN \(n) is outside what the vault holds (\(base)…\(last))", path: vault.root.string)
            }
            try vault.requireConsistent(LSN(n))
            return (LSN(n), points.last { $0.lsn == LSN(n) })
        }
        if text.hasPrefix("@") {
            guard let time = parseTime(String(text.dropFirst())) else {
                throw LifeboatError(.invalidArgument, "'\(text)' is not a point selector: @TIME takes an ISO 8601 time like @2026-11-24T10:00:00Z, "
                                    + "@2026-11-24 10:00 or @2026-11-24 (UTC unless an offset is given)")
            }
            return try pick(points.last { $0.time <= time }, "no point at or before \(text.dropFirst())")
        }
        if let id = Int64(text) {
            return try pick(points.first { $0.id == id }, "no point with id \(id)")
        }
        throw LifeboatError(.invalidArgument, "'\(text)' is not a point selector (latest, latest-processed, latest-app, an id, lsn:N, @TIME)")
    }

    /// ISO 8601 as people type it: with or without `T`, seconds, fractions or a zone (UTC when
    /// none), or a bare date (its midnight, UTC).
    static func parseTime(_ text: String) -> Date? {
        var t = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: " ", with: "T")
        if t.count == 10 { t += "T00:00:00" }
        if t.count == 16 { t += ":00" }  // no seconds
        let hasZone = t.hasSuffix("Z") || t.dropFirst(19).contains("+") || t.dropFirst(19).contains("-")
        if !hasZone { t += "Z" }
        let whole = ISO8601DateFormatter()
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return whole.date(from: t) ?? fractional.date(from: t)
    }
}
