import LifeboatCore

/// Point readers of one point for many threads (a `PointReader` keeps a decompression context
/// and the last frame: one per thread at a time).
public typealias PointReaderPool = IdlePool<PointReader>

extension IdlePool where Item == PointReader {
    /// Opens the first reader now: a point the vault cannot present fails here.
    public convenience init(vault: Vault, lsn: LSN, only: Set<DiskID>? = nil) throws {
        self.init(first: try PointReader(vault: vault, lsn: lsn, only: only)) { try PointReader(vault: vault, lsn: lsn, only: only) }
    }
}
