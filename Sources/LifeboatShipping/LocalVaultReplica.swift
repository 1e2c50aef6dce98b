import LifeboatCore
import LifeboatVault
import Logging
import SystemPackage

/// The vault as a directory on this machine. The segment goes in as it lies in the journal:
/// the vault compresses each write once, into its layer (no zstd of the whole segment first, to
/// be undone at once). Being the vault's only server here, it also runs the vault's upkeep.
public final class LocalVaultReplica: ReplicaTarget, @unchecked Sendable {
    public let address: String
    private let root: FilePath
    private let maintenance: VaultMaintenance
    private let lock = ConditionLock()
    private var opened: Vault?
    /// Who this site is in the group's history: sent with every record.
    private let writer: WriterClaim

    private let key: VaultKey?

    /// `key`: an encrypted vault's (a failed-over site's, shipping into the vault it was served from).
    public init(root: FilePath, logger: Logger, writer: WriterClaim = .original, key: VaultKey? = nil) throws {
        self.root = root
        self.writer = writer
        self.key = key
        self.address = root.string
        self.maintenance = VaultMaintenance(root: root, key: key, logger: logger)
        try maintenance.start()
    }

    /// The vault, opened on first use after a `reset()`: a vault that appears later (a disk
    /// mounted late) is picked up by the next round.
    private func vault() throws -> Vault {
        try lock.withLock {
            if let opened { return opened }
            let v = try Vault(root: root, key: key)
            v.removeStaleIncoming()
            opened = v
            return v
        }
    }

    public func groupID() throws -> String? { try vault().groupID() }

    public func addDisk(group: String, id: DiskID, name: String, sizeBytes: Int64, initialContent: FilePath,
                        progress: (Int64) -> Void) throws {
        try vault().addDisk(group: group, id: id, name: name, sizeBytes: sizeBytes, initialContent: initialContent, progress: progress)
    }

    public func heldThrough() throws -> LSN { try vault().heldThrough(for: writer) }

    public func standing() throws -> WriterStanding { try vault().standing(of: writer) }

    public func state() throws -> ReplicaState { try vault().state(of: writer) }

    public func reportDrained(at lsn: LSN) throws { _ = try vault().reportDrained(at: lsn, as: writer) }

    /// As it lies: the vault compresses each write once, into its layer.
    public func prepare(segment: [UInt8]) throws -> PreparedSegment { PreparedSegment(bytes: segment) }

    /// Ingests at once, on the shipper's thread: there is no wire here to overlap with.
    public func send(_ segment: PreparedSegment, name: String) throws -> PendingShip {
        let v = try vault()
        if case .ingested = try v.ingest(segment: segment.bytes, name: name, as: writer) { maintenance.dataArrived() }
        let held = try v.heldThrough(for: writer)
        return PendingShip { held }
    }

    public func append(records: [UInt8], firstLSN: LSN, name: String) throws -> LSN {
        let v = try vault()
        if case .ingested = try v.ingest(records: records, firstLSN: firstLSN, name: name, as: writer) { maintenance.dataArrived() }
        return try v.heldThrough(for: writer)
    }

    public func openResync(resumingAt: LSN) throws -> LSN { try vault().openResync(resumingAt: resumingAt, as: writer) }

    public func point(at lsn: LSN) throws -> Int64? { try vault().points().last { $0.lsn == lsn }?.id }

    public func annotate(point id: Int64, note: String) throws { try vault().annotate(point: id, note: note) }

    public var maintenanceError: String? { maintenance.lastError }

    public func reset() { lock.withLock { opened = nil } }

    public func close() {
        maintenance.stop()
        reset()
    }
}
