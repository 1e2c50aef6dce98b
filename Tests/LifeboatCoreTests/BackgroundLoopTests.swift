import Foundation
import LifeboatCore
import Synchronization
import Testing

/// The one background-loop primitive: a poke runs a round, stop waits for the round in flight
/// and then nothing runs, the interval runs rounds unasked, and join really waits.
@Suite(.timeLimit(.minutes(1))) struct BackgroundLoopTests {
    @Test func aPokeRunsARoundAndStopWaitsForTheRoundInFlight() throws {
        let loop = BackgroundLoop(name: "test-loop")
        let rounds = Atomic<Int>(0)
        let inRound = DispatchSemaphore(value: 0)
        let finished = Atomic<Bool>(false)
        try loop.start {
            rounds.add(1, ordering: .sequentiallyConsistent)
            inRound.signal()
            usleep(200_000)  // a long round: stop must wait for it
            finished.store(true, ordering: .sequentiallyConsistent)
        }
        loop.poke()
        inRound.wait()
        loop.stop()
        let roundEnded = finished.load(ordering: .sequentiallyConsistent)
        #expect(roundEnded, "stop returned only after the round in flight ended")
        #expect(rounds.load(ordering: .sequentiallyConsistent) == 1)
        loop.poke()
        usleep(50_000)
        #expect(rounds.load(ordering: .sequentiallyConsistent) == 1, "no round after stop")
        loop.stop()  // idempotent
    }

    @Test func withoutAPokeNothingRunsUntilTheInterval() throws {
        let idle = BackgroundLoop(name: "test-idle")
        let idleRounds = Atomic<Int>(0)
        try idle.start { idleRounds.add(1, ordering: .sequentiallyConsistent) }
        usleep(150_000)
        idle.stop()
        #expect(idleRounds.load(ordering: .sequentiallyConsistent) == 0, "no interval, no poke: no round (no polling)")

        let timed = BackgroundLoop(name: "test-timed", interval: .milliseconds(20))
        let timedRounds = Atomic<Int>(0)
        try timed.start { timedRounds.add(1, ordering: .sequentiallyConsistent) }
        usleep(300_000)
        timed.stop()
        #expect(timedRounds.load(ordering: .sequentiallyConsistent) >= 3, "the interval runs rounds unasked")
    }

    /// A long round that watches `isStopping` (the shipper between segments) ends at `stop()`.
    @Test func aLongRoundSeesTheStop() throws {
        let loop = BackgroundLoop(name: "test-long")
        let sawTheStop = Atomic<Bool>(false)
        let entered = DispatchSemaphore(value: 0)
        try loop.start {
            entered.signal()
            let until = ContinuousClock.now + .seconds(30)
            while !loop.isStopping && ContinuousClock.now < until { usleep(1000) }
            sawTheStop.store(loop.isStopping, ordering: .sequentiallyConsistent)
        }
        loop.poke()
        entered.wait()
        let started = ContinuousClock.now
        loop.stop()
        #expect(started.duration(to: .now) < .seconds(5), "the round ended at the stop")
        let ended = sawTheStop.load(ordering: .sequentiallyConsistent)
        #expect(ended)
    }

    @Test func joinWaitsForTheThreadsBody() throws {
        let done = Atomic<Bool>(false)
        let thread = try JoinableThread(name: "test-join") {
            usleep(100_000)
            done.store(true, ordering: .sequentiallyConsistent)
        }
        thread.join()
        let bodyDone = done.load(ordering: .sequentiallyConsistent)
        #expect(bodyDone)
        thread.join()  // twice is fine
    }
}
