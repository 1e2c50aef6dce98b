import Foundation
import LifeboatCore

/// `protect --bandwidth`: how fast shipping may send to a vault on another machine, and when.
/// `20MB/s` all the time; `20MB/s 08:00-18:00` in that window (local time) and unlimited
/// otherwise; several windows separated by commas (`20MB/s 08:00-18:00, 50MB/s 18:00-22:00`); a
/// window may wrap midnight (`22:00-06:00`); `, unlimited otherwise` may be said. Units: B/s,
/// KB/s, MB/s, GB/s (powers of 1000, as links are sold) and kbit/s, Mbit/s, Gbit/s.
public struct BandwidthSchedule: Sendable, Equatable, CustomStringConvertible {
    public struct Window: Sendable, Equatable {
        public var bytesPerSecond: Double
        /// Minutes after local midnight; nil: all day.
        public var from: Int?
        public var to: Int?
    }
    public var windows: [Window]
    public let text: String

    public init(parsing text: String) throws {
        self.text = text
        var windows: [Window] = []
        let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        for (i, part) in parts.enumerated() {
            if part.lowercased() == "unlimited otherwise", i == parts.count - 1, i > 0 { continue }
            let words = part.split(separator: " ", omittingEmptySubsequences: true)
            guard (1...2).contains(words.count) else { throw Self.refuse(text, "'\(part)' is not RATE or RATE HH:MM-HH:MM") }
            let rate = try Self.rate(String(words[0]), in: text)
            if words.count == 1 {
                guard parts.count == 1 else { throw Self.refuse(text, "a rate without a window must be the only one") }
                windows.append(Window(bytesPerSecond: rate, from: nil, to: nil))
                continue
            }
            let ends = words[1].split(separator: "-")
            guard ends.count == 2, let from = Self.minutes(ends[0]).map({ $0 % 1440 }), let to = Self.minutes(ends[1]), from != to else {
                throw Self.refuse(text, "'\(words[1])' is not a window HH:MM-HH:MM (00:00 to 24:00, two different times)")
            }
            windows.append(Window(bytesPerSecond: rate, from: from, to: to))
        }
        guard !windows.isEmpty else { throw Self.refuse(text, "no rate given") }
        self.windows = windows
    }

    public var description: String { text }

    /// Bytes per second allowed at `date` (local time); nil: unlimited.
    public func bytesPerSecond(at date: Date = Date(), calendar: Calendar = .current) -> Double? {
        let parts = calendar.dateComponents([.hour, .minute], from: date)
        let minute = (parts.hour ?? 0) * 60 + (parts.minute ?? 0)
        for w in windows {
            guard let from = w.from, let to = w.to else { return w.bytesPerSecond }
            let inside = from < to ? (minute >= from && minute < to) : (minute >= from || minute < to)
            if inside { return w.bytesPerSecond }
        }
        return nil
    }

    private static func rate(_ word: String, in text: String) throws -> Double {
        let units: [(String, Double)] = [("gbit/s", 1e9 / 8), ("mbit/s", 1e6 / 8), ("kbit/s", 1e3 / 8),
                                         ("gb/s", 1e9), ("mb/s", 1e6), ("kb/s", 1e3), ("b/s", 1)]
        let lower = word.lowercased()
        guard let (unit, factor) = units.first(where: { lower.hasSuffix($0.0) }), let number = Double(lower.dropLast(unit.count)),
              number.isFinite, number > 0 else {
            throw refuse(text, "'\(word)' is not a rate: a number with B/s, KB/s, MB/s, GB/s, kbit/s, Mbit/s or Gbit/s")
        }
        let rate = number * factor
        guard rate >= 64_000 else { throw refuse(text, "'\(word)' is below 64 KB/s: shipping would never catch up") }
        return rate
    }

    private static func minutes(_ text: Substring) -> Int? {
        let hm = text.split(separator: ":")
        guard hm.count == 2, hm[1].count == 2, let h = Int(hm[0]), let m = Int(hm[1]), (0...24).contains(h), (0..<60).contains(m), h * 60 + m <= 1440 else {
            return nil
        }
        return h * 60 + m  // 24:00 ends a window at midnight
    }

    private static func refuse(_ text: String, _ why: String) -> LifeboatError {
        LifeboatError(.invalidArgument, "--bandwidth '\(text)': \(why) (e.g. 20MB/s, or 20MB/s 08:00-18:00, unlimited otherwise)")
    }
}

/// Paces sends to a schedule: a token bucket of at most a quarter second of the rate, refilled
/// continuously; `take(bytes)` sleeps until they may go. Unlimited at the moment: no wait.
public final class Pacer: @unchecked Sendable {
    public let schedule: BandwidthSchedule
    private let lock = ConditionLock()
    private var tokens: Double = 0
    private var refilled = ContinuousClock.now

    public init(_ schedule: BandwidthSchedule) { self.schedule = schedule }

    /// The rate now (nil: unlimited).
    public var currentRate: Double? { schedule.bytesPerSecond() }

    public func take(_ bytes: Int) {
        guard let rate = schedule.bytesPerSecond() else { return }
        let wait: Double = lock.withLock {
            let now = ContinuousClock.now
            tokens = min(rate / 4, tokens + refilled.duration(to: now).inSeconds * rate)
            refilled = now
            tokens -= Double(bytes)
            return tokens < 0 ? -tokens / rate : 0
        }
        if wait > 0 { Thread.sleep(forTimeInterval: wait) }
    }
}
