import LifeboatCore
import Synchronization
import SystemPackage

/// Failures injected where the journal meets the system, for the tests of the paths that
/// handle them (a failing fdatasync poisons the journal; a short or failed append is cut off
/// again). Each armed fault fires once. Production journals carry none (`Configuration.faults`
/// is nil), so the write path pays one nil check.
public final class JournalFaults: Sendable {
    private struct State {
        var failNextSync: Errno?
        var shortNextAppend: (bytes: Int, then: Errno)?
    }
    private let state = Mutex(State())

    public init() {}

    /// The next fdatasync of a segment fails with `errno` (after really syncing nothing).
    public func failNextSync(_ errno: Errno) { state.withLock { $0.failNextSync = errno } }

    /// The next append writes only its first `bytes` bytes, then fails with `errno`: the
    /// partial record really reaches the file, as a full disk leaves it.
    public func shortNextAppend(bytes: Int, then errno: Errno) { state.withLock { $0.shortNextAppend = (bytes, errno) } }

    func takeSyncFailure() -> Errno? { state.withLock { s in defer { s.failNextSync = nil }; return s.failNextSync } }
    func takeShortAppend() -> (bytes: Int, then: Errno)? { state.withLock { s in defer { s.shortNextAppend = nil }; return s.shortNextAppend } }
}
