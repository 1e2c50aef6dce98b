import Foundation
import LifeboatCore
import LifeboatJournal
import Testing

@testable import LifeboatShipping

/// `--bandwidth` schedules and the RPO figure `status` shows.
@Suite struct BandwidthTests {
    private func at(_ hour: Int, _ minute: Int) -> Date {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        return utc.date(from: DateComponents(year: 2026, month: 11, day: 30, hour: hour, minute: minute))!
    }

    private var utc: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }

    @Test func schedulesSayTheRateAtEachTimeOfDay() throws {
        let flat = try BandwidthSchedule(parsing: "20MB/s")
        #expect(flat.bytesPerSecond(at: at(3, 0), calendar: utc) == 20e6)
        let office = try BandwidthSchedule(parsing: "20MB/s 08:00-18:00, unlimited otherwise")
        #expect(office.bytesPerSecond(at: at(8, 0), calendar: utc) == 20e6)
        #expect(office.bytesPerSecond(at: at(17, 59), calendar: utc) == 20e6)
        #expect(office.bytesPerSecond(at: at(18, 0), calendar: utc) == nil, "the window ends at 18:00")
        #expect(office.bytesPerSecond(at: at(7, 59), calendar: utc) == nil)
        let night = try BandwidthSchedule(parsing: "100Mbit/s 22:00-06:00, 5MB/s 06:00-22:00")
        #expect(night.bytesPerSecond(at: at(23, 30), calendar: utc) == 12.5e6)
        #expect(night.bytesPerSecond(at: at(2, 0), calendar: utc) == 12.5e6, "a window wraps midnight")
        #expect(night.bytesPerSecond(at: at(12, 0), calendar: utc) == 5e6)
        #expect(try BandwidthSchedule(parsing: "1gbit/s 00:00-24:00").bytesPerSecond(at: at(23, 59), calendar: utc) == 125e6)
    }

    @Test func aScheduleThatIsNotOneIsRefusedSayingWhy() {
        for (text, why) in [("20", "'20' is not a rate"), ("fast", "'fast' is not a rate"), ("-5MB/s", "is not a rate"),
                            ("10KB/s", "below 64 KB/s"), ("20MB/s 8-18", "'8-18' is not a window"),
                            ("20MB/s 08:00-08:00", "two different times"), ("20MB/s 25:00-26:00", "is not a window"),
                            ("20MB/s, 30MB/s", "must be the only one"), ("unlimited otherwise", "is not a rate"),
                            ("20MB/s 08:00-18:00 now", "is not RATE or RATE HH:MM-HH:MM")] {
            let e = #expect(throws: LifeboatError.self, "\(text)") { try BandwidthSchedule(parsing: text) }
            #expect(e?.message.contains(why) == true && e?.message.contains("--bandwidth '\(text)'") == true, "\(text): \(e?.message ?? "")")
        }
    }

    @Test func theRPOIsTheAgeOfTheNewestSampleTheVaultCovers() {
        let t0 = ContinuousClock.now
        var clock = RecoveryPointClock(now: t0)
        clock.sample(durable: LSN(10), at: t0 + .milliseconds(100))
        clock.sample(durable: LSN(20), at: t0 + .milliseconds(200))
        clock.sample(durable: LSN(30), at: t0 + .milliseconds(300))
        let now = t0 + .milliseconds(1000)
        #expect(clock.rpo(durable: LSN(30), shipped: LSN(30), now: now) == .zero, "all durable is held")
        clock.shipped(LSN(20))
        // Held through 20: what was durable at 200 ms is there; the write at LSN 21+ came later.
        #expect(clock.rpo(durable: LSN(30), shipped: LSN(20), now: now) == .milliseconds(800))
        clock.shipped(LSN(25))
        #expect(clock.rpo(durable: LSN(30), shipped: LSN(25), now: now) == .milliseconds(800), "never less than the truth")
        // Shipping stuck: no samples, the figure grows with the clock.
        #expect(clock.rpo(durable: LSN(90), shipped: LSN(25), now: now + .seconds(10)) == .milliseconds(10_800))
    }
}
