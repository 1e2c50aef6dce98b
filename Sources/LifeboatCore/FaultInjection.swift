import Synchronization
import SystemPackage

/// Failures injected where Lifeboat meets the filesystem — the journal's segments, the
/// primaries, the vault's files — for the tests of the paths that handle them. A fault is armed
/// for one operation on the files under a path prefix and fires once, on the next such
/// operation there; the code under test sees the errno as if the kernel had returned it.
/// Prefixes keep tests that run in parallel apart (each arms faults under its own directory).
///
/// Production never arms one: every hook first reads one relaxed atomic counter, which stays 0.
public enum FaultInjection {
    public enum Operation: String, Sendable {
        /// A pwrite/pwritev (a journal append, a primary write, a file written whole).
        case write
        /// An fdatasync/fsync (of a file; a directory's fsync counts as `.syncDirectory`).
        case sync
        case syncDirectory
        case rename
    }

    public struct Fault: Sendable {
        public var errno: Errno
        /// For `.write`: the bytes really written before the failure (a full disk part-way).
        public var writtenBytes: Int
    }

    private struct Armed {
        var operation: Operation
        var prefix: String
        var fault: Fault
    }

    private static let armedCount = Atomic<Int>(0)
    private static let armed = Mutex<[Armed]>([])

    /// The next `operation` on a file under `prefix` fails with `errno` (a write after
    /// writing `writtenBytes` of it).
    public static func arm(_ operation: Operation, under prefix: String, errno: Errno, writtenBytes: Int = 0) {
        armed.withLock { list in
            list.append(Armed(operation: operation, prefix: prefix, fault: Fault(errno: errno, writtenBytes: writtenBytes)))
            armedCount.store(list.count, ordering: .relaxed)
        }
    }

    /// Removes the faults under `prefix` that have not fired (a test's cleanup).
    public static func disarm(under prefix: String) {
        armed.withLock { list in
            list.removeAll { $0.prefix == prefix }
            armedCount.store(list.count, ordering: .relaxed)
        }
    }

    /// The fault armed for `operation` on `path`, once; nil (almost always, and at the cost of
    /// one atomic load) when there is none.
    @inline(__always)
    public static func take(_ operation: Operation, path: @autoclosure () -> FilePath) -> Fault? {
        guard armedCount.load(ordering: .relaxed) > 0 else { return nil }
        let p = path().string
        return armed.withLock { list in
            guard let i = list.firstIndex(where: { $0.operation == operation && p.hasPrefix($0.prefix) }) else { return nil }
            let fault = list.remove(at: i).fault
            armedCount.store(list.count, ordering: .relaxed)
            return fault
        }
    }

    /// Throws the armed fault for `operation` on `path`, if any.
    @inline(__always)
    public static func check(_ operation: Operation, path: @autoclosure () -> FilePath) throws(Errno) {
        if let fault = take(operation, path: path()) { throw fault.errno }
    }
}
