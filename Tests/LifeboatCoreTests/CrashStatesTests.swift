import LifeboatCore
import Testing

@Suite struct CrashStatesTests {
    static func lsns(_ values: ClosedRange<UInt64>) -> [LSN] { values.map { LSN($0) } }

    /// Intervals: writes after the opening boundary, split at each closing one; a repeated LSN
    /// (one record, several block runs) counts once; an interval of fewer than two writes has
    /// no crash state of its own and is left out.
    @Test func intervalsSplitTheWritesAtTheBoundaries() {
        let writes = [5, 11, 11, 12, 21, 31, 32, 33].map { LSN(UInt64($0)) }
        let intervals = CrashStates.intervals(opening: LSN(10), closings: [LSN(20), LSN(30), LSN(40)], writes: writes)
        #expect(intervals.map(\.closingLSN) == [LSN(20), LSN(40)])
        #expect(intervals.map(\.writes) == [[LSN(11), LSN(12)], [LSN(31), LSN(32), LSN(33)]])
    }

    /// Few enough states: every proper, non-empty subset of every interval, once each, in order.
    @Test func fewStatesAreAllChecked() {
        let intervals = [CrashStates.Interval(closingLSN: LSN(10), writes: Self.lsns(1...2)),
                         CrashStates.Interval(closingLSN: LSN(20), writes: Self.lsns(11...13))]
        #expect(CrashStates.total(intervals) == 2 + 6)
        let states = CrashStates.choose(from: intervals, count: 8, seed: 1)
        #expect(states.count == 8)
        #expect(Set(states.map { "\($0.closingLSN):\($0.dropped)" }).count == 8)
        #expect(states.first == CrashStates.State(closingLSN: LSN(10), dropped: [LSN(1)]))
        for s in states {
            let writes = intervals.first { $0.closingLSN == s.closingLSN }!.writes
            #expect(!s.dropped.isEmpty && s.dropped.count < writes.count && s.dropped.allSatisfy(writes.contains))
        }
    }

    /// Many states: `count` drawn from the seed — the same seed draws the same states.
    @Test func manyStatesAreDrawnReproducibly() {
        let intervals = [CrashStates.Interval(closingLSN: LSN(100), writes: Self.lsns(1...40)),
                         CrashStates.Interval(closingLSN: LSN(200), writes: Self.lsns(101...170))]
        #expect(CrashStates.total(intervals) == Int.max)
        let a = CrashStates.choose(from: intervals, count: 20, seed: 42)
        #expect(a.count == 20)
        #expect(a == CrashStates.choose(from: intervals, count: 20, seed: 42))
        #expect(a != CrashStates.choose(from: intervals, count: 20, seed: 43))
        #expect(Set(a.map(\.closingLSN)).count == 2, "both intervals are drawn from")
        for s in a {
            let writes = intervals.first { $0.closingLSN == s.closingLSN }!.writes
            #expect(!s.dropped.isEmpty && s.dropped.count < writes.count && s.dropped.allSatisfy(writes.contains))
        }
    }
}
