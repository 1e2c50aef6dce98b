import LifeboatCore

/// Point readers of one point for many threads: a `PointReader` is not thread-safe (it keeps a
/// decompression context and the last frame), so each caller borrows an idle one, made on first
/// need and reused after.
public final class PointReaderPool: @unchecked Sendable {
    private let vault: Vault
    private let lsn: LSN
    private let only: Set<DiskID>?
    private let lock = ConditionLock()
    private var idle: [PointReader]

    /// Opens the first reader now: a point the vault cannot present fails here.
    public init(vault: Vault, lsn: LSN, only: Set<DiskID>? = nil) throws {
        self.vault = vault
        self.lsn = lsn
        self.only = only
        idle = [try PointReader(vault: vault, lsn: lsn, only: only)]
    }

    public func with<T>(_ body: (PointReader) throws -> T) throws -> T {
        let reader = try lock.withLock { idle.popLast() } ?? PointReader(vault: vault, lsn: lsn, only: only)
        defer { lock.withLock { idle.append(reader) } }
        return try body(reader)
    }
}
