import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// Named points between the durable steps of a transition (failover, re-protect, failback),
/// where the tests kill the process as `kill -9` would: with `LIFEBOAT_CRASH_AT=NAME` in its
/// environment, the process SIGKILLs itself on reaching NAME (decision 0012: every transition
/// resumes or rolls back from any of them). Production never sets it: one comparison per step.
public enum CrashPoint {
    private static let armed: String? = ProcessInfo.processInfo.environment["LIFEBOAT_CRASH_AT"].flatMap { $0.isEmpty ? nil : $0 }

    public static func reached(_ name: String) {
        guard let armed, armed == name else { return }
        fflush(nil)
        kill(getpid(), SIGKILL)
    }
}
