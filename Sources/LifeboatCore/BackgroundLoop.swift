internal import CLinux
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A named POSIX thread that can be joined: `join()` returns once the body has returned
/// (pthread_join), never by polling a flag. The body runs once.
public final class JoinableThread: @unchecked Sendable {
    private var handle: pthread_t?
    private let joined = ConditionLock()
    private var isJoined = false

    /// Starts `body` on a new thread named `name` (its first 15 bytes show in `top -H`); throws
    /// when the system gives no thread (never runs the body on the caller's thread instead: a
    /// loop there would never return).
    public init(name: String, _ body: @escaping @Sendable () -> Void) throws {
        let box = Unmanaged.passRetained(Body(name: name, run: body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            clinux_name_this_thread(body.name)
            body.run()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Body>.fromOpaque(box).release()
            throw LifeboatError.system(Errno(rawValue: rc), "cannot start the \(name) thread")
        }
        handle = thread
    }

    /// Waits for the body to return. Safe to call more than once and from several threads.
    public func join() {
        joined.withLock {
            guard !isJoined else { return }
            isJoined = true
            if let handle { pthread_join(handle, nil) }
        }
    }

    private final class Body {
        let name: String
        let run: @Sendable () -> Void
        init(name: String, run: @escaping @Sendable () -> Void) {
            self.name = name
            self.run = run
        }
    }
}

/// The one shape of every background worker: a thread that waits for work (a `poke`) or for
/// its interval, runs one round, and stops at `stop()`, which wakes it and joins it. A round in
/// flight finishes first; no round starts after `stop()`.
public final class BackgroundLoop: @unchecked Sendable {
    private let state = ConditionLock()
    private var poked = false
    private var stopping = false
    private var thread: JoinableThread?
    private let name: String
    private let interval: Duration?

    /// Rounds run on the loop's thread after each `poke()` and, with an `interval`, at least
    /// that often; a long round may check `isStopping` to end early.
    public init(name: String, interval: Duration? = nil) {
        self.name = name
        self.interval = interval
    }

    public func start(_ round: @escaping @Sendable () -> Void) throws {
        thread = try JoinableThread(name: name) { [self] in
            while let _ = nextRound() { round() }
        }
    }

    /// Asks for a round as soon as the current one (if any) is done.
    public func poke() {
        state.withLock {
            poked = true
            state.broadcast()
        }
    }

    public var isStopping: Bool { state.withLock { stopping } }

    /// Stops and joins: returns once the thread has exited. Idempotent.
    public func stop() {
        state.withLock {
            stopping = true
            state.broadcast()
        }
        thread?.join()
    }

    /// Blocks until a poke, the interval or a stop; nil when stopped.
    private func nextRound() -> Void? {
        state.withLock {
            if !poked && !stopping {
                if let interval { state.wait(seconds: interval.inSeconds) } else { state.wait() }
                // A spurious wake-up runs a round early: harmless, every round re-reads its state.
            }
            poked = false
            return stopping ? nil : ()
        }
    }
}
