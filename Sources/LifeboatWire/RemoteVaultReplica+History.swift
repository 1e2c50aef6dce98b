import Foundation
import LifeboatCore
import LifeboatFailover
import LifeboatVault
import LifeboatWireFormat

/// The group's history over the wire (re-protect and failback on a site host): each call one
/// request of the site's connection (Docs/formats/wire.md, "Failover").
extension RemoteVaultReplica: VaultHistory {
    public func currentGeneration() throws -> GroupGeneration {
        try WireJSON.decode(GroupGeneration.self, try exchange(WireRequest(op: "history")).1)
    }

    public func writtenBlocks(after: LSN, through: LSN) throws -> [DiskID: BlockExtents] {
        var request = WireRequest(op: "writtenBlocks")
        request.after = after.rawValue
        request.lsn = through.rawValue
        return try BlockExtents.byDiskID(try WireJSON.decode([String: BlockExtents].self, try exchange(request).1))
    }

    public func forsakenBlocks(generation: Int64) throws -> [DiskID: BlockExtents] {
        var request = WireRequest(op: "forsakenBlocks")
        request.ofGeneration = generation
        return try BlockExtents.byDiskID(try WireJSON.decode([String: BlockExtents].self, try exchange(request).1))
    }

    public func pointListing() throws -> PointListing { try points() }

    public func read(pointAt lsn: LSN, disk: DiskID, offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws {
        var request = WireRequest(op: "readPoint")
        request.lsn = lsn.rawValue
        request.disk = disk.rawValue
        request.offset = offset
        request.sizeBytes = Int64(buffer.count)
        let body = try exchange(request).1
        let data = try body.withUnsafeBytes { try Zstd.decompress($0, maxSize: buffer.count) }
        guard data.count == buffer.count else {
            throw LifeboatError(.corrupt, "the vault at \(address) answered readPoint with \(data.count) bytes for \(buffer.count)")
        }
        buffer.copyBytes(from: data)
    }

    public func planFailover() throws -> GroupGeneration {
        try WireJSON.decode(GroupGeneration.self, try exchange(WireRequest(op: "planFailover")).1)
    }

    public func withdrawPlannedFailover() throws { _ = try exchange(WireRequest(op: "withdrawPlan")) }

    public func takeOver(at lsn: LSN, owner: String, ownerName: String) throws -> GroupGeneration {
        var request = WireRequest(op: "takeOver")
        request.lsn = lsn.rawValue
        request.newOwner = owner
        request.note = ownerName
        return try WireJSON.decode(GroupGeneration.self, try exchange(request).1)
    }
}
