import LifeboatCore
import LifeboatSite
import Synchronization

/// Threads that write a large write's blocks to the primary (and hash them) while the FUSE
/// thread that took the write appends its journal record: the two copies into the page cache
/// and the two passes over the data then overlap instead of following each other
/// (decision 0013). Only for writes to warm regions (ActivityLog: their order does not matter
/// for recovery); the caller waits for both before it answers the write.
///
/// A few helpers (one per core but one): a write finds an idle helper or writes its primary itself.
/// Handing a job over costs no allocation: the job lives in the helper, the data stays the FUSE
/// request's buffer, which outlives the wait.
final class PrimaryWriters: @unchecked Sendable {
    final class Helper: @unchecked Sendable {
        fileprivate let lock = ConditionLock()
        fileprivate var job: (disk: ProtectedDisk, first: BlockIndex, data: UnsafeRawBufferPointer)?
        fileprivate var failure: (any Error)?
        fileprivate var done = true
        fileprivate var stopping = false
        fileprivate var thread: JoinableThread?

        fileprivate func run() {
            while true {
                lock.lock()
                while job == nil && !stopping { lock.wait() }
                guard let (disk, first, data) = job else { lock.unlock(); return }
                lock.unlock()
                var failed: (any Error)?
                do { try disk.apply(firstBlock: first, data: data) } catch { failed = error }
                lock.withLock {
                    job = nil
                    failure = failed
                    done = true
                    lock.broadcast()
                }
            }
        }
    }

    private let idle: Mutex<[Helper]>
    private let all: [Helper]

    init(count: Int) throws {
        all = (0..<count).map { _ in Helper() }
        idle = Mutex(all)
        for (n, helper) in all.enumerated() {
            do { helper.thread = try JoinableThread(name: "lifeboat-primary\(n)") { helper.run() } } catch {
                stop()
                throw error
            }
        }
    }

    /// Starts writing `data` to `disk`'s primary at `first` on an idle helper; nil when every
    /// helper is busy (the caller writes it itself).
    @inline(__always)
    func start(_ disk: ProtectedDisk, first: BlockIndex, data: UnsafeRawBufferPointer) -> Helper? {
        guard let helper = idle.withLock({ $0.popLast() }) else { return nil }
        helper.lock.withLock {
            helper.job = (disk, first, data)
            helper.done = false
            helper.lock.broadcast()
        }
        return helper
    }

    /// Waits for the helper's write and gives the helper back; throws the write's error.
    @inline(__always)
    func wait(_ helper: Helper) throws {
        let failure = helper.lock.withLock { () -> (any Error)? in
            while !helper.done { helper.lock.wait() }
            defer { helper.failure = nil }
            return helper.failure
        }
        idle.withLock { $0.append(helper) }
        if let failure { throw failure }
    }

    deinit { stop() }

    /// Stops and joins every helper (after the last write).
    func stop() {
        for helper in all {
            helper.lock.withLock {
                helper.stopping = true
                helper.lock.broadcast()
            }
            helper.thread?.join()
        }
    }
}
