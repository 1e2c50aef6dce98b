#if canImport(Glibc)
import Glibc
#endif

/// A pthread mutex with a condition variable. A class so that its address never moves
/// (pthread objects must not be copied); the storage is allocated once.
public final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    @inline(__always) public func lock() { pthread_mutex_lock(mutex) }
    @inline(__always) public func unlock() { pthread_mutex_unlock(mutex) }

    @inline(__always)
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// Waits for a broadcast; the caller holds the lock and re-checks its predicate.
    public func wait() { pthread_cond_wait(cond, mutex) }

    /// Waits at most `seconds`; returns false on timeout.
    @discardableResult
    public func wait(seconds: Double) -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let total = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9 + seconds
        var deadline = timespec(tv_sec: Int(total), tv_nsec: Int((total - Double(Int(total))) * 1e9))
        return pthread_cond_timedwait(cond, mutex, &deadline) == 0
    }

    public func broadcast() { pthread_cond_broadcast(cond) }
}

/// A writer-preferring reader/writer lock (glibc's PREFER_WRITER_NONRECURSIVE kind), so that a
/// checkpoint or a marker that needs a quiet moment is not starved by a stream of writes.
public final class ReadWriteLock: @unchecked Sendable {
    private let lock = UnsafeMutablePointer<pthread_rwlock_t>.allocate(capacity: 1)

    public init() {
        var attr = pthread_rwlockattr_t()
        pthread_rwlockattr_init(&attr)
        pthread_rwlockattr_setkind_np(&attr, Int32(PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP))
        pthread_rwlock_init(lock, &attr)
        pthread_rwlockattr_destroy(&attr)
    }

    deinit {
        pthread_rwlock_destroy(lock)
        lock.deallocate()
    }

    @inline(__always) public func lockShared() { pthread_rwlock_rdlock(lock) }
    @inline(__always) public func lockExclusive() { pthread_rwlock_wrlock(lock) }
    @inline(__always) public func unlock() { pthread_rwlock_unlock(lock) }

    public func withExclusive<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lockExclusive()
        defer { unlock() }
        return try body()
    }
}

/// Striped block locks: block b maps to stripe b mod N. A multi-block write takes its stripes
/// in ascending stripe order (each at most once), so two writers never deadlock, and two writes
/// to one block reach the journal and the primary in the same order.
public final class StripedLocks: @unchecked Sendable {
    public static let stripeCount = 256
    private let mutexes: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutexes = .allocate(capacity: Self.stripeCount)
        for i in 0..<Self.stripeCount { pthread_mutex_init(mutexes + i, nil) }
    }

    deinit {
        for i in 0..<Self.stripeCount { pthread_mutex_destroy(mutexes + i) }
        mutexes.deallocate()
    }

    /// Runs `body` holding the stripes of blocks `first ..< first+count`.
    @inline(__always)
    public func withBlocks<T, E: Error>(first: BlockIndex, count: Int, _ body: () throws(E) -> T) throws(E) -> T {
        let n = Self.stripeCount
        if count >= n {
            for i in 0..<n { pthread_mutex_lock(mutexes + i) }
            defer { for i in 0..<n { pthread_mutex_unlock(mutexes + i) } }
            return try body()
        }
        // The stripes of a contiguous run are a contiguous run modulo N: at most two ascending
        // ranges, [start, n) and [0, end). Lock the low range first to keep one global order.
        let start = Int(first.rawValue % UInt64(n))
        let end = start + count
        if end <= n {
            for i in start..<end { pthread_mutex_lock(mutexes + i) }
            defer { for i in start..<end { pthread_mutex_unlock(mutexes + i) } }
            return try body()
        }
        let wrapped = end - n
        for i in 0..<wrapped { pthread_mutex_lock(mutexes + i) }
        for i in start..<n { pthread_mutex_lock(mutexes + i) }
        defer {
            for i in start..<n { pthread_mutex_unlock(mutexes + i) }
            for i in 0..<wrapped { pthread_mutex_unlock(mutexes + i) }
        }
        return try body()
    }
}
