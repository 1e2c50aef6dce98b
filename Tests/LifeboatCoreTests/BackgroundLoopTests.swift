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
        try loop.start { _ in
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
        try idle.start { _ in idleRounds.add(1, ordering: .sequentiallyConsistent) }
        usleep(150_000)
        idle.stop()
        #expect(idleRounds.load(ordering: .sequentiallyConsistent) == 0, "no interval, no poke: no round (no polling)")

        let timed = BackgroundLoop(name: "test-timed", interval: .milliseconds(20))
        let timedRounds = Atomic<Int>(0)
        try timed.start { _ in timedRounds.add(1, ordering: .sequentiallyConsistent) }
        usleep(300_000)
        timed.stop()
        #expect(timedRounds.load(ordering: .sequentiallyConsistent) >= 3, "the interval runs rounds unasked")
    }

    @Test func aSleepInARoundEndsAtStop() throws {
        let loop = BackgroundLoop(name: "test-sleep")
        let stoppedEarly = Atomic<Bool>(false)
        let entered = DispatchSemaphore(value: 0)
        try loop.start { loop in
            entered.signal()
            stoppedEarly.store(loop.sleep(.seconds(30)), ordering: .sequentiallyConsistent)
        }
        loop.poke()
        entered.wait()
        let started = ContinuousClock.now
        loop.stop()
        #expect(started.duration(to: .now) < .seconds(5), "stop woke the sleeping round")
        let sleepSawTheStop = stoppedEarly.load(ordering: .sequentiallyConsistent)
        #expect(sleepSawTheStop)
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
