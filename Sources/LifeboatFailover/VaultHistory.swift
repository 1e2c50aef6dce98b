import Foundation
import LifeboatCore
import LifeboatVault

/// The group's history as re-protect and failback read and change it (decision 0012), from the
/// host that is to become a replica: the vault directory on this machine (`LocalHistory`), or
/// the vault service over the wire (the site's bundle; `RemoteVaultReplica` in LifeboatWire).
public protocol VaultHistory: AnyObject {
    func currentGeneration() throws -> GroupGeneration
    /// The blocks the current history wrote in `(after, through]`, by disk.
    func writtenBlocks(after: LSN, through: LSN) throws -> [DiskID: BlockExtents]
    /// The blocks generation `generation`'s owner shipped past its fork before it was fenced.
    func forsakenBlocks(generation: Int64) throws -> [DiskID: BlockExtents]
    func pointListing() throws -> PointListing
    /// Disk bytes at the point at `lsn` (`buffer.count` a multiple of 4096, at most 4 MiB).
    func read(pointAt lsn: LSN, disk: DiskID, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws
    /// Asks the current owner to drain for a planned failover (a failback's first step).
    func planFailover() throws -> GroupGeneration
    func withdrawPlannedFailover() throws
    /// The planned failover's fork at the owner's final point `lsn`, to a new owner.
    func takeOver(at lsn: LSN, owner: String, ownerName: String) throws -> GroupGeneration
}

/// The vault as a directory on this machine.
public final class LocalHistory: VaultHistory {
    let vault: Vault
    private var readers: [LSN: PointReaderPool] = [:]

    public init(vault: Vault) { self.vault = vault }

    public func currentGeneration() throws -> GroupGeneration { try vault.generation() }
    public func writtenBlocks(after: LSN, through: LSN) throws -> [DiskID: BlockExtents] { try vault.writtenBlocks(after: after, through: through) }
    public func forsakenBlocks(generation: Int64) throws -> [DiskID: BlockExtents] { try vault.forsakenBlocks(generation: generation) }
    public func pointListing() throws -> PointListing { try PointListing(vault) }

    public func read(pointAt lsn: LSN, disk: DiskID, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        let pool = try readers[lsn] ?? PointReaderPool(vault: vault, lsn: lsn)
        readers[lsn] = pool
        try pool.with { try $0.read(disk: disk, at: offset, into: buffer) }
    }

    public func planFailover() throws -> GroupGeneration { try vault.planFailover() }
    public func withdrawPlannedFailover() throws { _ = try vault.withdrawPlannedFailover() }

    public func takeOver(at lsn: LSN, owner: String, ownerName: String) throws -> GroupGeneration {
        let point = try vault.points().last { $0.lsn == lsn }
        return try vault.fork(at: lsn, pointID: point?.id, owner: owner, ownerName: ownerName, planned: true).generation
    }
}
