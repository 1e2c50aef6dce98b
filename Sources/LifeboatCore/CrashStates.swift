/// Crash states inside flush intervals (reference §4.4, "skip"; CrashMonkey's method): after a
/// power loss a disk holds everything up to its last completed flush and any subset of the
/// writes completed since. Used by `drill explore --drop-unflushed` and the power-loss harness.
public enum CrashStates {
    public struct Interval: Sendable {
        /// The flush (or the `--to` point) that closes the interval: the state is read there.
        public var closingLSN: LSN
        /// The write records after the opening flush, oldest first (at least two).
        public var writes: [LSN]
        public init(closingLSN: LSN, writes: [LSN]) { self.closingLSN = closingLSN; self.writes = writes }
    }

    public struct State: Equatable, Sendable {
        public var closingLSN: LSN
        public var dropped: [LSN]
        public init(closingLSN: LSN, dropped: [LSN]) { self.closingLSN = closingLSN; self.dropped = dropped }
    }

    /// The intervals between consecutive boundaries — `opening`, then each of `closings`
    /// (ascending) — that hold at least two writes. `writes`: write LSNs, ascending; a repeat
    /// (a record seen once per block run) counts once; writes at or before `opening` are skipped.
    public static func intervals(opening: LSN, closings: [LSN], writes: [LSN]) -> [Interval] {
        var result: [Interval] = []
        var next = writes.firstIndex { $0 > opening } ?? writes.count
        for closing in closings {
            var unflushed: [LSN] = []
            while next < writes.count, writes[next] < closing {
                if unflushed.last != writes[next] { unflushed.append(writes[next]) }
                next += 1
            }
            if unflushed.count >= 2 { result.append(Interval(closingLSN: closing, writes: unflushed)) }
        }
        return result
    }

    /// The number of crash states: 2^n - 2 per interval of n writes (Int.max when past it).
    public static func total(_ intervals: [Interval]) -> Int {
        intervals.reduce(0) { sum, i in
            let states = i.writes.count >= 62 ? Int.max : (1 << i.writes.count) - 2
            let (total, overflow) = sum.addingReportingOverflow(states)
            return overflow ? Int.max : total
        }
    }

    public static func choose(from intervals: [Interval], count: Int, seed: UInt64) -> [State] {
        if total(intervals) <= count {
            return intervals.flatMap { i in
                (1..<((1 << i.writes.count) - 1)).map { mask in
                    State(closingLSN: i.closingLSN, dropped: i.writes.indices.filter { mask & (1 << $0) != 0 }.map { i.writes[$0] })
                }
            }
        }
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            let i = intervals[Int(random.next() % UInt64(intervals.count))]
            while true {
                let dropped = i.writes.filter { _ in random.next() & 1 == 1 }
                if !dropped.isEmpty && dropped.count < i.writes.count { return State(closingLSN: i.closingLSN, dropped: dropped) }
            }
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded generator whose draws are the same on every
/// machine and release, unlike the system generator.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
