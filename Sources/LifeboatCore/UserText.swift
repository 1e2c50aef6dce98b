import Foundation

// What users type and read: durations, table columns, paths.

/// Durations as the CLI and plan files take them, one syntax everywhere: a number of seconds,
/// or a number with s, m, h or d (`30`, `30s`, `2m`, `1.5h`, `7d`). Finite, above zero and at
/// most ten years; anything else is refused with the reason.
public func parseDuration(_ text: String, what: String = "duration") throws(LifeboatError) -> TimeInterval {
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let unit = trimmed.last.flatMap { units[$0] }
    let number = unit == nil ? Substring(trimmed) : trimmed.dropLast()
    guard let value = Double(number), !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }) else {
        throw LifeboatError(.invalidArgument, "'\(text)' is not a \(what): use seconds, or a number with s, m, h or d (e.g. 30s, 5m, 24h)")
    }
    let seconds = value * (unit ?? 1)
    guard seconds > 0 else { throw LifeboatError(.invalidArgument, "'\(text)': the \(what) must be greater than 0") }
    guard seconds.isFinite, seconds <= 10 * 365 * 86400 else { throw LifeboatError(.invalidArgument, "'\(text)': the \(what) must be at most 10 years") }
    return seconds
}

extension Duration {
    /// The duration in seconds, for reports and arithmetic with TimeInterval.
    public var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

/// `12.3 s`, `4 min 5 s`, `2 h 10 min`: durations in reports.
public func describeDuration(_ seconds: TimeInterval) -> String {
    if seconds < 10 { return String(format: "%.2f s", seconds) }
    if seconds < 60 { return String(format: "%.1f s", seconds) }
    if seconds < 3600 { return "\(Int(seconds) / 60) min \(Int(seconds) % 60) s" }
    return "\(Int(seconds) / 3600) h \(Int(seconds) % 3600 / 60) min"
}

/// A table column: `text` padded with spaces to `width`, or followed by one space if longer.
public func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
}

/// An absolute path, so that status, reports and the kernel's mount table name the same place.
public func absolutePath(_ path: String) -> String {
    path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}
